"""Evaluate now runs as a task: the request only queues it; what it finds is on the run."""

from __future__ import annotations

import pytest

from shopreco import tasks
from shopreco.models import RecomputeRun

pytestmark = pytest.mark.django_db


def test_an_evaluation_that_cannot_run_is_a_failed_run_saying_why(
        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = tasks.request_evaluation()
    assert run.status == RecomputeRun.Status.PENDING  # as the request saw it
    run.refresh_from_db()
    assert run.status == RecomputeRun.Status.FAILED
    assert "not enough data to evaluate" in run.error


def test_a_redelivered_evaluation_is_not_run_twice(django_capture_on_commit_callbacks):
    run = RecomputeRun.objects.create(kind="evaluation", status="succeeded",
                                      params={"protocol": "holdout", "k": 10, "seed": 0})
    assert tasks.evaluate.apply(args=[run.pk]).get() is None
    run.refresh_from_db()
    assert run.status == RecomputeRun.Status.SUCCEEDED
