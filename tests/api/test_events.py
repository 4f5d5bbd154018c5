"""events/: user or anonymous session, validation, the kinds clients may post, repeats,
opt-out and GPC, CSRF, throttling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import RequestFactory, override_settings
from rest_framework.test import APIClient

from shopreco import tracking
from shopreco.models import Impression, Interaction, Preference
from tests.api.conftest import API, pks

pytestmark = pytest.mark.django_db
URL = f"{API}events/"


def test_signed_in_event_is_recorded_for_the_user(client_alice, alice, shop):
    response = client_alice.post(URL, {"product": shop.products[2].pk, "type": "cart"},
                                 format="json")
    assert response.status_code == 201
    assert response.json()["recorded"] is True
    event = Interaction.objects.get(pk=response.json()["id"])
    assert (event.user, event.product_id, event.kind, event.session_key) == (
        alice, shop.products[2].pk, "cart", ""
    )


def test_anonymous_event_is_recorded_for_the_session(anon, shop):
    response = anon.post(URL, {"product": shop.products[2].pk, "type": "view"}, format="json")
    assert response.status_code == 201
    event = Interaction.objects.get()
    assert event.user is None
    assert event.session_key == anon.cookies["sessionid"].value


def test_recommendation_id_of_a_served_list_is_credited(anon, shop):
    # The visitor's first event starts their session; their lists are logged from then on.
    anon.post(URL, {"product": shop.products[6].pk, "type": "view"}, format="json")
    listing = anon.get(f"{API}products/{shop.products[0].pk}/similar/", {"limit": 2}).json()
    rec_id = listing["recommendation_id"]
    picked = listing["results"][0]["product"]["pk"]
    assert Impression.objects.get(recommendation_id=rec_id).session_key == (
        anon.cookies["sessionid"].value)
    response = anon.post(URL, {"product": picked, "type": "view", "recommendation_id": rec_id},
                         format="json")
    assert response.status_code == 201
    assert response.json()["recommendation_id"] == rec_id
    # An id that never showed this product is not credited.
    forged = anon.post(URL, {"product": shop.products[7].pk, "type": "view",
                             "recommendation_id": rec_id}, format="json")
    assert forged.status_code == 201
    assert forged.json()["recommendation_id"] is None


def test_cookieless_reads_leave_no_impressions(anon, shop):
    """A client that keeps no cookie writes nothing per list it reads; a click it reports
    next cannot be credited (nothing remembers the list), so nothing of it is lost."""
    for _ in range(5):
        listing = anon.get(f"{API}products/{shop.products[0].pk}/similar/", {"limit": 2})
        assert listing.status_code == 200
        assert "sessionid" not in anon.cookies  # reading a list starts no session
    assert not Impression.objects.exists()
    body = listing.json()
    response = anon.post(URL, {"product": body["results"][0]["product"]["pk"], "type": "view",
                               "recommendation_id": body["recommendation_id"]}, format="json")
    assert response.status_code == 201 and response.json()["recommendation_id"] is None


def test_clients_cannot_post_purchases(client_alice, anon, shop):
    """Purchases are facts of the shop's checkout: a client posting one is refused,
    whoever it is, and nothing is stored."""
    for client in (client_alice, anon):
        response = client.post(URL, {"product": shop.products[0].pk, "type": "purchase"},
                               format="json")
        assert response.status_code == 400
        assert "server" in response.json()["type"][0]
    assert not Interaction.objects.exists()


def test_the_checkout_still_records_purchases(alice, shop):
    request = RequestFactory().post("/checkout/")
    request.user = alice
    event = tracking.track(request, shop.products[0], "purchase")
    assert (event.user, event.kind) == (alice, "purchase")


def test_a_host_may_let_clients_post_purchases(client_alice, shop):
    with override_settings(SHOPRECO={"CLIENT_EVENT_KINDS": ["view", "cart", "purchase"]}):
        response = client_alice.post(URL, {"product": shop.products[0].pk, "type": "purchase"},
                                     format="json")
    assert response.status_code == 201
    assert Interaction.objects.get().kind == "purchase"


def test_repeats_within_the_window_are_stored_once(client_alice, alice, shop):
    body = {"product": shop.products[0].pk, "type": "cart"}
    first = client_alice.post(URL, body, format="json")
    repeats = [client_alice.post(URL, body, format="json") for _ in range(19)]
    assert first.status_code == 201 and first.json()["recorded"] is True
    assert {r.status_code for r in repeats} == {200}
    assert {r.json()["id"] for r in repeats} == {first.json()["id"]}
    assert not any(r.json()["recorded"] for r in repeats)
    assert Interaction.objects.count() == 1
    # Another kind or product is another event.
    client_alice.post(URL, {**body, "type": "view"}, format="json")
    client_alice.post(URL, {**body, "product": shop.products[1].pk}, format="json")
    assert Interaction.objects.count() == 3
    # Once the window has passed, the same event counts again.
    Interaction.objects.update(created_at=Interaction.objects.get(pk=first.json()["id"])
                               .created_at - timedelta(minutes=11))
    assert client_alice.post(URL, body, format="json").status_code == 201
    assert Interaction.objects.filter(kind="cart", product=shop.products[0]).count() == 2


def test_repeats_are_per_shopper(client_alice, client_bob, anon, shop):
    body = {"product": shop.products[0].pk, "type": "view"}
    codes = [c.post(URL, body, format="json").status_code
             for c in (client_alice, client_bob, anon, anon)]
    assert codes == [201, 201, 201, 200]
    assert Interaction.objects.count() == 3


def test_a_repeat_carrying_a_recommendation_id_credits_the_earlier_event(anon, shop):
    """Viewed directly, then reached again from a list a minute later: the click counts."""
    first = anon.post(URL, {"product": shop.products[1].pk, "type": "view"}, format="json")
    listing = anon.get(f"{API}products/{shop.products[0].pk}/similar/", {"limit": 2}).json()
    assert listing["results"][0]["product"]["pk"] == shop.products[1].pk
    again = anon.post(URL, {"product": shop.products[1].pk, "type": "view",
                            "recommendation_id": listing["recommendation_id"]}, format="json")
    assert again.status_code == 200
    assert again.json()["recommendation_id"] == listing["recommendation_id"]
    event = Interaction.objects.get()
    assert event.pk == first.json()["id"]
    assert event.recommendation_id == listing["recommendation_id"]


def test_without_a_window_every_event_is_stored(client_alice, shop):
    body = {"product": shop.products[0].pk, "type": "view"}
    with override_settings(SHOPRECO={"EVENT_DEDUP_SECONDS": 0}):
        codes = [client_alice.post(URL, body, format="json").status_code for _ in range(3)]
    assert codes == [201, 201, 201]
    assert Interaction.objects.count() == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "view"}, "product"),
        ({"product": "abc", "type": "view"}, "product"),
        ({"product": 999999, "type": "view"}, "product"),
        ({"product": "PK", "type": "wishlist"}, "type"),
        ({"product": "PK", "type": 3}, "type"),
        ({"product": "PK"}, "type"),
        ({"product": "PK", "type": "view", "recommendation_id": "x" * 65}, "recommendation_id"),
        ({"product": "PK", "type": "view", "recommendation_id": ["a"]}, "recommendation_id"),
    ],
)
def test_validation_names_the_field(client_alice, shop, body, field):
    body = {k: (shop.products[0].pk if v == "PK" else v) for k, v in body.items()}
    response = client_alice.post(URL, body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Interaction.objects.exists()


def test_unavailable_product_is_400(client_alice, shop):
    response = client_alice.post(URL, {"product": shop.hidden.pk, "type": "view"}, format="json")
    assert response.status_code == 400 and "product" in response.json()


def test_event_kinds_follow_settings(client_alice, shop):
    weights = {"view": 1.0, "cart": 3.0, "purchase": 5.0, "wishlist": 2.0}
    with override_settings(SHOPRECO={"EVENT_WEIGHTS": weights,
                                     "CLIENT_EVENT_KINDS": ["view", "wishlist"]}):
        ok = client_alice.post(URL, {"product": shop.products[0].pk, "type": "wishlist"},
                               format="json")
        schema = client_alice.get(f"{API}schema/", {"format": "json"}).json()
    assert ok.status_code == 201
    type_schema = schema["components"]["schemas"]["Event"]["properties"]["type"]
    ref = type_schema.get("allOf", [type_schema])[0].get("$ref", "")
    enum = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]["enum"] if ref else (
        type_schema["enum"])
    assert set(enum) == set(weights)


def test_opted_out_user_is_not_tracked(client_alice, alice, shop):
    Preference.objects.create(user=alice, personalize=False)
    response = client_alice.post(URL, {"product": shop.products[0].pk, "type": "view"},
                                 format="json")
    assert response.status_code == 202
    assert response.json()["recorded"] is False
    assert not Interaction.objects.exists()


def test_global_privacy_control_header_is_honoured(anon, shop):
    response = anon.post(URL, {"product": shop.products[0].pk, "type": "view"}, format="json",
                         HTTP_SEC_GPC="1")
    assert response.status_code == 202
    assert not Interaction.objects.exists()


def test_anonymous_session_writes_need_csrf(shop):
    client = APIClient(enforce_csrf_checks=True)
    body = {"product": shop.products[0].pk, "type": "view"}
    # No session yet: nothing to forge, the event starts one.
    assert client.post(URL, body, format="json").status_code == 201
    # Now the browser carries a session cookie: a cross-site form must not write into it.
    body = {**body, "product": shop.products[1].pk}
    refused = client.post(URL, body, format="json")
    assert refused.status_code == 403
    client.get("/login/")
    ok = client.post(URL, body, format="json", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert ok.status_code == 201
    assert Interaction.objects.count() == 2


def test_events_are_throttled_by_their_own_scope(client_alice, shop):
    rates = {"shopreco_anon": "1000/min", "shopreco_user": "1000/min",
             "shopreco_events": "3/min"}
    body = {"product": shop.products[0].pk, "type": "view"}
    with override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": rates}):
        codes = [client_alice.post(URL, body, format="json").status_code for _ in range(4)]
        assert codes == [201, 200, 200, 429]  # repeats count against the budget too
        # Reads have their own budget.
        assert client_alice.get(f"{API}popular/").status_code == 200


def test_anonymous_reads_are_throttled(anon, shop):
    rates = {"shopreco_anon": "2/min", "shopreco_user": "1000/min",
             "shopreco_events": "1000/min"}
    with override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": rates}):
        codes = [anon.get(f"{API}popular/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_unconfigured_scopes_fall_back_instead_of_500(anon, shop):
    with override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": {}}):
        assert anon.get(f"{API}popular/").status_code == 200


def test_tracked_view_feeds_the_anonymous_cold_start(anon, shop):
    anon.post(URL, {"product": shop.products[0].pk, "type": "view"}, format="json")
    assert pks(anon.get(f"{API}recommendations/", {"limit": 1})) == [shop.products[1].pk]
