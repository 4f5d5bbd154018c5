"""The recompute pipeline in one process (tasks run eagerly): matrices, runs, locking,
activation, pruning, the per-user refresh and the command."""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from shopreco import cache as shopreco_cache
from shopreco import pipeline, tasks
from shopreco.models import (
    Interaction,
    ItemSimilarity,
    PendingRefresh,
    Rating,
    Recommendation,
    RecomputeRun,
)
from shopreco.pipeline import matrix, runs

pytestmark = pytest.mark.django_db


def rows_of(run):
    """Results of a run in a comparable form (everything but ids and timestamps)."""
    sims = sorted(
        ItemSimilarity.objects.filter(run=run).values_list(
            "kind", "product_id", "similar_product_id", "score"
        )
    )
    recs = sorted(
        Recommendation.objects.filter(run=run).values_list(
            "user_id", "rank", "product_id", "score", "reason", "reason_product_id"
        )
    )
    return sims, recs


# ----------------------------------------------------------------------------- matrix
def test_rating_wins_over_events_and_events_become_pseudo_ratings(product_factory, user_factory):
    a, b, c = product_factory(), product_factory(), product_factory()
    u = user_factory()
    Rating.objects.create(user=u, product=a, score=2)
    Interaction.objects.create(user=u, product=a, kind="purchase")  # rating still wins
    Interaction.objects.create(user=u, product=b, kind="view")
    Interaction.objects.create(user=u, product=c, kind="view")
    Interaction.objects.create(user=u, product=c, kind="cart")
    Interaction.objects.create(session_key="anon", product=b, kind="view")

    snap = matrix.load_snapshot()
    assert snap.n_users == 1 and snap.R.shape == (2, 3)  # one user row, one session row
    col = {snap.product_pk(j): j for j in range(3)}
    R = snap.R.toarray()
    assert R[0, col[a.pk]] == 2.0
    one_view = matrix.pseudo_rating(np.array([1.0]))[0]
    view_and_cart = matrix.pseudo_rating(np.array([4.0]))[0]
    assert R[0, col[b.pk]] == pytest.approx(one_view)
    assert R[0, col[c.pk]] == pytest.approx(view_and_cart)
    assert 1.0 < one_view < view_and_cart <= 5.0
    assert matrix.pseudo_rating(np.array([5.0]))[0] == pytest.approx(5.0)  # one purchase
    assert R[1, col[b.pk]] == pytest.approx(one_view)  # the anonymous session
    # reasons per cell and the owned mask (rated or bought)
    reasons = dict(zip(snap.R[0].indices.tolist(), snap.reason[: snap.R[0].nnz].tolist(),
                       strict=True))
    assert matrix.REASONS[reasons[col[a.pk]]] == "rated"
    assert matrix.REASONS[reasons[col[b.pk]]] == "viewed"
    assert matrix.REASONS[reasons[col[c.pk]]] == "carted"
    assert snap.owned[0].indices.tolist() == [col[a.pk]]
    assert snap.purchases[0].indices.tolist() == [col[a.pk]]


def test_snapshot_round_trips_through_bytes(shop):
    shop(n_users=6, n_products=10, sessions=2)
    snap = matrix.load_snapshot()
    back = matrix.Snapshot.from_bytes(snap.to_bytes())
    assert (back.R != snap.R).nnz == 0
    assert np.array_equal(back.reason, snap.reason)
    assert (back.owned != snap.owned).nnz == 0
    assert (back.purchases != snap.purchases).nnz == 0
    assert back.user_pks.tolist() == snap.user_pks.tolist()
    assert back.product_pks.tolist() == snap.product_pks.tolist()


def test_text_keys_are_encoded_as_strings():
    assert matrix.encode_pks([3, 1]).dtype == np.int64
    enc = matrix.encode_pks(["b-1", "a-2"])
    assert enc.dtype.kind == "U" and enc.tolist() == ["b-1", "a-2"]


