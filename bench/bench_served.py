"""Served lists: what a page shows, read through shopreco.services, scored on held-out data.

For-you lists ("recommended for you", ``services.recommended_for(user, limit=10)``) of shops
built, as a new user would build them (``seed_demo``, ``shopreco_import``), from the 80% train
part of implicit's ``train_test_split(R, 0.8, random_state=0)`` of each data set (ids indexed
in sorted order, every rating/purchase set to 1):

- MovieLens latest-small "ratings shop": the train pairs with their rating values
  (``seed_demo --movielens`` on a directory with the train rows' ratings.csv and movies.csv);
- MovieLens "purchases-only shop": the same pairs imported as ``purchase`` events
  (``seed_demo`` for the catalogue, then ``shopreco_import --format csv``);
- Online retail purchases-only shop: customers with a CustomerID, Quantity > 0, invoices not
  starting with "C", distinct (customer, StockCode) pairs; the train pairs' rows loaded with
  ``seed_demo --online-retail``.

Each shop configuration (SHOPRECO settings) runs a full recompute in a child process of its
own, then every held-out user's list is read the way a page reads it (no request, so no page
de-dup) and mapped back to the protocol's item indices: P@10 and NDCG@10
(``shopreco.engine.evaluate``, checked against implicit's ``ranking_metrics_at_k``), catalogue
coverage and Gini of exposure. References on the same split, computed here: implicit
Cosine/TFIDF/BM25 (K=20) and dense EASE over a lambda grid.

"You may also like": each MovieLens user's last rating in time is hidden (ties: the larger
movieId is last), a ratings shop is built from all other ratings, and
``services.similar_products(previous product, limit=10)`` is asked for the product the user
rated just before it; hit if the hidden product is in the list.

    .venv/bin/python bench/bench_served.py [--only ml-ratings,ml-purchases,retail,similar]
                                           [--configs ease,previous,...] [--quick]

Database: postgres://postgres@127.0.0.1:5432/served_bench (created if absent; ``--database-url``
to change it). Its shop data is replaced (``seed_demo --flush``) for each shop, so
$DATABASE_URL is deliberately not used. The cache is the demo's per-process memory cache and
run files go to a temporary MEDIA_ROOT. Writes bench/out/served.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_DIR)]

import common  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/served_bench"
K = 10  # list length: what a page shows, and the metrics' cut-off
IMPLICIT_K = 20  # neighbours of the implicit item-item references
LAMBDAS = (50.0, 100.0, 200.0, 500.0, 1000.0)  # dense EASE reference grid
RETAIL_FILE = ("online-retail", "online_retail_20k_customers_only_underscored.csv")
USER_PREFIX = "ext-"  # importing.DEFAULT_USER_PREFIX: users are ext-<id>

NEW_DEFAULT = common.NEW_DEFAULT
PREVIOUS_DEFAULT = common.PREVIOUS_DEFAULT
# key -> (label, SHOPRECO overrides); the penalty only acts on "ease".
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "ease": ("new default: ease, penalty 0.15", NEW_DEFAULT),
    "ease-p0": ("ease, penalty 0", {**NEW_DEFAULT, "POPULARITY_PENALTY": 0.0}),
    "ease-p0.1": ("ease, penalty 0.1", {**NEW_DEFAULT, "POPULARITY_PENALTY": 0.1}),
    "ease-p0.25": ("ease, penalty 0.25", {**NEW_DEFAULT, "POPULARITY_PENALTY": 0.25}),
    "previous": ("previous default: item, adjusted_cosine, shrinkage 10", PREVIOUS_DEFAULT),
    "item": ("item, new defaults (SIMILARITY auto)", {**NEW_DEFAULT, "ALGORITHM": "item"}),
    "user": ("user, new defaults", {**NEW_DEFAULT, "ALGORITHM": "user"}),
}
QUICK_CONFIGS = ("ease", "previous")
SIMILAR_CONFIGS = ("ease", "previous")
SECTIONS = ("ml-ratings", "ml-purchases", "retail", "similar")
SHOP_TITLES = {
    "ml-ratings": "MovieLens latest-small, ratings shop",
    "ml-purchases": "MovieLens latest-small, purchases-only shop",
    "retail": "Online retail (20k rows), purchases-only shop",
}


# =========================================================================== protocol


@dataclass
class Split:
    """One data set under the protocol: sorted raw ids, binary train/test."""

    name: str
    users: np.ndarray  # raw user id (str) per user index
    items: np.ndarray  # raw item id (str) per item index
    train: sp.csr_matrix
    test: sp.csr_matrix
    notes: list[str] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])

    @property
    def eval_users(self) -> np.ndarray:
        """Users with held-out items: the only ones scored."""
        return np.flatnonzero(np.diff(self.test.indptr) > 0)

    def item_index(self) -> dict[str, int]:
        return {raw: j for j, raw in enumerate(self.items.tolist())}


def _split(R: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    from implicit.evaluation import train_test_split

    train, test = train_test_split(R, train_percentage=0.8, random_state=0)
    train, test = sp.csr_matrix(train), sp.csr_matrix(test)
    train.sort_indices()
    test.sort_indices()
    return train, test


def _pair_keys(u: np.ndarray, i: np.ndarray, n_items: int) -> np.ndarray:
    return u.astype(np.int64) * np.int64(n_items) + i.astype(np.int64)


def _rows_of(M: sp.csr_matrix, data_u: np.ndarray, data_i: np.ndarray) -> np.ndarray:
    """Positions in the data (file order) of the stored cells of M (one per cell)."""
    keys = _pair_keys(data_u, data_i, M.shape[1])
    order = np.argsort(keys, kind="stable")
    coo = M.tocoo()
    q = _pair_keys(coo.row, coo.col, M.shape[1])
    pos = np.searchsorted(keys[order], q)
    if not np.array_equal(keys[order][np.minimum(pos, keys.size - 1)], q):
        raise RuntimeError("a matrix cell has no row in the data")
    return np.sort(order[pos])


def movielens_split(data: common.Ratings) -> tuple[Split, np.ndarray]:
    """The protocol on MovieLens; also the file-order rows of the train part."""
    R = data.matrix(binary=True)
    R.sum_duplicates()
    train, test = _split(R)
    split = Split("movielens", data.users.astype(str), data.items.astype(str), train, test)
    return split, _rows_of(train, data.u, data.i)


def _clean_customer(value: str) -> str:
    value = value.strip()
    return value[:-2] if value.endswith(".0") else value  # spreadsheet ids as 17850.0


def _id_sort_key(value: str) -> tuple:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def retail_split() -> tuple[Split, list[str], list[dict[str, str]]]:
    """The protocol on the retail file; also its header and the kept rows of train pairs."""
    path = common.require_data(*RETAIL_FILE)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = []
        for row in reader:
            customer = _clean_customer(row.get("CustomerID") or "")
            try:
                quantity = float(row["Quantity"])
            except (TypeError, ValueError):
                continue
            if not customer or quantity <= 0 or row["InvoiceNo"].strip().upper().startswith("C"):
                continue
            row["CustomerID"] = customer
            rows.append(row)
    users = np.array(sorted({r["CustomerID"] for r in rows}, key=_id_sort_key))
    items = np.array(sorted({r["StockCode"] for r in rows}))
    u_of = {u: k for k, u in enumerate(users.tolist())}
    i_of = {i: k for k, i in enumerate(items.tolist())}
    ru = np.array([u_of[r["CustomerID"]] for r in rows], dtype=np.int64)
    ri = np.array([i_of[r["StockCode"]] for r in rows], dtype=np.int64)
    R = sp.csr_matrix((np.ones(ru.size, dtype=np.float32), (ru, ri)),
                      shape=(users.size, items.size))
    R.sum_duplicates()
    R.data[:] = 1.0  # distinct (customer, StockCode) pairs
    train, test = _split(R)
    in_train = set(_pair_keys(*train.nonzero(), train.shape[1]).tolist())
    keep = np.isin(_pair_keys(ru, ri, train.shape[1]), list(in_train))
    split = Split("retail", users, items, train, test)
    return split, header, [r for r, k in zip(rows, keep, strict=True) if k]


@dataclass
class NextItem:
    """Leave-last-out on MovieLens: per user the hidden (last) and the query (previous) item."""

    split_users: np.ndarray  # raw user ids
    items: np.ndarray  # raw item ids
    train: sp.csr_matrix  # binary, all ratings but the hidden ones
    train_rows: np.ndarray  # file-order rows of the train part
    users: np.ndarray  # user index per query
    query: np.ndarray  # item index the user rated just before the hidden one
    hidden: np.ndarray  # item index hidden


def next_item_protocol(data: common.Ratings) -> NextItem:
    order = np.lexsort((data.item_raw, data.timestamp, data.u))  # ties: larger movieId last
    us = data.u[order]
    last = np.flatnonzero(np.r_[us[1:] != us[:-1], True])
    ok = (last > 0) & (us[np.maximum(last - 1, 0)] == us[last])  # users with >= 2 ratings
    last = last[ok]
    hidden_rows, query_rows = order[last], order[last - 1]
    keep = np.ones(len(data), dtype=bool)
    keep[hidden_rows] = False
    train_rows = np.flatnonzero(keep)
    train = data.matrix(rows=train_rows, binary=True)
    train.sum_duplicates()
    train.sort_indices()
    return NextItem(data.users.astype(str), data.items.astype(str), train, train_rows,
                    data.u[hidden_rows].astype(np.int64), data.i[query_rows].astype(np.int64),
                    data.i[hidden_rows].astype(np.int64))


# =========================================================================== scoring


@dataclass
class Scored:
    """One row of a for-you table."""

    label: str
    method: str = ""
    p: float = float("nan")
    ndcg: float = float("nan")
    coverage: float = float("nan")
    gini: float = float("nan")
    recompute_s: float | None = None
    rss: int | None = None
    short: int | None = None
    ms_list: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _exposure(recs: np.ndarray, n_items: int) -> tuple[float, float]:
    from shopreco.engine.evaluate import catalogue_coverage, gini

    filled = recs[recs >= 0]
    return (catalogue_coverage(recs, n_items),
            gini(np.bincount(filled, minlength=n_items)))


def score_lists(recs: np.ndarray, split: Split) -> dict[str, float]:
    from shopreco.engine.evaluate import ndcg_at_k, ranking_precision_at_k

    rel = split.test[split.eval_users]
    cov, g = _exposure(recs, split.n_items)
    return {"p": ranking_precision_at_k(recs, rel, K), "ndcg": ndcg_at_k(recs, rel, K),
            "coverage": cov, "gini": g}


def to_indices(lists: list[list[str]], index: dict[str, int]) -> tuple[np.ndarray, int]:
    """Served lists of raw ids -> users x K item indices (-1 empty); products outside the
    protocol's catalogue become -1 too (and are counted)."""
    recs = np.full((len(lists), K), -1, dtype=np.int64)
    outside = 0
    for r, ids in enumerate(lists):
        for c, raw in enumerate(ids[:K]):
            j = index.get(raw, -1)
            outside += j < 0
            recs[r, c] = j
    return recs, outside


