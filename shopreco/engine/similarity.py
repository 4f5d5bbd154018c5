"""User-user and item-item similarities, whole or by row block.

Every similarity here is a sparse matrix product ``L[start:stop] @ Rt`` of transformed
rating matrices, computed in row blocks so that the scratch memory stays bounded
(``DENSE_BLOCK_CELLS``) and the stored result is at most ``k`` entries per row.

Formulas (``shrinkage=0``, ``k=None``; sums over the co-rated set, empty set or zero
denominator -> 0, the diagonal is not stored since nothing is its own neighbour):

- ``pearson``: centred on the mean of each compared object (user or item), norms over
  the co-rated set.
- ``adjusted_cosine`` (items only, Sarwar et al. 2001): as pearson but each rating is
  centred on its user's mean.
- ``pearson_baseline`` (Koren 2010): as pearson but centred on the baseline
  mu + b_u + b_i, which is what the rating-prediction default uses.
- ``cosine``: plain cosine of the two full vectors.
- ``cosine_baseline``: cosine of the two full vectors of baseline residuals
  r - (mu + b_u + b_i), each object's unit vector scaled by sqrt(n / (n + beta)) (n its
  ratings, beta ``support_shrinkage`` of :func:`prepare`, 10 by default): so
  sim = cos * sqrt(n_a / (n_a + beta)) * sqrt(n_b / (n_b + beta)). It is the item default
  for ratings: one plain sparse product (the fused top-k kernel, no co-count product) and
  a better RMSE than the co-count shrunk ``pearson_baseline`` on MovieLens (bench/).

Each method is one record (:class:`SimilarityMethod`) in :data:`SIMILARITY_METHODS`: its
centring (none, the compared object's mean, the user's mean, the baseline) and its norm
(over the co-rated set or the full vectors) make the formula above, and its defaults are
what the neighbourhood models take with it. Code reads the record, never the name, so a
new method is one record.

With ``shrinkage`` every similarity is multiplied by n_common / (n_common + shrinkage);
with ``k`` only the k largest values of each row are kept (ties: smaller column first).
With ``positive_only`` values <= 0 are dropped before the top k: rating prediction over
positive neighbours never reads them, and the top-k pass then has fewer entries to rank.

Sharding: :func:`item_similarity_block` returns rows [start, stop) and is bitwise equal to
the same rows of :func:`item_similarity` whatever the block boundaries, because each row
is computed from that row's own data only. :func:`prepare` does the O(nnz) centring once
so that many blocks can share it (pass its result instead of ``R``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from ._sparse import (
    DENSE_BLOCK_CELLS,
    DENSE_MIN_FILL,
    as_csr,
    pattern,
    row_ids,
    row_sums,
    segment_ranges,
    take_where,
    topk_dense_block,
    topk_mask,
    topk_rows,
    with_data,
)
from .baseline import Baselines, fit_baselines

try:  # fused multithreaded sparse product + top-n (C++); optional, scipy path otherwise
    from sparse_dot_topn import sp_matmul_topn as _sp_matmul_topn
except ImportError:  # pragma: no cover - exercised only where it is not installed
    _sp_matmul_topn = None

# Use the fused top-n kernel for the cosine methods with k and no co-count shrinkage, on
# non-negative data or with positive_only (set False to force the scipy path).
USE_FUSED_TOPN = True

# beta of cosine_baseline's support shrinkage when prepare() is not given one: RMSE on
# MovieLens latest-small (5 folds, two seeds) was best between 10 and 20, worse at 5 and 0
DEFAULT_SUPPORT_SHRINKAGE = 10.0

KINDS = ("item", "user")
_CENTRINGS = ("none", "object_mean", "user_mean", "baseline")
_NORMS = ("co_rated", "full")


@dataclass(frozen=True)
class SimilarityMethod:
    """One similarity method: how :func:`prepare` transforms the ratings, which kernel
    computes it, and the defaults a neighbourhood model takes with it.

    The record is the only description of a method: ``prepare``, the kernels and
    ``ItemKNN`` / ``UserKNN`` read it instead of testing names, so a new method is one
    record in :data:`SIMILARITY_METHODS`; its formula follows from ``centring`` and
    ``norm`` (see the module docstring for the published ones).

    - ``centring``: what each rating is centred on before the product. "none";
      "object_mean": the compared object's mean, item or user (pearson); "user_mean": the
      rating's user's mean whatever is compared (adjusted cosine); "baseline": the ALS
      baseline mu + b_u + b_i.
    - ``norm``: "co_rated": norms over the co-rated set (one block-sparse product that also
      yields the co-counts); "full": unit vectors over all ratings (one plain product, which
      the fused top-k kernel computes, and the only norm the support shrinkage keeps).
    - ``kinds``: what it may compare ("item", "user").
    - ``support_shrinkage``: beta :func:`prepare` uses when given None ("full" norm only).
    - ``shrinkage``, ``damping``, ``positive_only``: what ``ItemKNN`` / ``UserKNN`` take for
      their None / "auto" arguments (co-count shrinkage, the prediction's damping, positive
      neighbours only); a model predicting around the baseline centres on it too.
    - ``ranking_only``: made for top-N ranking (implicit data): a model stores ``k``
      neighbours per object, the ranking score's; otherwise ``max(k, 200)``, because rating
      prediction looks in the stored list for the k most similar neighbours the user rated.
    """

    name: str
    centring: str
    norm: str
    kinds: tuple[str, ...] = KINDS
    support_shrinkage: float = 0.0
    shrinkage: float = 0.0
    damping: float = 0.0
    positive_only: bool = False
    ranking_only: bool = False

    def __post_init__(self) -> None:
        if self.centring not in _CENTRINGS:
            raise ValueError(f"centring must be one of {_CENTRINGS}, got {self.centring!r}")
        if self.norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {self.norm!r}")
        if not self.kinds or not set(self.kinds) <= set(KINDS):
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {self.kinds!r}")
        check_support_shrinkage(self.support_shrinkage)
        if self.support_shrinkage and self.norm != "full":
            raise ValueError("support_shrinkage needs norm='full'")

    @property
    def needs_baselines(self) -> bool:
        """Centred on the ALS baselines, which must be fitted first."""
        return self.centring == "baseline"

    @property
    def centred(self) -> bool:
        """Centres the ratings: on data without a rating scale it measures nothing useful."""
        return self.centring != "none"


def check_support_shrinkage(value: float) -> None:
    """Refuse a support shrinkage that is not a finite number >= 0 (strings and booleans
    included, which numpy would take or fail on with a TypeError)."""
    if isinstance(value, str | bytes | bool) or not np.isfinite(value) or value < 0:
        raise ValueError(f"support_shrinkage must be a finite number >= 0, got {value!r}")


# The similarity methods by name, in the order error messages list them.
SIMILARITY_METHODS: dict[str, SimilarityMethod] = {m.name: m for m in (
    SimilarityMethod("pearson", "object_mean", "co_rated"),
    SimilarityMethod("adjusted_cosine", "user_mean", "co_rated", kinds=("item",)),
    SimilarityMethod("cosine", "none", "full", ranking_only=True),
    # Koren's KNNBaseline recipe: co-count shrinkage 100
    SimilarityMethod("pearson_baseline", "baseline", "co_rated", shrinkage=100.0,
                     damping=0.5, positive_only=True),
    SimilarityMethod("cosine_baseline", "baseline", "full",
                     support_shrinkage=DEFAULT_SUPPORT_SHRINKAGE, damping=0.5,
                     positive_only=True),
)}

# What similarity="auto" means. Binary (implicit) data has no scale to centre: cosine.
# Ratings: a similarity of baseline residuals, per kind (see ItemKNN's and UserKNN's
# docstrings for why they differ).
IMPLICIT_METHOD = "cosine"
RATING_METHODS = {"item": "cosine_baseline", "user": "pearson_baseline"}


def method_names(kind: str | None = None) -> tuple[str, ...]:
    """Names of the registered methods (those that compare ``kind`` if given)."""
    return tuple(n for n, m in SIMILARITY_METHODS.items() if kind is None or kind in m.kinds)


def similarity_method(name: str, kind: str | None = None) -> SimilarityMethod:
    """The record of method ``name``; a ValueError naming the choices (for ``kind`` if
    given) when there is none."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be 'item' or 'user', got {kind!r}")
    spec = SIMILARITY_METHODS.get(name) if isinstance(name, str) else None
    if spec is None or (kind is not None and kind not in spec.kinds):
        where = f" for {kind} similarity" if kind is not None else ""
        raise ValueError(f"method must be one of {method_names(kind)}{where}, got {name!r}")
    return spec


