"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a ranking model.

Item weights ``B = I - P diag(1 / diag(P))`` with ``P = (X^T X + lambda I)^-1``, i.e.
``B[i, j] = -P[i, j] / P[j, j]`` off the diagonal and 0 on it; a user's scores are
``x_u @ B``. It is the closed-form least-squares fit of "predict each item from all the
others", and one of the strongest simple top-N baselines. ``P`` comes from a float32
Cholesky factorisation (LAPACK ``potrf`` + ``potri``, in place): less time and half the
memory of ``numpy.linalg.inv`` (bench/RESULTS.md compares them).

The dense solve is cubic in the number of items, so only the ``max_items`` most
interacted items (the *head*) go into it. The others (the *tail*) are scored by an
item-item cosine over the same weights (TF-IDF weighted, as :class:`~.knn.ItemKNN` does on
implicit data, and shrunk by co-occurrence), its rows scaled by one factor (the median
ratio of the head's top EASE weight to its top cosine) so the two scores share a scale.
Tail items are rare by definition, so the merge matters for coverage and for their own
"similar" lists more than for accuracy.

``max_neighbours`` keeps the largest weights of each row (a sparse ``similarity_`` like
ItemKNN's, which a database table or a file can hold and a per-user refresh reads); the
scores are then ``x_u @ top_k(B)``. ``None`` keeps ``B`` dense (exact scores; memory
items^2 floats).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ._sparse import (
    as_csr,
    entry_keys,
    lookup,
    row_ids,
    segment_ranges,
    topk_dense_block,
    topk_rows,
)
from .knn import _CHUNK, ItemKNN, _argmax_per_segment, _chunk_bounds, _top_of_row, tfidf_weight
from .similarity import item_similarity

# Items in the dense solve by default (memory ~ 2 * items^2 * 4 bytes at the peak).
DEFAULT_MAX_ITEMS = 10_000
# Rows of the dense weights pruned at a time (bounds the scratch of the top-k pass).
_PRUNE_ROWS = 512


# Below this many items the solve runs on one BLAS thread: a multithreaded LAPACK call on a
# small matrix costs more in thread wake-ups than it saves, and on a busy machine (a worker
# pool sharing the cores) it can be much slower than one thread.
SMALL_SOLVE = 2048


def blas_threads(n_items: int, n_jobs: int | None = None):
    """Context manager limiting the BLAS threads for a solve of ``n_items`` (1 for a small
    one, ``n_jobs`` otherwise; None leaves the BLAS default)."""
    from contextlib import nullcontext

    limit = 1 if n_items <= SMALL_SOLVE else n_jobs
    if limit is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(limit), user_api="blas")


def ease_weights(X, lambda_: float = 200.0, dtype=np.float32,
                 n_jobs: int | None = None) -> np.ndarray:
    """Dense EASE weights of ``X`` (users x items): ``B`` as defined in the module
    docstring, diagonal zero, in ``dtype`` (float32 by default). ``n_jobs``: BLAS threads
    for a large solve (None: the BLAS default); a small one always runs on one."""
    X = as_csr(X)
    if not np.isfinite(lambda_) or lambda_ <= 0:
        raise ValueError(f"lambda_ must be a number > 0, got {lambda_!r}")
    n = X.shape[1]
    if n == 0:
        return np.zeros((0, 0), dtype=dtype)
    with blas_threads(n, n_jobs):
        return _solve(X, float(lambda_), dtype)


def _solve(X: sp.csr_matrix, lambda_: float, dtype) -> np.ndarray:
    n = X.shape[1]
    G = gram(X, dtype)
    G[np.diag_indices(n)] += dtype(lambda_)
    potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (G,))
    # Fortran order for LAPACK: G is symmetric, so its transpose view is the same matrix.
    c, info = potrf(G.T, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: Gram matrix not positive definite (potrf {info})")
    P, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: inverse failed (potri {info})")
    P = P.T  # C order again; potri filled the upper triangle (column-major) = our lower
    _mirror_lower(P)
    d = np.diag(P).copy()
    P /= -d[None, :]  # B = -P / diag(P) column-wise
    P[np.diag_indices(n)] = 0.0
    return P


def gram(X: sp.csr_matrix, dtype=np.float32, block: int = 1024) -> np.ndarray:
    """Dense ``X^T X`` built by column blocks, so the sparse intermediate never holds more
    than ``block`` columns of it (co-occurrence is dense for a popular head)."""
    n = X.shape[1]
    G = np.zeros((n, n), dtype=dtype)
    Xt = X.T.tocsr().astype(dtype)
    Xc = X.tocsc().astype(dtype)
    for a in range(0, n, block):
        G[:, a:a + block] = (Xt @ Xc[:, a:a + block]).toarray()
    return G


def _mirror_lower(P: np.ndarray, block: int = 1024) -> None:
    """Copy the lower triangle onto the upper one, in place, by row blocks (an index array
    of the whole triangle would take more memory than the matrix)."""
    n = P.shape[0]
    for a in range(0, n, block):
        b = min(a + block, n)
        P[a:b, b:] = P[b:, a:b].T
        d = P[a:b, a:b]
        iu = np.triu_indices(b - a, 1)
        d[iu] = d.T[iu]


class EASE(ItemKNN):
    """EASE with the estimator surface of :class:`ItemKNN`: ``fit``, ``recommend``,
    ``recommend_with_reasons`` (reason: the user's item contributing most), ``explain`` and
    ``similar_items``. Built for top-N ranking: it has no rating prediction.

    - ``lambda_``: L2 regularisation, larger for larger, denser data. "auto": measured on a
      held-out fifth of the data (:func:`select_lambda`) when the head has at most
      ``SELECT_ITEMS`` items, so that a few solves are cheap; past that the rule of
      :func:`auto_lambda`. ``lambda_used_`` says what was used.
    - ``max_items``: items in the dense solve (the most interacted); the rest are the
      cosine-scored tail (see the module docstring). ``None``: every item.
    - ``max_neighbours``: weights kept per item row (``None``: dense, exact).
    - ``tail_k``: cosine neighbours per item for the tail; ``tail_shrinkage``: their
      co-occurrence shrinkage n / (n + tail_shrinkage), which keeps a tail item seen with
      a shopper's products once or twice from displacing the head's better-supported ones.
    - ``beta``: popularity penalty (RP3beta's exponent): every weight into item j is
      divided by (interactions of j) ** beta, so lists lean less on the bestsellers.
    """

    def __init__(self, lambda_: float | str = "auto", max_items: int | None = DEFAULT_MAX_ITEMS,
                 max_neighbours: int | None = 200, tail_k: int = 50, beta: float = 0.0,
                 tail_shrinkage: float = 10.0, n_jobs: int | None = None) -> None:
        if lambda_ != "auto" and (
                not isinstance(lambda_, (int, float, np.floating, np.integer))
                or isinstance(lambda_, bool) or not np.isfinite(lambda_) or lambda_ <= 0):
            raise ValueError(f"lambda_ must be 'auto' or a number > 0, got {lambda_!r}")
        if max_items is not None and (int(max_items) != max_items or max_items < 1):
            raise ValueError(f"max_items must be a positive integer or None, got {max_items!r}")
        k = max_neighbours if max_neighbours is not None else 1
        super().__init__(similarity="cosine", k=k, max_neighbours=max_neighbours,
                         n_jobs=n_jobs, weighting="none")
        if int(tail_k) != tail_k or tail_k < 1:
            raise ValueError(f"tail_k must be a positive integer, got {tail_k!r}")
        self.lambda_ = lambda_ if lambda_ == "auto" else float(lambda_)
        self.max_items = None if max_items is None else int(max_items)
        self.tail_k = int(tail_k)
        if not np.isfinite(beta) or beta < 0:
            raise ValueError(f"beta must be a number >= 0, got {beta!r}")
        self.beta = float(beta)
        if not np.isfinite(tail_shrinkage) or tail_shrinkage < 0:
            raise ValueError(f"tail_shrinkage must be a number >= 0, got {tail_shrinkage!r}")
        self.tail_shrinkage = float(tail_shrinkage)

    @classmethod
    def from_parts(cls, R, head: np.ndarray, weights: np.ndarray | None,
                   similarity: sp.spmatrix, **params) -> EASE:
        """A fitted model from stored parts (what :meth:`parts` returned), with ``R`` the
        users whose lists are wanted: no solve, the same scores as the fitted original."""
        model = cls(max_neighbours=None if weights is not None else
                    params.pop("max_neighbours", 200), **params)
        model.__dict__["_parts"] = (np.asarray(head, dtype=np.int64), weights)
        return model.fit(R, similarity=similarity)

    def parts(self) -> tuple[np.ndarray, np.ndarray | None, sp.csr_matrix]:
        """(head items, dense head weights or None, sparse similarity): what
        :meth:`from_parts` needs to score without solving again."""
        self._check_fitted()
        return self.head_, self.__dict__.get("weights_"), self.similarity_

    def fit(self, R, similarity: sp.spmatrix | None = None) -> EASE:
        """Fit on ``R`` (users x items preference weights); ``similarity`` replaces the
        computed weights (e.g. a pruned matrix read back from storage)."""
        parts = self.__dict__.pop("_parts", None)
        self.__dict__.pop("weights_", None)
        super().fit(R, similarity=similarity)
        if parts is not None:
            self.head_, weights = parts
            if weights is not None:
                self.weights_ = weights
        self.method_ = "ease"
        return self

    def _compute_similarity(self, R: sp.csr_matrix, method: str) -> sp.csr_matrix:
        n = R.shape[1]
        support = np.bincount(R.indices, minlength=n)
        head = head_items(support, self.max_items)
        self.head_ = head
        self.lambda_scores_ = {}
        Rh = R[:, head]
        lam = self.lambda_
        if lam == "auto":
            lam = auto_lambda(R)
            if 0 < head.size <= SELECT_ITEMS:
                with blas_threads(head.size, self.n_jobs):
                    lam, self.lambda_scores_ = select_lambda(Rh, beta=self.beta)
        self.lambda_used_ = lam
        B = ease_weights(Rh, lam, n_jobs=self.n_jobs)
        if self.beta:
            B *= (support[head].astype(B.dtype) ** -B.dtype.type(self.beta))[None, :]
        if self.max_neighbours_ is None:
            self.weights_ = B  # the similarity holds the tail only
            S = sp.csr_matrix((n, n))
        else:
            S = _prune(B, head, n, self.max_neighbours_)
        if head.size < n:
            S = S + self._tail(R, head, B, support)
        return S.tocsr()

    def _tail(self, R: sp.csr_matrix, head: np.ndarray, B: np.ndarray,
              support: np.ndarray) -> sp.csr_matrix:
        """Cosine rows and columns for the items outside the head, on the head's scale."""
        n = R.shape[1]
        C = item_similarity(tfidf_weight(R), method="cosine", shrinkage=self.tail_shrinkage,
                            k=self.tail_k, n_jobs=self.n_jobs)
        in_head = np.zeros(n, dtype=bool)
        in_head[head] = True
        C = C.tocoo()
        keep = ~(in_head[C.row] & in_head[C.col])  # head-head pairs are EASE's
        vals = C.data * tail_scale(B, C, in_head)
        if self.beta:
            vals = vals * np.maximum(support[C.col], 1).astype(np.float64) ** -self.beta
        T = sp.csr_matrix((vals[keep], (C.row[keep], C.col[keep])), shape=(n, n))
        return topk_rows(T, self.tail_k)

    # ------------------------------------------------------------ dense scoring
    def _head_pos(self) -> np.ndarray:
        pos = self.__dict__.get("_head_pos_a")
        if pos is None:
            pos = np.full(self.n_items_, -1, dtype=np.int64)
            pos[self.head_] = np.arange(self.head_.size)
            self._head_pos_a = pos
        return pos

    def _scores(self, users: np.ndarray) -> sp.csr_matrix:
        if "weights_" not in self.__dict__:
            return super()._scores(users)
        return sp.csr_matrix(self._dense_sum(users))

    def _dense_sum(self, users: np.ndarray) -> np.ndarray:
        W = self.weights_
        X = self._weights(users)
        out = np.zeros((users.size, self.n_items_))
        out[:, self.head_] = X[:, self.head_].astype(W.dtype) @ W
        if self.similarity_.nnz:
            out += (X @ self.similarity_).toarray()  # the tail
        return out

    def _dense_scores(self, users: np.ndarray) -> np.ndarray:
        if "weights_" not in self.__dict__:
            return super()._dense_scores(users)
        out = self._dense_sum(users)
        out[out == 0] = -np.inf  # as from sparse scores: a zero is no candidate
        return out

    def _contributions(self, users: np.ndarray, items: np.ndarray, tail_keys=None):
        """Per (user, item) pair, every item j of the user with weight(u, j) * B[j, i]:
        (segment, j, contribution). ``tail_keys``: ``entry_keys`` of the tail rows, when a
        caller asks chunk after chunk."""
        X = self.R_
        seg, pos, _ = segment_ranges(X.indptr, users)
        j = X.indices[pos].astype(np.int64)
        i = items[seg]
        W = self.__dict__.get("weights_")
        contrib = np.zeros(j.size)
        if W is not None:
            hp = self._head_pos()
            hj, hi = hp[j], hp[i]
            both = (hj >= 0) & (hi >= 0)
            contrib[both] = W[hj[both], hi[both]]
        S = self.similarity_
        keys = entry_keys(S) if tail_keys is None else tail_keys
        found, v = lookup(keys, S.data, j * np.int64(S.shape[1]) + i)
        contrib += np.where(found, v, 0.0)
        return seg, j, contrib * X.data[pos]

    def _reasons(self, users, items):
        if "weights_" not in self.__dict__:
            return super()._reasons(users, items)
        flat_u = np.repeat(users, items.shape[1])
        flat_i = items.ravel()
        reasons = np.full(flat_i.size, -1, dtype=np.int64)
        valid = np.flatnonzero(flat_i >= 0)
        lens = np.diff(self.R_.indptr)[flat_u[valid]]
        bounds = _chunk_bounds(lens, _CHUNK)
        keys = entry_keys(self.similarity_)
        for a, z in zip(bounds[:-1], bounds[1:], strict=True):
            sel = valid[a:z]
            seg, j, contrib = self._contributions(flat_u[sel], flat_i[sel], keys)
            reasons[sel] = _argmax_per_segment(seg, j, contrib, contrib > 0, sel.size)
        return reasons.reshape(items.shape)

    def explain(self, user_idx: int, item_idx: int, top: int = 3) -> list[tuple[int, float]]:
        """Items of the user that lift ``item_idx`` most: [(item, weight * B[item, i])]."""
        self._check_fitted()
        _, j, contrib = self._contributions(np.array([user_idx], dtype=np.int64),
                                            np.array([item_idx], dtype=np.int64))
        ok = contrib > 0
        j, contrib = j[ok], contrib[ok]
        order = np.lexsort((j, -contrib))[:top]
        return [(int(j[o]), float(contrib[o])) for o in order]

    def similar_items(self, item_idx: int, n: int = 10) -> list[tuple[int, float]]:
        """Items with the largest weights from ``item_idx`` (the next item a shopper with
        only ``item_idx`` would be shown): [(item, weight)], largest first."""
        self._check_fitted()
        W = self.__dict__.get("weights_")
        if W is None:
            return super().similar_items(item_idx, n)
        row = self.similarity_[item_idx].toarray().ravel()
        hp = self._head_pos()
        if hp[item_idx] >= 0:
            row[self.head_] += W[hp[item_idx]]
        return _top_of_row(row, item_idx, n)

    def similar_matrix(self, k: int) -> sp.csr_matrix:
        """Every item's ``k`` largest positive weights (head and tail) as CSR: the
        "similar" lists, computed once per fitted model."""
        self._check_fitted()
        cache = self.__dict__.setdefault("_similar", {})
        if k not in cache:
            W = self.__dict__.get("weights_")
            S = self.similarity_
            if W is not None:
                S = (_prune(W, self.head_, self.n_items_, k) + S).tocsr()
            cache[k] = topk_rows(S.multiply(S > 0).tocsr(), k)
        return cache[k]

    def predict(self, user_idx, item_idx) -> np.ndarray:
        raise NotImplementedError("EASE ranks items; it does not predict ratings "
                                  "(use ItemKNN or UserKNN for predict and RMSE)")


def head_items(support: np.ndarray, max_items: int | None) -> np.ndarray:
    """The ``max_items`` items with the most interactions (ties: smaller index), sorted;
    items with none are never in the head."""
    order = np.argsort(-support, kind="stable")
    order = order[support[order] > 0]
    if max_items is not None:
        order = order[:max_items]
    return np.sort(order)


def tail_scale(B: np.ndarray, C: sp.coo_matrix, in_head: np.ndarray) -> float:
    """Factor that puts cosine values on the scale of EASE weights: the median over head
    items of (largest EASE weight of the row) / (largest cosine of the row)."""
    if B.size == 0 or C.nnz == 0:
        return 1.0
    n = in_head.size
    cmax = np.zeros(n)
    np.maximum.at(cmax, C.row, C.data)
    head = np.flatnonzero(in_head)
    bmax = B.max(axis=1)
    ok = (cmax[head] > 0) & (bmax > 0)
    if not ok.any():
        return 1.0
    return float(np.median(bmax[ok] / cmax[head][ok]))


def _prune(B: np.ndarray, head: np.ndarray, n: int, k: int) -> sp.csr_matrix:
    """Top-``k`` positive weights of each row of the dense head block, in the full item
    index space (float64 CSR)."""
    parts = []
    for a in range(0, B.shape[0], _PRUNE_ROWS):
        block = np.asarray(B[a:a + _PRUNE_ROWS], dtype=np.float64)
        parts.append(topk_dense_block(np.where(block > 0, block, 0.0), k))
    H = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, head.size))
    rows = head[row_ids(H)]
    cols = head[H.indices]
    out = sp.csr_matrix((H.data, (rows, cols)), shape=(n, n))
    out.sort_indices()
    return out



