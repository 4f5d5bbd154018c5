"""Fault: the database becomes unreachable.

The connection is really cut (pointed at a closed port on PostgreSQL, at a missing file on
SQLite) after the page was served once. A page that needs no query of its own still answers
200, its widgets empty (or from cache), the error logged. The shop's own pages and the API,
which cannot answer without the database, answer a short 503 with Retry-After
(``DatabaseUnavailableMiddleware``), never a 500 page."""

from __future__ import annotations

import contextlib
import logging

import pytest
from django.db import connection
from django.test import override_settings

from shopreco import pipeline
from shopreco.models import Interaction, Rating
from tests.faults import urls as fault_urls
from tests.faults.helpers import API, closed_port, widget_items

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WIDGETS = ("similar", "also-bought", "for-you", "popular")
# Widgets that always render their box (also-bought is never padded: with nothing of its own,
# after the page's de-duplication or during an outage, it renders nothing at all).
PADDED = ("similar", "for-you", "popular")
OUTAGE_MIDDLEWARE = "shopreco.middleware.DatabaseUnavailableMiddleware"


@contextlib.contextmanager
def database_unreachable():
    """Make every new connection of ``default`` fail for real, then restore it."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(closed_port()))
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
    assert set(PADDED) <= set(shown_before) <= set(WIDGETS)
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
    assert set(PADDED) <= set(shown)  # every padded widget still renders its root element
    for widget in shown:
        assert shown[widget] in ([], shown_before.get(widget)), widget
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR
              and r.name.startswith("shopreco")]
    assert errors, "the database error must be logged"
    assert any(r.exc_info for r in errors)

    after = client.get("/page/")  # and everything is back once the database is
    assert after.status_code == 200
    assert widget_items(after.content.decode())["similar"]


@pytest.fixture
def outage_middleware(settings):
    """The demo's middleware plus the one hosts add to answer 503 during an outage."""
    if OUTAGE_MIDDLEWARE not in settings.MIDDLEWARE:
        settings.MIDDLEWARE = [OUTAGE_MIDDLEWARE, *settings.MIDDLEWARE]


def test_pages_and_api_answer_a_short_503_when_the_database_is_down(
    client, shop_page, outage_middleware, caplog
):
    product = shop_page[0]
    pages = ["/", f"/p/{product.pk}/", f"/c/{product.category.slug}/", "/cart/"]
    api = [f"{API}products/{product.pk}/similar/", f"{API}products/{product.pk}/also-bought/",
           f"{API}recommendations/", f"{API}popular/"]
    for url in pages + api:  # all fine while the database is there
        assert client.get(url).status_code == 200, url

    caplog.set_level(logging.ERROR, logger="shopreco")
    with database_unreachable():
        answers = {url: client.get(url) for url in pages + api}
        answers["POST events/"] = client.post(f"{API}events/", {
            "product": product.pk, "type": "cart"}, content_type="application/json")

    for url, response in answers.items():
        assert response.status_code == 503, (url, response.status_code)
        assert int(response["Retry-After"]) > 0, url
        assert len(response.content) < 200, url  # a line, not an error page
    for url in pages:
        assert answers[url]["Content-Type"].startswith("text/plain"), url
    for url in [*api, "POST events/"]:
        assert answers[url].json()["detail"].startswith("Service temporarily unavailable"), url
    logged = [r for r in caplog.records if r.name == "shopreco.middleware"]
    assert len(logged) == 1 and logged[0].exc_info, "the outage is logged once, with its cause"

    assert client.get(f"/p/{product.pk}/").status_code == 200  # and back once the database is
