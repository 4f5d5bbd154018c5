"""Personal data held by shopreco: export, erasure, the personalisation opt-out, retention and
pseudonyms for analysts.

Everything here works on shopreco's own tables only (ratings, events, precomputed
recommendations, impressions, the refresh outbox and the preference row). The host's user
account itself belongs to the host and is never touched. The API (``me/export``, ``me/data``,
``me/preferences``), the management commands and the periodic retention task all call these
functions, so every path behaves the same.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from shopreco import cache
from shopreco.adapter import get_adapter
from shopreco.conf import reco_settings
from shopreco.models import (
    Assignment,
    Impression,
    Interaction,
    PendingRefresh,
    Preference,
    Rating,
    Recommendation,
    RecomputeRun,
)
from shopreco.pipeline import runs

logger = logging.getLogger("shopreco.privacy")

EXPORT_FORMAT = "shopreco-export/1"
# Rows deleted per statement by the retention purge: small enough to keep locks short.
PURGE_BATCH_SIZE = 5000


def _json_value(value: Any) -> Any:
    """Primary keys and numbers as JSON-friendly values (UUID and Decimal keys become text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _is_real_user(user: Any) -> bool:
    return user is not None and getattr(user, "is_authenticated", False) and user.pk is not None


def _require_user(user: Any) -> None:
    if not _is_real_user(user):
        raise ValueError("user: a saved, signed-in user is required (anonymous visitors have "
                         "no stored preferences or account data).")


def _product_ref(product: Model | None) -> dict[str, Any] | None:
    if product is None:
        return None
    return {"pk": _json_value(product.pk), "name": get_adapter().get_name(product)}


# --- export ---------------------------------------------------------------------------------


def export_user_data(user: Any, *, session_key: str | None = None) -> dict[str, Any]:
    """Everything shopreco stores about ``user`` as a JSON-serialisable dict (right of access,
    GDPR art. 15 and portability, art. 20).

    ``session_key`` optionally adds the events and impressions recorded under the anonymous
    id of the caller's browser (:func:`shopreco.tracking.anonymous_id`): what they did there
    before signing in, which is not linked to the account otherwise.
    """
    _require_user(user)
    current = RecomputeRun.latest_succeeded()
    pref = Preference.objects.filter(user=user).first()

    ratings = [
        {
            "product": _product_ref(r.product),
            "score": r.score,
            "created_at": r.created_at.isoformat(),
            "updated_at": r.updated_at.isoformat() if r.updated_at else None,
        }
        for r in Rating.objects.filter(user=user)
        .select_related("product")
        .order_by("created_at", "pk")
    ]

    def events(qs) -> list[dict[str, Any]]:
        return [
            {
                "product": _product_ref(e.product),
                "type": e.kind,
                "recommendation_id": e.recommendation_id,
                "amount": None if e.amount is None else str(e.amount),
                "created_at": e.created_at.isoformat(),
            }
            for e in qs.select_related("product").order_by("created_at", "pk")
        ]

    recommendations = [
        {
            "run": rec.run_id,
            "current": current is not None and rec.run_id == current.pk,
            "rank": rec.rank,
            "product": _product_ref(rec.product),
            "score": rec.score,
            "reason": rec.reason,
            "reason_product": _product_ref(rec.reason_product),
            "created_at": rec.created_at.isoformat(),
        }
        for rec in Recommendation.objects.filter(user=user)
        .select_related("product", "reason_product")
        .order_by("-run_id", "rank")
    ]
    def impressions(qs) -> list[dict[str, Any]]:
        return [
            {
                "recommendation_id": imp.recommendation_id,
                "widget": imp.widget,
                "products": [_json_value(p) for p in (imp.products or [])],
                "created_at": imp.created_at.isoformat(),
            }
            for imp in qs.order_by("created_at", "pk")
        ]

    pending = PendingRefresh.objects.filter(user=user).first()

    data: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "generated_at": timezone.now().isoformat(),
        "user": {"id": _json_value(user.pk), "username": user.get_username()},
        "preferences": {
            "personalize": pref.personalize if pref else True,
            "updated_at": pref.updated_at.isoformat() if pref else None,
        },
        "ratings": ratings,
        "events": events(Interaction.objects.filter(user=user)),
        "recommendations": recommendations,
        "impressions": impressions(Impression.objects.filter(user=user)),
        "pending_refresh": pending.requested_at.isoformat() if pending else None,
        "experiments": [
            {"experiment": a.experiment.name, "arm": a.arm.name,
             "since": a.created_at.isoformat()}
            for a in Assignment.objects.filter(user=user).select_related("experiment", "arm")
        ],
        "notes": (
            "recommendations: 'current' marks the list served now; 'reason' is the code of the "
            "explanation shown (rated, bought, carted, viewed) with the product it refers to. "
            "Aggregate product similarities computed from many customers are not personal data "
            "and are not included."
        ),
    }
    if session_key:
        data["session_events"] = events(
            Interaction.objects.filter(user__isnull=True, session_key=session_key)
        )
        data["session_impressions"] = impressions(
            Impression.objects.filter(user__isnull=True, session_key=session_key)
        )
    return data


