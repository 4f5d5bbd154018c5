"""``{% load shopreco %}``: recommendation widgets for the host's templates.

Each widget tag calls the serving layer (:mod:`shopreco.serving`) and renders an overridable
template under ``shopreco/widgets/`` (pass ``template="..."`` to use another one), like
django-star-ratings' inclusion tags. The tags need the request in the context (page de-dup,
the shopper, the session), so they fail loudly when the request context processor is missing.
"""

from __future__ import annotations

import logging
from typing import Any

from django import template
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import get_language

from shopreco import serving, tracking
from shopreco.adapter import get_adapter
from shopreco.models import new_recommendation_id
from shopreco.serving.ranking import host_order

register = template.Library()
logger = logging.getLogger("shopreco.templatetags")



def _request(context: template.Context) -> Any:
    request = context.get("request")
    if request is None:
        raise ImproperlyConfigured(
            "shopreco template tags need the request in the template context: add "
            "'django.template.context_processors.request' to TEMPLATES[...]['OPTIONS']"
            "['context_processors'] (or render with a RequestContext)."
        )
    return request


def _with_rec(url: str, rec_id: str) -> str:
    if not url:
        return url
    return f"{url}{'&' if '?' in url else '?'}rec={rec_id}"


def _click_url() -> str:
    try:
        return reverse("shopreco:click")
    except NoReverseMatch:
        return ""


def _render(context: template.Context, reco: serving.RecoList, template_name: str | None,
            title: str | None) -> SafeString:
    adapter = get_adapter()
    items = [
        {
            "product": item.product,
            "pk": item.pk,
            "name": adapter.get_name(item.product),
            "url": _with_rec(adapter.get_url(item.product), reco.recommendation_id),
            "image": adapter.get_image(item.product),
            "price": adapter.get_price(item.product),
            "reason": item.reason,
            "reason_kind": item.reason_kind,
            "source": item.source,
            "score": item.score,
        }
        for item in reco.items
    ]
    name = template_name or serving.LIST_KINDS[reco.widget].template
    tpl = context.template.engine.get_template(name)
    values = {
        "reco": reco,
        "items": items,
        "title": title,
        "widget": reco.widget,
        "recommendation_id": reco.recommendation_id,
        "click_url": _click_url(),
    }
    with context.push(values):
        return tpl.render(context)


def _widget(context: template.Context, widget: str, template_name: str | None,
            title: str | None, **kwargs: Any) -> SafeString:
    """Render one widget through the serving layer, which caches the HTML per served list
    (re-checking availability on every render). A database failure renders an empty widget:
    a recommendation widget must never take the host's page down with it (the error is
    logged)."""
    request = _request(context)
    name = template_name or serving.LIST_KINDS[widget].template
    variant = f"{name}|{title}|{get_language()}"
    try:
        return serving.widget_html(
            widget, lambda reco: _render(context, reco, template_name, title),
            variant=variant, request=request, **kwargs)
    except DatabaseError:
        logger.exception("shopreco widget %r: database error, rendered empty", widget)
        if not serving.LIST_KINDS[widget].padded:
            return format_html("{}", "")  # no box (also-bought is never padded)
        reco = serving.RecoList(widget=widget, recommendation_id=new_recommendation_id(),
                                items=[], source="unavailable")
        return _render(context, reco, template_name, title)


@register.simple_tag(takes_context=True)
def similar_products(context: template.Context, product: Any, limit: Any = None,
                     template: str | None = None, category: Any = None,
                     title: str | None = None) -> SafeString:
    """"You may also like" for ``product``."""
    if product is None:
        raise ValueError("product: a product is required.")
    return _widget(context, "similar", template, title, product=product, limit=limit,
                   category=category)


@register.simple_tag(takes_context=True)
def also_bought(context: template.Context, product: Any, limit: Any = None,
                template: str | None = None, title: str | None = None) -> SafeString:
    """"Customers who bought this also bought" for ``product``."""
    if product is None:
        raise ValueError("product: a product is required.")
    return _widget(context, "also-bought", template, title, product=product, limit=limit)


@register.simple_tag(takes_context=True)
def recommended_for_you(context: template.Context, limit: Any = None,
                        template: str | None = None, category: Any = None,
                        title: str | None = None) -> SafeString:
    """The shopper's personal list (popular for guests without history)."""
    return _widget(context, "for-you", template, title, limit=limit, category=category)


@register.simple_tag(takes_context=True)
def popular_products(context: template.Context, limit: Any = None, template: str | None = None,
                     category: Any = None, title: str | None = None) -> SafeString:
    """Popular and trending products, optionally in one category."""
    return _widget(context, "popular", template, title, limit=limit, category=category)


@register.simple_tag(takes_context=True)
def shopreco_widget(context: template.Context, kind: str, product: Any = None,
                    limit: Any = None, template: str | None = None, category: Any = None,
                    title: str | None = None) -> SafeString:
    """Any list kind by its name in ``shopreco.serving.LIST_KINDS``, a host's own included:
    ``{% shopreco_widget "similar" product=product limit=4 %}``."""
    if kind not in serving.LIST_KINDS:
        raise ValueError(f"kind: one of {', '.join(serving.LIST_KINDS)}.")
    if serving.LIST_KINDS[kind].needs_product and product is None:
        raise ValueError("product: a product is required.")
    return _widget(context, kind, template, title, product=product, limit=limit,
                   category=category)


@register.simple_tag(takes_context=True)
def shopreco_rank(context: template.Context, products: Any, limit: Any = None,
                  blend: Any = 0.5) -> Any:
    """The host's ``products`` in the shopper's order:
    ``{% shopreco_rank page_products as ranked %}{% for item in ranked.items %}``
    (``item.product``, ``item.url`` with the listing's id, ``item.reason``). A database
    failure keeps the host's order (logged)."""
    request = _request(context)
    try:
        return serving.rank(products, request, limit=limit, blend=blend)
    except DatabaseError:
        logger.exception("shopreco_rank: database error, the host's order kept")
        return host_order(products, limit)


@register.simple_tag(takes_context=True)
def shopreco_track_view(context: template.Context, product: Any) -> str:
    """Declare that this page shows ``product`` (records a view; see ShopRecoMiddleware)."""
    tracking.mark_viewed(_request(context), product)
    return ""


@register.simple_tag
def shopreco_click_script() -> SafeString:
    """The optional click recorder script tag."""
    return format_html('<script src="{}" defer></script>', static("shopreco/clicks.js"))


@register.simple_tag
def shopreco_stylesheet() -> SafeString:
    """Minimal default widget styles (hosts may use their own instead)."""
    return format_html('<link rel="stylesheet" href="{}">', static("shopreco/widgets.css"))