def _top_k(scores: np.ndarray, k: int = K) -> np.ndarray:
    """Top-k columns per row, best first (ties: smaller index)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)


# =========================================================================== references


def implicit_references(split: Split) -> tuple[list[Scored], str]:
    """implicit Cosine/TFIDF/BM25 (K=20): P/NDCG by ranking_metrics_at_k, coverage and
    Gini from the lists recommend() returns; the shared evaluator is checked on them."""
    from implicit.evaluation import ranking_metrics_at_k
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender

    users = split.eval_users
    rows, diffs = [], []
    for cls in (CosineRecommender, TFIDFRecommender, BM25Recommender):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls(K=IMPLICIT_K)
            _, fit_s = common.timed(lambda m=model: m.fit(split.train, show_progress=False))
            m = ranking_metrics_at_k(model, split.train, split.test, K=K, show_progress=False)
            ids, _ = model.recommend(users, split.train[users], N=K,
                                     filter_already_liked_items=True)
        recs = np.asarray(ids, dtype=np.int64)
        ours = score_lists(recs, split)
        diffs.append(max(abs(ours["p"] - m["precision"]), abs(ours["ndcg"] - m["ndcg"])))
        rows.append(Scored(f"implicit {cls.__name__}(K={IMPLICIT_K})", "reference",
                           float(m["precision"]), float(m["ndcg"]), ours["coverage"],
                           ours["gini"], recompute_s=fit_s,
                           short=int(((recs >= 0).sum(axis=1) < K).sum())))
    check = (f"`shopreco.engine.evaluate.ranking_precision_at_k`/`ndcg_at_k` on the lists "
             f"implicit's `recommend` returns vs implicit's `ranking_metrics_at_k`: largest "
             f"difference {max(diffs):.1e} over the three implicit models"
             + (" (agree)." if max(diffs) < 1e-9 else " (**DISAGREE**)."))
    return rows, check


def ease_references(split: Split, lambdas: tuple[float, ...]) -> list[Scored]:
    """Dense EASE: scores = train @ B, seen items excluded."""
    from shopreco.engine.ease import ease_weights

    users = split.eval_users
    X = split.train[users].astype(np.float32)
    seen = X.nonzero()
    rows = []
    for lam in lambdas:
        B, fit_s = common.timed(lambda lam=lam: ease_weights(split.train, lam))
        scores = np.asarray(X @ B)
        del B
        scores[seen] = -np.inf
        recs = _top_k(scores)
        del scores
        s = score_lists(recs, split)
        rows.append(Scored(f"EASE dense, lambda {lam:g}", "reference", s["p"], s["ndcg"],
                           s["coverage"], s["gini"], recompute_s=fit_s, short=0,
                           extra={"lambda": lam}))
    return rows


def similar_references(ni: NextItem, lambdas: tuple[float, ...]) -> list[dict[str, Any]]:
    """Hit rate of implicit's similar_items(N=11, item dropped) and of EASE rows B[item]."""
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender

    from shopreco.engine.ease import ease_weights

    out = []
    for cls in (CosineRecommender, TFIDFRecommender, BM25Recommender):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls(K=IMPLICIT_K)
            _, fit_s = common.timed(lambda m=model: m.fit(ni.train, show_progress=False))
            lists = []
            for q in ni.query.tolist():
                ids, _ = model.similar_items(int(q), N=K + 1)
                ids = [int(j) for j in np.asarray(ids).tolist() if int(j) != q and j >= 0][:K]
                lists.append(ids + [-1] * (K - len(ids)))
        out.append(_hit_row(f"implicit {cls.__name__}(K={IMPLICIT_K})", np.array(lists), ni,
                            fit_s))
    for lam in lambdas:
        B, fit_s = common.timed(lambda lam=lam: ease_weights(ni.train, lam))
        rows = np.asarray(B[ni.query], dtype=np.float64)
        del B
        rows[np.arange(ni.query.size), ni.query] = -np.inf
        out.append(_hit_row(f"EASE dense, lambda {lam:g}: row B[item]", _top_k(rows), ni,
                            fit_s))
    return out