def resolve_similarity(method: str, R, kind: str = "item") -> str:
    """The method that ``method`` stands for on ``R`` (users x items) in a model of
    ``kind``: "auto" is :data:`IMPLICIT_METHOD` on binary data (every stored value equal)
    and the kind's :data:`RATING_METHODS` entry on ratings; a registered name stands for
    itself (anything else: ValueError naming the choices)."""
    if method == "auto":
        binary = R.nnz == 0 or bool(np.all(R.data == R.data[0]))
        method = IMPLICIT_METHOD if binary else RATING_METHODS.get(kind, method)
    return similarity_method(method, kind).name


@dataclass(frozen=True)
class Prepared:
    """Transformed matrices for one similarity method, shared by all row blocks.

    Objects compared are the columns of the original orientation: items for
    ``kind="item"``, users for ``kind="user"``. ``left`` is objects x raters, ``right``
    raters x objects. ``left_bin``/``right_bin`` (the binary pattern) and the packed
    blocks of the restricted-norm kernel are built on first use, from ``left``/``right``:
    a method whose kernel never reads them pays no copy. ``spec`` is the method's record:
    the kernels read it, so blocks prepared under it stay one method whatever the registry
    holds later.
    """

    spec: SimilarityMethod
    kind: str
    n_objects: int
    left: sp.csr_matrix
    right: sp.csr_matrix
    nonneg: bool = False

    @property
    def method(self) -> str:
        """The method's name."""
        return self.spec.name

    @cached_property
    def left_bin(self) -> sp.csr_matrix:
        """Binary pattern of ``left``."""
        return pattern(self.left)

    @cached_property
    def right_bin(self) -> sp.csr_matrix:
        """Binary pattern of ``right``."""
        return pattern(self.right)

    @cached_property
    def right_by_popularity(self) -> tuple[np.ndarray, sp.csr_matrix]:
        """``(order, right[:, order])``: objects by descending number of raters.

        A row of a sparse product accumulates into a dense array indexed by column; with
        the popular columns first, the busy part of that array stays in the closest cache,
        which speeds up the fused cosine kernel on power-law data (bench/bench_engine.py,
        section c)."""
        order = np.argsort(-np.diff(self.left.indptr), kind="stable")
        return order, self.left[order].T.tocsr()  # the transpose comes back sorted

    @cached_property
    def left_packed(self) -> np.ndarray:
        """(nnz, 2, 3) blocks [[x, x^2, 0], [0, 0, 1]] per entry of ``left`` (see
        :func:`_restricted_rows`)."""
        v = self.left.data
        z, o = np.zeros_like(v), np.ones_like(v)
        return np.stack([np.stack([v, v * v, z], -1), np.stack([z, z, o], -1)], 1)

    @cached_property
    def right_packed(self) -> sp.bsr_matrix:
        """``right`` as BSR with (3, 2) blocks [[y, 0], [0, 1], [y^2, 1]] per entry."""
        X = self.right
        v = X.data
        z, o = np.zeros_like(v), np.ones_like(v)
        blocks = np.stack([np.stack([v, z], -1), np.stack([z, o], -1),
                           np.stack([v * v, o], -1)], 1)
        return sp.bsr_matrix((blocks, X.indices, X.indptr), shape=(3 * X.shape[0], 2 * X.shape[1]))


