"""Fault: the cache is down (Django's Redis cache pointed at a closed port).

Nothing in the shop may answer 500 over it: pages and API answer 200 (201 for writes), the
widgets and lists come from the database, DRF's throttles let requests through, and the
outage is logged once, not once per cache call."""

from __future__ import annotations

import logging

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from tests.faults.helpers import API, closed_port, make_shop, widget_items

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shop(category_factory, product_factory, user_factory):
    return make_shop(category_factory, product_factory, user_factory)


@pytest.fixture
def cache_down(settings):
    """Every cache of the site is a Redis nothing answers, as the demo configures Redis;
    throttle rates so low that any counted request past the first would be refused."""
    settings.CACHES = {"default": {
        "BACKEND": "demo_shop.cache.ReusedClientRedisCache",
        "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
    }}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        "shopreco_anon": "1/min", "shopreco_user": "1/min", "shopreco_events": "1/min"}}
    with pytest.raises(Exception):  # noqa: B017 - proves the cache is really gone
        caches["default"].get("anything")


def test_pages_and_api_answer_from_the_database_with_the_cache_down(shop, cache_down,
                                                                   client, caplog):
    from shopreco.models import ItemSimilarity

    caplog.set_level(logging.WARNING, logger="shopreco")
    # A product with co-purchases (also-bought is never padded), and a shopper of the other
    # taste group, who owns none of them.
    product = max(shop.products[:8], key=lambda p: ItemSimilarity.objects.filter(
        run=shop.run, kind="also_bought", product=p).count())
    shopper = shop.users[1]
    pages = ["/", f"/p/{product.pk}/", f"/c/{shop.category.slug}/", "/cart/"]
    for url in pages:  # a guest
        assert client.get(url).status_code == 200, url
    client.force_login(shopper)
    for url in [*pages, "/account/"]:
        assert client.get(url).status_code == 200, url
    widgets = widget_items(client.get(f"/p/{product.pk}/").content.decode())
    # Computed, not left out. The product's few co-purchases are among its similar products
    # here, so page de-dup leaves also-bought nothing (it is never padded: no box); the
    # API's also-bought/ below lists them.
    assert widgets["similar"] and not widgets.get("also-bought"), widgets
    widgets = widget_items(client.get("/").content.decode())
    assert widgets["for-you"] and widgets["popular"], widgets

    guest, signed_in = APIClient(), APIClient()
    signed_in.force_authenticate(shopper)
    for api in (guest, signed_in):
        for _ in range(3):  # 1/min: the 2nd and 3rd would be 429 if the cache counted them
            for url in (f"products/{product.pk}/similar/", f"products/{product.pk}/also-bought/",
                        "recommendations/", "popular/"):
                response = api.get(API + url)
                assert response.status_code == 200, (url, response.status_code)
                assert response.json()["results"], url
            response = api.post(API + "events/", {"product": product.pk, "type": "cart"},
                                format="json")
            assert response.status_code in (200, 201), response.content  # 200: a repeat
    response = signed_in.post(API + "ratings/", {"product": product.pk, "score": 2},
                              format="json")
    assert response.status_code in (200, 201), response.content  # new, or an update

    outages = [r for r in caplog.records if "cache unavailable" in r.getMessage()]
    assert len(outages) == 1, [r.getMessage() for r in outages]  # once, not per call
    assert outages[0].exc_info
