"""``manage.py shopreco_oscar_import``: the shop's orders and approved reviews before
shopreco, as purchases and ratings; idempotent, and in step with what the receivers record."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from oscar.core.loading import get_model

from shopreco.models import Interaction, Preference, Rating

pytestmark = pytest.mark.django_db
ProductReview = get_model("reviews", "ProductReview")
Order = get_model("order", "Order")


def run(*args):
    out = StringIO()
    call_command("shopreco_oscar_import", *args, "--batch-size", "2", stdout=out)
    return out.getvalue()


@pytest.fixture
def past(make_product, make_user, place_order):
    """A shop's history written before shopreco was installed (its rows removed again)."""
    parent = make_product(structure="parent")
    small, large = make_product(parent=parent), make_product(parent=parent)
    a, b, c = make_product(), make_product(), make_product()
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    orders = [place_order(alice, [a, small]), place_order(alice, [b]),
              place_order(bob, [a, small, large]), place_order(None, [c])]
    Order.objects.filter(pk=orders[0].pk).update(
        date_placed=timezone.now() - timedelta(days=400))
    for user, product, score, status in [
        (alice, a, 5, ProductReview.APPROVED), (bob, large, 4, ProductReview.APPROVED),
        (bob, b, 2, ProductReview.FOR_MODERATION), (carol, c, 3, ProductReview.REJECTED),
    ]:
        ProductReview.objects.create(product=product, user=user, score=score, title="t",
                                     body="b", status=status)
    Interaction.objects.all().delete()
    Rating.objects.all().delete()
    return {"parent": parent, "a": a, "b": b, "c": c, "alice": alice, "bob": bob,
            "orders": orders}


def purchases():
    return sorted(Interaction.objects.filter(kind="purchase")
                  .values_list("user_id", "product_id", "created_at"),
                  key=lambda row: (row[0] or 0, row[1], row[2]))


def test_the_import_turns_orders_and_reviews_into_purchases_and_ratings(past):
    out = run()
    assert "Purchases: 6 added, 0 already recorded." in out
    assert "Ratings: 2 added, 0 updated" in out
    alice, bob, parent = past["alice"].pk, past["bob"].pk, past["parent"].pk
    when = [Order.objects.get(pk=o.pk).date_placed for o in past["orders"]]
    assert purchases() == sorted([
        (alice, past["a"].pk, when[0]), (alice, parent, when[0]),
        (alice, past["b"].pk, when[1]),
        (bob, past["a"].pk, when[2]), (bob, parent, when[2]),  # two sizes, one product
        (None, past["c"].pk, when[3]),
    ], key=lambda row: (row[0] or 0, row[1], row[2]))
    assert sorted(Rating.objects.values_list("user_id", "product_id", "score")) == [
        (alice, past["a"].pk, 5.0), (bob, parent, 4.0)]


def test_importing_twice_adds_nothing(past):
    run()
    before = (purchases(), sorted(Rating.objects.values_list("user_id", "product_id", "score")))
    out = run()
    assert "Purchases: 0 added, 6 already recorded." in out
    assert "Ratings: 0 added, 0 updated, 2 unchanged." in out
    assert (purchases(), sorted(Rating.objects.values_list("user_id", "product_id", "score"))
            ) == before


def test_what_the_receivers_recorded_is_not_imported_again(make_product, make_user,
                                                           place_order):
    product, user = make_product(), make_user()
    place_order(user, [product])
    ProductReview.objects.create(product=product, user=user, score=4, title="t", body="b",
                                 status=ProductReview.APPROVED)
    out = run()
    assert "Purchases: 0 added, 1 already recorded." in out
    assert "Ratings: 0 added, 0 updated, 1 unchanged." in out
    assert Interaction.objects.filter(kind="purchase").count() == 1


def test_since_and_opt_outs_limit_the_import(past):
    Preference.objects.create(user=past["bob"], personalize=False)
    out = run("--since", (timezone.now() - timedelta(days=30)).date().isoformat())
    assert "Purchases: 2 added" in out  # alice's recent order and the guest's
    assert {u for u, _, _ in purchases()} == {past["alice"].pk, None}
    assert list(Rating.objects.values_list("user_id", flat=True)) == [past["alice"].pk]


def test_bad_options_are_refused():
    with pytest.raises(CommandError, match="--since"):
        run("--since", "last tuesday")
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("shopreco_oscar_import", "--batch-size", "0")
