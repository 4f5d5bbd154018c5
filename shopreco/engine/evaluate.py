"""Offline evaluation: splitters, metrics and k-fold cross-validation.

Splitters work on the stored entries of a users x items CSR matrix and return
(train, test) matrices of the same shape, so indices never need remapping. Ranking
metrics take a recommendation array (users x k, -1 = empty slot) and the held-out
relevant items of the same users; users without relevant items are left out of the
averages (they cannot be scored).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp

from ._sparse import as_csr, row_ids

# ----------------------------------------------------------------------------- splits


def _subset(R: sp.csr_matrix, mask: np.ndarray) -> sp.csr_matrix:
    rows = row_ids(R)[mask]
    out = sp.csr_matrix((R.data[mask], (rows, R.indices[mask])), shape=R.shape)
    out.sort_indices()
    return out


def _entry_timestamps(R: sp.csr_matrix, timestamps) -> np.ndarray:
    if sp.issparse(timestamps):
        T = sp.csr_matrix(timestamps, dtype=np.float64)
        T.sum_duplicates()
        T.sort_indices()
        if T.shape != R.shape or not np.array_equal(T.indices, R.indices):
            raise ValueError("timestamps must have the same sparsity pattern as R")
        return T.data
    ts = np.asarray(timestamps, dtype=np.float64).ravel()
    if ts.size != R.nnz:
        raise ValueError(f"timestamps must have one value per stored entry ({R.nnz}), "
                         f"got {ts.size}")
    return ts


def kfold(R, folds: int = 5, seed: int = 0) -> Iterator[tuple[sp.csr_matrix, sp.csr_matrix]]:
    """K-fold over the stored entries, shuffled with ``seed``: every entry is in exactly
    one test fold. Deterministic for a given (R, folds, seed)."""
    R = as_csr(R)
    if int(folds) != folds or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(R.nnz, dtype=np.int64)
    fold_of[rng.permutation(R.nnz)] = np.arange(R.nnz) % folds
    for f in range(int(folds)):
        test = fold_of == f
        yield _subset(R, ~test), _subset(R, test)


def _rank_in_row(R: sp.csr_matrix, key: np.ndarray) -> np.ndarray:
    """0-based rank of each entry within its row when sorted by ``key`` descending."""
    rows = row_ids(R)
    order = np.lexsort((np.arange(R.nnz), -key, rows))
    rank = np.empty(R.nnz, dtype=np.int64)
    rank[order] = np.arange(R.nnz) - R.indptr[rows[order]]
    return rank


def leave_one_out(R, seed: int = 0, timestamps=None) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Hold out one entry per user with at least two: the latest if ``timestamps`` are
    given, else one at random (``seed``)."""
    R = as_csr(R)
    if timestamps is not None:
        key = _entry_timestamps(R, timestamps)
    else:
        key = np.random.default_rng(seed).random(R.nnz)
    counts = np.diff(R.indptr)[row_ids(R)]
    test = (_rank_in_row(R, key) == 0) & (counts >= 2)
    return _subset(R, ~test), _subset(R, test)


def random_holdout(R, test_fraction: float = 0.2, seed: int = 0):
    """Each stored entry goes to the test set with probability ``test_fraction`` (seeded),
    as implicit's ``train_test_split`` does; users keep their rows in both parts."""
    R = as_csr(R)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    test = np.random.default_rng(seed).random(R.nnz) < test_fraction
    return _subset(R, ~test), _subset(R, test)