def _hit_row(label: str, recs: np.ndarray, ni: NextItem, fit_s: float | None,
             **extra: Any) -> dict[str, Any]:
    hits = (recs == ni.hidden[:, None]).any(axis=1)
    n_items = ni.train.shape[1]
    cov, g = _exposure(recs, n_items)
    return {"label": label, "hit": float(hits.mean()), "coverage": cov, "gini": g,
            "short": int(((recs >= 0).sum(axis=1) < K).sum()), "fit_s": fit_s, **extra}


# =========================================================================== shop files


def write_movielens_dir(work: Path, name: str, data: common.Ratings, rows: np.ndarray | None,
                        ml_dir: Path) -> Path:
    """A MovieLens directory for seed_demo: movies.csv and ratings.csv of ``rows`` only
    (None: the header alone, an empty shop with the full catalogue)."""
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(ml_dir / "movies.csv", out / "movies.csv")
    with open(out / "ratings.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        if rows is not None:
            for r in rows.tolist():
                w.writerow([int(data.user_raw[r]), int(data.item_raw[r]), f"{data.rating[r]:.1f}",
                            int(data.timestamp[r])])
    return out


def write_purchases_csv(work: Path, data: common.Ratings, rows: np.ndarray) -> Path:
    """shopreco's csv format: one purchase event per train pair, at its rating's time."""
    path = work / "ml-purchases.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user", "product", "kind", "timestamp"])
        for r in rows.tolist():
            w.writerow([int(data.user_raw[r]), int(data.item_raw[r]), "purchase",
                        int(data.timestamp[r])])
    return path


