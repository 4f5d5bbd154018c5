"""Profile single API requests in-process: wall time, SQL queries and cache round trips per
request, and optionally a cProfile of the hot path. Finds where a request's time goes without
the noise of a load test (bench_api_load.py measures the tail under load).

    python bench/profile_api.py                       # PostgreSQL db "serving", Redis db 7
    python bench/profile_api.py --endpoint similar --repeat 200 --cprofile 25
    python bench/profile_api.py --queries             # print the SQL of one warm request

Uses the API load bench's database and settings (run bench_api_load.py once to seed it) and
Django's test client, so middleware, DRF, throttles and the serving layer all run as under
gunicorn; only the HTTP server and the network are left out.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO)]

import bench_api_load  # noqa: E402

ENDPOINTS = ("similar", "recommendations", "also-bought", "popular", "ratings", "event",
             "rate")


def _setup() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="profile-api-"))
    (tmp / "bench_api_settings.py").write_text(bench_api_load.SETTINGS_MODULE)
    os.environ.update(bench_api_load._env(tmp))
    sys.path.insert(0, str(tmp))
    import django

    django.setup()


class _CacheCounter:
    """Counts calls into the default cache backend (each is one Redis round trip)."""

    METHODS = ("get", "set", "add", "get_many", "set_many", "delete", "incr", "touch",
               "delete_many", "has_key")

    def __init__(self) -> None:
        from django.core.cache import caches

        self.backend = caches["default"]
        self.calls = 0
        self._orig = {}
        for name in self.METHODS:
            orig = getattr(self.backend, name, None)
            if orig is None:
                continue
            self._orig[name] = orig

            def wrapped(*a, _orig=orig, **kw):
                self.calls += 1
                return _orig(*a, **kw)

            setattr(self.backend, name, wrapped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", choices=ENDPOINTS, action="append")
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--cprofile", type=int, default=0, help="show the top N functions")
    parser.add_argument("--sort", default="cumulative", help="cProfile order (tottime, ...)")
    parser.add_argument("--queries", action="store_true", help="print one request's SQL")
    parser.add_argument("--cold", action="store_true",
                        help="flush the cache before each request (worst case)")
    args = parser.parse_args(argv)
    _setup()

    from django.core.cache import caches
    from django.db import connection
    from django.db.models import Count
    from django.test.utils import CaptureQueriesContext
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from shopreco.models import Rating, Recommendation, RecomputeRun

    run = RecomputeRun.latest_succeeded()
    if run is None:
        print("no succeeded run: run bench/bench_api_load.py once to seed the database")
        return 1
    users = list(Recommendation.objects.filter(run=run).values_list("user", flat=True)
                 .distinct().order_by("user")[:200])
    tokens = [Token.objects.get_or_create(user_id=u)[0].key for u in users]
    products = list(
        Rating.objects.filter(product__is_active=True, product__in_stock=True)
        .values("product").annotate(n=Count("id")).order_by("-n", "product")
        .values_list("product", flat=True)[:500]
    )
    rng = random.Random(0)
    clients = {}

    def client_for(token: str) -> APIClient:
        if token not in clients:
            c = APIClient()
            c.credentials(HTTP_AUTHORIZATION=f"Token {token}")
            clients[token] = c
        return clients[token]

    def request(endpoint: str):
        c = client_for(rng.choice(tokens))
        if endpoint == "similar":
            return c.get(f"/api/reco/products/{rng.choice(products)}/similar/", {"limit": 6})
        if endpoint == "also-bought":
            return c.get(f"/api/reco/products/{rng.choice(products)}/also-bought/",
                         {"limit": 4})
        if endpoint == "recommendations":
            return c.get("/api/reco/recommendations/", {"limit": 6})
        if endpoint == "popular":
            return c.get("/api/reco/popular/", {"limit": 6})
        if endpoint == "ratings":
            return c.get("/api/reco/ratings/")
        if endpoint == "event":
            return c.post("/api/reco/events/", {"product": rng.choice(products),
                                                "type": "view"}, format="json")
        return c.post("/api/reco/ratings/", {"product": rng.choice(products),
                                             "score": rng.randint(1, 5)}, format="json")

    counter = _CacheCounter()
    cache = caches["default"]
    for endpoint in args.endpoint or ["similar", "recommendations"]:
        for _ in range(10):  # warm imports, connections and the popularity rankings
            request(endpoint)
        walls, cpus, nqueries, ncache = [], [], [], []
        profiler = cProfile.Profile() if args.cprofile else None
        for _ in range(args.repeat):
            if args.cold:
                cache.clear()
            counter.calls = 0
            with CaptureQueriesContext(connection) as ctx:
                t0, c0 = time.perf_counter(), time.process_time()
                if profiler:
                    profiler.enable()
                response = request(endpoint)
                if profiler:
                    profiler.disable()
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            assert response.status_code < 400, (endpoint, response.status_code,
                                                response.content[:300])
            nqueries.append(len(ctx.captured_queries))
            ncache.append(counter.calls)
        ms = sorted(w * 1000 for w in walls)
        print(f"{endpoint:16s} wall median {statistics.median(ms):6.1f} ms  "
              f"p90 {ms[int(0.9 * len(ms))]:6.1f} ms  "
              f"cpu median {1000 * statistics.median(cpus):6.1f} ms  "
              f"queries median {statistics.median(nqueries):.0f} (max {max(nqueries)})  "
              f"cache calls median {statistics.median(ncache):.0f}")
        if args.queries:
            with CaptureQueriesContext(connection) as ctx:
                request(endpoint)
            for q in ctx.captured_queries:
                print(f"  [{q['time']}s] {q['sql'][:2000]}")
        if profiler:
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.cprofile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
