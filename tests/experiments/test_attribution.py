"""Per-arm attribution through the shop's pages: a list shown in arm B, clicked, the product
added to the cart and bought, is counted in B and not in A; the insights' intervals and test
against known values."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from shopreco import insights
from shopreco.models import Assignment, Impression, Interaction
from tests.experiments.test_serving import first_rec


def _set_shares(exp, a, b):
    exp.a.share, exp.b.share = a, b
    exp.a.save()
    exp.b.save()


def test_impression_click_cart_purchase_counted_in_b_not_a(shop, experiment, client,
                                                           django_user_model):
    from django.test import Client

    exp = experiment(shares=(0, 1))
    client.session.save()  # a guest with a session
    html = client.get(f"/p/{shop.products[0].pk}/").content.decode()
    pk, rec = first_rec(html, "similar")
    assert pk == shop.products[9].pk  # run B's list
    assert client.get(f"/p/{pk}/?rec={rec}").status_code == 200  # the click
    client.post(f"/p/{pk}/add/", {"quantity": 1})
    assert client.post("/checkout/").status_code in (200, 302)
    purchase = Interaction.objects.get(kind="purchase", product_id=pk)
    assert purchase.recommendation_id == rec

    _set_shares(exp, 1, 0)
    other = Client()  # a second guest, in A: sees a list, buys nothing from it
    other.session.save()
    html = other.get(f"/p/{shop.products[0].pk}/").content.decode()
    assert first_rec(html, "similar")[0] == shop.products[1].pk  # the live run

    results = insights.experiment_results(exp.experiment)
    a, b = results.arms
    assert (a.arm, b.arm) == (exp.a, exp.b)
    assert (a.visitors, b.visitors) == (1, 1)
    shown_b = Impression.objects.filter(arm=exp.b).count()
    assert b.impressions == shown_b and shown_b >= 2  # the two product pages' lists
    assert a.impressions == Impression.objects.filter(arm=exp.a).count() >= 1
    assert (b.clicks, b.clicked_impressions, b.carts, b.carters) == (1, 1, 1, 1)
    assert (b.purchases, b.purchasers) == (1, 1)
    price = shop.products[9].price
    assert b.revenue == price and b.revenue_per_visitor.value == pytest.approx(float(price))
    assert b.conversion.value == 1.0
    assert (a.clicks, a.carts, a.purchases, a.revenue) == (0, 0, 0, Decimal(0))
    assert a.conversion.value == 0.0
    assert set(b.comparisons) == {"ctr", "cart_rate", "conversion"}
    assert a.comparisons == {}  # the control is not tested against itself


def test_purchase_without_the_arms_recommendation_id_is_not_credited(shop, experiment, client):
    exp = experiment(shares=(0, 1))
    client.session.save()
    client.get(f"/p/{shop.products[0].pk}/")
    client.post(f"/p/{shop.products[5].pk}/add/", {"quantity": 1})  # not from a list
    client.post("/checkout/")
    assert Interaction.objects.filter(kind="purchase").exists()
    b = insights.experiment_results(exp.experiment).arms[1]
    assert (b.visitors, b.purchases, b.purchasers, b.carts) == (1, 0, 0, 0)


def test_rates_intervals_and_test_from_rows(shop, experiment):
    """200 visitors per arm; A: 20 purchasers, B: 40; every purchaser bought product 9 once."""
    exp = experiment()
    price = float(shop.products[9].price)
    for arm, buyers in ((exp.a, 20), (exp.b, 40)):
        for i in range(200):
            visitor = f"{arm.name}-{i}"
            Assignment.objects.create(experiment=exp.experiment, arm=arm, visitor=visitor)
            rec = f"r{arm.name}{i}"
            Impression.objects.create(recommendation_id=rec, widget="similar", arm=arm,
                                      session_key=visitor, products=[shop.products[9].pk])
            if i < buyers:
                for kind in ("view", "cart", "purchase"):
                    Interaction.objects.create(session_key=visitor, product=shop.products[9],
                                               kind=kind, recommendation_id=rec)
    a, b = insights.experiment_results(exp.experiment).arms
    assert (a.visitors, a.purchasers, b.visitors, b.purchasers) == (200, 20, 200, 40)
    assert a.ctr.value == 0.1 and b.cart_rate.value == 0.2
    # Wilson for 20/200
    low, high = a.conversion.low, a.conversion.high
    z = insights.Z95
    p, n = 0.1, 200
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (low, high) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert low < 0.1 < high
    # two-proportion z: pooled 60/400
    pooled = 60 / 400
    z_expected = (0.2 - 0.1) / math.sqrt(pooled * (1 - pooled) * (2 / 200))
    test = b.comparisons["conversion"]
    assert test.z == pytest.approx(z_expected) and test.difference == pytest.approx(0.1)
    assert test.p == pytest.approx(math.erfc(z_expected / math.sqrt(2)))
    assert test.significant
    # revenue per visitor: mean 40 * price / 200, normal interval from the sample sd
    rpv = b.revenue_per_visitor
    values = [price] * 40 + [0.0] * 160
    mean = sum(values) / 200
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 199)
    assert rpv.value == pytest.approx(mean)
    assert (rpv.low, rpv.high) == (pytest.approx(mean - z * sd / math.sqrt(200)),
                                   pytest.approx(mean + z * sd / math.sqrt(200)))


def test_wilson_edge_cases():
    assert insights.wilson_interval(0, 0).value is None
    zero = insights.wilson_interval(0, 50)
    assert zero.value == 0.0 and zero.low == 0.0 and 0 < zero.high < 0.1
    full = insights.wilson_interval(50, 50)
    assert full.high == 1.0 and 0.9 < full.low < 1.0
    assert insights.two_proportion_test(0, 10, 0, 10) is None  # no variance
    assert insights.two_proportion_test(1, 0, 1, 10) is None
