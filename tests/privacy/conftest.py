"""Fixtures for the privacy tests: a user with a bit of everything shopreco can store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from shopreco.models import (
    Assignment,
    Deployment,
    Experiment,
    ExperimentArm,
    Impression,
    Interaction,
    PendingRefresh,
    Rating,
    Recommendation,
    RecomputeRun,
)


@dataclass
class Footprint:
    user: Any
    products: list
    run: RecomputeRun
    rows: dict[str, int] = field(default_factory=dict)


@pytest.fixture
def footprint(user_factory, product_factory):
    """Returns ``make(user=None)``: gives a user ratings, events, recommendations in two runs
    (one served, one older), an impression and a pending refresh."""
    products = [product_factory() for _ in range(4)]
    now = timezone.now()
    old_run = RecomputeRun.objects.create(
        status=RecomputeRun.Status.SUCCEEDED, finished_at=now - timedelta(days=1)
    )
    Deployment.objects.create(run=old_run)
    run = RecomputeRun.objects.create(status=RecomputeRun.Status.SUCCEEDED, finished_at=now)
    Deployment.objects.create(run=run)

    def make(user=None) -> Footprint:
        user = user or user_factory()
        Rating.objects.create(user=user, product=products[0], score=5)
        Rating.objects.create(user=user, product=products[1], score=2)
        Interaction.objects.create(user=user, product=products[2], kind="view")
        Interaction.objects.create(
            user=user, product=products[2], kind="purchase", recommendation_id="abc123"
        )
        # Carted two days ago (a cart of the last day would leave products[3], their list's
        # head, out of their lists).
        Interaction.objects.create(user=user, product=products[3], kind="cart",
                                   created_at=now - timedelta(days=2))
        for r, rec_run in enumerate((run, run, old_run)):
            Recommendation.objects.create(
                run=rec_run, user=user, product=products[3 - r], score=1.0 - r / 10, rank=r,
                reason="rated", reason_product=products[0],
            )
        Impression.objects.create(widget="for-you", user=user, products=[products[3].pk])
        PendingRefresh.objects.get_or_create(user=user)  # the rating signal may have made it
        experiment = Experiment.objects.create(name="Footprint", status="running")
        arm = ExperimentArm.objects.create(experiment=experiment, name="A")
        Assignment.objects.create(experiment=experiment, arm=arm, user=user)
        return Footprint(
            user=user, products=products, run=run,
            rows={"ratings": 2, "events": 3, "recommendations": 3, "impressions": 1,
                  "pending_refreshes": 1, "experiment_assignments": 1},
        )

    return make


@pytest.fixture(autouse=True)
def _own_snapshot_prefix(settings):
    """Run files under a prefix of this session: run ids restart with every test database,
    and other test sessions share the media folder (and prune their own run-<id> files)."""
    settings.SHOPRECO = {**(getattr(settings, "SHOPRECO", None) or {}),
                         "SNAPSHOT_PREFIX": f"test-{uuid.uuid4().hex}"}
