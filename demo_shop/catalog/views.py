"""The demo shop's pages. It uses only shopreco's public surface: template tags, settings,
``shopreco.track`` for carts and purchases, and ``shopreco.privacy`` for the opt-out."""

from __future__ import annotations

import colorsys
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Avg, Case, Count, IntegerField, Q, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.http import require_POST

import shopreco
from demo_shop.catalog.forms import (
    DEMO_CUSTOMER_PREFIX,
    AddToCartForm,
    CartUpdateForm,
    DemoLoginForm,
    RatingForm,
)
from demo_shop.catalog.models import Category, Product
from shopreco import privacy
from shopreco.models import Rating

DEMO_CUSTOMERS_SHOWN = 6


def _cart(request: HttpRequest) -> dict[str, int]:
    cart = request.session.get("cart")
    return dict(cart) if isinstance(cart, dict) else {}


def _cart_lines(request: HttpRequest) -> tuple[list[dict], Decimal]:
    cart = _cart(request)
    products = Product.objects.filter(pk__in=[int(k) for k in cart]).select_related("category")
    lines = [{"product": p, "quantity": cart[str(p.pk)], "total": p.price * cart[str(p.pk)]}
             for p in products]
    return lines, sum((line["total"] for line in lines), Decimal("0.00"))


def home(request: HttpRequest) -> HttpResponse:
    categories = Category.objects.annotate(n=Count("products")).filter(n__gt=0)
    return render(request, "catalog/home.html", {"categories": categories})


PAGE_SIZE = 24


def _sorted(request: HttpRequest, qs, default: str, blend: float):
    """The listing in the chosen order: the page's own sorts, or "for-you", the shop's
    order (``default``) blended with the shopper's taste by ``shopreco.rank``, before
    pagination. Returns (listing, sort, recommendation id for the product links)."""
    sort = request.GET.get("sort", default)
    if sort == "price":
        return qs.order_by("price", "name"), sort, ""
    if sort == "-price":
        return qs.order_by("-price", "name"), sort, ""
    if sort == "for-you":
        ranked = shopreco.rank(qs, request, blend=blend)
        return ranked, sort, ranked.recommendation_id
    return qs, default, ""


def category(request: HttpRequest, slug: str) -> HttpResponse:
    cat = get_object_or_404(Category, slug=slug)
    qs = cat.products.filter(is_active=True).select_related("category").order_by("name")
    # Alphabetical order says nothing about what a shopper wants: purely personal.
    listing, sort, rec = _sorted(request, qs, "name", blend=1.0)
    page = Paginator(listing, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "catalog/category.html",
                  {"category": cat, "page": page, "sort": sort, "rec": rec})


def search(request: HttpRequest) -> HttpResponse:
    """Products whose name or category matches every word of ``q``: names that start with
    the query first, then by name; "Sorted for you" blends that order with the shopper's
    taste."""
    q = " ".join(request.GET.get("q", "").split())[:100]
    qs = Product.objects.none()
    if q:
        qs = Product.objects.filter(is_active=True).select_related("category")
        for word in q.split():
            qs = qs.filter(Q(name__icontains=word) | Q(category__name__icontains=word))
        qs = qs.annotate(starts=Case(When(name__istartswith=q, then=Value(0)), default=Value(1),
                                     output_field=IntegerField())).order_by("starts", "name")
    # The query's order matters: half of it stays (shopreco's default blend).
    listing, sort, rec = _sorted(request, qs, "relevance", blend=0.5)
    page = Paginator(listing, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "catalog/search.html",
                  {"q": q, "page": page, "sort": sort, "rec": rec})


def product(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Product.objects.select_related("category"), pk=pk, is_active=True)
    stats = Rating.objects.filter(product=item).aggregate(avg=Avg("score"), n=Count("id"))
    mine = None
    if request.user.is_authenticated:
        mine = Rating.objects.filter(product=item, user=request.user).values_list(
            "score", flat=True).first()
    return render(request, "catalog/product.html", {
        "product": item,
        "rating_avg": stats["avg"],
        "rating_count": stats["n"],
        "my_rating": int(mine) if mine is not None else None,
        "rating_form": RatingForm(initial={"score": int(mine) if mine else None}),
        "cart_form": AddToCartForm(initial={"rec": request.GET.get("rec", "")}),
    })


@require_POST
def rate(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Product, pk=pk, is_active=True)
    if not request.user.is_authenticated:
        messages.info(request, "Sign in to rate products.")
        return redirect(f"{reverse('catalog:login')}?next={item.get_absolute_url()}")
    form = RatingForm(request.POST)
    if form.is_valid():
        Rating.objects.update_or_create(user=request.user, product=item,
                                        defaults={"score": form.cleaned_data["score"]})
        messages.success(request, f"Thanks! You rated {item.name} "
                                  f"{form.cleaned_data['score']} of 5.")
    else:
        messages.error(request, "Choose between 1 and 5 stars.")
    return redirect(item)


@require_POST
def cart_add(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Product, pk=pk, is_active=True)
    form = AddToCartForm(request.POST)
    if not item.in_stock:
        messages.error(request, f"{item.name} is out of stock.")
        return redirect(item)
    if not form.is_valid():
        messages.error(request, "Quantity must be between 1 and 20.")
        return redirect(item)
    cart = _cart(request)
    cart[str(item.pk)] = min(cart.get(str(item.pk), 0) + form.cleaned_data["quantity"], 20)
    request.session["cart"] = cart
    shopreco.track(request, item, "cart", recommendation_id=form.cleaned_data["rec"] or None)
    messages.success(request, f"Added {item.name} to your cart.")
    return redirect("catalog:cart")