def write_retail_csv(work: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    path = work / "retail-train.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return path


# =========================================================================== children


def _setup_django(spec: dict[str, Any]) -> None:
    media = Path(spec["work"]) / "media"
    media.mkdir(parents=True, exist_ok=True)
    common.setup_demo_django(spec["db"], str(media), spec.get("config"))


def _child_load(spec: dict[str, Any]) -> int:
    """Load one shop into the bench database: seed_demo --flush, then optional imports."""
    import io

    _setup_django(spec)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from demo_shop.catalog.models import Product
    from shopreco.conf import DEFAULTS
    from shopreco.models import Interaction, Rating

    call_command("migrate", verbosity=0, interactive=False)
    out: dict[str, Any] = {"steps": []}
    for argv in spec["commands"]:
        buf = io.StringIO()
        _, seconds = common.timed(lambda a=argv, b=buf: call_command(*a, stdout=b))
        out["steps"].append({"argv": argv, "seconds": round(seconds, 1),
                             "output": buf.getvalue().strip()[-1500:]})
    out["counts"] = {"products": Product.objects.count(),
                     "users": get_user_model().objects.filter(
                         username__startswith=USER_PREFIX).count(),
                     "ratings": Rating.objects.count(), "events": Interaction.objects.count()}
    out["defaults"] = {k: DEFAULTS.get(k) for k in NEW_DEFAULT}
    common.emit_result(out)
    return 0


def _child_serve(spec: dict[str, Any]) -> int:
    """One configuration: full recompute, then read every list a page would show."""
    _setup_django(spec)
    from django.contrib.auth import get_user_model

    from demo_shop.catalog.models import Product
    from shopreco import pipeline, services
    from shopreco.models import Impression, RecomputeRun

    for stuck in RecomputeRun.objects.filter(status__in=["pending", "running"]):
        pipeline.runs.fail_run(stuck.pk, "abandoned by an earlier bench run")
    run, wall = common.timed(pipeline.run_full_recompute)
    params = run.params
    common.check_run_config(params, spec["config"])
    # The lambda "auto" chose: recorded in the run's metrics (since 2ef7428); else read off
    # the fitted model the in-process run keeps in this process.
    lam = None
    if params["method"] == "ease":
        lam = (run.metrics or {}).get("ease_lambda")
        if lam is None:
            fitted = [m for m in getattr(pipeline, "_prep_cache", {}).values()
                      if hasattr(m, "lambda_used_")]
            lam = fitted[0].lambda_used_ if fitted else None
        lam = None if lam is None else float(lam)
    impressions_before = Impression.objects.count()
    lists: list[list[str]] = []
    times: list[float] = []
    kinds: Counter = Counter()
    sources: Counter = Counter()
    errors: Counter = Counter()
    first_error = ""
    absent = 0

    def read(fn, *args) -> None:
        nonlocal first_error
        t0 = time.perf_counter()
        try:
            reco = fn(*args, limit=K)
        except Exception as exc:  # noqa: BLE001 - report, keep reading the other lists
            errors[type(exc).__name__] += 1
            first_error = first_error or traceback.format_exc()[-1500:]
            lists.append([])
            return
        times.append(time.perf_counter() - t0)
        sources[reco.source] += 1
        kinds.update(item.reason_kind for item in reco.items)
        lists.append([str(p.external_id) for p in reco.products])

    if spec["mode"] == "for-you":
        users = get_user_model().objects.in_bulk(
            [USER_PREFIX + u for u in spec["users"]], field_name="username")
        for raw in spec["users"]:
            user = users.get(USER_PREFIX + raw)
            absent += user is None  # no train data: the list a new visitor gets
            read(services.recommended_for, user)
    else:
        wanted = set(spec["queries"])
        products = {p.external_id: p for p in Product.objects.filter(external_id__in=wanted)}
        for raw in spec["queries"]:
            product = products.get(raw)
            if product is None:
                errors["query product missing"] += 1
                lists.append([])
                continue
            read(services.similar_products, product)
    Path(spec["out"]).write_text(json.dumps(lists))
    ms = np.asarray(times) * 1000
    common.emit_result({
        "timings": run.timings, "recompute_wall_s": round(wall, 2), "params": params,
        "counts": run.counts, "metrics": run.metrics, "lambda": lam,
        "serve": {"lists": len(lists), "absent_users": absent,
                  "median_ms": float(np.median(ms)) if ms.size else None,
                  "p95_ms": float(np.percentile(ms, 95)) if ms.size else None,
                  "total_s": round(float(ms.sum()) / 1000, 2),
                  "sources": dict(sources), "reason_kinds": dict(kinds),
                  "errors": dict(errors), "first_error": first_error,
                  "impressions_logged": Impression.objects.count() - impressions_before},
    })
    return 0


# =========================================================================== parent side


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.db = args.database_url
        self.log: list[str] = []
        self.defaults_seen: dict[str, Any] | None = None

    def _child(self, flag: str, spec: dict[str, Any]) -> common.ChildResult:
        path = self.work / f"spec-{time.monotonic_ns()}.json"
        path.write_text(json.dumps({"db": self.db, "work": str(self.work), **spec}))
        # A fixed hash seed: the importer creates users in set order, so without it every
        # load numbers the same shoppers differently, and EASE's "auto" lambda (a seeded
        # holdout over the matrix's rows) moves with that order.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        return common.run_child(common.python_cmd(Path(__file__), flag, str(path)),
                                timeout=self.args.timeout, rss_limit_bytes=12 * 2**30, env=env)

    def load_shop(self, name: str, commands: list[list[str]]) -> dict[str, Any]:
        print(f"served: loading shop {name} (load {common.load_average()})", flush=True)
        res = self._child("--child-load", {"commands": commands})
        if not res.ok:
            raise RuntimeError(f"loading {name} failed ({res.killed_reason or res.returncode})"
                               f":\n{res.stderr_tail}")
        self.defaults_seen = res.payload["defaults"]
        print(f"  {res.payload['counts']} in {res.wall_s:.0f} s", flush=True)
        return {**res.payload, "wall_s": res.wall_s}

    def serve(self, shop: str, key: str, mode: str, ids: list[str]) -> tuple[dict | None,
                                                                           list | None, str]:
        label, cfg = CONFIGS[key]
        out = self.work / f"lists-{shop}-{key}.json"
        spec = {"config": cfg, "mode": mode, "out": str(out),
                "users" if mode == "for-you" else "queries": ids}
        print(f"served: {shop} / {key} (load {common.load_average()})", flush=True)
        res = self._child("--child-serve", spec)
        if not res.ok:
            tail = res.killed_reason or (res.stderr_tail.splitlines() or ["?"])[-1]
            print(f"  FAILED: {tail}\n{res.stderr_tail}", flush=True)
            return None, None, f"failed: {tail}"
        payload = {**res.payload, "peak_rss": res.peak_rss_bytes, "wall_s": res.wall_s}
        s = payload["serve"]
        print(f"  recompute {payload['timings'].get('total')} s, serve {s['total_s']} s "
              f"(median {s['median_ms']:.1f} ms), errors {s['errors']}, "
              f"RSS {common.mib(res.peak_rss_bytes)}", flush=True)
        return payload, json.loads(out.read_text()), ""


