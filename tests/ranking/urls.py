"""A host's own product API with shopreco's ordering beside DRF's, and the demo's pages."""

from django.urls import include, path
from rest_framework import routers, serializers, viewsets
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.pagination import PageNumberPagination

from demo_shop.catalog.models import Product
from shopreco.api import PersonalizedOrdering


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "name"]


class Pages(PageNumberPagination):
    page_size = 5


class ProductViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Product.objects.order_by("name")
    serializer_class = ProductSerializer
    pagination_class = Pages
    filter_backends = [SearchFilter, OrderingFilter, PersonalizedOrdering]
    search_fields = ["name"]
    ordering_fields = ["name", "price"]

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        rec = PersonalizedOrdering.recommendation_id(request)
        if rec:
            response["X-Recommendation-Id"] = rec
        return response


router = routers.DefaultRouter()
router.register("products", ProductViewSet)

urlpatterns = [
    path("shop-api/", include(router.urls)),
    path("", include("demo_shop.urls")),
]
