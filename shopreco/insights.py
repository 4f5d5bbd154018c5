"""The figures behind the admin's insights page, computed with the ORM from shopreco's own rows.

Kept apart from the admin views so that every number on the page can be checked by a test
against the rows it came from, and reused by a host's own dashboards. Definitions:

* **clicks / carts / purchases** of a widget: ``Interaction`` rows of kind ``view`` / ``cart`` /
  ``purchase`` whose ``recommendation_id`` names an ``Impression`` of that widget.
* **CTR** = clicks / impressions (lists shown); **cart rate** and **purchase rate** = carts and
  purchases per impression.
* **revenue share** = revenue of the widget's purchases / revenue of all purchases in the window,
  each purchase at its recorded ``amount`` (``shopreco.track(..., amount=)``: the order line's
  price times its quantity), else at the adapter's ``get_price`` (products without a price are
  left out).
* **long-tail share** = share of a run's recommendations whose product is outside the head: the
  top 20% of the catalogue by popularity (ratings + events), ties broken by primary key.
* **concentration of the served lists** (top ``k`` of every personal list of a run): coverage =
  products in some list / products in the catalogue; Gini of exposure over the whole
  catalogue (0: every product shown equally often, 1: one product takes every slot); the
  largest share of shoppers whose list holds one same product.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.utils import timezone

from shopreco.adapter import get_adapter
from shopreco.conf import get_product_model, reco_settings
from shopreco.engine.evaluate import gini
from shopreco.models import (
    CART_KIND,
    VIEW_KIND,
    Assignment,
    ExperimentArm,
    Impression,
    Interaction,
    Rating,
    Recommendation,
    RecomputeRun,
)

UNATTRIBUTED = "(unknown widget)"

# Offline metrics charted over time: canonical key -> label. Evaluation runs may spell the keys
# differently ("precision@10", "precision_at_10", ...); metric_value() normalises them.
OFFLINE_METRICS: list[tuple[str, str]] = [
    ("rmse", "RMSE"),
    ("precision@10", "Precision@10"),
    ("ndcg@10", "NDCG@10"),
    ("coverage", "Catalogue coverage"),
    ("popularity_bias", "Popularity bias (mean)"),
    ("gini", "Popularity bias (Gini)"),
]
_ALIASES: dict[str, tuple[str, ...]] = {
    "rmse": ("rmse",),
    "precision@10": ("precision10", "precisionat10", "p10", "pat10"),
    "ndcg@10": ("ndcg10", "ndcgat10"),
    "coverage": ("coverage", "catalogcoverage", "cataloguecoverage", "itemcoverage"),
    "gini": ("gini", "giniindex", "ginicoefficient"),
    "popularity_bias": (
        "popularitybias",
        "meanpopularity",
        "popularitymean",
        "avgpopularity",
        "averagepopularity",
        "popularity",
    ),
}


def _norm(key: str) -> str:
    return "".join(ch for ch in str(key).lower() if ch.isalnum())


def _number(value: Any) -> float | None:
    """A metric value as a float: plain numbers, or the ``mean`` of a {mean, std} dict."""
    if isinstance(value, dict):
        value = value.get("mean", value.get("value"))
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def metric_value(metrics: dict, canonical: str) -> float | None:
    """Looks ``canonical`` up in a run's metrics, tolerating spelling and one level of nesting
    (e.g. ``{"item": {"rmse": ...}}`` or ``{"metrics": {...}}``)."""
    if not isinstance(metrics, dict):
        return None
    aliases = _ALIASES.get(canonical, (_norm(canonical),))
    flat = {_norm(k): v for k, v in metrics.items()}
    for alias in aliases:
        if alias in flat:
            found = _number(flat[alias])
            if found is not None:
                return found
    for value in metrics.values():
        if isinstance(value, dict) and not {"mean", "value"} & set(value):
            found = metric_value(value, canonical)
            if found is not None:
                return found
    return None


def _ratio(numerator: float | Decimal, denominator: float | Decimal) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


# --- runs --------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    run: RecomputeRun
    duration: float | None  # seconds
    users: int | None
    products: int | None
    recommendations: int | None
    coverage: float | None


def run_duration(run: RecomputeRun) -> float | None:
    """Wall-clock seconds of a run: finished - started, else the pipeline's ``timings.total``."""
    if run.duration is not None:
        return run.duration.total_seconds()
    return _number((run.timings or {}).get("total"))


