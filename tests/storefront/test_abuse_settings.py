"""The anti-abuse settings (CLIENT_EVENT_KINDS, EVENT_DEDUP_SECONDS, ANONYMOUS_WEIGHT): a typo
is a system check error (E009), not an events API silently opened, closed or unweighted."""

from __future__ import annotations

import pytest
from django.test import override_settings

from shopreco import tracking
from shopreco.checks import check_settings


def ids(**shopreco) -> list[str]:
    with override_settings(SHOPRECO=shopreco):
        return [m.id for m in check_settings()]


@pytest.mark.parametrize("options", [
    {"CLIENT_EVENT_KINDS": ["view", "cart", "purchase"]},
    {"CLIENT_EVENT_KINDS": []},
    {"EVENT_DEDUP_SECONDS": 0},
    {"EVENT_DEDUP_SECONDS": None},
    {"EVENT_DEDUP_SECONDS": 3600.5},
    {"ANONYMOUS_WEIGHT": 0},
    {"ANONYMOUS_WEIGHT": 1},
    # The default's "cart" is not postable where a shop has no cart kind: no error.
    {"EVENT_WEIGHTS": {"view": 1, "wishlist": 2}},
])
def test_valid_options_pass(options):
    assert ids(**options) == []


@pytest.mark.parametrize("options", [
    {"CLIENT_EVENT_KINDS": "view"},
    {"CLIENT_EVENT_KINDS": ["view", 3]},
    {"CLIENT_EVENT_KINDS": ["view", "purchse"]},
    {"EVENT_DEDUP_SECONDS": -1},
    {"EVENT_DEDUP_SECONDS": "600"},
    {"ANONYMOUS_WEIGHT": 1.5},
    {"ANONYMOUS_WEIGHT": -0.1},
    {"ANONYMOUS_WEIGHT": True},
])
def test_bad_options_are_e009(options):
    assert ids(**options) == ["shopreco.E009"]


def test_clients_may_post_only_weighted_kinds():
    assert tracking.client_event_kinds() == {"view", "cart"}
    with override_settings(SHOPRECO={"EVENT_WEIGHTS": {"view": 1, "wishlist": 2},
                                     "CLIENT_EVENT_KINDS": ["view", "wishlist"]}):
        assert tracking.client_event_kinds() == {"view", "wishlist"}
    with override_settings(SHOPRECO={"EVENT_WEIGHTS": {"view": 1, "wishlist": 2}}):
        assert tracking.client_event_kinds() == {"view"}