def leave_last_n(R, timestamps, n: int = 1) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per user with more than ``n`` interactions, the latest ``n`` (by ``timestamps``,
    ties: the smaller item index) are held out: what a shop sees next."""
    R = as_csr(R)
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    key = _entry_timestamps(R, timestamps)
    counts = np.diff(R.indptr)[row_ids(R)]
    test = (_rank_in_row(R, key) < n) & (counts > n)
    return _subset(R, ~test), _subset(R, test)


def temporal_split(R, timestamps, test_fraction: float = 0.2):
    """Per user, the latest ``test_fraction`` of interactions (rounded, at least one when
    the user has two or more, never all) go to test: training never sees the future of a
    user."""
    R = as_csr(R)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    ts = _entry_timestamps(R, timestamps)
    counts = np.diff(R.indptr)[row_ids(R)]
    n_test = np.where(counts >= 2, np.clip(np.rint(counts * test_fraction), 1, counts - 1), 0)
    test = _rank_in_row(R, ts) < n_test
    return _subset(R, ~test), _subset(R, test)


# ---------------------------------------------------------------------------- metrics


def rmse(predicted, actual) -> float:
    """Root mean squared error."""
    p, a = np.asarray(predicted, float), np.asarray(actual, float)
    if p.shape != a.shape:
        raise ValueError(f"predicted and actual differ in shape: {p.shape} vs {a.shape}")
    return float(np.sqrt(np.mean((p - a) ** 2))) if p.size else float("nan")


def mae(predicted, actual) -> float:
    """Mean absolute error."""
    p, a = np.asarray(predicted, float), np.asarray(actual, float)
    if p.shape != a.shape:
        raise ValueError(f"predicted and actual differ in shape: {p.shape} vs {a.shape}")
    return float(np.mean(np.abs(p - a))) if p.size else float("nan")


def _hits(recs, relevant, k):
    """(hit matrix users x k, relevant counts) for users with relevant items."""
    recs = np.asarray(recs, dtype=np.int64)
    if recs.ndim != 2:
        raise ValueError("recommendations must be a 2-D array (users x k)")
    rel = sp.csr_matrix(relevant)
    if rel.shape[0] != recs.shape[0]:
        raise ValueError(f"relevant has {rel.shape[0]} rows for {recs.shape[0]} users")
    k = recs.shape[1] if k is None else int(k)
    recs = recs[:, :k]
    if recs.shape[1] < k:
        recs = np.pad(recs, ((0, 0), (0, k - recs.shape[1])), constant_values=-1)
    rel.sort_indices()
    n_items = rel.shape[1]
    keys = row_ids(rel) * np.int64(n_items) + rel.indices
    q = np.arange(recs.shape[0])[:, None] * np.int64(n_items) + np.clip(recs, 0, n_items - 1)
    pos = np.minimum(np.searchsorted(keys, q), max(keys.size - 1, 0))
    hit = (keys[pos] == q) & (recs >= 0) if keys.size else np.zeros(recs.shape, bool)
    n_rel = np.diff(rel.indptr)
    has = n_rel > 0
    return hit[has], n_rel[has], k


def ranking_precision_at_k(recs, relevant, k: int | None = None) -> float:
    """Hits over all users / sum over users of min(k, relevant items): implicit's
    ``ranking_metrics_at_k`` precision, which a user with fewer than k relevant items
    does not drag down."""
    hit, n_rel, k = _hits(recs, relevant, k)
    return float(hit.sum() / np.minimum(n_rel, k).sum()) if hit.size else float("nan")


def precision_at_k(recs, relevant, k: int | None = None) -> float:
    """Mean over users of (relevant items among the top k) / k."""
    hit, _, k = _hits(recs, relevant, k)
    return float(hit.sum(axis=1).mean() / k) if hit.size else float("nan")


def recall_at_k(recs, relevant, k: int | None = None) -> float:
    """Mean over users of (relevant items among the top k) / (relevant items)."""
    hit, n_rel, _ = _hits(recs, relevant, k)
    return float((hit.sum(axis=1) / n_rel).mean()) if hit.size else float("nan")


def f1_at_k(recs, relevant, k: int | None = None) -> float:
    """Harmonic mean of the mean precision@k and mean recall@k."""
    p, r = precision_at_k(recs, relevant, k), recall_at_k(recs, relevant, k)
    return float(2 * p * r / (p + r)) if p + r > 0 else 0.0


def ndcg_at_k(recs, relevant, k: int | None = None) -> float:
    """Binary-relevance NDCG@k: DCG / ideal DCG, with discount 1 / log2(rank + 1)."""
    hit, n_rel, k = _hits(recs, relevant, k)
    if not hit.size:
        return float("nan")
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hit @ disc
    ideal = np.cumsum(disc)[np.minimum(n_rel, k) - 1]
    return float((dcg / ideal).mean())


def map_at_k(recs, relevant, k: int | None = None) -> float:
    """Mean average precision@k: sum of precision at each hit / min(relevant, k)."""
    hit, n_rel, k = _hits(recs, relevant, k)
    if not hit.size:
        return float("nan")
    prec = np.cumsum(hit, axis=1) / np.arange(1, k + 1)
    return float(((prec * hit).sum(axis=1) / np.minimum(n_rel, k)).mean())


def hit_rate(recs, relevant, k: int | None = None) -> float:
    """Share of users with at least one relevant item in their top k."""
    hit, _, _ = _hits(recs, relevant, k)
    return float(hit.any(axis=1).mean()) if hit.size else float("nan")


def catalogue_coverage(recs, n_items: int) -> float:
    """Share of the catalogue that appears in at least one recommendation list."""
    recs = np.asarray(recs)
    return float(np.unique(recs[recs >= 0]).size / n_items) if n_items else 0.0


def gini(values) -> float:
    """Gini coefficient of non-negative values: 0 = all equal, -> 1 = all on one."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n == 0 or x.sum() == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def popularity_bias(recs, item_popularity) -> dict[str, float]:
    """How much the lists lean to popular items: mean popularity of recommended items
    (over all filled slots) and Gini of how often each catalogue item is recommended."""
    recs = np.asarray(recs)
    pop = np.asarray(item_popularity, dtype=float)
    filled = recs[recs >= 0]
    counts = np.bincount(filled, minlength=pop.size)
    return {
        "mean_popularity": float(pop[filled].mean()) if filled.size else float("nan"),
        "gini": gini(counts),
    }


