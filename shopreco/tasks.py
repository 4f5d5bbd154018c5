"""Celery tasks: thin ``@shared_task`` wrappers over :mod:`shopreco.pipeline`.

shopreco never creates a Celery app; the host's app (``demo_shop/celery.py`` is an example)
discovers these. Suggested ``CELERY_BEAT_SCHEDULE`` for the host::

    "shopreco-nightly-full-recompute": {"task": "shopreco.tasks.full_recompute",
                                        "schedule": crontab(hour=3, minute=0)},
    "shopreco-drain-refresh-outbox": {"task": "shopreco.tasks.drain_pending_refreshes",
                                      "schedule": 60.0},
    "shopreco-refresh-rankings": {"task": "shopreco.tasks.refresh_rankings",
                                  "schedule": 150.0},  # CACHE_TIMEOUT / 2
    "shopreco-purge-old-events": {"task": "shopreco.tasks.purge_old_events",
                                  "schedule": crontab(hour=4, minute=30)},
    "shopreco-housekeeping": {"task": "shopreco.tasks.housekeeping",
                              "schedule": crontab(hour=5, minute=0)},

(with django-celery-beat the same entries can live in the database instead).

Robustness: every task is idempotent (runs are claimed once; stage tasks of a run that is no
longer running return at once; files and rows are rewritten, not appended), so
``acks_late`` is safe; transient database errors retry with exponential backoff; soft and
hard time limits stop runaway work and fail the run cleanly. A full run shards over the
workers with chords when the Celery app has a result backend, and otherwise runs all its
stages inside the ``full_recompute`` task. Either way, once the run is live, maintenance
that serving does not wait for (pruning old runs, VACUUM ANALYZE) follows as a separate
``housekeeping`` task; its beat entry is a safety net should that task be lost.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import chain, chord, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError

from shopreco import pipeline
from shopreco.pipeline import refresh, runs

log = logging.getLogger("shopreco.tasks")

TRANSIENT = (OperationalError, InterfaceError)
MAX_RETRIES = 5

COMMON: dict[str, Any] = {"bind": True, "acks_late": True, "max_retries": MAX_RETRIES}


def _backoff(retries: int) -> float:
    """1, 2, 4, ... up to 60 s, with jitter so retries of many tasks spread out."""
    return min(60.0, 2.0**retries) * (0.5 + random.random() / 2)


def _guard(task, run_id: int | None, fn, *args):
    """Run a stage: retry transient DB errors, fail the run on anything else."""
    try:
        return fn(*args)
    except runs.RunAborted:
        log.info("%s: run #%s is no longer running; skipped", task.name, run_id)
        return None
    except TRANSIENT as exc:
        if task.request.retries < task.max_retries:
            raise task.retry(exc=exc, countdown=_backoff(task.request.retries)) from exc
        if run_id is not None:
            runs.fail_run(run_id, exc)
        raise
    except (SoftTimeLimitExceeded, Exception) as exc:
        if run_id is not None:
            runs.fail_run(run_id, exc)
        raise


@shared_task(name="shopreco.tasks.full_recompute", soft_time_limit=1800, time_limit=1900,
             **COMMON)
def full_recompute(self, run_id: int | None = None) -> int | None:
    """Start (or, from beat without a run id, request) a full recompute; returns the run id."""
    if run_id is None:
        run = _guard(self, None, pipeline.request_full_recompute)
        return run.pk if run is not None else None

    def start() -> None:
        plan = pipeline.start_run(run_id)
        if plan is None:
            return
        if not pipeline.can_shard() or not plan["blocks"] or not plan["batches"]:
            pipeline.run_stages_in_process(run_id, plan, defer_housekeeping=True)
            return
        canvas = chain(
            chord(
                [similarity_block.si(run_id, i, a, b) for i, (a, b) in enumerate(plan["blocks"])],
                assemble_similarities.si(run_id),
            ),
            chord(
                [recommend_batch.si(run_id, i, a, b) for i, (a, b) in
                 enumerate(plan["batches"])],
                activate_run.si(run_id),
            ),
        )
        canvas.apply_async()

    _guard(self, run_id, start)
    return run_id


@shared_task(name="shopreco.tasks.similarity_block", soft_time_limit=600, time_limit=660,
             **COMMON)
def similarity_block(self, run_id: int, index: int, start: int, stop: int) -> str | None:
    """Item rows [start, stop) of the similarity; the matrix comes from storage."""
    return _guard(self, run_id, pipeline.compute_block, run_id, index, start, stop)


@shared_task(name="shopreco.tasks.assemble_similarities", soft_time_limit=600, time_limit=660,
             **COMMON)
def assemble_similarities(self, run_id: int) -> None:
    """Chord callback: stack the blocks into the run's similarity file."""
    _guard(self, run_id, pipeline.assemble_similarities, run_id)


@shared_task(name="shopreco.tasks.recommend_batch", soft_time_limit=600, time_limit=660,
             **COMMON)
def recommend_batch(self, run_id: int, index: int, start: int, stop: int) -> str | None:
    """Recommendations for user rows [start, stop) of the run's snapshot."""
    return _guard(self, run_id, pipeline.compute_batch, run_id, index, start, stop)


@shared_task(name="shopreco.tasks.activate_run", soft_time_limit=1800, time_limit=1900,
             **COMMON)
def activate_run(self, run_id: int) -> int | None:
    """Chord callback: bulk-write the results and make the run the served one."""
    run = _guard(self, run_id, pipeline.finish_run, run_id, True)
    return run.pk if run is not None else None


@shared_task(name="shopreco.tasks.housekeeping", soft_time_limit=1800, time_limit=1900,
             **COMMON)
def housekeeping(self, run_id: int | None = None) -> dict[str, Any]:
    """After activation (and from beat): prune old runs, VACUUM ANALYZE the result tables.

    Never fails a run (the run is already live); transient database errors retry."""
    try:
        return pipeline.housekeeping(run_id)
    except TRANSIENT as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        raise


@shared_task(name="shopreco.tasks.refresh_user", soft_time_limit=60, time_limit=90, **COMMON)
def refresh_user(self, user_id: Any) -> None:
    """Recompute one shopper's list from the served run's similarities."""
    try:
        refresh.refresh_user(user_id)
    except TRANSIENT as exc:
        refresh.request_user_refresh_later(user_id)
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        raise


@shared_task(name="shopreco.tasks.drain_pending_refreshes", soft_time_limit=300,
             time_limit=360, **COMMON)
def drain_pending_refreshes(self) -> int:
    """Beat: re-enqueue outbox refreshes whose task was lost (e.g. broker was down)."""
    return refresh.drain_pending_refreshes()


@shared_task(name="shopreco.tasks.refresh_rankings", soft_time_limit=300, time_limit=360,
             **COMMON)
def refresh_rankings(self) -> int:
    """Beat: rebuild the popularity rankings before they fall due (shopreco.services)."""
    from shopreco import services

    return services.refresh_rankings()


@shared_task(name="shopreco.tasks.purge_old_events", soft_time_limit=1800, time_limit=1900,
             **COMMON)
def purge_old_events(self) -> int:
    """Beat: delete events older than EVENT_RETENTION_DAYS (shopreco.privacy)."""
    from shopreco import privacy

    return privacy.purge_old_events()
