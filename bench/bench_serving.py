"""Serving speed (issue #16): shopreco's list endpoints and widgets against a bare DRF view.

The bare view (bench/serving_bare.py, a bench-only URLconf that includes the demo's URLs) is
an ``APIView`` without authentication or throttle classes that reads a product's top-N stored
neighbours of the live run in one query, loads them in a second and serialises them with a
``ModelSerializer``: the floor a hand-written endpoint would sit on. Everything goes through
public URLs (Django's test client in process, gunicorn under load), so the bench does not
depend on shopreco's internals.

1. In process, on the demo database: SQLite, ``seed_demo`` defaults, one recompute, the
   demo's local-memory cache, DEBUG off. 100 products with stored neighbours, 3 passes (the
   first discarded as warm-up); the cache is cleared before each pass (throttle history must
   not build up), then the popularity rankings are warmed through ``popular/``. Per product,
   interleaved: the bare view, ``similar/?limit=4`` twice (first since the clear: neighbour
   list read from the database; then again: list cached), ``recommendations/?limit=4``
   anonymous, and signed in as a customer with a personal list. Medians, p99, ratios; SQL
   queries per request.
2. Product page ``/p/<pk>/`` with the two widgets (``similar_products``, ``also_bought``)
   uncached and cached, against the same page without them (a copy of the demo's template
   with the tags behind a query parameter), signed in and anonymous; SQL queries per widget.
3. Under load: bench_api_load's machinery (gunicorn + PostgreSQL + Redis + Celery, locust with
   50 shoppers) with the bare endpoint added beside ``similar/`` and ``recommendations/``.

    python bench/bench_serving.py                  # all three, a few minutes
    python bench/bench_serving.py --no-load        # in process only (no PostgreSQL/Redis)
    python bench/bench_serving.py --profile 30     # cProfile of similar/ and recommendations/
                                                   # in process (prints, writes nothing)
    python bench/bench_serving.py --breakdown [--db pg]   # median ms per step and endpoint

Writes bench/out/serving.md. No timed assertions: figures, ratios and verdicts only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO)]

import common  # noqa: E402

WORK = common.OUT_DIR / "serving"
URLCONF = "serving_bare"
LIMIT = 4
PRODUCTS = 100
PASSES = 3
PAGES = 40
LOAD_REDIS_DB = int(os.environ.get("BENCH_SERVING_REDIS_DB", "8"))
BARE = "/bench-bare/products/{pk}/similar/"
SIMILAR = "/api/reco/products/{pk}/similar/"
RECS = "/api/reco/recommendations/"

# Targets of issue #16.
MEDIAN_RATIO = 1.5
P99_RATIO = 2.0
LOAD_P99_RATIO = 2.0
LOAD_P99_MS = 50
WIDGETS_MS = 10
QUERIES_PER_WIDGET = 3
CACHED_LIST_QUERIES = 2


# --------------------------------------------------------------------------- statistics


def ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def p99(values: list[float]) -> float:
    import numpy as np

    return float(np.percentile(values, 99)) if values else float("nan")


def summary(seconds: list[float]) -> dict[str, float]:
    values = ms(seconds)
    return {"n": len(values), "median": statistics.median(values), "p90": _pct(values, 90),
            "p99": p99(values)}


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


# --------------------------------------------------------------------------- in process


def _product_template_dir() -> Path:
    """A copy of the demo's product template whose widget tags render only when
    ``?w=`` asks for them (both / similar / also / none; absent = both), so the page with and
    without widgets comes from one template engine, without swapping settings per request."""
    source = (REPO / "demo_shop/templates/catalog/product.html").read_text()
    conditions = {
        "similar_products": 'not request.GET.w or request.GET.w == "both" '
                            'or request.GET.w == "similar"',
        "also_bought": 'not request.GET.w or request.GET.w == "both" '
                       'or request.GET.w == "also"',
    }
    found = []

    def wrap(match: re.Match) -> str:
        found.append(match.group(1))
        return f"{{% if {conditions[match.group(1)]} %}}{match.group(0)}{{% endif %}}"

    text = re.sub(r"\{% (similar_products|also_bought) [^%]*%\}", wrap, source)
    if sorted(found) != ["also_bought", "similar_products"]:
        raise RuntimeError(f"widget tags not found in catalog/product.html (found {found})")
    target = WORK / "templates" / "catalog"
    target.mkdir(parents=True, exist_ok=True)
    (target / "product.html").write_text(text)
    return target.parent


def _setup_in_process(db: str = "sqlite", fresh: bool = True) -> dict[str, Any]:
    """Django in this process with the bench URLconf and the product template copy, on
    ``db``: "sqlite", the demo database as `make demo` builds it (SQLite, seed_demo defaults,
    one recompute) in bench/out/serving/; or "pg", the API load bench's PostgreSQL database
    (MovieLens latest-small as a shop, seeded and recomputed on first use). The demo's
    local-memory cache and DEBUG off in both."""
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ["DJANGO_DEBUG"] = "0"
    started = time.perf_counter()
    if db == "pg":
        import bench_api_load as api

        try:
            import psycopg

            psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                            connect_timeout=3).close()
        except Exception as exc:  # noqa: BLE001 - any failure means "not available"
            raise common.DataMissing(f"skipped: PostgreSQL unavailable ({exc})") from exc
        movielens = common.require_data("ml-latest-small")
        api._ensure_database()
        url = api.PG_URL
    else:
        sqlite = WORK / "demo.sqlite3"
        if fresh:
            for path in WORK.glob("demo.sqlite3*"):
                path.unlink()
            shutil.rmtree(WORK / "media", ignore_errors=True)
        url = f"sqlite:///{sqlite}"
    common.setup_demo_django(url, str(WORK / "media"))
    import copy

    from django.conf import settings
    from django.core.management import call_command
    from django.test.utils import override_settings

    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["DIRS"] = [_product_template_dir(), *templates[0]["DIRS"]]
    override_settings(ROOT_URLCONF=URLCONF, TEMPLATES=templates).enable()
    if db == "pg":
        api._prepare(movielens)  # migrate; seed and recompute if needed; VACUUM ANALYZE
        label = f"MovieLens latest-small on PostgreSQL (db `{api.DB_NAME}`, bench_api_load's)"
    else:
        call_command("migrate", verbosity=0)
        from shopreco.models import RecomputeRun

        if RecomputeRun.latest_succeeded() is None:
            call_command("seed_demo", verbosity=0)
            call_command("shopreco_recompute", no_progress=True, verbosity=0)
        label = ("the demo database: SQLite (bench/out/serving/, built afresh: migrate, "
                 "`seed_demo` defaults, one `shopreco_recompute`)")
    return {"setup_s": time.perf_counter() - started, "label": label, "db": db}


def _choose(rng_seed: int = 0) -> dict[str, Any]:
    """Products with stored neighbours, a customer with a personal list, the categories."""
    from django.contrib.auth import get_user_model
    from django.db.models import Count

    from demo_shop.catalog.models import Category, Product
    from shopreco.models import ItemSimilarity, Recommendation, RecomputeRun

    run = RecomputeRun.latest_succeeded()
    with_neighbours = set(
        ItemSimilarity.objects.filter(run=run, kind=ItemSimilarity.Kind.SIMILAR)
        .values("product").annotate(n=Count("id")).filter(n__gte=LIMIT)
        .values_list("product", flat=True)
    )
    pool = sorted(Product.objects.filter(pk__in=with_neighbours, is_active=True, in_stock=True)
                  .values_list("pk", flat=True))
    rng = random.Random(rng_seed)
    products = rng.sample(pool, min(PRODUCTS, len(pool)))
    pages = rng.sample(pool, min(2 * PAGES, len(pool)))  # one half per shopper
    user_id = (Recommendation.objects.filter(run=run).values("user").annotate(n=Count("id"))
               .order_by("-n", "user").values_list("user", flat=True).first())
    return {
        "run": run,
        "products": products,
        "pages": pages,
        "user": get_user_model().objects.get(pk=user_id),
        "categories": list(Category.objects.values_list("pk", flat=True)),
        "with_neighbours": len(pool),
    }


def _get(client, url: str, data: dict | None = None) -> tuple[float, Any]:
    t0 = time.perf_counter()
    response = client.get(url, data)
    elapsed = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} {data}: HTTP {response.status_code} "
                           f"{response.content[:300]!r}")
    return elapsed, response


def _clear_and_warm(client, categories: list) -> None:
    """Clear the cache (throttle history, lists, rankings), then rebuild the shared popularity
    rankings through the public API, as the beat task keeps them warm on a live shop."""
    from django.core.cache import cache

    cache.clear()
    client.get("/api/reco/popular/", {"limit": LIMIT})
    for pk in categories:
        client.get("/api/reco/popular/", {"limit": LIMIT, "category": pk})


API_CASES = [
    # (key, label, client: anon/user, url template)
    ("bare", "bare DRF view, 2 queries", "anon", BARE),
    ("similar_cold", "`similar/`, first since the clear (neighbour list from the database)",
     "anon", SIMILAR),
    ("similar", "`similar/`, again (neighbour list cached)", "anon", SIMILAR),
    ("recs", "`recommendations/`, anonymous (popular; list cached)", "anon", RECS),
    ("recs_user", "`recommendations/`, signed in (personal list; cached after the first)",
     "user", RECS),
    ("similar_user", "`similar/`, signed in (neighbour list cached)", "user", SIMILAR),
]


def _api_in_process(chosen: dict, passes: int) -> dict[str, Any]:
    from django.test import Client

    anon = Client()
    user = Client()
    user.force_login(chosen["user"])
    clients = {"anon": anon, "user": user}
    times: dict[str, list[float]] = {key: [] for key, *_ in API_CASES}
    # Units run in rotated order per product; similar_cold must come right before similar.
    units = [["bare"], ["similar_cold", "similar"], ["recs"], ["recs_user"], ["similar_user"]]
    cases = {key: (who, url) for key, _, who, url in API_CASES}
    for pass_no in range(passes):
        _clear_and_warm(anon, chosen["categories"])
        order = list(chosen["products"])
        random.Random(100 + pass_no).shuffle(order)
        for i, pk in enumerate(order):
            rotated = units[i % len(units):] + units[:i % len(units)]
            for unit in rotated:
                for key in unit:
                    who, url = cases[key]
                    elapsed, _ = _get(clients[who], url.format(pk=pk), {"limit": LIMIT})
                    if pass_no > 0:  # the first pass is the warm-up
                        times[key].append(elapsed)
    return {key: summary(values) for key, values in times.items()}


def _queries(client, url: str, data: dict | None = None) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        _get(client, url, data)
    return [q["sql"] for q in ctx.captured_queries]


def _statements(queries: list[str]) -> int:
    """Statements other than transaction control (BEGIN, COMMIT, savepoints)."""
    control = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")
    return sum(1 for q in queries if not q.strip().upper().startswith(control))


def _api_queries(chosen: dict) -> dict[str, Any]:
    """SQL queries per request (max over 10 products), cold and cached lists."""
    from django.test import Client

    anon = Client()
    user = Client()
    user.force_login(chosen["user"])
    _clear_and_warm(anon, chosen["categories"])
    counts: dict[str, list[int]] = {}
    sql: dict[str, list[str]] = {}

    def note(key: str, queries: list[str]) -> None:
        counts.setdefault(key, []).append(len(queries))
        sql.setdefault(key, queries)

    note("recs_user_cold", _queries(user, RECS, {"limit": LIMIT}))
    for pk in chosen["products"][:10]:
        note("bare", _queries(anon, BARE.format(pk=pk), {"limit": LIMIT}))
        note("similar_cold", _queries(anon, SIMILAR.format(pk=pk), {"limit": LIMIT}))
        note("similar", _queries(anon, SIMILAR.format(pk=pk), {"limit": LIMIT}))
        note("recs", _queries(anon, RECS, {"limit": LIMIT}))
        note("recs_user", _queries(user, RECS, {"limit": LIMIT}))
        note("similar_user", _queries(user, SIMILAR.format(pk=pk), {"limit": LIMIT}))
    return {"max": {k: max(v) for k, v in counts.items()}, "sql": sql}


def _pages_in_process(chosen: dict, passes: int) -> dict[str, Any]:
    """Product page with two widgets (uncached, cached) against the page without them."""
    from django.test import Client

    from demo_shop.catalog.models import Product

    urls = {pk: Product(pk=pk).get_absolute_url() for pk in chosen["pages"]}
    warm = Client()
    signed_in = Client()
    signed_in.force_login(chosen["user"])
    anonymous = Client()
    anonymous.get(urls[chosen["pages"][0]])  # the session a browsing visitor has
    who = {"user": signed_in, "anon": anonymous}
    # Each shopper its own pages: the neighbour lists (shared by all shoppers) of a page are
    # cold on its first render since the clear, whoever renders it.
    half = len(chosen["pages"]) // 2
    pages_of = {"user": chosen["pages"][:half], "anon": chosen["pages"][half:2 * half]}
    times = {f"{w}_{v}": [] for w in who for v in ("none", "uncached", "cached")}
    for pass_no in range(passes):
        _clear_and_warm(warm, chosen["categories"])
        order = list(range(half))
        random.Random(200 + pass_no).shuffle(order)
        for i in order:
            for name, client in who.items():
                pk = pages_of[name][i]
                got = {}
                if i % 2 == 0:
                    got["none"] = _get(client, urls[pk], {"w": "none"})[0]
                got["uncached"] = _get(client, urls[pk], {"w": "both"})[0]
                got["cached"] = _get(client, urls[pk], {"w": "both"})[0]
                if i % 2 == 1:
                    got["none"] = _get(client, urls[pk], {"w": "none"})[0]
                if pass_no > 0:
                    for variant, seconds in got.items():
                        times[f"{name}_{variant}"].append(seconds)
    out: dict[str, Any] = {key: summary(values) for key, values in times.items()}
    for name in who:  # paired per page: the widgets' cost on that very page
        for variant in ("uncached", "cached"):
            diffs = [a - b for a, b in zip(times[f"{name}_{variant}"], times[f"{name}_none"],
                                           strict=True)]
            out[f"{name}_{variant}_added"] = statistics.median(ms(diffs))
    # SQL per widget: a page with one widget, or both, minus the same page without; cold
    # (first render since the clear) and cached. Singles and pairs on different pages.
    _clear_and_warm(warm, chosen["categories"])
    per_widget: dict[str, list[int]] = {}
    for i in range(10):
        for name, client in who.items():
            for widgets, pk in ((("similar", "also"), pages_of[name][i]),
                                (("both",), pages_of[name][10 + i])):
                base = _queries(client, urls[pk], {"w": "none"})
                for widget in widgets:
                    for phase in ("cold", "cached"):
                        got = _queries(client, urls[pk], {"w": widget})
                        per_widget.setdefault(f"{name}_{widget}_{phase}", []).append(
                            len(got) - len(base))
                        per_widget.setdefault(f"{name}_{widget}_{phase}_stmt", []).append(
                            _statements(got) - _statements(base))
    out["queries"] = {k: max(v) for k, v in per_widget.items()}
    return out


def in_process(passes: int, db: str) -> dict[str, Any]:
    setup = _setup_in_process(db)
    chosen = _choose()
    from django.core.cache import caches

    load_start = common.load_average()
    t0 = time.perf_counter()
    api = _api_in_process(chosen, passes)
    api_s = time.perf_counter() - t0
    queries = _api_queries(chosen)
    t0 = time.perf_counter()
    pages = _pages_in_process(chosen, passes)
    pages_s = time.perf_counter() - t0
    run = chosen["run"]
    return {
        "setup": setup, "api": api, "api_s": api_s, "queries": queries, "pages": pages,
        "pages_s": pages_s, "load_start": load_start, "load_end": common.load_average(),
        "counts": run.counts, "run": run.pk, "cache": type(caches["default"]).__name__,
        "products": len(chosen["products"]), "pages_n": len(chosen["pages"]) // 2,
        "with_neighbours": chosen["with_neighbours"], "user": chosen["user"].username,
    }


# --------------------------------------------------------------------------- profile


def profile(top: int, repeat: int, sort: str, db: str) -> int:
    """cProfile of similar/ (list cached) and recommendations/ (anonymous and signed in),
    plus one request's SQL; prints only."""
    import cProfile
    import pstats

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    _setup_in_process(db, fresh=db == "sqlite" and not (WORK / "demo.sqlite3").exists())
    chosen = _choose()
    anon = Client()
    user = Client()
    user.force_login(chosen["user"])
    targets = {
        "bare": (anon, BARE), "similar": (anon, SIMILAR), "recommendations": (anon, RECS),
        "recommendations (signed in)": (user, RECS), "similar (signed in)": (user, SIMILAR),
    }
    products = chosen["products"]
    for label, (client, url) in targets.items():
        _clear_and_warm(anon, chosen["categories"])
        for pk in products:  # neighbour lists cached, code warm
            _get(client, url.format(pk=pk), {"limit": LIMIT})
        walls = []
        profiler = cProfile.Profile()
        for i in range(repeat):
            if i % 250 == 249:
                _clear_and_warm(anon, chosen["categories"])  # keep throttle history short
                for pk in products:
                    _get(client, url.format(pk=pk), {"limit": LIMIT})
            pk = products[i % len(products)]
            profiler.enable()
            walls.append(_get(client, url.format(pk=pk), {"limit": LIMIT})[0])
            profiler.disable()
        with CaptureQueriesContext(connection) as ctx:
            _get(client, url.format(pk=products[0]), {"limit": LIMIT})
        print(f"\n===== {label}: {repeat} requests, wall median under the profiler "
              f"{statistics.median(ms(walls)):.2f} ms; {len(ctx.captured_queries)} queries")
        for q in ctx.captured_queries:
            print(f"  [{q['time']}s] {q['sql'][:400]}")
        stats = pstats.Stats(profiler)
        stats.sort_stats(sort).print_stats(top)
    return 0


