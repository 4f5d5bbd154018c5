"""Personalised ordering of the host's own listings: ``shopreco.rank(products, request)``.

A category page or a search result is the host's list; ranking reorders its first
``RANK_LIMIT`` products by the shopper's taste and leaves the rest in the host's order.

- The personal score of a candidate is ``sum_j x_j * W[j, c]``: the shopper's preference
  weights ``x`` (their ratings and events, or an anonymous session's events, weighted as
  the pipeline weights them: :func:`shopreco.pipeline.matrix.preferences`) times the served
  run's item weights, computed for the given candidates only. ``W`` is EASE's dense head
  pruned to each product's :data:`RANK_NEIGHBOURS` largest positive weights plus its tail
  rows, or the stored item similarity for the kNN models (exactly what item kNN scores
  with; user kNN has no item weights, so its item similarity stands in). It is built once
  per process and run (:func:`weights_for`), so a request costs one history query and a
  gather of the history's rows.
- The served run comes from :func:`~shopreco.serving.request.state`, the function every
  widget uses, so ranking follows whatever run the shopper is served.
- The personal order is fused with the host's by reciprocal rank (:func:`fuse`): ``blend``
  0 keeps the host's order, 1 is purely personal, and between the two a search keeps its
  query. Candidates the shopper's history says nothing about share one personal rank, so
  among them the host's order stands.
- Shoppers without history, opted-out and Sec-GPC visitors get the host's order.
- The list has a recommendation id and an impression (the reordered window), like the
  widgets, so a click carrying ``?rec=`` and a later purchase are credited to it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.db import connections, router
from django.db.models import QuerySet

from shopreco.adapter import get_adapter
from shopreco.conf import reco_settings
from shopreco.engine import MODELS
from shopreco.models import Interaction, Rating, Reason, new_recommendation_id
from shopreco.pipeline import compute, files, storage
from shopreco.pipeline.matrix import RATED, REASONS, Snapshot, preferences, pseudo_rating
from shopreco.serving.lists import record_impression
from shopreco.serving.products import load_products
from shopreco.serving.reasons import reason_kind, reason_text
from shopreco.serving.request import (
    Viewer,
    base_request,
    gpc,
    is_user,
    memo,
    served_arm_id,
    session_key,
    state,
)

log = logging.getLogger("shopreco.serving")

WIDGET = "rank"  # Impression.widget of a ranked listing
# Weights kept per product row of EASE's dense head: bench/bench_ranking.py measures what
# fewer cost; the dense head itself would be items^2 floats in every web process.
RANK_NEIGHBOURS = 500
# The shopper's most recent (product, kind) rows that make their history.
HISTORY_ROWS = 500
# Reciprocal rank fusion's constant (Cormack et al. 2009): a rank r scores 1 / (RRF_K + r).
RRF_K = 60
# Runs whose weights a process keeps (the served one, and the one before or an A/B arm's).
KEEP_RUNS = 3


# --------------------------------------------------------------------------- the weights


@dataclass
class RankWeights:
    """One run's item weights as a process holds them for ranking."""

    run_id: int
    index: dict  # product key (int, or str of a UUID / text key) -> column
    weights: sp.csr_matrix  # products x products: row j = what having j lends each product

    def columns(self, pks: Iterable[Any]) -> np.ndarray:
        """Columns of ``pks`` (-1 for products the run does not know)."""
        get = self.index.get
        return np.fromiter((get(_key(pk), -1) for pk in pks), dtype=np.int64)


def _key(pk: Any) -> Any:
    return pk if isinstance(pk, int) else str(pk)


def prune_head(W: np.ndarray, head: np.ndarray, n: int, k: int = RANK_NEIGHBOURS,
               block: int = 1024) -> sp.csr_matrix:
    """The ``k`` largest positive weights of each row of EASE's dense head block ``W``, in
    the run's product columns (float32 CSR). Negative weights go: a listing is ranked by
    what lifts a product, and its candidates without a lift keep the host's order."""
    head = np.asarray(head, dtype=np.int64)
    width = W.shape[1]
    kk = min(int(k), width)
    rows, cols, vals = [], [], []
    for a in range(0, W.shape[0], block):
        B = np.asarray(W[a:a + block])
        idx = np.argpartition(B, width - kk, axis=1)[:, width - kk:] if kk < width else \
            np.broadcast_to(np.arange(width), B.shape)
        v = np.take_along_axis(B, idx, axis=1)
        keep = v > 0
        r = np.broadcast_to(np.arange(a, a + B.shape[0])[:, None], idx.shape)
        rows.append(head[r[keep]])
        cols.append(head[idx[keep]])
        vals.append(v[keep].astype(np.float32))
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    out = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(n, n), dtype=np.float32)
    out.sort_indices()
    return out


