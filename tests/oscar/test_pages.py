"""A recompute fills shopreco's lists on Oscar's product and basket pages, in Oscar's markup,
after Oscar's hand-picked recommendations and within a query budget; the API and the system
checks work as in any host."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from oscar.core.loading import get_model

from shopreco import pipeline
from shopreco.models import Interaction, Rating, RecomputeRun

pytestmark = pytest.mark.django_db
Product = get_model("catalogue", "Product")
ProductRecommendation = get_model("catalogue", "ProductRecommendation")


@pytest.fixture
def shop(make_product, make_user, place_order, django_capture_on_commit_callbacks):
    """Two tastes: shoppers of group A buy and like A's products, those of group B B's; a
    variant product in group A; then a full recompute."""
    group_a = [make_product(f"A{i}") for i in range(4)]
    jacket = make_product("A jacket", structure="parent")
    size_m = make_product("Jacket M", parent=jacket, price="40.00")
    group_a.append(jacket)
    in_basket = {jacket.pk: size_m}  # a basket holds the variant; shopreco counts the parent
    group_b = [make_product(f"B{i}") for i in range(5)]
    users = [make_user() for _ in range(10)]
    for i, user in enumerate(users):
        group = group_a if i < 5 else group_b
        place_order(user, [in_basket.get(p.pk, p) for j, p in enumerate(group) if j != i % 5])
        for j, product in enumerate(group):
            if j != i % 5:
                Rating.objects.create(user=user, product=product, score=5)
    with django_capture_on_commit_callbacks(execute=True):
        run = pipeline.run_full_recompute()
    assert run.status == RecomputeRun.Status.SUCCEEDED, run.error
    return {"a": group_a, "b": group_b, "users": users}


def listed(html: str, widget: str, *, shown: bool = True) -> list[int]:
    """The products of one list on the page, in order (``shown=False``: [] when the list
    is not on the page, as an also-bought list with nothing to show is not)."""
    match = re.search(rf'data-shopreco-widget="{widget}".*?</section>', html, re.S)
    if match is None and not shown:
        return []
    assert match, f"no {widget} list on the page"
    return [int(pk) for pk in re.findall(r'<li [^>]*data-shopreco-product="(\d+)"',
                                         match.group(0))]


def test_a_recompute_fills_the_lists_on_oscars_product_page(client, shop, make_user):
    page = shop["a"][0]
    hand_picked = shop["a"][1]
    ProductRecommendation.objects.create(primary=page, recommendation=hand_picked)
    client.force_login(make_user())
    html = client.get(page.get_absolute_url()).content.decode()
    group_a = {p.pk for p in shop["a"]}
    similar, also = listed(html, "similar"), listed(html, "also-bought", shown=False)
    assert similar
    # Neighbours from the page's own taste first (then the popular fill), never the page
    # itself nor the hand-picked product, which Oscar shows first.
    neighbours = group_a - {page.pk, hand_picked.pk}
    assert set(similar[:3]) == neighbours
    # the page's lists never repeat each other; also-bought is never padded with popular
    # products, so with no co-purchase left after the de-duplication it is not shown
    assert not set(also) & set(similar)
    assert not {page.pk, hand_picked.pk} & set(similar + also)
    assert html.index("Recommended items") < html.index('data-shopreco-widget="similar"')
    assert "Shoppers who liked A0 also liked this" in html
    assert 'class="product_pod"' in html and "shopreco/oscar.css" in html
    # The variant product is recommended as its parent, at Oscar's price for it.
    assert shop["a"][4].pk in similar + also
    assert "£40.00" in html


def test_a_variant_page_shows_its_parents_lists(client, shop):
    child = Product.objects.get(parent=shop["a"][4])
    html = client.get(child.get_absolute_url()).content.decode()
    assert set(listed(html, "similar")) <= {p.pk for p in shop["a"][:4]}


def test_the_basket_page_shows_the_shoppers_list_without_the_basket(client, shop):
    shopper = shop["users"][0]  # group A; did not buy A0
    client.force_login(shopper)
    client.post(reverse("basket:add", kwargs={"pk": shop["b"][0].pk}), {"quantity": 1})
    html = client.get(reverse("basket:summary")).content.decode()
    for_you = listed(html, "for-you")
    assert shop["a"][0].pk in for_you
    assert shop["b"][0].pk not in for_you


def test_the_lists_stay_within_the_query_budget(client, shop, make_user, tmp_path, settings):
    """What the two lists add to Oscar's product page (the same page with the lists' block
    emptied is the baseline; the served run is read for the page's view either way): Oscar's
    hand-picked products to leave out (1), and per list its products (1) with their stock
    records (1), their variants (1) and the variants' stock records (1, only when the list
    shows a parent), and its impression (1)."""
    page = shop["a"][0]
    client.force_login(make_user())
    (tmp_path / "oscar" / "catalogue").mkdir(parents=True)
    (tmp_path / "oscar" / "catalogue" / "detail.html").write_text(
        '{% extends "oscar/catalogue/detail.html" %}'
        "{% block shopreco_recommendations %}{% endblock %}")
    templates = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]

    def queries() -> int:
        client.get(page.get_absolute_url())  # warm: sessions, rankings, neighbour lists
        with CaptureQueriesContext(connection) as captured:
            response = client.get(page.get_absolute_url())
        assert response.status_code == 200
        return len(captured)

    with_lists = queries()
    with override_settings(TEMPLATES=templates):
        without = queries()
    assert 'data-shopreco-widget="similar"' in client.get(page.get_absolute_url()).content.decode()
    assert with_lists - without <= 1 + 2 * 5


def test_the_api_serves_oscar_products(client, shop):
    response = client.get(reverse("shopreco_api:similar", kwargs={"pk": shop["a"][0].pk}))
    assert response.status_code == 200, response.content
    items = response.json()["results"]
    assert {i["product"]["pk"] for i in items[:4]} == {p.pk for p in shop["a"][1:]}
    assert all(i["product"]["price"] for i in items)


def test_the_set_up_passes_the_system_checks(capsys):
    call_command("check", "--fail-level", "WARNING")
    assert Interaction.objects.count() == 0  # nothing written by a check


def test_the_checks_name_what_is_off(settings):
    from shopreco.contrib.oscar.checks import check_oscar_setup

    settings.SHOPRECO = {"ADAPTER": "shopreco.adapter.DefaultAdapter"}
    settings.SHOPRECO_PRODUCT_MODEL = "catalog.Product"
    assert {m.id for m in check_oscar_setup()} == {"shopreco_oscar.E001", "shopreco_oscar.W002"}
