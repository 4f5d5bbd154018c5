"""How shopreco sees the host's products, swappable by the ``SHOPRECO["ADAPTER"]`` setting.

Every shop models products differently; rather than a dozen settings, the host subclasses
:class:`DefaultAdapter` (allauth's adapter pattern) and overrides what differs.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db.models import Model, QuerySet

from shopreco.conf import get_product_model, reco_settings


@functools.cache
def _has_field(model: type[Model], name: str) -> bool:
    return any(f.name == name for f in model._meta.get_fields())


class DefaultAdapter:
    """Works with any model; uses ``is_active``, ``in_stock``, ``category``, ``price``,
    ``name``/``title``, ``image`` and ``get_absolute_url`` when the model has them."""

    def available(self, queryset: QuerySet | None = None) -> QuerySet:
        """Products that may be shown to shoppers right now."""
        model = get_product_model()
        qs = model._default_manager.all() if queryset is None else queryset
        if _has_field(model, "is_active"):
            qs = qs.filter(is_active=True)
        if _has_field(model, "in_stock"):
            qs = qs.filter(in_stock=True)
        return qs

    def is_available(self, product: Model) -> bool:
        """Deprecated: shopreco never calls it (availability is decided in the database by
        :meth:`available`), so overriding it changed nothing."""
        warnings.warn(
            "DefaultAdapter.is_available() is deprecated and will be removed; shopreco decides "
            "availability with available(queryset): override that, or test one product with "
            "adapter.available(Model.objects.filter(pk=product.pk)).exists().",
            DeprecationWarning,
            stacklevel=2,
        )
        return all(getattr(product, f, True) for f in ("is_active", "in_stock"))

    def category_field(self) -> str | None:
        """Name of the product field holding its category, for category filters."""
        return "category" if _has_field(get_product_model(), "category") else None

    def get_category(self, product: Model) -> Any:
        """The product's category (None without a category field), as the API reports it."""
        field = self.category_field()
        return getattr(product, field) if field else None

    def created_field(self) -> str | None:
        """Name of the product's creation timestamp, so new products get exposure in popular
        lists before anyone interacted with them (None: no such field)."""
        model = get_product_model()
        for name in ("created_at", "created", "date_added"):
            if _has_field(model, name):
                return name
        return None

    def get_name(self, product: Model) -> str:
        """What shoppers see as the product's name, in widgets, explanations and the API."""
        for attr in ("name", "title"):
            value = getattr(product, attr, None)
            if value:
                return str(value)
        return str(product)

    def get_url(self, product: Model) -> str:
        """Where a recommendation links to ("" when the model has no ``get_absolute_url``)."""
        get_url = getattr(product, "get_absolute_url", None)
        return get_url() if callable(get_url) else ""

    def get_image(self, product: Model) -> str:
        """An image URL for widgets and the API; "" rather than an error when there is none."""
        image = getattr(product, "image_url", None) or getattr(product, "image", None)
        if hasattr(image, "url"):
            try:
                return image.url
            except ValueError:  # FieldFile without a file
                return ""
        return str(image or "")

    def cart_products(self, request: Any) -> Iterable[Any] | None:
        """Primary keys of the products in this shopper's cart, left out of their lists (a
        shopper about to buy something needs no recommendation of it). ``None``, the default,
        means: the products they added to the cart in the last day and have not bought
        (bought ones are left out anyway), read from their cart events in the list's own
        query. A host whose cart lives in the session returns its keys here instead."""
        return None

    def get_price(self, product: Model) -> Decimal | None:
        """The price shown beside a recommendation, and used by revenue attribution."""
        return getattr(product, "price", None)


def get_adapter() -> DefaultAdapter:
    """The adapter instance chosen by settings."""
    return reco_settings.ADAPTER()
