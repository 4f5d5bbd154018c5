"""API load bench: gunicorn (several sync workers) on PostgreSQL with MovieLens latest-small
as a shop, a Celery worker on Redis for the per-user refreshes that writes trigger, and locust
headless on loopback: 50 concurrent shoppers for 60 s, each clicking every 1-3 s (``--think``),
80% reads / 20% writes (scenario in bench/locustfile_api.py). Reports throughput and
p50/p95/p99 per endpoint and the error count; writes bench/out/api_load.md.

    python bench/bench_api_load.py              # PostgreSQL db "serving", Redis db 7
    python bench/bench_api_load.py --users 50 --duration 60 --workers 4

Needs PostgreSQL, Redis, gunicorn and locust (requirements-bench.txt) and the MovieLens data
(../shared/data/ml-latest-small); first use seeds its database (seed_demo --movielens)
and runs shopreco_recompute, later runs reuse it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO)]

import common  # noqa: E402

DB_NAME = os.environ.get("BENCH_API_DB", "serving")
PG_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_DB = int(os.environ.get("BENCH_API_REDIS_DB", "7"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
BENCH_USERS = 200  # accounts whose tokens the shoppers use
BENCH_PRODUCTS = 500  # products the shoppers visit (the most rated ones)
TARGET_P99_MS = 50
TARGET_ENDPOINTS = ("GET recommendations/", "GET products/{pk}/similar/")

SETTINGS_MODULE = '''
"""Demo settings for the API load bench: production-like (DEBUG off, persistent database
connections, Redis cache and broker) and throttles raised so that 50 shoppers on one
loopback IP measure serving, not the throttle's refusals (the throttle code still runs)."""
from demo_shop.settings import *  # noqa: F403
from demo_shop.settings import DATABASES, REST_FRAMEWORK

