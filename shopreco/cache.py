"""The one owner of shopreco's cache: every key, version token, invalidation and warm-up.

Serving reads through these helpers, the pipeline warms the cache as a run goes live, and
signal receivers and privacy code invalidate through them, so none of them needs to import
the serving package, and a change of key layout or of backend behaviour is made here only.

Key families (all under ``shopreco:``, in ``SHOPRECO["CACHE_ALIAS"]``):

- ``v:<viewer>`` and ``v:<viewer>:views``: per-viewer version tokens. Replacing one orphans
  every cached list of that viewer (a random token rather than a counter, so an evicted key
  can never bring an old version back); the ``:views`` token renews on views only, which
  change just the recent-activity step of the for-you list.
- ``nb:<run>:<kind>:<product>``: a run's stored neighbours of a product. A run's results never
  change once live, so these are never invalidated: a new run has new keys.
- ``pop-all``, ``pop:c<category>`` (and ``...:lock``), ``pop-known``: popularity rankings.
- ``list:<hash>``: a served list's candidates, or its rendered HTML, per viewer version.
- ``catalogue``: renewed on every product save or delete, so cached HTML never shows a stale
  name or price, nor a cached ``product:<pk>`` (the page product of an API list) a stale
  product.
- ``served-run``: the id of the run being served, so anonymous requests need no query to
  find it. Dropped whenever a run is activated, saved or deleted; kept briefly in a cache
  private to one process, which other processes' activations cannot reach.
- ``experiments``: the running A/B experiments with their arms, shares and runs (an empty
  list: none runs), read together with ``served-run``. Dropped with it, and whenever an
  experiment or an arm is saved or deleted; kept as briefly in a private cache.

An outage of the cache is a miss, never an error (:class:`Guarded`, :func:`store`): reads
find nothing, so lists come from the database; writes, locks and invalidations do nothing.
After a failed call the process leaves the cache alone for :data:`OUTAGE_RETRY_SECONDS`, so
an outage costs one failed call per window rather than one per request, and it is logged
once when it starts and once when it ends. While it lasts, a dropped invalidation can leave
a list cached before it for up to ``CACHE_TIMEOUT`` in processes that still reach the cache.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.db import connections, router, transaction
from django.db.models import Model

from shopreco.conf import reco_settings

logger = logging.getLogger("shopreco.cache")

# A run's neighbour lists never change; kept a day (a new run has new keys).
NEIGHBOURS_TIMEOUT = 24 * 3600
# Version tokens need only outlive the lists cached under them (CACHE_TIMEOUT): an expired
# token costs its viewer one miss, and the tokens of one-visit sessions go away by themselves.
VERSION_TIMEOUT = 24 * 3600
# After a failed call, the cache is left alone (misses, no writes) this long before it is
# tried again: an outage then costs one failed call per window, not one per cache call.
OUTAGE_RETRY_SECONDS = 5.0
RANKINGS_KNOWN_KEY = "shopreco:pop-known"  # no category key looks like it
CATALOGUE_VERSION_KEY = "shopreco:catalogue"
SERVED_RUN_KEY = "shopreco:served-run"
EXPERIMENTS_KEY = "shopreco:experiments"
# How long a served run id is trusted in a cache private to one process (a run activated by
# a worker clears only the worker's own copy); a shared cache is cleared by the activation.
SERVED_RUN_PRIVATE_TIMEOUT = 5
_SAFE_KEY_PART = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Part of every list key: bumped when what a cached list holds changes shape, so entries
# written by an older release are never unpickled into the new code.
_LIST_FORMAT = "2"


def get_cache() -> BaseCache:
    """The cache shopreco serves from (``SHOPRECO["CACHE_ALIAS"]``), as the backend itself:
    its errors propagate. Serving goes through :func:`store` instead."""
    return caches[reco_settings.CACHE_ALIAS]


# --- outages: a cache that cannot answer is a miss -------------------------------------------

# backend instance -> (monotonic time the outage began, time until which it is left alone).
# Per instance: Django keeps one per thread and alias, and a new one after a settings change.
_outages: weakref.WeakKeyDictionary[Any, tuple[float, float]] = weakref.WeakKeyDictionary()
_clock = time.monotonic  # the outage window's clock (tests move it)


def _in_savepoint(backend: Any, op: Callable[[Any], Any]) -> Any:
    """``op(backend)``, inside a savepoint when the backend is a database cache and a
    transaction is open: a failing cache query must not abort the caller's transaction
    (PostgreSQL refuses every statement after an error until the transaction ends)."""
    if isinstance(backend, DatabaseCache):
        db = router.db_for_write(backend.cache_model_class)
        if connections[db].in_atomic_block:
            with transaction.atomic(using=db):
                return op(backend)
    return op(backend)


def _failed(backend: Any, exc: Exception) -> None:
    now = _clock()
    began = _outages.get(backend, (None, 0.0))[0]
    if began is None:
        logger.warning("cache unavailable (%s: %s): lists come from the database, the cache "
                       "is tried again every %g s", type(exc).__name__, exc,
                       OUTAGE_RETRY_SECONDS, exc_info=exc)
        began = now
    _outages[backend] = (began, now + OUTAGE_RETRY_SECONDS)


def _answered(backend: Any) -> None:
    began = _outages.pop(backend, (None, 0.0))[0]
    if began is not None:
        logger.warning("cache available again after %.1f s", _clock() - began)


class Guarded:
    """A cache whose outage is a miss: the calls shopreco makes, each answering as a miss
    (reads find nothing, writes and deletes do nothing, ``add`` adds nothing) when the
    backend raises, and without calling it at all for :data:`OUTAGE_RETRY_SECONDS` after
    that. ``alias``: a cache of ``CACHES`` (None: ``SHOPRECO["CACHE_ALIAS"]``), looked up
    on every call so ``override_settings`` applies."""

    def __init__(self, alias: str | None = None) -> None:
        self.alias = alias

    def backend(self) -> BaseCache:
        return get_cache() if self.alias is None else caches[self.alias]

    def down(self) -> bool:
        """Whether the cache failed lately and is being left alone."""
        return _outages.get(self.backend(), (None, 0.0))[1] > _clock()

    def _call(self, op: Callable[[Any], Any], miss: Callable[[], Any]) -> Any:
        backend = self.backend()
        if _outages:
            state = _outages.get(backend)
            if state is not None and state[1] > _clock():
                return miss()
        try:
            result = _in_savepoint(backend, op)
        except Exception as exc:  # noqa: BLE001 - any backend's error: a cache is optional
            _failed(backend, exc)
            return miss()
        if _outages and backend in _outages:
            _answered(backend)
        return result

    def get(self, key: str, default: Any = None) -> Any:
        return self._call(lambda c: c.get(key, default), lambda: default)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        return self._call(lambda c: c.get_many(keys), dict)

    def set(self, key: str, value: Any, timeout: Any = None) -> None:
        self._call(lambda c: c.set(key, value, timeout=timeout), lambda: None)

    def set_many(self, data: dict[str, Any], timeout: Any = None) -> list:
        return self._call(lambda c: c.set_many(data, timeout=timeout), lambda: list(data))

    def add(self, key: str, value: Any, timeout: Any = None) -> bool:
        return self._call(lambda c: c.add(key, value, timeout=timeout), lambda: False)

    def delete(self, key: str) -> bool:
        return self._call(lambda c: c.delete(key), lambda: False)


_STORE = Guarded()


def store() -> Guarded:
    """The serving cache, where an outage is a miss (see :class:`Guarded`)."""
    return _STORE


def is_down() -> bool:
    """Whether the serving cache failed lately (callers then skip waiting on cache locks)."""
    return _STORE.down()


def key_part(value: Any) -> str:
    """A value as part of a cache key that every backend accepts: as it is when it is a
    short ASCII token without ``:`` (integer and UUID keys), else hashed. Text keys may
    hold spaces or non-ASCII characters, which memcached refuses, or a ``:`` that could make
    one key look like another's lock ("x:lock")."""
    text = str(value)
    if _SAFE_KEY_PART.fullmatch(text):
        return text
    return "h" + hashlib.sha1(text.encode()).hexdigest()