def weights_from_parts(n: int, ease_parts: tuple | None = None,
                       similarity: sp.spmatrix | None = None,
                       k: int = RANK_NEIGHBOURS) -> sp.csr_matrix:
    """The ranking weights of a run from its stored parts: EASE's (head, dense weights,
    tail) pruned by :func:`prune_head` plus the tail rows, or the item similarity."""
    if ease_parts is not None:
        head, W, tail = ease_parts
        out = prune_head(W, head, n, k) if W is not None else sp.csr_matrix((n, n))
        if tail is not None and tail.nnz:
            out = out + sp.csr_matrix(tail, dtype=np.float32)
    else:
        out = sp.csr_matrix(similarity if similarity is not None else (n, n))
    out = sp.csr_matrix(out, dtype=np.float32)
    out.sort_indices()
    return out


_weights: OrderedDict[int, RankWeights | None] = OrderedDict()
_weights_lock = threading.Lock()
_loading: set[int] = set()
# Whether a request waits for a run's weights to be read (tests), or gets the host's order
# while a background thread reads them (the default: the first ranked listing of a process
# after a run goes live would otherwise wait for the read and the pruning).
WAIT_FOR_WEIGHTS = False


def weights_for(run_id: int, *, wait: bool | None = None) -> RankWeights | None:
    """The run's ranking weights, read from its files once per process (later requests
    find them in memory: a run's results never change). None while they are being read
    (unless ``wait``, default :data:`WAIT_FOR_WEIGHTS`) and when the run's files are gone
    (a pruned run): the listing keeps the host's order."""
    found = _weights.get(run_id, False)
    if found is not False:
        return found
    with _weights_lock:
        if run_id in _weights or run_id in _loading:
            return _weights.get(run_id)
        _loading.add(run_id)
    try:
        run = files.get_run(run_id)  # here: the reader thread needs no database
    except Exception:
        with _weights_lock:
            _loading.discard(run_id)
        raise
    if wait if wait is not None else WAIT_FOR_WEIGHTS:
        _read(run)
        return _weights.get(run_id)
    threading.Thread(target=_read, args=(run,), daemon=True,
                     name=f"shopreco-rank-weights-{run_id}").start()
    return None


def _read(run: Any) -> None:
    """Read a run's weights into the process's memory (a failure other than missing files
    is logged and retried by a later request)."""
    try:
        found = _load(run)
    except Exception:
        log.exception("ranking: reading the weights of run #%s failed", run.pk)
        with _weights_lock:
            _loading.discard(run.pk)
        return
    with _weights_lock:
        _weights[run.pk] = found
        _loading.discard(run.pk)
        while len(_weights) > KEEP_RUNS:
            _weights.popitem(last=False)


def forget_weights() -> None:
    """Drop the weights this process holds (tests; a host reclaiming memory)."""
    with _weights_lock:
        _weights.clear()
        _loading.clear()


def _load(run: Any) -> RankWeights | None:
    try:
        # Read directly, not through the storage cache: only the pruned weights stay.
        snap = Snapshot.from_bytes(storage.read_bytes(files.run_file(run, files.SNAPSHOT)))
        n = snap.n_products
        model = MODELS.get(run.params.get("algorithm", ""))
        if model is not None and model.learns_similarity:
            data = storage.read_bytes(files.run_file(run, files.EASE_PARTS))
            parts = compute.ease_parts_from_arrays(storage.arrays_from_bytes(data))
            del data
            W = weights_from_parts(n, ease_parts=parts)
        else:
            W = weights_from_parts(n, similarity=files.load_run_similarity(run))
    except (FileNotFoundError, OSError, KeyError, ValueError) as exc:
        log.warning("ranking: run #%s has no readable weights (%s); listings keep the "
                    "host's order", run.pk, exc)
        return None
    index = {pk: j for j, pk in enumerate(snap.product_pks.tolist())}
    return RankWeights(run.pk, index, W)


