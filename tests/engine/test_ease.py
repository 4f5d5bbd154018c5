"""EASE: the weights against a direct numpy solve; scores, reasons, parts and the tail."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from shopreco.engine import EASE, ItemKNN, UserKNN, auto_lambda, ease_weights
from shopreco.engine.ease import head_items


def random_matrix(n_users=60, n_items=25, density=0.2, seed=0, binary=True):
    rng = np.random.default_rng(seed)
    M = sp.random(n_users, n_items, density=density, random_state=rng, format="csr")
    if binary:
        M.data[:] = 1.0
    else:
        M.data = rng.uniform(0.2, 1.0, M.nnz)
    return M


def direct(X, lam):
    """Steck's formula, straight: B = I - P diag(1/diag(P)), P = (X'X + lam I)^-1."""
    X = X.toarray().astype(np.float64)
    P = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    B = np.eye(X.shape[1]) - P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


@pytest.mark.parametrize("seed,lam,binary", [(0, 1.0, True), (1, 10.0, True),
                                             (2, 250.0, False), (3, 0.5, False)])
def test_weights_equal_a_direct_solve(seed, lam, binary):
    X = random_matrix(seed=seed, binary=binary)
    B = ease_weights(X, lam)
    assert B.dtype == np.float32
    assert np.all(np.diag(B) == 0)
    np.testing.assert_allclose(B, direct(X, lam), rtol=1e-3, atol=1e-5)


def test_bad_lambda_is_refused():
    for bad in (0, -1.0, float("nan"), "big", True):
        with pytest.raises(ValueError, match="lambda_"):
            EASE(lambda_=bad)


def test_dense_scores_and_recommendations_are_x_times_b():
    X = random_matrix(seed=4)
    m = EASE(lambda_=5.0, max_neighbours=None, max_items=None, beta=0.0).fit(X)
    scores = X.toarray() @ direct(X, 5.0)
    users = np.arange(X.shape[0])
    items, got = m.recommend(users, n=5)
    for u in users:
        cand = np.flatnonzero(X[u].toarray().ravel() == 0)
        best = cand[np.lexsort((cand, -scores[u, cand]))][:5]
        np.testing.assert_array_equal(items[u], best)
        np.testing.assert_allclose(got[u], scores[u, best], rtol=1e-3, atol=1e-5)


def test_reasons_name_the_users_item_contributing_most():
    X = random_matrix(seed=5)
    B = direct(X, 5.0)
    m = EASE(lambda_=5.0, max_neighbours=None, max_items=None, beta=0.0).fit(X)
    users = np.arange(10)
    items, _, reasons = m.recommend_with_reasons(users, n=3)
    D = X.toarray()
    for u in users:
        for i, r in zip(items[u], reasons[u], strict=True):
            contrib = D[u] * B[:, i]
            assert r == int(np.argmax(contrib))
            assert m.explain(u, i)[0][0] == r


def test_parts_score_exactly_as_the_fitted_model():
    X = random_matrix(n_items=40, seed=6)
    m = EASE(lambda_=3.0, max_neighbours=None, max_items=25, tail_k=10).fit(X)
    head, W, tail = m.parts()
    again = EASE.from_parts(X[:7], head, W, tail, tail_k=10)
    a = m.recommend_with_reasons(np.arange(7), n=6)
    b = again.recommend_with_reasons(np.arange(7), n=6)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_head_is_the_busiest_items_and_the_tail_is_ranked_by_cosine():
    X = random_matrix(n_users=80, n_items=40, seed=7)
    support = np.bincount(X.indices, minlength=40)
    head = head_items(support, 25)
    assert head.size == 25 and support[head].min() >= np.delete(support, head).max()
    m = EASE(lambda_=3.0, max_neighbours=None, max_items=25, tail_k=10).fit(X)
    tail_items = np.setdiff1d(np.arange(40), head)
    # every tail item with co-occurrences reaches some list through its cosine rows
    scores = m._scores(np.arange(80)).toarray()
    assert (scores[:, tail_items] > 0).any(axis=0).mean() > 0.8
    # head-to-head weights are EASE's exactly
    Bh = direct(X[:, head], 3.0)
    np.testing.assert_allclose(m.weights_, Bh, rtol=1e-3, atol=1e-5)


def test_pruned_weights_keep_the_largest_per_row():
    X = random_matrix(seed=8)
    m = EASE(lambda_=5.0, max_neighbours=4, max_items=None, beta=0.0).fit(X)
    B = direct(X, 5.0)
    S = m.similarity_.toarray()
    for i in range(X.shape[1]):
        kept = np.flatnonzero(S[i])
        assert kept.size <= 4
        top = np.argsort(-B[i])[:kept.size]
        assert set(kept) == set(top[B[i, top] > 0])


def test_popularity_penalty_divides_weights_into_popular_items():
    X = random_matrix(seed=9)
    plain = EASE(lambda_=5.0, max_neighbours=None, max_items=None, beta=0.0).fit(X)
    penal = EASE(lambda_=5.0, max_neighbours=None, max_items=None, beta=0.5).fit(X)
    support = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float32)
    np.testing.assert_allclose(penal.weights_, plain.weights_ / support[None, :] ** 0.5,
                               rtol=1e-5, atol=1e-7)


def test_auto_lambda_follows_the_busiest_items(monkeypatch):
    from shopreco.engine import ease

    X = random_matrix(n_users=300, n_items=200, density=0.05, seed=10)
    support = np.sort(np.bincount(X.indices, minlength=200))[::-1]
    assert auto_lambda(X) == pytest.approx(1.5 * np.median(support[:100]))
    doubled = sp.vstack([X, X]).tocsr()
    assert auto_lambda(doubled) == pytest.approx(2 * auto_lambda(X))
    monkeypatch.setattr(ease, "SELECT_ITEMS", 100)  # a head too big to validate: the rule
    m = EASE().fit(X)
    assert m.lambda_used_ == pytest.approx(auto_lambda(X)) and m.lambda_scores_ == {}


def test_select_lambda_climbs_to_the_best_measured_value():
    """Two taste groups with many shoppers and a little noise: heavy regularisation wins,
    and the search walks up the ladder from the rule's value to where NDCG stops rising."""
    from shopreco.engine.ease import select_lambda

    rng = np.random.default_rng(14)
    rows, cols = [], []
    for u in range(400):
        group = np.arange(30) if u % 2 == 0 else np.arange(30, 60)
        picks = list(rng.choice(group, size=8, replace=False)) + [int(rng.integers(60))]
        rows += [u] * len(picks)
        cols += picks
    X = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(400, 60))
    X.sum_duplicates()
    X.data[:] = 1.0
    lam, scores = select_lambda(X)
    ladder = sorted(scores)
    assert len(ladder) >= 2
    best = max(scores, key=scores.get)
    assert lam == pytest.approx(best / 0.8)
    start = auto_lambda(sp.csr_matrix(X[:, :]) * 1.0) * 0.8
    assert all(np.isclose(b / a, 2.0) for a, b in zip(ladder, ladder[1:], strict=False))
    assert min(ladder) <= start * 1.01 <= max(ladder) * 1.01
    m = EASE(beta=0.0).fit(X)  # 60 items: "auto" validates
    assert m.lambda_used_ == pytest.approx(lam) and m.lambda_scores_ == scores


