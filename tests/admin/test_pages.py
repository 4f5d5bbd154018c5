"""Each shopreco admin page: 200 for staff, refused for everybody else."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.db.models import F
from django.urls import reverse

from shopreco.models import Interaction, ItemSimilarity, Rating, Recommendation

pytestmark = pytest.mark.django_db


def page_urls(shop):
    run = shop["full"]
    rating = Rating.objects.first()
    event = Interaction.objects.first()
    rec = Recommendation.objects.first()
    sim = ItemSimilarity.objects.create(
        run=run, product=shop["products"][0], similar_product=shop["products"][1], score=0.5
    )
    urls = [reverse("admin:shopreco_insights"), reverse("admin:app_list", args=["shopreco"])]
    for model in ("rating", "interaction", "impression", "itemsimilarity", "recommendation",
                  "recomputerun"):
        urls.append(reverse(f"admin:shopreco_{model}_changelist"))
    urls += [
        reverse("admin:shopreco_rating_change", args=[rating.pk]),
        reverse("admin:shopreco_rating_add"),
        reverse("admin:shopreco_interaction_change", args=[event.pk]),
        reverse("admin:shopreco_recommendation_change", args=[rec.pk]),
        reverse("admin:shopreco_itemsimilarity_change", args=[sim.pk]),
        reverse("admin:shopreco_recomputerun_change", args=[run.pk]),
        reverse("admin:shopreco_recomputerun_progress", args=[run.pk]),
    ]
    return urls


def test_insights_url_is_where_the_spec_says():
    assert reverse("admin:shopreco_insights") == "/admin/shopreco/insights/"


def test_every_page_renders_for_staff(shop, staff_client):
    for url in page_urls(shop):
        response = staff_client.get(url)
        assert response.status_code == 200, url


@pytest.mark.parametrize("who", ["anonymous", "customer"])
def test_every_page_refuses_non_staff(shop, client, user_factory, who):
    if who == "customer":
        client.force_login(user_factory("customer"))
    login = reverse("admin:login")
    for url in page_urls(shop):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(login), url


def test_staff_without_model_permissions_cannot_open_the_tables(shop, client, user_factory):
    clerk = user_factory("clerk", is_staff=True)
    client.force_login(clerk)
    assert client.get(reverse("admin:shopreco_rating_changelist")).status_code == 403
    assert client.get(reverse("admin:shopreco_recomputerun_progress",
                              args=[shop["full"].pk])).status_code == 403
    response = client.post(reverse("admin:shopreco_recomputerun_recompute"))
    assert response.status_code == 403
    clerk.user_permissions.add(Permission.objects.get(codename="view_rating"))
    assert client.get(reverse("admin:shopreco_rating_changelist")).status_code == 200


def test_derived_tables_are_read_only(shop, staff_client):
    for model in ("itemsimilarity", "recommendation", "recomputerun", "impression"):
        response = staff_client.get(reverse(f"admin:shopreco_{model}_changelist"))
        assert not response.context["has_add_permission"], model
    run = shop["full"]
    response = staff_client.post(reverse("admin:shopreco_recomputerun_change", args=[run.pk]),
                                 {"status": "failed"})
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert response.status_code in (302, 403)


def test_app_index_and_home_link_to_insights(shop, staff_client):
    insights_url = reverse("admin:shopreco_insights")
    for url in (reverse("admin:index"), reverse("admin:app_list", args=["shopreco"])):
        assert f'href="{insights_url}"' in staff_client.get(url).content.decode(), url


def test_changelists_filter_and_search(shop, staff_client):
    base = reverse("admin:shopreco_interaction_changelist")
    purchases = Interaction.objects.filter(kind="purchase").count()
    response = staff_client.get(base, {"kind": "purchase"})
    assert response.context["cl"].result_count == purchases
    response = staff_client.get(base, {"q": "shopper2"})
    assert {e.user.username for e in response.context["cl"].result_list} == {"shopper2"}
    response = staff_client.get(base, {"visitor": "anonymous"})
    assert response.context["cl"].result_count == Interaction.objects.filter(
        user__isnull=True).count()
    response = staff_client.get(base, {"attributed": "no"})
    assert response.context["cl"].result_count == Interaction.objects.filter(
        recommendation_id__isnull=True).count()
    ratings = reverse("admin:shopreco_rating_changelist")
    response = staff_client.get(ratings, {"score": "5"})
    assert response.context["cl"].result_count == Rating.objects.filter(score=5).count()
    response = staff_client.get(ratings, {"q": '"Product 3"'})
    assert {r.product.name for r in response.context["cl"].result_list} == {"Product 3"}


def test_insights_page_shows_the_figures(shop, staff_client):
    from shopreco import insights
    from shopreco.admin.charts import percent

    html = staff_client.get(reverse("admin:shopreco_insights")).content.decode()
    online = insights.online_metrics(since=insights.default_since(30))
    similar = next(w for w in online.widgets if w.widget == "similar")
    assert percent(similar.ctr) in html
    assert percent(insights.long_tail_share()) in html
    concentration = insights.served_concentration()
    assert percent(concentration.coverage) in html and f"{concentration.gini:.2f}" in html
    assert "Product 6" in html  # the most recommended product
    assert html.count("<svg") >= 9  # six offline charts, two widget charts, top products
    assert not re.search(r"<script[^>]+src=\"https?://", html)  # no CDN


def test_insights_charts_one_line_per_algorithm_and_protocol(shop, staff_client):
    from datetime import timedelta

    from shopreco.models import RecomputeRun

    for hours, (algorithm, protocol, folds) in enumerate(
            [("item", "cv", 5), ("user", "cv", 5), ("item", "cv", 3), ("item", "cv", 5)], 1):
        RecomputeRun.objects.create(
            kind="evaluation", status="succeeded", algorithm=algorithm,
            params={"algorithm": algorithm, "protocol": protocol, "folds": folds},
            finished_at=shop["now"] + timedelta(hours=hours),
            metrics={"rmse": 0.9 + hours / 100})
    html = staff_client.get(reverse("admin:shopreco_insights")).content.decode()
    rmse = html[html.index('aria-label="RMSE"'):]
    rmse = rmse[:rmse.index("</svg>")]
    # lines: the fixture's three runs (no parameters) and the two item 5-fold runs; the one
    # user run and the one 3-fold run are markers, not joined to anything
    assert rmse.count("<polyline") == 2 and rmse.count("<circle") == 7
    for label in ("unknown algorithm", "item · cv, 5 folds", "user · cv, 5 folds",
                  "item · cv, 3 folds"):
        assert f"<title>{label}</title>" in rmse
    assert "latest evaluation" in html and "(item · cv, 5 folds)" in html


def test_progress_page_names_the_run_once(shop, staff_client):
    url = reverse("admin:shopreco_recomputerun_progress", args=[shop["full"].pk])
    html = staff_client.get(url).content.decode()
    assert f"Progress of Recompute run #{shop['full'].pk}" in html
    assert "(full, succeeded)" not in html


def test_insights_rejects_a_bad_window_with_a_message(shop, staff_client):
    response = staff_client.get(reverse("admin:shopreco_insights"), {"days": "-3"})
    assert response.status_code == 200
    assert response.context["days"] == 30
    assert "Online metrics over the last (days)" in response.content.decode()
    assert response.context["form"].errors["days"]


def test_insights_renders_on_an_empty_shop(db, staff_client):
    response = staff_client.get(reverse("admin:shopreco_insights"))
    assert response.status_code == 200
    assert "No recompute has run yet" in response.content.decode()


def test_progress_page_refreshes_only_while_running(shop, staff_client):
    url = reverse("admin:shopreco_recomputerun_progress", args=[shop["full"].pk])
    assert 'http-equiv="refresh"' not in staff_client.get(url).content.decode()
    from shopreco.models import RecomputeRun

    running = RecomputeRun.objects.create(kind="full", status="running", stage="similarities",
                                          progress=40)
    url = reverse("admin:shopreco_recomputerun_progress", args=[running.pk])
    html = staff_client.get(url).content.decode()
    assert 'http-equiv="refresh"' in html and 'value="40"' in html


def test_progress_page_rounds_metrics(shop, staff_client):
    from shopreco.models import RecomputeRun

    run = RecomputeRun.objects.create(kind="evaluation", status="succeeded",
                                      metrics={"rmse": 0.987654321, "folds": [1, 2]},
                                      counts={"n_ratings": 12026})
    html = staff_client.get(
        reverse("admin:shopreco_recomputerun_progress", args=[run.pk])).content.decode()
    assert "0.9877" in html and "0.987654321" not in html
    assert "12026" in html and "[1, 2]" in html


def test_result_tables_show_relevance_within_the_list_not_raw_scores(shop, staff_client):
    """Stored scores are on the model's scale (12.18 next to 1-5 ratings meant nothing): the
    admin shows score / the list's best, as the storefront and the API do."""
    user = shop["users"][0]
    Recommendation.objects.filter(user=user).update(score=F("score") * 12.18)  # 12.18, 6.09...
    response = staff_client.get(reverse("admin:shopreco_recommendation_changelist"),
                                {"user__id__exact": user.pk})
    html = response.content.decode()
    cells = re.findall(r'<td class="field-relevance"><span title="model score ([^"]+)">'
                       r'([^<]+)</span>', html)
    assert cells == [("12.18", "1.00"), ("6.09", "0.50"), ("4.06", "0.33")]
    a, b, c = shop["products"][:3]
    for similar, score in ((b, 0.8), (c, 0.2)):
        ItemSimilarity.objects.create(run=shop["full"], kind="similar", product=a,
                                      similar_product=similar, score=score)
    html = staff_client.get(reverse("admin:shopreco_itemsimilarity_changelist")).content.decode()
    assert sorted(re.findall(r'field-relevance"><span title="[^"]+">([^<]+)<', html)) == [
        "0.25", "1.00"]
