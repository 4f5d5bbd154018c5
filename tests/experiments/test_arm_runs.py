"""The lists of configuration arms: a run of kind ``arm`` per configuration, computed with
that configuration, succeeded but never live, served to the arm's shoppers; requested when
an experiment starts and after a full run goes live."""

from __future__ import annotations

import random

import pytest
from django.utils import timezone

from shopreco import pipeline, services, tasks
from shopreco.models import (
    Deployment,
    Experiment,
    ExperimentArm,
    Interaction,
    Rating,
    Recommendation,
    RecomputeRun,
)
from shopreco.pipeline import runs


@pytest.fixture
def data(product_factory, user_factory):
    """Two taste groups over 20 products, 16 shoppers."""
    rng = random.Random(3)
    products = [product_factory() for _ in range(20)]
    users = [user_factory() for _ in range(16)]
    ratings, events = [], []
    for u, user in enumerate(users):
        liked = products[:10] if u % 2 == 0 else products[10:]
        for p in rng.sample(liked, 5):
            ratings.append(Rating(user=user, product=p, score=rng.choice([4, 5])))
            events.append(Interaction(user=user, product=p, kind=rng.choice(["view", "cart"])))
    Rating.objects.bulk_create(ratings)
    Interaction.objects.bulk_create(events)
    return users, products


def _experiment(config):
    exp = Experiment.objects.create(name="knn vs live", status=Experiment.Status.RUNNING,
                                    started_at=timezone.now())
    a = ExperimentArm.objects.create(experiment=exp, name="live", share=0)
    b = ExperimentArm.objects.create(experiment=exp, name="knn", share=1, config=config)
    return exp, a, b


def test_configuration_arm_gets_its_own_run_never_deployed(data, make_request_for):
    live = tasks.run_full_recompute()
    assert RecomputeRun.live() == live
    deployments = Deployment.objects.count()
    exp, a, b = _experiment({"algorithm": "item", "k": 5})
    assert [arm.pk for arm in pipeline.configuration_arms()] == [b.pk]
    computed = pipeline.compute_arm_runs()
    assert len(computed) == 1
    run = computed[0]
    assert (run.kind, run.status) == (RecomputeRun.Kind.ARM, RecomputeRun.Status.SUCCEEDED)
    assert run.params["config"] == {"algorithm": "item", "k": 5}
    assert run.params["algorithm"] == "item" and run.params["k"] == 5
    assert RecomputeRun.live() == live and Deployment.objects.count() == deployments
    assert Recommendation.objects.filter(run=run).exists()
    b.refresh_from_db()
    assert b.run == run
    # a shopper of arm B is served from it, everyone else from the live run
    user = data[0][0]
    assert services.active_run_id(make_request_for(user)) == run.pk
    assert services.active_run_id(make_request_for(None, session=False)) == live.pk
    # pruning keeps it while the experiment runs
    assert run.pk in runs.kept_for_experiments()


def test_invalid_configuration_is_skipped_not_fatal(data):
    tasks.run_full_recompute()
    _, _, bad = _experiment({"algorithm": "nope"})
    assert pipeline.compute_arm_runs() == []
    bad.refresh_from_db()
    assert bad.run is None


def test_arm_runs_follow_a_full_run_that_went_live(data, django_capture_on_commit_callbacks):
    tasks.run_full_recompute()
    exp, _, b = _experiment({"algorithm": "item", "k": 5})
    with django_capture_on_commit_callbacks(execute=True):
        newer = tasks.run_full_recompute()
    b.refresh_from_db()
    assert b.run is not None and b.run.kind == RecomputeRun.Kind.ARM
    assert b.run.pk > newer.pk  # computed after the full run went live
    assert RecomputeRun.live() == newer


def test_no_arm_runs_requested_without_configuration_arms(data):
    run = tasks.run_full_recompute()
    assert tasks.request_arm_runs(run=run) is False
    _experiment({"algorithm": "item", "k": 5})
    assert tasks.request_arm_runs(run=run) is True
    rejected = RecomputeRun(kind=RecomputeRun.Kind.FULL, status=RecomputeRun.Status.REJECTED)
    assert tasks.request_arm_runs(run=rejected) is False


@pytest.fixture
def make_request_for(rf):
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore

    def make(user, session=True):
        request = rf.get("/")
        request.user = user or AnonymousUser()
        if session:
            request.session = SessionStore()
            request.session.save()
        return request

    return make
