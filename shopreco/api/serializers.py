"""Serializers of the REST API.

Everything that depends on settings (the product model, its key type, the rating scale, the
event kinds, ``MAX_LIMIT``) is read when a serializer is *instantiated*, never at import time,
so ``override_settings`` works and the generated schema always matches the running settings.
The product fields come from ``SHOPRECO["API_PRODUCT_SERIALIZER"]`` (a host can replace or
extend :class:`ProductSerializer`, as django-oscar-api lets hosts do).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from shopreco.adapter import get_adapter
from shopreco.conf import get_product_model, key_field, reco_settings
from shopreco.models import Rating, Reason, RecomputeRun, validate_rating_score

# Keys and numbers are read in one spelling only: int() and float() also take "+1", " 1",
# "1_0", fullwidth and Arabic-Indic digits, and uuid.UUID() braces, "urn:uuid:" and no dashes,
# so one row had many names (a cache or log keyed by the raw value would see strangers).
CANONICAL_INTEGER = re.compile(r"0|-?[1-9][0-9]{0,19}")
CANONICAL_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,19})(?:\.[0-9]{1,20})?")
CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
RECOMMENDATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def to_field_value(field: models.Field, value: Any) -> Any:
    """Convert a raw value (URL segment, query parameter, JSON value) to ``field``'s type.

    Raises ``ValueError`` for values that cannot be one (wrong type, a non-canonical spelling,
    out of the 64-bit range, NUL, too long), so callers answer 400/404 instead of letting the
    database raise a 500 or a second spelling resolve to the same row.
    """
    if value is None or isinstance(value, bool | float | dict | list):
        raise ValueError("not a valid key")
    if isinstance(field, models.IntegerField):  # AutoField and BigAutoField too
        if isinstance(value, str) and CANONICAL_INTEGER.fullmatch(value):
            value = int(value)
        if not isinstance(value, int):
            raise ValueError("not a valid key")
        # Keep keys inside a signed 64-bit range: the widest any backend stores.
        if not -(2**63) <= value < 2**63:
            raise ValueError("not a valid key")
        return value
    if isinstance(field, models.UUIDField):
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, str) and CANONICAL_UUID.fullmatch(value):
            return uuid.UUID(value)
        raise ValueError("not a valid key")
    if isinstance(value, str) and "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise ValueError("not a valid key")
    try:
        converted = field.to_python(value)
    except (DjangoValidationError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError("not a valid key") from exc
    if converted in (None, ""):
        raise ValueError("not a valid key")
    if isinstance(field, models.CharField) and field.max_length:
        if len(str(converted)) > field.max_length:
            raise ValueError("not a valid key")
    return converted


def to_pk(model: type[models.Model], value: Any) -> Any:
    """Convert a raw key to ``model``'s primary-key type (:func:`to_field_value`)."""
    return to_field_value(key_field(model), value)


def pk_schema(model: type[models.Model]) -> dict[str, Any]:
    """OpenAPI schema of ``model``'s primary key (integer, UUID or text)."""
    field = key_field(model)
    if isinstance(field, models.IntegerField | models.AutoField):
        return {"type": "integer"}
    if isinstance(field, models.UUIDField):
        return {"type": "string", "format": "uuid"}
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if getattr(field, "max_length", None):
        schema["maxLength"] = field.max_length
    return schema


def pk_value(value: Any) -> Any:
    """A primary key as JSON: integers stay numbers, everything else becomes a string."""
    if isinstance(value, int):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


class ProductKeyField(serializers.Field):
    """A product by its primary key: in input, an *available* product (400 naming the field
    otherwise); in output, the key itself. Works for integer, UUID and text keys."""

    default_error_messages = {
        "invalid": "Not a valid product key.",
        "does_not_exist": "Unknown or unavailable product {value!r}.",
    }

    def __init__(self, *, available_only: bool = True, **kwargs: Any) -> None:
        self.available_only = available_only
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> models.Model:
        model = get_product_model()
        try:
            key = to_pk(model, data)
        except ValueError:
            self.fail("invalid")
        qs = model._default_manager.all()
        if self.available_only:
            qs = get_adapter().available(qs)
        product = qs.filter(pk=key).first()
        if product is None:
            self.fail("does_not_exist", value=data)
        return product

    def get_attribute(self, instance: Any) -> Any:
        """A foreign key's stored key (``product_id``) instead of the related object, so
        listing 50 ratings does not load 50 products one by one."""
        if len(self.source_attrs) == 1 and isinstance(instance, models.Model):
            try:
                field = instance._meta.get_field(self.source_attrs[0])
            except FieldDoesNotExist:
                field = None
            if field is not None and field.many_to_one:
                return getattr(instance, field.attname)
        return super().get_attribute(instance)

    def to_representation(self, value: Any) -> Any:
        return pk_value(getattr(value, "pk", value))