DEBUG = False
DATABASES["default"]["CONN_MAX_AGE"] = 600
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
    "shopreco_anon": "1000000/min", "shopreco_user": "1000000/min",
    "shopreco_events": "1000000/min",
}}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"console": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["console"], "level": "WARNING"}}
'''


def _require_services(redis_url: str = REDIS_URL) -> None:
    import psycopg
    import redis

    try:
        psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001
        raise common.DataMissing(f"skipped: PostgreSQL unavailable ({exc})") from exc
    try:
        redis.Redis.from_url(redis_url).ping()
    except Exception as exc:  # noqa: BLE001
        raise common.DataMissing(f"skipped: Redis unavailable ({exc})") from exc
    for tool in ("gunicorn", "locust", "celery"):
        if not (Path(sys.executable).parent / tool).exists():
            raise common.DataMissing(f"skipped: {tool} not installed (requirements-bench.txt)")


def _ensure_database() -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            c.execute(f'CREATE DATABASE "{DB_NAME}"')


def _env(settings_dir: Path, fixture: Path | None = None, redis_url: str = REDIS_URL,
         extra_path: tuple[str, ...] = ()) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=PG_URL,
        CACHE_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        DJANGO_SETTINGS_MODULE="bench_api_settings",
        DJANGO_DEBUG="0",
        PYTHONPATH=os.pathsep.join([str(settings_dir), *extra_path, str(REPO)]),
    )
    if fixture is not None:
        env["BENCH_API_FIXTURE"] = str(fixture)
    return env


def _prepare(movielens: Path) -> dict:
    """Migrate, seed MovieLens and recompute if needed; tokens and keys for the shoppers."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count
    from rest_framework.authtoken.models import Token

    from demo_shop.catalog.models import Category, Product
    from shopreco.models import Rating, Recommendation, RecomputeRun

    call_command("migrate", verbosity=0)
    if not Product.objects.exists():
        print("seeding MovieLens (seed_demo --movielens) ...", flush=True)
        call_command("seed_demo", movielens=str(movielens), verbosity=0)
    run = RecomputeRun.latest_succeeded()
    if run is None:
        print("recomputing (shopreco_recompute) ...", flush=True)
        RecomputeRun.objects.filter(status__in=["pending", "running"]).update(status="failed")
        call_command("shopreco_recompute", no_progress=True, verbosity=0)
        run = RecomputeRun.latest_succeeded()
    user_ids = list(
        Recommendation.objects.filter(run=run).values("user").annotate(n=Count("id"))
        .order_by("user").values_list("user", flat=True)[:BENCH_USERS]
    )
    users = get_user_model().objects.filter(pk__in=user_ids)
    tokens = [Token.objects.get_or_create(user=u)[0].key for u in users]
    products = list(
        Rating.objects.filter(product__is_active=True, product__in_stock=True)
        .values("product").annotate(n=Count("id")).order_by("-n", "product")
        .values_list("product", flat=True)[:BENCH_PRODUCTS]
    )
    categories = list(Category.objects.values_list("pk", flat=True))
    if connection.vendor == "postgresql":
        # Fresh planner statistics and visibility maps, as a live shop's (auto)vacuum keeps
        # them: autovacuum may be off on this server, and each run adds impressions, events
        # and ratings, so without it the planner works from the seeding-time picture.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    counts = {
        "products": Product.objects.count(),
        "users": get_user_model().objects.count(),
        "ratings": Rating.objects.count(),
        "run": run.pk,
        "run_counts": run.counts,
    }
    connection.close()
    return {"tokens": tokens, "products": products, "categories": categories,
            "counts": counts}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_servers(env: dict[str, str], port: int, workers: int, log_dir: Path,
                  worker_nice: int = 0) -> list[subprocess.Popen]:
    """gunicorn (sync workers, app preloaded and warmed: bench/gunicorn_conf.py) on loopback
    and one Celery worker for the per-user refreshes that writes trigger, logging into
    ``log_dir``; shared with bench_load_recompute."""
    bin_dir = Path(sys.executable).parent
    web = subprocess.Popen(
        [str(bin_dir / "gunicorn"), "demo_shop.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "sync",
         "--timeout", "60", "--log-level", "warning",
         "--config", str(BENCH_DIR / "gunicorn_conf.py")],
        cwd=REPO, env=env, stdout=open(log_dir / "gunicorn.log", "w"),
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [str(bin_dir / "celery"), "-A", "demo_shop", "worker", "--concurrency", "1",
         "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
        cwd=REPO, env=env, stdout=open(log_dir / "celery.log", "w"),
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.nice(worker_nice)) if worker_nice else None,
    )
    return [web, worker]


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_stats(prefix: Path) -> list[dict]:
    with open(f"{prefix}_stats.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _read_failures(prefix: Path) -> list[dict]:
    path = Path(f"{prefix}_failures.csv")
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run_load(*, users: int, duration: int, workers: int, worker_nice: int, think: str,
             settings_text: str = SETTINGS_MODULE, redis_url: str = REDIS_URL,
             extra_env: dict[str, str] | None = None, extra_path: tuple[str, ...] = (),
             log_name: str = "api_load_logs") -> dict:
    """The load machinery, shared with bench_serving: prepare the PostgreSQL database (seed
    MovieLens and recompute on first use), start gunicorn and the Celery worker with the
    settings module ``settings_text``, run locust headless (bench/locustfile_api.py; the
    ``extra_env`` reaches servers and locust), stop everything. Returns locust's stats rows
    and failures, the fixture data and the load averages before and after."""
    _require_services(redis_url)
    movielens = common.require_data("ml-latest-small")
    _ensure_database()
    tmp = Path(tempfile.mkdtemp(prefix="api-load-"))
    (tmp / "bench_api_settings.py").write_text(settings_text)
    os.environ.update(_env(tmp, redis_url=redis_url, extra_path=extra_path))
    sys.path[:0] = [str(tmp), *extra_path]
    data = _prepare(movielens)
    fixture = tmp / "fixture.json"
    fixture.write_text(json.dumps(data))
    env = _env(tmp, fixture, redis_url=redis_url, extra_path=extra_path)
    wait_min, wait_max = (float(x) for x in think.split("-"))
    env.update(BENCH_API_WAIT_MIN=str(wait_min), BENCH_API_WAIT_MAX=str(wait_max),
               **(extra_env or {}))

    import redis

    redis.Redis.from_url(redis_url).flushdb()  # our db only: cold serving cache, empty queue
    port = _free_port()
    log_dir = common.OUT_DIR / log_name
    log_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    procs: list[subprocess.Popen] = []
    try:
        procs += start_servers(env, port, workers, log_dir, worker_nice=worker_nice)
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/api/reco/popular/")
        for pk in data["products"][:50]:  # warm every worker a little, like a live shop
            urllib.request.urlopen(f"{base}/api/reco/products/{pk}/similar/", timeout=10).read()
        load_before = common.load_average()
        prefix = tmp / "locust"
        locust = subprocess.run(
            [str(bin_dir / "locust"), "-f", str(BENCH_DIR / "locustfile_api.py"),
             "--headless", "--users", str(users), "--spawn-rate", str(users),
             "--run-time", f"{duration}s", "--host", base, "--csv", str(prefix),
             "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=duration + 120,
        )
        (log_dir / "locust.log").write_text(locust.stdout + locust.stderr)
        if locust.returncode != 0:
            print(locust.stdout[-3000:], locust.stderr[-3000:])
            raise RuntimeError(f"locust exited with {locust.returncode}")
    finally:
        for proc in reversed(procs):
            _stop(proc)
    result = {"stats": _read_stats(prefix), "failures": _read_failures(prefix), "data": data,
              "load_before": load_before, "load_after": common.load_average(),
              "wait": (wait_min, wait_max)}
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=int, default=60, help="seconds")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--worker-nice", type=int, default=10,
                        help="niceness of the Celery worker (background refreshes yield the "
                             "CPU to serving, as on a worker host of its own); 0 = same priority")
    parser.add_argument("--think", default="1.0-3.0",
                        help="think time between a shopper's requests, seconds (min-max)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    run = run_load(users=args.users, duration=args.duration, workers=args.workers,
                   worker_nice=args.worker_nice, think=args.think)
    data, load_before, load_after = run["data"], run["load_before"], run["load_after"]
    wait_min, wait_max = run["wait"]
    stats, failures = run["stats"], run["failures"]
    rows, total = [], None
    for row in stats:
        if row["Name"] == "Aggregated":
            total = row
            continue
        if row["Name"].startswith("GET /login/"):
            continue
        rows.append(row)
    rows.sort(key=lambda r: (not r["Type"] == "GET", r["Name"]))
    measured = rows
    n_requests = sum(int(r["Request Count"]) for r in measured)
    n_failures = sum(int(r["Failure Count"]) for r in measured)
    rps = sum(float(r["Requests/s"]) for r in measured)
    writes = sum(int(r["Request Count"]) for r in measured if r["Type"] == "POST")

    def name(r: dict) -> str:
        return r["Name"] if r["Name"].startswith(("GET", "POST")) else f"{r['Type']} {r['Name']}"

    table = [
        [name(r), r["Request Count"], r["Failure Count"], f"{float(r['Requests/s']):.1f}",
         r["50%"], r["95%"], r["99%"], r["Max Response Time"].split(".")[0]]
        for r in measured
    ]
    verdicts = []
    for r in measured:
        if name(r) in TARGET_ENDPOINTS:
            p99 = float(r["99%"])
            verdicts.append(f"`{name(r)}` p99 {p99:.0f} ms "
                            f"{common.verdict(p99 < TARGET_P99_MS)}")
    counts = data["counts"]
    lines = [
        "## API under load (gunicorn + PostgreSQL + locust)",
        "",
        f"MovieLens latest-small as a shop: {counts['products']} products, {counts['users']} "
        f"users, {counts['ratings']} ratings; served run #{counts['run']}. gunicorn with "
        f"{args.workers} sync workers (DEBUG off, persistent DB connections), PostgreSQL db "
        f"`{DB_NAME}`, Redis db {REDIS_DB} as cache and Celery broker with one worker doing the "
        f"per-user refreshes that writes trigger (niceness {args.worker_nice}: background work "
        f"yields the CPU to serving, as on a worker host of its own); locust (FastHttpUser) "
        f"on loopback, "
        f"{args.users} concurrent shoppers (4 in 5 signed in with a token, 1 in 5 anonymous "
        f"with session + CSRF) each clicking every {wait_min:g}-{wait_max:g} s (think time), "
        f"{args.duration} s, everything on this "
        f"2-core machine (load generator included). Serving cache cold at start; throttles "
        f"on with raised rates. Machine load average before / after the run: {load_before} / "
        f"{load_after} (the machine is shared; other work running at the same time inflates "
        f"every figure).",
        "",
        f"**{n_requests} requests, {rps:.1f} req/s, {n_failures} errors**; writes "
        f"{100 * writes / max(n_requests, 1):.1f}% of requests (target 20%).",
        "",
        common.md_table(
            ["endpoint", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            table,
        ),
        "",
        f"Target p99 < {TARGET_P99_MS} ms: " + "; ".join(verdicts) + ".",
        f"Zero errors: {common.verdict(n_failures == 0)}"
        + (f" ({'; '.join(f['Name'] + ': ' + f['Error'] for f in failures[:5])})"
           if failures else "") + ".",
        "",
        "Percentiles are locust's (whole milliseconds). "
        f"Aggregate incl. warm-up sign-in page: p50 {total['50%'] if total else '?'} ms, "
        f"p99 {total['99%'] if total else '?'} ms. Bench wall time "
        f"{time.perf_counter() - started:.0f} s.",
        "",
    ]
    text = "\n".join(lines)
    common.write_section("api_load", text)
    print(text)
    common.emit_result({"api_load": {"requests": n_requests, "rps": rps,
                                     "errors": n_failures}})
    return 0 if n_failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
