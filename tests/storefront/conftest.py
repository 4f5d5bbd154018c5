"""Fixtures for the storefront: a small catalogue with a succeeded run written directly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.cache import caches
from django.utils import timezone

from shopreco.models import Deployment


@pytest.fixture(autouse=True)
def _clear_cache():
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def shop(db, category_factory, product_factory, user_factory):
    """Two categories, ten products, one succeeded run with neighbours and a personal list."""
    from shopreco.models import ItemSimilarity, Recommendation, RecomputeRun

    books = category_factory("Books")
    games = category_factory("Games")
    p = [product_factory(f"Book {i}", category=books) for i in range(6)]
    p += [product_factory(f"Game {i}", category=games) for i in range(4)]
    run = RecomputeRun.objects.create(
        status=RecomputeRun.Status.SUCCEEDED, finished_at=timezone.now()
    )
    Deployment.objects.create(run=run)
    sims = []
    for i, a in enumerate(p):
        for j, b in enumerate(p):
            if a != b:
                sims.append(ItemSimilarity(run=run, kind="similar", product=a,
                                           similar_product=b, score=1.0 / (1 + abs(i - j))))
    # also-bought: only Book 0 has co-purchases (Game 0, Game 1)
    sims.append(ItemSimilarity(run=run, kind="also_bought", product=p[0],
                               similar_product=p[6], score=0.9))
    sims.append(ItemSimilarity(run=run, kind="also_bought", product=p[0],
                               similar_product=p[7], score=0.5))
    ItemSimilarity.objects.bulk_create(sims)
    alice = user_factory("alice")
    recs = [
        Recommendation(run=run, user=alice, product=p[k], score=5 - r, rank=r + 1,
                       reason="rated", reason_product=p[0])
        for r, k in enumerate([3, 4, 8, 9])
    ]
    Recommendation.objects.bulk_create(recs)
    return SimpleNamespace(products=p, books=books, games=games, run=run, alice=alice)
