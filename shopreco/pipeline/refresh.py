"""Per-user refresh: a new rating or event updates that shopper's list within seconds.

A new rating or event writes an outbox row (:class:`~shopreco.models.PendingRefresh`,
:func:`note_refresh`) in the same transaction; ``shopreco.tasks`` then enqueues
``refresh_user`` on commit with a countdown of ``REFRESH_DEBOUNCE_SECONDS``. While the row
exists no further task is enqueued for that user, so a burst of clicks costs one refresh, and
since the task reads the data when it runs, the refresh sees the whole burst. If the broker
was down, the row stays and ``drain_pending_refreshes`` (beat, every minute) picks it up
(:func:`due_refreshes`).

The refresh recomputes the user's list exactly as the full run would, from the served
run's files with the user's current row: the ranking score of EASE and of the item-based
model is ``row(u) @ weights`` (EASE's dense head weights, or ``top_k(S)``), which depends on
nothing else; the user-based model compares the row with every shopper of the run's
snapshot.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.db import IntegrityError, transaction
from django.utils import timezone

from shopreco import cache
from shopreco.conf import reco_settings
from shopreco.models import (
    Interaction,
    PendingRefresh,
    Preference,
    Rating,
    Recommendation,
    RecomputeRun,
)
from shopreco.pipeline import compute, files, runs, writer
from shopreco.pipeline.matrix import Snapshot, load_snapshot

log = logging.getLogger("shopreco.pipeline")


def note_refresh(user_id: Any) -> bool:
    """Put the user in the refresh outbox; True when they were not there yet (then a task
    must be enqueued after commit; otherwise one is already on its way)."""
    if user_id is None:
        return False
    try:
        with transaction.atomic():
            _row, created = PendingRefresh.objects.get_or_create(user_id=user_id)
    except IntegrityError:  # the user is being deleted in this transaction
        return False
    return created


def request_user_refresh_later(user_id: Any) -> None:
    """Put a failed refresh back into the outbox (no task now: a retry or the drain runs it)."""
    try:
        PendingRefresh.objects.get_or_create(user_id=user_id)
    except IntegrityError:
        pass


def due_refreshes(limit: int = 1000) -> list[Any]:
    """Outbox rows whose task was lost (older than twice the debounce window): their users,
    marked as requested now, for the caller to enqueue again."""
    cutoff = timezone.now() - timedelta(
        seconds=2 * float(reco_settings.REFRESH_DEBOUNCE_SECONDS) + 30
    )
    users = list(
        PendingRefresh.objects.filter(requested_at__lt=cutoff)
        .order_by("requested_at").values_list("user_id", flat=True)[:limit]
    )
    PendingRefresh.objects.filter(user_id__in=users).update(requested_at=timezone.now())
    return users


def refresh_user(user_id: Any) -> None:
    """Recompute one user's recommendations in the served run from current similarities."""
    PendingRefresh.objects.filter(user_id=user_id).delete()
    run = RecomputeRun.latest_succeeded()
    if run is None:
        return
    try:
        _refresh(run, user_id)
    except FileNotFoundError:
        log.warning("run #%s has no snapshot any more; skipping refresh of %s", run.pk, user_id)
        return
    latest = RecomputeRun.latest_succeeded()
    if latest is not None and latest.pk != run.pk:  # a new run went live meanwhile
        _refresh(latest, user_id)
    cache.invalidate_user(user_id)  # the user's cached lists were built from the old rows


