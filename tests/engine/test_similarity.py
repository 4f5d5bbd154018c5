"""Similarities against loop implementations of the formulas, and block sharding."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from shopreco.engine import (
    _sparse,
    fit_baselines,
    item_similarity,
    item_similarity_block,
    prepare,
    similarity,
    user_similarity,
)

from . import bruteforce as bf


def random_ratings(seed, n_users=12, n_items=9, density=0.45, integer=True):
    """Random ratings with the awkward cases built in: an empty user, an empty item,
    a user with constant ratings, and an item with a single rating."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    vals = rng.integers(1, 6, size=mask.shape).astype(float) if integer else (
        rng.random(mask.shape) * 4.5 + 0.5)
    mask[0, :] = False  # empty user
    mask[:, 1] = False  # empty item
    mask[2, 2] = True  # item 2 rated once...
    mask[3:, 2] = False
    mask[:2, 2] = False
    mask[4, :] = rng.random(n_items) < 0.8
    vals[4, :] = 3.0  # constant user
    rows, cols = np.nonzero(mask)
    return sp.csr_matrix((vals[rows, cols], (rows, cols)), shape=mask.shape)


SEEDS = [0, 1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", ["pearson", "adjusted_cosine", "cosine"])
@pytest.mark.parametrize("shrinkage", [0.0, 2.5])
def test_item_similarity_matches_formula(seed, method, shrinkage):
    R = random_ratings(seed, integer=seed % 2 == 0)
    got = item_similarity(R, method=method, shrinkage=shrinkage).toarray()
    want = bf.item_sim(R, method, shrinkage)
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_pearson_baseline_matches_formula(seed):
    R = random_ratings(seed)
    b = fit_baselines(R)
    got = item_similarity(R, method="pearson_baseline", shrinkage=1.0).toarray()
    want = bf.item_sim(R, "pearson_baseline", 1.0,
                       baseline=lambda u, i: b.mu + b.user_bias[u] + b.item_bias[i])
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)
    got_u = user_similarity(R, method="pearson_baseline").toarray()
    want_u = bf.user_sim(R, "pearson_baseline",
                         baseline=lambda u, i: b.mu + b.user_bias[u] + b.item_bias[i])
    np.testing.assert_allclose(got_u, want_u, atol=1e-9, rtol=0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shrinkage", [0.0, 2.0])
@pytest.mark.parametrize("support", [None, 0.0, 3.0])
def test_cosine_baseline_matches_formula(seed, shrinkage, support):
    """Full-vector cosine of baseline residuals, times sqrt(n / (n + beta)) per object
    (beta 10 when prepare is not given one), times the co-count shrinkage if asked."""
    R = random_ratings(seed, integer=seed % 2 == 0)
    b = fit_baselines(R)
    base = lambda u, i: b.mu + b.user_bias[u] + b.item_bias[i]  # noqa: E731
    beta = 10.0 if support is None else support
    got = item_similarity(prepare(R, "cosine_baseline", support_shrinkage=support),
                          shrinkage=shrinkage).toarray()
    want = bf.item_sim(R, "cosine_baseline", shrinkage, baseline=base, support=beta)
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)
    got_u = user_similarity(prepare(R, "cosine_baseline", kind="user",
                                    support_shrinkage=support), shrinkage=shrinkage).toarray()
    want_u = bf.user_sim(R, "cosine_baseline", shrinkage, baseline=base, support=beta)
    np.testing.assert_allclose(got_u, want_u, atol=1e-9, rtol=0)
    assert (want != 0).any() and (want < 0).any()  # the data exercises both signs
    if support is None:  # the plain call prepares with the default
        np.testing.assert_array_equal(
            item_similarity(R, method="cosine_baseline", shrinkage=shrinkage).toarray(), got)


