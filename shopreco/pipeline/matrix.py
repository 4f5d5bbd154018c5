"""Database rows -> the sparse matrices the engine works on, and back to primary keys.

How ratings and events become one matrix (users x products), documented here because every
run, the per-user refresh and the benchmark depend on it:

- An explicit rating wins: the cell holds the rating. A shopper who bought a product and
  rated it 1 star does not like it, whatever the events say.
- Otherwise the cell holds a pseudo-rating from the weighted events,
  ``c = sum(EVENT_WEIGHTS[kind] * count)``, mapped onto the rating scale with a log curve
  that saturates at the strongest single signal:
  ``lo + (hi - lo) * min(1, log1p(c) / log1p(max weight))``. With the default weights one
  view gives 2.5, a cart 4.1 and a purchase (or five views) 5.0 on a 1..5 scale, so events
  and ratings are comparable and repeated views cannot outweigh a purchase by much.
- Anonymous sessions are extra rows after the users: they improve the item similarities
  (co-views, co-purchases) but get no precomputed list (serving has no user for them).
- Event kinds are the keys of ``EVENT_WEIGHTS`` (rows of other kinds are ignored), so a shop
  adds one ("wishlist") by giving it a weight; ``OWNED_EVENT_KINDS`` (keys there too, a
  weight of 0 allowed) are the kinds that mean the shopper has the product.
- Each cell also keeps a reason code (rated > bought > carted > viewed) used to explain a
  recommendation, and an "owned" mask (rated or bought) used to exclude products. An owned
  kind reads "bought", the kind ``"cart"`` "carted" (the one explanation that names a kind:
  "added to your cart"), any other kind "viewed".
- ``purchases`` is the binary users x products matrix of OWNED_EVENT_KINDS events; its
  co-occurrence counts give the "also bought" neighbours, each shopper once per product
  however often they bought it. Purchases come from the shop's server (``shopreco.track``
  in its checkout), a guest's too. Where a host lets clients post them
  (``CLIENT_EVENT_KINDS``), anonymous sessions' purchases of those kinds are left out of
  it: sessions cost nothing, and co-occurrence is a cosine, so a crowd of scripted
  sessions buying two products together would make them each other's first neighbour at
  any weight above zero. They still say the session owns the product.

Only products that appear in some rating or event get a column; products with no history
have no neighbours and reach shoppers through serving's fallback chain.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.db.models import Count, Max, QuerySet
from numpy.typing import DTypeLike

from shopreco.conf import reco_settings
from shopreco.models import Interaction, Rating, Reason

# Reason codes stored per cell; lower is stronger. Names are the Recommendation.reason codes.
REASONS = tuple(r.value for r in Reason.activity())
RATED, BOUGHT, CARTED, VIEWED = range(4)


@dataclass
class Snapshot:
    """Everything a run computes from: small enough to ship through any Django storage."""

    R: sp.csr_matrix  # (users + sessions) x products, float64
    reason: np.ndarray  # int8 reason code aligned with R.data (R has sorted indices)
    owned: sp.csr_matrix  # bool, same shape: rated or bought
    purchases: sp.csr_matrix  # bool, same shape: the purchases co-occurrence counts
    user_pks: np.ndarray  # row -> user pk, for rows [0, n_users)
    product_pks: np.ndarray  # column -> product pk
    n_users: int
    n_ratings: int
    n_events: int
    # Latest time (epoch seconds) of each cell, aligned with R.data; only when asked for
    # (load_snapshot(times=True), for temporal evaluation), never stored with the run.
    times: np.ndarray | None = None

    @property
    def n_products(self) -> int:
        return int(self.R.shape[1])

    def product_pk(self, idx: int) -> Any:
        return _pk_value(self.product_pks[idx])

    def user_pk(self, idx: int) -> Any:
        return _pk_value(self.user_pks[idx])

    @classmethod
    def from_ratings(cls, R: sp.csr_matrix, times: np.ndarray | None = None) -> Snapshot:
        """A users x items ratings matrix (indices as keys) as a snapshot: every cell a
        rating, owned; what an evaluation of a ratings file computes from."""
        R = sp.csr_matrix(R)
        R.sort_indices()
        n_users, n_items = R.shape
        owned = _bool_csr(R.indices, R.indptr, R.shape)
        return cls(R=R, reason=np.full(R.nnz, RATED, dtype=np.int8), owned=owned,
                   purchases=sp.csr_matrix(R.shape, dtype=bool), user_pks=np.arange(n_users),
                   product_pks=np.arange(n_items), n_users=n_users, n_ratings=R.nnz,
                   n_events=0, times=times)

    def to_bytes(self) -> bytes:
        """A compressed ``.npz`` (no pickles: safe to read from shared storage)."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            r_data=self.R.data,
            r_indices=self.R.indices,
            r_indptr=self.R.indptr,
            shape=np.array(self.R.shape, dtype=np.int64),
            reason=self.reason,
            owned_indices=self.owned.indices,
            owned_indptr=self.owned.indptr,
            buy_indices=self.purchases.indices,
            buy_indptr=self.purchases.indptr,
            user_pks=self.user_pks,
            product_pks=self.product_pks,
            meta=np.array([self.n_users, self.n_ratings, self.n_events], dtype=np.int64),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        z = np.load(io.BytesIO(data), allow_pickle=False)
        shape = tuple(int(x) for x in z["shape"])
        R = sp.csr_matrix((z["r_data"], z["r_indices"], z["r_indptr"]), shape=shape)
        R.has_sorted_indices = True
        owned = _bool_csr(z["owned_indices"], z["owned_indptr"], shape)
        buys = _bool_csr(z["buy_indices"], z["buy_indptr"], shape)
        n_users, n_ratings, n_events = (int(x) for x in z["meta"])
        return cls(R, z["reason"], owned, buys, z["user_pks"], z["product_pks"],
                   n_users, n_ratings, n_events)