def _shop_row(key: str, payload: dict | None, lists: list | None, err: str, split: Split,
              index: dict[str, int]) -> Scored:
    label = CONFIGS[key][0]
    if payload is None:
        return Scored(label, error=err)
    recs, outside = to_indices(lists, index)
    s = score_lists(recs, split)
    n_served = np.array([len(x) for x in lists])
    users = split.eval_users
    seen = int(sum(np.isin(recs[r][recs[r] >= 0],
                           split.train.indices[split.train.indptr[u]:split.train.indptr[u + 1]])
                   .sum() for r, u in enumerate(users.tolist())))
    method = payload["params"]["method"]
    if method == "ease":
        lam = payload.get("lambda")
        method += f", lambda {lam:.4g}" if lam is not None else ", lambda not exposed"
    return Scored(label, method, s["p"], s["ndcg"], s["coverage"], s["gini"],
                  recompute_s=payload["timings"].get("total"), rss=payload["peak_rss"],
                  short=int((n_served < K).sum()), ms_list=payload["serve"]["median_ms"],
                  extra={"outside": outside, "seen": seen, "payload": payload})


def _f(x: float | None, d: int = 4) -> str:
    return "-" if x is None or x != x else f"{x:.{d}f}"


def _table(rows: list[Scored]) -> str:
    out = []
    for r in rows:
        if r.error:
            out.append([r.label, "-", r.error, "", "", "", "", "", "", ""])
            continue
        out.append([r.label, r.method, _f(r.p), _f(r.ndcg), _f(r.coverage, 3), _f(r.gini, 3),
                    _f(r.recompute_s, 1), common.mib(r.rss) if r.rss else "-",
                    "-" if r.short is None else r.short, _f(r.ms_list, 1)])
    return common.md_table(["list", "method (run)", "P@10", "NDCG@10", "coverage", "Gini",
                            "recompute s (refs: fit s)", "peak RSS", "lists < 10",
                            "ms/list (median)"], out)


