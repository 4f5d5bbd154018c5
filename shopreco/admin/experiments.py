"""A/B experiments in the admin: an experiment with its arms inline (a configuration checked
like ``CANDIDATES``, a pinned run, or neither: the live run), start / stop actions, and a
results page per experiment with the per-arm table of :func:`shopreco.insights.experiment_results`
and a "Promote" button per arm (deploys the arm's run and stops the experiment).

One experiment runs at a time: serving would otherwise have two arms deciding one list.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from shopreco import cache, tasks
from shopreco.conf import candidate_config
from shopreco.insights import PROPORTION_METRICS, Comparison, Estimate, experiment_results
from shopreco.models import Experiment, ExperimentArm, RecomputeRun
from shopreco.pipeline import runs

logger = logging.getLogger(__name__)


class ArmForm(forms.ModelForm):
    """An arm's configuration is checked by ``conf.candidate_config``, the check the system
    checks and the pipeline use, and stored normalised; a pinned run and a configuration
    exclude each other."""

    class Meta:
        model = ExperimentArm
        fields = ("name", "share", "config", "pinned_run")

    def clean_config(self) -> dict:
        config = self.cleaned_data.get("config") or {}
        if not config:
            return {}
        try:
            return candidate_config(config)
        except ValueError as exc:
            raise forms.ValidationError(
                _("Not a valid configuration: %(problem)s.") % {"problem": exc}) from None

    def clean(self) -> dict:
        data = super().clean()
        if data.get("config") and data.get("pinned_run"):
            raise forms.ValidationError(
                _("Give an arm a configuration or a pinned run, not both."))
        return data


class ArmInline(admin.TabularInline):
    model = ExperimentArm
    form = ArmForm
    extra = 2
    min_num = 0
    fields = ("name", "share", "config", "pinned_run", "run")
    readonly_fields = ("run",)
    raw_id_fields = ("pinned_run",)


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    """Experiments: arms inline, start / stop actions, a results page with promotion."""

    inlines = [ArmInline]
    list_display = ("name", "status", "arm_count", "started_at", "stopped_at", "promoted_arm",
                    "results_link")
    list_filter = ("status",)
    fields = ("name", "status", "started_at", "stopped_at", "promoted_arm", "results_link")
    readonly_fields = ("status", "started_at", "stopped_at", "promoted_arm", "results_link")
    actions = ["start_experiments", "stop_experiments"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (super().get_queryset(request).select_related("promoted_arm")
                .annotate(n_arms=Count("arms")))

    @admin.display(description=_("arms"), ordering="n_arms")
    def arm_count(self, obj: Experiment) -> int:
        return getattr(obj, "n_arms", None) or obj.arms.count()

    @admin.display(description=_("results"))
    def results_link(self, obj: Experiment) -> str:
        if obj.pk is None:
            return "-"
        return format_html('<a href="{}">{}</a>', self._results_url(obj), _("Results"))

    def _results_url(self, obj: Experiment) -> str:
        return reverse(f"{self.admin_site.name}:shopreco_experiment_results", args=[obj.pk])

    # --- start / stop ----------------------------------------------------------------------

    @admin.action(description=_("Start the selected experiments"), permissions=["change"])
    def start_experiments(self, request: HttpRequest, queryset: QuerySet) -> None:
        for experiment in queryset:
            problem = start(experiment)
            if problem:
                self.message_user(request, problem, messages.ERROR)
            else:
                self.message_user(request, _("%(name)s started.") % {"name": experiment.name},
                                  messages.SUCCESS)

    @admin.action(description=_("Stop the selected experiments"), permissions=["change"])
    def stop_experiments(self, request: HttpRequest, queryset: QuerySet) -> None:
        for experiment in queryset:
            if stop(experiment):
                self.message_user(request, _("%(name)s stopped.") % {"name": experiment.name},
                                  messages.SUCCESS)
            else:
                self.message_user(request, _("%(name)s is not running.")
                                  % {"name": experiment.name}, messages.WARNING)

    # --- results and promotion -------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:object_id>/results/", wrap(self.results_view),
                 name="shopreco_experiment_results"),
            path("<int:object_id>/promote/<int:arm_id>/", wrap(self.promote_view),
                 name="shopreco_experiment_promote"),
            *super().get_urls(),
        ]

    def results_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        experiment = get_object_or_404(Experiment, pk=object_id)
        if not self.has_view_permission(request, experiment):
            raise PermissionDenied
        results = experiment_results(experiment)
        live = RecomputeRun.live()
        rows = []
        for result in results.arms:
            arm = result.arm
            rows.append({
                "result": result,
                "source": arm_source(arm, live),
                "ctr": _rate(result.ctr),
                "cart_rate": _rate(result.cart_rate),
                "conversion": _rate(result.conversion),
                "rpv": _money(result.revenue_per_visitor),
                "tests": [_test(result.comparisons.get(m)) for m in PROPORTION_METRICS]
                if result is not results.control else None,
                "promote_url": reverse(f"{self.admin_site.name}:shopreco_experiment_promote",
                                       args=[experiment.pk, arm.pk]),
            })
        context = {
            **self.admin_site.each_context(request),
            "title": _("Results of %(name)s") % {"name": experiment.name},
            "opts": self.opts,
            "experiment": experiment,
            "rows": rows,
            "metric_names": [(m, METRIC_LABELS[m]) for m in PROPORTION_METRICS],
            "can_promote": (experiment.status == Experiment.Status.RUNNING
                            and self.has_change_permission(request, experiment)),
            "change_url": reverse(f"{self.admin_site.name}:shopreco_experiment_change",
                                  args=[experiment.pk]),
        }
        return TemplateResponse(request, "admin/shopreco/experiment/results.html", context)

    def promote_view(self, request: HttpRequest, object_id: int, arm_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        experiment = get_object_or_404(Experiment, pk=object_id)
        if not self.has_change_permission(request, experiment):
            raise PermissionDenied
        arm = get_object_or_404(ExperimentArm, pk=arm_id, experiment=experiment)
        try:
            text = promote(arm, by=request.user)
        except runs.NotActivatable as exc:
            self.message_user(request, _("%(arm)s was not promoted: %(why)s")
                              % {"arm": arm.name, "why": exc}, messages.ERROR)
        else:
            self.message_user(request, text, messages.SUCCESS)
        return HttpResponseRedirect(self._results_url(experiment))


METRIC_LABELS = {"ctr": _("click-through"), "cart_rate": _("add-to-cart"),
                 "conversion": _("conversion")}


def _rate(e: Estimate) -> str:
    if e.value is None:
        return "-"
    return f"{100 * e.value:.2f}% [{100 * e.low:.2f}, {100 * e.high:.2f}]"


def _money(e: Estimate) -> str:
    if e.value is None:
        return "-"
    if e.low is None:
        return f"{e.value:.2f}"
    return f"{e.value:.2f} [{e.low:.2f}, {e.high:.2f}]"


def _test(c: Comparison | None) -> str:
    if c is None:
        return "-"
    mark = " *" if c.significant else ""
    return f"{100 * c.difference:+.2f} pts, z={c.z:.2f}, p={c.p:.3g}{mark}"


def arm_source(arm: ExperimentArm, live: RecomputeRun | None = None) -> str:
    """What an arm serves, in words, for staff."""
    if arm.pinned_run_id is not None:
        return f"pinned run #{arm.pinned_run_id}"
    if arm.config:
        config = json.dumps(arm.config, sort_keys=True)
        if arm.run_id is None:
            return f"{config} (run not computed yet: the live run meanwhile)"
        return f"{config}, run #{arm.run_id}"
    return "the live run" + (f" (#{live.pk})" if live is not None else "")


def start(experiment: Experiment) -> str:
    """Start a draft experiment; returns what prevents it ("" when started). Its
    configuration arms' runs are requested after the commit."""
    with transaction.atomic():
        locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if locked.status != Experiment.Status.DRAFT:
            return str(_("%(name)s is %(status)s: only a draft experiment starts.")
                       % {"name": locked.name, "status": locked.get_status_display().lower()})
        arms = list(locked.arms.all())
        if len(arms) < 2:
            return str(_("%(name)s needs at least two arms.") % {"name": locked.name})
        if not any(a.share > 0 for a in arms):
            return str(_("%(name)s: every arm has a share of 0.") % {"name": locked.name})
        other = Experiment.objects.filter(status=Experiment.Status.RUNNING).first()
        if other is not None:
            return str(_("%(name)s: stop %(other)s first; one experiment runs at a time.")
                       % {"name": locked.name, "other": other.name})
        locked.status = Experiment.Status.RUNNING
        locked.started_at = timezone.now()
        locked.save(update_fields=["status", "started_at"])
        tasks.request_arm_runs(locked.pk)
    experiment.refresh_from_db()
    return ""


