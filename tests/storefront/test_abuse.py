"""Popularity is not for sale (issue #17): forged and scripted events on the demo shop's data.

The demo's seeded shop (600 products, 300 customers, 90 days of history) is recomputed, its
popular/ top 10 read, then attacked through the events API and recomputed again:

- 2,000 events from one client (a browser session, then a token user), whatever its headers,
  leave popular/ top 10 unchanged: purchases are refused, repeats are stored once;
- 150 scripted anonymous sessions that each view product X and try to buy it (and a
  bestseller with it) leave X out of popular/ top 10 and out of every also-bought list.

Throttling is not what holds here (the test settings allow 10,000 events a minute): only what
is stored and how it is counted.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from io import StringIO

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from shopreco import pipeline
from shopreco.models import Interaction, ItemSimilarity, RecomputeRun, distinct_shoppers
from shopreco.serving import popularity

pytestmark = pytest.mark.django_db
API = "/api/reco/"
EVENTS = f"{API}events/"

@pytest.fixture
def demo(db, settings):
    settings.SHOPRECO = {**settings.SHOPRECO, "REFRESH_ON_VIEW": False,
                         "SNAPSHOT_PREFIX": f"test-abuse-{timezone.now().timestamp()}"}
    call_command("seed_demo", stdout=StringIO())
    pipeline.run_full_recompute()


def popular_top10() -> list:
    caches["default"].clear()  # the ranking is cached for CACHE_TIMEOUT: read it afresh
    response = APIClient().get(f"{API}popular/", {"limit": 10})
    assert response.status_code == 200
    return [item["product"]["pk"] for item in response.json()["results"]]


def unbought_product() -> int:
    """The least popular available product nobody bought: the attackers' X."""
    from demo_shop.catalog.models import Product

    bought = Interaction.objects.filter(kind="purchase").values("product_id")
    ranked = {pk: score for pk, score, _ in popularity.build_ranking(None)}
    candidates = Product.objects.filter(is_active=True, in_stock=True).exclude(pk__in=bought)
    return min(candidates.values_list("pk", flat=True), key=lambda pk: (ranked.get(pk, 0), pk))


HEADERS = [
    {"HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64)", "HTTP_SEC_GPC": "0"},
    {"HTTP_USER_AGENT": "curl/8.5", "HTTP_REFERER": "https://shop.example/"},
    {"HTTP_ACCEPT_LANGUAGE": "de-DE", "HTTP_X_REQUESTED_WITH": "XMLHttpRequest"},
    {"HTTP_ORIGIN": "https://shop.example", "HTTP_DNT": "1"},
]


def forge(client: APIClient, product: int, n: int) -> dict[int, int]:
    """``n`` events of ``product`` (view, cart, purchase in turn) with rotating headers and
    forwarded addresses; returns the number of responses per status code."""
    codes: dict[int, int] = {}
    kinds = itertools.cycle(["purchase", "view", "cart"])
    for i in range(n):
        headers = {**HEADERS[i % len(HEADERS)],
                   "HTTP_X_FORWARDED_FOR": f"10.0.{i // 250}.{i % 250}"}
        response = client.post(EVENTS, {"product": product, "type": next(kinds)}, format="json",
                               **headers)
        codes[response.status_code] = codes.get(response.status_code, 0) + 1
    return codes


def test_forged_events_from_one_client_leave_popular_unchanged(demo, user_factory):
    before = popular_top10()
    target = unbought_product()
    rows = Interaction.objects.count()

    browser = APIClient()  # keeps its session cookie
    codes = forge(browser, target, 1000)
    token_client = APIClient()
    token_client.force_authenticate(user_factory("forger"))
    codes_token = forge(token_client, target, 1000)

    # Purchases refused (400), the first view and cart stored (201), repeats not (200).
    assert codes == codes_token == {400: 334, 201: 2, 200: 664}
    assert Interaction.objects.count() == rows + 4
    assert not Interaction.objects.filter(product_id=target, kind="purchase").exists()
    pipeline.run_full_recompute()
    assert popular_top10() == before


