""""You may also like" on many queries: the next product a shopper rates, from the similar
list of the one they rated just before.

The served-lists bench hides one rating per shopper (610 queries on MovieLens latest-small):
one shopper more or less moves the hit rate by 0.0016, so lists cannot be told apart there.
This bench asks many more questions of the same data: each shopper's ratings in time order,
the first 80% train, and every later rating with a strictly later timestamp than the one
before it is a query (previous product -> this one). The shop's lists are the "similar"
rows a recompute stores, computed by the pipeline's own functions with the shop's defaults
(`shopreco.evaluation.fit` on a snapshot of the train part, ratings as ratings); the
references are fitted on the binary train matrix.

    .venv/bin/python bench/bench_next_item.py

Writes bench/out/next_item.md.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import common  # noqa: E402


def data():
    r = common.load_movielens()
    order = np.lexsort((r.i, r.timestamp, r.u))
    u, i, t, score = r.u[order], r.i[order], r.timestamp[order], r.rating[order]
    starts = np.searchsorted(u, np.arange(u.max() + 1))
    pos = np.arange(u.size) - starts[u]
    n = np.bincount(u)[u]
    train = pos < 0.8 * n
    prev_ok = np.r_[False, (u[1:] == u[:-1]) & (t[1:] > t[:-1])]
    query = ~train & prev_ok
    src = np.r_[-1, i[:-1]][query]
    dst = i[query]
    shape = (int(u.max()) + 1, int(i.max()) + 1)
    return u[train], i[train], score[train], shape, src, dst


def hit_rate(lists: dict[int, set], src: np.ndarray, dst: np.ndarray) -> float:
    return float(np.mean([d in lists[s] for s, d in zip(src.tolist(), dst.tolist(),
                                                        strict=True)]))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from implicit.nearest_neighbours import (
        BM25Recommender,
        CosineRecommender,
        TFIDFRecommender,
    )

    from shopreco import evaluation
    from shopreco.engine import ease_weights
    from shopreco.pipeline import compute
    from shopreco.pipeline.matrix import Snapshot

    tu, ti, ts, shape, src, dst = data()
    sources = np.unique(src)
    rows = []
    # the shop: ratings as ratings, the lists a recompute stores with the defaults
    snap = Snapshot.from_ratings(sp.csr_matrix((ts, (tu, ti)), shape=shape))
    for label, conf in (("new default (EASE)", common.NEW_DEFAULT),
                        ("previous default", common.PREVIOUS_DEFAULT),
                        ("item kNN, SIMILARITY auto", {**common.NEW_DEFAULT,
                                                       "ALGORITHM": "item"})):
        from django.test import override_settings

        with override_settings(SHOPRECO=conf):
            params = compute.run_params()
        t0 = time.perf_counter()
        _, S = evaluation.fit(snap, params)
        fit = time.perf_counter() - t0
        L = evaluation.similar_lists(S, params, 10).tocsr()
        lists = {s: set(L.indices[L.indptr[s]:L.indptr[s + 1]].tolist()) for s in sources}
        rows.append([label, f"{hit_rate(lists, src, dst):.4f}", f"{fit:.1f}"])
    X = sp.csr_matrix((np.ones(tu.size, dtype=np.float32), (tu, ti)), shape=shape)
    for cls in (CosineRecommender, TFIDFRecommender, BM25Recommender):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls(K=20)
            t0 = time.perf_counter()
            model.fit(X, show_progress=False)
            fit = time.perf_counter() - t0
        ids, _ = model.similar_items(sources, N=11)
        lists = {s: set(r.tolist()) - {s} for s, r in zip(sources.tolist(), ids, strict=True)}
        rows.append([f"implicit {cls.__name__}(K=20)", f"{hit_rate(lists, src, dst):.4f}",
                     f"{fit:.1f}"])
    for lam in (100, 200, 500, 1000):
        t0 = time.perf_counter()
        B = ease_weights(X, lam)
        fit = time.perf_counter() - t0
        B[np.arange(B.shape[0]), np.arange(B.shape[0])] = -np.inf
        top = np.argpartition(-B[sources], 10, axis=1)[:, :10]
        lists = {s: set(r.tolist()) for s, r in zip(sources.tolist(), top, strict=True)}
        rows.append([f"EASE dense, lambda {lam}: row B[item]", f"{hit_rate(lists, src, dst):.4f}",
                     f"{fit:.1f}"])
    se = np.sqrt(0.04 * 0.96 / src.size)
    text = (
        "## \"You may also like\": next-item hit rate on many queries (MovieLens)\n\n"
        f"{src.size:,} queries from {sources.size:,} distinct previous products; train "
        f"{tu.size:,} ratings (each shopper's first 80% in time). Standard error of a hit rate "
        f"near 0.04: {se:.4f}. The shop's rows are `shopreco.evaluation.fit` + "
        "`similar_lists` (the stored \"similar\" lists, limit 10) with the given settings. "
        f"Load average {common.load_average()}.\n\n"
        + common.md_table(["similar list", "hit rate@10", "fit s"], rows)
        + "\n\nReproduce: `.venv/bin/python bench/bench_next_item.py`.\n"
    )
    common.write_section("next_item", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