def prepare(
    R,
    method: str = "pearson",
    kind: str = "item",
    baselines: Baselines | None = None,
    support_shrinkage: float | None = None,
) -> Prepared:
    """Centre / normalise ``R`` (users x items) once for ``method``; O(nnz).

    ``method`` names a record of :data:`SIMILARITY_METHODS`. ``kind="item"`` compares
    columns (items), ``kind="user"`` rows (users). For the baseline methods the ALS
    baselines are fitted here unless given. ``support_shrinkage`` (beta, "full"-norm
    methods only: cosine, cosine_baseline) scales each object's unit vector by
    sqrt(n / (n + beta)): None means the record's (10 for ``cosine_baseline``, 0 = none for
    ``cosine``). It is folded into the vectors, not applied per pair, so the product stays
    one plain sparse product.
    """
    spec = similarity_method(method, kind)
    if support_shrinkage is None:
        support_shrinkage = spec.support_shrinkage
    check_support_shrinkage(support_shrinkage)
    if support_shrinkage and spec.norm != "full":
        # a restricted correlation would divide the scale out again
        full = tuple(n for n, m in SIMILARITY_METHODS.items() if m.norm == "full")
        raise ValueError(f"support_shrinkage applies to {full}, not {method!r}")
    R = as_csr(R, copy=False)  # read only: every transform below builds new matrices
    if spec.centring == "baseline":
        b = baselines if baselines is not None else fit_baselines(R)
        R = with_data(R, R.data - b.of_entries(R))
    elif spec.centring == "user_mean":
        # centre each rating on its user's mean
        R = with_data(R, R.data - _row_means(R)[row_ids(R)])
    # X: raters x objects
    X = R if kind == "item" else R.T.tocsr()
    X.sort_indices()
    if spec.centring == "object_mean":
        X = with_data(X, X.data - _col_means(X)[X.indices])
    if spec.norm == "full":
        # norms from the object-major copy: a sequential reduceat, not a bincount scatter
        XT = X.T.tocsr()
        XT.sort_indices()
        lens = np.diff(XT.indptr)
        sq = np.zeros(XT.shape[0])
        nz = np.nonzero(lens)[0]
        if nz.size:
            sq[nz] = np.add.reduceat(XT.data**2, XT.indptr[nz])
        norms = np.sqrt(sq)
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        if support_shrinkage:
            inv *= np.sqrt(lens / (lens + support_shrinkage))
        X = with_data(X, X.data * inv[X.indices])
        XT = with_data(XT, XT.data * np.repeat(inv, lens))
    else:
        XT = X.T.tocsr()
        XT.sort_indices()
    nonneg = bool(X.nnz == 0 or X.data.min() >= 0)
    return Prepared(spec, kind, X.shape[1], XT, X, nonneg)