# ----------------------------------------------------------------------------- full runs
@pytest.mark.parametrize("ratings,events", [(True, True), (True, False), (False, True)])
def test_full_run_in_process_produces_served_results(shop, ratings, events):
    users, products = shop(ratings=ratings, events=events)
    run = pipeline.run_full_recompute()
    assert run.status == RecomputeRun.Status.SUCCEEDED
    assert RecomputeRun.latest_succeeded() == run
    assert set(run.timings) == {"load", "holdout", "similarities", "recommendations", "write",
                                "total", "housekeeping"}
    assert run.counts["users"] == len(users)
    assert run.counts["recommendations"] == Recommendation.objects.filter(run=run).count() > 0
    assert run.counts["similarities"] == ItemSimilarity.objects.filter(run=run).count()
    assert 0 < run.metrics["coverage"] <= 1
    # every user gets a list; nothing owned is recommended; ranks are 1..n
    owned = set(Rating.objects.values_list("user_id", "product_id")) | set(
        Interaction.objects.filter(kind="purchase").values_list("user_id", "product_id"))
    half = {p.pk for p in products[: len(products) // 2]}
    in_group = []
    for i, user in enumerate(users):
        recs = list(Recommendation.objects.filter(run=run, user=user).order_by("rank"))
        assert recs, f"user {i} has no recommendations"
        assert [r.rank for r in recs] == list(range(1, len(recs) + 1))
        assert all((user.pk, r.product_id) not in owned for r in recs)
        assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
        assert all(r.reason in ("rated", "bought", "carted", "viewed") for r in recs)
        in_group.append((recs[0].product_id in half) == (i % 2 == 0))
    # the top recommendation comes from the user's own taste group (noise aside)
    assert sum(in_group) >= 0.8 * len(users), in_group
    # "similar": the closest neighbours are mostly inside the same taste group
    sims = ItemSimilarity.objects.filter(run=run, kind="similar")
    assert sims.exists()
    same = []
    for p in products:
        top3 = sims.filter(product=p).order_by("-score")[:3]
        same += [(p.pk in half) == (s.similar_product_id in half) for s in top3]
    assert sum(same) / len(same) > 0.75
    if events:
        assert ItemSimilarity.objects.filter(run=run, kind="also_bought").exists()


def test_neighbour_lists_are_cached_as_the_run_goes_live(
        shop, rf, django_user_model, monkeypatch, django_capture_on_commit_callbacks,
        django_assert_max_num_queries):
    """Once the activation commits, the run hands its lists to the (shared) serving cache:
    each equals what the database gives, and a product's first widget after the run reads
    no list from the database (state, candidates, impression: 3 queries)."""
    from django.contrib.sessions.backends.db import SessionStore

    from shopreco import services

    monkeypatch.setattr(shopreco_cache, "is_shared", lambda: True)
    _, products = shop()
    with django_capture_on_commit_callbacks(execute=True):
        run = pipeline.run_full_recompute()
    cache = shopreco_cache.get_cache()
    for kind in ("similar", "also_bought"):
        for p in products:
            stored = list(ItemSimilarity.objects.filter(run=run, kind=kind, product=p)
                          .order_by("-score", "similar_product_id")
                          .values_list("similar_product_id", "score"))
            assert cache.get(shopreco_cache.neighbour_key(run.pk, kind, p.pk)) == stored
    assert ItemSimilarity.objects.filter(run=run, kind="similar").exists()
    services.popularity_ranking()  # the popular fill: shared, rebuilt every CACHE_TIMEOUT
    services.popularity_ranking(products[0].category)
    request = rf.get("/")
    request.user, request.session = django_user_model.objects.first(), SessionStore()
    with django_assert_max_num_queries(3):
        listed = services.similar_products(products[0], 4, request=request)
    assert [i.reason_kind for i in listed] == ["similar"] * 4


def test_neighbour_lists_are_cached_only_in_a_cache_every_process_reads(
        shop, monkeypatch, django_capture_on_commit_callbacks, settings):
    """A worker's own memory cache (or a small database or file cache) would only waste
    the work or evict what serving needs: no warming there; nor before the commit."""

    shop()
    warmed = []
    monkeypatch.setattr(shopreco_cache, "warm_neighbour_lists",
                        lambda *a: warmed.append(a[:2]))
    assert not shopreco_cache.is_shared()  # the tests' LocMemCache
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.run_full_recompute()
    assert warmed == []
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                                   "LOCATION": "shopreco_test_cache"}}
    assert not shopreco_cache.is_shared()
    monkeypatch.setattr(shopreco_cache, "is_shared", lambda: True)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = pipeline.run_full_recompute()
    assert warmed == []  # not before the activation has committed
    for callback in callbacks:
        callback()
    assert sorted(kind for r, kind in warmed if r == run.pk) == ["also_bought", "similar"]


