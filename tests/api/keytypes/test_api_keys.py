"""The API with a product model keyed by an integer, a UUID or text (with "/" and non-ASCII):
lists by key, ratings and events by key, malformed keys 404/400, the schema's key type."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from shopreco.conf import get_product_model
from shopreco.models import Deployment, Interaction, ItemSimilarity, Rating, RecomputeRun

pytestmark = pytest.mark.django_db
KIND = settings.SHOPRECO_PRODUCT_MODEL.split(".")[0]
API = "/api/reco/"
JSON_KEY = {"intpk": int, "uuidpk": str, "textpk": str}
SCHEMA_KEY = {"intpk": {"type": "integer"}, "uuidpk": {"type": "string", "format": "uuid"},
              "textpk": {"type": "string", "minLength": 1, "maxLength": 64}}
MALFORMED = {"intpk": ["abc", "1.5", "9" * 30], "uuidpk": ["abc", "1", f"{uuid.uuid4()}-x"],
             "textpk": ["x" * 65, "no such sku"]}


def key(product) -> object:
    return product.pk if KIND == "intpk" else str(product.pk)


@pytest.fixture
def products():
    cache.clear()
    model = get_product_model()
    if KIND == "textpk":
        items = [model.objects.create(sku=f"SKU/ä {i:03d}", title=f"Item {i}") for i in range(4)]
    else:
        items = [model.objects.create(name=f"Item {i}") for i in range(4)]
    run = RecomputeRun.objects.create(status="succeeded", finished_at=timezone.now())
    Deployment.objects.create(run=run)
    for other, score in ((items[1], 0.9), (items[2], 0.5)):
        ItemSimilarity.objects.create(run=run, product=items[0], similar_product=other,
                                      score=score)
    return items


@pytest.fixture
def client(django_user_model):
    user = django_user_model.objects.create_user("shopper", password="pw")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    api.user = user
    return api


def test_similar_by_key(client, products):
    url = f"{API}products/{quote(str(products[0].pk))}/similar/"
    response = client.get(url, {"limit": 2})
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["product"]["pk"] for r in results] == [key(products[1]), key(products[2])]
    assert all(isinstance(r["product"]["pk"], JSON_KEY[KIND]) for r in results)
    also = client.get(f"{API}products/{quote(str(products[0].pk))}/also-bought/")
    assert also.status_code == 200


def test_malformed_or_unknown_keys(client, products):
    for bad in MALFORMED[KIND]:
        assert client.get(f"{API}products/{quote(bad)}/similar/").status_code == 404
        response = client.post(f"{API}ratings/", {"product": bad, "score": 3}, format="json")
        assert response.status_code == 400 and "product" in response.json()


def test_rate_and_track_by_key(client, products):
    response = client.post(f"{API}ratings/", {"product": key(products[3]), "score": 4},
                           format="json")
    assert response.status_code == 201, response.content
    assert response.json()["product"] == key(products[3])
    assert Rating.objects.get(user=client.user).product == products[3]
    listed = client.get(f"{API}ratings/", {"product": str(products[3].pk)}).json()
    assert [r["product"] for r in listed["results"]] == [key(products[3])]
    event = client.post(f"{API}events/", {"product": key(products[2]), "type": "cart"},
                        format="json")
    assert event.status_code == 201, event.content
    assert Interaction.objects.get(user=client.user).product == products[2]


def test_schema_documents_the_key_type(client, products):
    schema = client.get(f"{API}schema/", {"format": "json"}).json()
    assert schema["components"]["schemas"]["Rating"]["properties"]["product"] == {
        **SCHEMA_KEY[KIND], "description": "Primary key of a product."}