# ------------------------------------------------------------------- cross-validation

RANKING_METRICS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "f1": f1_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
    "hit_rate": hit_rate,
}


def evaluate_split(model_factory: Callable, train, test, k: int = 10,
                   rating_metrics: bool = True) -> dict[str, float]:
    """Fit a fresh model on ``train`` and score it on ``test`` (all metrics + times)."""
    model = model_factory()
    t0 = time.perf_counter()
    model.fit(train)
    fit_time = time.perf_counter() - t0
    test = sp.csr_matrix(test)
    out: dict[str, float] = {"fit_time": fit_time}
    if rating_metrics:
        coo = test.tocoo()
        t0 = time.perf_counter()
        pred = model.predict(coo.row, coo.col)
        out["predict_time"] = time.perf_counter() - t0
        out["rmse"] = rmse(pred, coo.data)
        out["mae"] = mae(pred, coo.data)
    users = np.nonzero(np.diff(test.indptr) > 0)[0]
    t0 = time.perf_counter()
    recs, _ = model.recommend(users, n=k)
    out["recommend_time"] = time.perf_counter() - t0
    rel = test[users]
    for name, fn in RANKING_METRICS.items():
        out[f"{name}@{k}"] = fn(recs, rel, k)
    out["catalogue_coverage"] = catalogue_coverage(recs, train.shape[1])
    bias = popularity_bias(recs, np.diff(sp.csc_matrix(train).indptr))
    out["mean_popularity"] = bias["mean_popularity"]
    out["gini"] = bias["gini"]
    return out


def cross_validate(
    model_factory: Callable,
    R,
    folds: int = 5,
    seed: int = 0,
    k: int = 10,
    timestamps=None,
) -> dict:
    """Cross-validate ``model_factory()`` on ``R``; the mean of every metric and time.

    Without ``timestamps``: ``folds``-fold CV over the entries (seeded). With them: a
    single temporal split per user (the latest 1/folds of each user's interactions are
    the test set), which is what a shop sees in production. Ranking metrics treat every
    held-out entry as relevant. Returns ``{"folds": [...], metric: mean, ...}``.
    """
    R = as_csr(R)
    if timestamps is not None:
        splits = [temporal_split(R, timestamps, 1.0 / folds)]
    else:
        splits = kfold(R, folds, seed)
    per_fold = [evaluate_split(model_factory, tr, te, k=k) for tr, te in splits]
    keys = per_fold[0].keys()
    out: dict = {key: float(np.mean([f[key] for f in per_fold])) for key in keys}
    for key in ("fit_time", "predict_time", "recommend_time"):
        if key in out:
            out[f"total_{key}"] = float(np.sum([f[key] for f in per_fold]))
    out["folds"] = per_fold
    out["n_users"], out["n_items"], out["n_ratings"] = R.shape[0], R.shape[1], R.nnz
    return out
