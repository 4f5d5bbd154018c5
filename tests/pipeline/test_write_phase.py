"""The write phase after the result tables lost their database FK constraints: orphan rows of
products and users deleted mid-run are dropped at activation, product and user deletes still
cascade, serving skips rows of missing products, and housekeeping (pruning, VACUUM ANALYZE)
runs after the activation commit, timed apart."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import DEFAULT_DB_ALIAS
from django.test import RequestFactory, override_settings

from shopreco import cache as shopreco_cache
from shopreco import pipeline, services, tasks
from shopreco.conf import get_product_model
from shopreco.models import (
    Interaction,
    ItemSimilarity,
    PendingRefresh,
    Rating,
    Recommendation,
    RecomputeRun,
)
from shopreco.pipeline import runs, writer

pytestmark = pytest.mark.django_db


def cached_list(run_id: int, kind: str, pk) -> list | None:
    return shopreco_cache.get_cache().get(shopreco_cache.neighbour_key(run_id, kind, pk))


def _busiest_product(run: RecomputeRun):
    """The product that appears most often in the run's rows, as neighbour and as reason."""
    seen = Counter()
    for a, b in ItemSimilarity.objects.filter(run=run).values_list("product_id",
                                                                   "similar_product_id"):
        seen.update([a, b])
    seen.update(Recommendation.objects.filter(run=run, reason_product__isnull=False)
                .values_list("reason_product_id", flat=True))
    return get_product_model().objects.get(pk=seen.most_common(1)[0][0])


def _vanish(product) -> None:
    """Delete a product the way a concurrent delete looks to a run that wrote its rows after
    the delete cascaded: the product row is gone, this run's rows are not."""
    Rating.objects.filter(product=product).delete()
    Interaction.objects.filter(product=product).delete()
    get_product_model()._base_manager.filter(pk=product.pk)._raw_delete(DEFAULT_DB_ALIAS)


def _refs(run: RecomputeRun, pk) -> dict[str, int]:
    sims = ItemSimilarity.objects.filter(run=run)
    recs = Recommendation.objects.filter(run=run)
    return {
        "product": sims.filter(product_id=pk).count(),
        "similar_product": sims.filter(similar_product_id=pk).count(),
        "recommended": recs.filter(product_id=pk).count(),
        "reason": recs.filter(reason_product_id=pk).count(),
    }


def _activate_after(action, monkeypatch):
    """Run ``action(run_id)`` after the run wrote its rows, just before it activates."""
    real_complete = runs.complete

    def complete_after_action(run_id, values, product_keys=(), user_keys=(), **kwargs):
        action(run_id)
        return real_complete(run_id, values, product_keys=product_keys, user_keys=user_keys,
                             **kwargs)

    monkeypatch.setattr(runs, "complete", complete_after_action)


def _rewrite_lists_of(run_id, user) -> None:
    """Write a list for ``user`` in the run, as a run that read the data before an erasure
    and wrote after it would."""
    product = get_product_model().objects.order_by("pk").first()
    Recommendation.objects.create(run_id=run_id, user=user, product=product, score=1.0, rank=1)


def test_product_deleted_mid_run_leaves_no_rows_in_the_activated_run(
        shop, monkeypatch, django_capture_on_commit_callbacks):
    shop(sessions=3)
    first = pipeline.run_full_recompute()
    victim = _busiest_product(first)
    before = _refs(first, victim.pk)
    assert before["similar_product"] and before["reason"], before

    def delete(run_id):
        _vanish(victim)  # after the COPY, before activation: the rows are orphans now
        assert _refs(RecomputeRun(pk=run_id), victim.pk)["similar_product"]

    _activate_after(delete, monkeypatch)
    monkeypatch.setattr(shopreco_cache, "is_shared", lambda: True)
    with django_capture_on_commit_callbacks() as callbacks:
        run = pipeline.run_full_recompute()
    for callback in callbacks:  # the warming of the serving cache, not the user refreshes
        if callback.__module__ == "shopreco.pipeline.stages":
            callback()
    # The lists cached for serving as the run went live match its rows: none for the
    # victim, and the victim in none of them.
    for kind in ("similar", "also_bought"):
        for pk in get_product_model().objects.values_list("pk", flat=True):
            stored = list(ItemSimilarity.objects.filter(run=run, kind=kind, product_id=pk)
                          .order_by("-score", "similar_product_id")
                          .values_list("similar_product_id", "score"))
            cached = cached_list(run.pk, kind, pk)
            assert cached in (None, stored), (kind, pk)
        assert cached_list(run.pk, kind, victim.pk) is None
    assert any(cached_list(run.pk, "similar", pk)
               for pk in get_product_model().objects.values_list("pk", flat=True))
    assert run.status == RecomputeRun.Status.SUCCEEDED
    assert _refs(run, victim.pk) == {"product": 0, "similar_product": 0, "recommended": 0,
                                     "reason": 0}
    # Only the victim's rows went: every other row of the run is still there, reasons kept
    # wherever they named another product.
    assert ItemSimilarity.objects.filter(run=run).count() > 0
    assert Recommendation.objects.filter(run=run, reason_product__isnull=False).exists()
    assert Recommendation.objects.filter(run=run).count() == (
        Recommendation.objects.filter(run=first).exclude(product_id=victim.pk).count())


