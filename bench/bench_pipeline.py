"""End-to-end recompute on PostgreSQL with MovieLens latest-small loaded as a shop.

Full recompute (k=50 neighbours, 50 recommendations per user), once in-process and once
sharded over 2 Celery worker processes (Redis broker), split into load / similarities /
recommendations / write as recorded by the run itself (write and total end at the activation
commit; the housekeeping that follows it, pruning and VACUUM ANALYZE, has its own column).
Targets (issue 8): under 30 s in-process on the 2-core machine, write phase at most a third
of the total.

    .venv/bin/python bench/bench_pipeline.py [--reload] [--no-workers] [--repeat N]

Database: $DATABASE_URL if it is a PostgreSQL URL, else
postgres://postgres@127.0.0.1:5432/pipeline_bench (created if absent). Broker:
$CELERY_BROKER_URL if it is a redis URL, else redis://127.0.0.1:6379/1. Writes
bench/out/pipeline.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_DIR)]

import common  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/pipeline_bench"
PHASES = ("load", "similarities", "recommendations", "write", "total")
# After activation, not part of the total: pruning old runs, VACUUM ANALYZE (own column).
AFTER = ("housekeeping",)


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else DEFAULT_DB


def _broker_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "")
    return url if url.startswith("redis://") else "redis://127.0.0.1:6379/1"


def _setup_django(db_url: str) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_shop.settings")
    os.environ.pop("CELERY_BROKER_URL", None)  # in-process first; the app is switched later
    import django

    django.setup()
    from shopreco.conf import reco_settings

    # The defaults are the figures; say so loudly if a local setting changed them.
    assert reco_settings.NEIGHBOURS == 50 and reco_settings.RECOMMENDATIONS_PER_USER == 50


def _load_shop(ml_dir: Path, reload: bool) -> float:
    from django.core.management import call_command

    from demo_shop.catalog.models import Product
    from shopreco.models import Rating

    call_command("migrate", verbosity=0, interactive=False)
    if not reload and Rating.objects.count() >= 100_000 and Product.objects.count() > 9000:
        return 0.0
    t = time.perf_counter()
    call_command("seed_demo", "--flush", "--movielens", str(ml_dir), verbosity=0)
    return time.perf_counter() - t


def _start_worker(db_url: str, broker: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": db_url, "CELERY_BROKER_URL": broker,
           "CELERY_RESULT_BACKEND": broker, "DJANGO_SETTINGS_MODULE": "demo_shop.settings"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "demo_shop", "worker", "--concurrency", "2",
         "--loglevel", "WARNING", "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=REPO_DIR, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc


def _wait_ready(app, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited:\n{log.read_text()[-2000:]}")
        replies = app.control.ping(timeout=0.5)
        if replies:
            return
    raise RuntimeError("worker did not answer a ping within 60 s")


def _sharded_run(db_url: str):
    from demo_shop.celery import app
    from shopreco import tasks

    broker = _broker_url()
    app.conf.update(task_always_eager=False, broker_url=broker, result_backend=broker)
    app.control.purge()
    common.OUT_DIR.mkdir(parents=True, exist_ok=True)  # git-ignored: absent on a fresh clone
    log = common.OUT_DIR / "pipeline-worker.log"
    proc = _start_worker(db_url, broker, log)
    try:
        _wait_ready(app, proc, log)
        run = tasks.request_full_recompute()
        wall0 = time.perf_counter()
        while True:
            run.refresh_from_db()
            if run.status in ("succeeded", "failed"):
                break
            time.sleep(0.2)
        wall = time.perf_counter() - wall0
        if run.status != "succeeded":
            raise RuntimeError(f"sharded run failed: {run.error}")
        deadline = time.monotonic() + 120  # the housekeeping task follows activation
        while "housekeeping" not in run.timings and time.monotonic() < deadline:
            time.sleep(0.2)
            run.refresh_from_db()
        return run, wall
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


def _share(t: dict) -> float:
    return t.get("write", 0) / t["total"] if t.get("total") else 0.0


def _row(label: str, t: dict, wall: float | None = None, share: float | None = None
         ) -> list[str]:
    cells = [label] + [f"{t.get(p, 0):.2f}" for p in PHASES]
    cells += [f"{t[p]:.2f}" if p in t else "-" for p in AFTER]
    cells.append(f"{_share(t) if share is None else share:.0%}")
    cells.append(f"{wall:.2f}" if wall is not None else "-")
    return cells


def _median_row(label: str, measured: list[tuple[dict, float]]) -> list[str]:
    """Median of every column over the repeats; the share is the median of the shares."""
    med = {p: statistics.median(t.get(p, 0) for t, _ in measured) for p in PHASES}
    med.update({p: statistics.median(t[p] for t, _ in measured if p in t) for p in AFTER
                if any(p in t for t, _ in measured)})
    return _row(label, med, statistics.median(w for _, w in measured),
                statistics.median(_share(t) for t, _ in measured))


def fail_abandoned_runs() -> None:
    """A previous aborted bench may have left a run "running": fail it so the lock is free."""
    from shopreco.models import RecomputeRun
    from shopreco.pipeline import runs

    for stuck in RecomputeRun.objects.filter(status__in=["pending", "running"]):
        runs.fail_run(stuck.pk, "abandoned by an earlier bench run")


def movielens_shop(name: str) -> str:
    """Django on this bench's PostgreSQL database with MovieLens latest-small loaded as a shop
    (loaded once, kept across benches), run files in a fresh folder (returned), no run left
    pending: what the benches that run full recomputes on it (erasure, holdout) start from."""
    ml_dir = common.require_data("ml-latest-small")
    db_url = _database_url()
    common.ensure_database(db_url)
    media = tempfile.mkdtemp(prefix=f"shopreco-{name}-bench-")
    common.setup_demo_django(db_url, media)
    _load_shop(ml_dir, reload=False)
    fail_abandoned_runs()
    return media


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reload", action="store_true", help="Reload MovieLens into the DB.")
    parser.add_argument("--no-workers", action="store_true", help="Only the in-process run.")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Runs per mode (alternating); the table adds their medians.")
    args = parser.parse_args()

    ml_dir = common.require_data("ml-latest-small")
    db_url = _database_url()
    common.ensure_database(db_url)
    _setup_django(db_url)
    seed_seconds = _load_shop(ml_dir, args.reload)

    from shopreco import pipeline

    fail_abandoned_runs()

    load_start = common.load_average()
    local_runs: list[tuple[dict, float]] = []
    sharded_runs: list[tuple[dict, float]] = []
    local = sharded = None
    note = ""
    for _ in range(args.repeat):  # alternating, so both modes see the same machine load
        wall0 = time.perf_counter()
        local = pipeline.run_full_recompute()
        local_runs.append((local.timings, time.perf_counter() - wall0))
        print(f"in-process: {local.timings}", flush=True)
        if not args.no_workers and not note:
            try:
                sharded, wall = _sharded_run(db_url)
                sharded_runs.append((sharded.timings, wall))
                print(f"2 workers: {sharded.timings}", flush=True)
            except Exception as exc:  # e.g. no Redis: report, keep the in-process figures
                note = f"\nSharded run not measured: {exc}\n"
    labels = [("in-process", local_runs), ("2 worker processes (Celery, Redis)", sharded_runs)]
    rows = []
    for label, measured in labels:
        if len(measured) == 1:
            rows.append(_row(label, *measured[0]))
        elif measured:
            rows += [_row(f"{label}, run {i + 1}", *m) for i, m in enumerate(measured)]
            rows.append([f"**{cell}**" for cell in
                         _median_row(f"{label}, median of {len(measured)}", measured)])

    c = local.counts
    total = statistics.median(t["total"] for t, _ in local_runs)
    write_share = statistics.median(_share(t) for t, _ in local_runs)
    sharded_share = (statistics.median(_share(t) for t, _ in sharded_runs) if sharded_runs
                     else None)
    medians = " (medians)" if args.repeat > 1 else ""
    same = ""
    if sharded is not None:
        from django.db.models import Count

        def sizes(run):
            return (run.similarities.aggregate(n=Count("id"))["n"],
                    run.recommendations.aggregate(n=Count("id"))["n"])

        same = ("identical row counts" if sizes(local) == sizes(sharded) else
                "DIFFERENT row counts")
    text = "\n".join([
        "## Pipeline: full recompute end to end (PostgreSQL, MovieLens latest-small)",
        "",
        f"Shop: {c['users']} users, {c['products']} products, {c['ratings']} ratings, "
        f"{c['events']} events. k = {local.params['k']} neighbours "
        f"({local.params['method']}, shrinkage {local.params['shrinkage']}), "
        f"{local.params['recommendations']} recommendations per user, "
        f"{local.params['similar_per_product']} neighbours stored per product and kind. "
        f"Rows written: {c['similarities']} item similarities (similar + also bought), "
        f"{c['recommendations']} recommendations (COPY). "
        + (f"Loading the shop with `seed_demo --movielens` took {seed_seconds:.1f} s "
           "(not part of the run)." if seed_seconds else ""),
        "",
        "Seconds per phase, as recorded in the run's `timings` "
        + (f"({args.repeat} runs per mode, alternating in-process and sharded, then the "
           "medians; the median write share is the median of the runs' shares). "
           if args.repeat > 1 else "(one run each). ")
        + "The write "
        "phase and the total end at the activation commit; housekeeping (pruning old runs, "
        "VACUUM ANALYZE of the result tables) follows it, in-process right away and as a "
        "task of its own on Celery, and is not part of the total:",
        "",
        common.md_table(
            ["mode", *PHASES, *AFTER, "write share",
             "wall (request to done; in-process: with housekeeping)"], rows
        ),
        "",
        f"Targets{medians}: in-process total < 30 s -> {total:.1f} s "
        f"({'met' if total < 30 else 'NOT met'}); write <= 1/3 of total -> "
        f"{write_share:.0%} in-process ({'met' if write_share <= 1 / 3 else 'NOT met'})"
        + (f", {sharded_share:.0%} with 2 workers "
           f"({'met' if sharded_share <= 1 / 3 else 'NOT met'})"
           if sharded_share is not None else "") + ". "
        + (f"Sharded and in-process runs wrote {same}. " if same else "")
        + f"Load average (1, 5, 15 min) at the start / end: {load_start} / "
        f"{common.load_average()} (2 shared cores).",
        note,
        "Reproduce: `.venv/bin/python bench/bench_pipeline.py --repeat 5` (needs PostgreSQL; "
        "the sharded rows need Redis).",
        "",
    ])
    common.write_section("pipeline", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
