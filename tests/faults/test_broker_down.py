"""Fault: the Celery broker is down when shoppers write and when staff start a recompute.

The web process's Celery app is pointed at a closed port (the real Redis transport, really
refused). A shopper's rating or event is stored at once and its refresh sits in the outbox
(``PendingRefresh``); the request never talks to the broker (the send is tried on the
background thread, once per retry window); ``recompute/`` answers 503 for the run the broker
refused, which is recorded as failed. With a real Redis broker (db 4, or
``SHOPRECO_FAULTS_BROKER``) and a real worker, the periodic ``drain_pending_refreshes``
gets the refresh done once the broker is back: no event lost. No timing is asserted here;
``python -m tests.faults.broker_down_latency`` reports the write latency."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from shopreco import pipeline, tasks
from shopreco.models import Interaction, PendingRefresh, Rating, Recommendation, RecomputeRun
from tests.faults.helpers import API, closed_port, make_shop
from tests.pipeline.test_integration import Workers, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _settle() -> None:
    """Let the background sends finish, and forget the refusals (as once the retry window
    has passed): the next test starts with a broker that is tried."""
    assert tasks.flush_background_sends(timeout=60), "background sends still waiting"
    tasks._broker_down_until = 0.0


@pytest.fixture(scope="module")
def broker() -> str:
    import redis

    url = os.environ.get("SHOPRECO_FAULTS_BROKER", "redis://127.0.0.1:6379/4")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        pytest.skip(f"Redis broker not reachable at {url} ({exc}); start redis-server to run "
                    "the broker fault test")
    return url


def use_broker(app, url: str) -> None:
    """Point this process's Celery app at ``url``, dropping pooled connections to the old one
    (what Celery itself does after a fork). Celery's ``broker_url`` prefers the
    CELERY_BROKER_URL environment variable (CI sets it) over the configuration, so it is set
    too; the fixture restores it."""
    if url:
        os.environ["CELERY_BROKER_URL"] = url
    else:
        os.environ.pop("CELERY_BROKER_URL", None)
    app.conf.broker_url = url
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@pytest.fixture
def celery_app(broker, transactional_db):
    from demo_shop.celery import app

    keys = ("task_always_eager", "broker_url", "result_backend", "task_default_queue")
    saved = {k: app.conf[k] for k in keys}
    saved_env = os.environ.get("CELERY_BROKER_URL")
    # A queue of our own: another test session on the same Redis db (a second checkout, a
    # benchmark) must neither take our tasks nor have its queue purged by us.
    queue = f"shopreco-faults-{uuid.uuid4().hex[:8]}"
    app.conf.update(task_always_eager=False, result_backend=None, task_default_queue=queue)
    app.__dict__.pop("amqp", None)  # Celery caches the default queue there
    use_broker(app, broker)
    workers = Workers(broker, queue=queue)
    try:
        yield app, workers
    finally:
        _settle()
        workers.stop_all()
        app.control.purge()
        app.conf.update(saved)
        app.__dict__.pop("amqp", None)
        use_broker(app, saved["broker_url"])
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env


@pytest.fixture
def shop(user_factory, product_factory):
    """Two taste groups: even shoppers like the first half of the catalogue, odd the second."""
    rng = random.Random(3)
    products = [product_factory() for _ in range(20)]
    users = [user_factory() for _ in range(16)]
    for u, user in enumerate(users):
        liked, other = (products[:10], products[10:]) if u % 2 == 0 else (products[10:],
                                                                          products[:10])
        for p in rng.sample(liked, 6):
            Rating.objects.create(user=user, product=p, score=rng.choice([4, 5]))
        for p in rng.sample(other, 2):
            Rating.objects.create(user=user, product=p, score=rng.choice([1, 2]))
        Interaction.objects.create(user=user, product=rng.choice(liked), kind="view")
    return users, products


# Run files under a prefix of our own: run ids restart with every test database, and other
# test sessions may share the media folder.
OVERRIDES = {"REFRESH_DEBOUNCE_SECONDS": 0.5, "SNAPSHOT_PREFIX": f"faults-{uuid.uuid4().hex}"}


@override_settings(SHOPRECO=OVERRIDES)
def test_rating_saved_while_broker_down_is_refreshed_once_it_is_back(celery_app, shop, caplog):
    app, workers = celery_app
    users, _ = shop
    run = pipeline.run_full_recompute()
    assert run.status == "succeeded", run.error
    # Start from a clean slate: no outbox rows, no refresh tasks queued by the set-up.
    PendingRefresh.objects.all().delete()
    app.control.purge()
    workers.start(overrides=json.dumps(OVERRIDES))  # healthy, on the real broker throughout

    user = users[0]
    top = Recommendation.objects.filter(run=run, user=user).order_by("rank").first()
    assert Recommendation.objects.filter(run=run, user=user).count() > 1

    # --- the broker goes away (from the web process's point of view) -----------------------
    use_broker(app, f"redis://127.0.0.1:{closed_port()}/0")
    caplog.set_level(logging.WARNING, logger="shopreco")
    Rating.objects.create(user=user, product=top.product, score=5)  # autocommit: on_commit runs

    assert Rating.objects.filter(user=user, product=top.product, score=5).exists()
    assert PendingRefresh.objects.filter(user=user).exists(), "the refresh must be kept"
    assert tasks.flush_background_sends(timeout=60)  # the refused send, on its thread
    assert any("outbox" in r.getMessage() for r in caplog.records), "the failure is logged"
    tasks._broker_down_until = 0.0  # the retry window has passed by the time it is back
    time.sleep(2)  # the worker is up, but nothing reached it: the list is still the old one
    assert Recommendation.objects.filter(run=run, user=user, product=top.product).exists()

    # --- the broker is back; beat's drain job runs ----------------------------------------
    use_broker(app, workers.url)
    # The drain only re-sends refreshes older than its grace window (2 x debounce + 30 s):
    # age the outbox row as if the outage had lasted a minute, instead of sleeping.
    row = PendingRefresh.objects.get(user=user)
    PendingRefresh.objects.filter(pk=row.pk).update(
        requested_at=row.requested_at - timedelta(seconds=60)
    )
    tasks.drain_pending_refreshes.delay()

    wait_for(
        lambda: not Recommendation.objects.filter(run=run, user=user,
                                                  product=top.product).exists(),
        timeout=30, what="the refresh of the rating saved while the broker was down",
    )
    assert Recommendation.objects.filter(run=run, user=user).exists()
    wait_for(lambda: not PendingRefresh.objects.filter(user=user).exists(), timeout=10,
             what="the outbox row to clear")


@pytest.fixture
def shop_with_run(category_factory, product_factory, user_factory):
    made = make_shop(category_factory, product_factory, user_factory)
    PendingRefresh.objects.all().delete()
    return made


@pytest.fixture
def broker_down(shop_with_run):
    """This process's Celery app, not eager, on a broker at a closed port: nothing to
    start, so this runs wherever the tests do. After ``shop_with_run``, whose run is computed with
    the eager app of the test settings."""
    from demo_shop.celery import app

    keys = ("task_always_eager", "broker_url", "result_backend")
    saved = {k: app.conf[k] for k in keys}
    saved_env = os.environ.get("CELERY_BROKER_URL")
    app.conf.update(task_always_eager=False, result_backend=None)
    use_broker(app, f"redis://127.0.0.1:{closed_port()}/0")
    try:
        yield app
    finally:
        _settle()
        app.conf.update(saved)
        use_broker(app, saved["broker_url"])
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env


def _spy(monkeypatch, app, name: str) -> list[str]:
    """Names of the threads that call ``apply_async`` of task ``name`` (which still runs)."""
    task = app.tasks[name]
    real, callers = task.apply_async, []

    def spy(*args, **kwargs):
        callers.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(task, "apply_async", spy)
    return callers


def test_writes_never_wait_on_the_broker_and_recompute_answers_503(
    broker_down, shop_with_run, user_factory, monkeypatch, caplog
):
    app, shop = broker_down, shop_with_run
    caplog.set_level(logging.WARNING, logger="shopreco")
    refresh_senders = _spy(monkeypatch, app, "shopreco.tasks.refresh_user")
    recompute_senders = _spy(monkeypatch, app, "shopreco.tasks.full_recompute")

    # --- shoppers write: each first write queues a refresh ----------------------------------
    shoppers = shop.users[:4]
    for i, user in enumerate(shoppers):
        api = APIClient()
        api.force_authenticate(user)
        response = api.post(API + "events/", {"product": shop.products[i].pk, "type": "cart"},
                            format="json")
        assert response.status_code == 201, response.content
        response = api.post(API + "ratings/", {"product": shop.products[i + 8].pk, "score": 3},
                            format="json")
        assert response.status_code in (200, 201), response.content
    assert set(PendingRefresh.objects.values_list("user_id", flat=True)) == {
        u.pk for u in shoppers}  # outbox first, in the write's transaction
    assert tasks.flush_background_sends(timeout=60)
    # Never from the request's thread; tried once, then left alone for the retry window.
    assert refresh_senders == ["shopreco-send"]
    assert tasks.broker_retry_in() > 0
    left = [r for r in caplog.records if "left in the outbox" in r.getMessage()]
    assert len(left) == len(shoppers)
    assert PendingRefresh.objects.count() == len(shoppers)  # for drain_pending_refreshes

    # --- staff start a recompute: the truth, not 202 "pending" --------------------------------
    staff = APIClient()
    staff.force_authenticate(user_factory(is_staff=True))
    for attempt in ("within the retry window", "once it has passed"):
        if attempt == "once it has passed":
            tasks._broker_down_until = 0.0
        response = staff.post(API + "recompute/")
        assert response.status_code == 503, (attempt, response.content)
        body = response.json()
        assert "broker" in body["detail"] and body["status"] == "failed", attempt
        assert int(response["Retry-After"]) >= 1
        run = RecomputeRun.objects.get(pk=body["id"])
        assert run.status == RecomputeRun.Status.FAILED and "could not enqueue" in run.error
    assert recompute_senders == ["MainThread"]  # tried only once the window had passed
    assert not RecomputeRun.objects.filter(status__in=["pending", "running"]).exists()
