"""The demo shop's pages end to end through the test client: view, cart and purchase events
carry the recommendation id; rating, sign-in switcher, click beacon."""

from __future__ import annotations

import re

import pytest

from shopreco.models import Interaction, Rating


def first_rec(html, widget):
    section = html[html.index(f'data-shopreco-widget="{widget}"'):]
    pk, rec = re.search(r'data-shopreco-product="(\d+)" data-shopreco-recommendation="(\w+)"',
                        section).groups()
    return int(pk), rec


@pytest.mark.parametrize("widget", ["similar", "also-bought"])
def test_product_page_click_cart_purchase_credit_the_list(shop, client, widget):
    client.force_login(shop.alice)
    html = client.get(f"/p/{shop.products[0].pk}/").content.decode()
    assert 'data-shopreco-widget="similar"' in html and 'data-shopreco-widget="also-bought"' in html
    pk, rec = first_rec(html, widget)
    assert client.get(f"/p/{pk}/?rec={rec}").status_code == 200
    view = Interaction.objects.get(user=shop.alice, product_id=pk, kind="view")
    assert view.recommendation_id == rec
    client.post(f"/p/{pk}/add/", {"quantity": 2})
    client.post("/checkout/")
    for kind in ("cart", "purchase"):
        assert Interaction.objects.get(user=shop.alice, product_id=pk, kind=kind
                                       ).recommendation_id == rec


def test_view_recorded_once_by_middleware_and_not_for_missing_pages(shop, client):
    client.get(f"/p/{shop.products[1].pk}/")
    assert Interaction.objects.filter(kind="view", product=shop.products[1]).count() == 1
    assert client.get("/p/999999/").status_code == 404
    assert Interaction.objects.filter(kind="view").count() == 1


def test_click_beacon_credits_later_cart(shop, client):
    client.session.save()  # a browser with a session: a cookie-less one leaves no impressions
    html = client.get("/").content.decode()
    pk, rec = first_rec(html, "for-you")
    assert client.post("/shopreco/click/", {"rec": rec, "product": pk}).status_code == 204
    client.post(f"/p/{pk}/add/", {"quantity": 1})
    event = Interaction.objects.get(product_id=pk, kind="cart")
    assert event.recommendation_id == rec and event.session_key


def test_click_beacon_rejects_unknown_ids(shop, client):
    response = client.post("/shopreco/click/", {"rec": "a" * 32, "product": 1})
    assert response.status_code == 400 and b"rec" in response.content
    assert client.post("/shopreco/click/", {}).status_code == 400


def test_rating_form(shop, client):
    client.force_login(shop.alice)
    target = shop.products[2]
    response = client.post(f"/p/{target.pk}/rate/", {"score": "4"}, follow=True)
    assert Rating.objects.get(user=shop.alice, product=target).score == 4
    assert b"Your rating: 4 of 5" in response.content
    response = client.post(f"/p/{target.pk}/rate/", {"score": "9"}, follow=True)
    assert response.status_code == 200 and b"Choose between 1 and 5" in response.content
    assert Rating.objects.get(user=shop.alice, product=target).score == 4


def test_guest_cannot_rate(shop, client):
    response = client.post(f"/p/{shop.products[2].pk}/rate/", {"score": "4"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not Rating.objects.exists()


def test_demo_switcher_signs_in_customers_only(shop, client, user_factory):
    user_factory("customer001", first_name="Liam")
    user_factory("customer002-staff", is_staff=True)
    html = client.get("/login/").content.decode()
    assert 'data-demo-customer="customer001"' in html and "customer002-staff" not in html
    response = client.post("/login/demo/", {"username": "customer001"}, follow=True)
    assert response.context["user"].username == "customer001"
    client.logout()
    response = client.post("/login/demo/", {"username": "customer002-staff"}, follow=True)
    assert not response.context["user"].is_authenticated
    assert b"is not a demo customer" in response.content


def test_pages_render(shop, client):
    for url in ("/", f"/c/{shop.books.slug}/", "/cart/", "/checkout/", "/login/"):
        assert client.get(url).status_code == 200, url
    html = client.get("/").content.decode()
    assert 'data-shopreco-widget="for-you"' in html and "Popular picks" in html


def test_guest_checkout_records_session_purchases(shop, client):
    client.post(f"/p/{shop.products[3].pk}/add/", {"quantity": 1})
    response = client.post("/checkout/", follow=True)
    assert b"Thank you for your order" in response.content
    purchase = Interaction.objects.get(kind="purchase")
    assert purchase.product == shop.products[3] and purchase.user is None
    assert purchase.session_key


def test_opted_out_shopper_is_not_tracked(shop, client):
    client.force_login(shop.alice)
    client.post("/account/", {})  # checkbox unticked: personalisation off
    client.get(f"/p/{shop.products[1].pk}/")
    client.post(f"/p/{shop.products[1].pk}/add/", {"quantity": 1})
    assert not Interaction.objects.filter(user=shop.alice).exists()
    html = client.get("/").content.decode()
    assert 'data-shopreco-reason="rated"' not in html


def test_out_of_stock_product_page_has_no_cart_button(shop, client):
    p = shop.products[4]
    p.in_stock = False
    p.save()
    html = client.get(f"/p/{p.pk}/").content.decode()
    assert "Out of stock" in html and "Add to cart" not in html
    client.post(f"/p/{p.pk}/add/", {"quantity": 1})
    assert client.session.get("cart", {}) == {}
