"""List endpoints: similar, also-bought, recommendations, popular."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework import serializers

from shopreco.models import Impression, Interaction, Rating
from tests.api.conftest import API, pks

pytestmark = pytest.mark.django_db


def pks_of(body: dict) -> list:
    return [r["product"]["pk"] for r in body["results"]]


def similar_url(product) -> str:
    return f"{API}products/{product.pk}/similar/"


def test_similar_lists_neighbours_by_score_without_unavailable(anon, shop):
    p = shop.products
    anon.session.save()  # a client with a session: a cookie-less one leaves no impressions
    response = anon.get(similar_url(p[0]), {"limit": 4})
    assert response.status_code == 200
    body = response.json()
    # The hidden (inactive) neighbour scores highest but must never be served.
    assert pks(response) == [p[1].pk, p[2].pk, p[3].pk, p[4].pk]
    assert shop.hidden.pk not in pks(response)
    first = body["results"][0]
    # Relevance within the list: the model's score over the best one shown (0.9).
    assert [r["score"] for r in body["results"]] == pytest.approx(
        [1.0, 0.8 / 0.9, 0.7 / 0.9, 0.6 / 0.9], abs=1e-4)
    assert first["reason_kind"] == "similar" and first["source"] == "similar"
    assert "P0" in first["reason"]
    assert set(first["product"]) >= {"pk", "name", "url", "price", "image", "category"}
    assert first["product"]["name"] == "P1"
    assert first["product"]["price"] == "9.99"
    assert first["product"]["url"].endswith(p[1].get_absolute_url())
    assert first["product"]["category"] == {"pk": shop.books.pk, "name": "Books"}
    assert body["recommendation_id"]
    # The served list is logged under its id, so events carrying it are credited.
    impression = Impression.objects.get(recommendation_id=body["recommendation_id"])
    assert impression.products == pks(response)


def test_similar_category_filter(anon, shop):
    p = shop.products
    response = anon.get(similar_url(p[0]), {"limit": 1, "category": shop.games.pk})
    assert response.status_code == 200
    assert pks(response) == [p[4].pk]


@pytest.mark.parametrize("category", ["abc", "999999", "1.5", "9" * 40])
def test_bad_category_is_400_naming_field(anon, shop, category):
    response = anon.get(similar_url(shop.products[0]), {"category": category})
    assert response.status_code == 400
    assert "category" in response.json()


def test_also_bought(anon, shop):
    p = shop.products
    response = anon.get(f"{API}products/{p[0].pk}/also-bought/", {"limit": 2})
    assert response.status_code == 200
    assert pks(response) == [p[4].pk, p[5].pk]
    assert response.json()["results"][0]["reason_kind"] == "also_bought"
    assert [r["score"] for r in response.json()["results"]] == pytest.approx([1.0, 0.8])


def test_also_bought_is_never_padded_with_popular_products(anon, shop):
    p = shop.products
    body = anon.get(f"{API}products/{p[0].pk}/also-bought/", {"limit": 6}).json()
    assert pks_of(body) == [p[4].pk, p[5].pk]  # short rather than padded
    assert {(r["source"], r["reason_kind"]) for r in body["results"]} == {
        ("also_bought", "also_bought")}
    response = anon.get(f"{API}products/{p[1].pk}/also-bought/")  # no co-purchases
    assert response.status_code == 200
    assert response.json()["results"] == [] and response.json()["source"] == "none"


def test_padding_is_labelled_popular_and_ranked_below_the_lists_own_items(anon, shop):
    p = shop.products
    body = anon.get(similar_url(p[0]), {"limit": 7}).json()
    results = body["results"]
    own = [r for r in results if r["source"] == "similar"]
    padding = [r for r in results if r["source"] == "popular"]
    assert [r["product"]["pk"] for r in own] == [p[1].pk, p[2].pk, p[3].pk, p[4].pk]
    assert len(padding) == 3 and results[4:] == padding  # after the neighbours
    assert {r["reason_kind"] for r in padding} <= {"popular", "trending"}
    scores = [r["score"] for r in results]
    assert scores[0] == 1.0 and all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)  # padding never above the neighbours


@pytest.mark.parametrize("endpoint", ["similar", "also-bought"])
@pytest.mark.parametrize(
    "bad_pk", ["abc", "1.5", "-1", "99999999", "9" * 30, "00000000-0000-0000-0000-000000000000",
               "%20", "1%00"],
)
def test_unknown_or_malformed_product_is_404(anon, shop, endpoint, bad_pk):
    response = anon.get(f"{API}products/{bad_pk}/{endpoint}/")
    assert response.status_code == 404


def test_unavailable_product_itself_still_has_similar_products(anon, shop, product_factory):
    """An out-of-stock product page may still offer alternatives."""
    p = shop.products
    p[0].in_stock = False
    p[0].save()
    response = anon.get(similar_url(p[0]), {"limit": 2})
    assert response.status_code == 200
    assert pks(response) == [p[1].pk, p[2].pk]


@pytest.mark.parametrize(
    "limit", ["0", "-3", "51", "abc", "1.5", " ", "1e3", "99999999999999999999"]
)
def test_bad_limit_is_400_naming_limit(anon, shop, limit):
    for url in (similar_url(shop.products[0]), f"{API}popular/", f"{API}recommendations/",
                f"{API}products/{shop.products[0].pk}/also-bought/"):
        response = anon.get(url, {"limit": limit})
        assert response.status_code == 400, (url, limit)
        assert "limit" in response.json()


def test_limit_default_and_max(anon, shop):
    assert len(pks(anon.get(f"{API}popular/"))) == 6  # DEFAULT_LIMIT
    assert len(pks(anon.get(f"{API}popular/", {"limit": ""}))) == 6  # empty = default
    assert len(pks(anon.get(f"{API}popular/", {"limit": 50}))) == 8  # everything available
    with override_settings(SHOPRECO={"MAX_LIMIT": 3}):
        assert anon.get(f"{API}popular/", {"limit": 4}).status_code == 400
        assert len(pks(anon.get(f"{API}popular/", {"limit": 3}))) == 3


def test_popular_by_category_never_shows_unavailable(anon, shop):
    response = anon.get(f"{API}popular/", {"limit": 50, "category": shop.books.pk})
    assert response.status_code == 200
    assert set(pks(response)) == {p.pk for p in shop.products[:4]}


def test_recommendations_for_signed_in_user_are_personal(client_alice, shop):
    p = shop.products
    response = client_alice.get(f"{API}recommendations/", {"limit": 2})
    assert response.status_code == 200
    body = response.json()
    assert pks(response) == [p[6].pk, p[5].pk]
    assert body["source"] == "personal"
    assert body["results"][0]["reason_kind"] == "rated"
    assert "P0" in body["results"][0]["reason"]


def test_recommendations_exclude_products_the_user_rated(client_alice, alice, shop):
    p = shop.products
    Rating.objects.create(user=alice, product=p[6], score=4)
    response = client_alice.get(f"{API}recommendations/", {"limit": 1})
    assert pks(response) == [p[5].pk]


def test_recommendations_are_per_user(client_bob, shop):
    """bob has no personal list: he gets the cold-start chain, never alice's list."""
    response = client_bob.get(f"{API}recommendations/", {"limit": 2})
    assert response.status_code == 200
    assert response.json()["source"] != "personal"
    assert pks(response) != [shop.products[6].pk, shop.products[5].pk]