def test_refresh_after_a_product_delete_neither_recommends_nor_names_it(shop):
    """A refresh reads the served run's snapshot, which still has a product deleted since:
    the refreshed list leaves it out, as recommendation and as reason, ranks closing up."""
    users, _ = shop(sessions=2)
    run = pipeline.run_full_recompute()
    recs = Recommendation.objects.filter(run=run)
    victim_id = (recs.exclude(reason_product__isnull=True).values_list("product_id", flat=True)
                 .first())
    named = set(recs.filter(reason_product_id=victim_id).values_list("user_id", flat=True))
    listed = set(recs.filter(product_id=victim_id).values_list("user_id", flat=True))
    assert listed, "the victim is in someone's list"
    _vanish(get_product_model().objects.get(pk=victim_id))
    for user_id in listed | named:
        pipeline.refresh_user(user_id)
        mine = list(recs.filter(user_id=user_id).order_by("rank")
                    .values_list("product_id", "reason_product_id", "rank"))
        assert mine and all(victim_id not in (p, r) for p, r, _ in mine), mine
        assert [rank for _, _, rank in mine] == list(range(1, len(mine) + 1))


def test_user_deleted_mid_run_gets_no_list_in_the_activated_run(shop, monkeypatch):
    from django.contrib.auth import get_user_model

    users, _ = shop()
    gone, kept = users[0], users[1]

    def delete(run_id):
        Rating.objects.filter(user=gone).delete()
        Interaction.objects.filter(user=gone).delete()
        PendingRefresh.objects.filter(user=gone).delete()  # queued by the rating delete
        get_user_model()._base_manager.filter(pk=gone.pk)._raw_delete(DEFAULT_DB_ALIAS)
        assert Recommendation.objects.filter(run_id=run_id, user_id=gone.pk).exists()

    _activate_after(delete, monkeypatch)
    run = pipeline.run_full_recompute()
    assert run.status == RecomputeRun.Status.SUCCEEDED
    assert not Recommendation.objects.filter(run=run, user_id=gone.pk).exists()
    assert Recommendation.objects.filter(run=run, user=kept).exists()


def test_drop_orphans_touches_nothing_when_every_product_exists(shop):
    shop()
    run = pipeline.run_full_recompute()
    sims = ItemSimilarity.objects.filter(run=run).count()
    recs = list(Recommendation.objects.filter(run=run).values_list("reason_product_id"))
    keys = list(get_product_model().objects.values_list("pk", flat=True))
    user_keys = list(Recommendation.objects.values_list("user_id", flat=True).distinct())
    assert runs.drop_orphans(run.pk, keys, user_keys) == 0
    assert runs.drop_orphans(run.pk, []) == 0
    assert ItemSimilarity.objects.filter(run=run).count() == sims
    assert list(Recommendation.objects.filter(run=run).values_list("reason_product_id")) == recs


