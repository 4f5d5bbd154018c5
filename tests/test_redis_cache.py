"""demo_shop.cache against a real Redis: the usual cache behaviour, one client per process."""

from __future__ import annotations

import os
import uuid

import pytest

from demo_shop import cache as reused


def _redis_url() -> str:
    broker = os.environ.get("CELERY_BROKER_URL", "")
    return broker if broker.startswith("redis://") else "redis://127.0.0.1:6379/8"


@pytest.fixture
def backend():
    redis = pytest.importorskip("redis")
    url = _redis_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {url}")
    prefix = f"test-{uuid.uuid4().hex[:8]}"  # never clear(): the db may be shared (broker)
    made = []

    def make():
        made.append(reused.ReusedClientRedisCache(url, {"KEY_PREFIX": prefix}))
        return made[-1]

    yield make
    for b in made:
        b.delete_many(["a", "b", "c", "n", "gone"])


def test_behaves_like_a_cache(backend):
    cache = backend()
    assert cache.get("a") is None
    cache.set("a", {"x": [1, 2]}, timeout=30)
    assert cache.get("a") == {"x": [1, 2]}
    assert cache.add("a", "other") is False and cache.add("b", 7) is True
    assert cache.get_many(["a", "b", "c"]) == {"a": {"x": [1, 2]}, "b": 7}
    cache.set("n", 1)
    assert cache.incr("n", 2) == 3
    cache.set("gone", 1, timeout=0)
    assert cache.get("gone") is None
    assert cache.delete("a") is True and cache.get("a") is None


def test_one_client_per_process_shared_by_backends(backend, monkeypatch):
    first, second = backend(), backend()
    client = first._cache.get_client()
    assert first._cache.get_client(write=True) is client
    assert second._cache.get_client() is client  # another thread's backend instance
    first.set("a", "seen")
    assert second.get("a") == "seen"
    monkeypatch.setattr(reused.os, "getpid", lambda: -1)  # as in a forked worker
    child = first._cache.get_client()
    assert child is not client
    assert first.get("a") == "seen"