def _new_token() -> str:
    return uuid.uuid4().hex[:12]


# --- per-viewer version tokens --------------------------------------------------------------


def viewer_key(user_id: Any = None, session_key: str = "") -> str:
    """The cache identity of a viewer: ``u:<pk>``, ``s:<session key>`` or ``anon``."""
    if user_id is not None:
        return f"u:{user_id}"
    if session_key:
        return f"s:{session_key}"
    return "anon"


def version_key(viewer: str) -> str:
    return f"shopreco:v:{key_part(viewer)}"


def version(viewer: str) -> str:
    """The viewer's current token (created on first use); ``"0"`` for nobody in particular."""
    if viewer.startswith("anon"):
        return "0"
    cache = store()
    token = cache.get(version_key(viewer))
    if token is None:
        token = _new_token()
        cache.add(version_key(viewer), token, timeout=VERSION_TIMEOUT)
        token = cache.get(version_key(viewer)) or token
    return token


def versions(viewer: str) -> tuple[str, str]:
    """The viewer's list token and recent-views token, in one cache round trip (two on a
    first visit, which creates them and keeps any racing winner)."""
    if viewer.startswith("anon"):
        return ("0", "0")
    cache = store()
    keys = [version_key(viewer), version_key(viewer + ":views")]
    tokens = cache.get_many(keys)
    if len(tokens) < 2:
        for key in keys:
            if key not in tokens:
                cache.add(key, _new_token(), timeout=VERSION_TIMEOUT)
        tokens = cache.get_many(keys)
    return (tokens.get(keys[0]) or version(viewer),
            tokens.get(keys[1]) or version(viewer + ":views"))


