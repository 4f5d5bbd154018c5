"""OpenAPI schema of the API (drf-spectacular) and a docs page that needs no CDN.

Field extensions describe settings-dependent fields (product key type, rating scale, event
kinds) when the schema is generated, so the schema matches the running shop: schemathesis
then generates the same kinds of values real clients send.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, _get_sidecar_url

from shopreco.api.serializers import pk_schema
from shopreco.api.throttling import DEFAULT_THROTTLES
from shopreco.conf import get_product_model, reco_settings


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


class MountedSchemaGenerator(SchemaGenerator):
    """Only the operations under the mount point of ``shopreco.api.urls``, whatever else the
    host's URLconf serves."""

    prefix: str = ""

    def get_schema(self, request: Any = None, public: bool = False) -> dict[str, Any]:
        schema = super().get_schema(request=request, public=public)
        # DRF answers 415 to a body it cannot parse as any accepted media type (a malformed
        # multipart boundary, say); every operation that takes a body can return it.
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if isinstance(operation, dict) and "requestBody" in operation:
                    operation.setdefault("responses", {}).setdefault(
                        "415", {"description": "Unsupported media type of the request body."}
                    )
        if self.prefix:
            schema["paths"] = {
                path: item for path, item in schema.get("paths", {}).items()
                if path.startswith(self.prefix)
            }
        return schema


class SchemaView(SpectacularAPIView):
    """``schema/``: OpenAPI 3 of this API (JSON with ``?format=json``, YAML by default)."""

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

    url_name = "shopreco_api:schema"
    throttle_classes = DEFAULT_THROTTLES

    @staticmethod
    def _redoc_standalone() -> str:
        if apps.is_installed("drf_spectacular_sidecar"):
            return _get_sidecar_url("redoc/bundles/redoc.standalone.js")
        return f"{spectacular_settings.REDOC_DIST}/bundles/redoc.standalone.js"
