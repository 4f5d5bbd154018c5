"""A Redis cache backend that reuses one client per process and server.

Django's ``RedisCache`` builds a new ``redis.Redis`` object around its connection pool for every
cache call: pure Python overhead that, with several cache calls per API request, is a noticeable
share of a request. The client is thread-safe (each command borrows a connection from the pool),
so one per process is enough; after a fork the child makes its own, since the pool's sockets
belong to the parent.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_clients: dict[tuple, Any] = {}
_lock = threading.Lock()


class ReusedClientRedisCacheClient(RedisCacheClient):
    """Django's client, returning one shared ``redis.Redis`` per (process, server)."""

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        ident = (os.getpid(), self._servers[index], repr(sorted(self._pool_options.items())))
        client = _clients.get(ident)
        if client is None:
            with _lock:
                client = _clients.get(ident)
                if client is None:
                    pool = self._pool_class.from_url(self._servers[index], **self._pool_options)
                    client = _clients[ident] = self._client(connection_pool=pool)
        return client


class ReusedClientRedisCache(RedisCache):
    """``django.core.cache.backends.redis.RedisCache`` with one Redis client per process."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient
