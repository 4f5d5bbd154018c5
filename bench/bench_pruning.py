"""What pruning EASE's weights costs in quality, and where the weights therefore live.

MovieLens latest-small as binary feedback, implicit's ``train_test_split(0.8,
random_state=0)``, P@10 / NDCG@10 as implicit's ``ranking_metrics_at_k`` defines them. EASE's
dense weights (lambda "auto", no popularity penalty) against the same weights cut to the top
k of each item's row: the k largest positive ones (what a similarity table holds), or the k
largest in absolute value (negative weights kept). The pipeline scores personal lists and
per-user refreshes with the dense weights (a file in the snapshot storage) because of this
loss; the "similar" lists and the guests' request-time lists use the pruned positive rows.

    .venv/bin/python bench/bench_pruning.py [--k 50,200,1000]

Writes bench/out/pruning.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import common  # noqa: E402

from shopreco.engine import auto_lambda, ease_weights  # noqa: E402
from shopreco.engine._sparse import topk_dense_block  # noqa: E402
from shopreco.engine.evaluate import ndcg_at_k, ranking_precision_at_k  # noqa: E402

K_VALUES = (50, 100, 200, 500, 1000, 2000)


def split():
    from implicit.evaluation import train_test_split

    r = common.load_movielens()
    R = sp.csr_matrix((np.ones(r.u.size, dtype=np.float32), (r.u, r.i)))
    train, test = train_test_split(R, 0.8, random_state=0)
    return train.tocsr(), test.tocsr()


def top10(train: sp.csr_matrix, users: np.ndarray, W) -> np.ndarray:
    seen = train[users]
    scores = seen @ W
    scores = scores.toarray() if sp.issparse(scores) else np.asarray(scores)
    scores[common_rows(seen), seen.indices] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :10]


def common_rows(M: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))


def pruned(B: np.ndarray, k: int, by_magnitude: bool) -> sp.csr_matrix:
    parts = []
    for a in range(0, B.shape[0], 512):
        block = np.asarray(B[a:a + 512], dtype=np.float64)
        key = np.abs(block) if by_magnitude else np.where(block > 0, block, 0.0)
        top = topk_dense_block(key.copy(), k)
        rows = common_rows(top)
        parts.append(sp.csr_matrix((block[rows, top.indices], top.indices, top.indptr),
                                   shape=top.shape))
    return sp.vstack(parts, format="csr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", default=",".join(map(str, K_VALUES)),
                        help="comma-separated row sizes to prune to")
    args = parser.parse_args(argv)
    ks = [int(x) for x in args.k.split(",") if x]
    train, test = split()
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    rel = test[users]
    lam = auto_lambda(train)
    t0 = time.perf_counter()
    B = ease_weights(train, lam)
    fit = time.perf_counter() - t0
    rows = []

    def score(name: str, W, entries: int, size: str) -> None:
        recs = top10(train, users, W)
        rows.append([name, f"{ranking_precision_at_k(recs, rel, 10):.4f}",
                     f"{ndcg_at_k(recs, rel, 10):.4f}", f"{entries:,}", size])

    score("dense (what personal lists and refreshes use)", B, B.size,
          f"{common.mib(B.size * 4)} (dense float32 file)")
    for k in ks:
        for by_magnitude in (False, True):
            S = pruned(B, k, by_magnitude)
            what = "largest magnitude" if by_magnitude else "positive"
            score(f"top {k} per item, {what}", S, S.nnz, common.mib(S.nnz * 12))
    n = train.shape[1]
    text = (
        "## EASE: what pruning the weights costs\n\n"
        f"MovieLens latest-small, implicit's split (0.8, seed 0), {users.size} users scored, "
        f"{n:,} items; lambda auto = {lam:.1f} (dense solve {fit:.1f} s). Memory: 12 bytes per "
        "stored weight in CSR (float64 value + int32 column); the dense float32 file is "
        f"{common.mib(B.size * 4)}. Load average {common.load_average()}.\n\n"
        + common.md_table(["weights", "P@10", "NDCG@10", "weights stored", "size"], rows)
        + "\n\nReproduce: `.venv/bin/python bench/bench_pruning.py`.\n"
    )
    common.write_section("pruning", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