def test_reasons_name_the_product_and_how_the_user_met_it(shop):
    users, _ = shop(ratings=False, events=True)
    run = pipeline.run_full_recompute()
    kinds = {"view": "viewed", "cart": "carted", "purchase": "bought"}
    for rec in Recommendation.objects.filter(run=run)[:50]:
        assert rec.reason_product_id is not None
        got = set(Interaction.objects.filter(user_id=rec.user_id, product_id=rec.reason_product_id)
                  .values_list("kind", flat=True))
        assert got, (rec.user_id, rec.product_id, rec.reason_product_id, rec.reason, rec.rank)
        strongest = min(got, key=["purchase", "cart", "view"].index)
        assert rec.reason == kinds[strongest]


def test_also_bought_is_normalised_co_purchase(product_factory, user_factory):
    a, b, c = product_factory(), product_factory(), product_factory()
    buyers = [user_factory() for _ in range(4)]
    for u in buyers:
        Interaction.objects.create(user=u, product=a, kind="purchase")
    for u in buyers[:2]:
        Interaction.objects.create(user=u, product=b, kind="purchase")
    Interaction.objects.create(user=buyers[3], product=c, kind="purchase")
    run = pipeline.run_full_recompute()
    ab = {(s.product_id, s.similar_product_id): s.score
          for s in ItemSimilarity.objects.filter(run=run, kind="also_bought")}
    assert ab[(a.pk, b.pk)] == pytest.approx(2 / np.sqrt(4 * 2))
    assert ab[(a.pk, c.pk)] == pytest.approx(1 / np.sqrt(4 * 1))
    assert (b.pk, c.pk) not in ab  # never bought together
    order = list(ItemSimilarity.objects.filter(run=run, kind="also_bought", product=a)
                 .order_by("-score").values_list("similar_product_id", flat=True))
    assert order == [b.pk, c.pk]


@pytest.mark.parametrize("algorithm", ["ease", "item", "user"])
def test_sharded_run_through_tasks_equals_in_process_run(algorithm, shop,
                                                        django_capture_on_commit_callbacks):
    shop(sessions=4)
    conf = {"ALGORITHM": algorithm}
    with override_settings(SHOPRECO={**conf, "BLOCK_SIZE": 7, "USER_BATCH_SIZE": 5}):
        with django_capture_on_commit_callbacks(execute=True):
            eager = tasks.request_full_recompute()  # eager chord: a task per block, batch
    eager.refresh_from_db()
    assert eager.status == RecomputeRun.Status.SUCCEEDED, eager.error
    # EASE's solve is one dense factorisation: one block; its user batches still shard
    assert eager.params["n_blocks"] == (1 if algorithm == "ease" else 5)
    assert eager.params["n_batches"] == 5
    with override_settings(SHOPRECO={**conf, "BLOCK_SIZE": 1000, "USER_BATCH_SIZE": 1000}):
        local = pipeline.run_full_recompute()
    if algorithm == "ease":  # the lambda "auto" chose is recorded with the run
        assert eager.metrics["ease_lambda"] == local.metrics["ease_lambda"] > 0
    assert local.params["n_blocks"] == 1 and local.params["n_batches"] == 1
    assert rows_of(eager) == rows_of(local)
    assert rows_of(local)[1]