# Where a request's time goes (--breakdown): wall-clock timers around these callables,
# inclusive, a few microseconds of overhead each (cProfile inflates ORM-heavy code several
# times). Diagnostic only: names that no longer exist (shopreco's internals move) are skipped
# and listed, the measurement above never depends on them.
BREAKDOWN = [
    ("django.test.client:Client.request", "total (test client)"),
    ("django.http.response:HttpResponseBase.close", "response close (impression INSERT)"),
    ("rest_framework.views:APIView.dispatch", "DRF dispatch"),
    ("rest_framework.views:APIView.perform_authentication",
     "  authentication (session + user if signed in)"),
    ("rest_framework.views:APIView.check_throttles", "  throttles"),
    ("django.template.response:SimpleTemplateResponse.render", "response render (JSON)"),
    ("shopreco.api.views:_product_or_404", "  view: product lookup"),
    ("shopreco.api.views:_clean_query", "  view: query parameters"),
    ("shopreco.api.views:_list_response", "  view: ETag + serialise + headers"),
    ("shopreco.services:_plan", "  serving: plan"),
    ("shopreco.services:_state", "    state query (run, preference)"),
    ("shopreco.services:_materialise", "  serving: materialise"),
    ("shopreco.services:_rankings", "    rankings + neighbour list (cache)"),
    ("shopreco.services:_neighbours", "    neighbours (database)"),
    ("shopreco.services:_load_in_order", "    candidate load (product widgets)"),
    ("shopreco.services:_load_products", "    product load (other lists)"),
    ("shopreco.services:_owned_exclusions", "    owned-product exclusions (queryset)"),
    ("shopreco.services:reason_text", "    reasons"),
    ("shopreco.services:_served", "    served (de-dup, impression object)"),
    ("shopreco.services:flush_impressions", "impression INSERT"),
    ("serving_bare:BareSimilarView.get", "  bare view: get"),
]


