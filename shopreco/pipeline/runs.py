"""Run lifecycle: one-at-a-time lock, claiming, heartbeat, failure, activation and pruning.

The lock is a database lock held only for the short "check, then create" transaction, so it
works wherever the database does (several web servers, several worker machines):

- PostgreSQL: ``pg_advisory_xact_lock`` (released at commit).
- SQLite: the transaction's first statement is a write (an UPDATE that matches nothing),
  which takes SQLite's database-wide write lock at once; a second process waits on the busy
  timeout instead of both reading "nothing is running". (SQLite ignores SELECT ... FOR
  UPDATE, so that alone would not serialise anything.)
- Other backends: SELECT ... FOR UPDATE on the active runs (best effort).

A run that stops sending heartbeats for ``STALE_RUN_SECONDS`` (its worker died) is marked
failed under the same lock, so the next request can start a fresh run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.models import F, Max, Model, Q
from django.utils import timezone

from shopreco import cache
from shopreco.conf import get_product_model, reco_settings
from shopreco.models import (
    Deployment,
    Experiment,
    ExperimentArm,
    ItemSimilarity,
    Preference,
    Recommendation,
    RecomputeRun,
)
from shopreco.pipeline.storage import delete_run_files

log = logging.getLogger("shopreco.pipeline")

ACTIVE = (RecomputeRun.Status.PENDING, RecomputeRun.Status.RUNNING)
_PG_LOCK_KEY = 0x5EC0_0001  # arbitrary, constant: "shopreco full recompute"


class RunAborted(Exception):
    """The run is no longer running (failed as stale, or finished elsewhere): stop quietly."""


class RecomputeInProgress(Exception):
    """A full recompute is already pending or running; ``run`` is that run."""

    def __init__(self, run: RecomputeRun) -> None:
        super().__init__(f"Run #{run.pk} is already {run.status}")
        self.run = run


def _db() -> str:
    return router.db_for_write(RecomputeRun) or DEFAULT_DB_ALIAS


@contextlib.contextmanager
def recompute_lock() -> Iterator[None]:
    """A transaction holding the database-wide recompute lock (see the module docstring)."""
    using = _db()
    with transaction.atomic(using=using):
        conn = connections[using]
        with conn.cursor() as cursor:
            table = conn.ops.quote_name(RecomputeRun._meta.db_table)
            if conn.vendor == "postgresql":
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_LOCK_KEY])
            elif conn.vendor == "sqlite":
                cursor.execute(f"UPDATE {table} SET id = id WHERE 0 = 1")  # noqa: S608
            else:
                list(
                    RecomputeRun.objects.select_for_update()
                    .filter(status__in=ACTIVE)
                    .values_list("pk", flat=True)
                )
        yield


def mark_stale_runs(now=None) -> list[int]:
    """Fail active runs whose heartbeat is older than STALE_RUN_SECONDS; return their ids."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=float(reco_settings.STALE_RUN_SECONDS))
    stale = RecomputeRun.objects.filter(kind=RecomputeRun.Kind.FULL, status__in=ACTIVE).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    ids = list(stale.values_list("pk", flat=True))
    for pk in ids:
        fail_run(pk, f"stale: no heartbeat for {reco_settings.STALE_RUN_SECONDS} s "
                     "(worker died or was killed)")
    return ids


def active_run() -> RecomputeRun | None:
    return (
        RecomputeRun.objects.filter(kind=RecomputeRun.Kind.FULL, status__in=ACTIVE)
        .order_by("created_at", "pk")
        .first()
    )


def create_or_get_active(params: dict[str, Any]) -> tuple[RecomputeRun, bool]:
    """Under the lock: the active run if there is one (coalescing), else a new pending run."""
    with recompute_lock():
        mark_stale_runs()
        run = active_run()
        if run is not None:
            return run, False
        now = timezone.now()
        run = RecomputeRun.objects.create(
            kind=RecomputeRun.Kind.FULL,
            status=RecomputeRun.Status.PENDING,
            algorithm=str(params.get("algorithm", "")),
            params=params,
            stage="queued",
            heartbeat_at=now,
        )
        return run, True


