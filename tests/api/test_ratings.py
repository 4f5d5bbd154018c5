"""ratings/: own ratings only, upsert on POST, validation, pagination, CSRF and token auth."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from shopreco.models import Rating
from tests.api.conftest import API

pytestmark = pytest.mark.django_db
URL = f"{API}ratings/"


def test_anonymous_cannot_rate_or_list(anon, shop):
    assert anon.get(URL).status_code in (401, 403)
    response = anon.post(URL, {"product": shop.products[0].pk, "score": 4}, format="json")
    assert response.status_code in (401, 403)
    assert not Rating.objects.exists()


def test_create_then_post_again_updates(client_alice, alice, shop):
    p = shop.products[1]
    first = client_alice.post(URL, {"product": p.pk, "score": 4}, format="json")
    assert first.status_code == 201
    assert first.json()["product"] == p.pk and first.json()["score"] == 4
    second = client_alice.post(URL, {"product": p.pk, "score": 2}, format="json")
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert list(Rating.objects.filter(user=alice).values_list("product_id", "score")) == [
        (p.pk, 2.0)
    ]


def test_list_shows_only_own_ratings_paginated(client_alice, alice, bob, shop):
    for product in shop.products[:3]:
        Rating.objects.create(user=alice, product=product, score=3)
    Rating.objects.create(user=bob, product=shop.products[4], score=5)
    body = client_alice.get(URL, {"page_size": 2}).json()
    assert body["count"] == 3
    assert len(body["results"]) == 2 and body["next"]
    page2 = client_alice.get(URL, {"page_size": 2, "page": 2}).json()
    seen = {r["product"] for r in body["results"] + page2["results"]}
    assert seen == {p.pk for p in shop.products[:3]}
    only = client_alice.get(URL, {"product": shop.products[1].pk}).json()
    assert [r["product"] for r in only["results"]] == [shop.products[1].pk]
    assert client_alice.get(URL, {"product": "abc"}).status_code == 400
    assert client_alice.get(URL, {"page": 99}).status_code == 404


def test_cross_user_access_is_404(client_alice, client_bob, bob, shop):
    rating = Rating.objects.create(user=bob, product=shop.products[0], score=5)
    url = f"{URL}{rating.pk}/"
    assert client_alice.get(url).status_code == 404
    assert client_alice.put(url, {"product": shop.products[0].pk, "score": 1},
                            format="json").status_code == 404
    assert client_alice.patch(url, {"score": 1}, format="json").status_code == 404
    assert client_alice.delete(url).status_code == 404
    rating.refresh_from_db()
    assert rating.score == 5
    assert client_bob.get(url).status_code == 200


def test_update_and_delete_own(client_alice, alice, shop):
    rating = Rating.objects.create(user=alice, product=shop.products[0], score=2)
    url = f"{URL}{rating.pk}/"
    assert client_alice.patch(url, {"score": 5}, format="json").json()["score"] == 5
    assert client_alice.put(url, {"score": 3}, format="json").status_code == 200
    same_product = client_alice.put(url, {"product": shop.products[0].pk, "score": 4},
                                    format="json")
    assert same_product.status_code == 200
    other = client_alice.put(url, {"product": shop.products[1].pk, "score": 4}, format="json")
    assert other.status_code == 400 and "product" in other.json()
    rating.refresh_from_db()
    assert (rating.product_id, rating.score) == (shop.products[0].pk, 4)
    assert client_alice.delete(url).status_code == 204
    assert not Rating.objects.filter(pk=rating.pk).exists()


@pytest.mark.parametrize("bad_id", ["abc", "0", "-1", "1.5", "9" * 30])
def test_bad_rating_ids_are_404(client_alice, shop, bad_id):
    assert client_alice.get(f"{URL}{bad_id}/").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"product": "P", "score": 4}, "product"),
        ({"score": 4}, "product"),
        ({"product": 999999, "score": 4}, "product"),
        ({"product": True, "score": 4}, "product"),
        ({"product": 1.0, "score": 4}, "product"),
        ({"product": [1], "score": 4}, "product"),
        ({"product": None, "score": 4}, "product"),
        ({"product": "PK", "score": 0}, "score"),
        ({"product": "PK", "score": 6}, "score"),
        ({"product": "PK", "score": 3.5}, "score"),
        ({"product": "PK", "score": "x"}, "score"),
        ({"product": "PK", "score": True}, "score"),
        ({"product": "PK"}, "score"),
    ],
)
def test_validation_names_the_field(client_alice, shop, body, field):
    body = {k: (shop.products[0].pk if v == "PK" else v) for k, v in body.items()}
    response = client_alice.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Rating.objects.exists()


@pytest.mark.parametrize("score", ["1e999", "-1e999", "1e-999"])
def test_overflowing_scores_are_400(client_alice, shop, score):
    payload = f'{{"product": {shop.products[0].pk}, "score": {score}}}'
    response = client_alice.post(URL, payload, content_type="application/json")
    assert response.status_code == 400
    assert "score" in response.json()


def test_unavailable_product_cannot_be_rated(client_alice, shop):
    response = client_alice.post(URL, {"product": shop.hidden.pk, "score": 4}, format="json")
    assert response.status_code == 400
    assert "product" in response.json()


def test_scale_follows_settings(client_alice, shop):
    with override_settings(SHOPRECO={"RATING_HALF_STARS": True, "RATING_MAX": 10}):
        ok = client_alice.post(URL, {"product": shop.products[0].pk, "score": 8.5},
                               format="json")
        assert ok.status_code == 201
        schema = client_alice.get(f"{API}schema/", {"format": "json"}).json()
    score = schema["components"]["schemas"]["Rating"]["properties"]["score"]
    assert (score["maximum"], score["multipleOf"]) == (10.0, 0.5)


@pytest.mark.parametrize(
    "payload", [b"{", b"[]", b'"x"', b"null", b'{"product": NaN, "score": 4}', b"\xff\xfe"]
)
def test_malformed_json_is_400(client_alice, shop, payload):
    response = client_alice.post(URL, payload, content_type="application/json")
    assert response.status_code == 400


def test_session_writes_need_csrf_token(alice, shop):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    body = {"product": shop.products[0].pk, "score": 4}
    refused = client.post(URL, body, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    # With the token from the cookie it goes through.
    client.get("/login/")  # any page that sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    ok = client.post(URL, body, format="json", HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 201


def test_token_auth_needs_no_csrf(alice, token_client, shop):
    client = token_client(alice)
    client.handler.enforce_csrf_checks = True
    response = client.post(URL, {"product": shop.products[0].pk, "score": 4}, format="json")
    assert response.status_code == 201


def test_invalid_token_is_rejected(shop):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get(URL)
    assert response.status_code in (401, 403)  # 403 when session auth is listed first
    assert "token" in response.json()["detail"].lower()


def test_listing_ratings_costs_the_same_queries_for_any_page_size(
        client_alice, alice, shop, django_assert_max_num_queries):
    """Products are written as keys from the rating row: no query per rating."""
    for product in shop.products[:5]:
        Rating.objects.create(user=alice, product=product, score=4)
    with django_assert_max_num_queries(4):  # session/auth, count, page (+ throttle on SQLite)
        body = client_alice.get(URL).json()
    assert sorted(r["product"] for r in body["results"]) == sorted(
        p.pk for p in shop.products[:5])
