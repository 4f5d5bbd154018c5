"""Celery tasks: thin ``@shared_task`` wrappers over :mod:`shopreco.pipeline`, and all
dispatch: the pipeline computes and returns what must follow, this module enqueues it ("enqueue,
or run here when Celery is eager" is :func:`_enqueue`, written once). Code above the pipeline
(admin, API, commands, signal receivers) starts work through the functions here:
:func:`request_full_recompute`, :func:`run_full_recompute`, :func:`request_user_refresh`.

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
hard time limits stop runaway work and fail the run cleanly.

Broker outages: a shopper's write never waits on the broker. The refresh it queues is an
outbox row first (``PendingRefresh``, in the write's transaction); the task is then sent by
a background thread of the web process (``drain_pending_refreshes`` re-sends it if that
fails). And after the broker refused a send, no send is tried for
:data:`BROKER_RETRY_SECONDS`: each falls back at once (the refresh stays in the outbox, a
requested run is marked failed, housekeeping runs here), so nobody waits on a broker known
to be down. Servers that disable Python threads (uWSGI without ``--enable-threads``) leave
the refreshes to ``drain_pending_refreshes``. A full run shards over the
workers with chords when the Celery app has a result backend, and otherwise runs all its
stages inside the ``full_recompute`` task. Either way, once the run is live, maintenance
that serving does not wait for (pruning old runs, VACUUM ANALYZE) follows as a separate
``housekeeping`` task; its beat entry is a safety net should that task be lost.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import chain, chord, current_app, shared_task
from celery.backends.base import DisabledBackend
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from shopreco import evaluation, pipeline, privacy
from shopreco.conf import reco_settings
from shopreco.models import RecomputeRun
from shopreco.pipeline import runs
from shopreco.serving import popularity

log = logging.getLogger("shopreco.tasks")

TRANSIENT = (OperationalError, InterfaceError)
MAX_RETRIES = 5

COMMON: dict[str, Any] = {"bind": True, "acks_late": True, "max_retries": MAX_RETRIES}

# After the broker refused a send, sends are not tried for this long (see the module doc).
BROKER_RETRY_SECONDS = 15.0
# Sends waiting for the background thread; beyond this the outbox alone keeps the work.
SEND_QUEUE_SIZE = 10_000
# How long a process that exits waits for the sends still queued.
SEND_FLUSH_SECONDS = 2.0


# --- dispatch -------------------------------------------------------------------------------


def is_eager() -> bool:
    """Whether tasks run in this process as they are sent (no worker, no broker)."""
    return bool(current_app.conf.task_always_eager)


def can_shard() -> bool:
    """Chords need a result backend; without one the worker runs all stages itself."""
    if is_eager():
        return True
    return not isinstance(current_app.backend, DisabledBackend)


class BrokerUnavailable(Exception):
    """A send not tried: the broker refused one less than BROKER_RETRY_SECONDS ago."""


_broker_down_until = 0.0  # time.monotonic() until which sends are not tried


def broker_retry_in() -> float:
    """Seconds until sends are tried again after the broker refused one (0: now)."""
    return max(0.0, _broker_down_until - time.monotonic())


def _enqueue(task: Any, args: list, *, countdown: float | None = None,
             refused: Callable[[Exception], None] | None = None) -> bool:
    """Send ``task``; when the broker refuses, call ``refused(exc)`` (run it here, fail the
    run, or leave it to a beat task) instead of failing the caller. After a refusal, sends
    are refused at once for BROKER_RETRY_SECONDS without trying the broker. Eager Celery
    runs the task right here, so its errors are the task's and propagate."""
    global _broker_down_until
    if is_eager():
        task.apply_async(args=args, countdown=countdown, retry=False)
        return True
    try:
        wait = broker_retry_in()
        if wait:
            raise BrokerUnavailable(f"the broker refused a send; not tried for {wait:.0f} s")
        task.apply_async(args=args, countdown=countdown, retry=False)
    except Exception as exc:
        if isinstance(exc, BrokerError | OSError) and not broker_retry_in():
            _broker_down_until = time.monotonic() + BROKER_RETRY_SECONDS
            log.error("broker unreachable (%s); sends are not tried for %g s", exc,
                      BROKER_RETRY_SECONDS)
        if refused is not None:
            refused(exc)
        else:
            log.error("could not enqueue %s%r: %s", task.name, tuple(args), exc)
        return False
    return True


# --- sending from a background thread -----------------------------------------------------

_sender: tuple[int, queue.Queue] | None = None  # (pid, queue) of this process's thread
_sender_lock = threading.Lock()


def _sender_reset() -> None:
    """In a forked child: the parent's thread did not come along (nor a held lock)."""
    global _sender, _sender_lock
    _sender, _sender_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_sender_reset)


