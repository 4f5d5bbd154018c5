"""Every list follows the shopper's arm: arm B's shoppers get run B's lists (widgets, the
service functions, the API), arm A's the live run's; each impression records its arm; and a
shop with no experiment running pays no query for experiments."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from shopreco import services
from shopreco.models import Assignment, Experiment, Impression


def first_rec(html, widget):
    section = html[html.index(f'data-shopreco-widget="{widget}"'):]
    pk, rec = re.search(r'data-shopreco-product="(\d+)" data-shopreco-recommendation="(\w+)"',
                        section).groups()
    return int(pk), rec


def test_arm_b_is_served_from_its_pinned_run_and_arm_a_from_the_live_run(
        shop, experiment, make_request):
    exp = experiment(shares=(0, 1))
    p = shop.products
    in_b = make_request()
    similar = services.similar_products(p[0], limit=3, request=in_b)
    assert [i.product for i in similar.items] == [p[9], p[8], p[7]]  # run B's order
    exp.a.share, exp.b.share = 1, 0
    exp.a.save()
    exp.b.save()
    in_a = make_request()
    similar = services.similar_products(p[0], limit=3, request=in_a)
    assert [i.product for i in similar.items] == [p[1], p[2], p[3]]  # the live run A
    arms = dict(Assignment.objects.values_list("visitor", "arm"))
    assert set(arms.values()) == {exp.a.pk, exp.b.pk}


def test_personal_list_follows_the_arm(shop, experiment, make_request):
    experiment(shares=(0, 1))
    p = shop.products
    got = services.recommended_for(shop.alice, limit=4, request=make_request(shop.alice))
    assert [i.product for i in got.items] == [p[8], p[9], p[7], p[6]]  # run B's list


def test_impressions_record_the_arm(shop, experiment, client):
    exp = experiment(shares=(0, 1))
    client.session.save()
    html = client.get(f"/p/{shop.products[0].pk}/").content.decode()
    pk, rec = first_rec(html, "similar")
    assert pk == shop.products[9].pk  # run B
    impressions = list(Impression.objects.all())
    assert impressions and all(i.arm_id == exp.b.pk for i in impressions)
    assert Impression.objects.get(recommendation_id=rec).arm == exp.b


def test_impressions_outside_an_experiment_have_no_arm(shop, experiment, client):
    experiment(shares=(0, 1), status=Experiment.Status.STOPPED)
    client.session.save()
    html = client.get(f"/p/{shop.products[0].pk}/").content.decode()
    assert first_rec(html, "similar")[0] == shop.products[1].pk  # the live run
    assert Impression.objects.exists()
    assert not Impression.objects.filter(arm__isnull=False).exists()


def test_api_lists_follow_the_arm(shop, experiment, client):
    exp = experiment(shares=(0, 1))
    client.session.save()
    response = client.get(f"/api/reco/products/{shop.products[0].pk}/similar/", {"limit": 2})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [item["product"]["pk"] for item in body["results"]] == [
        shop.products[9].pk, shop.products[8].pk]
    assert Impression.objects.get(recommendation_id=body["recommendation_id"]).arm == exp.b


def _queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return [q["sql"] for q in ctx.captured_queries]


@pytest.mark.parametrize("signed_in", [False, True])
def test_no_extra_query_when_no_experiment_runs(shop, experiment, client, signed_in):
    if signed_in:
        client.force_login(shop.alice)
    else:
        client.session.save()
    url = f"/p/{shop.products[0].pk}/"
    client.get(url)  # warm the caches
    without = _queries(client, url)
    draft = experiment(shares=(0, 1), status=Experiment.Status.DRAFT)  # nothing runs
    client.get(url)  # the saves above dropped the cached experiments: read them again
    with_draft = _queries(client, url)
    assert len(with_draft) == len(without)
    for sql in with_draft:
        assert "shopreco_assignment" not in sql and "shopreco_experimentarm" not in sql
    # the check rides on the state query a signed-in page makes anyway, or on the cache
    touching = [sql for sql in with_draft if "shopreco_experiment" in sql]
    assert len(touching) == (1 if signed_in else 0)
    assert "shopreco_deployment" in (touching[0] if touching else "shopreco_deployment")
    assert not Assignment.objects.exists() and draft.experiment.status == "draft"


def test_an_enrolled_shopper_pays_one_query_for_the_arm(shop, experiment, client):
    experiment(shares=(0, 1))
    client.session.save()
    url = f"/p/{shop.products[0].pk}/"
    client.get(url)  # drawn and stored
    client.get(url)
    queries = _queries(client, url)
    assert sum("shopreco_assignment" in sql for sql in queries) == 1
    assert not any("shopreco_experimentarm" in sql for sql in queries)  # cached
