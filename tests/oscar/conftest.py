"""The Oscar shop's tests need their own settings (Oscar's apps, its product model), so the
main run must not import them: tests/test_oscar.py runs them in a subprocess with
DJANGO_SETTINGS_MODULE=tests.oscar.settings."""

import os

if os.environ.get("DJANGO_SETTINGS_MODULE") != "tests.oscar.settings":
    collect_ignore_glob = ["*"]


import itertools  # noqa: E402
from decimal import Decimal  # noqa: E402

import pytest  # noqa: E402

_seq = itertools.count(1)


@pytest.fixture
def make_product(db):
    """An Oscar product: standalone with a stock record (``stock=None``: no stock record),
    or a parent (``parent=True``) or child (``parent=<product>``)."""
    from oscar.test import factories

    def make(title: str | None = None, *, stock: int | None = 10, price: str = "10.00",
             parent=None, structure: str | None = None, **fields):
        n = next(_seq)
        title = title or f"Product {n}"
        if parent is not None:  # a child: no product class of its own (its parent's)
            product = type(parent).objects.create(parent=parent, structure="child",
                                                  title=title, upc=f"upc-{n}", **fields)
        else:
            if structure is not None:
                fields["structure"] = structure
            product = factories.create_product(title=title, upc=f"upc-{n}", **fields)
        if stock is not None and structure != "parent":
            factories.create_stockrecord(product, price=Decimal(price), num_in_stock=stock)
        return product

    return make


@pytest.fixture
def make_user(db, django_user_model):
    def make(name: str | None = None):
        name = name or f"shopper{next(_seq)}"
        return django_user_model.objects.create_user(
            username=name, email=f"{name}@example.com", password="pw")

    return make


@pytest.fixture
def place_order():
    """An order placed through Oscar's OrderCreator (which sends ``order_placed``)."""
    from oscar.apps.basket.models import Basket
    from oscar.apps.partner.strategy import Default
    from oscar.test import factories

    def place(user, products):
        basket = Basket.objects.create(owner=user)
        basket.strategy = Default()
        for product in products:
            basket.add_product(product)
        return factories.create_order(user=user, basket=basket)

    return place