def last_runs(limit: int = 10, kind: str = RecomputeRun.Kind.FULL) -> list[RunSummary]:
    """The newest runs of ``kind``, newest first, with the figures a shop owner checks first."""
    runs = RecomputeRun.objects.filter(kind=kind).order_by("-created_at", "-id")[:limit]
    out = []
    for run in runs:
        counts = run.counts or {}
        out.append(
            RunSummary(
                run=run,
                duration=run_duration(run),
                users=counts.get("users"),
                products=counts.get("products"),
                recommendations=counts.get("recommendations"),
                coverage=metric_value(run.metrics or {}, "coverage"),
            )
        )
    return out


@dataclass
class SelectionRow:
    """One full run's holdout comparison: the gate metric of each configuration scored."""

    run: RecomputeRun
    metric: str
    chosen: str
    live: str | None
    values: dict[str, float]  # configuration label -> gate metric
    decision: str  # "deployed", "rejected" or why nothing was compared


def selection_history(limit: int = 12) -> tuple[list[str], list[SelectionRow]]:
    """(configuration labels, rows): the holdout comparisons of the newest full runs, newest
    first, so an owner sees which model won when, and by how much."""
    out: list[SelectionRow] = []
    labels: list[str] = []
    runs = RecomputeRun.objects.filter(kind=RecomputeRun.Kind.FULL,
                                       metrics__has_key="holdout").order_by("-pk")[:limit]
    for run in runs:
        report = run.metrics["holdout"]
        key = report.get("metric", "ndcg@10")
        values = {row["label"]: row["metrics"].get(key) for row in report.get("rows", [])}
        for label in values:
            if label not in labels:
                labels.append(label)
        decision = ("rejected" if run.status == RecomputeRun.Status.REJECTED
                    else report.get("skipped") or run.status)
        out.append(SelectionRow(run=run, metric=key, chosen=report.get("chosen", ""),
                                live=report.get("live"), values=values, decision=decision))
    return labels, out


@dataclass
class MetricPoint:
    run: RecomputeRun
    at: datetime
    value: float


def offline_metrics(limit: int = 50) -> dict[str, list[MetricPoint]]:
    """Series per offline metric from the last ``limit`` succeeded evaluation runs, oldest
    first; a run missing a metric simply has no point in that series."""
    runs = list(
        RecomputeRun.objects.filter(
            kind=RecomputeRun.Kind.EVALUATION, status=RecomputeRun.Status.SUCCEEDED
        ).order_by("-finished_at", "-created_at", "-id")[:limit]
    )
    runs.reverse()
    series: dict[str, list[MetricPoint]] = {key: [] for key, _ in OFFLINE_METRICS}
    for run in runs:
        for key, _ in OFFLINE_METRICS:
            value = metric_value(run.metrics or {}, key)
            if value is not None:
                series[key].append(MetricPoint(run, run.finished_at or run.created_at, value))
    return series


@dataclass
class MetricSeries:
    """The points of one offline metric measured one way: one line on a chart."""

    key: tuple[str, str, int | None, str]  # (algorithm, protocol, folds, source)
    label: str
    points: list[MetricPoint] = field(default_factory=list)


def evaluation_setup(run: RecomputeRun) -> tuple[str, str, int | None, str]:
    """(algorithm, protocol, folds, source) of an evaluation run: the runs whose figures are
    comparable. Another algorithm, protocol, fold count or data set measures something else,
    so its figures form a line of their own rather than a zig-zag in a shared one. Runs
    stored before evaluations recorded their parameters fall back to ``run.algorithm``."""
    params = run.params if isinstance(run.params, dict) else {}
    algorithm = str(params.get("algorithm") or run.algorithm or "").removeprefix("served:")
    protocol = str(params.get("protocol") or "")
    folds = params.get("folds") if protocol == "cv" else None
    try:
        folds = int(folds) if folds is not None else None
    except (TypeError, ValueError):
        folds = None
    source = str(params.get("source") or "shop")
    return algorithm, protocol, folds, source


def setup_label(setup: tuple[str, str, int | None, str]) -> str:
    """A line's name in a chart legend, in the words of ``shopreco_evaluate``'s options:
    "item · holdout", "item · cv, 5 folds", "user · temporal · ratings.csv"."""
    algorithm, protocol, folds, source = setup
    parts = [algorithm or "unknown algorithm"]
    if protocol:
        parts.append(f"{protocol}, {folds} folds" if folds else protocol)
    if source != "shop":
        parts.append(source.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or source)
    return " · ".join(parts)


