"""The stages of a full run, each a plain function so that the in-process run
(:func:`run_full_recompute`) and the Celery run (``shopreco.tasks``, which shards the stages
over the workers) execute the same code:

1. ``start_run``: claim the run, stream ratings/events into a snapshot (``.npz`` through
   Django storage) and the also-bought neighbours.
2. ``compute_block`` per item block (one task each; a chord across the workers), then
   ``assemble_similarities`` stacks the blocks into the run's similarity file (the "similar"
   lists). EASE is one block: its dense solve does not split; that task also saves the
   dense head weights (``files.EASE_PARTS``), which the batches and per-user refreshes
   score with.
3. ``compute_batch`` per user batch (one task each), recommendations with reason codes
   (user kNN computes its batch's user-user similarity rows here).
4. ``finish_run``: bulk-write results (COPY on PostgreSQL) and activate in one transaction.
   What must follow is returned, not started: :func:`catch_up` puts the shoppers who were
   active while the run computed into the refresh outbox, and ``housekeeping`` (delete the
   run's intermediate files, prune old runs, VACUUM ANALYZE the result tables) may run here
   or as a task of its own. Dispatching either is ``shopreco.tasks``' job: the pipeline never
   enqueues a task.

Only small values (run id, block bounds) travel through the broker; matrices go through
storage, so workers on other machines join by configuration alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from django.db import models, transaction

from shopreco import cache
from shopreco.conf import get_product_model, key_field
from shopreco.models import (
    Interaction,
    ItemSimilarity,
    PendingRefresh,
    Preference,
    Rating,
    Recommendation,
    RecomputeRun,
)
from shopreco.pipeline import compute, files, refresh, runs, selection, storage, writer
from shopreco.pipeline.matrix import Snapshot, load_snapshot
from shopreco.pipeline.runs import RecomputeInProgress, RunAborted

log = logging.getLogger("shopreco.pipeline")

ProgressCallback = Callable[[str, float], None]

# Progress (percent) at the start of each stage.
STAGES = {"load": 0.0, "holdout": 5.0, "similarities": 10.0, "recommendations": 50.0,
          "write": 85.0}
# Users active while the run computed get a refresh after activation, at most this many.
MAX_CATCH_UP_REFRESHES = 10000


_prep_cache: dict[str, Any] = {}


def _prepared_cache(key: str, make: Callable[[], Any]) -> Any:
    """What the tasks of a run share (prepared matrices, the fitted EASE model), once per
    worker process."""
    if key not in _prep_cache:
        _prep_cache.clear()  # one run at a time per process
        _prep_cache[key] = make()
    return _prep_cache[key]


def _mark(run_id: int, name: str) -> None:
    runs.merge_json(run_id, "timings", {f"_{name}": time.time()})


# ---------------------------------------------------------------------------- stage 1
def start_run(run_id: int) -> dict[str, Any] | None:
    """Claim and load. Returns the plan (params, blocks, batches) or None if not claimable."""
    if not runs.claim(run_id):
        log.info("run #%s is not pending any more: nothing to do", run_id)
        return None
    t0 = time.time()
    run = RecomputeRun.objects.get(pk=run_id)
    params = {**compute.run_params(), **run.params}
    snap = load_snapshot(times=True)
    t_loaded = time.time()
    if run.kind == RecomputeRun.Kind.FULL:
        runs.beat(run_id, stage="holdout", progress=STAGES["holdout"])
        live = RecomputeRun.live()
        outcome = selection.select(snap, params, live, previous=list(
            RecomputeRun.objects.filter(kind=RecomputeRun.Kind.FULL, finished_at__isnull=False)
            .exclude(status=RecomputeRun.Status.FAILED).order_by("-pk")[:20]))
        if not outcome.deploy and live is not None and runs.predates_erasure(live):
            # the live run holds data a shopper erased: it must be replaced, whatever the
            # scores say (privacy comes before the gate)
            outcome.deploy = True
            outcome.report["overruled"] = (f"the live run #{live.pk} read data erased since; "
                                           "this run replaces it: " + outcome.reason)
            outcome.report.pop("rejected", None)
            outcome.reason = ""
        params = {**outcome.params, "gate": {"deploy": outcome.deploy,
                                             "reason": outcome.reason}}
        runs.merge_json(run_id, "metrics", {"holdout": outcome.report})
    else:  # an experiment arm's lists: its configuration is given, not chosen
        params = compute.with_config(params, params.get("config") or {})
    t_holdout = time.time()
    params["method"] = compute.resolve_method(params, snap)
    run.params = params
    storage.save_bytes(files.run_file(run, files.SNAPSHOT), snap.to_bytes())
    ab = compute.also_bought(snap, params)
    storage.save_bytes(files.run_file(run, files.ALSO_BOUGHT), storage.csr_to_bytes(ab))
    plan = {
        "blocks": compute.blocks_for(snap, params),
        "batches": compute.user_batches(snap.n_users, params["user_batch_size"]),
    }
    params.update(n_blocks=len(plan["blocks"]), n_batches=len(plan["batches"]))
    t1 = time.time()
    runs.beat(
        run_id, stage="similarities", progress=STAGES["similarities"], params=params,
        algorithm=params["algorithm"],
        snapshot=files.run_file(run, files.SNAPSHOT),
        counts={"users": snap.n_users, "products": snap.n_products,
                "ratings": snap.n_ratings, "events": snap.n_events,
                "sessions": int(snap.R.shape[0] - snap.n_users)},
        timings={"load": round((t_loaded - t0) + (t1 - t_holdout), 3),
                 "holdout": round(t_holdout - t_loaded, 3),
                 "_t0": t0, "_load_end": t1},
    )
    plan["params"] = params
    return plan


# ---------------------------------------------------------------------------- stage 2
def compute_block(run_id: int, index: int, start: int, stop: int,
                  n_jobs: int | None = 1) -> str:
    """One item block of the similarity, saved to storage; returns the file name.

    Tasks use one thread (the worker pool is the parallelism); the in-process run lets the
    engine use threads (``n_jobs=None``). The result is bitwise the same either way.
    """
    run = runs.ensure_running(run_id)
    params = run.params
    snap = files.load_run_snapshot(run)
    P = _prepared_cache(f"{files.run_file(run, files.SNAPSHOT)}:{params['method']}",
                        lambda: compute.prepared(snap, params))
    S = compute.similarity_block(snap, params, start, stop, shared=P, n_jobs=n_jobs)
    if compute.model_of(params).learns_similarity and index == 0:
        name = storage.save_bytes(files.run_file(run, files.EASE_PARTS),
                                  storage.arrays_to_bytes(compress=False,
                                                          **compute.ease_parts_to_arrays(P)))
        storage.remember(name, P.parts())  # this process's batches share the model's arrays
        runs.merge_json(run_id, "metrics", {"ease_lambda": round(float(P.lambda_used_), 4)})
    name = storage.save_bytes(files.run_file(run, files.block_name(index)),
                              storage.csr_to_bytes(S))
    share = (STAGES["recommendations"] - STAGES["similarities"]) / max(params["n_blocks"], 1)
    runs.beat(run_id, add_progress=share)
    return name


def assemble_similarities(run_id: int) -> None:
    """Stack the block files into the run's similarity matrix."""
    run = runs.ensure_running(run_id)
    n = run.params["n_blocks"]
    snap = files.load_run_snapshot(run)
    parts = [storage.csr_from_bytes(storage.read_bytes(files.run_file(run, files.block_name(i))))
             for i in range(n)]
    S = compute.assemble(parts, snap.n_products)
    storage.save_bytes(files.run_file(run, files.SIMILARITY), storage.csr_to_bytes(S))
    runs.beat(run_id, stage="recommendations", progress=STAGES["recommendations"])
    _mark(run_id, "similarities_end")