def stop(experiment: Experiment, promoted: ExperimentArm | None = None) -> bool:
    """Stop a running experiment (recording the promoted arm); False if it was not running."""
    values: dict[str, Any] = {"status": Experiment.Status.STOPPED, "stopped_at": timezone.now()}
    if promoted is not None:
        values["promoted_arm"] = promoted
    done = Experiment.objects.filter(pk=experiment.pk,
                                     status=Experiment.Status.RUNNING).update(**values)
    if done:
        cache.forget_running_experiments()  # a queryset update sends no signal
        transaction.on_commit(cache.forget_running_experiments)
        experiment.refresh_from_db()
    return bool(done)


def promote(arm: ExperimentArm, by: Any = None) -> str:
    """Make ``arm`` what every shopper gets: deploy its run (:func:`runs.deploy`), record it
    as promoted and stop the experiment. The live arm (or an arm whose run is already live)
    only stops the experiment. Raises :class:`runs.NotActivatable` when the run cannot go
    live (the message says why)."""
    experiment = arm.experiment
    if experiment.status != Experiment.Status.RUNNING:
        raise runs.NotActivatable(f"{experiment.name} is not running.")
    run_id = arm.pinned_run_id if arm.pinned_run_id is not None else arm.run_id
    if arm.config and run_id is None:
        raise runs.NotActivatable(f"the run of {arm.name}'s configuration is not computed yet.")
    live = RecomputeRun.live()
    with transaction.atomic():
        if run_id is not None and (live is None or live.pk != run_id):
            runs.deploy(run_id, by, f"promoted: arm {arm.name} of experiment {experiment.name}")
            deployed = True
        else:
            deployed = False
        stop(experiment, promoted=arm)
    if deployed:
        return str(_("%(arm)s promoted: run #%(run)s is live and %(name)s is stopped.")
                   % {"arm": arm.name, "run": run_id, "name": experiment.name})
    return str(_("%(arm)s already serves the live run: %(name)s is stopped.")
               % {"arm": arm.name, "name": experiment.name})