def _send_loop(sends: queue.Queue) -> None:
    while True:
        app, send = sends.get()
        try:
            app.set_current()  # shared tasks resolve through the thread's current app
            send()
        except Exception:  # noqa: BLE001 - the thread must live on; the outbox keeps the work
            log.exception("background send failed")
        finally:
            sends.task_done()


def _sends() -> queue.Queue:
    global _sender
    pid = os.getpid()
    if _sender is None or _sender[0] != pid:
        with _sender_lock:
            if _sender is None or _sender[0] != pid:
                sends: queue.Queue = queue.Queue(maxsize=SEND_QUEUE_SIZE)
                threading.Thread(target=_send_loop, args=(sends,), daemon=True,
                                 name="shopreco-send").start()
                _sender = (pid, sends)
    return _sender[1]


def _send_in_background(send: Callable[[], Any]) -> None:
    """Run ``send`` on this process's sender thread, so the caller never waits on the broker
    (for work an outbox keeps anyway: a lost send is re-sent by a beat task)."""
    try:
        _sends().put_nowait((current_app._get_current_object(), send))
    except queue.Full:
        log.warning("too many sends waiting for the broker; this one is left to the outbox")


def flush_background_sends(timeout: float = SEND_FLUSH_SECONDS) -> bool:
    """Wait up to ``timeout`` s for the sends queued in this process; True if none is left.
    Called at exit, so a command that queued refreshes sends them before it ends."""
    if _sender is None or _sender[0] != os.getpid():
        return True
    sends = _sender[1]
    deadline = time.monotonic() + timeout
    with sends.all_tasks_done:
        while sends.unfinished_tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sends.all_tasks_done.wait(left)
    return True


atexit.register(flush_background_sends)


def request_full_recompute() -> RecomputeRun:
    """Coalesced request: the pending/running run if any, else a new run handed to Celery
    after commit (runs eagerly in-process when no broker is configured). If the broker
    refuses, the run is marked failed so it does not block the next request."""
    run, created = pipeline.create_run()
    if created:
        run_id = run.pk

        def refused(exc: Exception) -> None:
            log.error("could not enqueue run #%s: %s", run_id, exc)
            runs.fail_run(run_id, f"could not enqueue: {exc}")

        transaction.on_commit(lambda: _enqueue(full_recompute, [run_id], refused=refused))
    return run


def run_full_recompute(run: RecomputeRun | None = None,
                       progress: pipeline.stages.ProgressCallback | None = None) -> RecomputeRun:
    """A full run in this process (no worker needed), then the refreshes of the shoppers
    who were active meanwhile (see :func:`pipeline.run_full_recompute`)."""
    run = pipeline.run_full_recompute(run, progress)
    _catch_up(run)
    _rerun_if_it_predates_an_erasure(run)
    request_arm_runs(run=run)
    return run


def request_evaluation(params: dict[str, Any] | None = None) -> RecomputeRun:
    """A pending evaluation run with ``params`` (default: the served lists, holdout
    protocol), handed to a worker after commit, so no web request waits on it; eagerly in
    this process when there is no broker. A refused send marks it failed."""
    run = evaluation.new_run(params or evaluation.evaluation_params(), pending=True)
    run_id = run.pk

    def refused(exc: Exception) -> None:
        log.error("could not enqueue evaluation run #%s: %s", run_id, exc)
        runs.fail_run(run_id, f"could not enqueue: {exc}")

    transaction.on_commit(lambda: _enqueue(evaluate, [run_id], refused=refused))
    return run


def request_user_refresh(user_id: Any) -> None:
    """Outbox row now, ``refresh_user`` after commit; debounced per user. Never waits on a
    worker nor on the broker: the task is sent from a background thread, and if the broker
    refuses, the row stays and ``drain_pending_refreshes`` retries."""
    if pipeline.note_refresh(user_id):
        transaction.on_commit(lambda: _enqueue_refresh(user_id))


def _enqueue_refresh(user_id: Any) -> None:
    """Send a refresh: in the background outside workers (a web request, a command), here in
    a worker (a drain or a run's catch-up, whose tasks should not end before their sends)."""
    def send() -> None:
        _enqueue(refresh_user, [user_id],
                 countdown=float(reco_settings.REFRESH_DEBOUNCE_SECONDS),
                 refused=lambda exc: log.warning(
                     "could not enqueue refresh for user %s (%s); left in the outbox",
                     user_id, exc))

    if is_eager() or current_app.current_worker_task is not None:
        send()
    else:
        _send_in_background(send)


def _catch_up(run: RecomputeRun) -> None:
    if run.status != RecomputeRun.Status.SUCCEEDED:  # rejected: the live run did not change
        return
    for user_id in pipeline.catch_up(run):
        transaction.on_commit(lambda user_id=user_id: _enqueue_refresh(user_id))