def _row_means(M: sp.csr_matrix) -> np.ndarray:
    cnt = np.diff(M.indptr)
    sums = np.add.reduceat(M.data, M.indptr[:-1]) if M.nnz else np.zeros(M.shape[0])
    sums = np.where(cnt > 0, sums, 0.0)
    return np.divide(sums, cnt, out=np.zeros(M.shape[0]), where=cnt > 0)


def _col_means(M: sp.csr_matrix) -> np.ndarray:
    cnt = np.bincount(M.indices, minlength=M.shape[1])
    sums = np.bincount(M.indices, M.data, minlength=M.shape[1])
    return np.divide(sums, cnt, out=np.zeros(M.shape[1]), where=cnt > 0)


def _check(shrinkage: float, k: int | None) -> int | None:
    """Validate the common arguments; returns ``k`` as an int (3.0 -> 3) or None."""
    if not np.isfinite(shrinkage) or shrinkage < 0:
        raise ValueError(f"shrinkage must be a finite number >= 0, got {shrinkage!r}")
    if k is not None and (int(k) != k or k < 1):
        raise ValueError(f"k must be a positive integer or None, got {k!r}")
    return None if k is None else int(k)


def _restricted_rows(P: Prepared, start: int, stop: int, shrinkage: float, k: int | None,
                     positive_only: bool = False):
    """Rows [start, stop) of a restricted-norm similarity in ONE sparse product.

    Each entry x of ``left`` becomes the 2x3 block [[x, x^2, 0], [0, 0, 1]] and each entry
    y of ``right`` the 3x2 block [[y, 0], [0, 1], [y^2, 1]], so one block-sparse (BSR)
    product yields per co-rated pair the 2x2 block [[sum xy, sum x^2], [sum y^2, n_common]]:
    numerator, both restricted norms and the co-count, already aligned (four separate
    CSR products would each drop their own zeros and need sorting to align). The added
    terms are exact zeros, so the sums are the plain formula's.
    """
    L = P.left
    lo, hi = L.indptr[start], L.indptr[stop]
    b = stop - start
    Lb = sp.bsr_matrix((P.left_packed[lo:hi], L.indices[lo:hi], L.indptr[start:stop + 1] - lo),
                       shape=(2 * b, 3 * L.shape[1]))
    C = Lb @ P.right_packed
    blk = C.data
    # a non-zero numerator implies both restricted norms are > 0
    den = blk[:, 0, 1] * blk[:, 1, 0]
    np.sqrt(den, out=den)
    vals = np.divide(blk[:, 0, 0], den, out=np.zeros(den.size), where=blk[:, 0, 0] != 0)
    if shrinkage > 0:
        cnt = blk[:, 1, 1]
        vals *= cnt / (cnt + shrinkage)
    if positive_only:
        np.maximum(vals, 0.0, out=vals)  # zeros are dropped by the top-k pass
    out = sp.csr_matrix((vals, C.indices, C.indptr), shape=(b, P.n_objects))
    return topk_rows(out, k, drop_offset=start)