def breakdown(db: str) -> int:
    """Median inclusive time of each BREAKDOWN callable per request and endpoint; prints."""
    import functools
    import importlib

    from django.test import Client

    _setup_in_process(db, fresh=db == "sqlite" and not (WORK / "demo.sqlite3").exists())
    chosen = _choose()
    spent: dict[str, float] = {}
    busy: set[str] = set()
    missing = []

    def wrap(owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*a: Any, **kw: Any) -> Any:
            if label in busy:  # recursion: the outer call counts
                return original(*a, **kw)
            busy.add(label)
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0
                busy.discard(label)

        setattr(owner, attr, timed)

    for target, label in BREAKDOWN:
        module_name, _, path = target.partition(":")
        try:
            owner: Any = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for part in parents:
                owner = getattr(owner, part)
            getattr(owner, attr)
        except (ImportError, AttributeError):
            missing.append(target)
            continue
        wrap(owner, attr, label)
    anon, user = Client(), Client()
    user.force_login(chosen["user"])
    cases = [("bare", anon, BARE), ("similar", anon, SIMILAR), ("recs", anon, RECS),
             ("similar_user", user, SIMILAR), ("recs_user", user, RECS)]
    per: dict[str, dict[str, list[float]]] = {name: {} for name, *_ in cases}
    for pass_no in range(3):
        _clear_and_warm(anon, chosen["categories"])
        for pk in chosen["products"]:  # neighbour lists cached
            _get(anon, SIMILAR.format(pk=pk), {"limit": LIMIT})
        for i, pk in enumerate(chosen["products"]):
            for name, client, url in cases[i % len(cases):] + cases[:i % len(cases)]:
                spent.clear()
                _get(client, url.format(pk=pk), {"limit": LIMIT})
                if pass_no:
                    for label, seconds in spent.items():
                        per[name].setdefault(label, []).append(seconds)
    n = 2 * len(chosen["products"])
    print(f"{db}: median ms per request over {n} requests (inclusive; '-': did not run)")
    print(f"{'':48s}" + "".join(f"{name:>13s}" for name, *_ in cases))
    for _, label in BREAKDOWN:
        cells = [f"{statistics.median(per[name][label]) * 1000:13.3f}"
                 if len(per[name].get(label, [])) > n // 2 else f"{'-':>13s}"
                 for name, *_ in cases]
        print(f"{label:48s}" + "".join(cells))
    if missing:
        print("not found (moved?): " + ", ".join(missing))
    return 0