def _diagnostics(rows: list[Scored]) -> list[str]:
    """One line per configuration with what looked off: errors, short lists, fill, leaks."""
    lines = []
    for r in rows:
        if r.error or "payload" not in r.extra:
            continue
        s = r.extra["payload"]["serve"]
        bits = []
        if s["errors"]:
            bits.append(f"errors {s['errors']}")
        if r.short:
            bits.append(f"{r.short} lists shorter than {K}")
        bits.append(f"{r.extra['seen']} training items served"
                    + (" (should be 0)" if r.extra["seen"] else ""))
        if r.extra["outside"]:
            bits.append(f"{r.extra['outside']} served products outside the protocol catalogue")
        if s["absent_users"]:
            bits.append(f"{s['absent_users']} users absent from the shop (no train data)")
        fill = {k: v for k, v in s["reason_kinds"].items()}
        bits.append(f"slots by reason kind {fill}; list sources {s['sources']}; "
                    f"p95 {_f(s['p95_ms'], 1)} ms")
        lines.append(f"- {r.label}: " + "; ".join(bits) + ".")
    return lines


def run_shop(bench: Bench, shop: str, split: Split, refs: list[Scored], commands: list,
             configs: list[str]) -> tuple[str, dict[str, Scored]]:
    loaded = bench.load_shop(shop, commands)
    index = split.item_index()
    raw_users = split.users[split.eval_users].tolist()
    rows: dict[str, Scored] = {}
    for key in configs:
        payload, lists, err = bench.serve(shop, key, "for-you", raw_users)
        rows[key] = _shop_row(key, payload, lists, err, split, index)
    order = [k for k in CONFIGS if k in rows]
    table_rows = [rows[k] for k in order] + refs
    c = loaded["counts"]
    load_s = sum(step["seconds"] for step in loaded["steps"])
    cmds = "; ".join("`" + " ".join(["manage.py", *[Path(a).name if "/" in a else a
                                                     for a in s["argv"]]]) + "`"
                     + f" ({s['seconds']:.0f} s)" for s in loaded["steps"])
    any_payload = next((r.extra["payload"] for r in rows.values() if "payload" in r.extra), None)
    run_counts = (f" Runs saw {any_payload['counts'].get('users')} users, "
                  f"{any_payload['counts'].get('products')} products with history."
                  if any_payload else "")
    lines = [
        f"### {SHOP_TITLES[shop]}",
        "",
        f"Protocol: {split.train.shape[0]} users x {split.n_items} items, {split.train.nnz} "
        f"train / {split.test.nnz} held-out pairs, {split.eval_users.size} users scored. "
        f"Shop: {c['products']} products, {c['users']} customers, {c['ratings']} ratings, "
        f"{c['events']} events, loaded in {load_s:.0f} s by {cmds}; `--flush` deletes the "
        f"previous shop first.{run_counts}",
        *split.notes,
        "",
        _table(table_rows),
        "",
        *_diagnostics([rows[k] for k in order]),
    ]
    return "\n".join(lines), rows


def run_similar(bench: Bench, data: common.Ratings, ni: NextItem, refs: list[dict],
                commands: list, configs: list[str]) -> tuple[str, dict[str, dict]]:
    loaded = bench.load_shop("ml-next-item", commands)
    index = {raw: j for j, raw in enumerate(ni.items.tolist())}
    queries = ni.items[ni.query].tolist()
    rows: dict[str, dict] = {}
    for key in configs:
        payload, lists, err = bench.serve("ml-next-item", key, "similar", queries)
        if payload is None:
            rows[key] = {"label": CONFIGS[key][0], "error": err}
            continue
        recs, outside = to_indices(lists, index)
        row = _hit_row(CONFIGS[key][0], recs, ni, None)
        row.update(recompute_s=payload["timings"].get("total"), rss=payload["peak_rss"],
                   ms=payload["serve"]["median_ms"], method=payload["params"]["method"],
                   payload=payload, outside=outside,
                   short=int(sum(len(x) < K for x in lists)))
        rows[key] = row
    out = []
    for r in [rows[k] for k in CONFIGS if k in rows] + refs:
        if r.get("error"):
            out.append([r["label"], r["error"], "", "", "", "", "", ""])
            continue
        out.append([r["label"], _f(r["hit"]), _f(r["coverage"], 3), _f(r["gini"], 3),
                    _f(r.get("recompute_s", r.get("fit_s")), 1),
                    common.mib(r["rss"]) if r.get("rss") else "-", r["short"],
                    _f(r.get("ms"), 1)])
    c = loaded["counts"]
    diag = []
    for r in rows.values():
        if "payload" not in r:
            continue
        s = r["payload"]["serve"]
        diag.append(f"- {r['label']} (method {r['method']}): slots by reason kind "
                    f"{s['reason_kinds']}; errors {s['errors'] or 'none'}; {r['short']} lists "
                    f"shorter than {K}; p95 {_f(s['p95_ms'], 1)} ms.")
    lines = [
        "### \"You may also like\": next-item hit rate (MovieLens ratings shop)",
        "",
        f"Each of the {ni.users.size} users' last rating in time is hidden (ties: the larger "
        f"movieId counts as later); the shop holds all other {ni.train.nnz} ratings "
        f"({c['products']} products, {c['ratings']} ratings). The list is "
        "`services.similar_products(product, limit=10)` of the product the user rated just "
        "before the hidden one (no user, no request); implicit: `similar_items(item, N=11)` "
        "minus the item; EASE: the top 10 of row B[item] without the item, fitted on the same "
        f"binary matrix. Coverage and Gini over the {ni.train.shape[1]} items.",
        "",
        common.md_table(["list", "hit rate@10", "coverage", "Gini",
                         "recompute s (refs: fit s)", "peak RSS", "lists < 10",
                         "ms/list (median)"], out),
        "",
        *diag,
    ]
    return "\n".join(lines), rows


