"""The demo shop in a real headless Chromium: sign in with the demo switcher, rate a product,
see the widgets, click a recommendation and check the recorded view carries its id.

Needs /usr/bin/chromium and the playwright package (``scripts/install-browser.sh`` installs
both); skips with that message when they are absent. Screenshots go to screenshots/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.utils import timezone

from shopreco.models import Deployment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


@pytest.fixture
def browser_page(monkeypatch):
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed: run scripts/install-browser.sh")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright missing: run scripts/install-browser.sh")
    # Playwright's sync API runs an event loop in this thread; the ORM checks below are plain
    # blocking calls, which Django would otherwise refuse next to a running loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SHOTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20000)
        yield page
        browser.close()


@pytest.fixture
def demo_shop(category_factory, product_factory, django_user_model):
    from shopreco.models import ItemSimilarity, RecomputeRun

    cats = [category_factory(n) for n in ("Knitwear", "Coffee & Tea")]
    products = [
        product_factory(f"{name} {i}", category=cats[i % 2], image_color=colour)
        for i, (name, colour) in enumerate(
            [("Aran Wool Jumper", "#b0855a"), ("Colombian Filter Coffee", "#8a4b2a"),
             ("Cashmere Scarf", "#c9a27e"), ("Ceramic Pour-Over", "#d9c6a5"),
             ("Merino Cardigan", "#7c8a6e"), ("Loose Leaf Earl Grey", "#6b7f99"),
             ("Lambswool Beanie", "#a35d4f"), ("Espresso Beans", "#4a3022"),
             ("Fisherman Rib Sweater", "#5f7f8c"), ("Darjeeling First Flush", "#9bb07a"),
             ("Alpaca Wrap", "#b8a089"), ("Moka Pot", "#7d7d86")])
    ]
    run = RecomputeRun.objects.create(status=RecomputeRun.Status.SUCCEEDED,
                                      finished_at=timezone.now())
    Deployment.objects.create(run=run)
    ItemSimilarity.objects.bulk_create([
        ItemSimilarity(run=run, kind=kind, product=a, similar_product=b,
                       score=1.0 / (1 + abs(i - j)))
        for kind in ("similar", "also_bought")
        for i, a in enumerate(products) for j, b in enumerate(products) if a != b
    ])
    for n, first in enumerate(("Liam", "Lily", "Theo"), start=1):
        django_user_model.objects.create_user(f"customer{n:03d}", password="demo",
                                              first_name=first, last_name="Demo")
    return products


def test_sign_in_rate_click_recommendation(live_server, browser_page, demo_shop):
    from shopreco.models import Interaction, Rating

    page = browser_page
    page.goto(f"{live_server.url}/login/")
    page.click("button[data-demo-customer=customer001]")
    page.wait_for_selector("text=Welcome back, Liam")
    page.screenshot(path=str(SHOTS / "home.png"), full_page=True)

    product = demo_shop[0]
    page.goto(f"{live_server.url}/p/{product.pk}/")
    page.click("label[for=star-4]")
    page.click("text=Save rating")
    page.wait_for_selector("text=Your rating: 4 of 5")
    assert Rating.objects.get(user__username="customer001", product=product).score == 4

    similar = page.locator('[data-shopreco-widget="similar"] [data-shopreco-product]')
    also = page.locator('[data-shopreco-widget="also-bought"] [data-shopreco-product]')
    assert similar.count() == 4 and also.count() == 4
    assert page.locator('[data-shopreco-widget="similar"] .shopreco-reason').first.inner_text()
    page.screenshot(path=str(SHOTS / "product.png"), full_page=True)

    first = similar.first
    rec_id = first.get_attribute("data-shopreco-recommendation")
    target = int(first.get_attribute("data-shopreco-product"))
    first.locator("a").click()
    page.wait_for_url(f"**/p/{target}/?rec={rec_id}")
    page.wait_for_selector("h1")
    page.screenshot(path=str(SHOTS / "clicked.png"), full_page=True)

    view = Interaction.objects.get(user__username="customer001", product_id=target, kind="view")
    assert view.recommendation_id == rec_id
    assert os.path.getsize(SHOTS / "product.png") > 10_000