def test_drop_orphans_only_touches_the_given_run(shop):
    shop()
    old = pipeline.run_full_recompute()
    new = pipeline.run_full_recompute()
    victim = _busiest_product(new)
    _vanish(victim)
    keys = [victim.pk, *get_product_model().objects.values_list("pk", flat=True)]
    assert runs.drop_orphans(new.pk, keys) > 0
    assert _refs(new, victim.pk) == {"product": 0, "similar_product": 0, "recommended": 0,
                                     "reason": 0}
    assert _refs(old, victim.pk)["similar_product"] > 0  # not this call's business


def test_deleting_a_product_still_cascades_to_every_run(shop):
    """No database constraint any more, but Django's collector still deletes the rows (and
    clears reasons), so a deleted product never lingers in served results."""
    shop()
    runs_ = [pipeline.run_full_recompute(), pipeline.run_full_recompute()]
    victim = _busiest_product(runs_[-1])
    assert all(_refs(r, victim.pk)["similar_product"] for r in runs_)
    explained = list(Recommendation.objects.filter(reason_product_id=victim.pk)
                     .exclude(product_id=victim.pk).values_list("pk", flat=True))
    recommended = Recommendation.objects.filter(product_id=victim.pk).count()
    total = Recommendation.objects.count()
    assert explained
    pk = victim.pk
    victim.delete()
    for r in runs_:
        assert _refs(r, pk) == {"product": 0, "similar_product": 0, "recommended": 0,
                                       "reason": 0}
    # the victim's own rows went; rows it only explained stay (SET_NULL on the reason)
    assert Recommendation.objects.count() == total - recommended
    assert set(Recommendation.objects.filter(pk__in=explained)
               .values_list("reason_product_id", flat=True)) == {None}


def test_serving_skips_rows_of_a_missing_product(shop):
    """Rows can outlive their product (a raw delete, a delete racing activation): serving
    filters on available products, so it neither fails nor shows the missing one."""
    users, products = shop()
    run = pipeline.run_full_recompute()
    victim = _busiest_product(run)
    user = Recommendation.objects.filter(run=run, product_id=victim.pk).values_list(
        "user_id", flat=True).first() or users[0].pk
    source = ItemSimilarity.objects.filter(run=run, similar_product_id=victim.pk).values_list(
        "product_id", flat=True).first()
    _vanish(victim)
    assert _refs(run, victim.pk)["similar_product"]  # orphans are really there
    request = RequestFactory().get("/")
    request.user = type(users[0]).objects.get(pk=user)
    request.session = {}
    personal = services.recommended_for(request.user, 10, request=request)
    similar = services.similar_products(get_product_model().objects.get(pk=source), 10,
                                        request=request)
    assert personal.items and similar.items
    assert victim.pk not in [i.pk for i in personal.items]
    assert victim.pk not in [i.pk for i in similar.items]


def test_erasing_a_user_still_deletes_their_stored_lists(shop):
    from shopreco import privacy

    users, _ = shop()
    run = pipeline.run_full_recompute()
    gone = users[0]
    assert Recommendation.objects.filter(run=run, user=gone).exists()
    privacy.erase_user_data(gone)
    assert not Recommendation.objects.filter(user=gone).exists()
    assert Recommendation.objects.filter(run=run, user=users[1]).exists()
    pk = users[1].pk
    users[1].delete()  # deleting the account cascades in Django, constraint or not
    assert not Recommendation.objects.filter(user_id=pk).exists()


# ----------------------------------------------------------------------------- housekeeping
def test_housekeeping_follows_the_activation_commit_and_is_timed_apart(shop, monkeypatch):
    shop()
    seen = []
    real_prune = runs.prune

    def watch_prune(keep=None):
        run = RecomputeRun.objects.order_by("-pk").first()
        seen.append((run.status, set(run.timings)))
        return real_prune(keep)

    monkeypatch.setattr(runs, "prune", watch_prune)
    monkeypatch.setattr(writer, "vacuum_analyze", lambda *models: seen.append("vacuum"))
    run = pipeline.run_full_recompute()
    # pruned once the run was live and its write/total were final; then VACUUM ANALYZE
    stages = {"load", "holdout", "similarities", "recommendations", "write", "total"}
    assert seen == [(RecomputeRun.Status.SUCCEEDED, stages), "vacuum"]
    assert set(run.timings) == stages | {"housekeeping"}
    assert run.timings["total"] == pytest.approx(
        sum(run.timings[k] for k in ("load", "holdout", "similarities", "recommendations",
                                     "write")),
        abs=0.05)