def _best(rows: list[Scored], attr: str) -> Scored:
    return max(rows, key=lambda r: getattr(r, attr))


def targets(shops: dict[str, tuple[dict[str, Scored], list[Scored]]],
            similar: tuple[dict[str, dict], list[dict]] | None) -> list[str]:
    out = []
    for shop, (rows, refs) in shops.items():
        new = rows.get("ease")
        ease = [r for r in refs if r.label.startswith("EASE")]
        tfidf = next(r for r in refs if "TFIDF" in r.label)
        name = SHOP_TITLES[shop].split(", ", 1)[-1] if shop != "retail" else "online retail"
        if new is None or new.error:
            out.append(f"- {name}: new default not measured ({new.error if new else 'not run'})")
            continue
        bp, bn = _best(ease, "p"), _best(ease, "ndcg")
        ok = new.p >= bp.p and new.ndcg >= bn.ndcg
        out.append(f"- {SHOP_TITLES[shop]}: for-you P@10 {new.p:.4f} / NDCG@10 {new.ndcg:.4f} "
                   f">= best EASE of the grid {bp.p:.4f} (lambda {bp.extra['lambda']:g}) / "
                   f"{bn.ndcg:.4f} (lambda {bn.extra['lambda']:g}): {common.verdict(ok)}")
        out.append(f"- {SHOP_TITLES[shop]}: coverage {new.coverage:.3f} >= TFIDF's "
                   f"{tfidf.coverage:.3f}: {common.verdict(new.coverage >= tfidf.coverage)}")
    if similar is not None:
        rows, refs = similar
        new = rows.get("ease")
        best = max(refs, key=lambda r: r["hit"])
        if new is None or new.get("error"):
            out.append("- similar hit rate: new default not measured")
        else:
            out.append(f"- \"you may also like\" hit rate@10 {new['hit']:.4f} >= best of "
                       f"implicit K=20 and EASE {best['hit']:.4f} ({best['label']}): "
                       f"{common.verdict(new['hit'] >= best['hit'])}")
    return out


