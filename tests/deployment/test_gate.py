"""The holdout gate and model selection: nothing goes live untested, a worse run is rejected
and the live run keeps serving; staff activate any kept run (rollback)."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from shopreco import pipeline, tasks
from shopreco.conf import reco_settings
from shopreco.models import Deployment, Recommendation, RecomputeRun
from shopreco.pipeline import runs

pytestmark = pytest.mark.django_db

POPULAR_ONLY = {"ALGORITHM": "auto", "CANDIDATES": [{"algorithm": "popular"}]}


@pytest.fixture
def demo_shop():
    """The demo's own data, small: shoppers with tastes by category and price."""
    call_command("seed_demo", "--customers", "300", "--products", "300", "--seed", "3",
                 stdout=io.StringIO())


def recompute(**settings) -> RecomputeRun:
    with override_settings(SHOPRECO={**reco_settings.user_settings, **settings}):
        reco_settings.reload()
        try:
            return tasks.run_full_recompute()
        finally:
            reco_settings.reload()


@pytest.mark.parametrize("live_algorithm", ["ease", "item"])
def test_a_candidate_set_that_can_only_do_worse_is_rejected(demo_shop, live_algorithm):
    live = recompute(ALGORITHM=live_algorithm)
    assert live.status == RecomputeRun.Status.SUCCEEDED
    assert RecomputeRun.live() == live
    assert live.metrics["holdout"]["skipped"] == "no live run to compare with"

    worse = recompute(**POPULAR_ONLY)

    assert worse.status == RecomputeRun.Status.REJECTED
    report = worse.metrics["holdout"]
    key = report["metric"]
    rows = {row["label"]: row for row in report["rows"]}
    assert rows["popular"]["chosen"] and not rows["popular"]["live"]
    live_row = next(row for row in report["rows"] if row["live"])
    assert not live_row["candidate"] and live_row["label"].startswith(live_algorithm)
    assert rows["popular"]["metrics"][key] < 0.95 * live_row["metrics"][key]
    assert "below the live run's" in report["rejected"] and f"#{live.pk}" in report["rejected"]
    # the shop keeps serving the previous run; the rejected run kept its lists for staff
    assert RecomputeRun.live() == live
    assert Recommendation.objects.filter(run=worse).exists()
    assert Deployment.objects.filter(run=worse).count() == 0


def test_rejected_run_is_served_when_staff_activate_it_anyway(demo_shop, django_user_model):
    live = recompute(ALGORITHM="ease")
    worse = recompute(**POPULAR_ONLY)
    assert worse.status == RecomputeRun.Status.REJECTED
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", "pw")
    deployment = runs.deploy(worse.pk, by=boss)
    worse.refresh_from_db()
    assert RecomputeRun.live() == worse and worse.status == RecomputeRun.Status.SUCCEEDED
    assert deployment.activated_by == boss
    assert deployment.note == "activated by staff despite the holdout gate"
    # and back: a rollback is the same action
    runs.deploy(live.pk, by=boss)
    assert RecomputeRun.live() == live


def test_auto_chooses_the_best_candidate_on_the_holdout(demo_shop):
    run = recompute(ALGORITHM="auto", CANDIDATES=[{"algorithm": "popular"},
                                                  {"algorithm": "ease", "lambda": 50},
                                                  {"algorithm": "item", "k": 20}])
    report = run.metrics["holdout"]
    key = report["metric"]
    assert report["selected"] and len(report["rows"]) == 3
    best = max(report["rows"], key=lambda row: row["metrics"][key])
    assert best["chosen"] and report["chosen"] == best["label"]
    assert run.algorithm == best["config"]["algorithm"] != "popular"
    assert run.params["config"] == best["config"]
    if best["config"]["algorithm"] == "ease":
        assert run.params["ease_lambda"] == 50
    assert run.status == RecomputeRun.Status.SUCCEEDED and RecomputeRun.live() == run
    assert run.timings["holdout"] > 0


def test_selection_every_nth_run_refits_the_last_choice_in_between(demo_shop):
    settings = {"ALGORITHM": "auto", "SELECTION_EVERY": 2,
                "CANDIDATES": [{"algorithm": "popular"}, {"algorithm": "ease"}]}
    first = recompute(**settings)
    second = recompute(**settings)
    third = recompute(**settings)
    assert first.metrics["holdout"]["selected"]
    assert not second.metrics["holdout"]["selected"]
    assert second.params["config"] == first.params["config"]
    assert second.metrics["holdout"]["skipped"] == "the same configuration as the live run"
    assert third.metrics["holdout"]["selected"]


def test_no_tolerance_means_no_gate(demo_shop):
    recompute(ALGORITHM="ease")
    run = recompute(**POPULAR_ONLY, GATE_TOLERANCE=None)
    assert run.status == RecomputeRun.Status.SUCCEEDED and RecomputeRun.live() == run


def test_recompute_command_says_the_run_was_rejected_and_how_to_serve_it(demo_shop):
    live = recompute(ALGORITHM="ease")
    out = io.StringIO()
    with override_settings(SHOPRECO={**reco_settings.user_settings, **POPULAR_ONLY}):
        reco_settings.reload()
        try:
            with pytest.raises(CommandError, match="rejected by the holdout gate"):
                call_command("shopreco_recompute", "--no-progress", stdout=out)
        finally:
            reco_settings.reload()
    text = out.getvalue()
    rejected = RecomputeRun.objects.get(status=RecomputeRun.Status.REJECTED)
    assert f"Run #{live.pk} keeps serving" in text
    assert f"manage.py shopreco_activate {rejected.pk}" in text
    assert RecomputeRun.live() == live


def test_a_pending_run_is_gated_by_the_settings_it_was_requested_with(demo_shop):
    """The candidates are frozen into the run when it is requested (like every setting), so
    a worker with other settings compares what the shop asked for."""
    recompute(ALGORITHM="ease")
    with override_settings(SHOPRECO={**reco_settings.user_settings, **POPULAR_ONLY}):
        reco_settings.reload()
        run, _ = pipeline.create_run()
    reco_settings.reload()
    assert run.params["candidates"] == [{"algorithm": "popular"}]
    done = pipeline.run_full_recompute(run)
    assert done.status == RecomputeRun.Status.REJECTED


def test_a_run_replacing_one_that_holds_erased_data_goes_live_whatever_its_score(demo_shop):
    """Privacy comes before the gate: after an erasure, the follow-up run must replace the
    live run (which read the erased rows), even when it scores worse."""
    from django.contrib.auth import get_user_model

    from shopreco import privacy

    live = recompute(ALGORITHM="ease")
    shopper = get_user_model().objects.filter(shopreco_ratings__isnull=False).first()
    privacy.erase_user_data(shopper)
    follow_up = recompute(**POPULAR_ONLY)
    assert follow_up.status == RecomputeRun.Status.SUCCEEDED
    assert RecomputeRun.live() == follow_up
    assert f"#{live.pk} read data erased since" in follow_up.metrics["holdout"]["overruled"]
    assert not RecomputeRun.objects.filter(pk=live.pk).exists()  # pruned by housekeeping
