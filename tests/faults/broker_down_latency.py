"""Write latency with the Celery broker down (issue #17: the first rating or purchase of
each signed-in shopper used to block about 6 s while kombu retried the connection).

Runs the API writes of ``--shoppers`` fresh signed-in shoppers (each one's first event, so
each queues a refresh, then a rating) against the real Redis transport pointed at a closed
port, in a throw-away test database (``DATABASE_URL`` picks PostgreSQL, as in the tests),
and prints the latency of each kind of write, the sends made from request threads (should be
none) and how long ``recompute/`` takes to answer. Target: writes well under 200 ms.

    .venv/bin/python -m tests.faults.broker_down_latency [--shoppers 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return (f"n={len(values):3d}  median {statistics.median(values) * 1000:7.1f} ms  "
            f"p95 {p95 * 1000:7.1f} ms  max {values[-1] * 1000:7.1f} ms")


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(shoppers: int) -> None:
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from demo_shop.catalog.models import Category, Product
    from demo_shop.celery import app
    from shopreco import tasks
    from shopreco.models import PendingRefresh
    from tests.faults.helpers import API, closed_port
    from tests.faults.test_broker_down import use_broker

    cat = Category.objects.create(name="Latency", slug="latency")
    products = [Product.objects.create(name=f"P{i}", category=cat, price=1) for i in range(20)]
    users = [get_user_model().objects.create_user(f"latency{i}") for i in range(shoppers + 1)]
    staff = get_user_model().objects.create_user("latency-staff", is_staff=True)

    app.conf.update(task_always_eager=False, result_backend=None)
    use_broker(app, f"redis://127.0.0.1:{closed_port()}/0")
    request_thread = threading.current_thread().name
    callers: list[str] = []
    refresh = app.tasks["shopreco.tasks.refresh_user"]
    real = refresh.apply_async

    def spy(*args: Any, **kwargs: Any) -> Any:
        callers.append(threading.current_thread().name)
        return real(*args, **kwargs)

    refresh.apply_async = spy

    def client(user: Any) -> APIClient:
        api = APIClient()
        api.force_authenticate(user)
        return api

    client(users[-1]).get(API + "popular/")  # warm-up: imports, URL resolver
    events, ratings = [], []
    for i, user in enumerate(users[:shoppers]):
        api = client(user)
        took, response = _timed(lambda api=api, i=i: api.post(
            API + "events/", {"product": products[i % 20].pk, "type": "cart"}, format="json"))
        assert response.status_code == 201, response.content
        events.append(took)
        took, response = _timed(lambda api=api, i=i: api.post(
            API + "ratings/", {"product": products[(i + 7) % 20].pk, "score": 4},
            format="json"))
        assert response.status_code in (200, 201), response.content
        ratings.append(took)
    kept = PendingRefresh.objects.count()
    tasks.flush_background_sends(timeout=60)

    tasks._broker_down_until = 0.0  # the retry window has passed: the broker is tried
    first, response = _timed(lambda: client(staff).post(API + "recompute/"))
    first_code = response.status_code
    again, response = _timed(lambda: client(staff).post(API + "recompute/"))

    print(f"broker: the real Redis transport at a closed port; {shoppers} signed-in shoppers")
    print(f"  first event (queues a refresh)   {_ms(events)}")
    print(f"  rating after it                   {_ms(ratings)}")
    print(f"  refreshes kept in the outbox      {kept} of {shoppers}")
    print(f"  broker sends from request threads {callers.count(request_thread)} "
          f"(from the sender thread: {len(callers) - callers.count(request_thread)})")
    print(f"  recompute/, broker tried          {first * 1000:7.1f} ms -> {first_code}")
    print(f"  recompute/, within retry window   {again * 1000:7.1f} ms -> {response.status_code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", type=int, default=40)
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
        teardown_test_environment,
    )

    # A database of our own: a test session may be using the usual test database.
    test = connection.settings_dict.setdefault("TEST", {})
    if connection.vendor == "sqlite":
        test["NAME"] = str(test.get("NAME") or "test.sqlite3").replace(
            ".sqlite3", f"-latency-{os.getpid()}.sqlite3")
    else:
        test["NAME"] = f"test_shopreco_latency_{os.getpid()}"
    setup_test_environment()
    names = setup_databases(verbosity=0, interactive=False)
    try:
        measure(args.shoppers)
    finally:
        teardown_databases(names, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