@pytest.mark.parametrize("similarity", ["cosine_baseline", "adjusted_cosine"])
def test_baseline_similarities_run_sharded_as_in_process(similarity, shop,
                                                         django_capture_on_commit_callbacks):
    """The rating recipes (centred similarities, ranking by rating values) through the
    pipeline: sharded equals in process, and a shop without explicit ratings falls back to
    cosine."""
    shop(sessions=2)
    conf = {"ALGORITHM": "item", "SIMILARITY": similarity, "SHRINKAGE": 0}
    with override_settings(SHOPRECO={**conf, "BLOCK_SIZE": 7, "USER_BATCH_SIZE": 5}):
        with django_capture_on_commit_callbacks(execute=True):
            eager = tasks.request_full_recompute()
    eager.refresh_from_db()
    assert eager.status == RecomputeRun.Status.SUCCEEDED, eager.error
    assert eager.params["method"] == similarity
    with override_settings(SHOPRECO={**conf, "BLOCK_SIZE": 1000, "USER_BATCH_SIZE": 1000}):
        local = pipeline.run_full_recompute()
    assert rows_of(eager) == rows_of(local)
    assert rows_of(local)[0] and rows_of(local)[1]
    Rating.objects.all().delete()
    with override_settings(SHOPRECO=conf):
        implicit = pipeline.run_full_recompute()
    assert implicit.params["method"] == "cosine"


def test_failed_run_is_never_served_and_previous_run_stays(shop, monkeypatch):
    shop()
    good = pipeline.run_full_recompute()

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pipeline.writer, "write_recommendations", boom)
    with pytest.raises(RuntimeError):
        pipeline.run_full_recompute()
    bad = RecomputeRun.objects.exclude(pk=good.pk).get()
    assert bad.status == RecomputeRun.Status.FAILED and "disk on fire" in bad.error
    assert RecomputeRun.latest_succeeded() == good
    assert not ItemSimilarity.objects.filter(run=bad).exists()
    assert not Recommendation.objects.filter(run=bad).exists()


def test_failed_task_marks_the_run_failed(shop, monkeypatch,
                                          django_capture_on_commit_callbacks):
    shop()

    def boom(*args, **kwargs):
        raise ValueError("bad block")

    monkeypatch.setattr(pipeline, "compute_block", boom)
    with pytest.raises(ValueError), django_capture_on_commit_callbacks(execute=True):
        tasks.request_full_recompute()
    run = RecomputeRun.objects.get()
    assert run.status == RecomputeRun.Status.FAILED and "bad block" in run.error
    assert RecomputeRun.latest_succeeded() is None


@override_settings(SHOPRECO={"KEEP_RUNS": 2})
def test_old_runs_are_pruned_with_their_rows_and_files(shop):
    from shopreco.pipeline import storage

    shop(n_users=6, n_products=12)
    made = [pipeline.run_full_recompute() for _ in range(4)]
    left = list(RecomputeRun.objects.order_by("pk").values_list("pk", flat=True))
    assert left == [made[2].pk, made[3].pk]
    assert not ItemSimilarity.objects.filter(run_id=made[0].pk).exists()
    assert not Recommendation.objects.filter(run_id__in=[made[0].pk, made[1].pk]).exists()
    st = storage.get_storage()
    assert not st.exists(pipeline.run_file(made[0], pipeline.SNAPSHOT))
    assert st.exists(pipeline.run_file(made[3], pipeline.SNAPSHOT))
    assert st.exists(pipeline.run_file(made[3], pipeline.SIMILARITY))
    assert not st.exists(pipeline.run_file(made[3], "block-00000"))  # scratch removed


