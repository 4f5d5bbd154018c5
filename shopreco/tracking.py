"""What shoppers do, recorded for the models and for attribution: events (``track``), clicks
on recommendations (remembered in the session so a later cart or purchase is credited),
product views marked by a page, and the impressions of the lists a page showed.

Anonymous shoppers are known by their anonymous id (:func:`shopreco.serving.session_key`),
kept in the session data so that it survives sign-in. What they leave is bounded: an event
repeating one of the last ``EVENT_DEDUP_SECONDS`` is not stored again, and a client that keeps
no session cookie leaves no impressions (nothing could be credited to it anyway)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import timezone

from shopreco.conf import reco_settings
from shopreco.models import VIEW_KIND, Impression, Interaction
from shopreco.serving.request import (
    ANONYMOUS_ID_SESSION_KEY,
    is_user,
    memo,
    personalization_allowed,
    session_key,
)

SESSION_ATTRIBUTION_KEY = "shopreco_rec"
SESSION_ATTRIBUTION_MAX = 50
_REC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _attribution(request: Any) -> dict | None:
    session = getattr(request, "session", None) if request is not None else None
    if session is None:
        return None
    return session.get(SESSION_ATTRIBUTION_KEY) or {}


def remember_click(request: Any, product_pk: Any, recommendation_id: str) -> bool:
    """Remember in the session that ``product_pk`` was reached from a recommendation, so a
    later cart or purchase of it is credited to that list. Returns False for unknown ids."""
    if not _valid_rec_id(recommendation_id, product_pk):
        return False
    return _remember(request, product_pk, recommendation_id)


def _remember(request: Any, product_pk: Any, recommendation_id: str) -> bool:
    session = getattr(request, "session", None) if request is not None else None
    if session is None:
        return False
    memory = dict(session.get(SESSION_ATTRIBUTION_KEY) or {})
    if memory and next(reversed(memory)) == str(product_pk) \
            and memory[str(product_pk)] == recommendation_id:
        return True  # already the latest click remembered: no session write
    memory.pop(str(product_pk), None)
    memory[str(product_pk)] = recommendation_id
    while len(memory) > SESSION_ATTRIBUTION_MAX:
        memory.pop(next(iter(memory)))
    session[SESSION_ATTRIBUTION_KEY] = memory
    return True


def _valid_rec_id(recommendation_id: Any, product_pk: Any) -> bool:
    """A well-formed id of a list that really showed this product (when impressions are
    logged), so forged or stale ids cannot be credited."""
    if not isinstance(recommendation_id, str) or not _REC_ID_RE.match(recommendation_id):
        return False
    if not reco_settings.LOG_IMPRESSIONS:
        return True
    products = (
        Impression.objects.filter(recommendation_id=recommendation_id)
        .values_list("products", flat=True)
        .first()
    )
    return products is not None and str(product_pk) in {str(p) for p in products}


def client_event_kinds() -> frozenset[str]:
    """The kinds clients may post (``CLIENT_EVENT_KINDS``): purchases are facts only the
    shop's server knows, recorded by ``track`` in its checkout, unless the host opts in."""
    return frozenset(reco_settings.CLIENT_EVENT_KINDS) & frozenset(reco_settings.EVENT_WEIGHTS)


def track(request: Any, product: Any, kind: str,
          recommendation_id: str | None = None, *,
          amount: Decimal | float | str | None = None) -> Interaction | None:
    """Record a view, cart or purchase (any kind in EVENT_WEIGHTS) for the current shopper.

    Returns None, recording nothing, when personalisation is off for this shopper (opt-out or
    Sec-GPC). Anonymous visitors are recorded under their anonymous id. Without an explicit
    ``recommendation_id`` the one remembered for this product in the session (from a clicked
    recommendation) is used, so carts and purchases are credited too. An event that repeats
    one this shopper recorded for the product and kind within ``EVENT_DEDUP_SECONDS`` is not
    stored again: the earlier event is returned (see :func:`record`). ``amount``: what a
    purchase was worth (line price times quantity), for revenue figures; without it they
    price the purchase at the adapter's current price."""
    return record(request, product, kind, recommendation_id, amount=amount)[0]


def record(request: Any, product: Any, kind: str,
           recommendation_id: str | None = None, *,
           amount: Decimal | float | str | None = None) -> tuple[Interaction | None, bool]:
    """:func:`track`, also saying whether a row was written: ``(event, True)`` for a new
    event, ``(earlier event, False)`` for a repeat within the window, ``(None, False)`` when
    the shopper is not tracked. A repeat carrying a recommendation id its earlier event lacks
    passes it on, so a click on a product seen a minute before is still credited."""
    if product is None or getattr(product, "pk", None) is None:
        raise ValueError("product: a saved product is required.")
    amount = clean_amount(amount)
    if kind not in reco_settings.EVENT_WEIGHTS:
        raise ValueError(
            f"kind: unknown event type {kind!r}; expected one of "
            f"{', '.join(sorted(reco_settings.EVENT_WEIGHTS))}."
        )
    user = getattr(request, "user", None) if request is not None else None
    if not personalization_allowed(user, request):
        return None, False
    if recommendation_id:
        if _valid_rec_id(recommendation_id, product.pk):
            _remember(request, product.pk, recommendation_id)
        else:
            recommendation_id = None
    else:
        recommendation_id = (_attribution(request) or {}).get(str(product.pk))
    signed_in = is_user(user)
    who = {"user": user} if signed_in else {
        "user__isnull": True, "session_key": session_key(request, create=True)}
    # Without a user or a session there is no shopper to de-duplicate by.
    earlier = _repeated(who, product.pk, kind) if signed_in or who["session_key"] else None
    if earlier is not None:
        if recommendation_id and not earlier.recommendation_id:
            Interaction.objects.filter(pk=earlier.pk).update(recommendation_id=recommendation_id)
            earlier.recommendation_id = recommendation_id
        return earlier, False
    event = Interaction.objects.create(
        user=user if signed_in else None,
        session_key=who.get("session_key", ""),
        product=product,
        kind=kind,
        recommendation_id=recommendation_id or None,
        amount=amount,
    )
    return event, True