def claim(run_id: int) -> bool:
    """pending -> running, exactly once (a redelivered task finds nothing to claim)."""
    now = timezone.now()
    return bool(
        RecomputeRun.objects.filter(pk=run_id, status=RecomputeRun.Status.PENDING).update(
            status=RecomputeRun.Status.RUNNING,
            started_at=now,
            heartbeat_at=now,
            stage="load",
            progress=0.0,
        )
    )


def beat(run_id: int, stage: str | None = None, progress: float | None = None,
         add_progress: float | None = None, **fields: Any) -> None:
    """Heartbeat (and progress); raises :class:`RunAborted` if the run is no longer running."""
    values: dict[str, Any] = {"heartbeat_at": timezone.now(), **fields}
    if stage is not None:
        values["stage"] = stage
    if progress is not None:
        values["progress"] = min(100.0, float(progress))
    if add_progress is not None:
        values["progress"] = F("progress") + float(add_progress)
    updated = RecomputeRun.objects.filter(
        pk=run_id, status=RecomputeRun.Status.RUNNING
    ).update(**values)
    if not updated:
        raise RunAborted(run_id)


def ensure_running(run_id: int) -> RecomputeRun:
    run = RecomputeRun.objects.filter(pk=run_id).first()
    if run is None or run.status != RecomputeRun.Status.RUNNING:
        raise RunAborted(run_id)
    return run


def merge_json(run_id: int, field: str, values: dict[str, Any]) -> None:
    """Merge keys into a JSON field of the run (read-modify-write by one task at a time)."""
    run = RecomputeRun.objects.only(field).get(pk=run_id)
    current = dict(getattr(run, field) or {})
    current.update(values)
    RecomputeRun.objects.filter(pk=run_id).update(**{field: current})


def fail_run(run_id: int, error: Any) -> None:
    """Mark an active run failed and drop its partial results: a failed run is never served."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    updated = RecomputeRun.objects.filter(pk=run_id, status__in=ACTIVE).update(
        status=RecomputeRun.Status.FAILED,
        error=text[:5000],
        finished_at=timezone.now(),
        stage="failed",
    )
    if updated:
        log.warning("shopreco run #%s failed: %s", run_id, text)
        try:
            delete_results(run_id)
            delete_run_files(run_id, prefix=_prefix(run_id))
        except Exception:  # pragma: no cover - clean-up is best effort; prune retries it
            log.exception("could not clean up failed run #%s", run_id)


def delete_results(run_id: int) -> None:
    """Drop a run's result rows with one DELETE per table.

    Nothing references these rows, so no cascade is needed; a plain ``.delete()`` would
    fetch every row into memory as soon as any global post_delete receiver exists.
    """
    using = _db()
    for model in (ItemSimilarity, Recommendation):
        model.objects.using(using).filter(run_id=run_id)._raw_delete(using)


# Keys per statement when looking up products outside PostgreSQL (SQLite's variable limit).
_IN_CHUNK = 900


def _existing(model: type[Model], keys: Sequence[Any]) -> set[Any]:
    """The subset of ``keys`` (database values) still present in ``model``'s table."""
    using = router.db_for_read(model) or DEFAULT_DB_ALIAS
    conn = connections[using]
    if conn.vendor == "postgresql":
        table = conn.ops.quote_name(model._meta.db_table)
        column = conn.ops.quote_name(model._meta.pk.column)
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT {column} FROM {table} WHERE {column} = ANY(%s)",  # noqa: S608
                           [list(keys)])
            return {row[0] for row in cursor.fetchall()}
    found: set[Any] = set()
    manager = model._base_manager.using(using)  # not the default manager: it may hide rows
    for a in range(0, len(keys), _IN_CHUNK):
        found.update(manager.filter(pk__in=list(keys[a:a + _IN_CHUNK]))
                     .values_list("pk", flat=True))
    prep = model._meta.pk.get_db_prep_value
    return {prep(pk, conn) for pk in found}