def offline_metric_series(limit: int = 50) -> dict[str, list[MetricSeries]]:
    """:func:`offline_metrics` split into one series per :func:`evaluation_setup`, each
    oldest first; series are ordered by their first point (a chart's legend stays put as
    new runs arrive)."""
    series: dict[str, list[MetricSeries]] = {}
    for key, points in offline_metrics(limit).items():
        lines: dict[tuple, MetricSeries] = {}
        for point in points:
            setup = evaluation_setup(point.run)
            if setup not in lines:
                lines[setup] = MetricSeries(setup, setup_label(setup))
            lines[setup].points.append(point)
        series[key] = list(lines.values())
    return series


# --- online metrics ----------------------------------------------------------------------------


@dataclass
class WidgetStats:
    widget: str
    impressions: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    revenue: Decimal = Decimal(0)
    total_revenue: Decimal = Decimal(0)

    @property
    def ctr(self) -> float | None:
        return _ratio(self.clicks, self.impressions)

    @property
    def cart_rate(self) -> float | None:
        return _ratio(self.carts, self.impressions)

    @property
    def purchase_rate(self) -> float | None:
        return _ratio(self.purchases, self.impressions)

    @property
    def revenue_share(self) -> float | None:
        return _ratio(self.revenue, self.total_revenue)


@dataclass
class OnlineMetrics:
    since: datetime | None
    widgets: list[WidgetStats] = field(default_factory=list)
    total_revenue: Decimal = Decimal(0)
    total_purchases: int = 0
    unpriced_purchases: int = 0

    @property
    def attributed_revenue(self) -> Decimal:
        return sum((w.revenue for w in self.widgets), Decimal(0))

    @property
    def attributed_share(self) -> float | None:
        return _ratio(self.attributed_revenue, self.total_revenue)


# Purchases of a product in a group: how many, how many without a recorded amount, and the
# sum of the recorded amounts.
_BOUGHT = {"n": Count("id"), "unvalued": Count("id", filter=Q(amount__isnull=True)),
           "paid": Sum("amount")}


@dataclass
class _Bought:
    n: int
    unvalued: int
    paid: Decimal | None

    def revenue(self, price: Decimal | None) -> tuple[Decimal, int]:
        """(revenue, purchases left unpriced): recorded amounts, plus the product's price for
        each purchase recorded without one."""
        total = Decimal(self.paid or 0)
        if not self.unvalued:
            return total, 0
        if price is None:
            return total, self.unvalued
        return total + price * self.unvalued, 0


def _prices(product_ids: set) -> dict[Any, Decimal | None]:
    adapter = get_adapter()
    products = get_product_model()._default_manager.in_bulk(list(product_ids))
    out = {}
    for pk in product_ids:
        product = products.get(pk)
        price = adapter.get_price(product) if product is not None else None
        out[pk] = Decimal(str(price)) if price is not None else None
    return out


