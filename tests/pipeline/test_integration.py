"""The pipeline with a real Redis broker and real ``celery worker --concurrency 2`` processes.

Skipped (with the reason) only when no Redis answers; CI always has one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from shopreco import pipeline, tasks
from shopreco.models import PendingRefresh, Rating, Recommendation, RecomputeRun

from .test_pipeline import rows_of

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "var" / "test-workers"


def broker_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "")
    return url if url.startswith("redis://") else "redis://127.0.0.1:6379/1"


@pytest.fixture(scope="module")
def redis_url():
    import redis

    url = broker_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        pytest.skip(f"Redis broker not reachable at {url} ({exc}); start redis-server to run "
                    "the Celery integration tests")
    return url


class Workers:
    """Starts and stops worker processes (each in its own process group)."""

    def __init__(self, url: str, queue: str | None = None) -> None:
        self.url = url
        self.queue = queue  # a queue of our own: other test sessions may share the Redis db
        self.procs: list[subprocess.Popen] = []

    def start(self, delay: float = 0.0, overrides: str = "{}") -> subprocess.Popen:
        LOGS.mkdir(parents=True, exist_ok=True)
        name = f"pipeline-{uuid.uuid4().hex[:8]}"
        log = LOGS / f"{name}.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
            "SHOPRECO_TEST_BROKER": self.url,
            "SHOPRECO_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            "SHOPRECO_TEST_TASK_DELAY": str(delay),
            "SHOPRECO_TEST_OVERRIDES": overrides,
            "SHOPRECO_TEST_QUEUE": self.queue or "",
        }
        queues = ["--queues", self.queue] if self.queue else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "demo_shop", "worker", "--concurrency", "2",
             "--pool", "prefork", "--loglevel", "INFO", "--hostname", f"{name}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat", *queues],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{log.read_text()[-3000:]}")
            if b" ready." in log.read_bytes():
                return proc
            time.sleep(0.2)
        raise RuntimeError(f"worker did not start:\n{log.read_text()[-3000:]}")

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Kill the worker and its pool children (its own process group)."""
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc, signal.SIGTERM)
        self.procs.clear()


@pytest.fixture
def workers(redis_url, transactional_db):
    """Switch this process's Celery app to the real broker (not eager) for the test."""
    from demo_shop.celery import app

    keys = ("task_always_eager", "broker_url", "result_backend", "task_default_queue")
    saved = {k: app.conf[k] for k in keys}
    queue = f"shopreco-test-{uuid.uuid4().hex[:8]}"
    app.conf.update(task_always_eager=False, broker_url=redis_url, result_backend=None,
                    task_default_queue=queue)
    reset_pools(app)
    ctl = Workers(redis_url, queue=queue)
    try:
        yield ctl
    finally:
        ctl.stop_all()
        app.control.purge()  # drop what the test left in its queue
        app.conf.update(saved)
        reset_pools(app)


def reset_pools(app) -> None:
    """Forget connections, queues and routes made under the previous configuration: eager
    tasks earlier in the session may have built them for the default broker, and Celery
    caches the default queue in ``app.amqp``."""
    app._pool = None  # not closed: kombu may share it with other users of that URL
    app.__dict__.pop("amqp", None)  # a cached property: rebuilt from the current conf


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def finished(run_id: int) -> RecomputeRun | None:
    run = RecomputeRun.objects.get(pk=run_id)
    return run if run.status in ("succeeded", "failed") else None


SMALL_BLOCKS = {"BLOCK_SIZE": 8, "USER_BATCH_SIZE": 7}


@pytest.mark.parametrize("algorithm", ["ease", "item", "user"])
def test_async_full_run_equals_in_process_run(algorithm, workers, shop):
    shop(sessions=4)
    workers.start()
    with override_settings(SHOPRECO={**SMALL_BLOCKS, "ALGORITHM": algorithm}):
        run = tasks.request_full_recompute()  # the run's params carry the settings
    done = wait_for(lambda: finished(run.pk), what="the async run")
    assert done.status == "succeeded", done.error
    # really sharded (EASE's dense solve is one block; its user batches shard)
    assert done.params["n_blocks"] == (1 if algorithm == "ease" else 4)
    assert done.params["n_batches"] == 4
    with override_settings(SHOPRECO={**SMALL_BLOCKS, "ALGORITHM": algorithm}):
        local = pipeline.run_full_recompute()
    assert rows_of(done) == rows_of(local)
    assert rows_of(local)[1]


@override_settings(SHOPRECO=SMALL_BLOCKS)
def test_second_request_during_a_run_is_coalesced(workers, shop):
    shop()
    workers.start(delay=0.5)
    first = tasks.request_full_recompute()
    wait_for(lambda: RecomputeRun.objects.filter(pk=first.pk, status="running").exists(),
             what="the run to start")
    second = tasks.request_full_recompute()
    assert second.pk == first.pk
    done = wait_for(lambda: finished(first.pk), what="the run")
    assert done.status == "succeeded", done.error
    assert RecomputeRun.objects.count() == 1


@override_settings(SHOPRECO={"REFRESH_DEBOUNCE_SECONDS": 0.5})
def test_a_rating_refreshes_the_users_list_within_seconds(workers, shop):
    users, _ = shop()
    run = pipeline.run_full_recompute()
    workers.start()
    user = users[0]
    top = Recommendation.objects.filter(run=run, user=user).order_by("rank").first()
    Rating.objects.create(user=user, product=top.product, score=5)
    assert PendingRefresh.objects.filter(user=user).exists()  # outbox row, task queued
    t0 = time.monotonic()
    wait_for(lambda: not Recommendation.objects.filter(run=run, user=user,
                                                       product=top.product).exists(),
             timeout=15, what="the refreshed list")
    assert time.monotonic() - t0 < 15
    assert Recommendation.objects.filter(run=run, user=user).exists()
    wait_for(lambda: not PendingRefresh.objects.filter(user=user).exists(), timeout=5,
             what="the outbox row to clear")


@override_settings(SHOPRECO={**SMALL_BLOCKS, "STALE_RUN_SECONDS": 3})
def test_killed_worker_leaves_previous_run_served_and_next_run_succeeds(workers, shop):
    shop()
    previous = pipeline.run_full_recompute()
    victim = workers.start(delay=2.0)
    doomed = tasks.request_full_recompute()
    wait_for(lambda: RecomputeRun.objects.filter(pk=doomed.pk, stage="similarities").exists(),
             what="the run to reach the similarity stage")
    workers.kill(victim)  # SIGKILL to the worker and its pool processes
    doomed.refresh_from_db()
    assert doomed.status == "running"
    assert RecomputeRun.latest_succeeded() == previous  # still served
    # the next request notices the missing heartbeat, fails the dead run, starts a new one
    time.sleep(3.5)
    nxt = tasks.request_full_recompute()
    assert nxt.pk != doomed.pk
    doomed.refresh_from_db()
    assert doomed.status == "failed" and "heartbeat" in doomed.error
    assert not Recommendation.objects.filter(run=doomed).exists()
    workers.start()
    done = wait_for(lambda: finished(nxt.pk), what="the next run")
    assert done.status == "succeeded", done.error
    assert RecomputeRun.latest_succeeded() == done
    doomed.refresh_from_db()
    assert doomed.status == "failed"  # leftover tasks of the dead run did not revive it