def _block_rows(P: Prepared, start: int, stop: int, shrinkage: float, k: int | None,
                positive_only: bool = False):
    """Similarity rows [start, stop) of one sub-block (no further splitting)."""
    if P.spec.norm == "co_rated":
        return _restricted_rows(P, start, stop, shrinkage, k, positive_only)
    num = P.left[start:stop] @ P.right
    if positive_only and not P.nonneg:
        np.maximum(num.data, 0.0, out=num.data)
    n = P.n_objects
    b = stop - start
    cnt = P.left_bin[start:stop] @ P.right_bin if shrinkage > 0 else None
    if b * n <= DENSE_BLOCK_CELLS and num.nnz * DENSE_MIN_FILL >= b * n:
        # dense scratch: align the products by position, no sorting needed
        D = num.toarray()
        if cnt is not None:
            c = cnt.toarray()
            np.divide(c, c + shrinkage, out=c, where=D != 0)
            D *= c
        return topk_dense_block(D, k, drop_offset=start)
    if cnt is not None:
        # align the co-counts on num's entries through sorted keys
        num.sort_indices()
        c = _values_at(cnt, row_ids(num), num.indices.astype(np.int64), n)
        num = sp.csr_matrix((num.data * (c / (c + shrinkage)), num.indices, num.indptr),
                            shape=(b, n))
    return topk_rows(num, k, drop_offset=start)


def _values_at(M: sp.csr_matrix, r: np.ndarray, c: np.ndarray, n: int) -> np.ndarray:
    M.sort_indices()
    keys = row_ids(M) * np.int64(n) + M.indices
    q = r * np.int64(n) + c
    pos = np.minimum(np.searchsorted(keys, q), max(keys.size - 1, 0))
    return M.data[pos]