# --------------------------------------------------------------------------- the scores


def personal_scores(W: sp.csr_matrix, hist_cols: np.ndarray, hist_w: np.ndarray,
                    cand_cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score, reason) of each candidate: ``sum_j x_j * W[j, c]`` over the history columns
    ``hist_cols`` with weights ``hist_w``, and the index into the history of the product
    that lifts it most (-1 when nothing does). Unknown candidates (column -1) score 0.

    A gather of the history's rows of ``W``; nothing is computed for products that are
    not candidates. The same function scores the benchmark's arrays."""
    m = cand_cols.size
    scores = np.zeros(m)
    reasons = np.full(m, -1, dtype=np.int64)
    ok = hist_cols >= 0
    hist_cols, hist_w, hist_at = hist_cols[ok], hist_w[ok], np.flatnonzero(ok)
    known = cand_cols >= 0
    if not known.any() or not hist_cols.size:
        return scores, reasons
    sub = W[hist_cols]  # the history's rows: the one gather the request pays for
    slot = np.full(W.shape[1], -1, dtype=np.int64)
    slot[cand_cols[known]] = np.flatnonzero(known)  # a product listed twice: its last place
    at = np.flatnonzero(slot[sub.indices] >= 0)
    if not at.size:
        return scores, reasons
    target = slot[sub.indices[at]]
    src = np.searchsorted(sub.indptr, at, side="right") - 1
    contrib = sub.data[at].astype(np.float64) * hist_w[src]
    scores = np.bincount(target, weights=contrib, minlength=m)
    first = np.lexsort((-contrib, target))
    lead = np.r_[True, target[first][1:] != target[first][:-1]]
    best = first[lead]
    good = contrib[best] > 0
    reasons[target[best][good]] = hist_at[src[best][good]]
    twice = known.copy()
    twice[np.flatnonzero(known)] = slot[cand_cols[known]] != np.flatnonzero(known)
    if twice.any():  # earlier places of a product listed twice take its last place's
        where = slot[cand_cols[twice]]
        scores[twice], reasons[twice] = scores[where], reasons[where]
    return scores, reasons