# --- erasure --------------------------------------------------------------------------------


def erase_user_data(user: Any, *, session_key: str | None = None) -> dict[str, int]:
    """Delete the user's ratings, events, recommendations, impressions and pending refresh in
    one transaction (right to erasure, GDPR art. 17) and return how many rows of each went.
    ``session_key``, the anonymous id of the caller's browser, adds the events and
    impressions recorded under it (before signing in; counted as ``session_events`` and
    ``session_impressions``). Anonymous ids of other browsers are linked to nothing: the
    link lives in the session, and ends with it (sign-out, expiry).

    The preference row is kept on purpose: an opted-out user who erases their data must stay
    opted out; it records when the erasure happened, so a full run already in flight, which
    read the data before, drops the user's list when it activates. Aggregate similarities of
    the run being served still reflect the erased rows until the next full recompute, which
    rebuilds them from the remaining data only.
    """
    _require_user(user)
    with transaction.atomic():
        # Lock the runs in flight first: their activation waits for this commit and then
        # drops the user's list (it was computed from the data erased here).
        runs.lock_active_runs()
        Preference.objects.update_or_create(user=user, defaults={"data_erased_at": timezone.now()})
        counts = {
            "ratings": Rating.objects.filter(user=user).delete()[0],
            "events": Interaction.objects.filter(user=user).delete()[0],
        }
        if session_key:
            counts["session_events"] = Interaction.objects.filter(
                user__isnull=True, session_key=session_key
            ).delete()[0]
        # Last, so that anything a deletion signal queued inside this transaction goes too.
        counts["impressions"] = Impression.objects.filter(user=user).delete()[0]
        if session_key:
            counts["session_impressions"] = Impression.objects.filter(
                user__isnull=True, session_key=session_key
            ).delete()[0]
        counts["recommendations"] = Recommendation.objects.filter(user=user).delete()[0]
        counts["pending_refreshes"] = PendingRefresh.objects.filter(user=user).delete()[0]
        counts["experiment_assignments"] = Assignment.objects.filter(user=user).delete()[0]
        if session_key:
            counts["experiment_assignments"] += Assignment.objects.filter(
                user__isnull=True, visitor=session_key).delete()[0]
        transaction.on_commit(lambda: _after_user_change(user, session_key))
    logger.info("Erased shopreco data of user %s: %s", user.pk, counts)
    return counts


def _after_user_change(user: Any, session_key: str | None = None) -> None:
    """Drop cached lists of the user (and of their browser session, if given)."""
    for key in (user, session_key):
        if not key:
            continue
        try:
            cache.invalidate_user(key)
        except Exception:  # cache trouble must never undo or fail an erasure
            logger.exception("Could not invalidate cached recommendations of user %s", user.pk)


