"""Event kinds come from settings: a kind added to ``EVENT_WEIGHTS`` flows into the snapshot
with its weight, ``OWNED_EVENT_KINDS`` decides what counts as owned, other kinds are ignored."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import override_settings

from shopreco.models import Interaction
from shopreco.pipeline import matrix

pytestmark = pytest.mark.django_db

WEIGHTS = {"view": 1.0, "cart": 3.0, "purchase": 5.0, "wishlist": 2.0}


def cells(snap: matrix.Snapshot, row: int) -> dict:
    """column -> (value, reason name, owned, bought) of one snapshot row."""
    start, end = snap.R.indptr[row], snap.R.indptr[row + 1]
    owned = set(snap.owned[row].indices.tolist())
    bought = set(snap.purchases[row].indices.tolist())
    return {
        int(j): (float(v), matrix.REASONS[int(r)], int(j) in owned, int(j) in bought)
        for j, v, r in zip(snap.R.indices[start:end], snap.R.data[start:end],
                           snap.reason[start:end], strict=True)
    }


def col_of(snap: matrix.Snapshot) -> dict:
    return {snap.product_pk(j): j for j in range(snap.n_products)}


def test_a_custom_kind_flows_through_the_snapshot_with_its_weight(product_factory,
                                                                  user_factory):
    a, b, c = product_factory(), product_factory(), product_factory()
    u = user_factory()
    Interaction.objects.create(user=u, product=a, kind="wishlist")
    Interaction.objects.create(user=u, product=b, kind="wishlist")
    Interaction.objects.create(user=u, product=b, kind="view")
    Interaction.objects.create(user=u, product=c, kind="share")  # not a configured kind
    with override_settings(SHOPRECO={"EVENT_WEIGHTS": WEIGHTS}):
        snap = matrix.load_snapshot()
        wish, wish_and_view = matrix.pseudo_rating(np.array([2.0, 3.0]))
        prefs = matrix.preferences(snap)
    col = col_of(snap)
    assert set(col) == {a.pk, b.pk}  # "share" has no weight: no column
    row = cells(snap, 0)
    assert row[col[a.pk]] == (pytest.approx(wish), "viewed", False, False)
    assert row[col[b.pk]] == (pytest.approx(wish_and_view), "viewed", False, False)
    assert snap.n_events == 3
    # its weight sits between a view's and a cart's on the preference scale, as configured
    with override_settings(SHOPRECO={"EVENT_WEIGHTS": WEIGHTS}):
        view, cart = matrix.pseudo_rating(np.array([1.0, 3.0]))
    assert view < wish < cart
    assert prefs[0, col[a.pk]] == pytest.approx((wish - 1.0) / 4.0)


def test_owned_kinds_come_from_the_setting(product_factory, user_factory):
    a, b = product_factory(), product_factory()
    u = user_factory()
    Interaction.objects.create(user=u, product=a, kind="wishlist")
    Interaction.objects.create(user=u, product=b, kind="purchase")
    settings = {"EVENT_WEIGHTS": WEIGHTS, "OWNED_EVENT_KINDS": ["wishlist"]}
    with override_settings(SHOPRECO=settings):
        snap = matrix.load_snapshot()
    col = col_of(snap)
    row = cells(snap, 0)
    assert row[col[a.pk]][1:] == ("bought", True, True)
    # a purchase is only a heavy event once the shop says it is not what owning means
    assert row[col[b.pk]][1:] == ("viewed", False, False)
    assert row[col[b.pk]][0] == pytest.approx(5.0)


def test_a_renamed_or_reweighted_default_kind_follows_the_setting(product_factory,
                                                                  user_factory):
    """Nothing outside EVENT_WEIGHTS gives "view", "cart" or "purchase" a weight: without
    "view" in the table, views are ignored; a cart weighing as much as a purchase saturates."""
    a, b = product_factory(), product_factory()
    u = user_factory()
    Interaction.objects.create(user=u, product=a, kind="view")
    Interaction.objects.create(user=u, product=b, kind="cart")
    with override_settings(SHOPRECO={"EVENT_WEIGHTS": {"cart": 5.0, "purchase": 5.0}}):
        snap = matrix.load_snapshot()
    col = col_of(snap)
    assert set(col) == {b.pk}
    assert cells(snap, 0)[col[b.pk]] == (pytest.approx(5.0), "carted", False, False)