def test_empty_shop_gives_an_empty_succeeded_run():
    run = pipeline.run_full_recompute()
    assert run.status == RecomputeRun.Status.SUCCEEDED
    assert run.counts["recommendations"] == 0 and run.counts["products"] == 0


# ----------------------------------------------------------------------------- one at a time
def test_second_request_is_coalesced(shop, monkeypatch):
    shop(n_users=4, n_products=12)
    monkeypatch.setattr(tasks, "_enqueue", lambda *a, **k: True)  # no worker picks it up
    first = tasks.request_full_recompute()
    second = tasks.request_full_recompute()
    assert first.pk == second.pk and first.status == RecomputeRun.Status.PENDING
    with pytest.raises(pipeline.RecomputeInProgress) as info:
        pipeline.run_full_recompute()
    assert info.value.run.pk == first.pk
    assert RecomputeRun.objects.count() == 1


def test_stale_run_is_marked_failed_and_next_run_starts(shop, monkeypatch):
    shop(n_users=4, n_products=12)
    monkeypatch.setattr(tasks, "_enqueue", lambda *a, **k: True)
    dead = tasks.request_full_recompute()
    RecomputeRun.objects.filter(pk=dead.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(seconds=601))
    fresh = tasks.request_full_recompute()
    assert fresh.pk != dead.pk
    dead.refresh_from_db()
    assert dead.status == RecomputeRun.Status.FAILED and "heartbeat" in dead.error


def test_heartbeat_of_a_failed_run_aborts_its_tasks(shop):
    shop(n_users=4, n_products=12)
    run, _ = runs.create_or_get_active({})
    assert runs.claim(run.pk) and not runs.claim(run.pk)  # claimed exactly once
    runs.fail_run(run.pk, "killed")
    with pytest.raises(runs.RunAborted):
        runs.beat(run.pk, progress=50)
    assert pipeline.start_run(run.pk) is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_create_one_run(shop, monkeypatch):
    """Threads with their own connections race through the lock: exactly one run."""
    from django.db import connections

    if connection.vendor == "sqlite" and connection.settings_dict["NAME"] in ("", ":memory:") \
            or "mode=memory" in str(connection.settings_dict["NAME"]):
        pytest.skip("needs a file or server database shared between connections")
    shop(n_users=4, n_products=12)
    monkeypatch.setattr(tasks, "_enqueue", lambda *a, **k: True)
    barrier = threading.Barrier(4)
    got, errors = [], []

    def request():
        try:
            barrier.wait()
            got.append(tasks.request_full_recompute().pk)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(got)) == 1 and RecomputeRun.objects.count() == 1


# ----------------------------------------------------------------------------- per-user refresh
def test_refresh_reproduces_the_full_run_for_an_unchanged_user(shop):
    users, _ = shop(sessions=2)
    run = pipeline.run_full_recompute()
    before = rows_of(run)[1]
    for user in users[:5]:
        pipeline.refresh_user(user.pk)
    assert rows_of(run)[1] == before


def test_a_new_rating_refreshes_the_users_list(shop, django_capture_on_commit_callbacks):
    users, products = shop()
    run = pipeline.run_full_recompute()
    user = users[0]
    top = Recommendation.objects.filter(run=run, user=user).order_by("rank").first()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        Rating.objects.create(user=user, product=top.product, score=5)
        assert PendingRefresh.objects.filter(user=user).exists()
    assert len(callbacks) == 1  # one enqueue; the eager task ran it
    assert not PendingRefresh.objects.filter(user=user).exists()
    now = list(Recommendation.objects.filter(run=run, user=user).order_by("rank"))
    assert now and top.product_id not in {r.product_id for r in now}  # owned now
    assert RecomputeRun.objects.count() == 1  # same run, updated in place