def personal_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each score, best first; equal scores share the best of their ranks,
    and every candidate without a positive score shares the rank after the last one."""
    m = scores.size
    ranks = np.full(m, 0, dtype=np.int64)
    pos = scores > 0
    n_pos = int(pos.sum())
    ranks[~pos] = n_pos + 1
    if n_pos:
        s = scores[pos]
        order = np.argsort(-s, kind="stable")
        sorted_s = s[order]
        first = np.r_[True, sorted_s[1:] != sorted_s[:-1]]
        r = np.maximum.accumulate(np.where(first, np.arange(1, n_pos + 1), 0))
        out = np.empty(n_pos, dtype=np.int64)
        out[order] = r
        ranks[pos] = out
    return ranks


def fuse(scores: np.ndarray, blend: float) -> np.ndarray:
    """The new order (positions into the host's order) of candidates with personal
    ``scores``, by reciprocal rank fusion of the personal rank and the host's:
    ``blend / (RRF_K + personal rank) + (1 - blend) / (RRF_K + host rank)``, ties in the
    host's order. ``blend`` 0 is the host's order, 1 the personal order."""
    m = scores.size
    host = np.arange(1, m + 1, dtype=np.float64)
    fused = blend / (RRF_K + personal_ranks(scores)) + (1.0 - blend) / (RRF_K + host)
    return np.argsort(-fused, kind="stable")


# --------------------------------------------------------------------------- the shopper


@dataclass
class History:
    """The shopper's products with their preference weights and reason codes."""

    pks: list
    weights: np.ndarray
    codes: list  # Reason values: rated / bought / carted / viewed


def _history_sql(connection: Any, signed_in: bool, n_kinds: int) -> str:
    """The history query, hand-written as the state query is (the ORM took longer to compile
    the UNION than the database to run it, and the rows' times are needed only to order
    them). Identifiers come from model metadata; values (the shopper, the event kinds, the
    row limit) are bound parameters."""
    qn = connection.ops.quote_name
    e_table = qn(Interaction._meta.db_table)
    e_product, e_kind, e_user, e_session, e_time = (
        qn(Interaction._meta.get_field(name).column)
        for name in ("product", "kind", "user", "session_key", "created_at"))
    r_table = qn(Rating._meta.db_table)
    r_product, r_score, r_user, r_time = (
        qn(Rating._meta.get_field(name).column)
        for name in ("product", "score", "user", "updated_at"))
    if signed_in:
        history = (
            f"SELECT {r_product} AS p, {r_score} AS r, '' AS k, 1 AS n, {r_time} AS t"
            f" FROM {r_table} WHERE {r_user} = %s"
            " UNION ALL "
            f"SELECT {e_product}, NULL, {e_kind}, COUNT(*), MAX({e_time}) FROM {e_table}"
            f" WHERE {e_user} = %s AND {e_kind} IN ({', '.join(['%s'] * n_kinds)})"
            f" GROUP BY {e_product}, {e_kind}"
        )
    else:
        history = (
            f"SELECT {e_product} AS p, NULL AS r, {e_kind} AS k, COUNT(*) AS n,"
            f" MAX({e_time}) AS t FROM {e_table} WHERE {e_user} IS NULL AND {e_session} = %s"
            f" AND {e_kind} IN ({', '.join(['%s'] * n_kinds)}) GROUP BY {e_product}, {e_kind}"
        )
    return "SELECT p, r, k, n FROM (" + history + ") h ORDER BY t DESC LIMIT %s"


def history_rows(viewer: Viewer) -> list[tuple]:
    """(product, rating or None, event kind or "", count) of the shopper's most recent
    ratings and events (grouped by product and kind), in ONE query; [] for nobody."""
    if not viewer.identified:
        return []
    kinds = list(reco_settings.EVENT_WEIGHTS)
    signed_in = viewer.user is not None
    params: list[Any] = [viewer.user.pk] if signed_in else []
    params += [viewer.user.pk if signed_in else viewer.session_key, *kinds, int(HISTORY_ROWS)]
    connection = connections[router.db_for_read(Interaction)]
    with connection.cursor() as cursor:
        cursor.execute(_history_sql(connection, signed_in, len(kinds)), params)
        rows = cursor.fetchall()
    key = Rating._meta.get_field("product").target_field
    if rows and not isinstance(rows[0][0], int):  # e.g. UUIDs stored as text
        rows = [(key.to_python(pk), *rest) for pk, *rest in rows]
    return rows


def history_of(rows: list[tuple]) -> History:
    """Preference weights of the rows as the pipeline computes them for the same cells (a
    rating wins; events sum ``EVENT_WEIGHTS`` times count onto the event curve)."""
    weights = {k: float(w) for k, w in reco_settings.EVENT_WEIGHTS.items()}
    rated: dict[Any, float] = {}
    conf: dict[Any, float] = {}
    code: dict[Any, int] = {}
    for pk, rating, kind, n in rows:
        if rating is not None:
            rated[pk] = float(rating)
            code[pk] = RATED
            continue
        w = weights.get(kind, 0.0)
        if w <= 0:
            continue
        conf[pk] = conf.get(pk, 0.0) + w * int(n)
        c = REASONS.index(Reason.for_event(kind))
        code[pk] = min(code.get(pk, c), c)
    pks = [*rated, *(pk for pk in conf if pk not in rated)]
    if not pks:
        return History([], np.zeros(0), [])
    n_rated = len(rated)
    values = np.empty(len(pks))
    values[:n_rated] = list(rated.values())
    values[n_rated:] = pseudo_rating(np.array([conf[pk] for pk in pks[n_rated:]]))
    reason = np.array([RATED] * n_rated + [code[pk] for pk in pks[n_rated:]], dtype=np.int8)
    R = sp.csr_matrix((values, np.arange(len(pks)), [0, len(pks)]), shape=(1, len(pks)))
    cell = Snapshot(R=R, reason=reason, owned=R.astype(bool), purchases=R.astype(bool),
                    user_pks=np.zeros(1, dtype=np.int64), product_pks=np.arange(len(pks)),
                    n_users=1, n_ratings=0, n_events=0)
    return History(pks, preferences(cell).data.copy(), [REASONS[c] for c in reason.tolist()])


# --------------------------------------------------------------------------- the listing


@dataclass
class RankedItem:
    """One product of a ranked listing, with why it stands where it does."""

    product: Any
    position: int  # 1-based, in the ranked listing
    host_position: int  # 1-based, in the host's order
    score: float  # personal score (0: the history says nothing about it)
    reason_kind: str  # a Reason kind ("viewed", "bought", ...), or "" for the host's order
    reason_pk: Any = None
    _listing: Any = None

    @property
    def pk(self) -> Any:
        return self.product.pk

    @property
    def reason_product(self) -> Any:
        """The shopper's product that lifted this one (loaded for the whole listing on
        first use, in one query)."""
        if self.reason_pk is None or self._listing is None:
            return None
        return self._listing.reason_products().get(self.reason_pk)

    @property
    def reason(self) -> str:
        """The sentence to show ("Because you viewed ..."), "" in the host's order."""
        if not self.reason_kind:
            return ""
        return reason_text(self.reason_kind, self.product, self.reason_product)

    @property
    def url(self) -> str:
        """The product's URL carrying the listing's recommendation id, so a click and a
        later purchase are credited to the listing."""
        url = get_adapter().get_url(self.product)
        rec = self._listing.recommendation_id if self._listing is not None else ""
        if not url or not rec:
            return url
        return f"{url}{'&' if '?' in url else '?'}rec={rec}"


class Ranked(Sequence):
    """The host's products in the shopper's order: a sequence (iterate, ``len``, slice,
    ``count()``: Django's Paginator and DRF's paginations take it as they take a
    QuerySet) whose first window is reordered and whose rest stays lazy in the host's
    order. ``items``: the window with reasons; ``recommendation_id``: the listing's id."""

    def __init__(self, window: list, rest: Any, *, items: list[RankedItem],
                 recommendation_id: str, personal: bool, run_id: int | None,
                 total: int | None = None) -> None:
        self.window = window
        self.rest = rest  # a QuerySet, a list, or None
        self.items = items
        self.recommendation_id = recommendation_id
        self.personal = personal
        self.run_id = run_id
        self._total = total
        self._reason_products: dict | None = None
        for item in items:
            item._listing = self

    def reason_products(self) -> dict:
        if self._reason_products is None:
            pks = {i.reason_pk for i in self.items} - {None}
            self._reason_products = load_products((), also=pks) if pks else {}
        return self._reason_products

    def _rest_len(self) -> int:
        if self.rest is None:
            return 0
        if isinstance(self.rest, QuerySet):
            return self.rest.count()
        return len(self.rest)

    def count(self) -> int:
        if self._total is None:
            self._total = len(self.window) + self._rest_len()
        return self._total

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[Any]:
        yield from self.window
        if self.rest is not None:
            yield from self.rest

    def __getitem__(self, at: Any) -> Any:
        w = len(self.window)
        if isinstance(at, slice):
            start, stop, step = at.start or 0, at.stop, at.step
            if step not in (None, 1) or start < 0 or (stop is not None and stop < 0):
                return list(self)[at]
            head = self.window[start:stop]
            if (stop is not None and stop <= w) or self.rest is None:
                return head
            rest = self.rest[max(start - w, 0):None if stop is None else stop - w]
            return head + list(rest)
        if at < 0:
            return list(self)[at]
        if at < w:
            return self.window[at]
        if self.rest is None:
            raise IndexError(at)
        return self.rest[at - w]

    @property
    def products(self) -> list[Any]:
        return list(self)


def clean_blend(blend: Any) -> float:
    """``blend`` as a float in [0, 1], or a ValueError naming it."""
    try:
        value = float(blend)
    except (TypeError, ValueError):
        raise ValueError("blend: must be a number from 0 to 1.") from None
    if isinstance(blend, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"blend: must be a number from 0 to 1, not {blend!r}.")
    return value


def clean_rank_limit(limit: Any) -> int:
    """How many of the host's first products are reordered (``None``: RANK_LIMIT)."""
    if limit is None or limit == "":
        return int(reco_settings.RANK_LIMIT)
    if isinstance(limit, bool):
        raise ValueError("limit: must be a positive integer.")
    try:
        value = int(str(limit).strip()) if not isinstance(limit, int) else limit
    except (TypeError, ValueError):
        raise ValueError("limit: must be a positive integer.") from None
    if value < 1:
        raise ValueError(f"limit: must be a positive integer, not {value}.")
    return value


def split_listing(products: Iterable[Any], limit: int) -> tuple[list, Any]:
    """(the first ``limit`` products, the rest): a QuerySet's rest stays unevaluated."""
    if isinstance(products, QuerySet):
        window = list(products[:limit])
        return window, (products[limit:] if len(window) == limit else None)
    products = products if isinstance(products, Sequence) else list(products)
    return list(products[:limit]), (list(products[limit:]) or None)


def host_order(products: Iterable[Any], limit: Any = None) -> Ranked:
    """``products`` in the host's order as a :class:`Ranked` listing, with no query beyond
    the host's own and no impression: what a listing shows when ranking cannot run."""
    window, rest = split_listing(products, clean_rank_limit(limit))
    items = [RankedItem(product=p, position=i, host_position=i, score=0.0, reason_kind="")
             for i, p in enumerate(window, start=1)]
    return Ranked(window, rest, items=items, recommendation_id="", personal=False, run_id=None)


def _who(request_or_user: Any) -> tuple[Any, Any]:
    """(user or None, request or None) of a request, a DRF request, a user or None."""
    if request_or_user is None:
        return None, None
    if hasattr(base_request(request_or_user), "META"):
        # a DRF request's own user: token and other API authentications set only that one
        return getattr(request_or_user, "user", None), request_or_user
    return request_or_user, None


def rank(products: Iterable[Any], request_or_user: Any, *, limit: Any = None,
         blend: Any = 0.5, log: bool = True) -> Ranked:
    """The host's ``products`` (a QuerySet or any sequence, in the host's order) ordered
    for the shopper of ``request_or_user`` (a request, a user or None).

    The first ``limit`` products (``RANK_LIMIT`` by default) are reordered; the rest follow
    in the host's order, a QuerySet's unevaluated. Queries: the request's state (shared
    with the page's widgets) and the shopper's history, plus the impression."""
    blend = clean_blend(blend)
    window, rest = split_listing(products, clean_rank_limit(limit))
    user, request = _who(request_or_user)
    viewer = Viewer(user, "" if is_user(user) else session_key(request))
    allowed = not gpc(request) and (viewer.user is None or state(viewer.user, request)[1])
    rec_id = new_recommendation_id()
    scores = np.zeros(len(window))
    reasons = np.full(len(window), -1, dtype=np.int64)
    history = History([], np.zeros(0), [])
    run_id = None
    if allowed and viewer.identified and window and blend > 0:
        run_id = state(viewer.user, request)[0]
        weights = weights_for(run_id) if run_id is not None else None
        if weights is not None:
            history = history_of(history_rows(viewer))
            if history.pks:
                scores, reasons = personal_scores(
                    weights.weights, weights.columns(history.pks), history.weights,
                    weights.columns(p.pk for p in window))
    personal = bool((scores > 0).any())
    order = fuse(scores, blend) if personal else np.arange(len(window))
    kinds = [reason_kind(code) for code in history.codes]
    items = []
    for at, (i, r, score) in enumerate(zip(order.tolist(), reasons[order].tolist(),
                                           scores[order].tolist(), strict=True), start=1):
        lifted = personal and r >= 0
        items.append(RankedItem(
            product=window[i], position=at, host_position=i + 1, score=score,
            reason_kind=kinds[r] if lifted else "",
            reason_pk=history.pks[r] if lifted else None))
    ranked = Ranked([it.product for it in items], rest, items=items, recommendation_id=rec_id,
                    personal=personal, run_id=run_id)
    if log and window:
        record_impression(memo(request), WIDGET, viewer if allowed else Viewer(),
                          [p.pk for p in ranked.window], rec_id,
                          arm_id=served_arm_id(viewer.user, request) if allowed else None)
    return ranked