def clean_amount(value: Any) -> Decimal | None:
    """A purchase's worth as a Decimal of cents (None stays None); a ValueError naming
    ``amount`` for anything that is not a finite number >= 0."""
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"amount: not a number: {value!r}.") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"amount: must be a finite number >= 0, not {value!r}.")
    return amount.quantize(Decimal("0.01"))


def _repeated(who: dict[str, Any], product_pk: Any, kind: str) -> Interaction | None:
    """The shopper's latest event of this product and kind within EVENT_DEDUP_SECONDS: one
    shopper replaying an event must not weigh more than once in what the models and the
    rankings read. Two requests racing each other may both store theirs."""
    window = reco_settings.EVENT_DEDUP_SECONDS
    if not window:
        return None
    since = timezone.now() - timedelta(seconds=float(window))
    return (
        Interaction.objects.filter(**who, product_id=product_pk, kind=kind,
                                   created_at__gte=since)
        .order_by("-created_at", "-pk")
        .first()
    )


def mark_viewed(request: Any, product: Any) -> Interaction | None:
    """A product page was rendered. With VIEW_TRACKING = "middleware" and ShopRecoMiddleware
    installed, the view is recorded after the response succeeded (no event for error pages);
    otherwise it is recorded now. The ``?rec=`` id of the link that led here is credited.
    The page's own product is never listed by its widgets (page de-duplication)."""
    scratch = memo(request)
    if getattr(product, "pk", None) is not None:
        scratch.setdefault("shown", set()).add(product.pk)
    if reco_settings.VIEW_TRACKING == "middleware" and scratch.get("middleware"):
        scratch["viewed"] = product
        return None
    return track(request, product, VIEW_KIND, _rec_from_query(request))


def _rec_from_query(request: Any) -> str | None:
    params = getattr(request, "GET", None)
    value = params.get("rec") if params is not None else None
    return value or None


def start_request(request: Any) -> None:
    """ShopRecoMiddleware is handling ``request``: views and impressions are deferred to it."""
    memo(request)["middleware"] = True


def has_queued_impressions(request: Any) -> bool:
    return bool(memo(request).get("impressions"))


def flush_impressions(request: Any) -> int:
    """Write the impressions queued while rendering this request (one INSERT for many, one
    each for a page's one or two lists, which costs fewer round trips than a transaction);
    returns how many. Called by ShopRecoMiddleware once the response has been sent.

    An anonymous client without a session leaves none: a click it sends next cannot be
    credited (it carries no session to remember it in, and it is the same list shared
    caches serve to everyone), and a script that never keeps the cookie would otherwise
    add a row per request. A session started during this request (by the page's tracked
    view) claims the page's impressions."""
    queued = memo(request).pop("impressions", None)
    if not queued:
        return 0
    queued = _claimed(request, queued)
    if not queued:
        return 0
    if len(queued) <= 2:
        for impression in queued:  # a statement each; bulk_create adds BEGIN and COMMIT
            impression.save()
    else:
        Impression.objects.bulk_create(queued)
    return len(queued)


def _claimed(request: Any, queued: list[Impression]) -> list[Impression]:
    """The impressions worth writing, with the anonymous id of a session that began after
    the lists were rendered; none for an anonymous client without a session."""
    user = getattr(request, "user", None)
    if is_user(user):
        return queued
    anonymous = anonymous_id(request)
    if not anonymous:
        return []
    if personalization_allowed(None, request):  # not Sec-GPC: the impression may name them
        for impression in queued:
            if impression.user_id is None and not impression.session_key:
                impression.session_key = anonymous
    return queued


def anonymous_id(request: Any) -> str:
    """The anonymous id of this browser without starting or pinning one: what it did
    anonymously, also before signing in, is recorded under it (for export and erasure)."""
    session = getattr(request, "session", None) if request is not None else None
    if session is None:
        return ""
    return session.get(ANONYMOUS_ID_SESSION_KEY) or session.session_key or ""


def forget_session(request: Any) -> None:
    """Drop shopreco's keys from the session (the anonymous id, the remembered clicks), after
    an erasure: the browser then starts a new anonymous id, linked to nothing erased."""
    session = getattr(request, "session", None) if request is not None else None
    if session is None:
        return
    for key in (ANONYMOUS_ID_SESSION_KEY, SESSION_ATTRIBUTION_KEY):
        session.pop(key, None)


def record_marked_view(request: Any, response_status: int) -> Interaction | None:
    """Called by ShopRecoMiddleware once the response is known: records the marked view."""
    product = memo(request).pop("viewed", None)
    if product is None or response_status >= 400:
        return None
    return track(request, product, VIEW_KIND, _rec_from_query(request))
