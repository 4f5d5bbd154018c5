"""Erasure reaches derived data: the run computed after an erasure replaces every run that
read the erased data, whose rows, files and folders then go; a run that read the data before
the erasure is never kept."""

from __future__ import annotations

import os

import pytest
from django.test import override_settings

from shopreco import pipeline, privacy
from shopreco.models import ItemSimilarity, Recommendation, RecomputeRun
from shopreco.pipeline import runs, storage

from .test_pipeline import rows_of


def folder_exists(run_id: int, prefix: str | None) -> bool:
    return os.path.isdir(storage.get_storage().path(storage.run_dir(run_id, prefix)))


@pytest.mark.parametrize("algorithm", ["ease", "item", "user"])
def test_the_run_after_an_erasure_replaces_every_run_that_read_the_data(algorithm, shop):
    users, products = shop(n_users=12, n_products=16)
    erased = users[3]
    with override_settings(SHOPRECO={"ALGORITHM": algorithm, "KEEP_RUNS": 3}):
        before = pipeline.run_full_recompute()
        also_before = pipeline.run_full_recompute()
        prefix = before.params.get("snapshot_prefix")
        assert erased.pk in {int(pk) for pk in pipeline.load_run_snapshot(also_before)
                             .user_pks[: pipeline.load_run_snapshot(also_before).n_users]}
        privacy.erase_user_data(erased)
        assert runs.predates_erasure(also_before) and runs.predates_erasure(before)
        after = pipeline.run_full_recompute()  # the follow-up; its housekeeping prunes
        again = pipeline.run_full_recompute()
    assert not runs.predates_erasure(after)
    assert set(RecomputeRun.objects.values_list("pk", flat=True)) == {after.pk, again.pk}
    for gone in (before, also_before):
        assert not ItemSimilarity.objects.filter(run_id=gone.pk).exists()
        assert not Recommendation.objects.filter(run_id=gone.pk).exists()
        assert not folder_exists(gone.pk, prefix)
    snap = pipeline.load_run_snapshot(after)
    assert erased.pk not in {int(pk) for pk in snap.user_pks[: snap.n_users]}
    assert rows_of(after) == rows_of(again)  # what a run without them serves
    assert not Recommendation.objects.filter(user=erased).exists()


def test_the_served_run_is_kept_until_its_replacement_is_live(shop):
    users, _ = shop(n_users=8, n_products=12)
    served = pipeline.run_full_recompute()
    privacy.erase_user_data(users[0])
    assert runs.prune() == []  # nothing else to serve yet
    assert RecomputeRun.latest_succeeded().pk == served.pk


def test_erasing_through_the_api_replaces_the_served_run(shop, client,
                                                         django_capture_on_commit_callbacks):
    users, _ = shop(n_users=8, n_products=12)
    served = pipeline.run_full_recompute()
    client.force_login(users[1])
    with django_capture_on_commit_callbacks(execute=True):  # eager Celery: the run happens
        assert client.delete("/api/reco/me/data/").status_code == 200
    now = RecomputeRun.latest_succeeded()
    assert now.pk != served.pk and not runs.predates_erasure(now)
    snap = pipeline.load_run_snapshot(now)
    assert users[1].pk not in {int(pk) for pk in snap.user_pks[: snap.n_users]}


def test_a_run_that_read_erased_data_is_followed_by_another(shop,
                                                            django_capture_on_commit_callbacks):
    from shopreco import tasks

    users, _ = shop(n_users=8, n_products=12)
    early, _created = pipeline.create_run()  # in flight when the erasure happens
    plan = pipeline.start_run(early.pk)
    privacy.erase_user_data(users[2])
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.run_stages_in_process(early.pk, plan)
        tasks._after_activation(RecomputeRun.objects.get(pk=early.pk))
    now = RecomputeRun.latest_succeeded()
    assert now.pk != early.pk and not runs.predates_erasure(now)
