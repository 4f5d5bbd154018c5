"""Throttles with scopes a host sets in ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``:
``shopreco_anon`` (per IP), ``shopreco_user`` (per user) and the stricter ``shopreco_events``.

A scope the host did not configure falls back to :data:`FALLBACK_RATES` instead of DRF's
``ImproperlyConfigured`` (which would turn every request into a 500).
"""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

FALLBACK_RATES = {
    "shopreco_anon": "600/min",
    "shopreco_user": "1200/min",
    "shopreco_events": "300/min",
}


class _FallbackRateMixin:
    scope: str

    def get_rate(self) -> str | None:
        # Read the rates per request (DRF's class attribute is frozen at import time, which
        # would ignore ``override_settings``).
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        if self.scope in rates:
            return rates[self.scope]
        return FALLBACK_RATES.get(self.scope)


class ShopRecoAnonThrottle(_FallbackRateMixin, AnonRateThrottle):
    """Anonymous clients, keyed by IP address."""

    scope = "shopreco_anon"


class ShopRecoUserThrottle(_FallbackRateMixin, UserRateThrottle):
    """Signed-in clients, keyed by user id."""

    scope = "shopreco_user"


class ShopRecoEventsThrottle(_FallbackRateMixin, SimpleRateThrottle):
    """Event writes: one budget per user, or per session/IP for anonymous visitors."""

    scope = "shopreco_events"

    def get_cache_key(self, request, view) -> str:  # noqa: ANN001 - DRF signature
        if request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"anon:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


DEFAULT_THROTTLES = [ShopRecoAnonThrottle, ShopRecoUserThrottle]
EVENT_THROTTLES = [*DEFAULT_THROTTLES, ShopRecoEventsThrottle]