# ---------------------------------------------------------------------------- stage 3
_model_cache: dict[str, Any] = {}


def _model(run: RecomputeRun, snap: Snapshot, start: int, stop: int):
    """The run's ranking model, once per worker process (batches of a run share it); the
    user-based model is made per batch (it holds only the batch's similarity rows)."""
    if compute.model_of(run.params).neighbours == "user":
        P = _prepared_cache(f"{files.run_file(run, files.SNAPSHOT)}:users",
                            lambda: compute.user_prepared(snap))
        return compute.fit_model(snap, files.load_run_similarity(run), run.params,
                                 user_rows=(start, stop), shared=P)
    key = files.run_file(run, files.SIMILARITY)
    if key not in _model_cache:
        _model_cache.clear()
        _model_cache[key] = compute.fit_model(snap, files.load_run_similarity(run), run.params,
                                              ease_parts=files.load_run_ease_parts(run))
    return _model_cache[key]


def compute_batch(run_id: int, index: int, start: int, stop: int) -> str:
    """Recommendations for user rows [start, stop), saved to storage."""
    run = runs.ensure_running(run_id)
    params = run.params
    snap = files.load_run_snapshot(run)
    batch = compute.recommend(_model(run, snap, start, stop), snap, params,
                              np.arange(start, stop, dtype=np.int64))
    name = storage.save_bytes(files.run_file(run, files.batch_name(index)),
                              storage.arrays_to_bytes(**batch.to_arrays()))
    share = (STAGES["write"] - STAGES["recommendations"]) / max(params["n_batches"], 1)
    runs.beat(run_id, add_progress=share)
    return name