def _missing(model: type[Model], keys: Sequence[Any]) -> list[Any]:
    if not len(keys):
        return []
    existing = _existing(model, keys)
    return [k for k in keys if k not in existing]


def missing_products(product_keys: Sequence[Any]) -> list[Any]:
    """The keys (database values) among ``product_keys`` whose product no longer exists."""
    return _missing(get_product_model(), product_keys)


def drop_orphans(run_id: int, product_keys: Sequence[Any],
                 user_keys: Sequence[Any] = ()) -> int:
    """Remove the run's rows that point at products or users deleted while the run computed.

    The result tables have no database FK constraints (a check per COPY'd row cost more
    than the COPY), so a product or user deleted between the snapshot and the write would
    leave rows behind: rows of a gone product are deleted (as neighbour or recommendation)
    and reason links to it cleared; a gone user's list is deleted. Keys are the database
    values of the snapshot's products and users. Later deletes are cascaded by Django as
    usual. Returns the number of rows touched.
    """
    gone = _missing(get_product_model(), product_keys)
    gone_users = _missing(get_user_model(), user_keys)
    if not gone and not gone_users:
        return 0
    using = _db()
    conn = connections[using]
    n = 0
    if conn.vendor == "postgresql":
        sim = conn.ops.quote_name(ItemSimilarity._meta.db_table)
        rec = conn.ops.quote_name(Recommendation._meta.db_table)
        with conn.cursor() as cursor:
            if gone:
                cursor.execute(
                    f"DELETE FROM {sim} WHERE run_id = %s AND "  # noqa: S608
                    "(product_id = ANY(%s) OR similar_product_id = ANY(%s))",
                    [run_id, gone, gone])
                n += cursor.rowcount
            if gone or gone_users:
                cursor.execute(f"DELETE FROM {rec} WHERE run_id = %s AND "  # noqa: S608
                               "(product_id = ANY(%s) OR user_id = ANY(%s))",
                               [run_id, gone, gone_users])
                n += cursor.rowcount
            if gone:
                cursor.execute(f"UPDATE {rec} SET reason_product_id = NULL "  # noqa: S608
                               "WHERE run_id = %s AND reason_product_id = ANY(%s)",
                               [run_id, gone])
                n += cursor.rowcount
        return n
    sims = ItemSimilarity.objects.using(using).filter(run_id=run_id)
    recs = Recommendation.objects.using(using).filter(run_id=run_id)
    for a in range(0, len(gone), _IN_CHUNK):
        part = gone[a:a + _IN_CHUNK]
        n += sims.filter(Q(product_id__in=part) | Q(similar_product_id__in=part))._raw_delete(
            using)
        n += recs.filter(product_id__in=part)._raw_delete(using)
        n += recs.filter(reason_product_id__in=part).update(reason_product_id=None)
    for a in range(0, len(gone_users), _IN_CHUNK):
        n += recs.filter(user_id__in=gone_users[a:a + _IN_CHUNK])._raw_delete(using)
    return n


def lock_active_runs() -> None:
    """Row-lock the pending and running runs until the caller's transaction ends.

    Erasure and opt-out call this first, and :func:`activate` locks its run too, so the two
    serialise: either the activation commits first (then the erasure deletes the run's
    rows like any other) or it waits and sees the erasure in :func:`drop_withdrawn_users`.
    """
    list(RecomputeRun.objects.select_for_update().filter(status__in=ACTIVE)
         .values_list("pk", flat=True))


