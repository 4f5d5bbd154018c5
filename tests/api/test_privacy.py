"""me/export, me/data and me/preferences: the signed-in user's own data only."""

from __future__ import annotations

import pytest

from shopreco.models import Interaction, Rating, Recommendation
from tests.api.conftest import API, pks

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "me/export/"), ("delete", "me/data/"), ("get", "me/preferences/"),
     ("put", "me/preferences/")],
)
def test_me_endpoints_need_sign_in(anon, shop, method, path):
    assert getattr(anon, method)(f"{API}{path}").status_code in (401, 403)


def test_export_has_own_data_only(client_alice, alice, bob, shop):
    Rating.objects.create(user=alice, product=shop.products[1], score=4)
    Rating.objects.create(user=bob, product=shop.products[2], score=1)
    Interaction.objects.create(user=alice, product=shop.products[3], kind="cart")
    response = client_alice.get(f"{API}me/export/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    data = response.json()
    assert [r["product"]["pk"] for r in data["ratings"]] == [shop.products[1].pk]
    assert [e["product"]["pk"] for e in data["events"]] == [shop.products[3].pk]
    assert {r["product"]["pk"] for r in data["recommendations"]} == {
        shop.products[6].pk, shop.products[5].pk
    }
    assert data["preferences"]["personalize"] is True


def test_erase_removes_own_data_only(client_alice, alice, bob, shop):
    Rating.objects.create(user=alice, product=shop.products[1], score=4)
    Rating.objects.create(user=bob, product=shop.products[2], score=1)
    Interaction.objects.create(user=alice, product=shop.products[3], kind="cart")
    response = client_alice.delete(f"{API}me/data/")
    assert response.status_code == 200
    deleted = response.json()["deleted"]
    assert (deleted["ratings"], deleted["events"], deleted["recommendations"]) == (1, 1, 2)
    assert not Rating.objects.filter(user=alice).exists()
    assert not Recommendation.objects.filter(user=alice).exists()
    assert Rating.objects.filter(user=bob).count() == 1
    # Nothing personal is left to serve.
    assert client_alice.get(f"{API}recommendations/").json()["source"] != "personal"


def test_preferences_opt_out_gives_popular_lists(client_alice, shop):
    assert client_alice.get(f"{API}me/preferences/").json() == {"personalize": True}
    response = client_alice.put(f"{API}me/preferences/", {"personalize": False}, format="json")
    assert response.status_code == 200
    assert response.json() == {"personalize": False}
    assert client_alice.get(f"{API}me/preferences/").json() == {"personalize": False}
    listing = client_alice.get(f"{API}recommendations/", {"limit": 2}).json()
    assert listing["source"] == "popular"
    assert [i["reason_kind"] for i in listing["results"]] != ["rated", "rated"]
    assert pks(client_alice.get(f"{API}recommendations/", {"limit": 2})) != [
        shop.products[6].pk, shop.products[5].pk
    ]


@pytest.mark.parametrize("body", [{}, {"personalize": "maybe"}, {"personalize": None},
                                  {"personalize": [True]}])
def test_preferences_validation_names_the_field(client_alice, shop, body):
    response = client_alice.put(f"{API}me/preferences/", body, format="json")
    assert response.status_code == 400
    assert "personalize" in response.json()
