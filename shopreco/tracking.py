"""What shoppers do, recorded for the models and for attribution: events (``track``), clicks
on recommendations (remembered in the session so a later cart or purchase is credited),
product views marked by a page, and the impressions of the lists a page showed."""

from __future__ import annotations

import re
from typing import Any

from shopreco.conf import reco_settings
from shopreco.models import VIEW_KIND, Impression, Interaction
from shopreco.serving.request import is_user, memo, personalization_allowed, session_key

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


def track(request: Any, product: Any, kind: str,
          recommendation_id: str | None = None) -> Interaction | None:
    """Record a view, cart or purchase (any kind in EVENT_WEIGHTS) for the current shopper.

    Returns None, recording nothing, when personalisation is off for this shopper (opt-out or
    Sec-GPC). Anonymous visitors are recorded under their session key. Without an explicit
    ``recommendation_id`` the one remembered for this product in the session (from a clicked
    recommendation) is used, so carts and purchases are credited too."""
    if product is None or getattr(product, "pk", None) is None:
        raise ValueError("product: a saved product is required.")
    if kind not in reco_settings.EVENT_WEIGHTS:
        raise ValueError(
            f"kind: unknown event type {kind!r}; expected one of "
            f"{', '.join(sorted(reco_settings.EVENT_WEIGHTS))}."
        )
    user = getattr(request, "user", None) if request is not None else None
    if not personalization_allowed(user, request):
        return None
    if recommendation_id:
        if _valid_rec_id(recommendation_id, product.pk):
            _remember(request, product.pk, recommendation_id)
        else:
            recommendation_id = None
    else:
        recommendation_id = (_attribution(request) or {}).get(str(product.pk))
    signed_in = is_user(user)
    return Interaction.objects.create(
        user=user if signed_in else None,
        session_key="" if signed_in else session_key(request, create=True),
        product=product,
        kind=kind,
        recommendation_id=recommendation_id or None,
    )


def mark_viewed(request: Any, product: Any) -> Interaction | None:
    """A product page was rendered. With VIEW_TRACKING = "middleware" and ShopRecoMiddleware
    installed, the view is recorded after the response succeeded (no event for error pages);
    otherwise it is recorded now. The ``?rec=`` id of the link that led here is credited."""
    scratch = memo(request)
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
    returns how many. Called by ShopRecoMiddleware once the response has been sent."""
    queued = memo(request).pop("impressions", None)
    if not queued:
        return 0
    if len(queued) <= 2:
        for impression in queued:  # a statement each; bulk_create adds BEGIN and COMMIT
            impression.save()
    else:
        Impression.objects.bulk_create(queued)
    return len(queued)


def record_marked_view(request: Any, response_status: int) -> Interaction | None:
    """Called by ShopRecoMiddleware once the response is known: records the marked view."""
    product = memo(request).pop("viewed", None)
    if product is None or response_status >= 400:
        return None
    return track(request, product, VIEW_KIND, _rec_from_query(request))
