"""Views of the REST API: presentation only.

Lists come from :mod:`shopreco.services` (the same functions the template tags use, so the API
applies the same filters, cold-start chain and reasons), recomputes from
:mod:`shopreco.pipeline`, privacy operations from :mod:`shopreco.privacy`. Bad input answers
400 naming the field, foreign or unknown objects 404, never a 500.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.db import IntegrityError, models, transaction
from django.http import Http404
from django.http.multipartparser import MultiPartParserError
from django.utils.cache import patch_cache_control, patch_vary_headers
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.authentication import CSRFCheck
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, PermissionDenied, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from shopreco import cache, privacy, serving, tasks, tracking
from shopreco.adapter import get_adapter
from shopreco.api.parsers import PARSERS, check_length
from shopreco.api.permissions import IsStaff
from shopreco.api.schema import extend_schema  # also registers the field extensions
from shopreco.api.serializers import (
    CANONICAL_INTEGER,
    CategoryQuerySerializer,
    ErasureResultSerializer,
    EventResultSerializer,
    EventSerializer,
    ListQuerySerializer,
    PreferencesSerializer,
    RatingSerializer,
    RecoListSerializer,
    RunSerializer,
    pk_value,
    to_field_value,
    to_pk,
)
from shopreco.api.throttling import DEFAULT_THROTTLES, EVENT_THROTTLES
from shopreco.conf import get_product_model, reco_settings
from shopreco.models import Rating, RecomputeRun
from shopreco.pipeline import runs

ERRORS = {
    400: OpenApiResponse(description="Invalid input; the message names the field."),
    404: OpenApiResponse(description="Not found (or not yours; or no such page)."),
}
AUTH_ERRORS = {
    401: OpenApiResponse(description="Not signed in."),
    403: OpenApiResponse(description="Not allowed (or CSRF token missing)."),
}


class Pagination(PageNumberPagination):
    """Ratings and runs: ``?page=`` and ``?page_size=`` (1 to 200), whole numbers in ASCII
    digits. DRF would read a malformed ``page_size`` as the default, cap a large one, and
    ``int()`` takes "+2" or Arabic digits: answers the schema's ``integer`` did not describe."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if not raw:  # empty means not given, as for the lists' limit
            return self.page_size
        if not CANONICAL_INTEGER.fullmatch(raw) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [
                f"A whole number from 1 to {self.max_page_size}."]})
        return int(raw)

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if not raw:
            return 1
        if raw in self.last_page_strings:
            return paginator.num_pages
        if not CANONICAL_INTEGER.fullmatch(raw) or int(raw) < 1:
            raise NotFound(self.invalid_page_message.format(
                page_number=raw[:20], message="not a page number"))
        return int(raw)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
                parameter["description"] = f"Results per page (default {self.page_size})."
        return parameters


class ShopRecoAPIView(APIView):
    """Base of the API's views: throttled, with bounded body parsers (:mod:`.parsers`)."""

    throttle_classes = DEFAULT_THROTTLES
    parser_classes = PARSERS
    schema = AutoSchema()  # drf-spectacular's, whatever the host's DEFAULT_SCHEMA_CLASS

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # Also bounds the bodies that reach Django's own parsing (a view's CSRF check).
        check_length(request)

    def handle_exception(self, exc: Exception) -> Response:
        """A body that Django's own parsing refuses (``RequestDataTooBig``,
        ``TooManyFieldsSent``, a malformed multipart form: a view's CSRF check reads
        ``request.POST``) would get Django's HTML 400 page, with DEBUG on the technical one
        listing the environment: a short JSON 400 instead, logged as Django logs it."""
        if isinstance(exc, SuspiciousOperation):
            logging.getLogger(f"django.security.{type(exc).__name__}").error(str(exc))
        if isinstance(exc, SuspiciousOperation | MultiPartParserError | BadRequest):
            exc = ParseError(str(exc)[:200])
        return super().handle_exception(exc)


def _product_or_404(pk: str, *, available_only: bool = False) -> models.Model:
    """The product with key ``pk`` (integer, UUID or text); 404 for malformed or unknown keys.
    A list's page product (``available_only`` false) may come from the cache."""
    model = get_product_model()
    try:
        key = to_pk(model, pk)
    except ValueError:
        raise Http404("No such product.") from None

    def load(key: Any) -> models.Model | None:
        qs = model._default_manager.all()
        if available_only:
            qs = get_adapter().available(qs)
        return next(iter(qs.filter(pk=key).order_by()[:1]), None)  # by pk: no ORDER BY

    product = load(key) if available_only else cache.page_product(key, load)
    if product is None:
        raise Http404("No such product.")
    return product


