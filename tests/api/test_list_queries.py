"""What a list costs once the caches are warm, and that the caches never serve a product
that was changed or deleted."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from .conftest import API, pks


def before_response(queries) -> list[str]:
    """The statements run for the response (the impression INSERT comes after it)."""
    return [q["sql"] for q in queries if not q["sql"].startswith("INSERT")]


def test_a_cached_similar_list_costs_one_query(shop, anon):
    url = f"{API}products/{shop.products[0].pk}/similar/?limit=3"
    first = anon.get(url)
    with CaptureQueriesContext(connection) as seen:
        again = anon.get(url)
    assert pks(again) == pks(first) == [p.pk for p in shop.products[1:4]]
    assert len(before_response(seen.captured_queries)) == 1  # the candidates, filtered


def test_a_cached_popular_list_costs_one_query(shop, anon):
    anon.get(f"{API}popular/?limit=3")
    with CaptureQueriesContext(connection) as seen:
        assert anon.get(f"{API}popular/?limit=3").status_code == 200
    assert len(before_response(seen.captured_queries)) == 1  # re-checking availability


def test_a_deleted_product_is_not_found_even_when_cached(shop, anon):
    page = shop.products[0]
    assert anon.get(f"{API}products/{page.pk}/similar/").status_code == 200
    page.delete()
    assert anon.get(f"{API}products/{page.pk}/similar/").status_code == 404


def test_a_renamed_product_is_named_anew_in_reasons(shop, anon):
    page = shop.products[0]
    url = f"{API}products/{page.pk}/similar/?limit=1"
    assert "P0" in anon.get(url).json()["results"][0]["reason"]
    page.name = "Renamed"
    page.save()
    assert "Renamed" in anon.get(url).json()["results"][0]["reason"]