# ---------------------------------------------------------------------------- stage 4
def _without_opted_out(recs: compute.RecBatch, snap: Snapshot) -> compute.RecBatch:
    """Drop the lists of users who switched personalisation off: they are served popular
    lists only, so a stored profile of them would be kept for nothing (privacy by default)."""
    opted_out = [str(pk) for pk in Preference.objects.filter(personalize=False)
                 .values_list("user_id", flat=True)]
    if not opted_out or not len(recs):
        return recs
    row_pks = np.array([str(pk) for pk in snap.user_pks[: snap.n_users].tolist()])
    keep = ~np.isin(recs.users, np.flatnonzero(np.isin(row_pks, opted_out)))
    return compute.RecBatch(*(getattr(recs, name)[keep] for name in (
        "users", "items", "scores", "ranks", "reason_codes", "reason_items")))


def finish_run(run_id: int) -> RecomputeRun:
    """Write all results and activate the run in one transaction.

    The write phase (and the run's total) ends at the activation commit: from then on the run
    is served. Pruning old runs and refreshing planner statistics are not needed to serve it,
    so they follow as :func:`housekeeping` (timed apart as ``timings["housekeeping"]``), and
    the shoppers active meanwhile as :func:`catch_up`; the caller runs or dispatches both.
    """
    run = runs.ensure_running(run_id)
    params = run.params
    t_write = time.time()
    _mark(run_id, "recommendations_end")
    runs.beat(run_id, stage="write", progress=STAGES["write"])
    snap = files.load_run_snapshot(run)
    S = files.load_run_similarity(run)
    ab = storage.csr_from_bytes(storage.read_bytes(files.run_file(run, files.ALSO_BOUGHT)))
    recs = compute.RecBatch.concat([
        compute.RecBatch.from_arrays(storage.arrays_from_bytes(
            storage.read_bytes(files.run_file(run, files.batch_name(i)))))
        for i in range(params["n_batches"])
    ])
    runs.delete_results(run_id)  # a redelivered task starts from a clean slate
    pkeys = writer.prep_keys(ItemSimilarity, "product", snap.product_pks)
    n_sim = 0
    written = {}
    for kind, M in ((ItemSimilarity.Kind.SIMILAR, S), (ItemSimilarity.Kind.ALSO_BOUGHT, ab)):
        src, dst, score = written[kind] = compute.top_rows(M, params["similar_per_product"])
        n_sim += writer.write_similarities(run_id, kind, src, dst, score, pkeys)
        runs.beat(run_id, add_progress=5.0)
    recs = _without_opted_out(recs, snap)
    ukeys = writer.prep_keys(Recommendation, "user", snap.user_pks)
    n_rec = writer.write_recommendations(
        run_id, recs.users, recs.items, recs.scores, recs.ranks, recs.reasons(),
        recs.reason_items, ukeys, pkeys,
    )
    run.refresh_from_db(fields=["timings", "counts", "metrics"])
    tm = dict(run.timings)
    t0 = tm.pop("_t0", t_write)
    load_end = tm.pop("_load_end", t0)
    sim_end = tm.pop("_similarities_end", load_end)
    rec_end = tm.pop("_recommendations_end", t_write)
    counts = {**run.counts, "similarities": n_sim, "recommendations": n_rec}
    recommended = np.unique(recs.items).size
    metrics = {
        **(run.metrics or {}),  # what the stages recorded (EASE: the lambda it used)
        "coverage": round(recommended / snap.n_products, 4) if snap.n_products else 0.0,
        "users_with_recommendations": int(np.unique(recs.users).size),
    }
    gate = params.get("gate") or {}
    deploy = bool(gate.get("deploy", True))
    values: dict[str, Any] = {"counts": counts, "metrics": metrics}
    if not deploy:
        values["error"] = f"Not deployed by the holdout gate: {gate.get('reason', '')}"
    if not runs.complete(run_id, values, product_keys=pkeys, user_keys=ukeys, deploy=deploy):
        raise RunAborted(run_id)
    t_end = time.time()  # the activation commit: the run is served from here on
    timings = {
        "load": tm.get("load", round(load_end - t0, 3)),
        "holdout": tm.get("holdout", 0.0),
        "similarities": round(sim_end - load_end, 3),
        "recommendations": round(rec_end - sim_end, 3),
        "write": round(t_end - rec_end, 3),
        "total": round(t_end - t0, 3),
    }
    RecomputeRun.objects.filter(pk=run_id).update(timings=timings)
    if not deploy:
        log.warning("shopreco run #%s rejected by the holdout gate: %s", run_id,
                    gate.get("reason", ""))
        return RecomputeRun.objects.get(pk=run_id)
    log.info("shopreco run #%s succeeded in %.1f s: %s", run_id, timings["total"], counts)
    transaction.on_commit(lambda: _warm_neighbour_lists(run_id, written, snap, pkeys))
    return RecomputeRun.objects.get(pk=run_id)