def _git_head() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h"], cwd=REPO_DIR,
                             capture_output=True, text=True, timeout=20).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_DIR, capture_output=True, text=True,
                               timeout=20).stdout.strip()
        return out + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"sections to run (default all): {','.join(SECTIONS)}")
    parser.add_argument("--configs", default="",
                        help=f"for-you configurations (default all): {','.join(CONFIGS)}")
    parser.add_argument("--quick", action="store_true",
                        help=f"only {','.join(QUICK_CONFIGS)} on the for-you shops")
    parser.add_argument("--database-url", default=DEFAULT_DB,
                        help="PostgreSQL database the shops are loaded into (flushed!)")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds allowed per child process (default 1800)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the temporary directory (shop files, served lists)")
    parser.add_argument("--child-load", help=argparse.SUPPRESS)
    parser.add_argument("--child-serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_load:
        return _child_load(json.loads(Path(args.child_load).read_text()))
    if args.child_serve:
        return _child_serve(json.loads(Path(args.child_serve).read_text()))

    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section {unknown[0]} (have {', '.join(SECTIONS)})")
    configs = ([c.strip() for c in args.configs.split(",") if c.strip()] if args.configs
               else list(QUICK_CONFIGS if args.quick else CONFIGS))
    if "ease" not in configs:
        configs.insert(0, "ease")  # the new default: every target is about it
    bad = sorted(set(configs) - set(CONFIGS))
    if bad:
        parser.error(f"--configs: unknown {bad[0]} (have {', '.join(CONFIGS)})")

    ml_dir = common.require_data("ml-latest-small")
    if "retail" in sections:
        common.require_data(*RETAIL_FILE)
    common.ensure_database(args.database_url)
    started = time.perf_counter()
    load_start = common.load_average()
    head_start = _git_head()
    work = Path(tempfile.mkdtemp(prefix="served-bench-"))
    bench = Bench(args, work)
    texts: list[str] = []
    shops: dict[str, tuple[dict[str, Scored], list[Scored]]] = {}
    similar = None
    try:
        data = common.load_movielens("ml-latest-small")
        if {"ml-ratings", "ml-purchases"} & set(sections):
            split, train_rows = movielens_split(data)
            print(f"served: MovieLens references (load {common.load_average()})", flush=True)
            imp_rows, check = implicit_references(split)
            refs = imp_rows + ease_references(split, LAMBDAS)
            split.notes.append(check)
            if "ml-ratings" in sections:
                d = write_movielens_dir(work, "ml-ratings", data, train_rows, ml_dir)
                split.notes.insert(0, "Ratings as in ratings.csv; `seed_demo` rounds half stars "
                                      "half up to the shop's 1-5 whole-star scale (0.5 -> 1).")
                text, rows = run_shop(bench, "ml-ratings", split, refs,
                                      [["seed_demo", "--flush", "--movielens", str(d)]], configs)
                split.notes.pop(0)
                texts.append(text)
                shops["ml-ratings"] = (rows, refs)
            if "ml-purchases" in sections:
                d = write_movielens_dir(work, "ml-catalogue", data, None, ml_dir)
                csv_path = write_purchases_csv(work, data, train_rows)
                text, rows = run_shop(bench, "ml-purchases", split, refs, [
                    ["seed_demo", "--flush", "--movielens", str(d)],
                    ["shopreco_import", str(csv_path), "--format", "csv",
                     "--product-field", "external_id"]], configs)
                texts.append(text)
                shops["ml-purchases"] = (rows, refs)
        if "retail" in sections:
            split, header, train_lines = retail_split()
            from shopreco.importing import NON_PRODUCT_CODES  # charges the importer drops

            charges = np.array([c.upper() in NON_PRODUCT_CODES for c in split.items.tolist()])
            test_coo = split.test.tocoo()
            train_items = np.diff(split.train.tocsc().indptr) > 0
            split.notes.append(
                f"Not servable by the shop: {int(charges[test_coo.col].sum())} held-out pairs "
                f"are charges the importer drops (POST, M, C2...), "
                f"{int((~train_items[test_coo.col]).sum())} are items with no train pair.")
            print(f"served: retail references (load {common.load_average()})", flush=True)
            imp_rows, check = implicit_references(split)
            refs = imp_rows + ease_references(split, LAMBDAS)
            split.notes.append(check)
            path = write_retail_csv(work, header, train_lines)
            text, rows = run_shop(bench, "retail", split, refs,
                                  [["seed_demo", "--flush", "--online-retail", str(path)]],
                                  configs)
            texts.append(text)
            shops["retail"] = (rows, refs)
        if "similar" in sections:
            ni = next_item_protocol(data)
            print(f"served: next-item references (load {common.load_average()})", flush=True)
            refs_sim = similar_references(ni, LAMBDAS)
            d = write_movielens_dir(work, "ml-next-item", data, ni.train_rows, ml_dir)
            text, rows_sim = run_similar(bench, data, ni, refs_sim,
                                         [["seed_demo", "--flush", "--movielens", str(d)]],
                                         [c for c in SIMILAR_CONFIGS])
            texts.append(text)
            similar = (rows_sim, refs_sim)
    finally:
        if args.keep_work:
            print(f"served: work files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    wall = time.perf_counter() - started
    defaults_note = ""
    if bench.defaults_seen is not None:
        differ = {k: (bench.defaults_seen[k], v) for k, v in NEW_DEFAULT.items()
                  if bench.defaults_seen[k] != v}
        defaults_note = (" `shopreco.conf.DEFAULTS` agree with the new default used here."
                         if not differ else
                         f" **`shopreco.conf.DEFAULTS` differ from the new default used here "
                         f"(code, bench): {differ}.**")
    head_end = _git_head()
    code = (f"code at {head_start}" if head_start == head_end else
            f"**the code changed during the run: {head_start} at the start, {head_end} at "
            "the end**")
    repro = ".venv/bin/python bench/bench_served.py" + (" --quick" if args.quick else "")
    if args.only != ",".join(SECTIONS):
        repro += f" --only {args.only}"
    if args.configs:
        repro += f" --configs {args.configs}"
    header = [
        "## Served lists (the lists a page shows, on held-out data)",
        "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {wall:.0f} s, {code}; "
        f"load average (1, 5, 15 min) at start / end {load_start} / {common.load_average()} "
        "(2 shared cores). Split: implicit `train_test_split(R, 0.8, random_state=0)` of the "
        "binary matrix (user and item ids indexed in sorted order). For-you lists: "
        "`services.recommended_for(user, limit=10)` after a full recompute "
        "(`pipeline.run_full_recompute()`), one child process per configuration on PostgreSQL; "
        "no request (no page de-dup). P@10 = hits / sum of min(10, held-out items), NDCG@10 "
        "binary with ideal DCG over min(10, held-out), over users with held-out items; "
        "coverage = distinct items served / catalogue items; Gini of per-item exposure over "
        "all items. Recompute s = the run's `timings[\"total\"]`; peak RSS = the child's VmHWM "
        "(recompute and serving). Configurations: new default = `"
        + json.dumps(NEW_DEFAULT) + "`; previous default = `"
        + json.dumps({k: PREVIOUS_DEFAULT[k] for k in ("ALGORITHM", "SIMILARITY", "SHRINKAGE",
                                                       "POPULARITY_PENALTY")})
        + "`; the penalty acts on EASE only; \"method (run)\" is the run's resolved method "
        "(a centred similarity falls back to cosine on a shop without ratings)."
        + defaults_note,
    ]
    body = header + [""] + "\n\n".join(texts).splitlines()
    body += ["", "### Targets", "", *targets(shops, similar), "",
             f"Reproduce: `{repro}` (or `.venv/bin/python bench/run.py --only served`); needs "
             "PostgreSQL at 127.0.0.1:5432 (database served_bench, created if absent)."]
    path = common.write_section("served", "\n".join(body))
    print("\n".join(body))
    print(f"wrote {path} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
