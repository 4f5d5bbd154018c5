"""OpenAPI schema of the API (drf-spectacular) and a docs page that needs no CDN.

Field extensions describe settings-dependent fields (product key type, rating scale, event
kinds) when the schema is generated, so the schema matches the running shop: schemathesis
then generates the same kinds of values real clients send.
"""

from __future__ import annotations

import re
from typing import Any

from django.apps import apps
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import extend_schema as spectacular_extend_schema
from drf_spectacular.views import (
    SCHEMA_KWARGS,
    SpectacularAPIView,
    SpectacularRedocView,
    _get_sidecar_url,
)
from rest_framework.permissions import AllowAny

from shopreco import __version__
from shopreco.api.serializers import pk_schema
from shopreco.api.throttling import DEFAULT_THROTTLES
from shopreco.conf import get_product_model, reco_settings


def extend_schema(*args: Any, **kwargs: Any) -> Any:
    """drf-spectacular's ``extend_schema`` that builds on its own ``AutoSchema`` whatever the
    host's ``DEFAULT_SCHEMA_CLASS``: on a view method it would otherwise derive from the
    host's default class when this module is imported (DRF's own, in a host that never set
    it), and the schema page would fail."""
    decorate = spectacular_extend_schema(*args, **kwargs)

    def apply(target: Any) -> Any:
        if (not isinstance(target, type) and "schema" not in getattr(target, "__dict__", {})
                and not getattr(target, "kwargs", {}).get("schema")):
            target.schema = AutoSchema
        return decorate(target)

    return apply


class ProductKeyFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "shopreco.api.serializers.ProductKeyField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = pk_schema(get_product_model())
        schema["description"] = "Primary key of a product."
        return schema


class ScoreFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "shopreco.api.serializers.ScoreField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        low, high = float(reco_settings.RATING_MIN), float(reco_settings.RATING_MAX)
        step = 0.5 if reco_settings.RATING_HALF_STARS else 1.0
        schema: dict[str, Any] = {"type": "number", "minimum": low, "maximum": high}
        if (low / step).is_integer():
            schema["multipleOf"] = step
        schema["description"] = f"From {low:g} to {high:g} in steps of {step:g}."
        return schema


class EventKindFieldExtension(OpenApiSerializerFieldExtension):
    target_class = "shopreco.api.serializers.EventKindField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {"type": "string", "enum": sorted(reco_settings.EVENT_WEIGHTS)}


# Answers any operation can give, whatever its own decorator lists (issue #17: schemathesis
# found 400s, 401s and 403s the schema did not mention).
GENERAL_ANSWERS = {
    "400": "Invalid input (a field, a query parameter or the body itself: malformed, too "
           "large or nested too deeply); the message names the field where there is one.",
    "401": "Credentials given but not valid (a wrong or expired token).",
    "403": "Not allowed, or a session-authenticated write without its CSRF token.",
    "415": "Unsupported media type of the request body.",
    "429": "Too many requests (throttled); Retry-After says when to try again.",
}
# Query parameters where an empty value (``?limit=``) means the parameter was not given.
EMPTY_MEANS_ABSENT = {"limit", "category", "page", "page_size"}
UNSAFE_METHODS = {"post", "put", "patch", "delete"}


def _route(path: str) -> str:
    return re.sub(r"{[^}]*}", "{}", path)


class MountedSchemaGenerator(SchemaGenerator):
    """Only the operations under the mount point of ``shopreco.api.urls``, whatever else the
    host's URLconf serves; every operation lists the answers it can really give."""

    prefix: str = ""

    def _initialise_endpoints(self) -> None:
        """Only shopreco's endpoints are read at all: the host's own API views may use another
        schema class, which drf-spectacular would refuse."""
        super()._initialise_endpoints()
        if self.prefix:
            self.endpoints = [e for e in self.endpoints if e[0].startswith(self.prefix)]

    def get_schema(self, request: Any = None, public: bool = False) -> dict[str, Any]:
        schema = super().get_schema(request=request, public=public)
        info = schema.setdefault("info", {})
        if not info.get("title"):  # the host set no SPECTACULAR_SETTINGS["TITLE"]
            info["title"] = "shopreco API"
        if info.get("version") in (None, "", "0.0.0"):
            info["version"] = __version__
        views = {
            (_route(path), method.lower()): getattr(callback, "cls", None)
            for path, _regex, method, callback in (self.endpoints or [])
        }
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                if isinstance(operation, dict):
                    self._complete(operation, method, views.get((_route(path), method)))
        if self.prefix:
            schema["paths"] = {
                path: item for path, item in schema.get("paths", {}).items()
                if path.startswith(self.prefix)
            }
        return schema

    @staticmethod
    def _complete(operation: dict[str, Any], method: str, view: Any) -> None:
        """Add the answers the operation's view can give and its decorator leaves out."""
        codes = {"401"}  # every view authenticates, and a wrong token is a 401 even where
        # anonymous visitors are welcome
        if view is None or getattr(view, "throttle_classes", None):
            codes.add("429")
        permissions = getattr(view, "permission_classes", None) or []
        if method in UNSAFE_METHODS or any(p is not AllowAny for p in permissions):
            codes.add("403")
        query = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
        if "requestBody" in operation or method == "post" or query:
            # A session's CSRF check parses any POST body, whatever the view reads; DRF
            # answers 415 to a body it cannot parse as any accepted media type.
            codes.add("400")
        if "requestBody" in operation or method == "post":
            codes.add("415")
        responses = operation.setdefault("responses", {})
        for code in sorted(codes):
            responses.setdefault(code, {"description": GENERAL_ANSWERS[code]})
        for parameter in query:
            if parameter.get("name") in EMPTY_MEANS_ABSENT:
                parameter["allowEmptyValue"] = True
                parameter.get("schema", {}).pop("minLength", None)


class SchemaView(SpectacularAPIView):
    """``schema/``: OpenAPI 3 of this API (JSON with ``?format=json``, YAML by default)."""

    schema = AutoSchema()  # whatever the host's DEFAULT_SCHEMA_CLASS

    @extend_schema(**SCHEMA_KWARGS)  # drf-spectacular's own, on its AutoSchema
    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().get(request, *args, **kwargs)

    throttle_classes = DEFAULT_THROTTLES  # generating the schema is costly: rate-limit it

    def _get_schema_response(self, request: Any) -> Any:
        prefix = request.path[: -len("schema/")] if request.path.endswith("schema/") else ""
        self.generator_class = type(
            "MountedSchemaGenerator", (MountedSchemaGenerator,), {"prefix": prefix}
        )
        return super()._get_schema_response(request)


class DocsView(SpectacularRedocView):
    """``docs/``: ReDoc, served from the drf-spectacular-sidecar static files when that app
    is installed (no CDN); otherwise from ``SPECTACULAR_SETTINGS["REDOC_DIST"]``."""

    schema = AutoSchema()

    @extend_schema(exclude=True)
    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().get(request, *args, **kwargs)

    url_name = "shopreco_api:schema"
    throttle_classes = DEFAULT_THROTTLES

    @staticmethod
    def _redoc_standalone() -> str:
        if apps.is_installed("drf_spectacular_sidecar"):
            return _get_sidecar_url("redoc/bundles/redoc.standalone.js")
        return f"{spectacular_settings.REDOC_DIST}/bundles/redoc.standalone.js"
