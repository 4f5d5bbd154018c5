""""Recompute now" and "Evaluate now": they enqueue or run, and link to the run's progress."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from shopreco.models import Recommendation, RecomputeRun

pytestmark = pytest.mark.django_db

RECOMPUTE = "admin:shopreco_recomputerun_recompute"
EVALUATE = "admin:shopreco_recomputerun_evaluate"


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_recompute_now_runs_in_process_without_a_broker(
    shop, staff_client, django_capture_on_commit_callbacks
):
    before = set(RecomputeRun.objects.values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse(RECOMPUTE))
    new = RecomputeRun.objects.exclude(pk__in=before).get()
    progress = reverse("admin:shopreco_recomputerun_progress", args=[new.pk])
    assert response.status_code == 302 and response["Location"] == progress
    new.refresh_from_db()
    assert new.kind == "full" and new.status == "succeeded", new.error
    assert Recommendation.objects.filter(run=new).exists()
    assert any(progress in m for m in messages_of(response))
    # queued when the request ended; the on-commit hook ran it after
    assert messages_of(response)[0].startswith(f"Recompute run #{new.pk} is queued. <a ")
    assert staff_client.get(progress).status_code == 200


def test_recompute_now_enqueues_when_a_broker_is_there(
    shop, staff_client, django_capture_on_commit_callbacks, monkeypatch
):
    from shopreco import tasks

    sent = []
    monkeypatch.setattr(
        tasks.full_recompute, "apply_async", lambda args=None, **kw: sent.append(args)
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse(RECOMPUTE))
    run = RecomputeRun.objects.filter(kind="full").order_by("-id").first()
    assert sent == [[run.pk]]
    assert run.status == "pending"
    assert response["Location"] == reverse("admin:shopreco_recomputerun_progress",
                                           args=[run.pk])
    assert messages_of(response)[0].startswith(
        f"Recompute run #{run.pk} is queued. <a ")


def test_recompute_now_coalesces_with_a_running_run(shop, staff_client):
    running = RecomputeRun.objects.create(kind="full", status="running", stage="similarities",
                                          progress=40)
    count = RecomputeRun.objects.count()
    response = staff_client.post(reverse(RECOMPUTE))
    assert RecomputeRun.objects.count() == count
    assert response["Location"] == reverse("admin:shopreco_recomputerun_progress",
                                           args=[running.pk])
    assert messages_of(response)[0].startswith(
        f"Recompute run #{running.pk} is running (similarities, 40%). <a ")


@pytest.mark.parametrize(("fields", "sentence"), [
    ({"status": "succeeded"}, "Recompute run #{pk} succeeded."),
    ({"status": "failed", "error": "Traceback...\nValueError: boom"},
     "Recompute run #{pk} failed: ValueError: boom"),
    ({"status": "failed"}, "Recompute run #{pk} failed."),
    ({"status": "running"}, "Recompute run #{pk} is running."),
    ({"status": "pending"}, "Recompute run #{pk} is queued."),
    ({"status": "succeeded", "kind": "evaluation"}, "Evaluation run #{pk} succeeded."),
])
def test_run_messages_read_as_sentences(fields, sentence):
    """A status is a state ("is running") or an outcome ("succeeded"): never "is
    succeeded", and the run is named once, without str(run)'s "(full, succeeded)"."""
    from shopreco.admin.options import run_sentence

    run = RecomputeRun.objects.create(**fields)
    assert run_sentence(run) == sentence.format(pk=run.pk)


def test_actions_need_post_and_permission(shop, staff_client, client, user_factory):
    count = RecomputeRun.objects.count()
    assert staff_client.get(reverse(RECOMPUTE)).status_code == 405
    assert staff_client.get(reverse(EVALUATE)).status_code == 405
    client.force_login(user_factory("viewer", is_staff=True))
    assert client.post(reverse(RECOMPUTE)).status_code == 403
    assert client.post(reverse(EVALUATE)).status_code == 403
    assert RecomputeRun.objects.count() == count


def test_evaluate_now_is_a_task_followed_on_the_progress_page(
        shop, staff_client, django_capture_on_commit_callbacks):
    """The web request only queues the evaluation (a worker runs it: here Celery is eager,
    after the commit), and sends the operator to the run's progress page."""
    before = set(RecomputeRun.objects.values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse(EVALUATE))
    run = RecomputeRun.objects.exclude(pk__in=before).get()
    assert run.kind == "evaluation"
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:shopreco_recomputerun_progress", args=[run.pk])
    assert messages_of(response)[0].startswith(f"Evaluation run #{run.pk} is queued. <a ")
    run.refresh_from_db()
    assert run.status == "succeeded" and run.metrics, run.error
    assert run.params["protocol"] == "holdout" and run.metrics["ndcg@10"] >= 0
    # The new evaluation becomes a point on the insights charts.
    from shopreco import insights

    series = insights.offline_metrics()
    assert any(p.run.pk == run.pk for points in series.values() for p in points)


def test_buttons_show_on_the_run_list_and_insights(shop, staff_client):
    for url in (reverse("admin:shopreco_recomputerun_changelist"),
                reverse("admin:shopreco_insights")):
        html = staff_client.get(url).content.decode()
        assert f'action="{reverse(RECOMPUTE)}"' in html, url
        assert f'action="{reverse(EVALUATE)}"' in html, url
