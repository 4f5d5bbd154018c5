"""A ranked listing follows the shopper's arm like the widgets: it reads the arm's run, and
its impression records the arm, so an experiment's results count what ranking led to."""

from __future__ import annotations

import shopreco
from shopreco.models import Impression


def test_a_ranked_listing_records_the_shoppers_arm(shop, experiment, make_request):
    exp = experiment(shares=(0, 100))  # everyone in B
    request = make_request(shop.alice)
    ranked = shopreco.rank(list(shop.products), request)
    assert ranked.run_id == shop.run_b.pk  # B's pinned run, not the live one
    impression = Impression.objects.get(recommendation_id=ranked.recommendation_id)
    assert impression.widget == "rank" and impression.arm_id == exp.b.pk


def test_without_an_experiment_a_ranked_listing_has_no_arm(shop, make_request):
    ranked = shopreco.rank(list(shop.products), make_request(shop.alice))
    assert ranked.run_id == shop.run_a.pk
    assert Impression.objects.get(recommendation_id=ranked.recommendation_id).arm_id is None
