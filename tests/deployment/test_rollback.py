"""Rollback and staff activation: serving follows the deployment pointer on the next
request, with no cached list left stale; admin, command and API do the same thing."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from shopreco.models import Deployment, Recommendation, RecomputeRun
from shopreco.pipeline import runs
from tests.deployment.test_gate import POPULAR_ONLY, recompute

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_runs():
    call_command("seed_demo", "--customers", "120", "--products", "150", "--seed", "5",
                 stdout=io.StringIO())
    older = recompute(ALGORITHM="item")
    newer = recompute(ALGORITHM="ease", GATE_TOLERANCE=None)
    assert RecomputeRun.live() == newer
    # a shopper whose two lists differ
    for user_id in Recommendation.objects.filter(run=newer).values_list(
            "user_id", flat=True).distinct():
        a = list(Recommendation.objects.filter(run=older, user_id=user_id)
                 .order_by("rank").values_list("product_id", flat=True)[:4])
        b = list(Recommendation.objects.filter(run=newer, user_id=user_id)
                 .order_by("rank").values_list("product_id", flat=True)[:4])
        if a and b and a != b:
            return (older, newer, get_user_model().objects.get(pk=user_id),
                    [str(pk) for pk in a], [str(pk) for pk in b])
    pytest.fail("no shopper with different lists in the two runs")


def served(client: Client) -> list:
    body = client.get(reverse("shopreco_api:recommendations"), {"limit": 4}).json()
    return [str(item["product"]["pk"]) for item in body["results"]]


def test_rollback_serves_the_older_runs_lists_on_the_next_request(two_runs):
    from django.core.cache import cache

    older, newer, shopper, *_ = two_runs
    client = Client()
    client.force_login(shopper)
    # what each run serves this shopper, each read with nothing cached
    runs.deploy(older.pk)
    cache.clear()
    older_list = served(client)
    runs.deploy(newer.pk)
    cache.clear()
    newer_list = served(client)
    assert older_list and newer_list and older_list != newer_list
    assert served(client) == newer_list  # now from the cache
    runs.deploy(older.pk)
    assert served(client) == older_list  # the very next request: nothing stale
    runs.deploy(newer.pk)
    assert served(client) == newer_list


def test_activate_command(two_runs):
    older, newer, *_ = two_runs
    out = io.StringIO()
    call_command("shopreco_activate", stdout=out)
    assert f"#{newer.pk}" in out.getvalue() and "live" in out.getvalue()
    call_command("shopreco_activate", str(older.pk), "--note", "yesterday was better",
                 stdout=out)
    assert RecomputeRun.live() == older
    assert Deployment.objects.first().note == "yesterday was better"
    with pytest.raises(CommandError, match="already live"):
        call_command("shopreco_activate", str(older.pk), stdout=out)
    with pytest.raises(CommandError, match="does not exist"):
        call_command("shopreco_activate", "99999", stdout=out)


def test_activate_api_is_staff_only_and_says_why_it_cannot(two_runs, django_user_model):
    older, newer, shopper, *_ = two_runs
    url = reverse("shopreco_api:run-activate", args=[older.pk])
    client = Client()
    client.force_login(shopper)
    assert client.post(url).status_code == 403
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", "pw")
    client.force_login(boss)
    response = client.post(url)
    assert response.status_code == 200 and response.json()["live"] is True
    assert RecomputeRun.live() == older
    assert Deployment.objects.first().activated_by == boss
    again = client.post(url)
    assert again.status_code == 409 and "already live" in again.json()["detail"]
    failed = RecomputeRun.objects.create(kind="full", status="failed")
    bad = client.post(reverse("shopreco_api:run-activate", args=[failed.pk]))
    assert bad.status_code == 409 and "failed" in bad.json()["detail"]
    assert client.post(reverse("shopreco_api:run-activate", args=[99999])).status_code == 404
    listed = client.get(reverse("shopreco_api:run-detail", args=[newer.pk])).json()
    assert listed["live"] is False


def test_admin_run_page_shows_the_comparison_and_activates(two_runs, django_user_model):
    older, newer, *_ = two_runs
    worse = recompute(**POPULAR_ONLY)
    assert worse.status == RecomputeRun.Status.REJECTED
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", "pw")
    client = Client()
    client.force_login(boss)
    page = client.get(reverse("admin:shopreco_recomputerun_progress", args=[worse.pk]))
    html = page.content.decode()
    assert "Holdout comparison" in html and "Rejected:" in html
    assert "Serve this run anyway" in html and "popular" in html
    listing = client.get(reverse("admin:shopreco_recomputerun_changelist")).content.decode()
    assert "Rejected" in listing
    insights_page = client.get(reverse("admin:shopreco_insights")).content.decode()
    assert "Model selection on the holdout" in insights_page
    assert f"#{worse.pk}</a>" in insights_page and "rejected" in insights_page
    response = client.post(reverse("admin:shopreco_recomputerun_activate", args=[worse.pk]),
                           follow=True)
    assert "is live from the next request on" in response.content.decode()
    assert RecomputeRun.live() == worse
    # the changelist action rolls back
    client.post(reverse("admin:shopreco_recomputerun_changelist"),
                {"action": "activate_selected", "_selected_action": [older.pk]})
    assert RecomputeRun.live() == older


def test_prune_keeps_the_live_run_and_drops_old_rejected_runs(two_runs, settings):
    from datetime import timedelta

    from django.utils import timezone

    older, newer, *_ = two_runs
    runs.deploy(older.pk)  # a rollback: the older run is live
    worse = recompute(**POPULAR_ONLY)
    assert worse.status == RecomputeRun.Status.REJECTED
    pruned = runs.prune(keep=1)
    assert older.pk not in pruned and RecomputeRun.objects.filter(pk=older.pk).exists()
    assert worse.pk not in pruned  # rejected runs stay FAILED_RUN_RETENTION_DAYS
    RecomputeRun.objects.filter(pk=worse.pk).update(
        finished_at=timezone.now() - timedelta(days=8))
    assert worse.pk in runs.prune(keep=1)
    assert not Recommendation.objects.filter(run_id=worse.pk).exists()
    assert RecomputeRun.live() == older
