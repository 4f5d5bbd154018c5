"""The fresh project's product page (``shop/views.py``): the README's template snippet in
``shop/templates/shop/product.html``, and a purchase that calls ``shopreco.track``."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from shop.models import Product

import shopreco


def product(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Product, pk=pk)
    return render(request, "shop/product.html", {"product": item, "category": item.category})


@require_POST
def buy(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Product, pk=pk)
    shopreco.track(request, item, "purchase")
    return redirect(item.get_absolute_url())