def test_failed_housekeeping_leaves_the_run_live(shop, monkeypatch):
    shop()

    def boom(*models):
        raise RuntimeError("vacuum refused")

    monkeypatch.setattr(writer, "vacuum_analyze", boom)
    run = pipeline.run_full_recompute()
    assert run.status == RecomputeRun.Status.SUCCEEDED
    assert RecomputeRun.latest_succeeded() == run
    assert "housekeeping" not in run.timings


def test_celery_run_hands_housekeeping_to_its_own_task(shop, monkeypatch,
                                                       django_capture_on_commit_callbacks):

    shop()
    sent = []
    real = tasks.housekeeping.apply_async

    def spy(args=None, **kwargs):
        sent.append(list(args or []))
        return real(args=args, **kwargs)

    monkeypatch.setattr(tasks.housekeeping, "apply_async", spy)
    with django_capture_on_commit_callbacks(execute=True):
        run = tasks.request_full_recompute()  # eager Celery: the task runs right away
    run.refresh_from_db()
    assert run.status == RecomputeRun.Status.SUCCEEDED, run.error
    assert sent == [[run.pk]]
    assert "housekeeping" in run.timings


@override_settings(SHOPRECO={"KEEP_RUNS": 1})
def test_housekeeping_task_from_beat_prunes_old_runs(shop, monkeypatch):

    shop(n_users=6, n_products=12)
    monkeypatch.setattr(runs, "prune", lambda keep=None: [])  # runs pile up, as if lost
    made = [pipeline.run_full_recompute() for _ in range(3)]
    monkeypatch.undo()
    assert RecomputeRun.objects.count() == 3
    result = tasks.housekeeping.apply().get()  # beat sends no run id
    assert sorted(result["pruned"]) == [made[0].pk, made[1].pk]
    assert list(RecomputeRun.objects.values_list("pk", flat=True)) == [made[2].pk]
    assert not ItemSimilarity.objects.filter(run_id__in=[made[0].pk, made[1].pk]).exists()


# ----------------------------------------------------------------------------- binary COPY
def _sim_rows(run_id: int) -> list[tuple]:
    return sorted(ItemSimilarity.objects.filter(run_id=run_id).values_list(
        "kind", "product_id", "similar_product_id", "score"))


