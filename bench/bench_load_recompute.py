"""Load while recomputing: the API bench's 60 s mixed load (bench_api_load.py, reused) plus
storefront pages, run twice on the same warm shop: idle, then while full recomputes run back to
back in the background. Reports latency per endpoint for both, the error count, and checks
that no response was served from a half-finished run; writes bench/out/load_recompute.md.

    python bench/bench_load_recompute.py            # PostgreSQL db "privacy", Redis db 4
    python bench/bench_load_recompute.py --duration 60 --users 50 --workers 4

How "never from a half-finished run" is checked: consecutive background runs alternate the
number of neighbours (50 / 15), so each run's lists differ from the previous run's. A sampler
outside locust keeps asking ``recommendations/`` for a few users whom the load never touches,
and every personal list it receives is matched against the lists each run produced
(read when the run finished). A list that only a run activated *after* the response had
already arrived could have produced is a violation; the bench counts them (target: 0).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO)]

import bench_api_load as api  # noqa: E402
import common  # noqa: E402

DB_NAME = "privacy"
PG_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/4"
SAMPLER_USERS = 8
SAMPLE_LIMIT = 10
# Alternated between background runs so that consecutive runs serve different lists.
RUN_VARIANTS = [{"NEIGHBOURS": 15}, {"NEIGHBOURS": 50}]
PERSONAL = {"rated", "bought", "carted", "viewed"}

SETTINGS_MODULE = api.SETTINGS_MODULE + '''
import json as _json
import os as _os
# Keep every run of the bench (the check reads their lists); BENCH_SHOPRECO lets the
# background recomputes vary their parameters.
SHOPRECO = {**SHOPRECO, "KEEP_RUNS": 50,  # noqa: F405
            **_json.loads(_os.environ.get("BENCH_SHOPRECO") or "{}")}
'''

STOREFRONT_LOCUSTFILE = '''
"""Storefront visitors (anonymous browsers) next to the API shoppers of locustfile_api.py:
the home page (popular widgets) and product pages (similar + also-bought widgets)."""
import json
import os
import random

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

with open(os.environ["BENCH_API_FIXTURE"]) as fh:
    PRODUCTS = json.load(fh)["products"]


class StorefrontVisitor(FastHttpUser):
    weight = 1
    wait_time = between(0.2, 1.0)

    def _page(self, url, name):
        with self.client.get(url, name=name, catch_response=True) as response:
            body = response.text or ""
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            elif "data-shopreco-widget" not in body or "shopreco-empty" in body:
                response.failure("a widget is missing or empty")

    @task(3)
    def product_page(self):
        self._page(f"/p/{random.choice(PRODUCTS)}/", "page /p/{pk}/ (2 widgets)")

    @task(1)
    def home(self):
        self._page("/", "page / (widgets)")
'''


@dataclass
class RunRecord:
    pk: int
    params: dict
    activated: float  # epoch seconds (finished_at)
    started: float
    lists: dict[int, list] = field(default_factory=dict)  # user -> product pks by rank


@dataclass
class Sample:
    t0: float
    t1: float
    user: int
    personal: list


def _run_record(run) -> RunRecord:
    return RunRecord(pk=run.pk, params=run.params, activated=run.finished_at.timestamp(),
                     started=(run.started_at or run.created_at).timestamp())


def _capture(rec: RunRecord, users: list[int]) -> None:
    from shopreco.models import Recommendation

    for user_id, product_id in (
        Recommendation.objects.filter(run_id=rec.pk, user_id__in=users)
        .order_by("user_id", "rank").values_list("user_id", "product_id")
    ):
        rec.lists.setdefault(user_id, []).append(product_id)


def _is_subsequence(small: list, big: list) -> bool:
    it = iter(big)
    return all(x in it for x in small)


def _sampler(base: str, tokens: dict[int, str], stop: threading.Event,
             out: list[Sample], errors: list[str]) -> None:
    users = list(tokens)
    i = 0
    while not stop.is_set():
        user = users[i % len(users)]
        i += 1
        req = urllib.request.Request(
            f"{base}/api/reco/recommendations/?limit={SAMPLE_LIMIT}",
            headers={"Authorization": f"Token {tokens[user]}"},
        )
        t0 = time.time()
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                body = json.loads(response.read())
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        t1 = time.time()
        personal = [r["product"]["pk"] for r in body["results"]
                    if r.get("reason_kind") in PERSONAL]
        if body.get("source") == "personal" and personal:
            out.append(Sample(t0, t1, user, personal))
        stop.wait(0.25)


def _recompute_loop(env: dict, users: list[int], stop: threading.Event,
                    no_more: threading.Event, runs: list[RunRecord],
                    busy: list[tuple[float, float]], failures: list[str],
                    first_variant: int) -> None:
    from shopreco.models import RecomputeRun

    i = first_variant
    while not stop.is_set() and not no_more.is_set():
        variant = RUN_VARIANTS[i % len(RUN_VARIANTS)]
        i += 1
        t0 = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "django", "shopreco_recompute", "--no-progress"],
            cwd=REPO, env={**env, "BENCH_SHOPRECO": json.dumps(variant)},
            capture_output=True, text=True,
        )
        busy.append((t0, time.time()))
        if proc.returncode != 0:
            failures.append(proc.stderr[-500:])
            continue
        run = RecomputeRun.latest_succeeded()
        rec = _run_record(run)
        _capture(rec, users)
        runs.append(rec)


def _locust(base: str, env: dict, tmp: Path, tag: str, users: int, duration: int) -> tuple:
    bin_dir = Path(sys.executable).parent
    prefix = tmp / f"locust-{tag}"
    files = f"{BENCH_DIR / 'locustfile_api.py'},{tmp / 'locustfile_storefront.py'}"
    proc = subprocess.run(
        [str(bin_dir / "locust"), "-f", files, "--headless", "--users", str(users),
         "--spawn-rate", str(users), "--run-time", f"{duration}s", "--host", base,
         "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
         "--exit-code-on-error", "0"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=duration + 180,
    )
    (common.OUT_DIR / "load_recompute_logs" / f"locust-{tag}.log").write_text(
        proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"locust ({tag}) exited with {proc.returncode}: {proc.stderr[-2000:]}")
    stats = [r for r in api._read_stats(prefix)
             if r["Name"] != "Aggregated" and not r["Name"].startswith("GET /login/")]
    return stats, api._read_failures(prefix)


def _check(samples: list[Sample], runs: list[RunRecord]) -> dict:
    """Attribute every sampled list to the runs that could have produced it."""
    result = {"samples": len(samples), "explained": 0, "ambiguous": 0, "unexplained": 0,
              "violations": 0, "from_new_runs": 0, "examples": []}
    for s in samples:
        could = [r for r in runs if _is_subsequence(s.personal, r.lists.get(s.user, []))]
        if not could:
            result["unexplained"] += 1
            continue
        if all(r.activated > s.t1 for r in could):
            result["violations"] += 1
            if len(result["examples"]) < 3:
                result["examples"].append(
                    f"user {s.user} at {s.t1:.3f}: only run(s) "
                    f"{[r.pk for r in could]} activated later")
            continue
        result["explained"] += 1
        if len(could) > 1:
            result["ambiguous"] += 1
        newest = max((r for r in could if r.activated <= s.t1), key=lambda r: r.activated)
        if newest is not runs[0]:
            result["from_new_runs"] += 1
    return result


def _by_endpoint(stats: list[dict]) -> dict[str, dict]:
    def name(r: dict) -> str:
        n = r["Name"]
        return n if n.startswith(("GET", "POST", "page")) else f"{r['Type']} {n}"

    return {name(r): r for r in stats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=int, default=60, help="seconds per phase")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    args = parser.parse_args(argv)

    # Reuse the API bench's machinery on our own database and Redis db.
    api.DB_NAME, api.PG_URL, api.REDIS_URL = DB_NAME, PG_URL, REDIS_URL
    api._require_services()
    movielens = common.require_data("ml-latest-small")
    api._ensure_database()
    tmp = Path(tempfile.mkdtemp(prefix="load-recompute-"))
    (tmp / "bench_api_settings.py").write_text(SETTINGS_MODULE)
    (tmp / "locustfile_storefront.py").write_text(STOREFRONT_LOCUSTFILE)
    os.environ.update(api._env(tmp))
    sys.path.insert(0, str(tmp))
    started = time.perf_counter()
    data = api._prepare(movielens)
    fixture = tmp / "fixture.json"
    fixture.write_text(json.dumps(data))
    env = api._env(tmp, fixture)

    from django.contrib.auth import get_user_model
    from django.db.models import Count
    from rest_framework.authtoken.models import Token

    from shopreco.models import Recommendation, RecomputeRun

    base_run = RecomputeRun.latest_succeeded()
    loaded = set(Token.objects.filter(key__in=data["tokens"]).values_list("user_id", flat=True))
    sampler_ids = [
        u for u in Recommendation.objects.filter(run=base_run).values("user")
        .annotate(n=Count("id")).filter(n__gte=SAMPLE_LIMIT).order_by("-user")
        .values_list("user", flat=True)[:SAMPLER_USERS + len(loaded)] if u not in loaded
    ][:SAMPLER_USERS]
    tokens = {u.pk: Token.objects.get_or_create(user=u)[0].key
              for u in get_user_model().objects.filter(pk__in=sampler_ids)}
    base = _run_record(base_run)
    _capture(base, sampler_ids)
    runs = [base]
    first_variant = 0 if base_run.params.get("k") != RUN_VARIANTS[0]["NEIGHBOURS"] else 1

    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    log_dir = common.OUT_DIR / "load_recompute_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    port = api._free_port()
    procs: list[subprocess.Popen] = []
    phases: dict[str, dict] = {}
    try:
        procs += api.start_servers(env, port, args.workers, log_dir)
        url = f"http://127.0.0.1:{port}"
        api._wait_http(f"{url}/api/reco/popular/")
        for pk in data["products"][:50]:
            urllib.request.urlopen(f"{url}/api/reco/products/{pk}/similar/", timeout=10).read()
            urllib.request.urlopen(f"{url}/p/{pk}/", timeout=10).read()

        for tag in ("idle", "recompute"):
            stop, no_more = threading.Event(), threading.Event()
            samples: list[Sample] = []
            sample_errors: list[str] = []
            busy: list[tuple[float, float]] = []
            run_failures: list[str] = []
            threads = [threading.Thread(target=_sampler, daemon=True,
                                        args=(url, tokens, stop, samples, sample_errors))]
            if tag == "recompute":
                threads.append(threading.Thread(
                    target=_recompute_loop, daemon=True,
                    args=(env, sampler_ids, stop, no_more, runs, busy, run_failures,
                          first_variant)))
            for t in threads:
                t.start()
            t_start, load_before = time.time(), os.getloadavg()[0]
            stats, failures = _locust(url, env, tmp, tag, args.users, args.duration)
            t_end, load_after = time.time(), os.getloadavg()[0]
            no_more.set()
            if tag == "recompute":
                # Keep sampling (load stopped) until the run in flight has gone live, so the
                # switch-over itself is observed; start no further run.
                in_flight = len(busy)
                deadline = time.time() + 300
                while len(busy) == in_flight and time.time() < deadline:  # run still going
                    time.sleep(0.5)
                time.sleep(3)
            stop.set()
            for t in threads:
                t.join(timeout=300)
            window = t_end - t_start
            covered = sum(max(0.0, min(b, t_end) - max(a, t_start)) for a, b in busy)
            phases[tag] = {
                "stats": _by_endpoint(stats), "failures": failures,
                "sample_errors": sample_errors, "check": _check(samples, runs),
                "runs": [r for r in runs if r.activated >= t_start],
                "run_failures": run_failures,
                "busy": [b - a for a, b in busy], "coverage": covered / window if window else 0,
                "load": (load_before, load_after),
            }
    finally:
        for proc in reversed(procs):
            api._stop(proc)

    text = _report(phases, data, args, base, time.perf_counter() - started)
    common.write_section("load_recompute", text)
    print(text)
    errors = sum(int(r["Failure Count"]) for p in phases.values()
                 for r in p["stats"].values()) + sum(len(p["sample_errors"])
                                                     for p in phases.values())
    violations = sum(p["check"]["violations"] for p in phases.values())
    common.emit_result({"load_recompute": {"errors": errors, "violations": violations}})
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if errors == 0 and violations == 0 else 1


def _report(phases: dict, data: dict, args, base: RunRecord, wall: float) -> str:
    idle, busy = phases["idle"], phases["recompute"]
    names = sorted(set(idle["stats"]) | set(busy["stats"]),
                   key=lambda n: (n.startswith("page"), not n.startswith("GET"), n))
    rows = []
    for n in names:
        a, b = idle["stats"].get(n), busy["stats"].get(n)

        def cell(r, key):
            return r[key].split(".")[0] if r else "-"

        rows.append([n, cell(a, "Request Count"), cell(b, "Request Count"),
                     f"{cell(a, '50%')} / {cell(b, '50%')}", f"{cell(a, '95%')} / {cell(b, '95%')}",
                     f"{cell(a, '99%')} / {cell(b, '99%')}",
                     f"{cell(a, 'Failure Count')} / {cell(b, 'Failure Count')}"])

    def totals(p):
        reqs = sum(int(r["Request Count"]) for r in p["stats"].values())
        errs = sum(int(r["Failure Count"]) for r in p["stats"].values())
        rps = sum(float(r["Requests/s"]) for r in p["stats"].values())
        return reqs, errs, rps

    (ri, ei, pi), (rb, eb, pb) = totals(idle), totals(busy)
    runs = busy["runs"]
    ck = busy["check"]
    durations = ", ".join(f"{d:.0f}" for d in busy["busy"])
    counts = data["counts"]
    lines = [
        "## Load while recomputing (API + storefront pages, with and without a full run)",
        "",
        f"Same set-up as the API load bench (reused from `bench_api_load.py`): MovieLens "
        f"latest-small as a shop ({counts['products']} products, {counts['ratings']} ratings), "
        f"gunicorn {args.workers} sync workers, PostgreSQL db `{DB_NAME}`, Redis db 4 (cache, "
        f"broker, one Celery worker for per-user refreshes), locust {args.users} concurrent "
        f"clients for {args.duration} s per phase: the API shoppers of `locustfile_api.py` "
        f"(80% reads / 20% writes) plus anonymous storefront visitors loading the home page and "
        f"product pages with their widgets (1 in 6 clients). Phase 1 idle; phase 2 with "
        f"`shopreco_recompute` (full run, in its own process) running back to back in the "
        f"background: {len(runs)} run(s) activated during the phase, each "
        f"{durations} s, a recompute in progress {100 * busy['coverage']:.0f}% of the window.",
        "",
        f"**Idle: {ri} requests, {pi:.1f} req/s, {ei} errors. With recompute: {rb} requests, "
        f"{pb:.1f} req/s, {eb} errors.** Zero errors: {common.verdict(ei + eb == 0)}.",
        "",
        common.md_table(["endpoint", "requests idle", "requests recompute",
                         "p50 ms idle / recompute", "p95 ms", "p99 ms", "errors"], rows),
        "",
        f"**Never served from a half-finished run**: {ck['samples']} personal lists sampled "
        f"during the recompute phase and until its last run went live (users the load never "
        f"touches, runs alternating "
        f"{' / '.join(str(v['NEIGHBOURS']) for v in RUN_VARIANTS)} neighbours so each run's "
        f"lists differ from the last): {ck['explained']} matched a run already active when the "
        f"response arrived ({ck['ambiguous']} of them could be either of two runs), "
        f"{ck['from_new_runs']} of them served by a run activated during the phase, "
        f"{ck['unexplained']} matched no run, **{ck['violations']} matched only a run that was "
        f"not yet active** {common.verdict(ck['violations'] == 0)}"
        + (f" ({'; '.join(ck['examples'])})" if ck["examples"] else "") + ". "
        f"Idle phase: {idle['check']['samples']} samples, {idle['check']['violations']} "
        f"violations. Sampler errors: {len(idle['sample_errors']) + len(busy['sample_errors'])}"
        + (f"; recompute failures: {len(busy['run_failures'])}" if busy["run_failures"] else "")
        + ".",
        "",
        f"Load average (1 min) idle phase {idle['load'][0]:.1f} -> {idle['load'][1]:.1f}, "
        f"recompute phase {busy['load'][0]:.1f} -> {busy['load'][1]:.1f} (other work on the "
        f"machine included). Served run before the bench: #{base.pk}. Everything (load "
        f"generator included) on this "
        f"shared 2-core machine, so the recompute competes with gunicorn for the same cores: "
        f"the latency difference is the cost of recomputing on the serving host. Bench wall "
        f"time {wall:.0f} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