# --------------------------------------------------------------------------- under load


def under_load(users: int, duration: int, workers: int, worker_nice: int,
               think: str) -> dict[str, Any]:
    import bench_api_load as api

    settings_text = api.SETTINGS_MODULE + f'\nROOT_URLCONF = "{URLCONF}"\n'
    result = api.run_load(
        users=users, duration=duration, workers=workers, worker_nice=worker_nice, think=think,
        settings_text=settings_text, redis_url=f"redis://127.0.0.1:6379/{LOAD_REDIS_DB}",
        extra_env={"BENCH_API_BARE": "1"}, extra_path=(str(BENCH_DIR),),
        log_name="serving_load_logs",
    )
    result["counts"] = result["data"]["counts"]
    del result["data"]
    result["db"] = api.DB_NAME
    return result


# --------------------------------------------------------------------------- report


def _child(part: str, argv: list[str], timeout: float) -> dict[str, Any]:
    """Run one part in its own process (each configures Django its own way), echoing its
    output; returns its emit_result() payload."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), str(REPO)]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.Popen([sys.executable, "-u", str(Path(__file__).resolve()), "--part", part,
                             *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    payload = None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if line.startswith(common.RESULT_MARKER):
            payload = json.loads(line[len(common.RESULT_MARKER):])
        else:
            sys.stdout.write(line)
            sys.stdout.flush()
        if time.monotonic() > deadline:
            proc.kill()
            break
    code = proc.wait()
    if code == common.SKIP_EXIT_CODE:
        return {"skipped": (payload or {}).get("skipped", "skipped")}
    if code != 0 or payload is None:
        raise RuntimeError(f"bench_serving --part {part} failed (exit code {code})")
    return payload


def _f(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def _in_process_section(inp: dict, args: argparse.Namespace, title: str,
                        judge: bool) -> tuple[list[str], list[str]]:
    """The tables of one in-process run, and its verdicts (``judge``: on the API targets)."""
    api, q, pages = inp["api"], inp["queries"], inp["pages"]
    c = inp["counts"]
    bare = api["bare"]
    where = "demo" if inp["setup"]["db"] == "sqlite" else "MovieLens"
    lines = [
        f"### In process: {title}",
        "",
        f"Data: {inp['setup']['label']}, {c.get('products')} products, {c.get('ratings')} "
        f"ratings, {c.get('events')} events, run #{inp['run']}; the demo's cache "
        f"({inp['cache']}), DEBUG off; Django's test client (middleware, DRF, throttles, the "
        f"impression INSERT on response close all run; no HTTP server). {inp['products']} "
        f"random products with >= {LIMIT} stored neighbours (of {inp['with_neighbours']}), "
        f"`?limit={LIMIT}`, {args.passes} passes, the first discarded as warm-up: per pass "
        f"the cache is cleared (throttle history) and the popularity rankings rebuilt through "
        f"`popular/`, then per product the requests below run interleaved, in rotated order. "
        f"Signed in: `{inp['user']}` (session auth), the customer with the longest personal "
        f"list. Load average at start / end: {inp['load_start']} / {inp['load_end']}.",
        "",
    ]
    rows = []
    for key, label, _, _ in API_CASES:
        s = api[key]
        rows.append([label, s["n"], _f(s["median"]), _f(s["p90"]), _f(s["p99"]),
                     "-" if key == "bare" else _f(s["median"] / bare["median"], 1) + "x",
                     "-" if key == "bare" else _f(s["p99"] / bare["p99"], 1) + "x",
                     q["max"].get(key, "?")])
    lines += [common.md_table(["request", "n", "median ms", "p90 ms", "p99 ms",
                               "median / bare", "p99 / bare", "SQL queries (max)"], rows), ""]
    verdicts = []
    if judge:
        for key in ("similar", "similar_cold", "recs"):
            s = api[key]
            label = next(lbl for k, lbl, _, _ in API_CASES if k == key).split(",")[0]
            ok = (s["median"] <= MEDIAN_RATIO * bare["median"]
                  and s["p99"] <= P99_RATIO * bare["p99"])
            verdicts.append(
                f"in process ({where}), {label} ({key.replace('_', ' ')}): median "
                f"{s['median'] / bare['median']:.1f}x (target <= {MEDIAN_RATIO}x), p99 "
                f"{s['p99'] / bare['p99']:.1f}x (target <= {P99_RATIO}x): {common.verdict(ok)}")
        cached = {k: q["max"][k] for k in ("similar", "recs", "recs_user")}
        verdicts.append(
            f"a cached API list costs <= {CACHED_LIST_QUERIES} queries ({where}): `similar/` "
            f"{cached['similar']}, `recommendations/` anonymous {cached['recs']}, signed in "
            f"{cached['recs_user']} (two of them the session and the user), the impression "
            f"INSERT included: "
            f"{common.verdict(max(cached['similar'], cached['recs']) <= CACHED_LIST_QUERIES)}")
    lines += [
        f"SQL queries per request: max over 10 products, the impression INSERT included; "
        f"`recommendations/` signed in on a cold list: {q['max']['recs_user_cold']}. The SQL "
        f"of one cached `similar/` (anonymous):",
        "",
        "```",
        *[s[:150] for s in q["sql"]["similar"]],
        "```",
        "",
        f"Product page `GET /p/<pk>/` (middleware, view, template, view-event write), "
        f"{inp['pages_n']} random product pages per shopper (its own), {args.passes} passes "
        f"(the first discarded; cache cleared and rankings rebuilt before each). The "
        f"template is a copy of the "
        f"demo's `catalog/product.html` whose two widget tags (`similar_products`, "
        f"`also_bought`, limit 4) render only when `?w=` asks for them, so the pages with and "
        f"without widgets come from one template engine. Uncached: the first render of that "
        f"page since the clear (neighbour lists, list and HTML caches cold); cached: the same "
        f"page again. Added: median over pages of (page with widgets - same page without).",
        "",
    ]
    rows = []
    for who, label in (("user", f"signed in ({inp['user']})"), ("anon", "anonymous (session)")):
        rows.append([label, _f(pages[f"{who}_none"]["median"]),
                     _f(pages[f"{who}_uncached"]["median"]), _f(pages[f"{who}_uncached_added"]),
                     _f(pages[f"{who}_cached"]["median"]), _f(pages[f"{who}_cached_added"])])
    lines += [common.md_table(["shopper", "page without widgets, median ms",
                               "two widgets uncached, ms", "added, ms",
                               "two widgets cached, ms", "added, ms"], rows), ""]
    pq = pages["queries"]

    def cell(key: str) -> str:
        trips, stmts = pq[key], pq[key + "_stmt"]
        return str(trips) if trips == stmts else f"{trips} ({stmts})"

    rows = [[label, cell(f"{who}_both_cold"), cell(f"{who}_both_cached"),
             _f(pq[f"{who}_both_cold"] / 2, 1), cell(f"{who}_similar_cold"),
             cell(f"{who}_similar_cached"), cell(f"{who}_also_cold"),
             cell(f"{who}_also_cached")]
            for who, label in (("user", "signed in"), ("anon", "anonymous"))]
    lines += [
        "SQL round trips the widgets add to the page (the page with them minus the same page "
        "without; max over 10 pages; in brackets, without BEGIN/COMMIT where those occur: the "
        "two widgets' impressions go in one `bulk_create`, which wraps its INSERT in a "
        "transaction). On the demo's page the two widgets share the state query and that one "
        "impression write; a widget alone carries both (and, anonymous, the state query that a "
        "signed-in page makes anyway for its view event):",
        "",
        common.md_table(["shopper", "both, cold", "both, cached", "per widget (both cold / 2)",
                         "similar alone, cold", "cached", "also bought alone, cold",
                         "cached"], rows),
        "",
    ]
    added = max(pages["user_uncached_added"], pages["anon_uncached_added"])
    verdicts.append(f"two uncached widgets add <= {WIDGETS_MS} ms to a product page ({where}): "
                    f"{pages['user_uncached_added']:.1f} ms signed in, "
                    f"{pages['anon_uncached_added']:.1f} ms anonymous: "
                    f"{common.verdict(added <= WIDGETS_MS)}")
    pair = max(pq["user_both_cold"], pq["anon_both_cold"]) / 2
    pair_stmt = max(pq["user_both_cold_stmt"], pq["anon_both_cold_stmt"]) / 2
    alone = max(v for k, v in pq.items() if k.split("_")[1] != "both"
                and not k.endswith("_stmt"))
    verdicts.append(f"<= {QUERIES_PER_WIDGET} queries per widget ({where}): {pair:g} round trips "
                    f"per widget on the two-widget page, cold ({pair_stmt:g} without "
                    f"BEGIN/COMMIT; a widget alone: up to {alone}): "
                    f"{common.verdict(pair <= QUERIES_PER_WIDGET)}")
    return lines, verdicts


def _report(runs: dict[str, dict], load: dict | None, args: argparse.Namespace,
            wall: float) -> str:
    lines = [
        "## Serving speed: shopreco against a bare DRF view (issue #16)",
        "",
        "The bare view (bench/serving_bare.py, a bench-only URLconf including the demo's): a "
        "DRF `APIView` with no authentication or throttle classes (the same middleware) that "
        "reads the product's top-N stored neighbours of the live run in one query, loads the "
        "products in a second and serialises them with a `ModelSerializer`. shopreco's "
        "endpoints do more (availability and category filters, popular fill, reasons, page "
        "de-dup, an impression per list, throttles, ETag): the ratios say what that costs.",
        "",
    ]
    verdicts: list[str] = []
    titles = {"sqlite": "demo database (SQLite), the protocol of issue #16",
              "pg": "MovieLens on PostgreSQL (the load bench's database)"}
    for db, inp in runs.items():
        if "skipped" in inp:
            lines += [f"### In process: {titles[db]}", "", f"Not run: {inp['skipped']}.", ""]
            continue
        more, v = _in_process_section(inp, args, titles[db], judge=db == "sqlite")
        lines += more
        verdicts += v
    if load is not None and "skipped" in load:
        lines += ["### Under load", "", f"Not run: {load['skipped']}.", ""]
    elif load is not None:
        stats = {r["Name"]: r for r in load["stats"]}
        c = load["counts"]
        keep = ["GET bench-bare/products/{pk}/similar/", "GET products/{pk}/similar/",
                "GET recommendations/"]
        rows = []
        bare99 = float(stats[keep[0]]["99%"])
        for name in keep:
            r = stats[name]
            rows.append([name.removeprefix("GET "), r["Request Count"], r["Failure Count"],
                         r["50%"], r["95%"], r["99%"], r["Max Response Time"].split(".")[0],
                         "-" if name == keep[0] else _f(float(r["99%"]) / bare99, 1) + "x"])
        total = stats.get("Aggregated", {})
        errors = sum(int(r["Failure Count"]) for n, r in stats.items() if n != "Aggregated")
        lines += [
            "### Under load",
            "",
            f"bench_api_load's setup and scenario (bench/locustfile_api.py) with the bare "
            f"endpoint added as often as `similar/` (`BENCH_API_BARE=1`; requests per second "
            f"unchanged: one per think time per shopper): MovieLens latest-small as a shop "
            f"({c['products']} products, {c['ratings']} ratings, run #{c['run']}), gunicorn "
            f"with {args.workers} sync workers on PostgreSQL db `{load['db']}`, Redis db "
            f"{LOAD_REDIS_DB} as cache and broker with one Celery worker (nice "
            f"{args.worker_nice}), locust with {args.users} shoppers clicking every "
            f"{args.think} s for {args.duration} s, all on this 2-core machine; `?limit=6` for "
            f"all three. {total.get('Request Count', '?')} requests, "
            f"{float(total.get('Requests/s', 'nan')):.1f} req/s, {errors} errors. Load average "
            f"before / after: {load['load_before']} / {load['load_after']}.",
            "",
            common.md_table(["endpoint", "requests", "errors", "p50 ms", "p95 ms", "p99 ms",
                             "max ms", "p99 / bare"], rows),
            "",
            "Percentiles are locust's (whole milliseconds, coarser above 100 ms).",
            "",
        ]
        for name in keep[1:]:
            value = float(stats[name]["99%"])
            ok = value <= LOAD_P99_RATIO * bare99 and value < LOAD_P99_MS
            verdicts.append(f"under load, `{name.removeprefix('GET ')}` p99 {value:.0f} ms = "
                            f"{value / bare99:.1f}x the bare view's {bare99:.0f} ms (targets "
                            f"<= {LOAD_P99_RATIO}x and < {LOAD_P99_MS} ms): "
                            f"{common.verdict(ok)}")
    lines += ["### Targets", "", *[f"- {v}" for v in verdicts], "",
              f"Bench wall time {wall:.0f} s. Run alone: `python bench/bench_serving.py` "
              f"(`--no-load` for the in-process part; `--profile 30` prints a cProfile of the "
              f"endpoints).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=PASSES)
    parser.add_argument("--no-load", action="store_true", help="skip the load part")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=int, default=60, help="seconds under load")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--worker-nice", type=int, default=10)
    parser.add_argument("--think", default="1.0-3.0")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print a cProfile (top N) of the endpoints in process; no report")
    parser.add_argument("--repeat", type=int, default=500, help="requests per profiled endpoint")
    parser.add_argument("--sort", default="cumulative", help="cProfile order (tottime, ...)")
    parser.add_argument("--breakdown", action="store_true",
                        help="print where each endpoint's time goes (timers around named "
                             "functions, in process); no report")
    parser.add_argument("--db", choices=("sqlite", "pg"), default="sqlite",
                        help="database of --profile / --breakdown (sqlite: the demo; pg: "
                             "MovieLens)")
    parser.add_argument("--part", choices=("inprocess", "load"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.profile:
        return profile(args.profile, args.repeat, args.sort, args.db)
    if args.breakdown:
        return breakdown(args.db)
    if args.part == "inprocess":
        try:
            result = in_process(args.passes, args.db)
        except common.DataMissing as exc:
            common.emit_result({"skipped": str(exc).removeprefix("skipped: ")})
            return common.SKIP_EXIT_CODE
        common.emit_result(result)
        return 0
    if args.part == "load":
        try:
            result = under_load(args.users, args.duration, args.workers, args.worker_nice,
                                args.think)
        except common.DataMissing as exc:
            common.emit_result({"skipped": str(exc).removeprefix("skipped: ")})
            return common.SKIP_EXIT_CODE
        common.emit_result(result)
        return 0

    started = time.perf_counter()
    runs = {}
    for db, what in (("sqlite", "the SQLite demo database"),
                     ("pg", "MovieLens on PostgreSQL")):
        print(f"in process, {what} ...", flush=True)
        runs[db] = _child("inprocess", ["--passes", str(args.passes), "--db", db], timeout=900)
    load = None
    if not args.no_load:
        print("under load (gunicorn + PostgreSQL + locust) ...", flush=True)
        load = _child("load", ["--users", str(args.users), "--duration", str(args.duration),
                               "--workers", str(args.workers), "--worker-nice",
                               str(args.worker_nice), "--think", args.think],
                      timeout=args.duration + 900)
    text = _report(runs, load, args, time.perf_counter() - started)
    common.write_section("serving", text)
    print(text)
    common.emit_result({"serving": {db: {k: v for k, v in r.items() if k in ("api", "pages")}
                                    for db, r in runs.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