def test_refreshes_are_debounced_per_user(shop, django_capture_on_commit_callbacks,
                                          monkeypatch):
    users, products = shop(n_users=4, n_products=8)
    sent = []
    monkeypatch.setattr(tasks, "_enqueue_refresh", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        for p in products[:5]:
            Interaction.objects.create(user=users[1], product=p, kind="view")
    assert sent == [users[1].pk]
    assert PendingRefresh.objects.count() == 1


def test_deleting_a_user_with_ratings_does_not_queue_a_refresh(shop):
    users, _ = shop(n_users=4, n_products=8)
    PendingRefresh.objects.all().delete()
    users[0].delete()
    assert not PendingRefresh.objects.exists()
    assert not Rating.objects.filter(user_id=users[0].pk).exists()


def test_drain_requeues_lost_refreshes(shop, monkeypatch):
    users, _ = shop(n_users=4, n_products=8)
    PendingRefresh.objects.all().delete()
    PendingRefresh.objects.create(user=users[2],
                                  requested_at=timezone.now() - timedelta(minutes=5))
    PendingRefresh.objects.create(user=users[3])  # recent: its task is still due
    sent = []
    monkeypatch.setattr(tasks, "_enqueue_refresh", sent.append)
    assert tasks.drain_pending_refreshes() == 1
    assert sent == [users[2].pk]


# ----------------------------------------------------------------------------- command
def test_command_runs_in_process_with_plain_lines(shop):
    shop(n_users=6, n_products=12)
    out = io.StringIO()
    call_command("shopreco_recompute", stdout=out)
    text = out.getvalue()
    assert "similarities" in text and "write" in text
    run = RecomputeRun.latest_succeeded()
    assert f"Run #{run.pk} succeeded" in text


def test_command_async_prints_the_run_id(shop, django_capture_on_commit_callbacks):
    """With -v 0 the run id alone, for scripts."""
    shop(n_users=6, n_products=12)
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("shopreco_recompute", "--async", verbosity=0, stdout=out)
    run_id = int(out.getvalue())
    assert RecomputeRun.objects.get(pk=run_id).status == RecomputeRun.Status.SUCCEEDED


def test_command_async_says_which_run_and_how_to_follow_it(shop,
                                                           django_capture_on_commit_callbacks):
    shop(n_users=6, n_products=12)
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):  # sent after the command returns
        call_command("shopreco_recompute", "--async", stdout=out)
    run = RecomputeRun.objects.get()
    assert out.getvalue() == (
        f"Full recompute requested: run {run.pk} (pending). Follow it with `manage.py "
        f"shopreco_recompute --follow {run.pk}` or in the admin (Recompute runs, run "
        f"#{run.pk}).\n"
    )


def test_command_async_without_a_broker_says_the_run_is_done(monkeypatch):
    # eager Celery: the run has finished by the time request_full_recompute returns
    run = RecomputeRun.objects.create(status="succeeded", stage="done", progress=100)
    monkeypatch.setattr(tasks, "request_full_recompute", lambda: run)
    out = io.StringIO()
    call_command("shopreco_recompute", "--async", stdout=out)
    assert out.getvalue() == (f"Full recompute run {run.pk} ran in this process (no Celery "
                              f"broker) and succeeded.\n")


def test_command_async_joins_a_running_run(monkeypatch):
    running = RecomputeRun.objects.create(status="running", stage="similarities")
    monkeypatch.setattr(tasks, "request_full_recompute", lambda: running)
    out = io.StringIO()
    call_command("shopreco_recompute", "--async", stdout=out)
    assert out.getvalue().startswith(
        f"A full recompute is already running: run {running.pk}. Follow it with")


