"""The DRF filter backend on a host's own product API, and the template tag."""

from __future__ import annotations

import pytest
from django.template import Context, Template

from shopreco.models import Impression, Interaction

pytestmark = pytest.mark.urls("tests.ranking.urls")


def taste(user, shop):
    for p in shop.games[:3]:
        Interaction.objects.create(user=user, product=p, kind="purchase")


def names(response):
    return [row["name"] for row in response.json()["results"]]


def test_rank_personal_reorders_the_hosts_api(taste_shop, user_factory, client):
    user = user_factory()
    taste(user, taste_shop)
    client.force_login(user)
    plain = client.get("/shop-api/products/")
    assert names(plain)[:5] == [f"Book {i:02d}" for i in range(5)]
    assert "X-Recommendation-Id" not in plain
    ranked = client.get("/shop-api/products/", {"rank": "personal"})
    assert ranked.status_code == 200 and ranked.json()["count"] == 20
    assert any(name.startswith("Game") for name in names(ranked))
    rec = ranked["X-Recommendation-Id"]
    assert Impression.objects.get(recommendation_id=rec).widget == "rank"
    page2 = client.get("/shop-api/products/", {"rank": "personal", "page": 4})
    assert len(names(page2)) == 5


def test_a_search_without_history_keeps_its_order(taste_shop, user_factory, client):
    client.force_login(user_factory())
    plain = client.get("/shop-api/products/", {"search": "Game", "ordering": "-name"})
    ranked = client.get("/shop-api/products/", {"search": "Game", "ordering": "-name",
                                                "rank": "personal"})
    assert names(ranked) == names(plain) == [f"Game {i:02d}" for i in range(9, 4, -1)]


def test_a_bad_rank_value_is_a_400_naming_the_parameter(taste_shop, client):
    response = client.get("/shop-api/products/", {"rank": "cheapest"})
    assert response.status_code == 400
    assert "rank" in response.json()


def test_the_schema_describes_the_parameter():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator(urlconf="tests.ranking.urls").get_schema(request=None, public=True)
    params = schema["paths"]["/shop-api/products/"]["get"]["parameters"]
    rank = next(p for p in params if p["name"] == "rank")
    assert rank["in"] == "query" and rank["schema"]["enum"] == ["personal"]


def test_the_template_tag(taste_shop, user_factory, make_request):
    user = user_factory()
    taste(user, taste_shop)
    request = make_request(user)
    tpl = Template("{% load shopreco %}{% shopreco_rank products blend=1 as ranked %}"
                   "{% for item in ranked.items %}{{ item.product.name }}|{% endfor %}"
                   "{{ ranked.recommendation_id }}")
    out = tpl.render(Context({"request": request, "products": taste_shop.products}))
    *shown, rec = out.split("|")
    assert shown[0].startswith("Game") and len(shown) == 20
    assert Impression.objects.filter(recommendation_id=rec, widget="rank").exists()


def test_the_template_tag_keeps_the_host_order_when_the_database_fails(
        taste_shop, make_request, monkeypatch):
    from django.db import DatabaseError

    from shopreco.serving import ranking

    def broken(*args, **kwargs):
        raise DatabaseError("down")

    monkeypatch.setattr(ranking, "rank", broken)
    monkeypatch.setattr("shopreco.serving.rank", broken)
    tpl = Template("{% load shopreco %}{% shopreco_rank products as ranked %}"
                   "{% for p in ranked %}{{ p.name }}|{% endfor %}")
    out = tpl.render(Context({"request": make_request(), "products": taste_shop.products}))
    assert out.split("|")[:-1] == [p.name for p in taste_shop.products]


def test_a_token_client_is_ranked_as_its_user(taste_shop, user_factory, client):
    from rest_framework.authtoken.models import Token

    user = user_factory()
    taste(user, taste_shop)
    token = Token.objects.create(user=user)
    response = client.get("/shop-api/products/", {"rank": "personal"},
                          HTTP_AUTHORIZATION=f"Token {token.key}")
    rec = response["X-Recommendation-Id"]
    assert Impression.objects.get(recommendation_id=rec).user == user
    assert any(name.startswith("Game") for name in names(response))
