"""Item popularity, optionally time-decayed: the cold-start fallback."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._sparse import as_csr


def popularity(
    R,
    timestamps=None,
    half_life: float | None = None,
    now: float | None = None,
    weighted: bool = False,
) -> np.ndarray:
    """Score per item: how many users interacted with it (or the sum of the weights).

    ``timestamps`` (one per stored entry, in the CSR order of ``R``, or a sparse matrix
    with the same pattern) with ``half_life`` (same unit) weight each interaction by
    0.5 ** (age / half_life), age measured from ``now`` (default: the newest timestamp),
    so that recent favourites beat old ones.
    """
    R = as_csr(R)
    w = R.data if weighted else np.ones(R.nnz)
    if half_life is not None:
        if timestamps is None:
            raise ValueError("half_life needs timestamps")
        if not half_life > 0:
            raise ValueError(f"half_life must be > 0, got {half_life!r}")
        if sp.issparse(timestamps):
            T = sp.csr_matrix(timestamps, dtype=np.float64)
            T.sum_duplicates()
            T.sort_indices()
            if T.shape != R.shape or T.nnz != R.nnz or not np.array_equal(T.indices, R.indices):
                raise ValueError("timestamps must have the same sparsity pattern as R")
            ts = T.data
        else:
            ts = np.asarray(timestamps, dtype=np.float64).ravel()
            if ts.size != R.nnz:
                raise ValueError(f"timestamps must have one value per stored entry "
                                 f"({R.nnz}), got {ts.size}")
        ref = float(ts.max()) if now is None and ts.size else float(now or 0.0)
        w = w * np.power(0.5, np.maximum(ref - ts, 0.0) / half_life)
    return np.bincount(R.indices, w, minlength=R.shape[1]).astype(np.float64)


class MostPopular:
    """The non-personal baseline as a ranking model: every shopper is offered the products
    most shoppers interacted with, less those excluded for them.

    It is a candidate of the deployment strategy's model selection (``{"algorithm":
    "popular"}``): the floor a personal model must clear on the shop's own data. It takes
    (and ignores) the keyword arguments the pipeline gives item kNN."""

    def __init__(self, **_: object) -> None:
        self.scores_: np.ndarray | None = None

    def fit(self, X, similarity=None) -> MostPopular:  # noqa: ARG002 - the kNN signature
        R = as_csr(X)
        self.R_ = R
        self.n_users_, self.n_items_ = R.shape
        self.scores_ = popularity(R)
        return self

    def recommend_with_reasons(self, user_idxs, n: int = 10, exclude_seen: bool = True,
                               exclude=None):
        """(items, scores, reason_items) as the kNN models return them; no item is a
        reason (-1): popularity is nobody's own activity."""
        if self.scores_ is None:
            raise RuntimeError("call fit() first")
        users = np.asarray(user_idxs, dtype=np.int64).ravel()
        n = int(n)
        if n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        masks = [M for M in (self.R_ if exclude_seen else None,
                             None if exclude is None else as_csr(exclude)) if M is not None]
        order = np.argsort(-self.scores_, kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(order.size)
        counts = sum((np.diff(M.indptr)[users] for M in masks), np.zeros(users.size, np.int64))
        m = min(order.size, n + int(counts.max(initial=0)))
        dense = np.tile(self.scores_[order[:m]].astype(np.float64), (users.size, 1))
        for M in masks:
            sub = M[users]
            pos = position[sub.indices]
            rows = np.repeat(np.arange(users.size), np.diff(sub.indptr))
            keep = pos < m
            dense[rows[keep], pos[keep]] = -np.inf
        dense[dense <= 0] = -np.inf
        # the first n surviving columns of each row, in popularity order
        alive = np.isfinite(dense)
        rank = np.cumsum(alive, axis=1) - 1
        take = alive & (rank < n)
        items = np.full((users.size, n), -1, dtype=np.int64)
        scores = np.full((users.size, n), -np.inf)
        r, c = np.nonzero(take)
        items[r, rank[r, c]] = order[c]
        scores[r, rank[r, c]] = dense[r, c]
        return items, scores, np.full((users.size, n), -1, dtype=np.int64)
