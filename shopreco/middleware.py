"""Records product views after the response is known (SHOPRECO["VIEW_TRACKING"] = "middleware").

Product pages declare themselves with ``{% shopreco_track_view product %}`` (or
``shopreco.services.mark_viewed(request, product)`` in the view); the middleware then records
the view only if the page rendered successfully, crediting the ``?rec=`` id of the
recommendation link that led there. Recording after rendering keeps the event write out of the
template and never counts error pages. It also writes the impressions of every widget on the
page in one INSERT instead of one per widget, once the response has been sent (when the server
closes it), so no shopper waits for that write. A click that reaches the server within the
few milliseconds between the response and that INSERT finds no impression and is recorded
without its recommendation id; a person cannot click that fast."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from shopreco import tracking
from shopreco.conf import reco_settings

logger = logging.getLogger("shopreco.middleware")


class ShopRecoMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        tracking.start_request(request)
        response = self.get_response(request)
        if tracking.has_queued_impressions(request):
            closers = getattr(response, "_resource_closers", None)
            if isinstance(closers, list):
                # After the response: the WSGI server sends it, then closes it, and only then
                # is the impression written, so the shopper does not wait for the INSERT.
                closers.append(lambda: self._flush(request))
            else:
                self._flush(request)
        if reco_settings.VIEW_TRACKING == "middleware" and request.method in ("GET", "HEAD"):
            try:
                tracking.record_marked_view(request, response.status_code)
            except Exception:  # an analytics write must never break the page
                logger.exception("Could not record a product view")
        return response

    @staticmethod
    def _flush(request: HttpRequest) -> None:
        try:
            tracking.flush_impressions(request)
        except Exception:  # never lose the page over an analytics write
            logger.exception("Could not record recommendation impressions")
