"""Staff endpoints: recompute (coalesced), runs, previews of a user's recommendations."""

from __future__ import annotations

import pytest
from django.utils import timezone

from shopreco.models import RecomputeRun
from tests.api.conftest import API, pks

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "recompute/"), ("get", "runs/"), ("get", "runs/1/"),
     ("get", "users/1/recommendations/")],
)
def test_staff_endpoints_refuse_others(anon, client_alice, shop, method, path):
    assert getattr(anon, method)(f"{API}{path}").status_code in (401, 403)
    assert getattr(client_alice, method)(f"{API}{path}").status_code == 403


def test_recompute_is_202_with_run_id_and_coalesced(client_staff, shop):
    before = set(RecomputeRun.objects.values_list("pk", flat=True))
    first = client_staff.post(f"{API}recompute/")
    assert first.status_code == 202
    run_id = first.json()["id"]
    assert run_id not in before
    assert first.json()["status"] in ("pending", "running")
    assert first["Location"].endswith(f"{API}runs/{run_id}/")
    # While that run is pending (its task is enqueued on commit), a second request joins it.
    second = client_staff.post(f"{API}recompute/")
    assert second.status_code == 202
    assert second.json()["id"] == run_id
    assert RecomputeRun.objects.count() == len(before) + 1


def test_runs_list_and_detail(client_staff, shop):
    now = timezone.now()
    extra = [
        RecomputeRun.objects.create(
            status=RecomputeRun.Status.FAILED, error="boom", created_at=now, started_at=now,
            finished_at=now,
        )
        for _ in range(3)
    ]
    body = client_staff.get(f"{API}runs/", {"page_size": 2}).json()
    assert body["count"] == 4 and len(body["results"]) == 2 and body["next"]
    detail = client_staff.get(f"{API}runs/{shop.run.pk}/").json()
    assert detail["status"] == "succeeded" and detail["progress"] == 100
    assert {"counts", "metrics", "timings", "stage", "duration"} <= set(detail)
    assert client_staff.get(f"{API}runs/{extra[0].pk}/").json()["error"] == "boom"
    for bad in ("999999", "abc", "9" * 30, "-1"):
        assert client_staff.get(f"{API}runs/{bad}/").status_code == 404


def test_staff_preview_of_a_user(client_staff, alice, shop):
    response = client_staff.get(f"{API}users/{alice.pk}/recommendations/", {"limit": 2})
    assert response.status_code == 200
    assert pks(response) == [shop.products[6].pk, shop.products[5].pk]
    assert "P0" in response.json()["results"][0]["reason"]
    assert "no-store" in response["Cache-Control"]
    for bad in ("999999", "abc", "9" * 30):
        assert client_staff.get(f"{API}users/{bad}/recommendations/").status_code == 404
    assert client_staff.get(f"{API}users/{alice.pk}/recommendations/",
                            {"limit": 0}).status_code == 400