def invalidate_user(user_or_key: Any) -> None:
    """Drop every cached list of a user (instance or pk) or an anonymous session key.

    Called on each rating, event and preference change; the pipeline and privacy code call it
    after rewriting a user's data."""
    if isinstance(user_or_key, str) and not user_or_key.isdigit():
        key = f"s:{user_or_key}"
    else:
        key = f"u:{getattr(user_or_key, 'pk', user_or_key)}"
    store().set_many({version_key(key): _new_token(),
                      version_key(key + ":views"): _new_token()}, timeout=VERSION_TIMEOUT)


def invalidate_viewer(user_id: Any, session_key: str = "") -> None:
    """Renew the list token of a user or, for anonymous activity, of a session."""
    key = viewer_key(user_id, session_key)
    if key != "anon":
        store().set(version_key(key), _new_token(), timeout=VERSION_TIMEOUT)


def invalidate_viewer_views(user_id: Any, session_key: str = "") -> None:
    """Renew only the recent-views token: a view changes just the for-you list's recent
    step, so a browsing shopper's similar and also-bought lists stay cached."""
    key = viewer_key(user_id, session_key)
    if key != "anon":
        store().set(version_key(key + ":views"), _new_token(), timeout=VERSION_TIMEOUT)


# --- lists, rendered widgets and the catalogue token ----------------------------------------


def list_key(*parts: Any) -> str:
    """The key of a served list (or its HTML) made of ``parts``, hashed to a fixed length."""
    raw = "|".join(str(p) for p in (_LIST_FORMAT, *parts))
    return "shopreco:list:" + hashlib.sha1(raw.encode()).hexdigest()


def catalogue_version() -> str:
    """Renewed whenever a product is saved or deleted: cached widget HTML shows names and
    prices, so it must not outlive a product edit."""
    cache = store()
    token = cache.get(CATALOGUE_VERSION_KEY)
    if token is None:
        token = _new_token()
        cache.add(CATALOGUE_VERSION_KEY, token, timeout=None)
        token = cache.get(CATALOGUE_VERSION_KEY) or token
    return token


def renew_catalogue_version() -> None:
    store().set(CATALOGUE_VERSION_KEY, _new_token(), timeout=None)


# --- the served run -------------------------------------------------------------------------


def served_run() -> tuple[bool, int | None]:
    """(found, run id) of the run being served, as last read from the database; not found
    when the cache cannot answer (the caller reads the database)."""
    got = store().get(SERVED_RUN_KEY)
    return (False, None) if got is None else (True, got["run"])


def remember_served_run(run_id: int | None) -> None:
    timeout = (SERVED_RUN_PRIVATE_TIMEOUT if is_private()
               else int(reco_settings.CACHE_TIMEOUT))
    store().set(SERVED_RUN_KEY, {"run": run_id}, timeout=timeout)


def forget_served_run() -> None:
    """A run went live, or a run row changed: the next request reads the database. Never
    fails its caller (an activation must not be undone by a cache outage); a cache that
    cannot be reached cannot serve a stale id either, and a private one expires it soon."""
    store().delete(SERVED_RUN_KEY)
    forget_running_experiments()  # an arm may have served the run (or a deleted pinned run)