def online_metrics(since: datetime | None = None, until: datetime | None = None) -> OnlineMetrics:
    """Impressions, clicks, carts, purchases and revenue per widget between ``since`` and
    ``until`` (both optional), from tracked events."""
    impressions = Impression.objects.all()
    events = Interaction.objects.all()
    if since is not None:
        impressions = impressions.filter(created_at__gte=since)
        events = events.filter(created_at__gte=since)
    if until is not None:
        impressions = impressions.filter(created_at__lt=until)
        events = events.filter(created_at__lt=until)

    stats: dict[str, WidgetStats] = {}

    def widget(name: str | None) -> WidgetStats:
        name = name or UNATTRIBUTED
        if name not in stats:
            stats[name] = WidgetStats(widget=name)
        return stats[name]

    for row in impressions.values("widget").annotate(n=Count("id")).order_by():
        widget(row["widget"]).impressions = row["n"]

    owned = list(reco_settings.OWNED_EVENT_KINDS)  # purchases, whatever the shop calls them
    widget_of = Impression.objects.filter(recommendation_id=OuterRef("recommendation_id"))
    attributed = (
        events.filter(recommendation_id__isnull=False, kind__in=(VIEW_KIND, CART_KIND, *owned))
        .exclude(recommendation_id="")
        .annotate(shown_in=Subquery(widget_of.values("widget")[:1]))
    )
    for row in attributed.values("shown_in", "kind").annotate(n=Count("id")).order_by():
        attr = ("clicks" if row["kind"] == VIEW_KIND else "carts" if row["kind"] == CART_KIND
                else "purchases")
        target = widget(row["shown_in"])
        setattr(target, attr, getattr(target, attr) + row["n"])

    # Revenue: a purchase's recorded amount, else its product's price through the adapter
    # (counted per product, priced once per product).
    all_purchases = {
        row["product"]: _Bought(row["n"], row["unvalued"], row["paid"])
        for row in events.filter(kind__in=owned).values("product")
        .annotate(**_BOUGHT).order_by()
    }
    by_widget: dict[str | None, dict[Any, _Bought]] = defaultdict(dict)
    for row in (
        attributed.filter(kind__in=owned)
        .values("shown_in", "product")
        .annotate(**_BOUGHT)
        .order_by()
    ):
        by_widget[row["shown_in"]][row["product"]] = _Bought(row["n"], row["unvalued"],
                                                             row["paid"])
    prices = _prices({pk for pk, b in all_purchases.items() if b.unvalued})

    result = OnlineMetrics(since=since)
    for pk, bought in all_purchases.items():
        result.total_purchases += bought.n
        revenue, unpriced = bought.revenue(prices.get(pk))
        result.total_revenue += revenue
        result.unpriced_purchases += unpriced
    for name, counts in by_widget.items():
        target = widget(name)
        target.revenue = sum((b.revenue(prices.get(pk))[0] for pk, b in counts.items()),
                             Decimal(0))
    for item in stats.values():
        item.total_revenue = result.total_revenue
    result.widgets = sorted(
        stats.values(), key=lambda w: (w.widget == UNATTRIBUTED, -w.impressions, w.widget)
    )
    return result


def default_since(days: int = 30, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=days)


# --- what the latest run recommends ----------------------------------------------------------


@dataclass
class ProductCount:
    product: Any  # the host's product instance (None if it was deleted since)
    product_id: Any
    recommendations: int
    share_of_users: float | None


def _served_run(run: RecomputeRun | None) -> RecomputeRun | None:
    return run if run is not None else RecomputeRun.latest_succeeded()


def most_recommended(run: RecomputeRun | None = None, limit: int = 10) -> list[ProductCount]:
    """Products appearing in the most personal lists of ``run`` (default: the served run)."""
    run = _served_run(run)
    if run is None:
        return []
    recs = Recommendation.objects.filter(run=run)
    users = recs.values("user").distinct().count()
    rows = list(
        recs.values("product").annotate(n=Count("id")).order_by("-n", "product")[:limit]
    )
    products = get_product_model()._default_manager.in_bulk([r["product"] for r in rows])
    return [
        ProductCount(
            product=products.get(r["product"]),
            product_id=r["product"],
            recommendations=r["n"],
            share_of_users=_ratio(r["n"], users),
        )
        for r in rows
    ]


@dataclass
class Concentration:
    k: int
    coverage: float | None
    gini: float | None
    top_share: float | None  # shoppers whose top k holds the most shown product


def served_concentration(run: RecomputeRun | None = None, k: int = 10) -> Concentration:
    """How concentrated the top ``k`` of ``run``'s personal lists are (see the module
    docstring): what the popularity penalty (``POPULARITY_PENALTY``) trades against."""
    run = _served_run(run)
    if run is None:
        return Concentration(k, None, None, None)
    top = Recommendation.objects.filter(run=run, rank__lte=k)
    counts = [row["n"] for row in top.values("product").annotate(n=Count("id")).order_by()]
    catalogue = get_product_model()._default_manager.count()
    users = top.values("user").distinct().count()
    if not counts or not catalogue:
        return Concentration(k, None, None, None)
    padded = counts + [0] * max(catalogue - len(counts), 0)
    return Concentration(k, coverage=len(counts) / catalogue, gini=gini(padded),
                         top_share=_ratio(max(counts), users))


def product_popularity() -> dict[Any, int]:
    """Ratings + events per product (all time), for products that have any."""
    popularity: dict[Any, int] = defaultdict(int)
    for model in (Rating, Interaction):
        for row in model.objects.values("product").annotate(n=Count("id")).order_by():
            popularity[row["product"]] += row["n"]
    return dict(popularity)