def _clean_query(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    data = dict(query.validated_data)
    with service_errors():
        data["limit"] = serving.clean_limit(data.get("limit"))
    if data.get("category") in (None, ""):  # empty means not given, as for limit
        data["category"] = None
    else:
        data["category"] = _clean_category(data["category"])
    return data


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn the serving layer's ``ValueError("field: message")`` into a 400 naming the field."""
    try:
        yield
    except ValueError as exc:
        field, sep, message = str(exc).partition(": ")
        if not sep or not field.isidentifier():
            field, message = "non_field_errors", str(exc)
        raise ValidationError({field: [message]}) from None


def _clean_category(value: str) -> Any:
    """A category filter value in the type of the product's category field (400 otherwise)."""
    field_name = get_adapter().category_field()
    if field_name is None:
        raise ValidationError({"category": ["This shop's products have no category."]})
    field = get_product_model()._meta.get_field(field_name)
    if field.is_relation:
        related = field.related_model
        try:
            key = to_pk(related, value)
        except ValueError:
            raise ValidationError({"category": ["Not a valid category key."]}) from None
        if not related._default_manager.filter(pk=key).exists():
            raise ValidationError({"category": [f"Unknown category {value!r}."]})
        return key
    try:
        return to_field_value(field, value)
    except ValueError:
        raise ValidationError({"category": ["Not a valid category."]}) from None


def _etag(reco: serving.RecoList) -> str:
    """A weak validator of the list's content (not of its recommendation id, which is new for
    every response): the same products, scores and reasons give the same ETag."""
    parts = [reco.widget, reco.source] + [
        f"{pk_value(i.product.pk)}:{i.score:.6g}:{i.reason}" for i in reco.items
    ]
    return 'W/"' + hashlib.sha1("|".join(parts).encode()).hexdigest()[:32] + '"'


def _list_response(request: Request, reco: serving.RecoList, *, shared: bool) -> Response:
    """The list, with HTTP caching: anonymous, session-less requests for lists that do not
    depend on the visitor may be cached by shared caches for ``CACHE_TIMEOUT`` seconds; all
    other lists are private and revalidated with the ETag."""
    etag = _etag(reco)
    anonymous = not request.user.is_authenticated
    public = shared and anonymous and not request.session.session_key
    if etag in request.headers.get("If-None-Match", ""):
        response = Response(status=status.HTTP_304_NOT_MODIFIED)
    else:
        context = {"request": request, "shopreco_adapter": get_adapter()}
        response = Response(RecoListSerializer(reco, context=context).data)
    response["ETag"] = etag
    if public:
        patch_cache_control(response, public=True, max_age=int(reco_settings.CACHE_TIMEOUT))
    else:
        patch_cache_control(response, private=True, no_cache=True)
    patch_vary_headers(response, ("Cookie", "Authorization", "Sec-GPC"))
    return response


def _list_schema(summary: str, query: type[serializers.Serializer], **kwargs: Any) -> Any:
    return extend_schema(
        summary=summary,
        parameters=[query],
        responses={200: RecoListSerializer, 304: OpenApiResponse(description="Not modified."),
                   **ERRORS},
        **kwargs,
    )


class SimilarProductsView(ShopRecoAPIView):
    """"You may also like": the product's neighbours, then popular products of its category."""

    permission_classes = [AllowAny]

    @_list_schema("Similar products", CategoryQuerySerializer)
    def get(self, request: Request, pk: str) -> Response:
        product = _product_or_404(pk)
        params = _clean_query(CategoryQuerySerializer, request)
        with service_errors():
            reco = serving.similar_products(
                product, params["limit"], request=request, category=params.get("category")
            )
        return _list_response(request, reco, shared=True)

    def get_queryset(self) -> models.QuerySet:
        """Only for the schema: the ``pk`` path parameter has the product key's type."""
        return get_product_model()._default_manager.none()


class AlsoBoughtView(ShopRecoAPIView):
    """"Customers who bought this also bought": co-purchases only, never padded with popular
    products. A product nobody bought with another answers 200 with an empty ``results``
    (``source`` "none"): show nothing rather than an empty box."""

    permission_classes = [AllowAny]

    @_list_schema("Also bought", ListQuerySerializer)
    def get(self, request: Request, pk: str) -> Response:
        product = _product_or_404(pk)
        params = _clean_query(ListQuerySerializer, request)
        with service_errors():
            reco = serving.also_bought(product, params["limit"], request=request)
        return _list_response(request, reco, shared=True)

    def get_queryset(self) -> models.QuerySet:
        return get_product_model()._default_manager.none()


@extend_schema(exclude=True)
class SlashKeySimilarView(SimilarProductsView):
    """Same as :class:`SimilarProductsView`, for text keys containing "/"."""


@extend_schema(exclude=True)
class SlashKeyAlsoBoughtView(AlsoBoughtView):
    """Same as :class:`AlsoBoughtView`, for text keys containing "/"."""


class RecommendationsView(ShopRecoAPIView):
    """Personal recommendations of the signed-in user; for an anonymous session the serving
    layer's cold-start chain (recent views and cart of the session, then popular)."""

    permission_classes = [AllowAny]

    @_list_schema("Recommended for you", CategoryQuerySerializer)
    def get(self, request: Request) -> Response:
        params = _clean_query(CategoryQuerySerializer, request)
        who: Any = request.user
        if not request.user.is_authenticated:
            who = request.session.session_key or request.user
        with service_errors():
            reco = serving.recommended_for(
                who, params["limit"], request=request, category=params.get("category")
            )
        return _list_response(request, reco, shared=False)


class PopularView(ShopRecoAPIView):
    """Popular and trending products, optionally within a category."""

    permission_classes = [AllowAny]

    @_list_schema("Popular products", CategoryQuerySerializer)
    def get(self, request: Request) -> Response:
        params = _clean_query(CategoryQuerySerializer, request)
        with service_errors():
            reco = serving.popular(
                params["limit"], category=params.get("category"), request=request
            )
        return _list_response(request, reco, shared=True)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "product", OpenApiTypes.STR, description="Only the rating of this product."
            )
        ],
        responses={200: RatingSerializer(many=True), **ERRORS, **AUTH_ERRORS},
    ),
    create=extend_schema(
        responses={200: RatingSerializer, 201: RatingSerializer, 400: ERRORS[400], **AUTH_ERRORS}
    ),
    retrieve=extend_schema(responses={200: RatingSerializer, 404: ERRORS[404], **AUTH_ERRORS}),
    update=extend_schema(responses={200: RatingSerializer, **ERRORS, **AUTH_ERRORS}),
    partial_update=extend_schema(responses={200: RatingSerializer, **ERRORS, **AUTH_ERRORS}),
    destroy=extend_schema(responses={204: None, 404: ERRORS[404], **AUTH_ERRORS}),
)
class RatingViewSet(viewsets.ModelViewSet):
    """The signed-in user's own ratings. Others' ratings do not exist here (404).
    POST for a product already rated updates that rating (200) instead of failing."""

    serializer_class = RatingSerializer
    permission_classes = [IsAuthenticated]
    throttle_classes = DEFAULT_THROTTLES
    schema = AutoSchema()
    parser_classes = PARSERS
    pagination_class = Pagination
    queryset = Rating.objects.none()  # for the schema; get_queryset() is per user

    def get_queryset(self) -> models.QuerySet:
        if getattr(self, "swagger_fake_view", False) or not self.request.user.is_authenticated:
            return Rating.objects.none()
        qs = Rating.objects.filter(user=self.request.user).order_by("-updated_at", "-pk")
        product = self.request.query_params.get("product") if self.action == "list" else None
        if product is not None:
            try:
                qs = qs.filter(product_id=to_pk(get_product_model(), product))
            except ValueError:
                raise ValidationError({"product": ["Not a valid product key."]}) from None
        return qs

    @extend_schema(summary="Rate a product (or update your rating of it)")
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        product = serializer.validated_data["product"]
        score = serializer.validated_data["score"]
        user = request.user
        existing = Rating.objects.filter(user=user, product=product).first()
        created = False
        if existing is None:
            try:
                with transaction.atomic():
                    existing = Rating.objects.create(user=user, product=product, score=score)
                    created = True
            except IntegrityError:  # a concurrent POST created it first: update that one
                existing = Rating.objects.get(user=user, product=product)
        if not created:
            existing.score = score
            existing.save(update_fields=["score", "updated_at"])
        data = self.get_serializer(existing).data
        return Response(data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class EventView(ShopRecoAPIView):
    """Record a view or add-to-cart for the signed-in user or the anonymous session.

    Clients post the kinds of ``CLIENT_EVENT_KINDS`` only: purchases are facts only the
    shop's server knows and come from ``shopreco.track`` in its checkout, so a script cannot
    buy a product into the also-bought lists. A repeat of the shopper's event within
    ``EVENT_DEDUP_SECONDS`` answers 200 and stores nothing. Browser sessions must send the
    CSRF token, anonymous ones too once they carry a session cookie (so another site cannot
    forge a visitor's history); token clients need none."""

    permission_classes = [AllowAny]
    throttle_classes = EVENT_THROTTLES

    @extend_schema(
        summary="Record an event",
        request=EventSerializer,
        responses={
            201: EventResultSerializer,
            200: OpenApiResponse(EventResultSerializer, "Not recorded again: a repeat of the "
                                 "shopper's event within EVENT_DEDUP_SECONDS (id: that one)."),
            202: OpenApiResponse(EventResultSerializer, "Not recorded: the shopper opted out."),
            **ERRORS,
            403: AUTH_ERRORS[403],
        },
    )
    def post(self, request: Request) -> Response:
        if not request.user.is_authenticated and _has_session_cookie(request):
            _enforce_csrf(request)
        serializer = EventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        product = data["product"]
        allowed = tracking.client_event_kinds()
        if data["type"] not in allowed:
            raise ValidationError({"type": [
                f"{data['type']!r} events are recorded by the shop's server; clients may post "
                f"{', '.join(sorted(allowed)) or 'none'}."
            ]})
        with service_errors():
            event, created = tracking.record(
                request, product, data["type"],
                recommendation_id=data.get("recommendation_id") or None,
            )
        body = {
            "recorded": created,
            "id": event.pk if event is not None else None,
            "product": pk_value(product.pk),
            "type": data["type"],
            "recommendation_id": event.recommendation_id if event is not None else None,
        }
        code = (status.HTTP_201_CREATED if created else
                status.HTTP_200_OK if event is not None else status.HTTP_202_ACCEPTED)
        return Response(EventResultSerializer(body).data, status=code)


def _has_session_cookie(request: Request) -> bool:
    return settings.SESSION_COOKIE_NAME in request.COOKIES


def _enforce_csrf(request: Request) -> None:
    """The check DRF's SessionAuthentication runs for signed-in users, for anonymous ones."""

    def dummy_get_response(request: Any) -> None:  # pragma: no cover - never called
        return None

    check = CSRFCheck(dummy_get_response)
    check.process_request(request._request)
    reason = check.process_view(request._request, None, (), {})
    if reason:
        raise PermissionDenied(f"CSRF Failed: {reason}")


class RecomputeView(ShopRecoAPIView):
    """Staff: start a full recompute. Coalesced: while one is pending or running, that run is
    returned instead of starting another. If the broker refused the run (it is then recorded
    as failed), 503 says so instead of a 202 for a run that will never start."""

    permission_classes = [IsStaff]

    @extend_schema(
        summary="Start a full recompute",
        request=None,
        responses={202: RunSerializer, **AUTH_ERRORS, 503: OpenApiResponse(
            description="The task broker refused the run, recorded as failed.")},
    )
    def post(self, request: Request) -> Response:
        run = tasks.request_full_recompute()
        run.refresh_from_db()  # sent after commit: a refused run is failed by now
        data, code = RunSerializer(run).data, status.HTTP_202_ACCEPTED
        if run.status == RecomputeRun.Status.FAILED:
            data = {"detail": "The recompute could not be queued: the task broker refused "
                              "it. Try again later.", **data}
            code = status.HTTP_503_SERVICE_UNAVAILABLE
        response = Response(data, status=code)
        if code == status.HTTP_503_SERVICE_UNAVAILABLE:
            response["Retry-After"] = str(int(tasks.broker_retry_in()) + 1)
        response["Location"] = reverse(
            "shopreco_api:run-detail", kwargs={"pk": run.pk}, request=request
        )
        return response


@extend_schema_view(
    list=extend_schema(
        responses={200: RunSerializer(many=True), 404: ERRORS[404], **AUTH_ERRORS}
    ),
    retrieve=extend_schema(responses={200: RunSerializer, 404: ERRORS[404], **AUTH_ERRORS}),
)
class RunViewSet(viewsets.ReadOnlyModelViewSet):
    """Staff: recompute and evaluation runs, newest first; ``activate/`` puts a kept run live
    (a rollback, or a run the holdout gate rejected)."""

    serializer_class = RunSerializer
    permission_classes = [IsStaff]
    throttle_classes = DEFAULT_THROTTLES
    schema = AutoSchema()
    parser_classes = PARSERS  # a session's CSRF check parses a POST body, even here
    pagination_class = Pagination
    queryset = RecomputeRun.objects.order_by("-created_at", "-id")

    @extend_schema(
        summary="Serve this run from the next request on",
        description="A rollback to an older kept run, or a run the holdout gate rejected, "
                    "activated anyway. Who and when are recorded.",
        request=None,
        responses={200: RunSerializer, 404: ERRORS[404], **AUTH_ERRORS,
                   409: OpenApiResponse(description="The run cannot go live (the detail "
                                                    "says why): not a finished full run, "
                                                    "already live, or it read erased data.")},
    )
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        try:
            runs.deploy(run.pk, by=request.user)
        except runs.NotActivatable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        run.refresh_from_db()
        return Response(RunSerializer(run).data)


class UserRecommendationsView(ShopRecoAPIView):
    """Staff: what a user would see in "Recommended for you", with reasons (not logged)."""

    permission_classes = [IsStaff]

    @_list_schema("Preview a user's recommendations", ListQuerySerializer)
    def get(self, request: Request, pk: str) -> Response:
        model = get_user_model()
        try:
            user = model._default_manager.filter(pk=to_pk(model, pk)).first()
        except ValueError:
            user = None
        if user is None:
            raise Http404("No such user.")
        params = _clean_query(ListQuerySerializer, request)
        with service_errors():
            reco = serving.preview_for_user(user, params["limit"])
        context = {"request": request, "shopreco_adapter": get_adapter()}
        response = Response(RecoListSerializer(reco, context=context).data)
        patch_cache_control(response, private=True, no_store=True)
        return response

    def get_queryset(self) -> models.QuerySet:
        return get_user_model()._default_manager.none()


class MeExportView(ShopRecoAPIView):
    """Everything shopreco holds on the signed-in user, as JSON (right of access)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Export my data",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT), **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        # The anonymous id of this browser: what it did before signing in belongs to the export.
        data = privacy.export_user_data(request.user, session_key=tracking.anonymous_id(request))
        response = Response(data)
        patch_cache_control(response, private=True, no_store=True)
        return response


class MeDataView(ShopRecoAPIView):
    """Erase the signed-in user's ratings, events, impressions and recommendations, and those
    of their browser from before they signed in (right to erasure); the account itself and
    the opt-out preference stay."""

    permission_classes = [IsAuthenticated]

    @extend_schema(summary="Erase my data", responses={200: ErasureResultSerializer, **AUTH_ERRORS})
    def delete(self, request: Request) -> Response:
        # With what this browser did before signing in (its anonymous id), which then goes
        # from the session too: nothing done next is linked to what was erased.
        counts = privacy.erase_user_data(request.user, session_key=tracking.anonymous_id(request))
        tracking.forget_session(request)
        # The served similarities and files still hold the user: a run on what remains
        # replaces them (after the response; a refused broker fails only that run).
        tasks.request_erasure_follow_up()
        return Response(ErasureResultSerializer({"deleted": counts}).data)


class MePreferencesView(ShopRecoAPIView):
    """The signed-in user's personalisation choice (off: popular lists only, no tracking)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="My privacy preferences",
        responses={200: PreferencesSerializer, **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        prefs = privacy.get_preferences(request.user)
        return Response(PreferencesSerializer(prefs).data)

    @extend_schema(
        summary="Change my privacy preferences",
        request=PreferencesSerializer,
        responses={200: PreferencesSerializer, **ERRORS, **AUTH_ERRORS},
    )
    def put(self, request: Request) -> Response:
        serializer = PreferencesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prefs = privacy.set_preferences(request.user, serializer.validated_data["personalize"])
        return Response(PreferencesSerializer(prefs).data)


__all__ = [
    "AlsoBoughtView", "EventView", "MeDataView", "MeExportView", "MePreferencesView",
    "PopularView", "RatingViewSet", "RecomputeView", "RecommendationsView", "RunViewSet",
    "SimilarProductsView", "UserRecommendationsView",
]
