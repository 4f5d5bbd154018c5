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
