"""Oscar's own flows (its product page, its basket view, OrderCreator) feed shopreco through
Oscar's signals."""

from __future__ import annotations

import pytest
from django.urls import reverse

from shopreco.models import Impression, Interaction, Preference

pytestmark = pytest.mark.django_db


def events(**filters):
    return list(Interaction.objects.filter(**filters).order_by("pk")
                .values_list("kind", "product_id", "user_id"))


def test_a_product_page_records_a_view(client, make_product, make_user):
    product = make_product()
    response = client.get(product.get_absolute_url())
    assert response.status_code == 200
    view = Interaction.objects.get()
    assert (view.kind, view.product_id, view.user_id) == ("view", product.pk, None)
    assert view.session_key  # the anonymous shopper, by their session

    user = make_user()
    client.force_login(user)
    client.get(product.get_absolute_url())
    assert events(user=user) == [("view", product.pk, user.pk)]


def test_a_variant_page_counts_for_its_parent(client, make_product, make_user):
    parent = make_product(structure="parent")
    child = make_product("Size M", parent=parent)
    user = make_user()
    client.force_login(user)
    assert client.get(child.get_absolute_url()).status_code == 200
    assert events() == [("view", parent.pk, user.pk)]


def test_a_page_oscar_refuses_records_nothing(client, make_product):
    hidden = make_product(is_public=False)
    assert client.get(hidden.get_absolute_url()).status_code == 404
    assert not Interaction.objects.exists()


def test_oscars_basket_view_records_a_cart_event(client, make_product, make_user):
    parent = make_product(structure="parent")
    child = make_product(parent=parent)
    plain = make_product()
    user = make_user()
    client.force_login(user)
    for product in (plain, child):
        response = client.post(reverse("basket:add", kwargs={"pk": product.pk}),
                               {"quantity": 1})
        assert response.status_code == 302
    assert events(kind="cart") == [("cart", plain.pk, user.pk), ("cart", parent.pk, user.pk)]


def test_an_order_placed_by_oscar_records_purchases(make_product, make_user, place_order):
    parent = make_product(structure="parent")
    small, large = make_product(parent=parent), make_product(parent=parent)
    plain = make_product()
    user = make_user()
    order = place_order(user, [plain, small, large])
    # One purchase per product (both sizes are the parent), dated when the order was placed.
    bought = Interaction.objects.filter(kind="purchase").order_by("pk")
    assert [(e.product_id, e.user_id) for e in bought] == [(plain.pk, user.pk),
                                                           (parent.pk, user.pk)]
    assert {e.created_at for e in bought} == {order.date_placed}
    # each purchase carries what its lines were worth (the variants' lines summed), so
    # revenue figures use the price paid, not today's
    worth = {}
    for line in order.lines.all():
        key = line.product.parent_id or line.product_id
        worth[key] = worth.get(key, 0) + line.line_price_incl_tax
    assert {e.product_id: e.amount for e in bought} == worth


def test_a_guest_order_counts_for_nobody_in_particular(make_product, place_order):
    product = make_product()
    place_order(None, [product])
    assert events(kind="purchase") == [("purchase", product.pk, None)]
    assert Interaction.objects.get().session_key == ""


def test_a_shopper_who_opted_out_is_not_recorded(client, make_product, make_user,
                                                 place_order):
    product = make_product()
    user = make_user()
    Preference.objects.create(user=user, personalize=False)
    client.force_login(user)
    client.get(product.get_absolute_url())
    client.post(reverse("basket:add", kwargs={"pk": product.pk}), {"quantity": 1})
    place_order(user, [product])
    assert not Interaction.objects.exists()


def test_a_purchase_is_credited_to_the_list_it_was_found_in(client, make_product, make_user,
                                                            place_order):
    product, other = make_product(), make_product()
    user = make_user()
    client.force_login(user)
    impression = Impression.objects.create(widget="similar", user=user,
                                           products=[product.pk])
    client.get(f"{product.get_absolute_url()}?rec={impression.recommendation_id}")
    client.post(reverse("basket:add", kwargs={"pk": product.pk}), {"quantity": 1})
    place_order(user, [product, other])
    credited = dict(Interaction.objects.values_list("kind", "recommendation_id")
                    .filter(product=product))
    assert credited == {"view": impression.recommendation_id,
                        "cart": impression.recommendation_id,
                        "purchase": impression.recommendation_id}
    assert Interaction.objects.get(product=other).recommendation_id is None