@pytest.mark.django_db(transaction=True)
def test_binary_copy_writes_exactly_the_rows_of_text_copy(product_factory, monkeypatch):
    """Integer keys go through COPY's binary format (built by numpy); it must store the same
    rows as the text format, scores bit for bit, over parallel streams too."""
    import numpy as np
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("COPY is the PostgreSQL write path (run with DATABASE_URL)")
    keys = [p.pk for p in (product_factory() for _ in range(40))]
    rng = np.random.default_rng(3)
    n = 3000
    src, dst = rng.integers(0, 40, n), rng.integers(0, 40, n)
    score = np.concatenate([rng.random(n - 4), [1 / 3, 1e-300, 0.1, 2.0 ** 60]])
    monkeypatch.setattr(writer, "_split", lambda n, parts: [(0, n // 3), (n // 3, n)])
    formats = []
    real = writer.copy_chunks
    monkeypatch.setattr(writer, "copy_chunks", lambda model, cols, chunks, binary=False: (
        formats.append((binary, len(chunks))), real(model, cols, chunks, binary=binary))[1])
    written = {}
    for binary in (True, False):
        run = RecomputeRun.objects.create(status=RecomputeRun.Status.RUNNING)
        for kind in ("similar", "also_bought"):
            assert writer.write_similarities(run.pk, kind, src, dst, score, keys,
                                             binary=binary) == n
        written[binary] = _sim_rows(run.pk)
    assert formats == [(True, 2), (True, 2), (False, 2), (False, 2)]
    assert len(written[True]) == 2 * n
    assert written[True] == written[False]
    assert {s for *_, s in written[True]} >= {1 / 3, 1e-300, 0.1, 2.0 ** 60}


def test_binary_rows_only_for_integer_keys():
    """UUID and text keys have no binary layout here: the writer falls back to text COPY
    (tests/keytypes run full recomputes with each key type)."""
    import numpy as np
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("COPY is the PostgreSQL write path (run with DATABASE_URL)")
    src = dst = np.array([0, 1])
    score = np.array([0.5, 0.25])
    rows = writer.similarity_rows_binary(7, "similar", src, dst, score, [11, 12], connection)
    if get_product_model()._meta.pk.get_internal_type() in ("UUIDField", "CharField"):
        assert rows is None
    else:  # bigint keys: header, 2 tuples of 5 fields, trailer
        assert rows is not None and len(rows) == 1
        body = rows[0]
        assert body.startswith(b"PGCOPY\n\xff\r\n\x00") and body.endswith(b"\xff\xff")
        assert len(body) == 19 + 2 * (2 + 4 * 5 + 8 + len(b"similar") + 8 + 8 + 8) + 2


# ----------------------------------------------------------------------------- top rows
def test_top_rows_with_two_sort_keys_equals_the_three_key_sort():
    """The cheaper sort relies on sorted CSR columns and a stable sort to break ties by the
    smaller column: same rows as sorting by (row, -score, column) explicitly."""
    import numpy as np
    import scipy.sparse as sp

    from shopreco.pipeline import compute

    rng = np.random.default_rng(5)
    dense = rng.choice([0.0, 0.0, 0.5, 0.25, -0.5, 1.0], size=(60, 80))  # many ties
    S = sp.csr_matrix(dense)
    shuffled = S.copy()  # unsorted column indices within rows
    for i in range(S.shape[0]):
        a, b = shuffled.indptr[i], shuffled.indptr[i + 1]
        perm = rng.permutation(b - a)
        shuffled.indices[a:b] = shuffled.indices[a:b][perm]
        shuffled.data[a:b] = shuffled.data[a:b][perm]
    shuffled.has_sorted_indices = False
    for positive in (True, False):
        rows, cols, vals = [], [], []
        for i in range(dense.shape[0]):
            cells = [(-dense[i, j], j) for j in range(dense.shape[1])
                     if dense[i, j] != 0 and (dense[i, j] > 0 or not positive)]
            for neg, j in sorted(cells)[:7]:
                rows.append(i)
                cols.append(j)
                vals.append(-neg)
        for M in (S, shuffled):
            src, dst, score = compute.top_rows(M, 7, positive=positive)
            assert src.tolist() == rows and dst.tolist() == cols and score.tolist() == vals


def test_user_erased_mid_run_gets_no_list_from_that_run(shop, monkeypatch):
    from shopreco import privacy

    users, _ = shop()
    erased, kept = users[0], users[1]

    def erase(run_id):
        assert Recommendation.objects.filter(run_id=run_id, user=erased).exists()
        privacy.erase_user_data(erased)  # deletes the rows written so far...
        assert not Recommendation.objects.filter(run_id=run_id, user=erased).exists()
        _rewrite_lists_of(run_id, erased)  # ...but a run in flight writes after it

    _activate_after(erase, monkeypatch)
    run = pipeline.run_full_recompute()
    assert run.status == RecomputeRun.Status.SUCCEEDED
    assert not Recommendation.objects.filter(user=erased).exists()
    assert Recommendation.objects.filter(run=run, user=kept).exists()


def test_user_who_opted_out_mid_run_gets_no_list_from_that_run(shop, monkeypatch):
    from shopreco import privacy

    users, _ = shop()
    out, kept = users[0], users[1]

    def opt_out(run_id):
        privacy.set_preferences(out, False)
        _rewrite_lists_of(run_id, out)

    _activate_after(opt_out, monkeypatch)
    run = pipeline.run_full_recompute()
    assert not Recommendation.objects.filter(user=out).exists()
    assert Recommendation.objects.filter(run=run, user=kept).exists()


def test_erasure_before_a_run_started_does_not_drop_the_new_list(shop):
    from shopreco import privacy

    users, _ = shop()
    user = users[0]
    privacy.erase_user_data(user)  # all of the user's data gone...
    # ...so new activity after the erasure, then a run, gives the user a list again
    products = list(get_product_model().objects.order_by("pk")[:4])
    for p in products:
        Rating.objects.create(user=user, product=p, score=5)
    run = pipeline.run_full_recompute()
    assert Recommendation.objects.filter(run=run, user=user).exists()