class ScoreField(serializers.FloatField):
    """A rating score on the configured scale (``RATING_MIN``..``RATING_MAX``, half stars if
    ``RATING_HALF_STARS``)."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, str) and not CANONICAL_NUMBER.fullmatch(data):
            self.fail("invalid")  # float() takes " 4", "4_0", "NaN" and non-ASCII digits
        value = super().to_internal_value(data)
        try:
            validate_rating_score(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(list(exc.messages)) from exc
        return value


class CanonicalIntegerField(serializers.IntegerField):
    """An integer as a JSON number or in canonical ASCII digits: DRF's IntegerField also takes
    "+1", " 1", "1.0" and non-ASCII digits, which the schema's ``integer`` does not promise."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool | float):
            self.fail("invalid")
        if isinstance(data, str) and not CANONICAL_INTEGER.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class RecommendationIdField(serializers.CharField):
    """The ``recommendation_id`` of a served list, echoed back: a well-formed id that is not
    (or no longer) known is accepted and not credited; anything else is a 400."""

    default_error_messages = {"invalid": "Not a recommendation id."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if value and not RECOMMENDATION_ID.fullmatch(value):
            self.fail("invalid")
        return value


class RequiredBooleanField(serializers.BooleanField):
    """A boolean that a form must send too: DRF reads a missing form field as ``False`` (an
    unchecked HTML checkbox), so a form without it would silently switch something off."""

    default_empty_html = serializers.empty


class EventKindField(serializers.CharField):
    """One of the event kinds configured in ``SHOPRECO["EVENT_WEIGHTS"]``."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        kinds = sorted(reco_settings.EVENT_WEIGHTS)
        if value not in kinds:
            raise serializers.ValidationError(
                f"Unknown event type {value!r}; expected one of {', '.join(kinds)}."
            )
        return value


class ProductSerializer(serializers.Serializer):
    """The product as the shop's adapter sees it, so it works with any product model.

    Hosts extend it (add fields) or replace it through ``SHOPRECO["API_PRODUCT_SERIALIZER"]``.
    """

    pk = ProductKeyField(read_only=True, source="*")
    name = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    price = serializers.SerializerMethodField()
    image = serializers.SerializerMethodField()
    category = serializers.SerializerMethodField()

    @property
    def adapter(self) -> Any:
        adapter = self.context.get("shopreco_adapter")
        if adapter is None:
            adapter = self.context["shopreco_adapter"] = get_adapter()
        return adapter

    def _absolute(self, url: str) -> str:
        request = self.context.get("request")
        if not url or request is None or not url.startswith("/"):
            return url
        if url.startswith("//"):
            return request.build_absolute_uri(url)
        origin = self.context.get("_shopreco_origin")
        if origin is None:  # scheme and host, once per response rather than once per URL
            origin = self.context["_shopreco_origin"] = request.build_absolute_uri("/")[:-1]
        return origin + url

    def get_name(self, obj: models.Model) -> str:
        return self.adapter.get_name(obj)

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, obj: models.Model) -> str:
        return self._absolute(self.adapter.get_url(obj))

    @extend_schema_field({"type": "string", "format": "decimal", "nullable": True})
    def get_price(self, obj: models.Model) -> str | None:
        price = self.adapter.get_price(obj)
        return None if price is None else str(price)

    @extend_schema_field(OpenApiTypes.STR)
    def get_image(self, obj: models.Model) -> str:
        return self._absolute(self.adapter.get_image(obj))

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {"pk": {}, "name": {"type": "string"}},
            "required": ["pk", "name"],
        }
    )
    def get_category(self, obj: models.Model) -> dict[str, Any] | None:
        category = self.adapter.get_category(obj)
        if category is None or category == "":
            return None
        if isinstance(category, models.Model):
            return {"pk": pk_value(category.pk), "name": str(category)}
        return {"pk": pk_value(category), "name": str(category)}


class RecoItemSerializer(serializers.Serializer):
    """One recommended product with its relevance and the human-readable reason."""

    score = serializers.FloatField(
        min_value=0.0, max_value=1.0,
        help_text="Relevance within this list, from 1.0 (the list's best item) down to 0: the "
        "model's score divided by the best score of the same source in the list; popular "
        "padding is scaled below the item before it. Not comparable across lists, and not a "
        "rating.",
    )
    reason = serializers.CharField(allow_blank=True)
    reason_kind = serializers.CharField(
        help_text="Why the product is listed: "
        + ", ".join(dict.fromkeys(r.kind for r in Reason)) + "."
    )
    source = serializers.CharField(
        help_text="Where this item came from: the list's own candidates (similar, "
        "also_bought, personal, recent) or padding with popular products (popular).",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields = {"product": reco_settings.API_PRODUCT_SERIALIZER(read_only=True), **fields}
        return fields


class RecoListSerializer(serializers.Serializer):
    """A served list: echo ``recommendation_id`` with events so clicks are credited."""

    recommendation_id = serializers.CharField()
    source = serializers.CharField(
        help_text="Where the list's first item came from: similar, also_bought, personal, "
        "recent or popular (the cold-start chain); none for an empty list (an also-bought "
        "list of a product nobody bought with another: never padded)."
    )
    results = RecoItemSerializer(many=True, source="items")


class ListQuerySerializer(serializers.Serializer):
    """``limit`` of the list endpoints, bounded by ``SHOPRECO["MAX_LIMIT"]``."""

    limit = CanonicalIntegerField(required=False, help_text="Number of results.")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["limit"] = CanonicalIntegerField(
            required=False,
            min_value=1,
            max_value=int(reco_settings.MAX_LIMIT),
            help_text=f"Number of results (default {reco_settings.DEFAULT_LIMIT}).",
        )
        return fields


class CategoryQuerySerializer(ListQuerySerializer):
    """``limit`` plus an optional ``category`` (the category's key, as in product output)."""

    category = serializers.CharField(
        required=False, allow_blank=True, max_length=255, trim_whitespace=False,
        help_text="Only products of this category (its pk). Empty: every category.",
    )


class RatingSerializer(serializers.ModelSerializer):
    """The signed-in user's rating of one product. The product cannot change once rated."""

    product = ProductKeyField()
    score = ScoreField()

    class Meta:
        model = Rating
        fields = ["id", "product", "score", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | models.QuerySet):
            # Updating: the product is fixed (delete and re-rate to change it); allow
            # leaving it out, reject a different one.
            fields["product"] = ProductKeyField(available_only=False, required=False)
        return fields

    def validate_product(self, product: models.Model) -> models.Model:
        if self.instance is not None and getattr(self.instance, "product_id", None) is not None:
            if product.pk != self.instance.product_id:
                raise serializers.ValidationError(
                    "The product of a rating cannot be changed; delete it and rate again."
                )
        return product


class EventSerializer(serializers.Serializer):
    """An implicit event: a view, add-to-cart or purchase (kinds configurable by setting)."""

    product = ProductKeyField()
    type = EventKindField(max_length=32, help_text="view, cart or purchase (configurable).")
    recommendation_id = RecommendationIdField(
        required=False, allow_null=True, allow_blank=True, max_length=64,
        help_text="The recommendation_id of the list the product was picked from, if any.",
    )


class EventResultSerializer(serializers.Serializer):
    recorded = serializers.BooleanField(
        help_text="False when the user opted out of tracking (preference or GPC)."
    )
    id = serializers.IntegerField(allow_null=True)
    product = serializers.JSONField()
    type = serializers.CharField()
    recommendation_id = serializers.CharField(allow_null=True)


class RunSerializer(serializers.ModelSerializer):
    """A recompute (or evaluation) run: status, progress, counts, metrics, timings."""

    duration = serializers.SerializerMethodField()
    live = serializers.SerializerMethodField()

    class Meta:
        model = RecomputeRun
        fields = [
            "id", "kind", "status", "live", "algorithm", "params", "stage", "progress",
            "counts", "metrics", "timings", "error", "created_at", "started_at", "finished_at",
            "heartbeat_at", "duration",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "boolean"})
    def get_live(self, run: RecomputeRun) -> bool:
        """Whether shoppers are served from this run now (the latest deployment's). A
        ``rejected`` run failed the holdout gate (``metrics.holdout`` says why)."""
        live = self.context.setdefault("_live_run", RecomputeRun.live())
        return live is not None and live.pk == run.pk

    @extend_schema_field({"type": "number", "nullable": True})
    def get_duration(self, run: RecomputeRun) -> float | None:
        """Seconds from start to finish, once finished."""
        return run.duration.total_seconds() if run.duration is not None else None


class PreferencesSerializer(serializers.Serializer):
    personalize = RequiredBooleanField(
        help_text="False turns off personalisation and event tracking: popular lists only."
    )


class ErasureResultSerializer(serializers.Serializer):
    deleted = serializers.DictField(child=serializers.IntegerField())
