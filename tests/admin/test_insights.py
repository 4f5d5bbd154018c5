"""Every insights figure equals the same figure computed here, independently, from the rows."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest

from shopreco import insights
from shopreco.models import (
    Deployment,
    Impression,
    Interaction,
    Rating,
    Recommendation,
    RecomputeRun,
)

pytestmark = pytest.mark.django_db


def price(product):
    return None if product.name.startswith("Free sample") else product.price


def expected_online(since):
    widget_of = {i.recommendation_id: i.widget for i in Impression.objects.all()}
    impressions = Counter(i.widget for i in Impression.objects.all() if i.created_at >= since)
    counts = defaultdict(Counter)
    revenue = defaultdict(Decimal)
    total = Decimal(0)
    for e in Interaction.objects.select_related("product"):
        if e.created_at < since:
            continue
        if e.kind == "purchase" and price(e.product) is not None:
            total += price(e.product)
        if not e.recommendation_id:
            continue
        widget = widget_of.get(e.recommendation_id, insights.UNATTRIBUTED)
        counts[widget][e.kind] += 1
        if e.kind == "purchase" and price(e.product) is not None:
            revenue[widget] += price(e.product)
    return impressions, counts, revenue, total


def test_online_metrics_per_widget_match_rows(shop):
    since = shop["now"] - timedelta(days=30)
    impressions, counts, revenue, total = expected_online(since)
    result = insights.online_metrics(since=since)
    by_widget = {w.widget: w for w in result.widgets}

    assert set(by_widget) == set(impressions) | set(counts)
    assert result.total_revenue == total
    for name, stats in by_widget.items():
        assert stats.impressions == impressions[name]
        assert stats.clicks == counts[name]["view"]
        assert stats.carts == counts[name]["cart"]
        assert stats.purchases == counts[name]["purchase"]
        assert stats.revenue == revenue[name]
        if impressions[name]:
            assert stats.ctr == pytest.approx(counts[name]["view"] / impressions[name])
            assert stats.cart_rate == pytest.approx(counts[name]["cart"] / impressions[name])
            assert stats.purchase_rate == pytest.approx(
                counts[name]["purchase"] / impressions[name]
            )
        else:
            assert stats.ctr is None
        assert stats.revenue_share == pytest.approx(float(revenue[name] / total))
    # The fixture exercises each path: clicks, carts, an unknown list, an unpriced purchase.
    assert by_widget["similar"].clicks and by_widget["for-you"].carts
    assert insights.UNATTRIBUTED in by_widget
    assert result.unpriced_purchases == 1


def test_online_window_excludes_old_rows(shop):
    everything = insights.online_metrics()
    recent = insights.online_metrics(since=shop["now"] - timedelta(days=30))
    sim_all = next(w for w in everything.widgets if w.widget == "similar")
    sim_recent = next(w for w in recent.widgets if w.widget == "similar")
    assert sim_all.impressions == sim_recent.impressions + 1
    assert sim_all.clicks == sim_recent.clicks + 1
    assert everything.total_revenue > recent.total_revenue


def test_long_tail_share_matches_rows(shop):
    popularity = Counter(r.product_id for r in Rating.objects.all())
    popularity.update(e.product_id for e in Interaction.objects.all())
    n_products = len(shop["products"])
    head_size = math.ceil(n_products * 0.2)
    ranked = sorted(popularity.items(), key=lambda kv: (-kv[1], kv[0]))
    head = {pk for pk, _ in ranked[:head_size]}
    recs = list(Recommendation.objects.filter(run=shop["full"]))
    expected = sum(r.product_id not in head for r in recs) / len(recs)

    assert insights.long_tail_share() == pytest.approx(expected)
    assert 0 < expected < 1  # the fixture has both head and tail recommendations


def test_served_concentration_matches_rows(shop):
    from shopreco.conf import get_product_model

    recs = list(Recommendation.objects.filter(run=shop["full"], rank__lte=3))
    per_product = Counter(r.product_id for r in recs)
    catalogue = get_product_model()._default_manager.count()
    counts = sorted(list(per_product.values()) + [0] * (catalogue - len(per_product)))
    n = len(counts)
    # Gini by its definition: mean absolute difference over twice the mean
    expected_gini = sum(abs(a - b) for a in counts for b in counts) / (2 * n * sum(counts))
    users = len({r.user_id for r in recs})

    got = insights.served_concentration(k=3)
    assert got.coverage == pytest.approx(len(per_product) / catalogue)
    assert got.gini == pytest.approx(expected_gini)
    assert got.top_share == pytest.approx(max(per_product.values()) / users)
    assert 0 < got.coverage < 1 and 0 < got.gini < 1


def test_most_recommended_matches_rows(shop):
    recs = list(Recommendation.objects.filter(run=shop["full"]))
    counts = Counter(r.product_id for r in recs)
    n_users = len({r.user_id for r in recs})
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]

    top = insights.most_recommended(limit=3)
    assert [(row.product_id, row.recommendations) for row in top] == expected
    assert top[0].share_of_users == pytest.approx(expected[0][1] / n_users)
    assert top[0].product.pk == expected[0][0]


def test_last_runs_and_offline_series(shop):
    runs = insights.last_runs()
    full_runs = list(RecomputeRun.objects.filter(kind="full").order_by("-created_at"))
    assert [s.run.pk for s in runs] == [r.pk for r in full_runs]
    ok = next(s for s in runs if s.run.pk == shop["full"].pk)
    assert ok.duration == pytest.approx(
        (shop["full"].finished_at - shop["full"].started_at).total_seconds()
    )
    assert (ok.users, ok.products, ok.coverage) == (5, 11, 0.4)

    series = insights.offline_metrics()
    evaluations = sorted(shop["evaluations"], key=lambda r: r.finished_at)
    for key in ("rmse", "precision@10", "ndcg@10", "coverage", "popularity_bias", "gini"):
        assert [p.value for p in series[key]] == [r.metrics[key] for r in evaluations]


def test_served_run_is_the_latest_succeeded_full_run(shop):
    newer = RecomputeRun.objects.create(kind="full", status="succeeded",
                                        finished_at=shop["now"])
    Deployment.objects.create(run=newer)
    assert insights.most_recommended() == []  # the newer run has no rows
    assert insights.long_tail_share() is None
    assert insights.most_recommended(run=shop["full"])
    assert newer.pk != shop["full"].pk


@pytest.mark.parametrize(
    "metrics",
    [
        {"precision_at_10": 0.2},
        {"Precision@10": 0.2},
        {"precision@10": {"mean": 0.2, "std": 0.01}},
        {"item": {"precision@10": 0.2}},
    ],
)
def test_metric_spellings(metrics):
    assert insights.metric_value(metrics, "precision@10") == pytest.approx(0.2)


def test_metric_names_of_the_evaluate_command():
    stored = {"catalogue_coverage": 0.59, "mean_popularity": 30.7, "gini": 0.75, "rmse": 1.07}
    assert insights.metric_value(stored, "coverage") == 0.59
    assert insights.metric_value(stored, "popularity_bias") == 30.7
    assert insights.metric_value(stored, "gini") == 0.75


def test_no_data_gives_empty_figures(db):
    assert insights.last_runs() == []
    assert insights.most_recommended() == []
    assert insights.long_tail_share() is None
    result = insights.online_metrics()
    assert result.widgets == [] and result.total_revenue == 0
    assert all(points == [] for points in insights.offline_metrics().values())


def test_offline_series_split_by_algorithm_protocol_and_folds(shop):
    """The fixture's runs recorded no parameters: one line named by what is known. Runs of
    another algorithm, protocol, fold count or data file get lines of their own."""
    base = shop["now"]
    made = []
    for hours, params in enumerate([
        {"algorithm": "item", "protocol": "holdout", "source": "shop"},
        {"algorithm": "user", "protocol": "holdout", "source": "shop"},
        {"algorithm": "item", "protocol": "cv", "folds": 5, "source": "shop"},
        {"algorithm": "item", "protocol": "cv", "folds": 3, "source": "shop"},
        {"algorithm": "item", "protocol": "holdout", "source": "shop"},
        {"algorithm": "item", "protocol": "holdout", "source": "/data/ml/ratings.csv"},
    ], start=1):
        made.append(RecomputeRun.objects.create(
            kind="evaluation", status="succeeded", algorithm=f"served:{params['algorithm']}",
            params=params, finished_at=base + timedelta(hours=hours),
            metrics={"precision@10": hours / 10},
        ))

    lines = insights.offline_metric_series()["precision@10"]
    assert [line.label for line in lines] == [
        "unknown algorithm", "item · holdout", "user · holdout", "item · cv, 5 folds",
        "item · cv, 3 folds", "item · holdout · ratings.csv",
    ]
    by_label = {line.label: [p.run.pk for p in line.points] for line in lines}
    assert by_label["item · holdout"] == [made[0].pk, made[4].pk]
    assert by_label["unknown algorithm"] == [r.pk for r in sorted(
        shop["evaluations"], key=lambda r: r.finished_at)]
    # every point of the flat series is on exactly one line
    flat = insights.offline_metrics()["precision@10"]
    assert sorted(p.run.pk for line in lines for p in line.points) == sorted(
        p.run.pk for p in flat)


def test_evaluation_setup_of_the_evaluate_command(db):
    run = RecomputeRun(kind="evaluation", algorithm="ItemKNN",
                       params={"protocol": "cv", "folds": 5, "algorithm": "item",
                               "source": "shop", "seed": 3})
    assert insights.evaluation_setup(run) == ("item", "cv", 5, "shop")
    served = RecomputeRun(kind="evaluation", algorithm="served:ease",
                          params={"protocol": "temporal", "folds": 5})
    assert insights.evaluation_setup(served) == ("ease", "temporal", None, "shop")
    assert insights.setup_label(("ease", "temporal", None, "shop")) == "ease · temporal"


def test_revenue_uses_the_amount_a_purchase_was_recorded_with(db, product_factory,
                                                              user_factory, rf):
    """A purchase tracked with its amount (the order line's worth) counts that amount; one
    without is priced at the product's current price."""
    from decimal import Decimal

    import shopreco
    from shopreco.models import Impression, Interaction

    cheap, dear = product_factory(price=Decimal("10.00")), product_factory(price=Decimal("80"))
    shopper = user_factory("payer")
    Impression.objects.create(recommendation_id="r" * 32, widget="similar",
                              products=[cheap.pk, dear.pk])
    request = rf.post("/checkout/")
    request.user = shopper
    request.session = {}
    shopreco.track(request, cheap, "purchase", amount="25.50")  # bought at another price
    Interaction.objects.create(user=shopper, product=dear, kind="purchase",
                               recommendation_id="r" * 32, amount=Decimal("60.00"))
    Interaction.objects.create(user=user_factory("other"), product=cheap, kind="purchase")
    result = insights.online_metrics()
    assert result.total_revenue == Decimal("25.50") + Decimal("60.00") + Decimal("10.00")
    similar = next(w for w in result.widgets if w.widget == "similar")
    assert similar.revenue == Decimal("60.00")
    with pytest.raises(ValueError, match="amount"):
        shopreco.track(request, cheap, "purchase", amount="-3")