def test_ease_does_not_predict_ratings():
    m = EASE(lambda_=1.0).fit(random_matrix(seed=11))
    with pytest.raises(NotImplementedError, match="ranks"):
        m.predict([0], [0])


@pytest.mark.parametrize("model", [
    EASE(lambda_=2.0, max_neighbours=None),
    EASE(lambda_=2.0, max_neighbours=10),
    ItemKNN(k=10),
    UserKNN(k=10),
])
def test_similar_items_on_every_model_finds_the_items_group(model):
    """Two item groups that never co-occur: each item's similar items are in its group."""
    rng = np.random.default_rng(12)
    rows, cols = [], []
    for u in range(60):
        group = np.arange(10) if u % 2 == 0 else np.arange(10, 20)
        for i in rng.choice(group, size=4, replace=False):
            rows.append(u)
            cols.append(i)
    X = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(60, 20))
    model.fit(X)
    for item in (0, 15):
        similar = model.similar_items(item, n=5)
        assert len(similar) == 5
        assert all((j < 10) == (item < 10) and j != item for j, _ in similar)
        scores = [s for _, s in similar]
        assert scores == sorted(scores, reverse=True)


def test_blocked_gram_and_mirror_equal_the_whole():
    from shopreco.engine.ease import _mirror_lower, gram

    X = random_matrix(n_users=50, n_items=30, seed=13, binary=False)
    np.testing.assert_allclose(gram(X, np.float64, block=7), (X.T @ X).toarray())
    rng = np.random.default_rng(13)
    A = rng.random((30, 30))
    lower = np.tril(A)
    _mirror_lower(lower, block=7)
    np.testing.assert_array_equal(lower, np.tril(A) + np.tril(A, -1).T)


def test_small_solves_run_on_one_blas_thread(monkeypatch):
    from threadpoolctl import threadpool_info

    from shopreco.engine import ease

    seen = []
    real = ease._solve

    def spy(X, lam, dtype):
        seen.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        return real(X, lam, dtype)

    monkeypatch.setattr(ease, "_solve", spy)
    ease_weights(random_matrix(seed=15), 5.0)
    assert seen == [{1}]
