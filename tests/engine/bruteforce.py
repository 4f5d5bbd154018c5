"""Loop-per-pair reference implementations of issue 3's formulas, for the tests only.

Deliberately naive: plain Python loops over dense arrays with an explicit "rated" mask,
written straight from the formulas so they share no code with the engine (the one
vectorised helper, :func:`topk_sorted`, sorts whole rows where the engine partitions).
"""

from __future__ import annotations

import math

import numpy as np


def dense(R):
    """(values, rated mask) of a sparse users x items matrix."""
    coo = R.tocoo()
    vals = np.zeros(R.shape)
    mask = np.zeros(R.shape, dtype=bool)
    for u, i, r in zip(coo.row, coo.col, coo.data, strict=True):
        vals[u, i] = r
        mask[u, i] = True
    return vals, mask


def _mean(values):
    return sum(values) / len(values) if values else 0.0


def pair_sim(a, ma, b, mb, centre_a, centre_b, shrinkage=0.0, restricted=True):
    """Generic co-rated similarity of two vectors with per-entry centring values."""
    common = [x for x in range(len(a)) if ma[x] and mb[x]]
    num = sum((a[x] - centre_a[x]) * (b[x] - centre_b[x]) for x in common)
    if restricted:
        da = math.sqrt(sum((a[x] - centre_a[x]) ** 2 for x in common))
        db = math.sqrt(sum((b[x] - centre_b[x]) ** 2 for x in common))
    else:
        da = math.sqrt(sum((a[x] - centre_a[x]) ** 2 for x in range(len(a)) if ma[x]))
        db = math.sqrt(sum((b[x] - centre_b[x]) ** 2 for x in range(len(b)) if mb[x]))
    if not common or da == 0 or db == 0:
        return 0.0
    s = num / (da * db)
    if shrinkage:
        s *= len(common) / (len(common) + shrinkage)
    return s


def _support(n, beta):
    """cosine_baseline's per-object factor sqrt(n / (n + beta))."""
    return math.sqrt(n / (n + beta)) if n + beta > 0 else 0.0


def item_sim(R, method, shrinkage=0.0, baseline=None, support=0.0):
    V, M = dense(R)
    n_u, n_i = V.shape
    user_mean = [_mean([V[u, i] for i in range(n_i) if M[u, i]]) for u in range(n_u)]
    item_mean = [_mean([V[u, i] for u in range(n_u) if M[u, i]]) for i in range(n_i)]
    S = np.zeros((n_i, n_i))
    for i in range(n_i):
        for j in range(n_i):
            if i == j:
                continue
            a, b, ma, mb = V[:, i], V[:, j], M[:, i], M[:, j]
            if method == "pearson":
                ca, cb = [item_mean[i]] * n_u, [item_mean[j]] * n_u
                S[i, j] = pair_sim(a, ma, b, mb, ca, cb, shrinkage)
            elif method == "adjusted_cosine":
                S[i, j] = pair_sim(a, ma, b, mb, user_mean, user_mean, shrinkage)
            elif method == "pearson_baseline":
                ca = [baseline(u, i) for u in range(n_u)]
                cb = [baseline(u, j) for u in range(n_u)]
                S[i, j] = pair_sim(a, ma, b, mb, ca, cb, shrinkage)
            elif method == "cosine":
                z = [0.0] * n_u
                S[i, j] = pair_sim(a, ma, b, mb, z, z, shrinkage, restricted=False)
            elif method == "cosine_baseline":
                ca = [baseline(u, i) for u in range(n_u)]
                cb = [baseline(u, j) for u in range(n_u)]
                S[i, j] = (pair_sim(a, ma, b, mb, ca, cb, shrinkage, restricted=False)
                           * _support(sum(ma), support) * _support(sum(mb), support))
    return S


def user_sim(R, method, shrinkage=0.0, baseline=None, support=0.0):
    V, M = dense(R)
    n_u, n_i = V.shape
    user_mean = [_mean([V[u, i] for i in range(n_i) if M[u, i]]) for u in range(n_u)]
    S = np.zeros((n_u, n_u))
    for u in range(n_u):
        for v in range(n_u):
            if u == v:
                continue
            a, b, ma, mb = V[u], V[v], M[u], M[v]
            if method == "pearson":
                S[u, v] = pair_sim(a, ma, b, mb, [user_mean[u]] * n_i, [user_mean[v]] * n_i,
                                   shrinkage)
            elif method == "pearson_baseline":
                ca = [baseline(u, i) for i in range(n_i)]
                cb = [baseline(v, i) for i in range(n_i)]
                S[u, v] = pair_sim(a, ma, b, mb, ca, cb, shrinkage)
            elif method == "cosine":
                z = [0.0] * n_i
                S[u, v] = pair_sim(a, ma, b, mb, z, z, shrinkage, restricted=False)
            elif method == "cosine_baseline":
                ca = [baseline(u, i) for i in range(n_i)]
                cb = [baseline(v, i) for i in range(n_i)]
                S[u, v] = (pair_sim(a, ma, b, mb, ca, cb, shrinkage, restricted=False)
                           * _support(sum(ma), support) * _support(sum(mb), support))
    return S


def topk_sorted(rows, cols, vals, n_rows, k):
    """Top-k of (row, column, value) entries by a full sort of each row (value desc, column
    asc): the selection the engine's partition-based top-k must reproduce."""
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=starts[1:])
    rank = np.arange(rows.size) - starts[rows]
    keep = rank < k
    return rows[keep], cols[keep], vals[keep]


def topk_dense(S, k):
    """Keep the k largest non-zero values per row (ties: smaller column first)."""
    out = np.zeros_like(S)
    for r in range(S.shape[0]):
        cand = [(-S[r, c], c) for c in range(S.shape[1]) if S[r, c] != 0]
        for _neg, c in sorted(cand)[:k]:
            out[r, c] = S[r, c]
    return out


def predict(R, S, u, i, k, kind="item", centre=None, positive_only=False, fallback=None,
            damping=0.0):
    """Issue 3's prediction formula with a loop over candidate neighbours.

    ``centre(obj)`` gives the centring value of a rating by/of ``obj``; for baseline
    centring pass ``centre`` as a function of (u, i) via ``kind`` handling below.
    """
    V, M = dense(R)
    if kind == "item":
        cands = [(S[i, j], j) for j in range(V.shape[1]) if M[u, j] and j != i]
    else:
        cands = [(S[u, v], v) for v in range(V.shape[0]) if M[v, i] and v != u]
    cands = [c for c in cands if c[0] != 0 and (c[0] > 0 or not positive_only)]
    cands.sort(key=lambda t: (-t[0], t[1]))
    cands = cands[:k]
    den = sum(abs(s) for s, _ in cands)
    if not cands or den == 0:
        return fallback(u, i)
    if kind == "item":
        num = sum(s * (V[u, j] - centre(u, j)) for s, j in cands)
    else:
        num = sum(s * (V[v, i] - centre(v, i)) for s, v in cands)
    return centre(u, i) + num / (den + damping)
