"""Metrics against hand-computed values; splitters: no leakage, determinism."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from shopreco.engine import ItemKNN, popularity
from shopreco.engine import evaluate as ev

from .test_similarity import random_ratings

# 4 users, 10 items. u2 has no relevant items and is left out of every average.
RECS = np.array([[5, 2, 7], [1, 3, -1], [0, 1, 2], [4, 5, 6]])
RELEVANT = sp.csr_matrix(
    ([1.0] * 7, ([0, 0, 1, 1, 1, 1, 3], [2, 9, 1, 3, 4, 6, 0])), shape=(4, 10))
L3 = 1 / math.log2(3)  # discount of rank 2


def test_ranking_metrics_by_hand():
    # u0: hits (0,1,0), 2 relevant; u1: hits (1,1,0), 4 relevant; u3: no hit, 1 relevant
    assert ev.precision_at_k(RECS, RELEVANT, 3) == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert ev.recall_at_k(RECS, RELEVANT, 3) == pytest.approx((1 / 2 + 2 / 4 + 0) / 3)
    assert ev.f1_at_k(RECS, RELEVANT, 3) == pytest.approx(1 / 3)
    # NDCG: u0 = L3 / (1 + L3) (ideal has min(2, 3) hits); u1 = (1 + L3) / (1 + L3 + 1/2)
    want = (L3 / (1 + L3) + (1 + L3) / (1 + L3 + 0.5) + 0) / 3
    assert ev.ndcg_at_k(RECS, RELEVANT, 3) == pytest.approx(want)
    # MAP: u0 = (1/2) / 2; u1 = (1/1 + 2/2) / 3
    assert ev.map_at_k(RECS, RELEVANT, 3) == pytest.approx((0.25 + 2 / 3) / 3)
    assert ev.hit_rate(RECS, RELEVANT, 3) == pytest.approx(2 / 3)
    # k smaller than the lists: only the first slot counts (u1 hits at rank 1)
    assert ev.precision_at_k(RECS, RELEVANT, 1) == pytest.approx(1 / 3)


def test_coverage_gini_and_bias_by_hand():
    # items recommended: {0..7} of 10
    assert ev.catalogue_coverage(RECS, 10) == pytest.approx(0.8)
    # Gini of (0, 0, 1, 3): sum |xi - xj| over ordered pairs 20 / (2 n^2 mean) = 20/32
    assert ev.gini([3, 0, 1, 0]) == pytest.approx(0.625)
    assert ev.gini([2, 2, 2]) == 0.0
    pop = np.arange(10, dtype=float)  # popularity of item i is i
    bias = ev.popularity_bias(RECS, pop)
    filled = [5, 2, 7, 1, 3, 0, 1, 2, 4, 5, 6]
    assert bias["mean_popularity"] == pytest.approx(np.mean(filled))
    counts = np.bincount(filled, minlength=10)
    assert bias["gini"] == pytest.approx(ev.gini(counts))


def test_error_metrics_by_hand():
    assert ev.rmse([1, 2, 3], [1, 3, 5]) == pytest.approx(math.sqrt(5 / 3))
    assert ev.mae([1, 2, 3], [1, 3, 5]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        ev.rmse([1, 2], [1])


def _entries(M):
    c = M.tocoo()
    return set(zip(c.row.tolist(), c.col.tolist(), c.data.tolist(), strict=True))


def test_kfold_partitions_without_leakage_and_is_deterministic():
    R = random_ratings(3, n_users=40, n_items=30, density=0.3)
    all_entries = _entries(R)
    splits = list(ev.kfold(R, folds=4, seed=7))
    tests = [_entries(te) for _, te in splits]
    for (tr, _te), t in zip(splits, tests, strict=True):
        assert not (_entries(tr) & t)  # no test entry in its training set
        assert _entries(tr) | t == all_entries
    assert set().union(*tests) == all_entries
    assert sum(len(t) for t in tests) == len(all_entries)  # disjoint
    again = [_entries(te) for _, te in ev.kfold(R, folds=4, seed=7)]
    assert again == tests
    other = [_entries(te) for _, te in ev.kfold(R, folds=4, seed=8)]
    assert other != tests


def test_leave_one_out_and_temporal_split():
    R = random_ratings(5, n_users=30, n_items=20, density=0.3)
    rng = np.random.default_rng(0)
    ts = rng.permutation(R.nnz).astype(float)  # distinct timestamps, CSR order
    T = sp.csr_matrix((ts, R.indices, R.indptr), shape=R.shape)
    tr, te = ev.leave_one_out(R, timestamps=ts)
    counts = np.diff(R.indptr)
    assert (np.diff(te.indptr) == (counts >= 2)).all()
    for u in range(R.shape[0]):
        if counts[u] >= 2:
            i = te.indices[te.indptr[u]]
            assert T[u, i] == T[u].data.max()  # the latest one
    assert not (_entries(tr) & _entries(te))
    r1 = ev.leave_one_out(R, seed=1)[1]
    assert _entries(r1) == _entries(ev.leave_one_out(R, seed=1)[1])

    tr, te = ev.temporal_split(R, T, test_fraction=0.25)
    assert _entries(tr) | _entries(te) == _entries(R)
    assert not (_entries(tr) & _entries(te))
    for u in range(R.shape[0]):
        tr_ts = [T[u, i] for i in tr[u].indices]
        te_ts = [T[u, i] for i in te[u].indices]
        if counts[u] >= 2:
            assert te_ts and tr_ts and max(tr_ts) < min(te_ts)  # never trains on the future
        else:
            assert not te_ts


def test_popularity_counts_and_decay():
    R = sp.csr_matrix(np.array([[1, 0, 5], [0, 2, 1], [3, 0, 0]], dtype=float))
    np.testing.assert_array_equal(popularity(R), [2, 1, 2])
    np.testing.assert_array_equal(popularity(R, weighted=True), [4, 2, 6])
    # entries in CSR order: (0,0) t=10, (0,2) t=0, (1,1) t=10, (1,2) t=10, (2,0) t=5
    ts = [10, 0, 10, 10, 5]
    got = popularity(R, timestamps=ts, half_life=5)
    # item 0: 1 + 0.5; item 1: 1; item 2: 0.25 + 1
    np.testing.assert_allclose(got, [1.5, 1.0, 1.25])
    with pytest.raises(ValueError, match="timestamps"):
        popularity(R, timestamps=[1, 2], half_life=5)


def test_cross_validate_reports_every_metric():
    R = random_ratings(6, n_users=60, n_items=40, density=0.3)
    out = ev.cross_validate(lambda: ItemKNN(k=10), R, folds=3, seed=0, k=5)
    for key in ("rmse", "mae", "precision@5", "recall@5", "f1@5", "ndcg@5", "map@5",
                "hit_rate@5", "catalogue_coverage", "mean_popularity", "gini",
                "fit_time", "predict_time", "total_fit_time"):
        assert key in out and np.isfinite(out[key]), key
    assert len(out["folds"]) == 3
    assert 0.0 < out["rmse"] < 3.0
