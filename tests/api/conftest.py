"""Fixtures of the API tests: clients (session, token, staff) and a small shop whose latest
succeeded run has hand-written similarities and recommendations, so expected lists follow
from the data in the test, not from the code under test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from shopreco.models import Deployment, ItemSimilarity, Recommendation, RecomputeRun

API = "/api/reco/"


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def token_client() -> Any:
    def make(user) -> APIClient:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def alice(user_factory):
    return user_factory("alice")


@pytest.fixture
def bob(user_factory):
    return user_factory("bob")


@pytest.fixture
def staff(user_factory):
    return user_factory("staffer", is_staff=True)


@pytest.fixture
def client_alice(token_client, alice) -> APIClient:
    return token_client(alice)


@pytest.fixture
def client_bob(token_client, bob) -> APIClient:
    return token_client(bob)


@pytest.fixture
def client_staff(token_client, staff) -> APIClient:
    return token_client(staff)


@dataclass
class Shop:
    products: list = field(default_factory=list)
    books: Any = None
    games: Any = None
    run: Any = None
    hidden: Any = None


@pytest.fixture
def shop(product_factory, category_factory, alice) -> Shop:
    """Eight products in two categories plus one inactive product; a succeeded run where
    p0's neighbours are p1 > p2 > p3 (similar) and p4 > p5 (also bought), and alice's
    personal list is p6 > p5 (because she rated p0)."""
    books, games = category_factory("Books"), category_factory("Games")
    products = [
        product_factory(f"P{i}", category=books if i < 4 else games) for i in range(8)
    ]
    hidden = product_factory("Hidden", category=books, is_active=False)
    now = timezone.now()
    run = RecomputeRun.objects.create(
        status=RecomputeRun.Status.SUCCEEDED, started_at=now, finished_at=now, progress=100
    )
    Deployment.objects.create(run=run)
    p = products
    rows = [
        (ItemSimilarity.Kind.SIMILAR, p[0], p[1], 0.9),
        (ItemSimilarity.Kind.SIMILAR, p[0], p[2], 0.8),
        (ItemSimilarity.Kind.SIMILAR, p[0], p[3], 0.7),
        (ItemSimilarity.Kind.SIMILAR, p[0], hidden, 0.95),
        (ItemSimilarity.Kind.SIMILAR, p[0], p[4], 0.6),
        (ItemSimilarity.Kind.ALSO_BOUGHT, p[0], p[4], 0.5),
        (ItemSimilarity.Kind.ALSO_BOUGHT, p[0], p[5], 0.4),
    ]
    ItemSimilarity.objects.bulk_create(
        ItemSimilarity(run=run, kind=k, product=a, similar_product=b, score=s)
        for k, a, b, s in rows
    )
    Recommendation.objects.bulk_create([
        Recommendation(run=run, user=alice, product=p[6], score=4.5, rank=1, reason="rated",
                       reason_product=p[0]),
        Recommendation(run=run, user=alice, product=p[5], score=4.0, rank=2, reason="rated",
                       reason_product=p[0]),
    ])
    return Shop(products=products, books=books, games=games, run=run, hidden=hidden)


def pks(response) -> list:
    return [item["product"]["pk"] for item in response.json()["results"]]
