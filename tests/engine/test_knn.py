"""ItemKNN / UserKNN: predictions against the loop formula, top-N exclusion, reasons."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from shopreco.engine import (
    ItemKNN,
    UserKNN,
    item_similarity,
    prepare,
    tfidf_weight,
    user_similarity,
)

from . import bruteforce as bf
from .test_similarity import WORKED, random_ratings


def _means(R, axis):
    V, M = bf.dense(R)
    cnt = M.sum(axis=axis)
    with np.errstate(invalid="ignore"):
        return np.where(cnt > 0, V.sum(axis=axis) / np.maximum(cnt, 1), np.nan)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [2, 50])
@pytest.mark.parametrize("cls,kind", [(ItemKNN, "item"), (UserKNN, "user")])
def test_mean_centred_prediction_matches_formula(seed, k, cls, kind):
    R = random_ratings(seed, n_users=14, n_items=10)
    model = cls(similarity="pearson", k=k, shrinkage=0, max_neighbours=None,
                positive_only=False).fit(R)
    b = model.baselines_
    if kind == "item":
        S = item_similarity(R, "pearson").toarray()
        means = _means(R, 0)
        centre = lambda u, i: means[i]  # noqa: E731
    else:
        S = user_similarity(R, "pearson").toarray()
        means = _means(R, 1)
        centre = lambda u, i: means[u]  # noqa: E731
    users, items = np.meshgrid(np.arange(R.shape[0]), np.arange(R.shape[1]), indexing="ij")
    got = model.predict(users.ravel(), items.ravel())
    want = [bf.predict(R, S, u, i, k, kind, centre,
                       fallback=lambda u, i: b.mu + b.user_bias[u] + b.item_bias[i])
            for u, i in zip(users.ravel(), items.ravel(), strict=True)]
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


@pytest.mark.parametrize("cls,kind", [(ItemKNN, "item"), (UserKNN, "user")])
@pytest.mark.parametrize("method", ["pearson_baseline", "cosine_baseline"])
def test_baseline_centred_prediction_matches_formula(cls, kind, method):
    R = random_ratings(4, n_users=15, n_items=11)
    # damping 0 is issue 3's formula; "auto" (0.5 here) adds it to the denominator
    for damping, want_damping in ((0.0, 0.0), ("auto", 0.5), (2.5, 2.5)):
        model = cls(similarity=method, k=3, shrinkage=5, max_neighbours=None,
                    positive_only=True, damping=damping).fit(R)
        assert model.damping_ == want_damping
        b = model.baselines_
        base = lambda u, i, b=b: b.mu + b.user_bias[u] + b.item_bias[i]  # noqa: E731
        S = model.similarity_.toarray()
        users, items = np.meshgrid(np.arange(R.shape[0]), np.arange(R.shape[1]),
                                   indexing="ij")
        got = model.predict(users.ravel(), items.ravel())
        want = [bf.predict(R, S, u, i, 3, kind, base, positive_only=True, fallback=base,
                           damping=want_damping)
                for u, i in zip(users.ravel(), items.ravel(), strict=True)]
        np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


def test_worked_example_predictions():
    # user-based, pearson, k = 2: pred(u1, i1). Raters of i1: u0, u2, u4 with
    # sim(u1,u0) = 1, sim(u1,u2) = -6/sqrt(40), sim(u1,u4) = -1 (see test_similarity).
    # The 2 most similar are u0 and u2: mean_u1 = 2.5,
    # pred = 2.5 + (1*(3 - 3) + s*(1 - 7/3)) / (1 + |s|), s = -6/sqrt(40)
    s = -6 / np.sqrt(40)
    user = UserKNN(similarity="pearson", k=2, shrinkage=0, max_neighbours=None,
                   positive_only=False).fit(WORKED)
    assert user.predict([1], [1])[0] == pytest.approx(2.5 + s * (-4 / 3) / (1 + abs(s)),
                                                      abs=1e-12)
    # item-based, pearson, all neighbours: u1 rated i0 (4) and i3 (1);
    # sim(i1,i0) = (25/6)/sqrt(8.125*20/9), sim(i1,i3) = (-14/3)/sqrt(24);
    # pred = mean_i1 + (s10*(4 - 2.75) + s13*(1 - 3)) / (|s10| + |s13|), mean_i1 = 5/3
    s10 = (25 / 6) / np.sqrt(8.125 * 20 / 9)
    s13 = (-14 / 3) / np.sqrt(24)
    item = ItemKNN(similarity="pearson", k=40, shrinkage=0, max_neighbours=None,
                   positive_only=False).fit(WORKED)
    want = 5 / 3 + (s10 * 1.25 + s13 * -2) / (abs(s10) + abs(s13))
    assert item.predict([1], [1])[0] == pytest.approx(want, abs=1e-12)  # = 3.2863
    # i2 (rated once, all similarities 0): no neighbours -> baseline mu + b_u + b_i
    b = item.baselines_
    assert item.predict([0], [2])[0] == pytest.approx(b.mu + b.user_bias[0] + b.item_bias[2])
    # top-N for u1 with seen items excluded: only i1 and i2 are candidates, and i2 has no
    # similarity to anything, so the list is [i1, -1, ...]
    items, scores = item.recommend([1], n=3)
    assert items.tolist() == [[1, -1, -1]]
    assert np.isneginf(scores[0, 1:]).all()


def test_unknown_indices_fall_back_to_baseline():
    R = random_ratings(0)
    model = ItemKNN().fit(R)
    b = model.baselines_
    got = model.predict([-1, 0, 3, 10_000], [2, 3, -1, 1])
    np.testing.assert_allclose(got[[0, 2, 3]], [b.mu + b.item_bias[2], b.mu + b.user_bias[3],
                                                b.mu + b.item_bias[1]])
    # user 0 has no ratings: baseline (its bias is 0)
    assert got[1] == pytest.approx(b.mu + b.item_bias[3])
    with pytest.raises(ValueError, match="same length"):
        model.predict([1, 2], [1])


def _brute_scores(R, S_rank, kind):
    V, _ = bf.dense(R)
    return V @ S_rank if kind == "item" else S_rank @ V


@pytest.mark.parametrize("cls,kind", [(ItemKNN, "item"), (UserKNN, "user")])
def test_recommend_excludes_and_ranks_by_score(cls, kind):
    R = random_ratings(8, n_users=25, n_items=30, density=0.2)
    R.data[:] = 1.0  # implicit feedback
    model = cls(k=5).fit(R)
    assert model.method_ == "cosine"
    # the item default weights users by TF-IDF before the cosine; the user default does not
    assert model.weighting_ == ("tfidf" if kind == "item" else "none")
    W = tfidf_weight(R) if kind == "item" else R
    full = (item_similarity if kind == "item" else user_similarity)(W, "cosine", k=5)
    scores = _brute_scores(R, full.toarray(), kind)
    V, M = bf.dense(R)
    extra = sp.random(25, 30, density=0.1, random_state=1, format="csr")
    users = np.arange(25)
    items, got = model.recommend(users, n=7, exclude=extra)
    E = extra.toarray() != 0
    for u in users:
        cand = [(-scores[u, i], i) for i in range(30)
                if not M[u, i] and not E[u, i] and scores[u, i] != 0]
        want = sorted(cand)[:7]
        assert items[u, :len(want)].tolist() == [i for _, i in want]
        np.testing.assert_allclose(got[u, :len(want)], [-s for s, _ in want], atol=1e-12)
        assert (items[u, len(want):] == -1).all() and np.isneginf(got[u, len(want):]).all()
    # without exclusion seen items may come back
    items2, _ = model.recommend(users, n=30, exclude_seen=False)
    assert any(M[u, i] for u in users for i in items2[u] if i >= 0)


def test_item_reasons_and_explain_match_contributions():
    R = random_ratings(9, n_users=20, n_items=25, density=0.3)
    model = ItemKNN(similarity="cosine", k=6).fit(R)
    S = item_similarity(R, "cosine", k=6).toarray()
    V, M = bf.dense(R)
    users = np.arange(20)
    items, scores, reasons = model.recommend_with_reasons(users, n=5)
    for u in users:
        for pos, i in enumerate(items[u]):
            if i < 0:
                assert reasons[u, pos] == -1
                continue
            contrib = sorted((-(V[u, j] * S[j, i]), j) for j in range(25)
                             if M[u, j] and S[j, i] != 0)
            assert reasons[u, pos] == contrib[0][1]
            assert sum(-c for c, _ in contrib) == pytest.approx(scores[u, pos])
            exp = model.explain(u, i, top=2)
            assert [j for j, _ in exp] == [j for _, j in contrib[:2]]
            assert exp[0][1] == pytest.approx(-contrib[0][0])


def test_user_reasons_are_items_the_user_rated():
    R = random_ratings(10, n_users=30, n_items=20, density=0.3)
    model = UserKNN(similarity="cosine", k=5).fit(R)
    items, _, reasons = model.recommend_with_reasons(np.arange(30), n=4)
    _, M = bf.dense(R)
    for u in range(30):
        for pos, r in enumerate(reasons[u]):
            if r >= 0:
                assert M[u, r] and items[u, pos] >= 0
    exp = model.explain(3, int(items[3, 0]), top=3)
    S = user_similarity(R, "cosine", k=5).toarray()
    V, _ = bf.dense(R)
    want = sorted((-(S[3, v] * V[v, items[3, 0]]), v) for v in range(30)
                  if S[3, v] and M[v, items[3, 0]])[:3]
    assert [v for v, _ in exp] == [v for _, v in want]


def test_fit_with_given_similarity_equals_computed():
    R = random_ratings(12, n_users=30, n_items=20)
    a = ItemKNN(max_neighbours=None).fit(R)
    b = ItemKNN(max_neighbours=None).fit(R, similarity=a.similarity_)
    u, i = np.nonzero(np.ones(R.shape))
    np.testing.assert_array_equal(a.predict(u, i), b.predict(u, i))
    np.testing.assert_array_equal(a.recommend(np.arange(30))[0], b.recommend(np.arange(30))[0])
    with pytest.raises(ValueError, match="similarity must have shape"):
        ItemKNN().fit(R, similarity=sp.eye(3))


def test_auto_similarity_follows_the_data():
    R = random_ratings(1)
    model = ItemKNN().fit(R)
    assert model.method_ == "cosine_baseline" and model.centering_ == "baseline"
    assert (model.positive_only_, model.damping_, model.shrinkage_) == (True, 0.5, 0.0)
    assert UserKNN().fit(R).method_ == "pearson_baseline"
    B = R.copy()
    B.data[:] = 1
    assert ItemKNN().fit(B).method_ == "cosine"


def test_errors():
    with pytest.raises(ValueError, match="k must"):
        ItemKNN(k=0)
    with pytest.raises(ValueError, match="damping"):
        ItemKNN(damping=-1.0)
    with pytest.raises(ValueError, match="max_neighbours"):
        ItemKNN(max_neighbours="many")
    for bad in (-2, "10"):
        with pytest.raises(ValueError, match="support_shrinkage"):
            ItemKNN(support_shrinkage=bad)
    # a method it does not apply to refuses it at fit, naming it
    with pytest.raises(ValueError, match="support_shrinkage applies to"):
        UserKNN(support_shrinkage=10).fit(random_ratings(0))
    with pytest.raises(RuntimeError, match="not fitted"):
        ItemKNN().predict([0], [0])
    model = ItemKNN().fit(random_ratings(0))
    with pytest.raises(ValueError, match="user index"):
        model.recommend([99])


@pytest.mark.parametrize("support", [None, 0.0, 25.0])
def test_support_shrinkage_reaches_the_similarity(support):
    """The estimator's support_shrinkage is the beta of its cosine_baseline similarity
    (None: the method's default), computed on the model's own baselines."""
    R = random_ratings(8, n_users=40, n_items=30)
    model = ItemKNN(k=4, support_shrinkage=support).fit(R)
    P = prepare(R, "cosine_baseline", baselines=model.baselines_, support_shrinkage=support)
    want = item_similarity(P, k=200, positive_only=True)
    np.testing.assert_array_equal(model.similarity_.toarray(), want.toarray())
    if support is not None:
        other = ItemKNN(k=4).fit(R).similarity_
        assert abs(other - model.similarity_).max() > 1e-3


@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
def test_predict_lookup_table_and_binary_search_agree(cls, monkeypatch):
    """Large matrices look ratings up by binary search instead of a dense position
    table: both must give the same predictions."""
    from shopreco.engine import knn

    R = random_ratings(7, n_users=40, n_items=30)
    u, i = np.nonzero(np.ones(R.shape))
    want = cls().fit(R).predict(u, i)
    monkeypatch.setattr(knn, "_TABLE_CELLS", 0)
    got = cls().fit(R).predict(u, i)
    np.testing.assert_array_equal(got, want)


def test_tfidf_weight_and_weighting_option():
    R = random_ratings(4, n_users=15, n_items=12, density=0.4)
    W = tfidf_weight(R)
    V, M = bf.dense(R)
    for u in range(15):
        n_u = int(M[u].sum())
        for i in range(12):
            if M[u, i]:
                want = math.sqrt(V[u, i]) * max(math.log(12 / (1 + n_u)), 0.0)
                assert W[u, i] == pytest.approx(want, abs=1e-12)
    B = R.copy()
    B.data[:] = 1.0
    plain = ItemKNN(k=4, weighting="none").fit(B)
    assert plain.weighting_ == "none"
    np.testing.assert_array_equal(plain.similarity_.toarray(),
                                  item_similarity(B, "cosine", k=4).toarray())
    # explicit ratings keep the rating similarity unweighted under "auto"
    assert ItemKNN().fit(R).weighting_ == "none"
    with pytest.raises(ValueError, match="weighting"):
        ItemKNN(weighting="bm25")


def test_argmax_per_segment_fast_path_equals_the_sort():
    """The one-pass path (segments in order, labels ascending inside) and the general sort
    give the same answer, ties to the smaller label, masked entries ignored."""
    from shopreco.engine.knn import _argmax_per_segment

    rng = np.random.default_rng(5)
    lens = rng.integers(0, 6, 40)
    seg = np.repeat(np.arange(40), lens)
    label = np.concatenate([np.sort(rng.choice(30, n, replace=False)) for n in lens])
    value = rng.integers(0, 3, seg.size).astype(float)  # many ties
    mask = rng.random(seg.size) < 0.8
    fast = _argmax_per_segment(seg, label, value, mask, 40)
    shuffled = rng.permutation(seg.size)  # not in order: the general path
    slow = _argmax_per_segment(seg[shuffled], label[shuffled], value[shuffled],
                               mask[shuffled], 40)
    np.testing.assert_array_equal(fast, slow)
    for s in range(40):
        sel = (seg == s) & mask
        if not sel.any():
            assert fast[s] == -1
        else:
            best = value[sel].max()
            assert fast[s] == label[sel][value[sel] == best].min()
