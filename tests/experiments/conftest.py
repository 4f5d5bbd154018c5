"""A small shop with two runs: run A live (deployed), run B succeeded but not live, each
with its own "similar" neighbours and personal list, so a list tells which run it came from;
and an experiment factory whose arms serve the live run, a pinned run or a configuration."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.utils import timezone

from shopreco.models import (
    Deployment,
    Experiment,
    ExperimentArm,
    ItemSimilarity,
    Recommendation,
    RecomputeRun,
)


def _run(products, order, user, picks):
    run = RecomputeRun.objects.create(status=RecomputeRun.Status.SUCCEEDED,
                                      finished_at=timezone.now())
    sims = [
        ItemSimilarity(run=run, kind="similar", product=a, similar_product=b,
                       score=1.0 / (1 + order(i, j)))
        for i, a in enumerate(products) for j, b in enumerate(products) if a != b
    ]
    ItemSimilarity.objects.bulk_create(sims)
    Recommendation.objects.bulk_create([
        Recommendation(run=run, user=user, product=products[k], score=5 - r, rank=r + 1,
                       reason="rated", reason_product=products[0])
        for r, k in enumerate(picks)
    ])
    return run


@pytest.fixture
def shop(db, category_factory, product_factory, user_factory):
    """Ten products; run A (live) ranks a product's neighbours by closeness (product 1
    first for product 0), run B by distance (product 9 first)."""
    books = category_factory("Books")
    p = [product_factory(f"Book {i}", category=books) for i in range(10)]
    alice = user_factory("alice")
    run_b = _run(p, lambda i, j: 10 - abs(i - j), alice, [8, 9, 7, 6])
    run_a = _run(p, lambda i, j: abs(i - j), alice, [3, 4, 5, 2])
    Deployment.objects.create(run=run_a)
    return SimpleNamespace(products=p, run_a=run_a, run_b=run_b, alice=alice)


@pytest.fixture
def experiment(shop):
    """``experiment(shares=(50, 50), status="running")``: arm A serves the live run, arm B
    is pinned to run B."""

    def make(shares=(50, 50), status=Experiment.Status.RUNNING, b=None):
        exp = Experiment.objects.create(
            name="B test", status=status,
            started_at=timezone.now() if status == Experiment.Status.RUNNING else None)
        a_arm = ExperimentArm.objects.create(experiment=exp, name="A", share=shares[0])
        b_arm = ExperimentArm.objects.create(experiment=exp, name="B", share=shares[1],
                                             **(b or {"pinned_run": shop.run_b}))
        return SimpleNamespace(experiment=exp, a=a_arm, b=b_arm)

    return make


@pytest.fixture
def make_request(rf):
    """A GET request with a real (saved) session and the given user."""
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore

    def make(user=None, path="/", headers=None, session=True, session_store=None):
        request = rf.get(path, headers=headers or {})
        request.user = user or AnonymousUser()
        if session:
            request.session = session_store or SessionStore()
            if not request.session.session_key:
                request.session.save()
        return request

    return make
