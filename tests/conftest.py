"""Shared fixtures: small factories over the demo catalogue (the test project's product model)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from decimal import Decimal

import pytest

_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def _clear_caches():
    """Serving caches and throttle counters must not leak between tests (run ids restart with
    every test database, so a stale cached list could look current)."""
    from django.core.cache import caches

    for cache in caches.all():
        cache.clear()
    yield
    for cache in caches.all():
        cache.clear()


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



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (CI=true) the services and the browser are always there: a skip of an integration
    or browser test would hide a failure, so it is reported as one."""
    outcome = yield
    report = outcome.get_result()
    needs_service = any(True for m in ("integration", "browser") for _ in item.iter_markers(m))
    if report.skipped and needs_service and os.environ.get("CI") == "true":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every service must be present: {reason}"


@pytest.fixture
def make_request(rf):
    """A GET request with a real session and the given user."""
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore

    def make(user=None, path="/", headers=None, **get):
        request = rf.get(path, get, headers=headers or {})
        request.user = user or AnonymousUser()
        request.session = SessionStore()
        return request

    return make
