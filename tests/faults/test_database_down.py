"""Fault: the database becomes unreachable while a page with recommendation widgets renders.

The connection is really cut (pointed at a closed port on PostgreSQL, at a missing file on
SQLite) after the page was served once; the widgets must then render empty (or from cache),
the page must answer 200, and the error must be logged."""

from __future__ import annotations

import contextlib
import logging
import re
import socket

import pytest
from django.db import connection
from django.test import override_settings

from shopreco import pipeline
from shopreco.models import Interaction, Rating
from tests.faults import urls as fault_urls

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WIDGETS = ("similar", "also-bought", "for-you", "popular")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@contextlib.contextmanager
def database_unreachable():
    """Make every new connection of ``default`` fail for real, then restore it."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))
        connection.settings_dict.setdefault("OPTIONS", {})
        connection.settings_dict["OPTIONS"] = {**saved.get("OPTIONS", {}), "connect_timeout": 2}
    elif connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-shopreco-fault/db.sqlite3"
    else:  # pragma: no cover
        pytest.skip(f"no way to cut a {connection.vendor} connection in this test")
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def widget_items(html: str) -> dict[str, list[str]]:
    """widget name -> product pks listed in it, from the markup contract."""
    out = {}
    for match in re.finditer(r'<section[^>]*data-shopreco-widget="([^"]+)"(.*?)</section>',
                             html, re.S):
        out[match.group(1)] = re.findall(r'data-shopreco-product="([^"]+)"', match.group(2))
    return out


@pytest.fixture
def shop_page(user_factory, product_factory):
    products = [product_factory() for _ in range(24)]
    for u in range(4):
        user = user_factory()
        for j in range(5):
            Rating.objects.create(user=user, product=products[(u + j) % 8], score=1 + (u * j) % 5)
            Interaction.objects.create(user=user, product=products[(u + 2 * j) % 8],
                                       kind="purchase")
    run = pipeline.run_full_recompute()
    assert run.status == "succeeded", run.error
    fault_urls.STATE.clear()
    fault_urls.STATE["product"] = products[0]
    yield products
    fault_urls.STATE.clear()


@override_settings(ROOT_URLCONF="tests.faults.urls")
def test_page_renders_with_empty_or_cached_widgets_when_the_database_is_down(
    client, shop_page, caplog
):
    before = client.get("/page/")
    assert before.status_code == 200
    shown_before = widget_items(before.content.decode())
    assert set(shown_before) == set(WIDGETS)
    assert shown_before["similar"] and shown_before["popular"]  # the widgets work normally

    caplog.set_level(logging.ERROR, logger="shopreco")
    with database_unreachable():
        with pytest.raises(Exception):  # noqa: B017 - proves the database is really gone
            connection.ensure_connection()
        during = client.get("/page/")

    assert during.status_code == 200
    html = during.content.decode()
    assert 'id="end"' in html and shop_page[0].name in html  # the rest of the page is there
    shown = widget_items(html)
    assert set(shown) == set(WIDGETS)  # every widget still renders its root element
    for widget in WIDGETS:
        assert shown[widget] in ([], shown_before[widget]), widget
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR
              and r.name.startswith("shopreco")]
    assert errors, "the database error must be logged"
    assert any(r.exc_info for r in errors)

    after = client.get("/page/")  # and everything is back once the database is
    assert after.status_code == 200
    assert widget_items(after.content.decode())["similar"]