def test_command_follow_waits_for_a_run_and_sums_it_up():
    run = RecomputeRun.objects.create(
        status="succeeded", stage="done", progress=100,
        counts={"users": 1, "products": 2, "similarities": 1, "recommendations": 1},
        timings={"total": 1.0})
    out = io.StringIO()
    call_command("shopreco_recompute", "--follow", str(run.pk), stdout=out)
    assert (f"Run #{run.pk} succeeded: 1 user, 2 products, 1 similarity, 1 recommendation "
            "in 1.0 s") in out.getvalue()
    with pytest.raises(CommandError, match=f"no run #{run.pk + 1}"):
        call_command("shopreco_recompute", "--follow", str(run.pk + 1), stdout=io.StringIO())


def test_command_keeps_the_pipeline_info_log_off_the_console(shop, capsys):
    """The demo's logging sends shopreco INFO to the console: the command's summary says it
    for people, so the pipeline's raw line (with a dict) does not follow it; -v 2 lets it."""
    import logging
    import sys

    shop(n_users=6, n_products=12)
    console = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("shopreco")
    old_level = logger.level
    logger.addHandler(console)
    logger.setLevel(logging.INFO)
    try:
        call_command("shopreco_recompute", stdout=io.StringIO())
        assert "shopreco run #" not in capsys.readouterr().err
        call_command("shopreco_recompute", verbosity=2, stdout=io.StringIO())
        assert "shopreco run #" in capsys.readouterr().err
        assert console.filters == []  # nothing left behind
    finally:
        logger.removeHandler(console)
        logger.setLevel(old_level)


def test_command_wait_exits_non_zero_when_the_run_fails(monkeypatch):
    failed = RecomputeRun.objects.create(status="failed", stage="failed", error="worker died")
    monkeypatch.setattr(tasks, "request_full_recompute", lambda: failed)
    with pytest.raises(CommandError) as info:
        call_command("shopreco_recompute", "--async", "--wait", stdout=io.StringIO())
    assert info.value.returncode == 1
    assert "worker died" in str(info.value)


def test_command_does_not_start_a_second_run(monkeypatch):
    running = RecomputeRun.objects.create(status="running", heartbeat_at=timezone.now())
    out = io.StringIO()
    call_command("shopreco_recompute", stdout=out)
    assert f"Run #{running.pk} is already running" in out.getvalue()
    assert RecomputeRun.objects.count() == 1


