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


def as_csr(R, name: str = "R", copy: bool = True) -> sp.csr_matrix:
    """Return ``R`` as a canonical float64 CSR matrix, or raise a clear error.

    ``copy=False`` returns ``R`` itself when it already is one (callers that only read).
    """
    if not (not copy and isinstance(R, sp.csr_matrix) and R.dtype == np.float64
            and R.has_canonical_format):
        R = _canonical_copy(R, name)
    if R.nnz and not np.all(np.isfinite(R.data)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return R


def _canonical_copy(R, name: str) -> sp.csr_matrix:
    if not sp.issparse(R):
        if isinstance(R, np.ndarray) and R.ndim == 2:
            R = sp.csr_matrix(R)
        else:
            raise TypeError(f"{name} must be a 2-D scipy.sparse matrix, got {type(R).__name__}")
    if R.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {R.shape}")
    if isinstance(R, sp.csr_matrix):
        # direct arrays: csr_matrix(R, dtype=..., copy=True) converts and validates in
        # several passes (a quarter second on 5M entries)
        R = sp.csr_matrix((R.data.astype(np.float64), R.indices.copy(), R.indptr.copy()),
                          shape=R.shape)
    else:
        R = sp.csr_matrix(R, dtype=np.float64, copy=True)
    R.sum_duplicates()
    R.sort_indices()
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


def take_where(mask: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """``tuple(a[mask] for a in arrays)``, faster: numpy's boolean indexing branches per
    element (slow on the irregular masks of similarity rows); the positions are found once
    and gathered with ``take``."""
    idx = np.flatnonzero(mask)
    return tuple(a.take(idx) for a in arrays)


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
    lens = np.diff(M.indptr).astype(np.int64)
    vals, cols = M.data, M.indices
    valid = vals != 0
    if drop_offset is not None:
        diag = np.repeat(np.arange(n_rows, dtype=np.int64) + drop_offset, lens)
        valid &= cols != diag
    counts = lens
    if not valid.all():
        vals, cols = take_where(valid, vals, cols)
        counts = row_sums(valid, lens)
    if k is not None and counts.size and counts.max() > k:
        keep = topk_mask(vals, cols, counts, k)
        vals, cols = take_where(keep, vals, cols)
        counts = row_sums(keep, counts)
    # entries stay grouped by row: only the columns within each row need sorting
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    if vals is M.data:
        vals = vals.copy()  # sort_indices below works in place: never on the caller's data
    out = sp.csr_matrix((vals, cols.astype(np.int64), indptr), shape=(n_rows, n_cols))
    out.has_sorted_indices = False
    out.sort_indices()
    return out


def row_sums(mask: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Number of True entries of ``mask`` per row, rows being consecutive runs of
    ``lens`` entries (a cumsum read at the row ends: no per-entry row ids needed)."""
    cs = np.zeros(mask.size + 1, dtype=np.int64)
    np.cumsum(mask, out=cs[1:])
    ends = np.cumsum(lens)
    return cs[ends] - cs[ends - lens]


def topk_mask(vals, cols, counts, k) -> np.ndarray:
    """Mask of the entries holding the k largest values of each row, ties at the k-th
    value to the smaller column. Entries are grouped by row, ``counts[r]`` of them for
    row r, columns in any order.

    Each long row's k-th largest value comes from ``np.partition`` over the long rows
    padded into 2-D arrays by length bucket (powers of two, so padding at most doubles; a
    partition of values moves no index array, unlike argpartition); entries are then
    kept by comparison with their row's threshold: no sort of the whole set.
    """
    n_rows = counts.size
    starts = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    long_rows = np.nonzero(counts > k)[0]
    thr = np.full(n_rows, -np.inf)  # short rows: everything is above
    simple = np.ones(n_rows, dtype=bool)
    need = np.zeros(n_rows, dtype=np.int64)
    bucket = np.ceil(np.log2(counts[long_rows])).astype(np.int64)
    for bv in np.unique(bucket):
        rs = long_rows[bucket == bv]
        width = int(counts[rs].max())
        # scatter each row's entries to the start of its line of the padded table, through
        # flat positions (one gather, one flat scatter: no per-entry row ids)
        ln = counts[rs]
        seg_st = np.zeros(rs.size + 1, dtype=np.int64)
        np.cumsum(ln, out=seg_st[1:])
        ix = np.arange(seg_st[-1], dtype=np.int64)
        key = np.full((rs.size, width), -np.inf)
        key.ravel()[ix + np.repeat(np.arange(rs.size, dtype=np.int64) * width - seg_st[:-1], ln)] \
            = vals.take(ix + np.repeat(starts[rs] - seg_st[:-1], ln))
        t = np.partition(key, width - k, axis=1)[:, width - k]
        above = (key > t[:, None]).sum(axis=1)
        ties = (key == t[:, None]).sum(axis=1)
        thr[rs] = t
        need[rs] = k - above
        simple[rs] = ties <= k - above
    t = np.repeat(thr, counts)
    keep = vals > t
    tie = vals == t
    keep |= tie & np.repeat(simple, counts)
    amb_rows = np.nonzero(~simple)[0]
    if amb_rows.size:
        # more ties at the k-th value than places left: the smallest columns win
        seg, pos, _ = segment_ranges(starts, amb_rows)
        t_pos = tie[pos]
        seg, pos = take_where(t_pos, seg, pos)
        span = np.int64(cols[pos].max()) + 1
        order = np.argsort(seg * span + cols[pos])
        seg, pos = seg[order], pos[order]
        first = np.r_[True, seg[1:] != seg[:-1]]
        rank = np.arange(seg.size) - np.nonzero(first)[0][np.cumsum(first) - 1]
        keep[pos[rank < need[amb_rows][seg]]] = True
    return keep


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
    # negated keys, so that kth is small (k - 1, not n - k): numpy's introselect is faster so
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
    rows, cols, vals = take_where(fin, rows, cols, vals)
    order = np.lexsort((cols, rows))
    return _csr_from_sorted(rows[order], cols[order], vals[order], b, n)


def _csr_from_sorted(rows, cols, vals, n_rows, n_cols) -> sp.csr_matrix:
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    out = sp.csr_matrix((vals, cols, indptr), shape=(n_rows, n_cols))
    out.has_sorted_indices = True
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
    # repeat (sequential) rather than gathers through seg: the expansion is the big array
    pos = np.arange(total, dtype=np.int64)
    pos += np.repeat(lo - starts[:-1], lens)
    return seg, pos, starts