def _sub_blocks(P: Prepared, start: int, stop: int) -> list[tuple[int, int]]:
    """Split [start, stop) so that each dense scratch block has at most DENSE_BLOCK_CELLS."""
    cells = DENSE_BLOCK_CELLS // 4 if P.spec.norm == "co_rated" else DENSE_BLOCK_CELLS
    step = max(1, cells // max(P.n_objects, 1))
    return [(a, min(a + step, stop)) for a in range(start, stop, step)]


def _n_threads(n_jobs: int | None) -> int:
    if n_jobs is None:
        return max(1, min(os.cpu_count() or 1, 8))
    return max(1, int(n_jobs))


def _similarity_rows(
    P: Prepared, start: int, stop: int, shrinkage: float, k: int | None, n_jobs: int | None,
    positive_only: bool = False,
) -> sp.csr_matrix:
    # the kernel's threshold of 0 drops exactly what positive_only drops, and on
    # non-negative data nothing else
    if (USE_FUSED_TOPN and _sp_matmul_topn is not None and P.spec.norm == "full"
            and shrinkage == 0 and k is not None and (P.nonneg or positive_only)
            and stop > start):
        return _fused_cosine_topk(P, start, stop, k, _n_threads(n_jobs))
    blocks = _sub_blocks(P, start, stop)
    if not blocks:
        return sp.csr_matrix((0, P.n_objects))
    threads = min(_n_threads(n_jobs), len(blocks))
    if threads > 1:
        # scipy's sparse matmul and numpy's partition release the GIL: threads scale.
        with ThreadPoolExecutor(threads) as ex:
            parts = list(ex.map(
                lambda ab: _block_rows(P, ab[0], ab[1], shrinkage, k, positive_only), blocks))
    else:
        parts = [_block_rows(P, a, b, shrinkage, k, positive_only) for a, b in blocks]
    out = sp.vstack(parts, format="csr") if len(parts) > 1 else parts[0]
    out.has_sorted_indices = True
    return out


def _FUSED_TOPS(k: int) -> tuple:  # noqa: N802 - a tunable, patched by the benchmarks
    """Widths asked of the fused kernel in turn. A row is settled when its tie group at
    the k-th value fits in the width; binary data has many equal cosines, so a first width
    just past k leaves many rows to a costly second pass, while a few more columns settle
    nearly all of them at no visible cost in the kernel (bench/bench_engine.py, section c,
    with this function patched). So k + max(10, k/4) first; 4k (at least twice the first
    width, so that it is wider for small k) for the rows still tied; None = whole rows, for
    tie groups wider still. A width reaching the number of objects also means whole rows."""
    first = k + max(10, k // 4)
    return (first, max(4 * k, 2 * first), None)


def _balanced_rows(work: np.ndarray, threads: int) -> np.ndarray | None:
    """Row order for a kernel that gives each of ``threads`` threads an equal contiguous
    run of rows (OpenMP's static schedule): None (keep the order) when its runs carry about
    equal ``work``; otherwise the rows dealt busiest first, round-robin, into one run per
    thread (a shop whose old product ids are its popular ones would otherwise leave one
    thread most of the work, and the others idle)."""
    b = work.size
    if threads > 1 and b >= threads:
        run = -(-b // threads)
        per_run = np.add.reduceat(work.astype(np.int64), np.arange(0, b, run))
        if per_run.max() > 1.1 * per_run.mean():
            busy = np.argsort(-work, kind="stable")
            return np.concatenate([busy[t::threads] for t in range(threads)])
    return None


def _fused_cosine_topk(P: Prepared, start: int, stop: int, k: int, threads: int):
    """Top-k cosine rows [start, stop) through sparse_dot_topn's fused product + top-n.

    Only positive values are wanted here (non-negative data, or ``positive_only``), so
    ``threshold=0`` drops exactly what :func:`topk_rows` and ``positive_only`` drop. The
    kernel keeps the ``top`` largest values of a row (any tie order); the row's top-k set
    (ties to the smaller column) is then known exactly when the row had fewer than ``top``
    non-zeros, or when its k-th off-diagonal value is above the smallest value kept (the
    whole tie group is inside). Rows not settled that way are redone with a wider ``top``,
    then in full. Each row depends only on its own data, so blocks stay bitwise equal to
    the whole.
    """
    b, n = stop - start, P.n_objects
    nt = threads if threads > 1 else None
    dealt = _balanced_rows(np.diff(P.left.indptr[start:stop + 1]), threads)
    pending = np.arange(b, dtype=np.int64) if dealt is None else dealt
    order, right = P.right_by_popularity  # columns come back as positions in ``order``
    parts = []  # per pass: (rows settled, entries per row, columns, values)
    floor = None
    tops = _FUSED_TOPS(k)
    if tops[-1] is not None:
        tops = (*tops, None)  # every row must settle: the last pass takes whole rows
    for top in tops:
        if pending.size == 0:
            break
        if dealt is not None or pending.size < b:
            A = P.left[pending + start]
        else:  # all rows in their own order; a slice copies: the whole matrix goes as it is
            A = P.left if b == P.left.shape[0] else P.left[start:stop]
        if top is None or top >= n:
            # last resort (tie groups at the k-th value wider than the widths asked, or a
            # width reaching the catalogue: small catalogues go here at once): whole rows,
            # bucketed top-k.
            # scipy's product, not sparse_dot_topn's sp_matmul: 1.2.0 leaves uninitialised
            # entries (garbage columns and values) where a sum cancels to exactly 0, which
            # signed values and stored zeros (a TF-IDF weight of 0) can give
            C = A @ P.right
            r = row_ids(C)
            C.data[C.indices == pending[r] + start] = 0.0  # the diagonal
            np.maximum(C.data, 0.0, out=C.data)  # as the kernel's threshold of 0
            if floor is not None:
                # values clearly below the k-th value the previous pass found cannot be in
                # the top k (the 1e-9 margin covers any rounding difference between kernels)
                C.data[C.data < floor[r]] = 0.0
            C = topk_rows(C, k)
            parts.append((pending, np.diff(C.indptr), C.indices, C.data))
            break
        # sort=True: each row comes largest value first, so the k best are a prefix
        C = _sp_matmul_topn(A, right, top_n=top, threshold=0.0, sort=True, n_threads=nt)
        got = np.diff(C.indptr).astype(np.int64)
        low = np.full(pending.size, np.inf)  # the smallest value the kernel kept
        nz = np.nonzero(got)[0]
        low[nz] = C.data[C.indptr[1:][nz] - 1]
        cols = order.take(C.indices)
        valid = cols != np.repeat(pending + start, got)  # the threshold dropped the rest
        vals, cols = take_where(valid, C.data, cols)
        counts = row_sums(valid, got)
        starts = np.zeros(pending.size + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        full = counts >= k
        kth = np.full(pending.size, -np.inf)  # k-th largest off-diagonal value
        kth[full] = vals[starts[:-1][full] + k - 1]
        sel = np.arange(vals.size, dtype=np.int64) < np.repeat(starts[:-1] + k, counts)
        # a tie group across the k-th place: the tied entries with the smallest columns
        tied = np.nonzero(counts > k)[0]
        tied = tied[vals[starts[tied] + k] == kth[tied]]
        if tied.size:
            seg, pos, _ = segment_ranges(starts, tied)
            sel[pos] = topk_mask(vals[pos], cols[pos], counts[tied], k)
        # a row is settled when the kernel gave all of it, or when its k-th value beats the
        # lowest kept (a width of at most k + 1 may leave fewer than k besides the diagonal)
        done = (got < top) | (full & (kth > low))
        floor = (kth * (1 - 1e-9))[~done]
        sel &= np.repeat(done, counts)
        sel_c, sel_v = take_where(sel, cols, vals)
        parts.append((pending[done], np.minimum(counts, k)[done], sel_c, sel_v))
        pending = pending[~done]
    # place each pass's rows (whole runs of entries) at their rows' offsets: no sort
    per_row = np.zeros(b, dtype=np.int64)
    for rows, lens, _, _ in parts:
        per_row[rows] = lens
    indptr = np.zeros(b + 1, dtype=np.int64)
    np.cumsum(per_row, out=indptr[1:])
    idx = np.int32 if max(n, indptr[-1]) < 2**31 else np.int64
    out_c = np.empty(indptr[-1], dtype=idx)
    out_v = np.empty(indptr[-1])
    for rows, _, c, v in parts:
        _, dest, _ = segment_ranges(indptr, rows)
        out_c[dest] = c
        out_v[dest] = v
    out = sp.csr_matrix((out_v, out_c, indptr.astype(idx)), shape=(b, n))
    out.sort_indices()
    return out


def _resolve(R, method: str | None, kind: str, default: str) -> Prepared:
    if isinstance(R, Prepared):
        if method is not None and method != R.method:
            raise ValueError(f"method {method!r} differs from the prepared {R.method!r}")
        if R.kind != kind:
            raise ValueError(f"prepared for {R.kind} similarity, not {kind}")
        return R
    return prepare(R, method or default, kind=kind)


def item_similarity_block(
    R,
    start: int,
    stop: int,
    method: str | None = None,
    shrinkage: float = 0.0,
    k: int | None = None,
    n_jobs: int | None = 1,
    positive_only: bool = False,
) -> sp.csr_matrix:
    """Rows [start, stop) of the item-item similarity, top-k per row applied.

    ``R`` is the users x items matrix or the output of ``prepare(R, method)`` (then
    ``method`` may be omitted). Returns CSR of shape (stop - start, n_items), bitwise equal
    to ``item_similarity(...)[start:stop]``. This is the unit a task queue shards.
    """
    k = _check(shrinkage, k)
    P = _resolve(R, method, "item", "pearson")
    if not (0 <= start <= stop <= P.n_objects):
        raise ValueError(f"need 0 <= start <= stop <= {P.n_objects}, got {start}, {stop}")
    return _similarity_rows(P, int(start), int(stop), float(shrinkage), k, n_jobs, positive_only)


def item_similarity(
    R,
    method: str | None = None,
    shrinkage: float = 0.0,
    k: int | None = None,
    n_jobs: int | None = None,
    positive_only: bool = False,
) -> sp.csr_matrix:
    """Item x item similarity (CSR); see the module docstring for the formulas.

    ``method`` defaults to ``"pearson"``, or to the method ``R`` was prepared for.
    """
    k = _check(shrinkage, k)
    P = _resolve(R, method, "item", "pearson")
    return _similarity_rows(P, 0, P.n_objects, float(shrinkage), k, n_jobs, positive_only)


def user_similarity_block(
    R,
    start: int,
    stop: int,
    method: str | None = None,
    shrinkage: float = 0.0,
    k: int | None = None,
    n_jobs: int | None = 1,
    positive_only: bool = False,
) -> sp.csr_matrix:
    """Rows [start, stop) of the user-user similarity (see :func:`item_similarity_block`)."""
    k = _check(shrinkage, k)
    P = _resolve(R, method, "user", "pearson")
    if not (0 <= start <= stop <= P.n_objects):
        raise ValueError(f"need 0 <= start <= stop <= {P.n_objects}, got {start}, {stop}")
    return _similarity_rows(P, int(start), int(stop), float(shrinkage), k, n_jobs, positive_only)


def user_similarity(
    R,
    method: str | None = None,
    shrinkage: float = 0.0,
    k: int | None = None,
    n_jobs: int | None = None,
    positive_only: bool = False,
) -> sp.csr_matrix:
    """User x user similarity (CSR): ``pearson`` by default, or any method of
    :data:`SIMILARITY_METHODS` that compares users; a prepared ``R`` brings its own."""
    k = _check(shrinkage, k)
    P = _resolve(R, method, "user", "pearson")
    return _similarity_rows(P, 0, P.n_objects, float(shrinkage), k, n_jobs, positive_only)