def test_popularity_counts_shoppers_not_rows(product_factory, user_factory):
    """What :func:`distinct_shoppers` counts per product, kind and day: the rows a repeat
    every EVENT_DEDUP_SECONDS leaves for a whole day are one shopper; a session weighs
    ANONYMOUS_WEIGHT; days are counted apart."""
    product = product_factory()
    alice, bob = user_factory(), user_factory()
    today = timezone.now()
    yesterday = today - timedelta(days=1)
    rows = [Interaction(user=alice, product=product, kind="view", created_at=today)
            for _ in range(144)]
    rows += [Interaction(user=bob, product=product, kind="view", created_at=today),
             Interaction(user=bob, product=product, kind="view", created_at=yesterday),
             Interaction(user=bob, product=product, kind="cart", created_at=today)]
    rows += [Interaction(session_key=f"s{i % 3}", product=product, kind="view",
                         created_at=today) for i in range(144)]
    rows += [Interaction(product=product, kind="view", created_at=today) for _ in range(2)]
    Interaction.objects.bulk_create(rows)
    counted = {
        (kind, day): n for kind, day, n in
        Interaction.objects.annotate(day=TruncDate("created_at"))
        .values("kind", "day").annotate(n=distinct_shoppers())
        .values_list("kind", "day", "n").order_by()
    }
    day, before = timezone.localdate(today), timezone.localdate(yesterday)
    # alice and bob, three sessions at 0.2, two rows without a session at 0.2 each
    assert counted == {("view", day): pytest.approx(2 + 0.6 + 0.4),
                       ("view", before): pytest.approx(1.0),
                       ("cart", day): pytest.approx(1.0)}
    with override_settings(SHOPRECO={"ANONYMOUS_WEIGHT": 0}):
        only_users = Interaction.objects.filter(kind="view").aggregate(n=distinct_shoppers())
    assert only_users["n"] == pytest.approx(2.0)


def scripted_sessions(target: int, companion: int, n: int = 150) -> list[int]:
    """``n`` fresh anonymous sessions, each viewing ``target`` and trying to buy it together
    with ``companion``; returns the status codes of the purchases."""
    codes = []
    for i in range(n):
        client = APIClient()
        headers = {**HEADERS[i % len(HEADERS)], "HTTP_X_FORWARDED_FOR": f"192.0.2.{i % 250}"}
        assert client.post(EVENTS, {"product": target, "type": "view"}, format="json",
                           **headers).status_code == 201
        for product in (target, companion):
            codes.append(client.post(EVENTS, {"product": product, "type": "purchase"},
                                     format="json", **headers).status_code)
    return codes


def also_bought_lists_with(product: int) -> int:
    run = RecomputeRun.latest_succeeded()
    return ItemSimilarity.objects.filter(run=run, kind="also_bought",
                                         similar_product_id=product).count()


def test_scripted_sessions_cannot_buy_into_also_bought(demo):
    target = unbought_product()
    companion = popular_top10()[0]
    codes = scripted_sessions(target, companion)
    assert set(codes) == {400}
    pipeline.run_full_recompute()
    assert also_bought_lists_with(target) == 0
    listing = APIClient().get(f"{API}products/{companion}/also-bought/", {"limit": 10}).json()
    assert target not in [item["product"]["pk"] for item in listing["results"]]


def test_scripted_sessions_cannot_view_into_popular(demo):
    before = popular_top10()
    target = unbought_product()
    views = Interaction.objects.filter(product_id=target, kind="view")
    seeded = views.count()
    scripted_sessions(target, before[0])
    assert views.count() == seeded + 150  # every session's view was stored
    pipeline.run_full_recompute()
    after = popular_top10()
    assert target not in after
    assert after == before


def test_sessions_a_host_lets_post_purchases_stay_out_of_also_bought(demo):
    """Even where clients may post purchases, anonymous sessions' purchases do not count in
    co-occurrence (a cosine: any weight above zero would let a crowd of them through)."""
    target = unbought_product()
    companion = popular_top10()[0]
    with override_settings(SHOPRECO={"CLIENT_EVENT_KINDS": ["view", "cart", "purchase"],
                                     "REFRESH_ON_VIEW": False}):
        codes = scripted_sessions(target, companion)
        assert set(codes) == {201}
        pipeline.run_full_recompute()
    assert also_bought_lists_with(target) == 0
    bought = (Interaction.objects.filter(kind="purchase", user__isnull=True)
              .aggregate(n=Count("session_key", distinct=True))["n"])
    assert bought == 150  # stored: the sessions own what they bought
