"""What a shopper did in their browser before signing in is theirs: export and erasure find it
through the anonymous id kept in the session data (signing in changes the session key, not
the data), and after ``DELETE me/data/`` nothing of theirs is left in any shopreco table.

Out of scope here: derived data of runs computed before the erasure (snapshots, similarities),
which the follow-up run and housekeeping remove (tests/privacy/test_erasure_pipeline.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.apps import apps
from django.db import models
from django.test import Client
from django.utils import timezone

from shopreco.models import (
    Deployment,
    Impression,
    Interaction,
    ItemSimilarity,
    PendingRefresh,
    Preference,
    Recommendation,
    RecomputeRun,
)
from shopreco.serving.request import ANONYMOUS_ID_SESSION_KEY
from shopreco.tracking import SESSION_ATTRIBUTION_KEY

pytestmark = pytest.mark.django_db
API = "/api/reco/"


@pytest.fixture
def products(product_factory) -> list:
    """Four products, each the others' neighbour in a served run, so every product page
    shows lists (and logs their impressions)."""
    items = [product_factory(f"Item {i}") for i in range(4)]
    run = RecomputeRun.objects.create(status=RecomputeRun.Status.SUCCEEDED,
                                      finished_at=timezone.now())
    Deployment.objects.create(run=run)
    ItemSimilarity.objects.bulk_create(
        ItemSimilarity(run=run, kind=kind, product=a, similar_product=b, score=0.5)
        for kind in ("similar", "also_bought") for a in items for b in items if a != b
    )
    return items


def browse_then_sign_in(client: Client, user: Any, products: list) -> str:
    """A first visit: two product pages, a cart posted by the page's script, the home page;
    then sign-in through the shop's login form. Returns the anonymous id."""
    assert client.get(f"/p/{products[0].pk}/").status_code == 200
    assert client.get(f"/p/{products[1].pk}/").status_code == 200
    assert client.post(f"{API}events/", {"product": products[2].pk, "type": "cart"},
                       content_type="application/json").status_code == 201
    assert client.get("/").status_code == 200
    anonymous = client.session[ANONYMOUS_ID_SESSION_KEY]
    assert anonymous == client.cookies["sessionid"].value  # the first session key
    response = client.post("/login/", {"username": user.get_username(), "password": "pw"})
    assert response.status_code == 302
    # A new session key (no session fixation), the same anonymous id.
    assert client.cookies["sessionid"].value != anonymous
    assert client.session[ANONYMOUS_ID_SESSION_KEY] == anonymous
    return anonymous


def test_export_covers_what_the_browser_did_before_sign_in(client, user_factory, products):
    me = user_factory()
    anonymous = browse_then_sign_in(client, me, products)
    before = Interaction.objects.filter(user__isnull=True, session_key=anonymous)
    assert before.count() == 3
    shown = Impression.objects.filter(user__isnull=True, session_key=anonymous).count()
    assert shown >= 3  # the lists of both product pages and the home page

    data = client.get(f"{API}me/export/").json()
    assert sorted((e["type"], e["product"]["pk"]) for e in data["session_events"]) == sorted(
        [("view", products[0].pk), ("view", products[1].pk), ("cart", products[2].pk)])
    assert len(data["session_impressions"]) == shown


def test_a_click_before_sign_in_is_credited_after_it(client, user_factory, products):
    """The remembered click lives in the session data too: a cart after signing in is
    credited to the list the shopper clicked while still anonymous."""
    html = client.get(f"/p/{products[0].pk}/").content.decode()
    pk, rec = re.search(r'data-shopreco-product="(\d+)" data-shopreco-recommendation="(\w+)"',
                        html).groups()
    assert client.post("/shopreco/click/", {"rec": rec, "product": pk}).status_code == 204
    me = user_factory()
    assert client.post("/login/", {"username": me.get_username(), "password": "pw"}
                       ).status_code == 302
    client.post(f"/p/{pk}/add/", {"quantity": 1})
    cart = Interaction.objects.get(user=me, kind="cart")
    assert (str(cart.product_id), cart.recommendation_id) == (pk, rec)


def _theirs(model: type[models.Model], user: Any, anonymous: str) -> models.QuerySet:
    """Rows of ``model`` that name the user or hold the anonymous id in any text field."""
    q = models.Q(pk__in=[])
    for field in model._meta.get_fields():
        if getattr(field, "related_model", None) is type(user) and field.concrete:
            q |= models.Q(**{field.name: user})
        elif isinstance(field, models.CharField | models.TextField):
            q |= models.Q(**{field.name: anonymous})
    return model._default_manager.filter(q)


def test_erasure_leaves_nothing_of_theirs_in_any_table(client, user_factory, products):
    me, other = user_factory(), user_factory()
    anonymous = browse_then_sign_in(client, me, products)
    # Signed in: their own events, a rating, a personal list, a queued refresh.
    assert client.get(f"/p/{products[3].pk}/").status_code == 200
    assert client.post(f"{API}ratings/", {"product": products[0].pk, "score": 4},
                       content_type="application/json").status_code == 201
    run = RecomputeRun.latest_succeeded()
    Recommendation.objects.create(run=run, user=me, product=products[3], score=1.0, rank=1,
                                  reason="rated", reason_product=products[0])
    PendingRefresh.objects.get_or_create(user=me)
    # Someone else's browsing stays.
    stranger = Client()
    stranger.get(f"/p/{products[0].pk}/")
    Interaction.objects.create(user=other, product=products[1], kind="view")
    kept_events = Interaction.objects.exclude(user=me).exclude(session_key=anonymous).count()
    assert kept_events == 2

    assert _theirs(Interaction, me, anonymous).count() == 4
    assert _theirs(Impression, me, anonymous).count() >= 4

    response = client.delete(f"{API}me/data/")
    assert response.status_code == 200
    deleted = response.json()["deleted"]
    assert deleted["session_events"] == 3 and deleted["session_impressions"] >= 3
    assert deleted["events"] == 1 and deleted["ratings"] == 1

    left = {
        model.__name__: list(_theirs(model, me, anonymous).values_list("pk", flat=True))
        for model in apps.get_app_config("shopreco").get_models()
        if model is not Preference
    }
    assert left == dict.fromkeys(left, [])
    # The preference row stays on purpose: it keeps an opt-out and records the erasure.
    assert Preference.objects.get(user=me).data_erased_at is not None
    # The session forgets the anonymous id and the remembered clicks.
    assert ANONYMOUS_ID_SESSION_KEY not in client.session
    assert SESSION_ATTRIBUTION_KEY not in client.session
    assert Interaction.objects.count() == kept_events
    # Browsing on starts afresh, linked to nothing erased.
    client.logout()
    client.get(f"/p/{products[1].pk}/")
    assert client.session[ANONYMOUS_ID_SESSION_KEY] not in ("", anonymous)


def test_an_anonymous_id_outlives_a_cookie_that_no_longer_names_a_session(client, products):
    """A stale session cookie (expired, deleted) is not recorded as a shopper: the event
    starts a real session, whose key becomes the anonymous id."""
    client.cookies["sessionid"] = "stale0000000000000000000000000000"
    assert client.post(f"{API}events/", {"product": products[0].pk, "type": "view"},
                       content_type="application/json").status_code == 201
    event = Interaction.objects.get()
    assert event.session_key != "stale0000000000000000000000000000"
    assert event.session_key == client.session[ANONYMOUS_ID_SESSION_KEY]