def test_anonymous_session_cold_start_uses_recent_views(anon, shop):
    p = shop.products
    assert anon.post(f"{API}events/", {"product": p[0].pk, "type": "view"},
                     format="json").status_code == 201
    session_key = anon.cookies["sessionid"].value
    assert Interaction.objects.filter(session_key=session_key, product=p[0]).exists()
    response = anon.get(f"{API}recommendations/", {"limit": 2})
    assert response.status_code == 200
    assert response.json()["source"] == "recent"
    assert pks(response) == [p[1].pk, p[2].pk]
    assert response.json()["results"][0]["reason_kind"] == "viewed"


def test_anonymous_without_session_gets_popular(anon, shop):
    response = anon.get(f"{API}recommendations/")
    assert response.status_code == 200
    assert len(pks(response)) == 6
    assert shop.hidden.pk not in pks(response)


def test_anonymous_lists_are_cacheable_with_etag(anon, shop):
    url = similar_url(shop.products[0])
    first = anon.get(url)
    assert "public" in first["Cache-Control"] and "max-age=300" in first["Cache-Control"]
    assert first["ETag"].startswith('W/"')
    again = anon.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    assert again.content == b""


def test_signed_in_lists_are_private(client_alice, shop):
    response = client_alice.get(f"{API}popular/")
    assert "private" in response["Cache-Control"]
    assert "public" not in response["Cache-Control"]
    assert "Authorization" in response["Vary"]


class NameOnlySerializer(serializers.Serializer):
    pk = serializers.IntegerField()
    name = serializers.CharField()
    shouting = serializers.SerializerMethodField()

    def get_shouting(self, obj) -> str:
        return obj.name.upper()


def test_product_serializer_is_replaceable_by_setting(anon, shop):
    with override_settings(
        SHOPRECO={"API_PRODUCT_SERIALIZER": "tests.api.test_lists.NameOnlySerializer"}
    ):
        response = anon.get(similar_url(shop.products[0]), {"limit": 1})
        schema = anon.get(f"{API}schema/", {"format": "json"}).json()
    assert response.json()["results"][0]["product"] == {
        "pk": shop.products[1].pk, "name": "P1", "shouting": "P1",
    }
    assert "shouting" in schema["components"]["schemas"]["NameOnly"]["properties"]
