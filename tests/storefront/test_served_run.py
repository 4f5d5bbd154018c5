"""The served run id: read once from the database, then from the cache, until a run goes
live or a run row changes; a cache that cannot answer costs only the query."""

from __future__ import annotations

import re
import time

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.utils import timezone

from shopreco import cache, services
from shopreco.models import ItemSimilarity, RecomputeRun
from shopreco.pipeline import runs


def test_guests_find_the_served_run_without_a_query(shop, rf, django_assert_num_queries):
    services.active_run_id(rf.get("/"))  # the first request reads it
    with django_assert_num_queries(0):
        assert services.active_run_id(rf.get("/")) == shop.run.pk


def test_signed_in_shoppers_still_read_their_preference(shop, make_request,
                                                        django_assert_num_queries):
    services.active_run_id(make_request())
    request = make_request(shop.alice)
    with django_assert_num_queries(1):  # run id and preference, one query
        assert services.personalization_allowed(shop.alice, request)


def test_an_activated_run_is_served_on_the_next_request(shop, rf):
    assert services.active_run_id(rf.get("/")) == shop.run.pk
    newer = RecomputeRun.objects.create(status=RecomputeRun.Status.RUNNING)
    RecomputeRun.objects.filter(pk=newer.pk).update(started_at=timezone.now())
    ItemSimilarity.objects.create(run=newer, kind="similar", product=shop.products[0],
                                  similar_product=shop.products[9], score=1.0)
    services.active_run_id(rf.get("/"))  # the running run does not count
    assert runs.activate(newer.pk, {})  # a queryset update: no model signal
    assert services.active_run_id(rf.get("/")) == newer.pk
    listed = services.similar_products(shop.products[0], 1, request=rf.get("/"))
    assert [i.pk for i in listed] == [shop.products[9].pk]


def test_a_deleted_run_is_not_served(shop, rf):
    assert services.active_run_id(rf.get("/")) == shop.run.pk
    shop.run.delete()
    assert services.active_run_id(rf.get("/")) is None


def test_a_private_cache_keeps_the_id_briefly(settings, shop, rf):
    """A worker's activation cannot reach another process's memory cache: that copy
    expires on its own."""
    assert isinstance(cache.get_cache(), LocMemCache)
    services.active_run_id(rf.get("/"))
    expiry = cache.get_cache()._expire_info[cache.get_cache().make_and_validate_key(
        cache.SERVED_RUN_KEY)]
    assert expiry - time.time() <= cache.SERVED_RUN_PRIVATE_TIMEOUT


def test_a_broken_cache_costs_only_the_query(shop, rf, monkeypatch):
    class Broken:
        def __getattr__(self, name):
            raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "get_cache", lambda: Broken())
    assert services.active_run_id(rf.get("/")) == shop.run.pk
    cache.forget_served_run()  # never raises


@pytest.mark.parametrize("status", [RecomputeRun.Status.FAILED, RecomputeRun.Status.RUNNING])
def test_other_runs_do_not_displace_the_served_one(shop, rf, status):
    services.active_run_id(rf.get("/"))
    RecomputeRun.objects.create(status=status)
    assert services.active_run_id(rf.get("/")) == shop.run.pk


def test_a_product_list_loads_only_what_it_can_show(shop, rf, product_factory,
                                                    django_assert_max_num_queries):
    """Rows are loaded for the first candidates only; when filters reject some, the next
    ones are looked at, in order, until the list is full."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    page = shop.products[0]
    extra = [product_factory(f"Extra {i}", category=shop.books) for i in range(12)]
    ItemSimilarity.objects.bulk_create(
        ItemSimilarity(run=shop.run, kind="also_bought", product=page, similar_product=p,
                       score=2.0 - i / 100) for i, p in enumerate(extra))
    services.also_bought(page, 2, request=rf.get("/"))  # the state, rankings: warm
    with CaptureQueriesContext(connection) as seen:
        listed = services.also_bought(page, 2, request=rf.get("/"), exclude=())
    assert [i.pk for i in listed] == [extra[0].pk, extra[1].pk]
    loads = [re.findall(r"IN \(([^)]*)\)", q["sql"]) for q in seen.captured_queries]
    loads = [ins for ins in loads if ins]
    assert len(loads) == 1  # one product query, of the first 2 + 4 spares, not all 12
    assert max(len(ids.split(",")) for ids in loads[0]) == 6
    type(page).objects.filter(pk__in=[p.pk for p in extra[:7]]).update(in_stock=False)
    with django_assert_max_num_queries(3):
        listed = services.also_bought(page, 2, request=rf.get("/"))
    assert [i.pk for i in listed] == [extra[7].pk, extra[8].pk]
