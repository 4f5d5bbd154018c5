"""A small shop with known rows: products, users, ratings, events, impressions, runs and
recommendations, created directly (no pipeline), so insights can be checked against them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from shopreco.adapter import DefaultAdapter
from shopreco.models import (
    Deployment,
    Impression,
    Interaction,
    Rating,
    Recommendation,
    RecomputeRun,
)


class NoPriceForSamplesAdapter(DefaultAdapter):
    """Free samples have no price: revenue must leave them out."""

    def get_price(self, product):
        return None if product.name.startswith("Free sample") else product.price


ADAPTER = "tests.admin.conftest.NoPriceForSamplesAdapter"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def shop(db, product_factory, user_factory, settings):
    settings.SHOPRECO = {**getattr(settings, "SHOPRECO", {}), "ADAPTER": ADAPTER}
    now = timezone.now()
    recent, old = now - timedelta(days=1), now - timedelta(days=60)
    products = [
        product_factory(f"Product {i}", price=Decimal(f"{10 + i}.50")) for i in range(10)
    ]
    sample = product_factory("Free sample tea", price=Decimal("0.00"))
    products.append(sample)
    users = [user_factory(f"shopper{i}") for i in range(5)]

    # Popularity with a clear order: product i gets (10 - i) ratings+events, some none.
    for i, p in enumerate(products[:6]):
        for j, u in enumerate(users[: max(0, 5 - i)]):
            Rating.objects.create(user=u, product=p, score=float(1 + (i + j) % 5))

    impressions = {}
    for n, widget in enumerate(["similar", "similar", "similar", "for-you", "for-you", "popular"]):
        imp = Impression.objects.create(
            widget=widget, user=users[n % 5], products=[p.pk for p in products[:4]],
            created_at=recent,
        )
        impressions.setdefault(widget, []).append(imp)
    old_imp = Impression.objects.create(widget="similar", user=users[0], created_at=old)

    def event(kind, product, imp=None, user=None, when=recent, rec_id=None):
        return Interaction.objects.create(
            user=user or users[0], product=product, kind=kind, created_at=when,
            recommendation_id=(imp.recommendation_id if imp else rec_id),
        )

    sim, fy = impressions["similar"], impressions["for-you"]
    event("view", products[1], sim[0])
    event("view", products[2], sim[1])
    event("cart", products[2], sim[1])
    event("purchase", products[2], sim[1])
    event("view", products[3], fy[0], user=users[1])
    event("view", products[4], fy[1], user=users[2])
    event("cart", products[4], fy[1], user=users[2])
    event("purchase", products[4], fy[1], user=users[2])
    event("purchase", products[4], fy[0], user=users[3])
    event("purchase", sample, fy[0], user=users[3])  # unpriced
    event("purchase", products[0], user=users[4])  # not from a recommendation
    event("purchase", products[5], rec_id="no-such-list")  # unknown widget
    event("view", products[1], old_imp, when=old)  # outside the window
    event("purchase", products[6], old_imp, when=old)  # outside the window
    Interaction.objects.create(session_key="abc123", product=products[7], kind="view",
                               created_at=recent)

    full = RecomputeRun.objects.create(
        kind="full", status="succeeded", stage="done", progress=100,
        started_at=now - timedelta(hours=2, seconds=42), finished_at=now - timedelta(hours=2),
        counts={"users": 5, "products": 11, "recommendations": 12},
        metrics={"coverage": 0.4}, timings={"total": 41.5},
        created_at=now - timedelta(hours=2, minutes=1),
    )

    Deployment.objects.create(run=full)
    RecomputeRun.objects.create(
        kind="full", status="failed", error="Traceback...\nValueError: boom",
        created_at=now - timedelta(hours=1),
    )
    evaluations = []
    for d, (rmse, prec) in enumerate([(0.95, 0.10), (0.91, 0.12), (0.88, 0.15)]):
        evaluations.append(RecomputeRun.objects.create(
            kind="evaluation", status="succeeded",
            created_at=now - timedelta(days=3 - d), finished_at=now - timedelta(days=3 - d),
            metrics={"rmse": rmse, "precision@10": prec, "ndcg@10": prec * 1.5,
                     "coverage": 0.3 + d / 10, "popularity_bias": 40 - d, "gini": 0.8 - d / 20},
        ))
    # Recommendations: products 6..9 (tail) and 0..1 (head) in various lists.
    lists = {
        users[0]: [products[6], products[0], products[7]],
        users[1]: [products[6], products[8], products[0]],
        users[2]: [products[6], products[1]],
        users[3]: [products[9], products[7]],
        users[4]: [products[6], products[0]],
    }
    for user, recs in lists.items():
        for rank, p in enumerate(recs, start=1):
            Recommendation.objects.create(run=full, user=user, product=p, rank=rank,
                                          score=1.0 / rank, reason="rated",
                                          reason_product=products[1])
    return {
        "now": now, "products": products, "users": users, "full": full,
        "evaluations": evaluations, "impressions": impressions,
    }