def request_erasure_follow_up() -> RecomputeRun:
    """After a shopper's data was erased: a full run on what remains, whose housekeeping then
    prunes every run that read the erased data (coalesced with a run already requested; a
    run that read the data before the erasure asks for another once it is live)."""
    return request_full_recompute()


def _rerun_if_it_predates_an_erasure(run: RecomputeRun) -> None:
    if runs.predates_erasure(run):
        log.info("run #%s read data erased since; another run follows", run.pk)
        request_full_recompute()


def _after_activation(run: RecomputeRun) -> None:
    """What follows a run that went live on a worker: catch-up refreshes, another run if this
    one read data erased meanwhile, and housekeeping as a task of its own (done here if the
    broker refuses it: it must happen)."""
    _catch_up(run)
    _rerun_if_it_predates_an_erasure(run)
    request_arm_runs(run=run)

    def here(exc: Exception) -> None:
        log.error("could not enqueue housekeeping for run #%s (%s); running it here",
                  run.pk, exc)
        pipeline.housekeeping(run.pk)

    _enqueue(housekeeping, [run.pk], refused=here)


# --- tasks ----------------------------------------------------------------------------------


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
        run = _guard(self, None, request_full_recompute)
        return run.pk if run is not None else None

    def start() -> None:
        plan = pipeline.start_run(run_id)
        if plan is None:
            return
        if not can_shard() or not plan["blocks"] or not plan["batches"]:
            _after_activation(pipeline.run_stages_in_process(run_id, plan))
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
    run = _guard(self, run_id, pipeline.finish_run, run_id)
    if run is None:
        return None
    _after_activation(run)
    return run.pk


@shared_task(name="shopreco.tasks.evaluate", soft_time_limit=1800, time_limit=1900, **COMMON)
def evaluate(self, run_id: int) -> int | None:
    """Evaluate the shop's served lists with the options stored on the pending run."""
    claimed = RecomputeRun.objects.filter(pk=run_id, status=RecomputeRun.Status.PENDING,
                                          kind=RecomputeRun.Kind.EVALUATION).update(
        status=RecomputeRun.Status.RUNNING, started_at=timezone.now(), stage="evaluate")
    if not claimed:  # redelivered, or gone
        return None
    try:
        evaluation.run_evaluation(RecomputeRun.objects.get(pk=run_id))
    except evaluation.EvaluationError as exc:  # recorded on the run; not a task failure
        log.info("evaluation run #%s: %s", run_id, exc)
    return run_id


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
        pipeline.refresh_user(user_id)
    except TRANSIENT as exc:
        pipeline.request_user_refresh_later(user_id)
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        raise


@shared_task(name="shopreco.tasks.drain_pending_refreshes", soft_time_limit=300,
             time_limit=360, **COMMON)
def drain_pending_refreshes(self) -> int:
    """Beat: re-enqueue outbox refreshes whose task was lost (e.g. broker was down)."""
    users = pipeline.due_refreshes()
    for user_id in users:
        _enqueue_refresh(user_id)
    return len(users)


@shared_task(name="shopreco.tasks.refresh_rankings", soft_time_limit=300, time_limit=360,
             **COMMON)
def refresh_rankings(self) -> int:
    """Beat: rebuild the popularity rankings before they fall due."""
    return popularity.refresh_rankings()


@shared_task(name="shopreco.tasks.purge_old_events", soft_time_limit=1800, time_limit=1900,
             **COMMON)
def purge_old_events(self) -> int:
    """Beat: delete events older than EVENT_RETENTION_DAYS (shopreco.privacy)."""
    return privacy.purge_old_events()


# --- experiment arms ------------------------------------------------------------------------


@shared_task(name="shopreco.tasks.compute_arm_runs", soft_time_limit=3600, time_limit=3700,
             **COMMON)
def compute_arm_runs(self, experiment_id: int | None = None) -> list[int]:
    """The runs of the configuration arms of the running experiments (or of one)."""
    return [run.pk for run in _guard(self, None, pipeline.compute_arm_runs, experiment_id)
            or ()]


def request_arm_runs(experiment_id: int | None = None, *, run: RecomputeRun | None = None
                     ) -> bool:
    """Compute the configuration arms' lists after commit: when an experiment starts
    (``experiment_id``) and after a full run went live (``run``; nothing after a rejected
    run: the live lists did not change). Only when there is such an arm. If the broker
    refuses, the arms keep their runs until the next full run asks again."""
    if run is not None and (run.kind != RecomputeRun.Kind.FULL
                            or run.status != RecomputeRun.Status.SUCCEEDED):
        return False
    if not pipeline.configuration_arms(experiment_id):
        return False
    transaction.on_commit(lambda: _enqueue(compute_arm_runs, [experiment_id]))
    return True