def drop_withdrawn_users(run_id: int, since: Any) -> int:
    """Delete the run's lists of users who opted out, or erased their data after the run
    read it (``since``: when it started): the run computed them from data it may no longer
    use (privacy issue)."""
    withdrawn = Preference.objects.filter(
        Q(personalize=False) | Q(data_erased_at__gte=since)).values("user_id")
    using = _db()
    return Recommendation.objects.using(using).filter(
        run_id=run_id, user_id__in=withdrawn)._raw_delete(using)


def complete(run_id: int, values: dict[str, Any], product_keys: Sequence[Any] = (),
             user_keys: Sequence[Any] = (), *, deploy: bool = True,
             note: str = "passed the holdout gate") -> bool:
    """running -> succeeded (and deployed: from the commit on, serving reads this run), or,
    with ``deploy=False``, running -> rejected: the results are kept for staff to inspect
    and activate anyway, and the live run keeps serving. One transaction either way.

    Rows of products and users deleted while the run computed are dropped in the same
    transaction (:func:`drop_orphans`), so the run goes live without them.
    """
    with transaction.atomic(using=_db()):
        locked = RecomputeRun.objects.filter(
            pk=run_id, status=RecomputeRun.Status.RUNNING
        ).select_for_update().values_list("started_at", "created_at", "kind").first()
        if locked is None:
            return False
        drop_orphans(run_id, product_keys, user_keys)
        drop_withdrawn_users(run_id, since=locked[0] or locked[1])
        now = timezone.now()
        updated = RecomputeRun.objects.filter(
            pk=run_id, status=RecomputeRun.Status.RUNNING
        ).update(
            status=RecomputeRun.Status.SUCCEEDED if deploy else RecomputeRun.Status.REJECTED,
            stage="done" if deploy else "rejected",
            progress=100.0,
            finished_at=now,
            heartbeat_at=now,
            **values,
        )
        if updated and deploy and locked[2] == RecomputeRun.Kind.FULL:
            _deploy(run_id, None, note)
    return bool(updated)


def activate(run_id: int, values: dict[str, Any], product_keys: Sequence[Any] = (),
             user_keys: Sequence[Any] = ()) -> bool:
    """running -> succeeded and deployed (:func:`complete`)."""
    return complete(run_id, values, product_keys, user_keys, deploy=True)


def _deploy(run_id: int, by: Any, note: str) -> Deployment:
    deployment = Deployment.objects.create(run_id=run_id, activated_by=by, note=note[:255])
    # Now for this process (and tests, which never commit), and again after the commit, in
    # case a request re-read the old pointer in between. Cached lists are keyed by run, so
    # the switch leaves none stale.
    cache.forget_served_run()
    transaction.on_commit(cache.forget_served_run, using=_db())
    return deployment


class NotActivatable(ValueError):
    """The run cannot go live (the message says why, for staff)."""


def deploy(run_id: int, by: Any = None, note: str = "") -> Deployment:
    """Serve run ``run_id`` from the next request on: a rollback to an older run, a run the
    holdout gate rejected, activated anyway, or an experiment arm's run (promoting the arm).
    Staff's action (admin, command, API, experiment admin); who and when are recorded. Only a
    finished full or arm run, with its lists, can go live, and not one that read data a
    shopper has since erased."""
    with transaction.atomic(using=_db()):
        run = RecomputeRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise NotActivatable(f"Run #{run_id} does not exist (it may have been pruned).")
        if run.kind not in (RecomputeRun.Kind.FULL, RecomputeRun.Kind.ARM):
            raise NotActivatable(f"Run #{run_id} is an {run.get_kind_display().lower()}, "
                                 "not a full recompute: it has no lists to serve.")
        if run.status not in (RecomputeRun.Status.SUCCEEDED, RecomputeRun.Status.REJECTED):
            raise NotActivatable(f"Run #{run_id} is {run.get_status_display().lower()}: "
                                 "only a succeeded or rejected run can go live.")
        if predates_erasure(run):
            raise NotActivatable(f"Run #{run_id} read data a shopper has since erased: it "
                                 "can no longer be served.")
        live = RecomputeRun.live()
        if live is not None and live.pk == run.pk:
            raise NotActivatable(f"Run #{run_id} is already live.")
        if not note:
            note = ("activated by staff despite the holdout gate"
                    if run.status == RecomputeRun.Status.REJECTED else "activated by staff")
        if run.status == RecomputeRun.Status.REJECTED:
            RecomputeRun.objects.filter(pk=run.pk).update(
                status=RecomputeRun.Status.SUCCEEDED, stage="done")
        return _deploy(run.pk, by if getattr(by, "pk", None) else None, note)