def test_support_shrinkage_is_checked():
    R = random_ratings(0)
    for bad in (-1, "10", float("nan"), True):
        with pytest.raises(ValueError, match="support_shrinkage must be a finite number"):
            prepare(R, "cosine_baseline", support_shrinkage=bad)
    with pytest.raises(ValueError, match="support_shrinkage applies to"):
        prepare(R, "pearson_baseline", support_shrinkage=5)
    # plain cosine takes it too, and keeps none by default
    np.testing.assert_allclose(
        item_similarity(prepare(R, "cosine", support_shrinkage=0.0)).toarray(),
        item_similarity(R, method="cosine").toarray(), atol=0)
    n = np.diff(R.tocsc().indptr)
    g = np.sqrt(n / (n + 4.0))
    np.testing.assert_allclose(
        item_similarity(prepare(R, "cosine", support_shrinkage=4.0)).toarray(),
        item_similarity(R, method="cosine").toarray() * np.outer(g, g), atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", ["pearson", "cosine"])
@pytest.mark.parametrize("shrinkage", [0.0, 4.0])
def test_user_similarity_matches_formula(seed, method, shrinkage):
    R = random_ratings(seed, integer=seed % 2 == 1)
    got = user_similarity(R, method=method, shrinkage=shrinkage).toarray()
    want = bf.user_sim(R, method, shrinkage)
    np.testing.assert_allclose(got, want, atol=1e-9, rtol=0)


def test_baselines_are_the_regularised_als_fixed_point():
    """After enough sweeps each bias is the regularised mean of its residuals."""
    R = random_ratings(5)
    b = fit_baselines(R, n_epochs=200)
    V, M = bf.dense(R)
    for i in range(R.shape[1]):
        us = [u for u in range(R.shape[0]) if M[u, i]]
        want = sum(V[u, i] - b.mu - b.user_bias[u] for u in us) / (10.0 + len(us))
        assert b.item_bias[i] == pytest.approx(want, abs=1e-9)
    for u in range(R.shape[0]):
        its = [i for i in range(R.shape[1]) if M[u, i]]
        want = sum(V[u, i] - b.mu - b.item_bias[i] for i in its) / (15.0 + len(its))
        assert b.user_bias[u] == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_keeps_the_largest_per_row(k):
    R = random_ratings(7, n_users=20, n_items=12)
    full = item_similarity(R, method="pearson").toarray()
    got = item_similarity(R, method="pearson", k=k)
    assert np.diff(got.indptr).max() <= k
    np.testing.assert_array_equal(got.toarray(), bf.topk_dense(full, k))


def test_top_k_breaks_ties_by_column():
    M = sp.csr_matrix(np.array([[0.5, 0.9, 0.5, 0.5, -0.2], [0.0, 0.0, 0.0, 0.0, -0.3]]))
    got = _sparse.topk_rows(M, 2).toarray()
    np.testing.assert_array_equal(got, [[0.5, 0.9, 0, 0, 0], [0, 0, 0, 0, -0.3]])


def _assert_bitwise(a, b):
    a, b = sp.csr_matrix(a), sp.csr_matrix(b)
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.data.tobytes() == b.data.tobytes()


@pytest.mark.parametrize("method", ["pearson", "adjusted_cosine", "cosine", "pearson_baseline",
                                    "cosine_baseline"])
def test_blocks_are_bitwise_equal_to_whole(method, monkeypatch):
    R = random_ratings(11, n_users=60, n_items=40, density=0.3)
    whole = item_similarity(R, method=method, shrinkage=3.0, k=5)
    P = prepare(R, method)
    rng = np.random.default_rng(0)
    for _ in range(3):
        cuts = np.unique(np.r_[0, rng.integers(0, 40, size=4), 40])
        parts = [item_similarity_block(P, a, b, shrinkage=3.0, k=5)
                 for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        _assert_bitwise(sp.vstack(parts, format="csr"), whole)
    single = item_similarity_block(R, 7, 23, method=method, shrinkage=3.0, k=5)
    _assert_bitwise(single, whole[7:23])
    # force tiny scratch blocks: the sparse (sorted-keys) paths must agree bitwise too
    monkeypatch.setattr(similarity, "DENSE_BLOCK_CELLS", 50)
    monkeypatch.setattr(_sparse, "DENSE_BLOCK_CELLS", 50)
    _assert_bitwise(item_similarity(R, method=method, shrinkage=3.0, k=5, n_jobs=2), whole)
    # and large blocks that are too sparse for dense scratch
    monkeypatch.setattr(similarity, "DENSE_BLOCK_CELLS", 10**6)
    monkeypatch.setattr(similarity, "DENSE_MIN_FILL", 10**6)
    _assert_bitwise(item_similarity(R, method=method, shrinkage=3.0, k=5, n_jobs=2), whole)


def test_dense_and_sorted_top_k_paths_agree():
    rng = np.random.default_rng(3)
    M = sp.random(30, 50, density=0.6, random_state=rng, format="csr")
    M.data = np.round(M.data * 4) / 4  # many ties
    a = _sparse.topk_rows(M, 4)
    D = M.toarray()
    _assert_bitwise(_sparse.topk_dense_block(D, 4), a)
    rows, cols = _sparse.row_ids(M), M.indices.astype(np.int64)
    r, c, v = bf.topk_sorted(rows, cols, M.data, 30, 4)
    b = sp.csr_matrix((v, (r, c)), shape=M.shape)
    np.testing.assert_array_equal(a.toarray(), b.toarray())


def test_bad_arguments_name_the_field():
    R = random_ratings(0)
    with pytest.raises(ValueError, match="method"):
        item_similarity(R, method="jaccardish")
    with pytest.raises(ValueError, match="shrinkage"):
        item_similarity(R, shrinkage=-1)
    with pytest.raises(ValueError, match="k must"):
        item_similarity(R, k=0)
    with pytest.raises(ValueError, match="start"):
        item_similarity_block(R, 5, 2)
    with pytest.raises(TypeError, match="R must"):
        item_similarity([[1, 2]])
    with pytest.raises(ValueError, match="adjusted_cosine"):
        user_similarity(R, method="adjusted_cosine")


# The worked example (users x items; "." = not rated), computed by hand below.
#
#        i0  i1  i2  i3
#   u0    5   3   .   1
#   u1    4   .   .   1
#   u2    1   1   .   5
#   u3    1   .   .   4
#   u4    .   1   5   4
WORKED = sp.csr_matrix(np.array([
    [5, 3, 0, 1],
    [4, 0, 0, 1],
    [1, 1, 0, 5],
    [1, 0, 0, 4],
    [0, 1, 5, 4],
], dtype=float))


def test_worked_example_item_pearson():
    S = item_similarity(WORKED, method="pearson").toarray()
    # item means: i0 = 11/4 = 2.75, i1 = 5/3, i3 = 15/5 = 3
    # sim(i0, i3): co-raters u0..u3, deviations i0 = (2.25, 1.25, -1.75, -1.75),
    #   i3 = (-2, -2, 2, 1); num = -4.5 - 2.5 - 3.5 - 1.75 = -12.25,
    #   sums of squares 12.75 and 13
    assert S[0, 3] == pytest.approx(-12.25 / math.sqrt(12.75 * 13), abs=1e-12)
    # sim(i0, i1): co-raters u0, u2: i0 dev (2.25, -1.75), i1 dev (4/3, -2/3);
    #   num = 3 + 7/6 = 25/6; squares 8.125 and 20/9
    assert S[0, 1] == pytest.approx((25 / 6) / math.sqrt(8.125 * 20 / 9), abs=1e-12)
    # sim(i1, i3): co-raters u0, u2, u4: i1 dev (4/3, -2/3, -2/3), i3 dev (-2, 2, 1);
    #   num = -8/3 - 4/3 - 2/3 = -14/3; squares 24/9 and 9
    assert S[1, 3] == pytest.approx((-14 / 3) / math.sqrt(24 / 9 * 9), abs=1e-12)
    # i2 is rated once (u4, deviation 0): every similarity with it is 0
    assert not S[2].any() and not S[:, 2].any()
    np.testing.assert_allclose(S, S.T, atol=1e-15)
    assert S[0, 0] == 0  # the diagonal is not stored


def test_worked_example_cosine_and_user_pearson():
    C = item_similarity(WORKED, method="cosine").toarray()
    # i0 = (5,4,1,1,0), i3 = (1,1,5,4,4): dot 18, norms sqrt(43), sqrt(59)
    assert C[0, 3] == pytest.approx(18 / math.sqrt(43 * 59), abs=1e-12)
    U = user_similarity(WORKED, method="pearson").toarray()
    # user means: u0 = 3, u1 = 2.5, u2 = 7/3, u3 = 2.5, u4 = 10/3
    # u0/u1 on i0, i3: (2, -2) vs (1.5, -1.5) -> exactly 1
    assert U[0, 1] == pytest.approx(1.0, abs=1e-12)
    # u0/u3 on i0, i3: (2, -2) vs (-1.5, 1.5) -> exactly -1
    assert U[0, 3] == pytest.approx(-1.0, abs=1e-12)
    # u0/u2 on i0, i1, i3: (2, 0, -2) vs (-4/3, -4/3, 8/3): num -8, squares 8 and 32/3
    assert U[0, 2] == pytest.approx(-math.sqrt(3) / 2, abs=1e-12)
    # u0/u4 on i1, i3: (0, -2) vs (-7/3, 2/3): num -4/3, squares 4 and 53/9
    assert U[0, 4] == pytest.approx(-2 / math.sqrt(53), abs=1e-12)
    # u1/u4 share only i3: a single co-rated item gives +-1 (here -1)...
    assert U[1, 4] == pytest.approx(-1.0, abs=1e-12)
    # ...which shrinkage damps by n/(n + 2) = 1/3
    Us = user_similarity(WORKED, method="pearson", shrinkage=2).toarray()
    assert Us[1, 4] == pytest.approx(-1 / 3, abs=1e-12)


@pytest.mark.skipif(similarity._sp_matmul_topn is None, reason="sparse_dot_topn not installed")
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("tops", ["default", "narrow then whole rows", "whole rows",
                                  "one, then narrow, then whole rows"])
@pytest.mark.parametrize("ids", ["as drawn", "popular first"])
def test_fused_cosine_top_k_equals_the_scipy_path(binary, tops, ids, monkeypatch):
    """sparse_dot_topn's fused top-n gives the same neighbours (ties included: binary data
    ties a lot), the formula's values, and blocks bitwise equal to the whole, whichever
    passes settle the rows, and whether the rows go to the kernel in their own order or
    dealt out between threads (popular products on the smallest ids)."""
    widths = {"narrow then whole rows": lambda k: (k + 2, None),
              "whole rows": lambda k: (None,),
              # a first pass that settles almost no row: the second gets them all again
              "one, then narrow, then whole rows": lambda k: (1, k + 2, None)}
    if tops != "default":
        monkeypatch.setattr(similarity, "_FUSED_TOPS", widths[tops])
    R = random_ratings(5, n_users=80, n_items=60, density=0.15)
    if binary:
        R.data[:] = 1.0
    popularity = np.diff(R.tocsc().indptr)
    if ids == "popular first":
        R = R[:, np.argsort(-popularity, kind="stable")].tocsr()
        popularity = np.diff(R.tocsc().indptr)
    dealt = similarity._balanced_rows(popularity, 2)
    assert (dealt is None) == (ids == "as drawn")  # both kernel inputs are exercised
    full = bf.item_sim(R, "cosine")
    np.fill_diagonal(full, 0.0)
    for k in (1, 3, 8):
        fused = item_similarity(R, method="cosine", k=k, n_jobs=2)
        r, c = fused.nonzero()
        np.testing.assert_allclose(fused.data, full[r, c], rtol=1e-12)
        np.testing.assert_array_equal(np.diff(fused.indptr),
                                      np.minimum((full != 0).sum(axis=1), k))
        with monkeypatch.context() as m:
            m.setattr(similarity, "USE_FUSED_TOPN", False)
            plain = item_similarity(R, method="cosine", k=k)
        np.testing.assert_array_equal(fused.indptr, plain.indptr)
        np.testing.assert_array_equal(fused.indices, plain.indices)
        np.testing.assert_allclose(fused.data, plain.data, rtol=1e-12)
        P = prepare(R, "cosine")
        parts = [item_similarity_block(P, a, min(a + 7, 60), k=k) for a in range(0, 60, 7)]
        _assert_bitwise(sp.vstack(parts, format="csr"), fused)


@pytest.mark.skipif(similarity._sp_matmul_topn is None, reason="sparse_dot_topn not installed")
@pytest.mark.parametrize("tops", ["default", "whole rows", "one, then narrow, then whole rows"])
@pytest.mark.parametrize("method", ["cosine_baseline", "cosine"])
def test_fused_top_k_with_signed_values_keeps_the_positive_ones(tops, method, monkeypatch):
    """Signed data (baseline residuals; cosine of centred values) goes through the fused
    kernel only with positive_only: the same neighbours and values as the scipy path,
    nothing <= 0, and blocks bitwise equal to the whole, whichever pass settles a row."""
    widths = {"whole rows": lambda k: (None,),
              "one, then narrow, then whole rows": lambda k: (1, k + 2, None)}
    if tops != "default":
        monkeypatch.setattr(similarity, "_FUSED_TOPS", widths[tops])
    R = random_ratings(6, n_users=80, n_items=60, density=0.2)
    if method == "cosine":
        R.data -= 3.0
    P = prepare(R, method)
    assert not P.nonneg
    calls = []
    real = similarity._fused_cosine_topk
    monkeypatch.setattr(similarity, "_fused_cosine_topk",
                        lambda *a: calls.append(a[1:3]) or real(*a))
    for k in (1, 4, 15):
        fused = item_similarity(P, k=k, positive_only=True, n_jobs=2)
        assert calls and fused.data.min() > 0
        with monkeypatch.context() as m:
            m.setattr(similarity, "USE_FUSED_TOPN", False)
            plain = item_similarity(P, k=k, positive_only=True)
        np.testing.assert_array_equal(fused.indptr, plain.indptr)
        np.testing.assert_array_equal(fused.indices, plain.indices)
        np.testing.assert_allclose(fused.data, plain.data, rtol=1e-12)
        parts = [item_similarity_block(P, a, min(a + 7, 60), k=k, positive_only=True)
                 for a in range(0, 60, 7)]
        _assert_bitwise(sp.vstack(parts, format="csr"), fused)
    calls.clear()
    signed = item_similarity(P, k=59)  # negative neighbours wanted: not the fused kernel
    assert not calls and signed.data.min() < 0


@pytest.mark.skipif(similarity._sp_matmul_topn is None, reason="sparse_dot_topn not installed")
def test_fused_whole_rows_survive_sums_that_cancel_to_zero(monkeypatch):
    """The whole-row pass on products with exact-zero sums (signed values; a stored zero
    weight) gives only real columns and the scipy path's neighbours (sparse_dot_topn
    1.2.0's plain product left garbage entries there)."""
    monkeypatch.setattr(similarity, "_FUSED_TOPS", lambda k: (None,))
    R = sp.csr_matrix(np.array([[1.0, 1.0, 0.0, 2.0],
                                [1.0, -1.0, 1.0, 0.0],
                                [9.0, 3.0, 0.0, 1.0]]))
    R.data[R.data == 9.0] = 0.0  # a stored zero
    for positive_only, data in ((True, R.data.copy()), (False, np.abs(R.data))):
        M = sp.csr_matrix((data, R.indices, R.indptr), shape=R.shape)
        fused = item_similarity(M, method="cosine", k=3, positive_only=positive_only)
        with monkeypatch.context() as m:
            m.setattr(similarity, "USE_FUSED_TOPN", False)
            plain = item_similarity(M, method="cosine", k=3, positive_only=positive_only)
        fused.check_format(full_check=True)
        np.testing.assert_array_equal(fused.indptr, plain.indptr)
        np.testing.assert_array_equal(fused.indices, plain.indices)
        np.testing.assert_allclose(fused.data, plain.data, rtol=1e-12)


def test_fused_widths_grow_and_every_row_settles(monkeypatch):
    """Each width asked of the kernel is wider than the one before (small k included),
    and widths patched without a final whole-row pass still settle every row."""
    for k in range(1, 400):
        tops = similarity._FUSED_TOPS(k)
        assert tops[-1] is None and all(a < b for a, b in zip(tops[:-2], tops[1:-1], strict=True))
    if similarity._sp_matmul_topn is None:
        pytest.skip("sparse_dot_topn not installed")
    B = sp.csr_matrix(np.ones((6, 30)))  # 30 identical items: every cosine ties
    monkeypatch.setattr(similarity, "_FUSED_TOPS", lambda k: (k + 2,))
    got = item_similarity(B, method="cosine", k=1)
    with monkeypatch.context() as m:
        m.setattr(similarity, "USE_FUSED_TOPN", False)
        want = item_similarity(B, method="cosine", k=1)
    _assert_bitwise(got, want)
    assert np.diff(got.indptr).tolist() == [1] * 30


def test_whole_number_k_may_be_a_float():
    R = random_ratings(2, n_users=30, n_items=20)
    for method in ("pearson", "cosine"):
        _assert_bitwise(item_similarity(R, method=method, k=3.0),
                        item_similarity(R, method=method, k=3))


def test_top_k_rows_match_a_full_sort_and_leave_the_input_alone():
    """topk_rows (partition thresholds, ties to the smaller column) against the plain
    sort, on rows with many ties, unsorted columns and a dropped diagonal."""
    rng = np.random.default_rng(1)
    for trial in range(300):
        m, n = int(rng.integers(1, 40)), int(rng.integers(1, 300))
        M = sp.random(m, n, density=rng.random(), random_state=rng, format="csr")
        if trial % 2:
            M.data = np.round(M.data * rng.integers(1, 6)) / 4 - 0.3  # ties and zeros
        if trial % 3 == 0:  # columns in no particular order within each row
            perm = rng.permutation(n)
            M = sp.csr_matrix((M.data, perm[M.indices].astype(np.int32), M.indptr),
                              shape=(m, n))
        before = M.copy()
        k = int(rng.integers(1, 60))
        off = int(rng.integers(0, 5)) if trial % 4 == 0 else None
        got = _sparse.topk_rows(M, k, drop_offset=off)
        np.testing.assert_array_equal(M.data, before.data)
        np.testing.assert_array_equal(M.indices, before.indices)
        rows, cols = _sparse.row_ids(M), M.indices.astype(np.int64)
        keep = M.data != 0
        if off is not None:
            keep &= cols != rows + off
        r, c, v = bf.topk_sorted(rows[keep], cols[keep], M.data[keep], m, k)
        want = sp.csr_matrix((v, (r, c)), shape=M.shape)
        assert got.has_sorted_indices
        _assert_bitwise(got, want)


@pytest.mark.parametrize("method", ["pearson", "pearson_baseline", "cosine", "cosine_baseline"])
def test_positive_only_drops_non_positive_values_before_the_top_k(method):
    R = random_ratings(13, n_users=50, n_items=40, density=0.5)
    R.data = R.data - 2.5  # signed values: cosine has negative similarities too
    full = item_similarity(R, method=method, shrinkage=1.0)
    pos = full.multiply(full > 0).tocsr()
    want = _sparse.topk_rows(pos, 5)
    got = item_similarity(R, method=method, shrinkage=1.0, k=5, positive_only=True)
    assert (full.data < 0).any()
    assert got.data.min() > 0
    _assert_bitwise(got, want)