# Products whose neighbour lists are cached as a run goes live (the most interacted first);
# the others are read from the database on their first view, as before.
WARM_NEIGHBOUR_LISTS = 20_000


def _warm_neighbour_lists(run_id: int, written: dict, snap: Snapshot,
                          product_keys: list[Any]) -> None:
    """Hand the lists just written to the serving cache (see
    :func:`shopreco.cache.warm_neighbour_lists`), straight from the arrays: no read back.

    Runs once the activation has committed. Products deleted since the snapshot (their rows
    were dropped at activation, or they went just after it) are left out, as keys and as
    neighbours; one query finds them. Ties are in the snapshot's key order, which is the
    database's for integer and UUID keys only: with text keys (whose order follows the
    database collation) nothing is warmed. Skipped unless the cache is shared by all
    processes and not a small database or file cache (see
    :func:`shopreco.cache.is_shared`). A failure is logged and costs only the
    optimisation: serving reads the lists from the database."""
    pk_field = key_field(get_product_model())
    if not (isinstance(pk_field, models.IntegerField | models.UUIDField)
            and cache.is_shared()):
        return
    try:
        n = snap.n_products
        popularity = np.bincount(snap.R.indices, minlength=n)  # no column-major copy
        chosen = np.sort(np.argsort(-popularity, kind="stable")[:WARM_NEIGHBOUR_LISTS])
        gone = set(runs.missing_products(product_keys))
        alive = np.array([k not in gone for k in product_keys], dtype=bool)
        to_python = pk_field.to_python  # the type the ORM returns
        pks = [to_python(p) for p in snap.product_pks.tolist()]
        for kind, (src, dst, score) in written.items():
            keep = alive[src] & alive[dst]
            src, dst, score = src[keep], dst[keep], score[keep]
            starts = np.searchsorted(src, np.arange(n + 1))
            targets, scores = dst.tolist(), score.tolist()
            cache.warm_neighbour_lists(run_id, kind, (
                (pks[i], [(pks[targets[j]], scores[j]) for j in range(starts[i], starts[i + 1])])
                for i in chosen.tolist() if alive[i]
            ))
    except Exception:  # noqa: BLE001 - an optimisation; serving reads the database instead
        log.exception("could not cache the neighbour lists of run #%s", run_id)


