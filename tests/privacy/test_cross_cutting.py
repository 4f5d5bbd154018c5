"""Privacy across every path: export completeness, opt-out and GPC on pages, widgets and the
API, and the retention task."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse
from django.utils import timezone

from shopreco import services, tasks
from shopreco.models import Impression, Interaction, Preference, Rating
from tests.security.conftest import client_for

pytestmark = pytest.mark.django_db

API = "/api/reco/"
# Every shopreco table holding rows about a user -> where the export lists them.
EXPORT_SECTION = {
    "Rating": "ratings",
    "Interaction": "events",
    "Recommendation": "recommendations",
    "Impression": "impressions",
    "Preference": "preferences",
    "PendingRefresh": "pending_refresh",
    "Assignment": "experiments",
}
# Staff's own records, not shoppers' data: who deployed a run (the audit trail of the shop).
STAFF_RECORDS = {"Deployment"}
KEPT_ON_ERASURE = {"Preference"}  # the opt-out must survive an erasure


def user_models():
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    for model in apps.get_app_config("shopreco").get_models():
        if model.__name__ in STAFF_RECORDS:
            continue
        for field in model._meta.get_fields():
            if field.concrete and field.is_relation and field.related_model is user_model:
                yield model, field.name


def test_every_table_with_user_rows_is_exported_and_erased(footprint):
    """Guards completeness: a new model with a user key must be added to export and erasure."""
    me = footprint()
    Preference.objects.create(user=me.user, personalize=True)
    found = {model.__name__ for model, _ in user_models()}
    assert found == set(EXPORT_SECTION), f"export does not cover {found - set(EXPORT_SECTION)}"

    response = client_for(me.user).get(f"{API}me/export/")
    assert response.status_code == 200
    data = response.json()
    for model, field in user_models():
        rows = model.objects.filter(**{field: me.user}).count()
        section = data[EXPORT_SECTION[model.__name__]]
        listed = len(section) if isinstance(section, list) else int(section is not None)
        assert rows > 0 and listed == rows, model.__name__

    erased = client_for(me.user).delete(f"{API}me/data/")
    assert erased.status_code == 200
    for model, field in user_models():
        left = model.objects.filter(**{field: me.user}).count()
        expected = 1 if model.__name__ in KEPT_ON_ERASURE else 0
        assert left == expected, model.__name__


def test_export_is_the_users_own_and_json(footprint):
    me, other = footprint(), footprint()
    response = client_for(me.user).get(f"{API}me/export/")
    assert response["Content-Type"].startswith("application/json")
    assert other.user.username not in response.content.decode()
    assert json.loads(response.content)["user"]["id"] == me.user.pk


# --- opt-out and Global Privacy Control --------------------------------------------------------


@pytest.fixture
def served(footprint, product_factory):
    """Alice with a personal list in the served run, plus more products for popular lists."""
    me = footprint()
    for _ in range(8):
        product_factory()
    return me


def widget_sources(html: str) -> dict[str, set[str]]:
    out = {}
    for widget, body in re.findall(
        r'data-shopreco-widget="([^"]+)"(.*?)</section>', html, re.S
    ):
        out[widget] = set(re.findall(r'data-shopreco-reason="([^"]+)"', body))
    return out


PERSONAL_KINDS = {"rated", "bought", "carted", "viewed"}


def shop_visit(client: Client, product, **headers) -> dict[str, set[str]]:
    """A visit: home page, a product page, add to cart, check out. Returns the reasons the
    home page's widgets showed."""
    home = client.get(reverse("catalog:home"), **headers)
    assert home.status_code == 200
    assert client.get(reverse("catalog:product", args=[product.pk]), **headers).status_code == 200
    client.post(reverse("catalog:cart-add", args=[product.pk]), {"quantity": 1}, **headers)
    client.post(reverse("catalog:checkout"), {}, **headers)
    return widget_sources(home.content.decode())


def assert_not_personal_and_untracked(client, served, events_before, **headers):
    reasons = shop_visit(client, served.products[1], **headers)
    assert reasons, "the home page shows widgets"
    for widget, kinds in reasons.items():
        assert not kinds & PERSONAL_KINDS, (widget, kinds)
    listing = client.get(f"{API}recommendations/", **headers).json()
    assert listing["source"] in ("popular", "trending")
    assert not {r.get("reason_kind") for r in listing["results"]} & PERSONAL_KINDS
    api_event = client.post(f"{API}events/", json.dumps(
        {"product": served.products[2].pk, "type": "view"}), content_type="application/json",
        **headers)
    assert api_event.status_code == 202 and api_event.json()["recorded"] is False
    assert Interaction.objects.count() == events_before, "no event may be recorded"


def test_opted_out_user_gets_popular_only_and_is_not_tracked(served):
    client = client_for(served.user)
    # Sanity: before opting out the same visit is personal and tracked.
    before = Interaction.objects.count()
    assert "rated" in set().union(*shop_visit(client, served.products[1]).values())
    assert Interaction.objects.count() > before

    # Opt out through the demo's account page, as a shopper would.
    assert client.post(reverse("catalog:account"), {}).status_code == 302
    assert Preference.objects.get(user=served.user).personalize is False
    impressions = Impression.objects.filter(user=served.user).count()
    assert_not_personal_and_untracked(client, served, Interaction.objects.count())
    assert Impression.objects.filter(user=served.user).count() == impressions
    request = RequestFactory().post("/")
    request.user = served.user
    assert services.track(request, served.products[3], "purchase") is None  # the host helper


@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "anonymous"])
def test_global_privacy_control_means_popular_only_and_no_tracking(served, signed_in):
    client = client_for(served.user if signed_in else None)
    assert_not_personal_and_untracked(client, served, Interaction.objects.count(),
                                      HTTP_SEC_GPC="1")


@override_settings(SHOPRECO={"HONOR_GPC": False})
def test_gpc_can_be_ignored_by_setting(served):
    client = client_for(served.user)
    before = Interaction.objects.count()
    reasons = shop_visit(client, served.products[1], HTTP_SEC_GPC="1")
    assert "rated" in set().union(*reasons.values())
    assert Interaction.objects.count() > before


def test_opting_back_in_restores_personal_lists(served):
    client = client_for(served.user)
    client.post(reverse("catalog:account"), {})
    client.post(reverse("catalog:account"), {"personalize": "on"})
    assert Preference.objects.get(user=served.user).personalize is True
    before = Interaction.objects.count()
    client.get(reverse("catalog:product", args=[served.products[1].pk]))
    assert Interaction.objects.count() == before + 1


# --- retention ---------------------------------------------------------------------------------


@override_settings(SHOPRECO={"EVENT_RETENTION_DAYS": 90})
def test_retention_task_purges_old_events(served):
    old = Interaction.objects.filter(user=served.user).first()
    Interaction.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=91))
    kept = Interaction.objects.count() - 1
    assert tasks.purge_old_events.delay().get() == 1  # the Celery task (eager in tests)
    assert Interaction.objects.count() == kept
    assert not Interaction.objects.filter(pk=old.pk).exists()
    assert Rating.objects.filter(user=served.user).count() == 2


def test_no_cached_personal_list_survives_an_erasure(served):
    first = services.recommended_for(served.user, 3)
    assert first.source == "personal"
    assert services.recommended_for(served.user, 3).items  # now cached
    client_for(served.user).delete(f"{API}me/data/")
    after = services.recommended_for(served.user, 3)
    assert after.source != "personal"
    assert not {i.reason_kind for i in after.items} & PERSONAL_KINDS
