"""A small shop whose served run has hand-written results: Alice has a personal list and
ratings, Bob has his own; staff and a plain user for permission checks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client
from django.utils import timezone

from shopreco.models import Deployment, ItemSimilarity, Rating, Recommendation, RecomputeRun

EVIL = '<script>alert("pwn")</script>'


@dataclass
class Shop:
    alice: object
    bob: object
    staff: object
    products: list
    evil: object
    run: RecomputeRun
    alice_rating: Rating
    alice_only: list  # products only Alice's personal list contains


@pytest.fixture
def shop(user_factory, product_factory, category_factory, django_user_model) -> Shop:
    evil_category = category_factory(f"Cat {EVIL}")
    products = [product_factory() for _ in range(12)]
    evil = product_factory(name=f"Gadget {EVIL}", category=evil_category)
    alice = user_factory("alice-3f9c")
    bob = user_factory("bob-77aa")
    staff = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    run = RecomputeRun.objects.create(status=RecomputeRun.Status.SUCCEEDED,
                                      finished_at=timezone.now())
    Deployment.objects.create(run=run)
    alice_rating = Rating.objects.create(user=alice, product=evil, score=5)
    Rating.objects.create(user=bob, product=products[0], score=4)
    alice_only = products[8:11]
    for rank, p in enumerate(alice_only):
        Recommendation.objects.create(run=run, user=alice, product=p, score=3 - rank, rank=rank,
                                      reason="rated", reason_product=evil)
    for rank, p in enumerate(products[1:3]):
        Recommendation.objects.create(run=run, user=bob, product=p, score=2 - rank, rank=rank,
                                      reason="rated", reason_product=products[0])
    for i, p in enumerate(products[:8]):
        ItemSimilarity.objects.create(run=run, product=evil, similar_product=p, score=1 - i / 10)
        ItemSimilarity.objects.create(run=run, product=p, similar_product=evil, score=0.5)
        ItemSimilarity.objects.create(run=run, kind="also_bought", product=p,
                                      similar_product=evil, score=0.5)
    return Shop(alice, bob, staff, products, evil, run, alice_rating, list(alice_only))


def client_for(user=None, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    if user is not None:
        client.force_login(user)
    return client
