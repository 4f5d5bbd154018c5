"""OscarAdapter sees the catalogue as Oscar's storefront does."""

from __future__ import annotations

from decimal import Decimal

import pytest
from oscar.apps.catalogue.categories import create_from_breadcrumbs
from oscar.apps.partner.strategy import Default
from oscar.core.loading import get_model
from oscar.test import factories

from shopreco.adapter import get_adapter
from shopreco.contrib.oscar.adapter import OscarAdapter

pytestmark = pytest.mark.django_db
Product = get_model("catalogue", "Product")


def available(*products):
    pks = {p.pk for p in products}
    return {p.pk for p in get_adapter().available() if p.pk in pks}


def test_installing_the_app_is_enough_to_get_the_adapter():
    assert isinstance(get_adapter(), OscarAdapter)


def test_only_what_a_shopper_can_buy_is_available(make_product):
    in_stock = make_product(stock=3)
    sold_out = make_product(stock=0)
    no_record = make_product(stock=None)
    hidden = make_product(is_public=False)
    allocated = make_product(stock=2)
    allocated.stockrecords.update(num_allocated=2)
    untracked = make_product(stock=0, product_class="Downloads")
    untracked.product_class.track_stock = False
    untracked.product_class.save()
    assert available(in_stock, sold_out, no_record, hidden, allocated, untracked) == {
        in_stock.pk, untracked.pk}


def test_a_parent_is_available_through_a_public_child_and_children_never(make_product):
    parent = make_product(structure="parent")
    child = make_product(parent=parent, stock=1)
    empty_parent = make_product(structure="parent")
    make_product(parent=empty_parent, stock=0)
    hidden_parent = make_product(structure="parent")
    make_product(parent=hidden_parent, stock=5, is_public=False)
    assert available(parent, child, empty_parent, hidden_parent) == {parent.pk}
    # The same answer as Oscar's own strategy, product by product.
    strategy = get_adapter().strategy()
    for product in (parent, empty_parent, hidden_parent):
        info = strategy.fetch_for_parent(Product.objects.get(pk=product.pk))
        assert info.availability.is_available_to_buy == (product.pk in available(product))


def test_price_through_oscars_strategy(make_product):
    plain = make_product(price="12.50")
    parent = make_product(structure="parent")
    make_product(parent=parent, price="7.00")
    make_product(parent=parent, price="9.00")
    adapter = get_adapter()
    loaded = {p.pk: p for p in adapter.available()}
    assert adapter.get_price(loaded[plain.pk]) == Decimal("12.50")
    # A parent: what Oscar's own strategy says (the price of its first public child in
    # Oscar's order), from the prefetched children as from a product loaded elsewhere.
    oscars = Default().fetch_for_parent(Product.objects.get(pk=parent.pk)).price.incl_tax
    assert oscars in (Decimal("7.00"), Decimal("9.00"))
    assert adapter.get_price(loaded[parent.pk]) == oscars
    assert adapter.get_price(Product.objects.get(pk=parent.pk)) == oscars
    assert adapter.get_price(make_product(stock=None)) is None


def test_name_url_image_and_category(make_product):
    fiction, books = create_from_breadcrumbs("Fiction"), create_from_breadcrumbs("Books")
    product = make_product("A novel")
    product.categories.add(fiction, books)
    factories.create_product_image(product, original="images/products/novel.jpg")
    adapter = get_adapter()
    loaded = adapter.available().get(pk=product.pk)
    assert adapter.get_name(loaded) == "A novel"
    assert adapter.get_url(loaded) == product.get_absolute_url()
    assert adapter.get_image(loaded).endswith("images/products/novel.jpg")
    assert adapter.get_image(Product.objects.get(pk=product.pk)).endswith(
        "images/products/novel.jpg")
    assert adapter.get_image(make_product()).endswith("oscar/img/image_not_found.jpg")
    assert adapter.get_category(loaded) == fiction  # the first, in Oscar's order
