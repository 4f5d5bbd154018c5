"""Personalised ordering of a listing (``shopreco.rank``): what it costs a request, and how
well it orders a shopper's candidates.

Quality, on MovieLens latest-small with the served-list protocol (bench_served's split:
implicit ``train_test_split(R, 0.8, random_state=0)``, the train pairs with their ratings
rounded half up to whole stars, as ``seed_demo --movielens`` loads them): each test user's
held-out items mixed with 100 random items absent from both their train and held-out
pairs, shuffled (the "host's order"), ordered by

- popularity (train interactions),
- the full model: the served EASE model (the default settings) fitted on the train part,
  its own scores of the candidates (dense head weights and tail, ``x_u @ B``),
- ``rank()``'s scoring: the user's train ratings through ``ranking.history_of`` (the
  preference weights the request computes from the history query's rows), the run's weights
  as ``ranking.weights_from_parts`` keeps them in a web process (each product row pruned to
  its ``k`` largest positive weights), ``ranking.personal_scores`` and ``ranking.fuse``:
  the functions ``rank()`` runs, on arrays. ``blend`` 1 (the host's order here is random)
  and ``blend`` 0.5 over a popularity host order.

NDCG@10, binary relevance (held-out items), ``shopreco.engine.evaluate.ndcg_at_k``.

Cost, on PostgreSQL with the same ratings shop (``seed_demo --flush --movielens``, then a
full recompute): a category page's listing (the largest category, by name, first 200
products) for sampled shoppers, each with a fresh request: the host's query, then
``shopreco.rank(products, request)`` on what it returned (ShopRecoMiddleware's deferred
impression), so the ranking's own cost is measured apart from the listing query's noise;
medians, the ratio of the ranked listing to the unranked one, the queries counted, and
each step alone.

    .venv/bin/python bench/bench_ranking.py [--users 200] [--database-url URL]

Writes bench/out/ranking.md.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_DIR)]

import common  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/ranking_bench"
K = 10
NEGATIVES = 100
K_PRUNED = (20, 50, 100, 200, 500, 1000)
CANDIDATES = 200


# =========================================================================== quality


def ratings_shop(data: common.Ratings, train_rows: np.ndarray, shape: tuple[int, int]):
    """The train pairs with their ratings rounded half up to whole stars (seed_demo's)."""
    from shopreco.pipeline.matrix import Snapshot

    values = np.floor(data.rating[train_rows] + 0.5)
    R = sp.csr_matrix((values, (data.u[train_rows], data.i[train_rows])), shape=shape)
    R.sum_duplicates()
    R.sort_indices()
    return Snapshot.from_ratings(R)


def candidate_sets(split, rng: np.random.Generator) -> list[np.ndarray]:
    """Per test user: held-out items + 100 random items in neither part, shuffled."""
    n = split.n_items
    out = []
    for u in split.eval_users.tolist():
        held = split.test.indices[split.test.indptr[u]:split.test.indptr[u + 1]]
        train = split.train.indices[split.train.indptr[u]:split.train.indptr[u + 1]]
        pool = np.setdiff1d(np.arange(n), np.concatenate([held, train]))
        c = np.concatenate([held, rng.choice(pool, NEGATIVES, replace=False)])
        rng.shuffle(c)
        out.append(c)
    return out


def quality(split, snap, data: common.Ratings,
            train_rows: np.ndarray) -> tuple[list[list[str]], dict]:
    from django.test import override_settings

    from shopreco.engine.evaluate import ndcg_at_k
    from shopreco.pipeline import compute
    from shopreco.serving import ranking

    print(f"ranking: fitting the served model (load {common.load_average()})", flush=True)
    with override_settings(SHOPRECO=dict(common.NEW_DEFAULT)):
        params = compute.run_params()
        params["method"] = compute.resolve_method(params, snap)
        model, fit_s = common.timed(lambda: compute.prepared(snap, params))
        parts = model.parts()
        full = compute.fit_model(snap, sp.csr_matrix((snap.n_products, snap.n_products)),
                                 params, ease_parts=parts)
    users = split.eval_users
    cands = candidate_sets(split, np.random.default_rng(0))
    rel = split.test[users]
    pop = np.bincount(split.train.indices, minlength=split.n_items).astype(np.float64)
    dense = full._dense_sum(users)  # the full model's scores, every item

    # Each user's history as the request reads it: their most recent HISTORY_ROWS ratings
    # as rows of (product, rating, kind, n), through the request's history_of.
    histories = []
    for u in users.tolist():
        mine = train_rows[data.u[train_rows] == u]
        mine = mine[np.argsort(-data.timestamp[mine], kind="stable")][:ranking.HISTORY_ROWS]
        rows = [(int(j), float(r), "", 1) for j, r in
                zip(data.i[mine].tolist(), np.floor(data.rating[mine] + 0.5).tolist(),
                    strict=True)]
        histories.append(ranking.history_of(rows))

    def top(order_of) -> float:
        recs = np.full((users.size, K), -1, dtype=np.int64)
        for r, c in enumerate(cands):
            recs[r] = c[order_of(r, c)][:K]
        return ndcg_at_k(recs, rel, K)

    def stable_desc(scores: np.ndarray) -> np.ndarray:
        return np.argsort(-scores, kind="stable")

    results: dict[str, float] = {}
    results["popularity"] = top(lambda r, c: stable_desc(pop[c]))
    results["full"] = top(lambda r, c: stable_desc(dense[r, c]))
    rows_out = [["popularity order (train interactions)", f"{results['popularity']:.4f}", "",
                 ""],
                ["full model: the served EASE's own scores (dense head weights)",
                 f"{results['full']:.4f}", "", f"{parts[1].nbytes / 2**20:.0f} (dense head)"]]
    timings = []
    for k in K_PRUNED:
        W, prune_s = common.timed(lambda k=k: ranking.weights_from_parts(
            snap.n_products, ease_parts=parts, k=k))

        def personal(r, c, W=W, blend=1.0, host=None):
            h = histories[r]
            cols = np.asarray(h.pks, dtype=np.int64)
            c_host = c if host is None else c[host]
            t0 = time.perf_counter()
            scores, _ = ranking.personal_scores(W, cols, h.weights, c_host)
            order = ranking.fuse(scores, blend)
            timings.append(time.perf_counter() - t0)
            return order if host is None else host[order]

        mb = (W.data.nbytes + W.indices.nbytes + W.indptr.nbytes) / 2**20
        score = top(personal)
        results[f"rank k={k}"] = score
        mark = " (shopreco's RANK_NEIGHBOURS)" if k == ranking.RANK_NEIGHBOURS else ""
        rows_out.append([f"rank(), blend 1, k = {k}{mark}", f"{score:.4f}",
                         f"{score / results['full']:.3f}", f"{mb:.1f} (built in {prune_s:.1f} s)"])
        if k == ranking.RANK_NEIGHBOURS:
            blended = top(lambda r, c, W=W: personal(r, c, W, 0.5, stable_desc(pop[c])))
            results["rank blend 0.5 over popularity"] = blended
            rows_out.append([f"rank(), blend 0.5 over a popularity host order, k = {k}",
                             f"{blended:.4f}", f"{blended / results['full']:.3f}", ""])
    info = {"fit_s": fit_s, "users": int(users.size), "head": int(parts[0].size),
            "items": int(snap.n_products), "score_ms": common.median(timings) * 1000}
    return rows_out, {**results, **info}


# =========================================================================== cost


def load_shop(work: Path, data: common.Ratings, train_rows: np.ndarray, db: str) -> dict:
    import io

    from bench_served import write_movielens_dir
    from django.core.management import call_command

    d = write_movielens_dir(work, "ml-ratings", data, train_rows,
                            common.require_data("ml-latest-small"))
    call_command("migrate", verbosity=0, interactive=False)
    _, seed_s = common.timed(lambda: call_command("seed_demo", "--flush", "--movielens", str(d),
                                                  stdout=io.StringIO(), verbosity=0))
    from shopreco import pipeline

    run, run_s = common.timed(pipeline.run_full_recompute)
    return {"seed_s": seed_s, "run_s": run_s, "run": run}


def cost(n_users: int) -> tuple[list[list[str]], dict]:
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection
    from django.db.models import Count
    from django.test import RequestFactory
    from django.test.utils import CaptureQueriesContext

    import shopreco
    from demo_shop.catalog.models import Category, Product
    from shopreco.serving import ranking
    from shopreco.serving.request import Viewer, active_run_id, memo, state

    cat = Category.objects.annotate(n=Count("products")).order_by("-n").first()
    users = list(get_user_model().objects.filter(username__startswith="ext-")
                 .order_by("pk")[:n_users])
    rf = RequestFactory()

    def request_for(user):
        request = rf.get(cat.get_absolute_url())
        request.user, request.session = user, SessionStore()
        memo(request)["middleware"] = True  # the impression is written after the response
        return request

    def listing():
        return cat.products.filter(is_active=True).select_related("category").order_by("name")

    # A process reads and prunes a run's weights once (in a background thread: the first
    # requests get the host's order meanwhile); timed here in the foreground.
    ranking.forget_weights()
    _, first_s = common.timed(lambda: ranking.weights_for(active_run_id(), wait=True))
    plain_t, ranked_t, plain_q, ranked_q, personal = [], [], [], [], 0
    for user in users:
        request = request_for(user)
        with CaptureQueriesContext(connection) as q:
            t0 = time.perf_counter()
            window = list(listing()[:CANDIDATES])
            plain_t.append(time.perf_counter() - t0)
        plain_q.append(len(q))
        # The host's products as its view holds them; rank() adds everything beyond.
        with CaptureQueriesContext(connection) as q:
            t0 = time.perf_counter()
            ranked = shopreco.rank(window, request, limit=CANDIDATES)
            ranked_t.append(time.perf_counter() - t0)
        ranked_q.append(len(q))
        personal += ranked.personal
        assert len(ranked.window) == len(window) == CANDIDATES
    # Where the added time goes: each step alone, for the same shoppers.
    steps: dict[str, list[float]] = {"state": [], "history": [], "scores": []}
    weights = ranking.weights_for(active_run_id())
    window = list(listing()[:CANDIDATES])
    for user in users:
        request = request_for(user)
        steps["state"].append(common.timed(lambda r=request, u=user: state(u, r))[1])
        viewer = Viewer(user)
        rows, t = common.timed(lambda v=viewer: ranking.history_rows(v))
        steps["history"].append(t)
        t0 = time.perf_counter()
        h = ranking.history_of(rows)
        scores, _ = ranking.personal_scores(weights.weights, weights.columns(h.pks), h.weights,
                                            weights.columns(p.pk for p in window))
        ranking.fuse(scores, 0.5)
        steps["scores"].append(time.perf_counter() - t0)
    p, r = common.median(plain_t) * 1000, common.median(ranked_t) * 1000
    beyond = int(np.median(ranked_q))
    total = [a + b for a, b in zip(plain_t, ranked_t, strict=True)]
    t = common.median(total) * 1000
    rows = [["the host's listing, unranked (its query: first 200 by name)", f"{p:.2f}", "1.00",
             str(int(np.median(plain_q)))],
            ["`shopreco.rank(products, request)` on those 200: what ranking adds",
             f"{r:.2f}", "", f"{beyond} (+1 INSERT after the response)"],
            ["the ranked listing (both, per request)", f"{t:.2f}", f"{t / p:.2f}",
             str(int(np.median(plain_q)) + beyond)],
            ["of which: the request state (alone)", f"{common.median(steps['state']) * 1000:.2f}",
             "", "1"],
            ["of which: the history query (alone)",
             f"{common.median(steps['history']) * 1000:.2f}", "", "1"],
            ["of which: weights, scores and fusion (alone)",
             f"{common.median(steps['scores']) * 1000:.2f}", "", "0"]]
    w = ranking.weights_for(active_run_id())
    mb = (w.weights.data.nbytes + w.weights.indices.nbytes + w.weights.indptr.nbytes) / 2**20
    return rows, {"plain_ms": p, "ranked_ms": t, "added_ms": r, "beyond": beyond,
                  "first_s": first_s, "personal": personal, "n": len(users),
                  "category": f"{cat.name} ({cat.n} products)", "weights_mb": mb,
                  "products": Product.objects.count()}


# =========================================================================== main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200, help="shoppers timed (default 200)")
    parser.add_argument("--database-url", default=DEFAULT_DB,
                        help="PostgreSQL database the shop is loaded into (flushed!)")
    parser.add_argument("--skip-cost", action="store_true", help="quality only (no database)")
    args = parser.parse_args(argv)

    common.require_data("ml-latest-small")
    if not args.skip_cost:
        common.ensure_database(args.database_url)
    started = time.perf_counter()
    load_start = common.load_average()
    work = Path(tempfile.mkdtemp(prefix="ranking-bench-"))
    media = work / "media"
    media.mkdir()
    try:
        common.setup_demo_django(args.database_url, str(media), dict(common.NEW_DEFAULT))
        from bench_served import movielens_split

        data = common.load_movielens("ml-latest-small")
        split, train_rows = movielens_split(data)
        snap = ratings_shop(data, train_rows, split.train.shape)
        q_rows, q = quality(split, snap, data, train_rows)
        c_rows, c, shop = None, None, None
        if not args.skip_cost:
            print(f"ranking: loading the shop (load {common.load_average()})", flush=True)
            shop = load_shop(work, data, train_rows, args.database_url)
            # A web process holds none of the data above: drop it, and keep what stays out
            # of the collector's way as bench/gunicorn_conf.py does (gc.freeze()), so the
            # timings do not include collections of the bench's own heap.
            del split, snap
            gc.collect()
            gc.freeze()
            print(f"ranking: timing {args.users} requests (load {common.load_average()})",
                  flush=True)
            c_rows, c = cost(args.users)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    from shopreco.serving import ranking

    wall = time.perf_counter() - started
    pruned = q[f"rank k={ranking.RANK_NEIGHBOURS}"]
    lines = [
        "## Ordering a listing for a shopper (`shopreco.rank`)",
        "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {wall:.0f} s; load average "
        f"(1, 5, 15 min) at start / end {load_start} / {common.load_average()} (2 shared "
        "cores). Reproduce: `.venv/bin/python bench/bench_ranking.py` (or "
        "`.venv/bin/python bench/run.py --only ranking`); the cost part needs PostgreSQL at "
        "127.0.0.1:5432 (database ranking_bench, created if absent).",
        "",
        "### Quality: a shopper's held-out items among 100 random ones",
        "",
        f"MovieLens latest-small, bench_served's split (implicit `train_test_split(R, 0.8, "
        f"random_state=0)`), ratings rounded half up to whole stars; {q['users']} test users, "
        "each ranking their held-out items mixed with 100 random items in neither their train "
        "nor their held-out part, in a shuffled \"host's order\". The model: shopreco's default "
        f"(EASE, lambda auto, popularity penalty 0.15), {q['head']} of {q['items']} items in "
        f"the dense head, fitted in {q['fit_s']:.0f} s. `rank()` rows run `ranking.history_of` "
        f"(on each user's {ranking.HISTORY_ROWS} most recent train ratings, as the request "
        "reads them), "
        "`weights_from_parts`, `personal_scores` and `fuse` on arrays (the functions a request "
        "runs after its history query); k = weights kept per product row. NDCG@10, binary. "
        f"Scoring and fusing one user's ~100 candidates: {q['score_ms']:.2f} ms (median).",
        "",
        common.md_table(["order", "NDCG@10", "/ full model", "weights in a process, MiB"],
                        q_rows),
        "",
        "Pruning a product's row below a few hundred weights costs NDCG; at the kept "
        f"{ranking.RANK_NEIGHBOURS} the listing orders as well as the dense weights for a "
        "fraction of their memory (the dense head is items^2 floats in every web process). "
        "Negative weights are dropped with the pruning: a listing is ranked by what lifts a "
        "product.",
    ]
    if c is not None:
        lines += [
            "",
            "### Cost: one request ranks 200 candidates",
            "",
            f"PostgreSQL, the same ratings shop ({c['products']} products; `seed_demo` "
            f"{shop['seed_s']:.0f} s, full recompute {shop['run_s']:.0f} s); the category "
            f"{c['category']}, first 200 by name; {c['n']} shoppers (ext-*, {c['personal']} "
            "ranked personally), each request fresh (the request state is read on each): the "
            "host's query, then `rank()` on the products it returned (so the second row is "
            "the ranking's own cost, apart from the noise of the listing's query), the "
            "impression deferred as under ShopRecoMiddleware. Medians; the steps' rows time "
            "each step alone for the same shoppers. A process reads a run's files and prunes "
            f"the weights once, in a background thread ({c['first_s']:.1f} s; listings keep "
            f"the host's order meanwhile); they then take {c['weights_mb']:.0f} MiB.",
            "",
            common.md_table(["request", "ms (median)", "ratio", "queries"], c_rows),
        ]
    lines += ["", "### Targets", ""]
    lines.append(f"- NDCG@10 of rank() {pruned:.4f} >= popularity {q['popularity']:.4f} + 0.10"
                 f": {common.verdict(pruned >= q['popularity'] + 0.10)}")
    lines.append(f"- NDCG@10 of rank() {pruned:.4f} >= 0.95 x the full model's "
                 f"{q['full']:.4f}: {common.verdict(pruned >= 0.95 * q['full'])}")
    if c is not None:
        lines.append(f"- ranking 200 candidates adds {c['added_ms']:.2f} ms <= 5 ms: "
                     f"{common.verdict(c['added_ms'] <= 5)} (the whole ranked listing "
                     f"{c['ranked_ms']:.2f} ms)")
        lines.append(f"- queries beyond the host's own {c['beyond']} <= 2: "
                     f"{common.verdict(c['beyond'] <= 2)}")
    else:
        lines.append("- cost: not measured (--skip-cost)")
    path = common.write_section("ranking", "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