def head_products(head_fraction: float = 0.2) -> set:
    """The most popular ``head_fraction`` of the catalogue (ceil), only products with activity."""
    catalogue = get_product_model()._default_manager.count()
    size = math.ceil(catalogue * head_fraction)
    popularity = product_popularity()
    ranked = sorted(popularity.items(), key=lambda item: (-item[1], item[0]))
    return {pk for pk, _ in ranked[:size]}


def long_tail_share(run: RecomputeRun | None = None, head_fraction: float = 0.2) -> float | None:
    """Share of ``run``'s recommendations outside the popular head (None without any)."""
    run = _served_run(run)
    if run is None:
        return None
    head = head_products(head_fraction)
    total = tail = 0
    for row in (
        Recommendation.objects.filter(run=run).values("product").annotate(n=Count("id")).order_by()
    ):
        total += row["n"]
        if row["product"] not in head:
            tail += row["n"]
    return _ratio(tail, total)


# --- A/B experiments ---------------------------------------------------------------------------
#
# Per arm of an experiment, from its rows:
#
# * **visitors**: shoppers assigned to the arm (``Assignment`` rows; a visitor who signed in
#   and adopted their arm is one row, so one visitor);
# * **impressions**: lists served in the arm (``Impression.arm``);
# * **click-through**: impressions with at least one click (a ``view`` event carrying the
#   list's recommendation id) / impressions; **clicks** counts every such view;
# * **add-to-cart** and **conversion**: visitors with a cart event / a purchase
#   (``OWNED_EVENT_KINDS``) carrying one of the arm's recommendation ids, per visitor;
# * **revenue per visitor**: those purchases at their recorded amount, else priced by the
#   adapter's ``get_price``, per
#   visitor (a visitor without one counts 0).
#
# Proportions have Wilson 95% intervals; revenue per visitor the normal approximation
# (mean +- 1.96 standard errors). Each arm is compared to the first arm (the control) by a
# two-sided two-proportion z-test on click-through, add-to-cart and conversion.

Z95 = 1.959963984540054


@dataclass
class Estimate:
    """A rate or mean with its 95% interval (None when there is nothing to estimate)."""

    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass
class Comparison:
    """A two-proportion z-test of an arm against the control: z, two-sided p, the
    difference of the rates (arm - control)."""

    z: float
    p: float
    difference: float

    @property
    def significant(self) -> bool:
        return self.p < 0.05


def wilson_interval(successes: int, trials: int, z: float = Z95) -> Estimate:
    """The rate ``successes / trials`` with its Wilson score interval: unlike the normal
    approximation it stays inside [0, 1] and is honest for small counts and rates near 0,
    which click and purchase rates are."""
    if trials <= 0:
        return Estimate(None)
    k = min(max(successes, 0), trials)
    p = k / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends (no rounding dust)
    high = 1.0 if k == trials else min(1.0, centre + half)
    return Estimate(p, low, high)


def mean_interval(values: list[float], n: int, z: float = Z95) -> Estimate:
    """The mean over ``n`` units of ``values`` (the nonzero ones; the other units count 0),
    with a normal-approximation interval from the sample standard deviation."""
    if n <= 0:
        return Estimate(None)
    total = sum(values)
    mean = total / n
    if n < 2:
        return Estimate(mean)
    squares = sum(v * v for v in values)
    variance = max(0.0, (squares - n * mean * mean) / (n - 1))
    half = z * math.sqrt(variance / n)
    return Estimate(mean, mean - half, mean + half)


def two_proportion_test(k1: int, n1: int, k2: int, n2: int) -> Comparison | None:
    """Two-sided z-test of rate 2 (``k2 / n2``) against rate 1 with the pooled standard
    error; None when either side has no trials or the pooled rate is 0 or 1."""
    if n1 <= 0 or n2 <= 0:
        return None
    k1, k2 = min(max(k1, 0), n1), min(max(k2, 0), n2)
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    diff = k2 / n2 - k1 / n1
    z = diff / se
    return Comparison(z=z, p=math.erfc(abs(z) / math.sqrt(2)), difference=diff)


