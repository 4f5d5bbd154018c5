"""Dispatch during a broker outage (shopreco.tasks): a shopper's refresh is sent from the
background thread, never from the request's; after a refused send the broker is left alone
for a window; the fallbacks still run. And the middleware that turns an unreachable
database, and only that, into a 503."""

from __future__ import annotations

import threading

import pytest
from django.db import InterfaceError, OperationalError, ProgrammingError
from django.http import HttpResponse
from kombu.exceptions import OperationalError as BrokerError

from shopreco import tasks
from shopreco.middleware import DatabaseUnavailableMiddleware


@pytest.fixture
def not_eager(monkeypatch):
    monkeypatch.setattr(tasks, "is_eager", lambda: False)
    tasks._broker_down_until = 0.0
    yield
    assert tasks.flush_background_sends(timeout=10)
    tasks._broker_down_until = 0.0


class FakeTask:
    name = "fake"

    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.sent = error, []

    def apply_async(self, args=None, **kwargs):
        self.sent.append((args, threading.current_thread().name))
        if self.error is not None:
            raise self.error


def test_a_shoppers_refresh_is_sent_from_the_background_thread(not_eager, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks, "_enqueue", lambda task, args, **kw: sent.append(
        (args, threading.current_thread().name)))
    tasks._enqueue_refresh(42)
    assert tasks.flush_background_sends(timeout=10)
    assert sent == [([42], "shopreco-send")]


def test_a_worker_sends_its_refreshes_itself(not_eager, monkeypatch):
    import celery.app.base

    monkeypatch.setattr(celery.app.base, "get_current_worker_task", lambda: object())
    sent = []
    monkeypatch.setattr(tasks, "_enqueue", lambda task, args, **kw: sent.append(
        threading.current_thread().name))
    tasks._enqueue_refresh(7)
    assert sent == [threading.current_thread().name]


def test_after_a_refusal_the_broker_is_left_alone_for_a_window(not_eager):
    down = FakeTask(BrokerError("connection refused"))
    refused = []
    assert tasks._enqueue(down, [1], refused=refused.append) is False
    assert 0 < tasks.broker_retry_in() <= tasks.BROKER_RETRY_SECONDS
    other = FakeTask()
    assert tasks._enqueue(other, [2], refused=refused.append) is False
    assert other.sent == []  # not tried
    assert isinstance(refused[0], BrokerError)
    assert isinstance(refused[1], tasks.BrokerUnavailable)
    tasks._broker_down_until = 0.0  # the window passed
    assert tasks._enqueue(other, [3]) is True and other.sent


def test_a_task_that_cannot_be_sent_is_not_a_broker_outage(not_eager):
    refused = []
    assert tasks._enqueue(FakeTask(TypeError("not serialisable")), [1],
                          refused=refused.append) is False
    assert refused and tasks.broker_retry_in() == 0


def test_a_forked_child_starts_its_own_sender(not_eager):
    tasks._sends()
    assert tasks._sender is not None
    tasks._sender_reset()  # what os.fork runs in the child
    assert tasks._sender is None
    assert tasks.flush_background_sends(timeout=1)


@pytest.mark.parametrize("error, status", [
    (OperationalError("could not connect"), 503),
    (InterfaceError("connection already closed"), 503),
    (ProgrammingError("no such table"), None),  # a bug: stays a 500
    (ValueError("boom"), None),
])
def test_only_an_unreachable_database_is_a_503(rf, error, status):
    middleware = DatabaseUnavailableMiddleware(lambda request: HttpResponse())
    response = middleware.process_exception(rf.get("/"), error)
    assert (response.status_code if response is not None else None) == status
    if response is not None:
        assert response["Retry-After"] and response["Content-Type"].startswith("text/plain")
        json = middleware.process_exception(rf.get("/", HTTP_ACCEPT="application/json"),
                                            error)
        assert json["Content-Type"] == "application/json"
        assert b'"detail"' in json.content
