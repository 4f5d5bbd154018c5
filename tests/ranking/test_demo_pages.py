"""The demo shop's category and search pages with the "Sorted for you" choice, and a
purchase from a ranked listing credited to it."""

from __future__ import annotations

import re

import pytest

from shopreco.models import Impression, Interaction


def names(html):
    return re.findall(r'<span class="card-name">([^<]+)</span>', html)


def gamer(user_factory, shop):
    user = user_factory()
    for p in shop.games[:3]:
        Interaction.objects.create(user=user, product=p, kind="purchase")
    return user


@pytest.fixture
def mixed(taste_shop):
    """Books and games in one category, so a category page lists both."""
    from demo_shop.catalog.models import Product

    Product.objects.update(category=taste_shop.books_cat)
    return taste_shop


def test_category_sorted_for_you(mixed, user_factory, client):
    client.force_login(gamer(user_factory, mixed))
    url = mixed.books_cat.get_absolute_url()
    plain = client.get(url).content.decode()
    assert "Sorted for you" in plain
    assert names(plain)[:10] == [f"Book {i:02d}" for i in range(10)]
    html = client.get(url, {"sort": "for-you"}).content.decode()
    assert 'value="for-you" selected' in html
    shown = names(html)
    assert sorted(shown) == sorted(names(plain)) and shown != names(plain)
    assert all(n.startswith("Game") for n in shown[:7]), shown


def test_search_keeps_its_order_for_a_shopper_without_history(mixed, user_factory, client):
    client.force_login(user_factory())
    plain = client.get("/search/", {"q": "game"}).content.decode()
    ranked = client.get("/search/", {"q": "game", "sort": "for-you"}).content.decode()
    assert names(plain) == names(ranked) == [f"Game {i:02d}" for i in range(10)]
    client.force_login(gamer(user_factory, mixed))
    mixed_q = client.get("/search/", {"q": "0", "sort": "for-you"}).content.decode()
    assert names(mixed_q)[0] in ("Book 00", "Game 00")  # the query's best match stays near
    assert "Nothing matches" in client.get("/search/", {"q": "zzz"}).content.decode()
    assert client.get("/search/").status_code == 200


def test_a_purchase_from_a_ranked_category_page_is_credited(mixed, user_factory, client):
    client.force_login(gamer(user_factory, mixed))
    html = client.get(mixed.books_cat.get_absolute_url(), {"sort": "for-you"}).content.decode()
    link = re.search(r'<a href="(/p/(\d+)/\?rec=([0-9a-f]+))">', html)
    url, pk, rec = link.group(1), int(link.group(2)), link.group(3)
    assert Impression.objects.get(recommendation_id=rec).widget == "rank"
    assert client.get(url).status_code == 200
    assert client.post(f"/p/{pk}/add/", {"quantity": 1}).status_code == 302
    client.post("/checkout/", {"name": "Ann", "email": "ann@example.com",
                               "address": "1 Road"})
    bought = Interaction.objects.filter(product_id=pk, kind="purchase").latest("created_at")
    assert bought.recommendation_id == rec