# --- preferences ----------------------------------------------------------------------------


def get_preferences(user: Any) -> dict[str, Any]:
    """The user's privacy choices; defaults (personalised) when they never chose."""
    _require_user(user)
    pref = Preference.objects.filter(user=user).first()
    return {
        "personalize": pref.personalize if pref else True,
        "updated_at": pref.updated_at.isoformat() if pref else None,
    }


def set_preferences(user: Any, personalize: bool) -> dict[str, Any]:
    """Switch personalisation (and, with it, event tracking) on or off for ``user``.

    Opting out also drops the precomputed personal list and any queued refresh; the serving
    layer shows such users popular lists only and records no events for them. Past ratings
    and events stay until the user erases them.
    """
    _require_user(user)
    if not isinstance(personalize, bool):
        raise ValueError("personalize: must be true or false.")
    with transaction.atomic():
        runs.lock_active_runs()  # as in erase_user_data: a run in flight drops the list
        pref, _ = Preference.objects.select_for_update().get_or_create(user=user)
        if pref.personalize != personalize:
            pref.personalize = personalize
            pref.save(update_fields=["personalize", "updated_at"])
        if not personalize:
            Recommendation.objects.filter(user=user).delete()
            PendingRefresh.objects.filter(user=user).delete()
        transaction.on_commit(lambda: _after_user_change(user))
    return get_preferences(user)


# --- retention ------------------------------------------------------------------------------


def _batched_delete(qs, batch_size: int | None = None) -> int:
    batch_size = batch_size or PURGE_BATCH_SIZE
    total = 0
    model = qs.model
    while True:
        ids = list(qs.order_by().values_list("pk", flat=True)[:batch_size])
        if not ids:
            return total
        total += model.objects.filter(pk__in=ids).delete()[0]


def purge_old_events(now: datetime | None = None) -> int:
    """Delete events (and widget impressions) older than ``EVENT_RETENTION_DAYS``; returns the
    number of events deleted. ``None`` or ``0`` days keeps events forever.

    Ratings are explicit, user-managed data and are kept until the user erases them.
    Deleted in batches so a large backlog never holds a long lock on a busy shop.
    """
    days = reco_settings.EVENT_RETENTION_DAYS
    if not days:
        return 0
    if isinstance(days, bool) or not isinstance(days, int | float) or days < 0:
        raise ValueError(f"SHOPRECO['EVENT_RETENTION_DAYS']: expected a positive number of "
                         f"days or None, got {days!r}.")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    events = _batched_delete(Interaction.objects.filter(created_at__lt=cutoff))
    impressions = _batched_delete(Impression.objects.filter(created_at__lt=cutoff))
    logger.info(
        "Retention: purged %d events and %d impressions older than %s", events, impressions,
        cutoff.isoformat(),
    )
    return events


# --- pseudonyms -----------------------------------------------------------------------------


def _secret() -> bytes:
    secret = reco_settings.ANONYMIZE_SECRET or settings.SECRET_KEY
    if not secret:
        raise ValueError("SHOPRECO['ANONYMIZE_SECRET'] (or SECRET_KEY) must be set to "
                         "pseudonymise user ids.")
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def _keyed_hash(namespace: str, value: Any) -> str:
    msg = f"shopreco:{namespace}:{value}".encode()
    return hmac.new(_secret(), msg, hashlib.sha256).hexdigest()


def pseudonymise(user_id: Any) -> str:
    """A stable keyed hash (HMAC-SHA256) of a user id: the same user always maps to the same
    pseudonym under one secret, and without the secret it cannot be reversed by hashing
    candidate ids. This is pseudonymisation, not anonymisation: whoever holds the secret can
    re-link, and behaviour patterns may still identify a person."""
    return _keyed_hash("user", user_id)


def pseudonymise_session(session_key: str) -> str:
    """Like :func:`pseudonymise`, for anonymous visitors' session keys (separate namespace)."""
    return _keyed_hash("session", session_key)
