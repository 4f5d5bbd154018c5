"""Shared fixtures: small factories over the demo catalogue (the test project's product model)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal

import pytest

_seq = itertools.count(1)


@pytest.fixture
def category_factory(db) -> Callable:
    from demo_shop.catalog.models import Category

    def make(name: str | None = None) -> Category:
        n = next(_seq)
        name = name or f"Category {n}"
        return Category.objects.create(name=name, slug=f"cat-{n}")

    return make


@pytest.fixture
def product_factory(db, category_factory) -> Callable:
    from demo_shop.catalog.models import Product

    default_category = {}

    def make(name: str | None = None, category=None, **fields) -> Product:
        if category is None:
            if "c" not in default_category:
                default_category["c"] = category_factory("Default")
            category = default_category["c"]
        n = next(_seq)
        fields.setdefault("price", Decimal("9.99"))
        return Product.objects.create(name=name or f"Product {n}", category=category, **fields)

    return make


@pytest.fixture
def user_factory(db, django_user_model) -> Callable:
    def make(username: str | None = None, **fields):
        username = username or f"user{next(_seq)}"
        return django_user_model.objects.create_user(username=username, password="pw", **fields)

    return make
