from typing import Any

from django.http import HttpRequest

from demo_shop.catalog.models import Category


def shop(request: HttpRequest) -> dict[str, Any]:
    """Navigation data every demo page needs."""
    cart = request.session.get("cart", {}) if hasattr(request, "session") else {}
    return {
        "nav_categories": Category.objects.all(),
        "cart_count": sum(cart.values()) if isinstance(cart, dict) else 0,
    }