def latest_erasure() -> Any:
    """When a shopper's data was last erased (None: never)."""
    return Preference.objects.aggregate(latest=Max("data_erased_at"))["latest"]


def predates_erasure(run: RecomputeRun) -> bool:
    """Whether the run read its data before the latest erasure: its similarities, lists and
    files may still hold what was erased, so it is replaced by a new run and never kept."""
    erased = latest_erasure()
    read = run.started_at or run.created_at
    return erased is not None and read is not None and read < erased


def kept_for_experiments() -> set[int]:
    """Runs a running experiment serves (pinned, or computed for an arm's configuration)."""
    ids: set[int] = set()
    for pinned, computed in ExperimentArm.objects.filter(
            experiment__status=Experiment.Status.RUNNING).values_list("pinned_run", "run"):
        ids.update(pk for pk in (pinned, computed) if pk is not None)
    return ids


def prune(keep: int | None = None) -> list[int]:
    """Delete old runs with their rows and files:

    - succeeded full runs beyond the newest ``KEEP_RUNS`` (the live one always kept, and any
      a running experiment serves);
    - rejected and failed runs, and arm runs no experiment serves any more, once older than
      ``FAILED_RUN_RETENTION_DAYS`` (rejected ones stay that long for staff to inspect or
      activate anyway);
    - every finished run that read its data before the latest erasure (never the live one:
      a run computed after the erasure replaces it, and the next prune takes it).
    """
    keep = int(reco_settings.KEEP_RUNS if keep is None else keep)
    live = RecomputeRun.live()
    protected = kept_for_experiments() | ({live.pk} if live is not None else set())
    succeeded = RecomputeRun.objects.filter(
        kind=RecomputeRun.Kind.FULL, status=RecomputeRun.Status.SUCCEEDED,
    ).order_by("-created_at", "-pk")
    old = [pk for pk in succeeded.values_list("pk", flat=True)[max(keep, 1):]]
    cutoff = timezone.now() - timedelta(days=float(reco_settings.FAILED_RUN_RETENTION_DAYS))
    done = RecomputeRun.objects.exclude(status__in=ACTIVE).exclude(
        kind=RecomputeRun.Kind.EVALUATION)
    expired = done.filter(
        Q(status__in=[RecomputeRun.Status.REJECTED, RecomputeRun.Status.FAILED])
        | Q(kind=RecomputeRun.Kind.ARM)
    ).filter(Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff))
    old += [pk for pk in expired.values_list("pk", flat=True) if pk not in old]
    erased = latest_erasure()
    predating: set[int] = set()
    if erased is not None:
        predating = set(done.filter(
            Q(started_at__lt=erased) | Q(started_at__isnull=True, created_at__lt=erased)
        ).values_list("pk", flat=True))
        old += sorted(predating - set(old))
    # an experiment's run is kept, unless it read erased data (privacy comes first)
    old = [pk for pk in old if (live is None or pk != live.pk)
           and (pk not in protected or pk in predating)]
    for pk in old:
        prefix = _prefix(pk)
        delete_results(pk)  # in chunks of one run: keeps each DELETE bounded
        RecomputeRun.objects.filter(pk=pk).delete()
        delete_run_files(pk, prefix=prefix)
    return old


def _prefix(run_id: int) -> str | None:
    params = RecomputeRun.objects.filter(pk=run_id).values_list("params", flat=True).first()
    return (params or {}).get("snapshot_prefix")

