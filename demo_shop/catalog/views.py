"""Minimal demo views; the storefront work replaces these with the full shop."""

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from demo_shop.catalog.models import Category, Product


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "catalog/home.html", {"products": Product.objects.all()[:24]})


def category(request: HttpRequest, slug: str) -> HttpResponse:
    cat = get_object_or_404(Category, slug=slug)
    return render(request, "catalog/category.html", {"category": cat,
                                                     "products": cat.products.all()})


def product(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "catalog/product.html", {"product": get_object_or_404(Product, pk=pk)})


def product_image(request: HttpRequest, pk: int) -> HttpResponse:
    p = get_object_or_404(Product, pk=pk)
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="240" height="180" viewBox="0 0 240 180">'
        f'<rect width="240" height="180" fill="{p.image_color}"/></svg>'
    )
    return HttpResponse(svg, content_type="image/svg+xml")


login_view = auth_views.LoginView.as_view(template_name="catalog/login.html")
