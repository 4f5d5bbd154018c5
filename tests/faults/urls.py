"""A host page with all four widgets, for the fault tests.

The product comes from an in-process cache (the host's own page cache, say), so the page
itself needs no database: whatever fails during rendering is shopreco's."""

from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.urls import include, path

PAGE = """{% load shopreco %}<!doctype html><title>{{ product.name }}</title>
<h1 id="product">{{ product.name }}</h1>
{% similar_products product limit=4 %}
{% also_bought product limit=4 %}
{% recommended_for_you limit=4 %}
{% popular_products limit=4 %}
<footer id="end">end of page</footer>"""

# Set by the test before requesting the page.
STATE: dict = {}


def product_page(request: HttpRequest) -> HttpResponse:
    if "user" in STATE:
        request.user = STATE["user"]  # an already authenticated shopper
    html = engines["django"].from_string(PAGE).render({"product": STATE["product"]}, request)
    return HttpResponse(html)


urlpatterns = [
    path("page/", product_page),
    path("", include("demo_shop.catalog.urls")),  # product URLs in the widgets
]