# lambda = AUTO_LAMBDA_FACTOR * median interactions of the AUTO_LAMBDA_TOP busiest items
AUTO_LAMBDA_FACTOR = 1.5
AUTO_LAMBDA_TOP = 100


def auto_lambda(X) -> float:
    """A ``lambda_`` for ``X`` from its popular items' support.

    The best lambda grows with the data (its role is to regularise the Gram matrix, whose
    diagonal holds the items' interaction counts); the factor was read off the best lambda
    of a grid on MovieLens latest-small and on the retail sample, where it sits at about
    that multiple of the busiest items' median support (bench/RESULTS.md, served lists)."""
    X = as_csr(X)
    support = np.bincount(X.indices, minlength=X.shape[1])
    if not support.any():
        return 1.0
    top = np.sort(support)[::-1][:AUTO_LAMBDA_TOP]
    return max(1.0, float(AUTO_LAMBDA_FACTOR * np.median(top[top > 0])))


# Largest head that "auto" validates (a few solves each); past it the auto_lambda rule.
SELECT_ITEMS = 3_000


def select_lambda(X, k: int = 10, seeds=(0, 1), beta: float = 0.0, factor: float = 2.0,
                  max_solves: int = 8) -> tuple[float, dict[float, float]]:
    """``lambda_`` measured on ``X`` itself: the lists' NDCG@k on a held-out fifth of its
    interactions (averaged over ``seeds``), searched from :func:`auto_lambda`'s value in
    steps of ``factor`` toward the better side until it stops improving. The winner on 80%
    of the interactions is divided by 0.8 (the Gram matrix grows with them). ``beta``: the
    popularity penalty the lists will be served with. Returns (lambda, {lambda: NDCG})."""
    from .evaluate import ndcg_at_k, random_holdout

    X = as_csr(X)
    splits = []
    for seed in seeds:
        train, test = random_holdout(X, 0.2, seed=seed)
        users = np.flatnonzero(np.diff(test.indptr) > 0)
        if users.size:
            support = np.bincount(train.indices, minlength=X.shape[1]).astype(np.float32)
            penalty = np.maximum(support, 1) ** -np.float32(beta) if beta else None
            splits.append((train, train[users].astype(np.float32), test[users], penalty))
    if not splits:
        return auto_lambda(X), {}
    scores: dict[float, float] = {}

    def score(lam: float) -> float:
        if lam not in scores:
            total = 0.0
            for train, seen, relevant, penalty in splits:
                B = ease_weights(train, lam)
                if penalty is not None:
                    B *= penalty[None, :]
                sc = np.asarray(seen @ B)
                sc[row_ids(seen), seen.indices] = -np.inf
                top = np.argsort(-sc, axis=1, kind="stable")[:, :k]
                total += ndcg_at_k(top, relevant, k)
            scores[lam] = total / len(splits)
        return scores[lam]

    best = auto_lambda(splits[0][0])
    step = None
    if score(best * factor) > score(best):
        step = factor
    elif score(best / factor) > score(best):
        step = 1 / factor
    if step is not None:
        best *= step
        while len(scores) < max_solves and score(best * step) > score(best):
            best *= step
    return best / 0.8, {lam: scores[lam] for lam in sorted(scores)}
