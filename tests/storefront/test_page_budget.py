"""What a product page's two widgets cost, counted rather than timed (the machine is shared):
database queries (CaptureQueriesContext) and cache round trips (calls through
``shopreco.cache.Guarded``), against the budget of three queries per widget; and no session
write on a repeat visit.

The widgets' cost is the page with them minus the same page without them
(tests/storefront/budget_urls.py), both after a first visit, so the view event (written once,
then a repeat within EVENT_DEDUP_SECONDS) and the request state are in both."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from shopreco import cache
from shopreco.models import ItemSimilarity, Rating

pytestmark = pytest.mark.django_db


@pytest.fixture
def cache_calls(monkeypatch):
    """Names of the Guarded cache calls made (one round trip each)."""
    calls: list[str] = []
    call = cache.Guarded._call

    def counted(self, op, miss):
        calls.append(op.__code__.co_names[-1])  # get, get_many, set, add, delete
        return call(self, op, miss)

    monkeypatch.setattr(cache.Guarded, "_call", counted)
    return calls


def tables(sql: str) -> str:
    """What a statement is, for the assertions: "SELECT shopreco_impression" etc."""
    verb = sql.split()[0]
    table = re.search(r'(?:FROM|INTO|UPDATE) "(\w+)"', sql)
    return f"{verb} {table.group(1) if table else '?'}"


def page(client, url, calls):
    calls.clear()
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return [tables(q["sql"]) for q in ctx.captured_queries], list(calls), response


def widget_cost(client, pk, calls):
    """(queries, cache calls) the widgets add to page ``pk``: first render, then again."""
    url = f"/page/{pk}/"
    page(client, url, calls)  # the first visit records the view; later ones repeat it
    base, base_calls, _ = page(client, url, calls)
    out = []
    for _ in range(2):
        got, got_calls, response = page(client, url + "?w=1", calls)
        extra = list(got)
        for statement in base:  # the page's own statements, the rest are the widgets'
            extra.remove(statement)
        out.append((extra, len(got_calls) - len(base_calls), response.content.decode()))
    return out


@override_settings(ROOT_URLCONF="tests.storefront.budget_urls")
def test_a_signed_in_shoppers_two_widgets_cost_at_most_three_queries_each(
        shop, client, cache_calls):
    from shopreco import services

    services.popularity_ranking(), services.popularity_ranking(shop.books)  # beat keeps these
    client.force_login(shop.alice)
    (cold, cold_calls, html), (warm, warm_calls, _) = widget_cost(
        client, shop.products[0].pk, cache_calls)
    assert html.count("data-shopreco-product=") == 4 + 2  # similar, then 2 co-purchases
    neighbours, products = "SELECT shopreco_itemsimilarity", "SELECT catalog_product"
    impression = "INSERT shopreco_impression"
    # First render after a run: each widget reads its product's neighbours (then cached for
    # every shopper) and loads its products with every filter (the cart and owned products
    # in the same query); one INSERT per list shown, after the response.
    assert sorted(cold) == sorted([neighbours, products, neighbours, products,
                                   impression, impression])
    # Cached HTML: one query per widget re-checks availability and ownership.
    assert sorted(warm) == sorted([products, products, impression, impression])
    # Cache: the shopper's tokens and the catalogue token once per page, then one read per
    # widget (its candidates and HTML together).
    assert warm_calls == 2 + 2


@override_settings(ROOT_URLCONF="tests.storefront.budget_urls")
def test_a_heavy_rater_pays_no_extra_query_for_an_empty_also_bought(
        db, client, category_factory, product_factory, user_factory, cache_calls):
    """The regression: a shopper who rated most popular products, on a product nobody bought
    with another (MovieLens' every product). Also-bought was padded with popular products,
    most of them this shopper's, so its list query came up short and a second one followed
    (3.5 queries per widget). Never padded, it now costs its neighbour read, cold only."""
    from django.utils import timezone

    from shopreco import services
    from shopreco.models import Deployment, RecomputeRun

    films = category_factory("Films")
    products = [product_factory(f"Film {i}", category=films) for i in range(40)]
    fans = [user_factory(f"fan{i}") for i in range(6)]
    for i, product in enumerate(products[:20]):  # popularity falls with i
        for fan in fans[: max(1, 6 - i // 4)]:
            Rating.objects.create(user=fan, product=product, score=4)
    heavy = user_factory("heavy")
    for product in products[:16]:
        Rating.objects.create(user=heavy, product=product, score=5)
    run = RecomputeRun.objects.create(status="succeeded", finished_at=timezone.now())
    Deployment.objects.create(run=run)
    page_product = products[30]
    ItemSimilarity.objects.bulk_create([
        ItemSimilarity(run=run, kind="similar", product=page_product,
                       similar_product=products[20 + k], score=1 - k / 10) for k in range(8)])
    services.popularity_ranking(), services.popularity_ranking(films)
    client.force_login(heavy)
    (cold, _, html), (warm, _, _) = widget_cost(client, page_product.pk, cache_calls)
    assert 'data-shopreco-widget="also-bought"' not in html
    assert html.count("data-shopreco-product=") == 4
    assert sorted(cold) == sorted(["SELECT shopreco_itemsimilarity"] * 2 + [
        "SELECT catalog_product", "INSERT shopreco_impression"])
    assert sorted(warm) == ["INSERT shopreco_impression", "SELECT catalog_product"]


def session_writes(client, url, **kw):
    with CaptureQueriesContext(connection) as ctx:
        response = (client.post if kw else client.get)(url, kw or None)
    assert response.status_code in (200, 204), response.status_code
    return [q["sql"].split()[0] for q in ctx.captured_queries
            if '"django_session"' in q["sql"] and not q["sql"].startswith("SELECT")]


@pytest.mark.parametrize("signed_in", [True, False])
def test_a_repeat_visit_writes_no_session(shop, client, signed_in):
    """The anonymous id is pinned in the session once, when shopreco first sees the
    session; product pages and lists after that only read it."""
    if signed_in:
        client.force_login(shop.alice)
    first = session_writes(client, f"/p/{shop.products[0].pk}/")
    assert first == ([] if signed_in else ["INSERT", "UPDATE"])  # Django's create, then data
    for product in shop.products[:3]:
        assert session_writes(client, f"/p/{product.pk}/") == []
        assert session_writes(client, f"/api/reco/products/{product.pk}/similar/") == []
    assert session_writes(client, "/api/reco/recommendations/") == []


def test_a_click_already_remembered_writes_no_session(shop, client):
    client.force_login(shop.alice)
    html = client.get(f"/p/{shop.products[0].pk}/").content.decode()
    pk, rec = re.search(r'data-shopreco-product="(\d+)" data-shopreco-recommendation="(\w+)"',
                        html).groups()
    assert session_writes(client, "/shopreco/click/", rec=rec, product=pk) == ["UPDATE"]
    assert session_writes(client, "/shopreco/click/", rec=rec, product=pk) == []
    assert session_writes(client, f"/p/{pk}/?rec={rec}") == []  # the click's own page view
    client.post(f"/p/{pk}/add/", {"quantity": 1})
    from shopreco.models import Interaction

    assert Interaction.objects.get(user=shop.alice, product_id=pk, kind="cart"
                                   ).recommendation_id == rec  # still credited
