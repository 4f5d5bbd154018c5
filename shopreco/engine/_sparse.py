"""Small sparse helpers shared by the engine (numpy/scipy only).

Everything here is vectorised: no Python loop runs per row, user or item.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Dense scratch blocks are capped at this many cells (float64: 8 bytes each).
DENSE_BLOCK_CELLS = 4_000_000
# A block goes through dense scratch only when at least 1/DENSE_MIN_FILL of it is filled;
# sparser blocks (large catalogues) stay sparse so the cost follows the non-zeros.
DENSE_MIN_FILL = 4


def as_csr(R, name: str = "R") -> sp.csr_matrix:
    """Return ``R`` as a canonical float64 CSR matrix, or raise a clear error."""
    if not sp.issparse(R):
        if isinstance(R, np.ndarray) and R.ndim == 2:
            R = sp.csr_matrix(R)
        else:
            raise TypeError(f"{name} must be a 2-D scipy.sparse matrix, got {type(R).__name__}")
    if R.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {R.shape}")
    R = sp.csr_matrix(R, dtype=np.float64, copy=True)
    R.sum_duplicates()
    R.sort_indices()
    if R.nnz and not np.all(np.isfinite(R.data)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return R


def row_ids(M: sp.csr_matrix) -> np.ndarray:
    """Row index of every stored entry of a CSR matrix."""
    return np.repeat(np.arange(M.shape[0], dtype=np.int64), np.diff(M.indptr))


def pattern(M: sp.csr_matrix) -> sp.csr_matrix:
    """Binary matrix with the sparsity pattern of ``M`` (explicit zeros included)."""
    return sp.csr_matrix(
        (np.ones(M.nnz), M.indices.copy(), M.indptr.copy()), shape=M.shape
    )


def with_data(M: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    """Same pattern as ``M`` with new values; explicit zeros are kept on purpose."""
    return sp.csr_matrix((data, M.indices.copy(), M.indptr.copy()), shape=M.shape)


def topk_rows(M: sp.csr_matrix, k: int | None, drop_offset: int | None = None) -> sp.csr_matrix:
    """Keep the ``k`` largest non-zero values of every row of ``M``.

    Ties are broken by the smaller column index, so the result depends only on each
    row's own values: the same row gives the same output whatever block it was computed
    in. ``drop_offset`` removes the entries (r, r + drop_offset) first (the diagonal of
    a row block starting at that offset). Zeros are dropped. Returns canonical CSR
    (sorted column indices).
    """
    M = sp.csr_matrix(M)
    n_rows, n_cols = M.shape
    rows = row_ids(M)
    cols = M.indices.astype(np.int64)
    vals = M.data
    keep = vals != 0
    if drop_offset is not None:
        keep &= cols != rows + drop_offset
    if not keep.all():
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    counts = np.bincount(rows, minlength=n_rows)
    if k is not None and counts.size and counts.max() > k:
        rows, cols, vals = _topk_bucketed(rows, cols, vals, counts, k)
    order = np.lexsort((cols, rows)) if rows.size else np.zeros(0, dtype=np.int64)
    rows, cols, vals = rows[order], cols[order], vals[order]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    out = sp.csr_matrix((vals, cols, indptr), shape=(n_rows, n_cols))
    out.has_sorted_indices = True
    return out


def _topk_sorted(rows, cols, vals, n_rows, k):
    """General path: sort each row by (value desc, column asc) and keep the first k."""
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=starts[1:])
    rank = np.arange(rows.size) - starts[rows]
    keep = rank < k
    return rows[keep], cols[keep], vals[keep]


def _select_topk_mask(key: np.ndarray, k: int, colkey: np.ndarray) -> np.ndarray:
    """Boolean mask of the k largest finite values per row of ``key`` (-inf = empty);
    ties at the k-th value go to the smaller ``colkey`` (the column index)."""
    neg = np.negative(key)
    kk = min(k, key.shape[1])
    cand = np.argpartition(neg, kk - 1, axis=1)[:, :kk]
    thr = np.take_along_axis(key, cand, axis=1).min(axis=1)[:, None]
    sel = key > thr
    eq = (key == thr) & np.isfinite(thr)
    need = kk - sel.sum(axis=1)
    simple = eq.sum(axis=1) <= need
    sel |= eq & simple[:, None]
    amb = np.nonzero(~simple & (need > 0))[0]
    if amb.size:
        rr, cc = np.nonzero(eq[amb])
        order = np.lexsort((colkey[amb][rr, cc], rr))
        rr, cc = rr[order], cc[order]
        rank = np.arange(rr.size) - np.searchsorted(rr, np.arange(amb.size))[rr]
        pick = rank < need[amb][rr]
        sel[amb[rr[pick]], cc[pick]] = True
    sel &= np.isfinite(key)
    return sel


def _topk_bucketed(rows, cols, vals, counts, k):
    """Top-k of long rows without a global sort: rows are padded into 2-D arrays by
    length bucket (powers of two, so padding at most doubles) and selected with
    argpartition. Entries must be grouped by row (any column order)."""
    n_rows = counts.size
    starts = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    keep = counts[rows] <= k
    long_rows = np.nonzero(counts > k)[0]
    bucket = np.ceil(np.log2(counts[long_rows])).astype(np.int64)
    for bv in np.unique(bucket):
        rs = long_rows[bucket == bv]
        width = int(counts[rs].max())
        seg, pos, _ = segment_ranges(starts, rs)
        slot = pos - starts[rs][seg]
        key = np.full((rs.size, width), -np.inf)
        key[seg, slot] = vals[pos]
        colkey = np.zeros(key.shape, dtype=np.int64)
        colkey[seg, slot] = cols[pos]
        sel = _select_topk_mask(key, k, colkey)
        keep[pos[sel[seg, slot]]] = True
    return rows[keep], cols[keep], vals[keep]


def _topk_dense(rows, cols, vals, n_rows, n_cols, k):
    """Dense path for well-filled blocks: a threshold per row from np.partition.

    Selects exactly the same entries as :func:`_topk_sorted`.
    """
    key = np.full((n_rows, n_cols), -np.inf)
    key[rows, cols] = vals
    kk = min(k, n_cols)
    thr = -np.partition(-key, kk - 1, axis=1)[:, kk - 1]
    above = key > thr[:, None]
    tie = key == thr[:, None]
    need = kk - above.sum(axis=1)
    tie_rank = np.cumsum(tie, axis=1)
    sel = above | (tie & (tie_rank <= need[:, None]))
    sel &= key > -np.inf
    r, c = np.nonzero(sel)
    return r.astype(np.int64), c.astype(np.int64), key[r, c]


def topk_dense_block(D: np.ndarray, k: int | None, drop_offset: int | None = None):
    """Top-k of each row of a dense block (0 = no entry) as canonical CSR.

    Same selection as :func:`topk_rows` (largest non-zero values, ties to the smaller
    column) but without building a sparse matrix first: ``argpartition`` picks k
    candidates per row and only rows whose k-th value is tied outside the candidates are
    resolved exactly. ``D`` is modified in place.
    """
    b, n = D.shape
    if drop_offset is not None:
        r = np.arange(b)
        c = r + drop_offset
        ok = c < n
        D[r[ok], c[ok]] = 0.0
    if k is None or k >= n:
        r, c = np.nonzero(D)
        return _csr_from_sorted(r, c, D[r, c], b, n)
    # negated keys with a small kth: numpy's introselect is several times faster so
    key = np.where(D != 0, -D, np.inf)
    cand = np.argpartition(key, k - 1, axis=1)[:, :k]
    np.negative(key, out=key)
    rows = np.repeat(np.arange(b), k)
    cols = cand.ravel().astype(np.int64)
    cv = key[rows, cols].reshape(b, k)
    thr = cv.min(axis=1)
    eq_total = (key == thr[:, None]).sum(axis=1)
    eq_cand = (cv == thr[:, None]).sum(axis=1)
    amb = np.nonzero((eq_total > eq_cand) & np.isfinite(thr))[0]
    if amb.size:
        # ties at the k-th value: take the ties with the smallest columns instead
        above = cv > thr[:, None]
        sub = key[amb]
        tr, tc = np.nonzero(sub == thr[amb][:, None])
        starts = np.searchsorted(tr, np.arange(amb.size))
        rank = np.arange(tr.size) - starts[tr]
        need = k - above[amb].sum(axis=1)
        pick = rank < need[tr]
        keep_rows = np.ones(b, dtype=bool)
        keep_rows[amb] = False
        sel = np.repeat(keep_rows, k) | above.ravel()
        rows = np.r_[rows[sel], amb[tr[pick]]]
        cols = np.r_[cols[sel], tc[pick].astype(np.int64)]
    vals = key[rows, cols]
    fin = np.isfinite(vals)
    rows, cols, vals = rows[fin], cols[fin], vals[fin]
    order = np.lexsort((cols, rows))
    return _csr_from_sorted(rows[order], cols[order], vals[order], b, n)


def _csr_from_sorted(rows, cols, vals, n_rows, n_cols) -> sp.csr_matrix:
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    out = sp.csr_matrix((vals, cols, indptr), shape=(n_rows, n_cols))
    out.has_sorted_indices = True
    return out


def sort_rows_by_value(M: sp.csr_matrix) -> sp.csr_matrix:
    """Copy of ``M`` whose rows are ordered by value desc, then column asc.

    Used to walk neighbour lists from the most similar one.
    """
    rows = row_ids(M)
    lens = np.diff(M.indptr)
    width = int(lens.max()) if lens.size else 0
    if M.has_sorted_indices and 0 < M.shape[0] * width <= 2 * M.nnz + 1_000_000:
        # rows padded into one 2-D array (+inf = empty) and sorted along each row: many
        # short sorts instead of one long one; stable, so ties keep the column order
        slot = np.arange(M.nnz) - M.indptr[:-1].astype(np.int64)[rows]
        key = np.full((M.shape[0], width), np.inf)
        key[rows, slot] = -M.data
        perm = np.argsort(key, axis=1, kind="stable")
        valid = np.arange(width)[None, :] < lens[:, None]
        order = (perm + M.indptr[:-1, None].astype(np.int64))[valid]
    elif M.has_sorted_indices:
        # two stable sorts (value desc, then row) keep the column order among ties
        order = np.argsort(-M.data, kind="stable")
        order = order[np.argsort(rows[order], kind="stable")]
    else:
        order = np.lexsort((M.indices, -M.data, rows))
    out = sp.csr_matrix((M.data[order], M.indices[order], M.indptr.copy()), shape=M.shape)
    out.has_sorted_indices = False
    return out


def entry_keys(M: sp.csr_matrix) -> np.ndarray:
    """Sorted int64 keys row * n_cols + col of a canonical CSR matrix (for lookups)."""
    return row_ids(M) * np.int64(M.shape[1]) + M.indices.astype(np.int64)


def lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray):
    """Vectorised lookup of ``query`` keys in sorted ``keys``: (found mask, values)."""
    if keys.size == 0:
        return np.zeros(query.shape, dtype=bool), np.zeros(query.shape)
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, keys.size - 1)
    found = keys[pos] == query
    return found, np.where(found, values[pos], 0.0)


def segment_ranges(indptr: np.ndarray, rows: np.ndarray):
    """Expand CSR rows ``rows`` into (segment id, position) for every stored entry.

    Returns ``seg`` (index into ``rows`` of each expanded entry), ``pos`` (index into the
    CSR data/indices arrays) and ``starts`` (offset of each segment in the expansion).
    """
    lo = indptr[rows].astype(np.int64)
    lens = indptr[rows + 1].astype(np.int64) - lo
    starts = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    total = int(starts[-1])
    seg = np.repeat(np.arange(rows.size, dtype=np.int64), lens)
    pos = np.arange(total, dtype=np.int64) - starts[seg] + lo[seg]
    return seg, pos, starts