# ----------------------------------------------------------------------------- bulk writes
@pytest.mark.django_db(transaction=True)
def test_parallel_copy_streams_write_the_same_rows(shop, monkeypatch):
    """PostgreSQL writes results with several COPY streams (own connections) outside a
    transaction; the rows must equal the single-stream write."""
    from shopreco.pipeline import writer

    if connection.vendor != "postgresql":
        pytest.skip("COPY streams are the PostgreSQL write path (run with DATABASE_URL)")
    shop(sessions=3)
    single = pipeline.run_full_recompute()
    calls = []
    real = writer.copy_chunks

    def spy(model, columns, chunks, binary=False):
        calls.append(len([c for c in chunks if c]))
        return real(model, columns, chunks, binary=binary)

    monkeypatch.setattr(writer, "_split", lambda n, parts: [(0, n // 3), (n // 3, n)])
    monkeypatch.setattr(writer, "copy_chunks", spy)
    parallel = pipeline.run_full_recompute()
    assert calls and max(calls) == 2
    assert rows_of(parallel) == rows_of(single)


def test_opted_out_users_get_no_stored_list_in_full_runs_or_refreshes(shop):
    from shopreco.models import Preference

    users, _ = shop()
    quiet, other = users[0], users[1]
    Preference.objects.create(user=quiet, personalize=False)
    run = pipeline.run_full_recompute()
    assert not Recommendation.objects.filter(run=run, user=quiet).exists()
    assert Recommendation.objects.filter(run=run, user=other).exists()
    # Their data still shapes the similarities (they only opted out of personalisation).
    assert ItemSimilarity.objects.filter(run=run).exists()
    # A refresh keeps it so, and opting back in brings the list back with the next refresh.
    pipeline.refresh_user(quiet.pk)
    assert not Recommendation.objects.filter(run=run, user=quiet).exists()
    Preference.objects.filter(user=quiet).update(personalize=True)
    pipeline.refresh_user(quiet.pk)
    assert Recommendation.objects.filter(run=run, user=quiet).exists()


# ----------------------------------------------------------------------------- ranking models
@pytest.mark.parametrize("algorithm", ["ease", "item", "user"])
def test_served_lists_find_each_shoppers_taste(algorithm, shop):
    """Every ALGORITHM, read as a page reads it (services): a shopper's "recommended for you"
    and a product's "you may also like" stay in the planted taste group."""
    from shopreco import services

    users, products = shop(ratings=True, events=True, sessions=2)
    half = {p.pk for p in products[: len(products) // 2]}
    with override_settings(SHOPRECO={"ALGORITHM": algorithm}):
        run = pipeline.run_full_recompute()
    assert run.status == RecomputeRun.Status.SUCCEEDED and run.params["algorithm"] == algorithm
    in_group = total = 0
    for i, user in enumerate(users):
        served = services.recommended_for(user, limit=4)
        assert served.source == "personal" and len(served.items) == 4
        in_group += sum((item.product.pk in half) == (i % 2 == 0) for item in served.items)
        total += len(served.items)
    # a shopper's own evidence is 6 products of their group and 2 of the other (chance: 0.5)
    assert in_group / total >= 0.8, (in_group, total)
    same = total = 0
    for p in products:
        for item in services.similar_products(p, limit=3).items:
            same += (item.product.pk in half) == (p.pk in half)
            total += 1
    assert same / total >= 0.75, (same, total)


@pytest.mark.parametrize("algorithm", ["ease", "item", "user"])
def test_a_refresh_with_nothing_new_rewrites_the_same_list(algorithm, shop):
    """The per-user refresh scores exactly as the full run (same files, same functions):
    refreshing a shopper whose data did not change leaves their rows as they were."""
    from shopreco.pipeline.refresh import refresh_user

    users, _ = shop(sessions=2)
    with override_settings(SHOPRECO={"ALGORITHM": algorithm}):
        run = pipeline.run_full_recompute()

    def rows(user):
        return list(Recommendation.objects.filter(run=run, user=user).order_by("rank")
                    .values_list("rank", "product_id", "reason", "reason_product_id", "score"))

    for user in users[:4]:
        before = rows(user)
        assert before
        refresh_user(user.pk)
        after = rows(user)
        assert [r[:4] for r in after] == [r[:4] for r in before]
        assert [r[4] for r in after] == pytest.approx([r[4] for r in before], rel=1e-6)


def test_user_based_refresh_takes_a_new_shoppers_first_ratings(shop, user_factory,
                                                               django_capture_on_commit_callbacks):
    """A shopper the run never saw, on the user-based model: their refresh compares them
    with every shopper of the run and recommends from the nearest ones' products."""
    users, products = shop()
    with override_settings(SHOPRECO={"ALGORITHM": "user"}):
        run = pipeline.run_full_recompute()
    newcomer = user_factory()
    half = len(products) // 2
    with django_capture_on_commit_callbacks(execute=True):
        for p in products[half:half + 4]:  # the odd shoppers' taste
            Rating.objects.create(user=newcomer, product=p, score=5)
    recs = list(Recommendation.objects.filter(run=run, user=newcomer).order_by("rank"))
    assert recs and all(r.product_id in {p.pk for p in products[half:]} for r in recs[:5])
    assert all(r.product_id not in {p.pk for p in products[half:half + 4]} for r in recs)


def test_unknown_algorithm_is_a_clear_error():
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(SHOPRECO={"ALGORITHM": "magic"}):
        with pytest.raises(ImproperlyConfigured, match="'ease', 'item', 'user'|ease, item, user"):
            pipeline.run_full_recompute()
