"""The insights page: what the recommender computed, how it scores offline, and what shoppers
did with it. Every figure comes from :mod:`shopreco.insights`; this module only lays it out."""

from __future__ import annotations

from django import forms
from django.contrib.admin import AdminSite
from django.contrib.admin.exceptions import NotRegistered
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _
from django.views.generic import TemplateView

from shopreco import insights
from shopreco.adapter import get_adapter
from shopreco.admin.charts import bar_chart, lines_chart, percent
from shopreco.models import RecomputeRun


class WindowForm(forms.Form):
    days = forms.IntegerField(
        label=_("Online metrics over the last (days)"), min_value=1, max_value=3650, initial=30
    )


def _fmt_percent(value: float | None) -> str:
    return percent(value)


class InsightsView(TemplateView):
    """Staff-only (wrapped in ``admin_site.admin_view``) dashboard at ``shopreco/insights/``."""

    template_name = "admin/shopreco/insights.html"
    admin_site: AdminSite | None = None
    recent_runs = 8
    top_products = 10

    def _url(self, name: str, *args) -> str | None:
        try:
            return reverse(f"{self.admin_site.name}:{name}", args=args)
        except NoReverseMatch:
            return None

    def get_context_data(self, **kwargs):
        request = self.request
        form = WindowForm(request.GET or None)
        days = form.cleaned_data["days"] if form.is_valid() else 30
        since = insights.default_since(days)

        runs = insights.last_runs(self.recent_runs)
        for summary in runs:
            summary.url = self._url("shopreco_recomputerun_progress", summary.run.pk)
        served = RecomputeRun.latest_succeeded()

        # One line per algorithm and protocol: their figures are not one trend.
        series = insights.offline_metric_series()
        style: dict[tuple, int] = {}  # one colour per setup across every chart
        for lines in series.values():
            for line in lines:
                style.setdefault(line.key, len(style))
        offline_charts = [
            lines_chart(
                [(line.label, [(p.at, p.value) for p in line.points]) for line in series[key]],
                title=str(label),
                styles=[style[line.key] for line in series[key]],
            )
            for key, label in insights.OFFLINE_METRICS
        ]
        evaluations = insights.last_runs(1, kind=RecomputeRun.Kind.EVALUATION)
        evaluation_setup = (
            insights.setup_label(insights.evaluation_setup(evaluations[0].run))
            if evaluations else ""
        )

        online = insights.online_metrics(since=since)
        for w in online.widgets:
            w.display = {
                "ctr": percent(w.ctr),
                "cart_rate": percent(w.cart_rate),
                "purchase_rate": percent(w.purchase_rate),
                "revenue_share": percent(w.revenue_share),
            }
        widgets = [w for w in online.widgets if w.widget != insights.UNATTRIBUTED]
        ctr_chart = bar_chart(
            [(w.widget, w.ctr) for w in widgets],
            title=str(_("Click-through rate per widget")),
            fmt=_fmt_percent,
        )
        revenue_chart = bar_chart(
            [(w.widget, w.revenue_share) for w in widgets],
            title=str(_("Share of revenue per widget")),
            fmt=_fmt_percent,
        )

        adapter = get_adapter()
        top = insights.most_recommended(served, self.top_products)
        for row in top:
            row.name = (
                adapter.get_name(row.product) if row.product is not None else f"#{row.product_id}"
            )
            row.share_display = percent(row.share_of_users)
        for summary in runs:
            summary.coverage_display = percent(summary.coverage)
        top_chart = bar_chart(
            [
                (row.name, row.recommendations,
                 f"{row.recommendations:,} lists · {row.share_display} of users")
                for row in top
            ],
            title=str(_("Products in the most personal lists (served run)")),
            label_width=270,
            width=880,
            right=170,
        )

        concentration = insights.served_concentration(served)
        selection_labels, selection = insights.selection_history()
        for row in selection:
            row.url = self._url("shopreco_recomputerun_progress", row.run.pk)
            row.cells = [row.values.get(label) for label in selection_labels]

        try:
            buttons = self.admin_site.get_model_admin(RecomputeRun).run_buttons_context(request)
        except (NotRegistered, AttributeError):  # not registered, or a host's own ModelAdmin
            buttons = {}

        return {
            **super().get_context_data(**kwargs),
            **self.admin_site.each_context(request),
            **buttons,
            "title": _("Recommendation insights"),
            "app_label": "shopreco",
            "app_url": self._url("app_list", "shopreco"),
            "runs_url": self._url("shopreco_recomputerun_changelist"),
            "form": form,
            "days": days,
            "since": since,
            "runs": runs,
            "served": served,
            "selection": selection,
            "selection_labels": selection_labels,
            "offline_charts": offline_charts,
            "evaluation": evaluations[0] if evaluations else None,
            "evaluation_setup": evaluation_setup,
            "online": online,
            "widgets": online.widgets,
            "ctr_chart": ctr_chart,
            "revenue_chart": revenue_chart,
            "top": top,
            "top_chart": top_chart,
            "served_coverage": percent(
                insights.metric_value(served.metrics or {}, "coverage") if served else None
            ),
            "long_tail": percent(insights.long_tail_share(served)),
            "concentration": concentration,
            "concentration_display": {
                "coverage": percent(concentration.coverage),
                "gini": "n/a" if concentration.gini is None else f"{concentration.gini:.2f}",
                "top_share": percent(concentration.top_share),
            },
            "attributed_share": percent(online.attributed_share),
        }