def _refresh(run: RecomputeRun, user_id: Any) -> None:
    if Preference.objects.filter(user_id=user_id, personalize=False).exists():
        # Opted out: keep no personal list (serving shows popular lists only).
        Recommendation.objects.filter(run=run, user_id=user_id).delete()
        return
    snap = files.load_run_snapshot(run)
    S = files.load_run_similarity(run)
    params = run.params
    mine = load_snapshot(
        ratings=Rating.objects.filter(user_id=user_id),
        events=Interaction.objects.filter(user_id=user_id),
    )
    row = _remap_row(mine, snap)
    if compute.model_of(params).neighbours == "user":
        # user-based: the shopper's current row in the run's matrix, compared with everyone
        row, at = _with_row(snap, row, user_id)
        model = compute.fit_model(row, S, params, user_rows=(at, at + 1))
        batch = compute.recommend(model, row, params, np.array([at], dtype=np.int64))
        batch.users[:] = 0
    else:
        # item-based and EASE score row @ weights, which ignores every other user
        model = compute.fit_model(row, S, params, ease_parts=files.load_run_ease_parts(run))
        batch = compute.recommend(model, row, params, np.array([0], dtype=np.int64))
    # Database keys of this list's products only (preparing every product's key took half
    # of a refresh on MovieLens); product indexes are renumbered into that short list.
    used = np.unique(np.concatenate([batch.items, batch.reason_items[batch.reason_items >= 0]]))
    pkeys = writer.prep_keys(Recommendation, "product", snap.product_pks[used])
    gone = set(runs.missing_products(pkeys))
    if gone:
        # Products deleted since the run's snapshot: not recommended, not named as reasons
        # (the full run drops them at activation; a refresh reads the same old snapshot).
        dead = used[[k in gone for k in pkeys]]
        keep = ~np.isin(batch.items, dead)
        batch = compute.RecBatch(
            batch.users[keep], batch.items[keep], batch.scores[keep],
            np.arange(1, int(keep.sum()) + 1, dtype=batch.ranks.dtype),
            batch.reason_codes[keep],
            np.where(np.isin(batch.reason_items[keep], dead), -1, batch.reason_items[keep]))
    items = np.searchsorted(used, batch.items)
    reason_items = np.where(batch.reason_items >= 0,
                            np.searchsorted(used, batch.reason_items), -1)
    ukey = writer.prep_keys(Recommendation, "user", np.array([user_id], dtype=object))
    with transaction.atomic():
        Recommendation.objects.filter(run=run, user_id=user_id).delete()
        if len(batch):
            writer.write_recommendations(
                run.pk, np.zeros(len(batch), dtype=np.int64), items, batch.scores,
                batch.ranks, batch.reasons(), reason_items, ukey, pkeys,
            )


def _with_row(snap, row, user_id: Any):
    """``snap`` with the user's row replaced by ``row`` (a 1-row snapshot in its columns),
    or added after the users if the run did not know them; returns (snapshot, row index).
    A row replaced in place leaves every other similarity exactly as the full run saw it."""
    keys = [str(pk) for pk in snap.user_pks[: snap.n_users].tolist()]
    at = keys.index(str(user_id)) if str(user_id) in keys else snap.n_users

    def put(M: sp.csr_matrix, r: sp.csr_matrix) -> sp.csr_matrix:
        tail = M[at + 1:] if at < snap.n_users else M[at:]
        out = sp.vstack([M[:at], r.astype(M.dtype), tail], format="csr")
        out.sort_indices()
        return out

    R = snap.R
    before = int(R.indptr[at])
    after = int(R.indptr[at + 1]) if at < snap.n_users else before
    reason = np.concatenate([snap.reason[:before], row.reason, snap.reason[after:]])
    combined = Snapshot(R=put(R, row.R), reason=reason.astype(np.int8),
                        owned=put(snap.owned, row.owned),
                        purchases=put(snap.purchases, row.purchases),
                        user_pks=snap.user_pks, product_pks=snap.product_pks,
                        n_users=snap.n_users + (at == snap.n_users), n_ratings=snap.n_ratings,
                        n_events=snap.n_events)
    return combined, at


def _remap_row(mine, snap):
    """The user's own 1-row snapshot expressed in the run's product columns.

    Products unknown to the run (new since it was computed) are dropped: they have no
    similarities yet and reach the user through serving's fallback chain.
    """
    n = snap.n_products
    index = {pk: j for j, pk in enumerate(snap.product_pks.tolist())}
    cols_of_mine = np.array(
        [index.get(pk.item() if hasattr(pk, "item") else pk, -1) for pk in mine.product_pks],
        dtype=np.int64,
    )

    def remap(M: sp.csr_matrix, data=None) -> sp.csr_matrix:
        M = M.tocsr()
        if M.shape[0] == 0:
            return sp.csr_matrix((1, n), dtype=M.dtype)
        c = cols_of_mine[M.indices]
        vals = M.data if data is None else data
        keep = c >= 0
        out = sp.csr_matrix((vals[keep], (np.zeros(int(keep.sum()), dtype=np.int64), c[keep])),
                            shape=(1, n))
        out.sort_indices()
        return out

    R = remap(mine.R[:1] if mine.n_users else sp.csr_matrix((0, mine.n_products)))
    if mine.n_users:
        Rm = mine.R[:1].tocsr()
        c = cols_of_mine[Rm.indices]
        keep = c >= 0
        order = np.argsort(c[keep], kind="stable")
        reason = mine.reason[: Rm.nnz][keep][order]
        owned = remap(mine.owned[:1])
        buys = remap(mine.purchases[:1])
    else:
        reason = np.zeros(0, dtype=np.int8)
        owned = sp.csr_matrix((1, n), dtype=bool)
        buys = sp.csr_matrix((1, n), dtype=bool)
    return Snapshot(R=R, reason=reason, owned=owned, purchases=buys,
                    user_pks=mine.user_pks[:1], product_pks=snap.product_pks,
                    n_users=1, n_ratings=mine.n_ratings, n_events=mine.n_events)