def housekeeping(run_id: int | None = None) -> dict[str, Any]:
    """Maintenance after a run went live, none of it needed to serve that run: delete the
    run's intermediate files, prune old runs (keep KEEP_RUNS) and VACUUM ANALYZE the result
    tables on PostgreSQL (planner statistics for the serving queries, and space of pruned
    rows back, which matters where autovacuum is off or slow). Idempotent; with ``run_id``
    its duration is recorded as the run's ``timings["housekeeping"]``."""
    t0 = time.time()
    run = RecomputeRun.objects.filter(pk=run_id).first() if run_id is not None else None
    if run is not None and run.status in (RecomputeRun.Status.SUCCEEDED,
                                          RecomputeRun.Status.REJECTED):
        storage.delete_run_files(run.pk, keep=tuple(
            files.run_file(run, base).rsplit("/", 1)[-1]
            for base in (files.SNAPSHOT, files.SIMILARITY, files.EASE_PARTS)),
            prefix=run.params.get("snapshot_prefix"))
    pruned = runs.prune()
    writer.vacuum_analyze(ItemSimilarity, Recommendation)
    seconds = round(time.time() - t0, 3)
    if run is not None:
        runs.merge_json(run.pk, "timings", {"housekeeping": seconds})
    return {"pruned": pruned, "seconds": seconds}


def catch_up(run: RecomputeRun) -> list[Any]:
    """Shoppers who acted after the snapshot was read get their list refreshed on the new
    run, so activation never hides a rating made during the recompute: they go into the
    refresh outbox, and those who were not there already are returned, for the caller to
    dispatch their refresh."""
    since = run.started_at
    if since is None:
        return []
    users = set(
        Rating.objects.filter(updated_at__gte=since).values_list("user_id", flat=True)
        .order_by()[:MAX_CATCH_UP_REFRESHES]
    )
    users |= set(
        Interaction.objects.filter(created_at__gte=since, user__isnull=False)
        .values_list("user_id", flat=True).order_by()[:MAX_CATCH_UP_REFRESHES]
    )
    users |= set(PendingRefresh.objects.values_list("user_id", flat=True)
                 .order_by()[:MAX_CATCH_UP_REFRESHES])
    return [user_id for user_id in list(users)[:MAX_CATCH_UP_REFRESHES]
            if refresh.note_refresh(user_id)]


# ---------------------------------------------------------------------------- entry points
def create_run() -> tuple[RecomputeRun, bool]:
    """The pending or running full run if there is one (False), else a new pending run with
    the current settings (True): requests coalesce under the recompute lock."""
    return runs.create_or_get_active(compute.run_params())


def run_stages_in_process(run_id: int, plan: dict[str, Any],
                          progress: ProgressCallback | None = None) -> RecomputeRun:
    """Stages 2-4 in this process, with the same functions the tasks call."""
    def report(stage: str) -> None:
        if progress is not None:
            run = RecomputeRun.objects.only("stage", "progress").get(pk=run_id)
            progress(stage or run.stage, run.progress)

    report("similarities")
    for i, (a, b) in enumerate(plan["blocks"]):
        compute_block(run_id, i, a, b, n_jobs=None)
        report("similarities")
    assemble_similarities(run_id)
    for i, (a, b) in enumerate(plan["batches"]):
        compute_batch(run_id, i, a, b)
        report("recommendations")
    report("write")
    run = finish_run(run_id)
    report("done")
    return run


def run_full_recompute(run: RecomputeRun | None = None,
                       progress: ProgressCallback | None = None) -> RecomputeRun:
    """Synchronous, in-process full recompute (no broker needed), housekeeping included.

    With ``run=None`` a new run is created under the recompute lock; if another run is
    pending or running, :class:`RecomputeInProgress` is raised (carrying that run). The
    shoppers to catch up are left to the caller (:func:`catch_up`);
    ``shopreco.tasks.run_full_recompute`` dispatches their refreshes too.
    """
    if run is None:
        run, created = create_run()
        if not created:
            raise RecomputeInProgress(run)
    run_id = run.pk
    try:
        if progress is not None:
            progress("load", STAGES["load"])
        plan = start_run(run_id)
        if plan is None:
            run.refresh_from_db()
            raise RecomputeInProgress(run)
        run_stages_in_process(run_id, plan, progress)
    except (RecomputeInProgress, RunAborted):
        raise
    except BaseException as exc:
        runs.fail_run(run_id, exc)
        raise
    try:
        housekeeping(run_id)
    except Exception:  # the run is live; the next housekeeping (beat) catches up
        log.exception("housekeeping after run #%s failed", run_id)
    run.refresh_from_db()
    return run
