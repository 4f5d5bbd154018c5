"""Records product views after the response is known (SHOPRECO["VIEW_TRACKING"] = "middleware").

Product pages declare themselves with ``{% shopreco_track_view product %}`` (or
``shopreco.services.mark_viewed(request, product)`` in the view); the middleware then records
the view only if the page rendered successfully, crediting the ``?rec=`` id of the
recommendation link that led there. Recording after rendering keeps the event write out of the
template and never counts error pages. It also writes the impressions of every widget on the
page in one INSERT instead of one per widget, once the response has been sent (when the server
closes it), so no shopper waits for that write. A click that reaches the server within the
few milliseconds between the response and that INSERT finds no impression and is recorded
without its recommendation id; a person cannot click that fast.

``DatabaseUnavailableMiddleware`` (opt-in, any position in ``MIDDLEWARE``) answers a short
503 instead of a 500 page when the database cannot be reached."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

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


class DatabaseUnavailableMiddleware:
    """Answers 503 with ``Retry-After`` and a one-line body when a view fails because the
    database cannot be reached (``OperationalError``, ``InterfaceError``): JSON for the REST
    API and clients asking for JSON, plain text otherwise. A 500 would say the request was
    at fault and send clients and monitors looking for a bug; the outage is temporary, and
    rendering the host's error page could itself need the database.

    Add ``"shopreco.middleware.DatabaseUnavailableMiddleware"`` anywhere in ``MIDDLEWARE``
    (it acts through ``process_exception``, on the views' errors). Other database errors
    (a missing table, a constraint) stay 500s. Recommendation widgets need none of this:
    they render empty on a database error, so a page that needs no query of its own still
    answers 200. The first error of an outage is logged with its traceback, then one line
    per ``log_every`` seconds at most (Django logs each 503 response as well)."""

    retry_after = 30
    log_every = 60.0
    message = "Service temporarily unavailable, please try again shortly."

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._logged_at = float("-inf")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest,
                          exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        now = time.monotonic()
        if now - self._logged_at >= self.log_every:
            self._logged_at = now
            logger.error("database unavailable: %s %s answered 503", request.method,
                         request.path, exc_info=exception)
        if self._wants_json(request):
            response: HttpResponse = JsonResponse({"detail": self.message}, status=503)
        else:
            response = HttpResponse(self.message + "\n", status=503,
                                    content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(self.retry_after)
        response["Cache-Control"] = "no-store"
        return response

    @staticmethod
    def _wants_json(request: HttpRequest) -> bool:
        """A REST framework view (its ``as_view()`` sets ``cls``), or a client that asks for
        JSON."""
        func = getattr(getattr(request, "resolver_match", None), "func", None)
        if getattr(func, "cls", None) is not None:
            return True
        accept = request.headers.get("Accept", "")
        return "json" in accept and "html" not in accept
