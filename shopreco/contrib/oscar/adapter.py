"""How shopreco sees an Oscar catalogue: as Oscar's storefront does.

- Only what a shopper can buy is recommended: public products, never a child product on its
  own (a variant is counted and recommended as its parent), and only products Oscar's stock
  rule calls available: a stock record, with stock left where the product class tracks it;
  a parent when one of its public children is. That is Oscar's ``StockRequired`` policy,
  written in SQL because serving filters candidates in the database; a shop whose strategy
  decides availability otherwise overrides :meth:`OscarAdapter.stock_filter`.
- Price through Oscar's strategy (``partner.strategy.Selector``, so a forked selector is
  used): the tax-inclusive price when the strategy knows the tax, else the price before tax.
- Image from the primary image, name from ``get_title()``, category from the product's first
  category.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

from django.db.models import (
    Exists,
    F,
    Model,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.templatetags.static import static

from shopreco.adapter import DefaultAdapter
from shopreco.conf import get_product_model


def canonical(product: Any) -> Any:
    """The product shopreco records and recommends for ``product``: its parent for a child
    (variants share their parent's page, and one row per variant would split its evidence),
    the product itself otherwise; None for None."""
    if product is None:
        return None
    if getattr(product, "parent_id", None) is not None:
        return product.parent
    return product


def canonical_pk(product: Any) -> Any:
    """:func:`canonical`'s key, without loading the parent."""
    if product is None:
        return None
    return product.parent_id if getattr(product, "parent_id", None) is not None else product.pk


@functools.cache
def _strategy_selector() -> Any:
    from oscar.core.loading import get_class

    return get_class("partner.strategy", "Selector")


class OscarAdapter(DefaultAdapter):
    """The adapter of ``shopreco.contrib.oscar`` (the default once the app is installed)."""

    def stock_filter(self, children: bool = False) -> Q:
        """Oscar's ``StockRequired`` rule on the product (``children``: on any of its public
        children, the rule for a parent): a stock record, with stock left (in stock minus
        allocated) unless the product class does not track stock. Override it when the
        shop's strategy decides availability otherwise."""
        from oscar.core.loading import get_model

        StockRecord = get_model("partner", "StockRecord")
        link = ({"product__parent": OuterRef("pk"), "product__is_public": True} if children
                else {"product": OuterRef("pk")})
        records = StockRecord.objects.filter(**link)
        in_stock = records.annotate(
            _net=F("num_in_stock") - Coalesce(F("num_allocated"), Value(0))).filter(_net__gt=0)
        # A child's product class is its parent's: the outer product's in both cases.
        return Q(Exists(records), product_class__track_stock=False) | Q(Exists(in_stock))

    def available(self, queryset: QuerySet | None = None) -> QuerySet:
        """Public standalone products and public parents that Oscar's stock rule calls
        available (a parent through a public child), with what the widgets read prefetched
        (stock records for the price, images, categories)."""
        model = get_product_model()
        qs = model._default_manager.all() if queryset is None else queryset
        qs = qs.filter(is_public=True).filter(
            Q(structure=model.STANDALONE) & self.stock_filter()
            | Q(structure=model.PARENT) & self.stock_filter(children=True)
        )
        return qs.select_related("product_class").annotate(
            _shopreco_image=self._first_image()).prefetch_related(
            "stockrecords",
            Prefetch("children", queryset=model._default_manager.filter(is_public=True)
                     .prefetch_related("stockrecords"), to_attr="_shopreco_children"),
        )

    def _first_image(self) -> Subquery:
        """The primary image's file (Oscar's first by display order), read with the product:
        no query per product for widget images."""
        ProductImage = get_product_model().images.rel.related_model
        return Subquery(ProductImage.objects.filter(product=OuterRef("pk"))
                        .order_by("display_order", "pk").values("original")[:1])

    def created_field(self) -> str | None:
        return "date_created"

    def category_field(self) -> str | None:
        """None: Oscar's categories are many-to-many, so shopreco's single-category filters
        (a widget's ``category=``, the same-category fill) are off; the first category
        still names "Popular in <category>" reasons (:meth:`get_category`)."""
        return None

    def get_category(self, product: Model) -> Any:
        """The product's first category (its parent's for a child), as Oscar lists them."""
        return next(iter(canonical(product).categories.all()), None)

    def get_name(self, product: Model) -> str:
        return str(product.get_title() or product)

    def get_url(self, product: Model) -> str:
        return product.get_absolute_url()

    def get_image(self, product: Model) -> str:
        """The primary image's URL; Oscar's own "image not found" picture when there is
        none, as Oscar's product cards show."""
        missing = static("oscar/img/image_not_found.jpg")
        if hasattr(product, "_shopreco_image"):  # read with the product by available()
            name = product._shopreco_image
            field = type(product).images.rel.related_model._meta.get_field("original")
            return field.storage.url(name) if name else missing
        image = product.primary_image()
        if isinstance(image, dict):
            return missing
        try:
            return image.original.url
        except ValueError:  # an image row without its file
            return missing

    def strategy(self, request: Any = None) -> Any:
        """Oscar's pricing and availability strategy: the request's when there is one
        (Oscar's BasketMiddleware sets it), else the default selector's."""
        strategy = getattr(request, "strategy", None) if request is not None else None
        if strategy is None:
            strategy = _strategy_selector()().strategy(request=request)
        return strategy

    def purchase_info(self, product: Model, request: Any = None) -> Any:
        """Oscar's ``PurchaseInfo`` (price, availability, stock record) of ``product``."""
        strategy = self.strategy(request)
        if product.is_parent:
            children = getattr(product, "_shopreco_children", None)
            if children is not None:
                # Oscar's parent policies read the public children's first stock records;
                # the prefetched ones spare a query per child.
                stock = [(c, next(iter(c.stockrecords.all()), None)) for c in children]
                return _parent_info(strategy, product, stock)
            return strategy.fetch_for_parent(product)
        return strategy.fetch_for_product(product)

    def get_price(self, product: Model) -> Decimal | None:
        """The price Oscar shows: tax-inclusive when the strategy knows the tax."""
        price = self.purchase_info(product).price
        if not price.exists:
            return None
        return price.incl_tax if price.is_tax_known else price.excl_tax

    def cart_products(self, request: Any) -> list[Any] | None:
        """The products in the shopper's Oscar basket (parents for variants)."""
        basket = getattr(request, "basket", None)
        if basket is None:
            return None
        try:
            lines = basket.all_lines() if basket.id else []
        except AttributeError:  # not an Oscar basket
            return None
        return [canonical_pk(line.product) for line in lines if line.product_id is not None]


def _parent_info(strategy: Any, product: Any, children_stock: list) -> Any:
    from oscar.apps.partner.strategy import PurchaseInfo

    if hasattr(strategy, "parent_pricing_policy"):  # Oscar's Structured strategies
        return PurchaseInfo(
            price=strategy.parent_pricing_policy(product, children_stock),
            availability=strategy.parent_availability_policy(product, children_stock),
            stockrecord=None,
        )
    return strategy.fetch_for_parent(product)
