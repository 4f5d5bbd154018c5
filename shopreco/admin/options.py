"""ModelAdmins for shopreco's own tables.

Ratings and events are editable (they are the shop's data); similarities, recommendations and
runs are read-only (they are derived, and rewritten by every recompute). Large tables stay fast:
raw id widgets instead of <select>s over every user and product, ``list_select_related``,
no full result count, and filters whose choices come from settings rather than ``DISTINCT``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Model, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from shopreco import tasks
from shopreco.admin.charts import percent
from shopreco.conf import get_product_model, reco_settings
from shopreco.insights import metric_value, run_duration
from shopreco.models import (
    Deployment,
    Impression,
    Interaction,
    ItemSimilarity,
    Rating,
    Reason,
    Recommendation,
    RecomputeRun,
)
from shopreco.pipeline import runs

logger = logging.getLogger(__name__)


def _name_fields(model: type[Model]) -> list[str]:
    names = {f.name for f in model._meta.get_fields()}
    return [n for n in ("name", "title", "sku", "external_id") if n in names]


def user_search_fields(prefix: str = "user") -> list[str]:
    """Search by the user model's username field (and email when it has one)."""
    user_model = get_user_model()
    fields = [f"{prefix}__{user_model.USERNAME_FIELD}"]
    email = user_model.get_email_field_name()
    if email and email != user_model.USERNAME_FIELD:
        fields.append(f"{prefix}__{email}")
    return fields


def product_search_fields(prefix: str = "product") -> list[str]:
    """Search by the host product's name/title/sku fields, whatever it has."""
    return [f"{prefix}__{n}" for n in _name_fields(get_product_model())]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Derived data: visible to staff with view permission, never edited by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class EventKindFilter(admin.SimpleListFilter):
    """Kinds from ``SHOPRECO["EVENT_WEIGHTS"]``: no ``DISTINCT`` over a large events table."""

    title = _("kind")
    parameter_name = "kind"

    def lookups(self, request: HttpRequest,
                model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(k, k) for k in reco_settings.EVENT_WEIGHTS]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(kind=self.value()) if self.value() else queryset