# --- running experiments --------------------------------------------------------------------


def served_state() -> tuple[bool, int | None, bool, list | None]:
    """(found, run id, found, running experiments) in one round trip: what an anonymous
    request needs before any list, so a shop with no experiment running pays nothing more."""
    got = store().get_many([SERVED_RUN_KEY, EXPERIMENTS_KEY])
    run = got.get(SERVED_RUN_KEY)
    experiments = got.get(EXPERIMENTS_KEY)
    return (run is not None, None if run is None else run["run"],
            experiments is not None, experiments)


def running_experiments() -> list | None:
    """The running experiments as last read from the database (a list of dicts, see
    :func:`shopreco.serving.experiments.load_running`); None when not cached."""
    return store().get(EXPERIMENTS_KEY)


def remember_running_experiments(experiments: list) -> None:
    timeout = (SERVED_RUN_PRIVATE_TIMEOUT if is_private()
               else int(reco_settings.CACHE_TIMEOUT))
    store().set(EXPERIMENTS_KEY, list(experiments), timeout=timeout)


def forget_running_experiments() -> None:
    """An experiment, an arm or an arm's run changed: the next request reads the database.
    Never fails its caller."""
    store().delete(EXPERIMENTS_KEY)


# --- products a list is about -----------------------------------------------------------------


def product_key(pk: Any) -> str:
    return f"shopreco:product:{key_part(pk)}"


def page_product(pk: Any, load: Any) -> Any:
    """The product ``pk`` whose list is asked for (an API request names it by key), from the
    cache while the catalogue token is unchanged, else ``load(pk)`` (None: no such product,
    not cached). One cache round trip instead of a query; a product save or delete renews
    the token, as it does for cached widget HTML."""
    cache = store()
    key = product_key(pk)
    got = cache.get_many([CATALOGUE_VERSION_KEY, key])
    if cache.down():
        return load(pk)
    token = got.get(CATALOGUE_VERSION_KEY) or catalogue_version()
    entry = got.get(key)
    if entry is not None and entry[0] == token:
        return entry[1]
    product = load(pk)
    if product is not None:
        cache.set(key, (token, product), timeout=int(reco_settings.CACHE_TIMEOUT))
    return product


# --- neighbour lists and popularity rankings ------------------------------------------------


def neighbour_key(run_id: int, kind: str, product_pk: Any) -> str:
    return f"shopreco:nb:{run_id}:{kind}:{key_part(product_pk)}"


def warm_neighbour_lists(run_id: int, kind: str,
                         lists: Iterable[tuple[Any, list[tuple[Any, float]]]]) -> int:
    """Cache a run's neighbour lists ([(product pk, [(pk, score), ...] best first)]) as it
    goes live, so that no shopper's first view of a product after a run reads its list from
    the database: one query fewer on that view, and no burst of list reads right after
    activation. Returns the number of lists cached."""
    cache = get_cache()
    n, batch = 0, {}
    for product_pk, rows in lists:
        batch[neighbour_key(run_id, kind, product_pk)] = rows
        if len(batch) >= 1000:
            cache.set_many(batch, timeout=NEIGHBOURS_TIMEOUT)
            n, batch = n + len(batch), {}
    if batch:
        cache.set_many(batch, timeout=NEIGHBOURS_TIMEOUT)
        n += len(batch)
    return n


def category_pk(category: Any) -> Any:
    return category.pk if isinstance(category, Model) else category


def ranking_key(category: Any) -> str:
    """The key of the popularity ranking of ``category`` (None: every product)."""
    pk = category_pk(category)
    if pk is None:  # all products: a key no category can have
        return "shopreco:pop-all"
    return f"shopreco:pop:c{key_part(pk)}"


# --- what kind of cache this is -------------------------------------------------------------


def is_private() -> bool:
    """Whether the serving cache lives in this process only (or nowhere): what a worker puts
    there, no web process reads."""
    return isinstance(get_cache(), LocMemCache | DummyCache)


def is_shared() -> bool:
    """Whether the serving cache is one that all processes read and that holds many entries
    (Redis, Memcached): warming it from a worker helps the web processes only then. Not a
    per-process memory cache, and not the database or file caches, whose default
    MAX_ENTRIES of 300 would evict the popularity rankings and locks instead."""
    return not (is_private() or isinstance(get_cache(), DatabaseCache | FileBasedCache))