@dataclass
class ArmResult:
    arm: Any  # ExperimentArm
    visitors: int = 0
    impressions: int = 0
    clicked_impressions: int = 0
    clicks: int = 0
    carts: int = 0
    carters: int = 0
    purchases: int = 0
    purchasers: int = 0
    revenue: Decimal = Decimal(0)
    unpriced_purchases: int = 0
    revenue_by_visitor: list[float] = field(default_factory=list, repr=False)
    comparisons: dict[str, Comparison | None] = field(default_factory=dict)

    @property
    def ctr(self) -> Estimate:
        return wilson_interval(self.clicked_impressions, self.impressions)

    @property
    def cart_rate(self) -> Estimate:
        return wilson_interval(self.carters, self.visitors)

    @property
    def conversion(self) -> Estimate:
        return wilson_interval(self.purchasers, self.visitors)

    @property
    def revenue_per_visitor(self) -> Estimate:
        return mean_interval(self.revenue_by_visitor,
                             max(self.visitors, len(self.revenue_by_visitor)))

    def counts(self, metric: str) -> tuple[int, int]:
        """(successes, trials) of a proportion metric: "ctr", "cart_rate", "conversion"."""
        return {
            "ctr": (self.clicked_impressions, self.impressions),
            "cart_rate": (self.carters, self.visitors),
            "conversion": (self.purchasers, self.visitors),
        }[metric]


@dataclass
class ExperimentResults:
    experiment: Any  # Experiment
    arms: list[ArmResult] = field(default_factory=list)

    @property
    def control(self) -> ArmResult | None:
        return self.arms[0] if self.arms else None


PROPORTION_METRICS = ("ctr", "cart_rate", "conversion")


def _shopper(user_id: Any, session_key: str) -> str:
    return f"u{user_id}" if user_id is not None else f"s{session_key}"


def experiment_results(experiment: Any) -> ExperimentResults:
    """The per-arm table of ``experiment`` (definitions above), arms in creation order, the
    first being the control every other arm is tested against."""
    arms = list(ExperimentArm.objects.filter(experiment=experiment).order_by("pk"))
    results = {arm.pk: ArmResult(arm=arm) for arm in arms}
    for row in (Assignment.objects.filter(experiment=experiment).values("arm")
                .annotate(n=Count("id")).order_by()):
        if row["arm"] in results:
            results[row["arm"]].visitors = row["n"]
    shown = Impression.objects.filter(arm__experiment=experiment)
    for row in shown.values("arm").annotate(n=Count("id")).order_by():
        if row["arm"] in results:
            results[row["arm"]].impressions = row["n"]

    owned = list(reco_settings.OWNED_EVENT_KINDS)
    arm_of = Impression.objects.filter(recommendation_id=OuterRef("recommendation_id"),
                                       arm__isnull=False)
    events = (
        Interaction.objects.filter(
            recommendation_id__in=shown.values("recommendation_id"),
            kind__in=(VIEW_KIND, CART_KIND, *owned))
        .annotate(shown_in=Subquery(arm_of.values("arm")[:1]))
    )
    rows = (events.values("shown_in", "kind", "recommendation_id", "user_id", "session_key",
                          "product")
            .annotate(**_BOUGHT).order_by())
    lists: dict[int, set] = defaultdict(set)
    carters: dict[int, set] = defaultdict(set)
    buyers: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        target = results.get(row["shown_in"])
        if target is None:
            continue
        who = _shopper(row["user_id"], row["session_key"])
        if row["kind"] == VIEW_KIND:
            target.clicks += row["n"]
            lists[target.arm.pk].add(row["recommendation_id"])
        elif row["kind"] == CART_KIND:
            target.carts += row["n"]
            carters[target.arm.pk].add(who)
        else:
            target.purchases += row["n"]
            buyers[target.arm.pk][who].append(
                (row["product"], _Bought(row["n"], row["unvalued"], row["paid"])))
    prices = _prices({pk for by in buyers.values() for items in by.values()
                      for pk, bought in items if bought.unvalued})
    for pk, target in results.items():
        target.clicked_impressions = len(lists[pk])
        target.carters = len(carters[pk])
        target.purchasers = len(buyers[pk])
        for items in buyers[pk].values():
            spent = Decimal(0)
            for product, bought in items:
                revenue, unpriced = bought.revenue(prices.get(product))
                spent += revenue
                target.unpriced_purchases += unpriced
            target.revenue += spent
            target.revenue_by_visitor.append(float(spent))
    ordered = [results[arm.pk] for arm in arms]
    if ordered:
        control = ordered[0]
        for target in ordered[1:]:
            target.comparisons = {
                metric: two_proportion_test(*control.counts(metric), *target.counts(metric))
                for metric in PROPORTION_METRICS
            }
    return ExperimentResults(experiment=experiment, arms=ordered)
