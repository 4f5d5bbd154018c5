"""Bench-only URLconf for bench_serving.py: the demo shop's URLs plus a bare DRF view to
compare shopreco's list endpoints with (issue #16).

``GET bench-bare/products/<pk>/similar/?limit=N``: an ``APIView`` with no authentication and
no throttle classes (the middleware is the same as for every other view) that reads the
product's top-N stored "similar" neighbours of the live run from shopreco's
``ItemSimilarity`` in ONE query (the live run is a subquery: the newest succeeded full run),
loads those products in a SECOND query and serialises them with a plain ``ModelSerializer`` of
the demo's ``Product``. It applies none of shopreco's filters, fills, reasons, page de-dup,
caching or impressions: it is the floor a hand-written endpoint would sit on.

Only public names are used (the models and ``RecomputeRun``'s documented fields), so the bench
keeps working while shopreco's serving internals move. Point ``ROOT_URLCONF`` here
(``bench_serving`` does, in process and under gunicorn).
"""

from __future__ import annotations

from django.urls import include, path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from demo_shop.catalog.models import Product
from shopreco.models import ItemSimilarity, RecomputeRun

DEFAULT_LIMIT = 6
MAX_LIMIT = 50


class BareProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "name", "price", "category", "image_color", "in_stock"]


def _live_run():
    """The newest succeeded full run's id, as a subquery (no query of its own)."""
    return (RecomputeRun.objects.filter(kind=RecomputeRun.Kind.FULL,
                                        status=RecomputeRun.Status.SUCCEEDED)
            .order_by("-finished_at", "-id").values("id")[:1])


class BareSimilarView(APIView):
    authentication_classes: list = []
    throttle_classes: list = []
    permission_classes: list = []

    def get(self, request, pk: int) -> Response:  # noqa: ANN001 - DRF signature
        try:
            limit = min(max(int(request.query_params.get("limit", DEFAULT_LIMIT)), 1), MAX_LIMIT)
        except ValueError:
            limit = DEFAULT_LIMIT
        ids = list(
            ItemSimilarity.objects.filter(run_id__in=_live_run(),
                                          kind=ItemSimilarity.Kind.SIMILAR, product_id=pk)
            .order_by("-score").values_list("similar_product_id", flat=True)[:limit]
        )  # query 1
        loaded = {p.pk: p for p in Product.objects.filter(pk__in=ids)} if ids else {}  # query 2
        products = [loaded[i] for i in ids if i in loaded]
        return Response({"results": BareProductSerializer(products, many=True).data})


urlpatterns = [
    path("bench-bare/products/<int:pk>/similar/", BareSimilarView.as_view(),
         name="bench-bare-similar"),
    path("", include("demo_shop.urls")),
]