def cart(request: HttpRequest) -> HttpResponse:
    lines, total = _cart_lines(request)
    return render(request, "catalog/cart.html", {"lines": lines, "total": total})


@require_POST
def cart_update(request: HttpRequest) -> HttpResponse:
    form = CartUpdateForm(request.POST)
    if form.is_valid():
        cart = _cart(request)
        key = str(form.cleaned_data["product"])
        if form.cleaned_data["quantity"] == 0:
            cart.pop(key, None)
        elif key in cart:
            cart[key] = form.cleaned_data["quantity"]
        request.session["cart"] = cart
    else:
        messages.error(request, "Quantity must be between 0 and 20.")
    return redirect("catalog:cart")


def checkout(request: HttpRequest) -> HttpResponse:
    lines, total = _cart_lines(request)
    if request.method == "POST":
        if not lines:
            messages.error(request, "Your cart is empty.")
            return redirect("catalog:cart")
        for line in lines:
            # One purchase event per product; the recommendation that led to it (remembered
            # in the session when the shopper clicked it) is credited by shopreco.track.
            shopreco.track(request, line["product"], "purchase")
        request.session["cart"] = {}
        request.session["last_order"] = {
            "items": [[line["product"].pk, line["quantity"]] for line in lines],
            "total": str(total),
        }
        return redirect("catalog:order-complete")
    return render(request, "catalog/checkout.html", {"lines": lines, "total": total})


def order_complete(request: HttpRequest) -> HttpResponse:
    order = request.session.get("last_order")
    if not order:
        return redirect("catalog:home")
    products = Product.objects.in_bulk([pk for pk, _ in order["items"]])
    lines = [{"product": products[pk], "quantity": q} for pk, q in order["items"]
             if pk in products]
    return render(request, "catalog/order_complete.html",
                  {"lines": lines, "total": order["total"]})


class LoginView(auth_views.LoginView):
    """Password sign-in plus a one-click switcher between seeded demo customers."""

    template_name = "catalog/login.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["demo_customers"] = (
            get_user_model()
            ._default_manager.filter(username__startswith=DEMO_CUSTOMER_PREFIX, is_staff=False,
                                     is_active=True)
            .order_by("username")[:DEMO_CUSTOMERS_SHOWN]
        )
        return ctx


login_view = LoginView.as_view()
logout_view = auth_views.LogoutView.as_view()


@require_POST
def demo_login(request: HttpRequest) -> HttpResponse:
    form = DemoLoginForm(request.POST)
    if not form.is_valid():
        messages.error(request, form.errors["username"][0])
        return redirect("catalog:login")
    login(request, form.user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, f"Signed in as {form.user.get_full_name() or form.user.username}.")
    next_url = request.POST.get("next") or ""
    if next_url.startswith("/") and not next_url.startswith("//"):
        return redirect(next_url)
    return redirect("catalog:home")


@login_required
def account(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        personalize = request.POST.get("personalize") == "on"
        privacy.set_preferences(request.user, personalize)
        messages.success(request, "Personalised recommendations are now "
                                  f"{'on' if personalize else 'off'}.")
        return redirect("catalog:account")
    ratings = (Rating.objects.filter(user=request.user).select_related("product")
               .order_by("-updated_at")[:12])
    return render(request, "catalog/account.html", {
        "prefs": privacy.get_preferences(request.user), "ratings": ratings,
    })


def product_image(request: HttpRequest, pk: int) -> HttpResponse:
    """A placeholder "photo": a soft gradient tile with the product's initials."""
    p = get_object_or_404(Product.objects.select_related("category"), pk=pk)
    colour = p.image_color if len(p.image_color) == 7 and p.image_color[0] == "#" else "#8899aa"
    try:
        r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    except ValueError:
        r, g, b = 0.53, 0.6, 0.67
    h, lum, s = colorsys.rgb_to_hls(r, g, b)
    def hexed(lightness: float) -> str:
        return "#" + "".join(f"{int(c * 255):02x}" for c in colorsys.hls_to_rgb(h, lightness, s))

    light, dark = hexed(min(lum + 0.22, 0.92)), hexed(max(lum - 0.12, 0.12))
    initials = escape("".join(w[0] for w in p.name.split()[:2]).upper() or "?")
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="480" height="360" viewBox="0 0 480 360">'
        f'<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" '
        f'stop-color="{light}"/><stop offset="1" stop-color="{dark}"/></linearGradient></defs>'
        '<rect width="480" height="360" fill="url(#g)"/>'
        '<circle cx="400" cy="70" r="120" fill="#fff" fill-opacity="0.12"/>'
        '<circle cx="60" cy="330" r="90" fill="#000" fill-opacity="0.06"/>'
        '<text x="240" y="205" text-anchor="middle" font-family="Georgia, serif" '
        f'font-size="96" fill="#fff" fill-opacity="0.92">{initials}</text>'
        '<text x="240" y="258" text-anchor="middle" font-family="Helvetica, Arial, sans-serif" '
        f'font-size="20" letter-spacing="3" fill="#fff" fill-opacity="0.8">'
        f'{escape(p.category.name.upper())}</text></svg>'
    )
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=3600"
    return response