class ScoreFilter(admin.SimpleListFilter):
    """Scores of the configured scale, so the filter costs no query."""

    title = _("score")
    parameter_name = "score"

    def lookups(self, request: HttpRequest,
                model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        low, high = float(reco_settings.RATING_MIN), float(reco_settings.RATING_MAX)
        step = 0.5 if reco_settings.RATING_HALF_STARS else 1.0
        values, v = [], low
        while v <= high + 1e-9:
            values.append(v)
            v += step
        return [(f"{v:g}", f"{v:g}") for v in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value():
            return queryset
        try:
            return queryset.filter(score=float(self.value()))
        except ValueError:
            return queryset.none()


class AttributedFilter(admin.SimpleListFilter):
    title = _("from a recommendation")
    parameter_name = "attributed"

    def lookups(self, request: HttpRequest,
                model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.exclude(recommendation_id__isnull=True).exclude(recommendation_id="")
        if self.value() == "no":
            return queryset.filter(recommendation_id__isnull=True) | queryset.filter(
                recommendation_id=""
            )
        return queryset


class VisitorFilter(admin.SimpleListFilter):
    title = _("visitor")
    parameter_name = "visitor"

    def lookups(self, request: HttpRequest,
                model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("user", _("Signed in")), ("anonymous", _("Anonymous"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "user":
            return queryset.filter(user__isnull=False)
        if self.value() == "anonymous":
            return queryset.filter(user__isnull=True)
        return queryset


class ReasonFilter(admin.SimpleListFilter):
    """The pipeline's reason codes: fixed choices, no ``DISTINCT`` over millions of rows."""

    title = _("reason")
    parameter_name = "reason"

    def lookups(self, request: HttpRequest,
                model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(reason.value, reason.label) for reason in Reason.activity()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(reason=self.value()) if self.value() else queryset


class SearchByUserAndProduct:
    """Search fields computed from the host's user and product models."""

    extra_search_fields: tuple[str, ...] = ()

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return [
            *user_search_fields(),
            *product_search_fields(),
            *self.extra_search_fields,
        ]


@admin.register(Rating)
class RatingAdmin(SearchByUserAndProduct, admin.ModelAdmin):
    list_display = ("user", "product", "score", "created_at", "updated_at")
    list_filter = (ScoreFilter, "created_at")
    raw_id_fields = ("user", "product")
    list_select_related = ("user", "product")
    show_full_result_count = False
    ordering = ("-created_at",)
    search_help_text = _("Search by user name or e-mail, or by product name.")


@admin.register(Interaction)
class InteractionAdmin(SearchByUserAndProduct, admin.ModelAdmin):
    list_display = ("created_at", "kind", "visitor", "product", "short_recommendation_id")
    list_filter = (EventKindFilter, "created_at", AttributedFilter, VisitorFilter)
    raw_id_fields = ("user", "product")
    list_select_related = ("user", "product")
    show_full_result_count = False
    ordering = ("-created_at",)
    extra_search_fields = ("=session_key", "=recommendation_id")
    search_help_text = _(
        "Search by user name or e-mail, product name, or an exact session key or recommendation id."
    )

    @admin.display(description=_("visitor"), ordering="user")
    def visitor(self, obj: Interaction) -> str:
        if obj.user_id:
            return str(obj.user)
        return _("session %(key)s") % {"key": (obj.session_key or "?")[:8]}

    @admin.display(description=_("recommendation"), ordering="recommendation_id")
    def short_recommendation_id(self, obj: Interaction) -> str:
        return obj.recommendation_id[:12] if obj.recommendation_id else "-"


@admin.register(Impression)
class ImpressionAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "widget", "user", "recommendation_id", "shown")
    list_filter = ("widget", "created_at")
    raw_id_fields = ("user",)
    list_select_related = ("user",)
    show_full_result_count = False
    ordering = ("-created_at",)
    search_fields = ("=recommendation_id",)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return [*user_search_fields(), "=recommendation_id", "=session_key"]

    @admin.display(description=_("products shown"))
    def shown(self, obj: Impression) -> int:
        return len(obj.products or [])


def _relevance(obj: Model) -> str:
    """A stored score as a relevance in [0, 1] within its list (score / the list's best), as
    the storefront and the API show it; the model's raw score is in the tooltip."""
    best = getattr(obj, "_best_score", None)
    value = obj.score / best if best and best > 0 and obj.score > 0 else 0.0
    return format_html('<span title="{}">{}</span>', _("model score %(score)s") % {
        "score": f"{obj.score:.4g}"}, f"{min(value, 1.0):.2f}")


@admin.register(ItemSimilarity)
class ItemSimilarityAdmin(ReadOnlyAdmin):
    list_display = ("product", "kind", "similar_product", "relevance", "run")
    list_filter = ("kind", "run")
    raw_id_fields = ("run", "product", "similar_product")
    list_select_related = ("product", "similar_product", "run")
    show_full_result_count = False
    ordering = ("run", "kind", "product", "-score")

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return [*product_search_fields("product"), *product_search_fields("similar_product")]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The best score of each row's list: one index lookup per row shown.
        best = ItemSimilarity.objects.filter(
            run=OuterRef("run"), kind=OuterRef("kind"), product=OuterRef("product"),
        ).order_by("-score").values("score")[:1]
        return super().get_queryset(request).annotate(_best_score=Subquery(best))

    @admin.display(description=_("relevance"), ordering="score")
    def relevance(self, obj: ItemSimilarity) -> str:
        return _relevance(obj)


@admin.register(Recommendation)
class RecommendationAdmin(SearchByUserAndProduct, ReadOnlyAdmin):
    list_display = ("user", "rank", "product", "relevance", "reason", "reason_product", "run")
    list_filter = ("run", ReasonFilter)
    raw_id_fields = ("run", "user", "product", "reason_product")
    list_select_related = ("user", "product", "reason_product", "run")
    show_full_result_count = False
    ordering = ("run", "user", "rank")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The best score of each row's list (the user's list in that run).
        best = Recommendation.objects.filter(
            run=OuterRef("run"), user=OuterRef("user"),
        ).order_by("-score").values("score")[:1]
        return super().get_queryset(request).annotate(_best_score=Subquery(best))

    @admin.display(description=_("relevance"), ordering="score")
    def relevance(self, obj: Recommendation) -> str:
        return _relevance(obj)


def _display_value(value: Any) -> str:
    """Figures of a run for people: 4 decimals for floats, JSON for nested values."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _figures(values: dict | None) -> list[tuple[str, str]]:
    return [(key, _display_value(v)) for key, v in sorted((values or {}).items())]


def _pretty_json(value: Any) -> str:
    if not value:
        return "-"
    return format_html(
        '<pre class="shopreco-json">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, default=str),
    )


def holdout_table(run: RecomputeRun) -> dict | None:
    """The holdout comparison of a full run for its page: one row per configuration (the
    candidates and the live run's), its metrics, which was chosen, which is live, and the
    gate's decision in a sentence. None when the run has no holdout report."""
    report = (run.metrics or {}).get("holdout")
    if not report:
        return None
    key = report.get("metric", "ndcg@10")
    cut = key.partition("@")[2] or "10"
    columns = [key] + [m for m in (f"precision@{cut}", f"recall@{cut}", f"hit_rate@{cut}",
                                   "coverage") if m != key]
    rows = [{"label": row["label"], "chosen": row.get("chosen"), "live": row.get("live"),
             "candidate": row.get("candidate", True),
             "values": [row["metrics"].get(c) for c in columns]}
            for row in report.get("rows", [])]
    if run.status == RecomputeRun.Status.REJECTED:
        decision = _("Rejected: %(reason)s.") % {"reason": report.get("rejected", "")}
    elif "skipped" in report:
        decision = _("No comparison: %(why)s; %(chosen)s went live.") % {
            "why": report["skipped"], "chosen": report.get("chosen", run.algorithm)}
    else:
        tolerance = report.get("tolerance")
        decision = _("%(chosen)s chosen by %(metric)s on the latest interactions of "
                     "%(users)s shoppers held out%(gate)s.") % {
            "chosen": report.get("chosen", run.algorithm), "metric": key,
            "users": report.get("users", 0),
            "gate": "" if tolerance is None else _(
                "; it passed the gate (no more than %(tol)s below the live run's)") % {
                "tol": percent(tolerance)}}
    return {"columns": columns, "rows": rows, "decision": decision,
            "seconds": report.get("seconds")}


def run_name(run: RecomputeRun) -> str:
    """A run's name for people, e.g. "Recompute run #8": ``str(run)`` ("Run #8 (full,
    succeeded)") repeats the status that the sentence around it already says."""
    if run.kind == RecomputeRun.Kind.EVALUATION:
        return _("Evaluation run #%(pk)s") % {"pk": run.pk}
    if run.kind == RecomputeRun.Kind.ARM:
        return _("Experiment arm run #%(pk)s") % {"pk": run.pk}
    return _("Recompute run #%(pk)s") % {"pk": run.pk}


def run_sentence(run: RecomputeRun) -> str:
    """Where a run stands, as a sentence: a status is a state ("is running") or an outcome
    ("succeeded"), never "is succeeded"."""
    name = run_name(run)
    if run.status == RecomputeRun.Status.SUCCEEDED:
        return _("%(run)s succeeded.") % {"run": name}
    if run.status == RecomputeRun.Status.REJECTED:
        reason = ((run.metrics or {}).get("holdout") or {}).get("rejected", "")
        return _("%(run)s was not deployed: the holdout gate rejected it (%(reason)s). The "
                 "live run keeps serving.") % {"run": name, "reason": reason}
    if run.status == RecomputeRun.Status.FAILED:
        error = (run.error or "").strip().splitlines()
        if error:
            return _("%(run)s failed: %(error)s") % {"run": name, "error": error[-1][:300]}
        return _("%(run)s failed.") % {"run": name}
    if run.status == RecomputeRun.Status.RUNNING:
        if run.stage:
            return _("%(run)s is running (%(stage)s, %(progress)d%%).") % {
                "run": name, "stage": run.stage, "progress": int(run.progress or 0)}
        return _("%(run)s is running.") % {"run": name}
    return _("%(run)s is queued.") % {"run": name}


@admin.register(RecomputeRun)
class RecomputeRunAdmin(ReadOnlyAdmin):
    """Runs, with "Recompute now" / "Evaluate now" buttons and a live progress page."""

    change_list_template = "admin/shopreco/recomputerun/change_list.html"
    list_display = (
        "run_number",
        "kind",
        "status_badge",
        "live",
        "stage",
        "progress_bar",
        "duration_display",
        "size",
        "coverage",
        "created_at",
    )
    list_display_links = ("run_number",)
    list_filter = ("kind", "status", "created_at")
    actions = ["activate_selected"]
    ordering = ("-created_at", "-id")
    fields = (
        "kind",
        "status",
        "progress_link",
        "stage",
        "progress",
        "algorithm",
        "params_display",
        "duration_display",
        "counts_display",
        "metrics_display",
        "timings_display",
        "error",
        "snapshot",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
    )
    readonly_fields = fields

    # --- columns ---------------------------------------------------------------------------

    @admin.display(description=_("run"), ordering="id")
    def run_number(self, obj: RecomputeRun) -> str:
        return f"#{obj.pk}"

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: RecomputeRun) -> str:
        return format_html(
            '<span class="shopreco-status shopreco-status-{}">{}</span>',
            obj.status,
            obj.get_status_display(),
        )

    @admin.display(description=_("live"), boolean=True)
    def live(self, obj: RecomputeRun) -> bool:
        return obj.pk == getattr(obj, "live_run", None)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        latest = Deployment.objects.order_by("-pk").values("run_id")[:1]
        return super().get_queryset(request).annotate(live_run=Subquery(latest))

    @admin.action(description=_("Serve the selected run (rollback or activate anyway)"))
    def activate_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not self.has_run_permission(request):
            raise PermissionDenied
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one run to serve."), messages.WARNING)
            return
        self._activate(request, queryset.get())

    def _activate(self, request: HttpRequest, run: RecomputeRun) -> None:
        try:
            runs.deploy(run.pk, by=request.user)
        except runs.NotActivatable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, _("%(run)s is live from the next request on.") % {
            "run": run_name(run)}, messages.SUCCESS)

    def activate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST from the run page: serve this run."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_run_permission(request):
            raise PermissionDenied
        run = get_object_or_404(RecomputeRun, pk=object_id)
        self._activate(request, run)
        return HttpResponseRedirect(self._progress_url(run))

    @admin.display(description=_("progress"), ordering="progress")
    def progress_bar(self, obj: RecomputeRun) -> str:
        value = max(0.0, min(100.0, float(obj.progress or 0)))
        return format_html(
            '<progress class="shopreco-progress-mini" max="100" value="{}" title="{}%"></progress>',
            f"{value:.0f}",
            f"{value:.0f}",
        )

    @admin.display(description=_("duration"))
    def duration_display(self, obj: RecomputeRun) -> str:
        seconds = run_duration(obj)
        return "-" if seconds is None else f"{seconds:.1f} s"

    @admin.display(description=_("users × products"))
    def size(self, obj: RecomputeRun) -> str:
        counts = obj.counts or {}
        users = counts.get("users", counts.get("n_users"))
        products = counts.get("products", counts.get("n_items"))
        return "-" if users is None and products is None else f"{users or 0} × {products or 0}"

    @admin.display(description=_("coverage"))
    def coverage(self, obj: RecomputeRun) -> str:
        value = metric_value(obj.metrics or {}, "coverage")
        return "-" if value is None else percent(value)

    @admin.display(description=_("progress page"))
    def progress_link(self, obj: RecomputeRun) -> str:
        url = reverse(
            f"{self.admin_site.name}:shopreco_recomputerun_progress", args=[obj.pk]
        )
        return format_html('<a href="{}">{}</a>', url, _("Follow this run"))

    @admin.display(description=_("params"))
    def params_display(self, obj: RecomputeRun) -> str:
        return _pretty_json(obj.params)

    @admin.display(description=_("counts"))
    def counts_display(self, obj: RecomputeRun) -> str:
        return _pretty_json(obj.counts)

    @admin.display(description=_("metrics"))
    def metrics_display(self, obj: RecomputeRun) -> str:
        return _pretty_json(obj.metrics)

    @admin.display(description=_("timings (s)"))
    def timings_display(self, obj: RecomputeRun) -> str:
        return _pretty_json(obj.timings)

    # --- extra views -----------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("recompute/", wrap(self.recompute_view), name="shopreco_recomputerun_recompute"),
            path("evaluate/", wrap(self.evaluate_view), name="shopreco_recomputerun_evaluate"),
            path(
                "<path:object_id>/progress/",
                wrap(self.progress_view),
                name="shopreco_recomputerun_progress",
            ),
            path(
                "<path:object_id>/activate/",
                wrap(self.activate_view),
                name="shopreco_recomputerun_activate",
            ),
            *super().get_urls(),
        ]

    def has_run_permission(self, request: HttpRequest) -> bool:
        """Starting runs needs ``shopreco.add_recomputerun`` (superusers have it)."""
        return request.user.has_perm(f"{self.opts.app_label}.add_{self.opts.model_name}")

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), **self.run_buttons_context(request)}
        return super().changelist_view(request, extra_context)

    def run_buttons_context(self, request: HttpRequest) -> dict:
        name = self.admin_site.name
        return {
            "shopreco_can_run": self.has_run_permission(request),
            "shopreco_recompute_url": reverse(f"{name}:shopreco_recomputerun_recompute"),
            "shopreco_evaluate_url": reverse(f"{name}:shopreco_recomputerun_evaluate"),
        }

    def _progress_url(self, run: RecomputeRun) -> str:
        return reverse(f"{self.admin_site.name}:shopreco_recomputerun_progress", args=[run.pk])

    def _back(self, request: HttpRequest) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:shopreco_recomputerun_changelist")
        )

    def recompute_view(self, request: HttpRequest) -> HttpResponse:
        """POST: ``tasks.request_full_recompute()`` (coalesced; eager without a broker)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_run_permission(request):
            raise PermissionDenied
        try:
            run = tasks.request_full_recompute()
        except Exception as exc:  # shown to the operator instead of a 500
            logger.exception("shopreco: recompute request failed")
            self.message_user(
                request, _("Could not start a recompute: %(error)s") % {"error": exc},
                messages.ERROR,
            )
            return self._back(request)
        run.refresh_from_db()
        self._report_run(request, run, _("Follow its progress"))
        return HttpResponseRedirect(self._progress_url(run))

    def evaluate_view(self, request: HttpRequest) -> HttpResponse:
        """POST: an evaluation of the served lists, run by a worker (``tasks.evaluate``);
        the run's progress page follows it, as for a recompute."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_run_permission(request):
            raise PermissionDenied
        try:
            run = tasks.request_evaluation()
        except Exception as exc:  # shown to the operator instead of a 500
            logger.exception("shopreco: evaluation request failed")
            self.message_user(
                request, _("Could not start an evaluation: %(error)s") % {"error": exc},
                messages.ERROR,
            )
            return self._back(request)
        run.refresh_from_db()  # eager (no broker): it has run already
        self._report_run(request, run, _("See its metrics"))
        return HttpResponseRedirect(self._progress_url(run))

    def _report_run(self, request: HttpRequest, run: RecomputeRun, link_text: str) -> None:
        """One admin message per outcome, with a link to the run's progress page."""
        level = {
            RecomputeRun.Status.FAILED: messages.ERROR,
            RecomputeRun.Status.REJECTED: messages.WARNING,
            RecomputeRun.Status.SUCCEEDED: messages.SUCCESS,
        }.get(run.status, messages.INFO)
        self.message_user(
            request,
            format_html('{} <a href="{}">{}</a>', run_sentence(run), self._progress_url(run),
                        link_text),
            level,
        )

    def progress_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A run's progress; refreshes itself (no JavaScript) while the run is not finished."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = get_object_or_404(RecomputeRun, pk=object_id)
        active = run.status in (RecomputeRun.Status.PENDING, RecomputeRun.Status.RUNNING)
        live = RecomputeRun.live()
        context = {
            **self.admin_site.each_context(request),
            **self.run_buttons_context(request),
            "title": _("Progress of %(run)s") % {"run": run_name(run)},
            "run_name": run_name(run),
            "opts": self.opts,
            "run": run,
            "active": active,
            "duration": run_duration(run),
            "counts": _figures(run.counts),
            "metrics": _figures({k: v for k, v in (run.metrics or {}).items()
                                 if k != "holdout"}),
            "holdout": holdout_table(run),
            "deployments": list(run.deployments.select_related("activated_by")
                                .order_by("-pk")[:10]),
            "is_live": live is not None and live.pk == run.pk,
            "can_activate": (self.has_run_permission(request)
                             and run.kind == RecomputeRun.Kind.FULL
                             and run.status in (RecomputeRun.Status.SUCCEEDED,
                                                RecomputeRun.Status.REJECTED)
                             and (live is None or live.pk != run.pk)),
            "activate_url": reverse(f"{self.admin_site.name}:shopreco_recomputerun_activate",
                                    args=[run.pk]),
            "timings": _figures(run.timings),
            "progress": max(0.0, min(100.0, float(run.progress or 0))),
            "change_url": reverse(
                f"{self.admin_site.name}:shopreco_recomputerun_change", args=[run.pk]
            ),
        }
        return TemplateResponse(request, "admin/shopreco/recomputerun/progress.html", context)
