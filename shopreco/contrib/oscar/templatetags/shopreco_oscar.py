"""``{% load shopreco_oscar %}``: what shopreco's lists on Oscar's pages need beyond the core
tags."""

from __future__ import annotations

from typing import Any

from django import template

from shopreco.serving.request import memo

register = template.Library()

# Oscar's product page shows this many of a product's hand-picked recommendations.
HAND_PICKED_SHOWN = 6


@register.simple_tag(takes_context=True)
def shopreco_oscar_hand_picked(context: template.Context, product: Any) -> str:
    """Oscar's hand-picked recommendations of ``product``, which its page shows first: the
    page's shopreco lists leave them out, as they leave out each other's products (their
    keys only, in one query)."""
    request = context.get("request")
    if request is not None and product is not None:
        picked = product.primary_recommendations.values_list("recommendation_id", flat=True)
        memo(request).setdefault("shown", set()).update(picked[:HAND_PICKED_SHOWN])
    return ""
