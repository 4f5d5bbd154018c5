"""A product page with and without its two widgets, for the query budget tests: the same
view and template engine, the widgets behind ``?w=1``, so their cost is the difference."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template import engines
from django.urls import include, path

from demo_shop.catalog.models import Product

PAGE = """{% load shopreco %}<!doctype html><title>{{ product.name }}</title>
{% shopreco_track_view product %}<h1>{{ product.name }}</h1>
{% if widgets %}{% similar_products product limit=4 %}
{% also_bought product limit=4 %}{% endif %}"""


def product_page(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product, pk=pk)
    html = engines["django"].from_string(PAGE).render(
        {"product": product, "widgets": request.GET.get("w") == "1"}, request)
    return HttpResponse(html)


urlpatterns = [
    path("page/<int:pk>/", product_page),
    path("", include("demo_shop.catalog.urls")),  # product URLs in the widgets
]