def _bool_csr(indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    M = sp.csr_matrix((np.ones(indices.size, dtype=bool), indices, indptr), shape=shape)
    M.has_sorted_indices = True
    return M


def _pk_value(v: Any) -> Any:
    """numpy scalar -> plain Python value a model field accepts (int or str)."""
    return v.item() if hasattr(v, "item") else v


def encode_pks(pks: list[Any]) -> np.ndarray:
    """Primary keys as a numpy array: int64 for integer keys, unicode for UUID/text keys."""
    if all(isinstance(p, int) and not isinstance(p, bool) for p in pks):
        return np.array(pks, dtype=np.int64)
    return np.array([str(p) for p in pks], dtype=np.str_)


def pseudo_rating(confidence: np.ndarray) -> np.ndarray:
    """Map summed event weights onto the rating scale (see the module docstring)."""
    lo, hi = float(reco_settings.RATING_MIN), float(reco_settings.RATING_MAX)
    weights = [float(w) for w in reco_settings.EVENT_WEIGHTS.values() if float(w) > 0]
    ref = math.log1p(max(weights)) if weights else 1.0
    return lo + (hi - lo) * np.minimum(1.0, np.log1p(confidence) / ref)


def preferences(snap: Snapshot) -> sp.csr_matrix:
    """The users x products preference weights the ranking models learn from, in (0, 1].

    Every interaction is evidence that a shopper wants the product (the served lists are
    judged by what shoppers pick next, whatever they thought of it after), so the weights
    say how *strong* the evidence is, never negative: an event cell keeps its position on
    the event curve, ``(pseudo - lo) / (hi - lo)`` (one view 0.375, a cart 0.78, a purchase
    1.0 with the default weights); a rating maps to ``0.5 + 0.5 * (r - lo) / (hi - lo)``,
    so a one-star rating is half the evidence of a five-star one. Binary weights, rating
    values and this mapping measured the same on MovieLens (bench/RESULTS.md)."""
    lo, hi = float(reco_settings.RATING_MIN), float(reco_settings.RATING_MAX)
    t = np.clip((snap.R.data - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    rated = snap.reason == RATED
    w = np.where(rated, 0.5 + 0.5 * t, np.maximum(t, 0.05))
    X = sp.csr_matrix((w, snap.R.indices, snap.R.indptr), shape=snap.R.shape)
    X.has_sorted_indices = True
    return X


def event_reason(kind: str) -> int:
    """Reason code (index into :data:`REASONS`) of an event kind, by
    :meth:`Reason.for_event <shopreco.models.Reason.for_event>`, the one rule serving uses too."""
    return REASONS.index(Reason.for_event(kind))


def load_snapshot(ratings: QuerySet | None = None, events: QuerySet | None = None,
                  times: bool = False) -> Snapshot:
    """Stream ratings and (DB-aggregated) events into a :class:`Snapshot`.

    Uses ``values_list(...).iterator()`` so no model instances are built; events are grouped
    by (user, session, product, kind) in the database first. ``ratings``/``events`` narrow
    the input (the per-user refresh passes one user's rows). ``times`` also reads each
    cell's latest time (a rating's last change, the last event) into ``Snapshot.times``.
    """
    ratings = Rating.objects.all() if ratings is None else ratings
    events_qs = Interaction.objects.all() if events is None else events
    weights = {k: float(w) for k, w in reco_settings.EVENT_WEIGHTS.items()}
    owned_kinds = set(reco_settings.OWNED_EVENT_KINDS)

    r_user: list[Any] = []
    r_prod: list[Any] = []
    r_score: list[float] = []
    r_time: list[float] = []
    fields = ("user_id", "product_id", "score") + (("updated_at",) if times else ())
    for row in ratings.values_list(*fields).order_by().iterator(chunk_size=20000):
        r_user.append(row[0])
        r_prod.append(row[1])
        r_score.append(row[2])
        if times:
            r_time.append(row[3].timestamp())

    e_row: list[Any] = []  # user pk, or ("s", session_key) for anonymous rows
    e_prod: list[Any] = []
    e_conf: list[float] = []
    e_reason: list[int] = []
    e_buy: list[bool] = []
    e_co: list[bool] = []  # counted in co-occurrence
    forgeable = set(reco_settings.CLIENT_EVENT_KINDS) & owned_kinds
    e_time: list[float] = []
    n_events = 0
    grouped = (
        events_qs.filter(kind__in=list(weights))
        .values_list("user_id", "session_key", "product_id", "kind")
        .order_by()
        .annotate(n=Count("id"))
    )
    if times:
        grouped = grouped.annotate(last=Max("created_at"))
    for user_id, session_key, product_id, kind, n, *last in grouped.iterator(chunk_size=20000):
        if user_id is None and not session_key:
            continue
        n_events += n
        w = weights.get(kind, 0.0)
        bought = kind in owned_kinds
        if w <= 0 and not bought:
            continue
        e_row.append(user_id if user_id is not None else ("s", session_key))
        e_prod.append(product_id)
        e_conf.append(w * n)
        e_reason.append(event_reason(kind))
        e_buy.append(bought)
        e_co.append(bought and not (user_id is None and kind in forgeable))
        if times:
            e_time.append(last[0].timestamp())

    user_set = set(r_user) | {u for u in e_row if not isinstance(u, tuple)}
    users = sorted(user_set)
    sessions = sorted({u[1] for u in e_row if isinstance(u, tuple)})
    products = sorted(set(r_prod) | set(e_prod), key=_sort_key)
    row_of: dict[Any, int] = {u: i for i, u in enumerate(users)}
    row_of.update({("s", s): len(users) + i for i, s in enumerate(sessions)})
    col_of = {p: j for j, p in enumerate(products)}
    shape = (len(users) + len(sessions), len(products))

    # Events: sum confidences per cell, strongest reason per cell.
    er = np.fromiter((row_of[u] for u in e_row), dtype=np.int64, count=len(e_row))
    ec = np.fromiter((col_of[p] for p in e_prod), dtype=np.int64, count=len(e_prod))
    conf = sp.csr_matrix((np.asarray(e_conf, dtype=np.float64), (er, ec)), shape=shape)
    conf.sum_duplicates()
    # strongest reason = min code; store (4 - code) and take max via a coo->csr max trick
    rs = _max_duplicates(er, ec, 4 - np.asarray(e_reason, dtype=np.int64), shape)
    bought = _cells(er, ec, np.asarray(e_buy, dtype=bool), shape)
    purchases = _cells(er, ec, np.asarray(e_co, dtype=bool), shape)

    # Ratings override events.
    rr = np.fromiter((row_of[u] for u in r_user), dtype=np.int64, count=len(r_user))
    rc = np.fromiter((col_of[p] for p in r_prod), dtype=np.int64, count=len(r_prod))
    rated = sp.csr_matrix((np.ones(rr.size, dtype=bool), (rr, rc)), shape=shape)
    rated.sum_duplicates()

    ev_vals = pseudo_rating(conf.data)
    ev = sp.csr_matrix((ev_vals, conf.indices, conf.indptr), shape=shape)
    ev = ev - ev.multiply(rated)  # drop event cells that have a rating
    ev.eliminate_zeros()
    rt = sp.csr_matrix((np.asarray(r_score, dtype=np.float64), (rr, rc)), shape=shape)
    R = (ev + rt).tocsr()
    R.sum_duplicates()
    R.sort_indices()

    # Reason per cell: rated where a rating exists, else the strongest event kind.
    rs.sort_indices()
    reason = 4 - values_at(rs, R).astype(np.int8)
    is_rated = values_at(rated.astype(np.int8), R).astype(bool)
    reason[is_rated] = RATED
    owned_mask = is_rated | values_at(bought.astype(np.int8), R).astype(bool)
    owned = sp.csr_matrix((owned_mask, R.indices.copy(), R.indptr.copy()), shape=shape)
    owned.eliminate_zeros()
    owned.sort_indices()
    cell_times = None
    if times:
        # latest of the cell's rating and events (max of duplicates, as for reasons)
        t_rows = np.concatenate([rr, er])
        t_cols = np.concatenate([rc, ec])
        t_vals = np.concatenate([np.asarray(r_time, dtype=np.float64),
                                 np.asarray(e_time, dtype=np.float64)])
        T = _max_duplicates(t_rows, t_cols, t_vals, shape)
        T.sort_indices()
        cell_times = values_at(T, R, dtype=np.float64)

    return Snapshot(
        R=R,
        reason=reason.astype(np.int8),
        owned=owned,
        purchases=purchases,
        user_pks=encode_pks(users),
        product_pks=encode_pks(products),
        n_users=len(users),
        n_ratings=len(r_user),
        n_events=n_events,
        times=cell_times,
    )


def _cells(rows: np.ndarray, cols: np.ndarray, mask: np.ndarray,
           shape: tuple[int, int]) -> sp.csr_matrix:
    """A boolean matrix of the masked (row, column) pairs, each cell once."""
    M = sp.csr_matrix((np.ones(int(mask.sum()), dtype=bool), (rows[mask], cols[mask])),
                      shape=shape)
    M.sum_duplicates()
    M.sort_indices()
    return M


def _sort_key(pk: Any) -> tuple:
    # Mixed types never occur for one model; str() keeps UUIDs sortable.
    return (0, pk) if isinstance(pk, int) else (1, str(pk))


def _max_duplicates(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                    shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR with the maximum of duplicate entries (scipy sums duplicates)."""
    if rows.size == 0:
        return sp.csr_matrix(shape, dtype=np.int64)
    order = np.lexsort((-vals, cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.ones(rows.size, dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    return sp.csr_matrix((vals[first], (rows[first], cols[first])), shape=shape)


def values_at(M: sp.csr_matrix, pattern_of: sp.csr_matrix,
              dtype: DTypeLike = np.int64) -> np.ndarray:
    """Values of ``M`` at the stored cells of ``pattern_of`` (0 where M has none)."""
    P = sp.csr_matrix(
        (np.arange(1, pattern_of.nnz + 1, dtype=np.int64), pattern_of.indices,
         pattern_of.indptr),
        shape=pattern_of.shape,
    )
    out = np.zeros(pattern_of.nnz, dtype=dtype)
    M = M.tocoo()
    if M.nnz == 0:
        return out
    pos = np.asarray(P[M.row, M.col]).ravel()
    hit = pos > 0
    out[pos[hit] - 1] = M.data[hit]
    return out
