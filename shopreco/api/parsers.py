"""Request-body parsers of the API, with bounds: any body answers a short JSON 400 or a 415,
never a 500.

DRF's own parsers read a JSON body of any size, and ``json`` recurses once per nesting level,
so 2 KB of ``[`` raised RecursionError (a 500). The largest body this API takes is a few
hundred bytes of flat fields, so these parsers refuse, as a 400 (``ParseError``):

- a body over :func:`body_limit` bytes (64 KiB, or less when ``DATA_UPLOAD_MAX_MEMORY_SIZE``
  says so), before reading it;
- JSON nested deeper than ``MAX_DEPTH``, or holding more than ``MAX_ITEMS`` values, and
  ``NaN`` and ``Infinity`` (not JSON; ``1e400``, read as infinity, is left to the fields,
  which answer 400 naming themselves);
- forms with more than ``MAX_ITEMS`` fields, and file uploads;
- Django's own limits (``RequestDataTooBig``, ``TooManyFieldsSent``: SuspiciousOperations that
  Django answers with an HTML page, with DEBUG on the technical one listing the environment).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import QueryDict
from rest_framework import parsers, renderers
from rest_framework.exceptions import ParseError

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_ITEMS = 1000
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def body_limit() -> int:
    """The largest body the API reads, in bytes."""
    django_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return MAX_BODY_BYTES if django_limit is None else min(MAX_BODY_BYTES, django_limit)


def declared_length(request: Any) -> int:
    """The request's Content-Length (0 when absent or malformed, as DRF and Django read it)."""
    meta = getattr(request, "META", {})
    try:
        return max(0, int(meta.get("CONTENT_LENGTH") or 0))
    except (TypeError, ValueError):
        return 0


def check_length(request: Any) -> None:
    """400 when the declared body is over the limit, before anything reads it."""
    limit = body_limit()
    if declared_length(request) > limit:
        raise ParseError(f"Request body too large: at most {limit} bytes.")


def read_bounded(stream: Any, parser_context: Mapping[str, Any] | None) -> bytes:
    """The body, read only up to the limit (the Content-Length may be missing or lie)."""
    request = (parser_context or {}).get("request")
    if request is not None:
        check_length(request)
    limit = body_limit()
    data = stream.read(limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise ParseError(f"Request body too large: at most {limit} bytes.")
    return data


def encoding(parser_context: Mapping[str, Any] | None) -> str:
    """The body's text encoding: DRF's (which refuses non-text codecs such as ``bz2_codec``),
    and 400 for a charset no codec knows, which Django would silently read as UTF-8."""
    parser_context = parser_context or {}
    request = parser_context.get("request")
    charset = (getattr(request, "content_params", None) or {}).get("charset")
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            raise ParseError(f"Unsupported charset {charset[:40]!r}.") from None
    return parsers.get_encoding(parser_context)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_shape(data: Any) -> None:
    """400 for JSON nested deeper than ``MAX_DEPTH`` or holding more than ``MAX_ITEMS``
    values; walks without recursion, so no depth can exhaust the stack here."""
    items = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        items += 1
        if items > MAX_ITEMS:
            raise ParseError(f"JSON holds too many values: at most {MAX_ITEMS}.")
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise ParseError(f"JSON nested too deeply: at most {MAX_DEPTH} levels.")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


class JSONParser(parsers.BaseParser):
    """JSON with the bounds above. Not a subclass of DRF's JSONParser: DRF reads the whole
    body (``request.body``, up to ``DATA_UPLOAD_MAX_MEMORY_SIZE``) for its own JSON and form
    parsers before they run, and answers a larger one with Django's HTML 400 page."""

    media_type = "application/json"
    renderer_class = renderers.JSONRenderer

    def parse(
        self, stream: Any, media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = read_bounded(stream, parser_context)
        text_encoding = encoding(parser_context)
        try:
            data = json.loads(
                raw.decode(text_encoding),
                parse_constant=_reject_constant,
            )
        except RecursionError:  # json's C decoder stops cleanly at the recursion limit
            raise ParseError(f"JSON nested too deeply: at most {MAX_DEPTH} levels.") from None
        except (ValueError, LookupError) as exc:  # includes UnicodeDecodeError
            raise ParseError(f"JSON parse error - {exc}"[:200]) from None
        check_shape(data)
        return data


class FormParser(parsers.BaseParser):
    """URL-encoded forms (the browsable API) with the bounds above; malformed percent escapes,
    which Python's parser keeps as text, are a 400."""

    media_type = "application/x-www-form-urlencoded"

    def parse(
        self, stream: Any, media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> QueryDict:
        raw = read_bounded(stream, parser_context)
        if raw.count(b"&") >= MAX_ITEMS:
            raise ParseError(f"Too many form fields: at most {MAX_ITEMS}.")
        if _BAD_ESCAPE.search(raw):
            raise ParseError("Form parse error - malformed percent escape.")
        try:
            return QueryDict(raw, encoding=encoding(parser_context))
        except (SuspiciousOperation, ValueError, LookupError) as exc:
            raise ParseError(f"Form parse error - {exc}"[:200]) from None


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser with the bounds above; the API takes no files."""

    def parse(
        self, stream: Any, media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> parsers.DataAndFiles:
        parser_context = parser_context or {}
        request = parser_context.get("request")
        if request is not None:
            check_length(request)  # Django's parser reads no further than Content-Length
        encoding(parser_context)
        try:
            result = super().parse(stream, media_type, parser_context)
        except (SuspiciousOperation, ValueError, LookupError) as exc:
            raise ParseError(f"Multipart form parse error - {exc}"[:200]) from None
        if result.files:
            raise ParseError("This API takes no file uploads.")
        if not result.data and declared_length(request):
            # Django's parser skips what does not follow the boundary: a body of garbage
            # parses as an empty form.
            raise ParseError("Multipart form parse error - no form fields in the body.")
        if sum(len(values) for _key, values in result.data.lists()) > MAX_ITEMS:
            raise ParseError(f"Too many form fields: at most {MAX_ITEMS}.")
        return result


PARSERS = (JSONParser, FormParser, MultiPartParser)
"""The API's parsers: JSON for clients, the two form types for the browsable API's forms."""
