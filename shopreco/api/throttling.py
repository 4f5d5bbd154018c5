"""Throttles with scopes a host sets in ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``:
``shopreco_anon`` (per IP), ``shopreco_user`` (per user) and the stricter ``shopreco_events``.

A scope the host did not configure falls back to :data:`FALLBACK_RATES` instead of DRF's
``ImproperlyConfigured`` (which would turn every request into a 500).

Two departures from DRF's throttles, both so that an attacker or an outage cannot choose
the outcome:

- The client is ``REMOTE_ADDR``. DRF reads ``X-Forwarded-For`` whenever ``NUM_PROXIES`` is
  unset, so a client changing that header got a fresh budget per request. Behind proxies,
  set ``REST_FRAMEWORK["NUM_PROXIES"]`` to their number: DRF then takes the address the
  nearest trusted proxy saw.
- They fail open: the request counts go through :class:`shopreco.cache.Guarded`, so with the
  cache down a request is allowed (nothing is counted) and the outage is logged once, rather
  than every API request answering 500.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

from shopreco.cache import Guarded

FALLBACK_RATES = {
    "shopreco_anon": "600/min",
    "shopreco_user": "1200/min",
    "shopreco_events": "300/min",
}


class _FallbackRateMixin:
    scope: str
    # DRF's own cache (``default``), with an outage counted as no requests (fail open).
    cache = Guarded(DEFAULT_CACHE_ALIAS)

    def get_ident(self, request: Any) -> str | None:
        """The client's address: ``REMOTE_ADDR``, unless the host says how many proxies are
        in front (``NUM_PROXIES``), when DRF picks the address the nearest one saw."""
        if api_settings.NUM_PROXIES is None:
            return request.META.get("REMOTE_ADDR")
        return super().get_ident(request)  # type: ignore[misc]

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
