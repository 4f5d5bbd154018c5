"""A cache outage is a miss (shopreco.cache.Guarded): lists come from the database, writes
and invalidations do nothing, the backend is left alone for a window after a failure, and
the outage is logged when it starts and when it ends."""

from __future__ import annotations

import logging
import time

import pytest
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache

from shopreco import cache, services
from shopreco.serving import popularity


class FlakyCache(LocMemCache):
    """A memory cache that can be taken down; counts the calls that reached it."""

    down = False
    calls = 0

    def _reached(self) -> None:
        type(self).calls += 1
        if type(self).down:
            raise ConnectionError("cache down")

    def get(self, *args, **kwargs):
        self._reached()
        return super().get(*args, **kwargs)

    def get_many(self, *args, **kwargs):
        self._reached()
        return super().get_many(*args, **kwargs)

    def set(self, *args, **kwargs):
        self._reached()
        return super().set(*args, **kwargs)

    def set_many(self, *args, **kwargs):
        self._reached()
        return super().set_many(*args, **kwargs)

    def add(self, *args, **kwargs):
        self._reached()
        return super().add(*args, **kwargs)

    def delete(self, *args, **kwargs):
        self._reached()
        return super().delete(*args, **kwargs)


@pytest.fixture
def flaky(settings, monkeypatch):
    settings.CACHES = {**settings.CACHES, "default": {
        "BACKEND": f"{__name__}.FlakyCache", "LOCATION": "shopreco-outage-tests"}}
    FlakyCache.down, FlakyCache.calls = False, 0
    now = [1000.0]
    monkeypatch.setattr(cache, "_clock", lambda: now[0])
    yield now
    FlakyCache.down = False


def test_an_outage_is_a_miss_and_the_backend_is_left_alone_for_a_window(flaky, caplog):
    store = cache.store()
    store.set("k", 1)
    assert store.get("k") == 1
    caplog.set_level(logging.INFO, logger="shopreco.cache")

    FlakyCache.down = True
    calls = FlakyCache.calls
    assert store.get("k") is None and store.get("k", "d") == "d"
    assert store.get_many(["k"]) == {} and store.add("lock", 1) is False
    store.set("k", 2)
    store.delete("k")
    assert store.down() and cache.is_down()
    assert FlakyCache.calls == calls + 1  # only the first call reached the backend

    flaky[0] += cache.OUTAGE_RETRY_SECONDS + 1  # the window passed; still down
    assert store.get("k") is None
    assert FlakyCache.calls == calls + 2
    FlakyCache.down = False
    flaky[0] += cache.OUTAGE_RETRY_SECONDS + 1  # and back
    assert store.get("k") == 1 and not store.down()

    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "cache unavailable" in m]) == 1  # once per outage
    assert len([m for m in messages if "available again" in m]) == 1


def test_lists_and_widgets_come_from_the_database_during_an_outage(flaky, shop,
                                                                    make_request):
    page = shop.products[0]
    before = [i.pk for i in services.similar_products(page, 3, request=make_request())]
    FlakyCache.down = True
    during = [i.pk for i in services.similar_products(page, 3, request=make_request())]
    assert during == before
    assert [i.pk for i in services.recommended_for(shop.alice, 3, request=make_request(
        shop.alice))]
    assert services.popular(3, request=make_request()).items
    assert services.active_run_id(make_request()) == shop.run.pk


def test_writes_and_invalidations_never_fail_during_an_outage(flaky, shop):
    from shopreco.models import Rating

    FlakyCache.down = True
    Rating.objects.create(user=shop.alice, product=shop.products[5], score=4)  # invalidates
    cache.invalidate_user(shop.alice)
    cache.renew_catalogue_version()
    shop.products[1].save()  # renews the catalogue token
    cache.forget_served_run()


def test_rankings_are_built_here_without_waiting_for_a_lock(flaky, shop, monkeypatch):
    """A lock nobody can take must not make every request wait RANKING_LOCK_TIMEOUT."""
    FlakyCache.down = True
    cache.store().get("anything")  # the outage is noticed
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail("waited for a cache lock"))
    ranking = popularity.popularity_ranking()
    assert ranking and ranking == popularity.build_ranking(None)


def test_version_tokens_expire(flaky):
    for viewer in ("u:1", "s:abc"):
        cache.versions(viewer)
        cache.invalidate_viewer_views(1 if viewer == "u:1" else None, "abc")
    backend = caches["default"]
    for key in (cache.version_key("u:1"), cache.version_key("s:abc:views")):
        expiry = backend._expire_info[backend.make_and_validate_key(key)]
        assert expiry is not None
        assert 0 < expiry - time.time() <= cache.VERSION_TIMEOUT
