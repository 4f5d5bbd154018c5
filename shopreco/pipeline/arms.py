"""The lists of an experiment's configuration arms: a run of kind ``arm`` per configuration,
fitted with that configuration in process (no holdout gate: the configuration is given),
completed as succeeded without going live, and pointed at by the arm (``arm.run``), which
serving then reads for the arm's shoppers.

Computed when an experiment starts and after every full run goes live (dispatched by
:mod:`shopreco.tasks`), so each arm's lists are as fresh as the live run's and the arms
compare models, not data ages. Pruning keeps the runs a running experiment serves
(:func:`shopreco.pipeline.runs.kept_for_experiments`).
"""

from __future__ import annotations

import json
import logging

from django.db import transaction
from django.utils import timezone

from shopreco import cache
from shopreco.conf import candidate_config
from shopreco.models import Experiment, ExperimentArm, RecomputeRun
from shopreco.pipeline import compute, runs, stages

log = logging.getLogger("shopreco.pipeline")


def configuration_arms(experiment_id: int | None = None) -> list[ExperimentArm]:
    """Arms of running experiments (or of one experiment) whose lists come from their own
    configuration: a configuration and no pinned run."""
    arms = ExperimentArm.objects.filter(pinned_run__isnull=True).exclude(config={})
    if experiment_id is None:
        arms = arms.filter(experiment__status=Experiment.Status.RUNNING)
    else:
        arms = arms.filter(experiment_id=experiment_id)
    return list(arms.order_by("experiment_id", "pk"))


def compute_arm_run(config: dict) -> RecomputeRun:
    """One run of kind ``arm`` for ``config``, computed in this process; it ends succeeded
    (or failed, raising) and never deployed: ``runs.complete`` deploys full runs only."""
    now = timezone.now()
    run = RecomputeRun.objects.create(
        kind=RecomputeRun.Kind.ARM, status=RecomputeRun.Status.PENDING,
        algorithm=str(config.get("algorithm", "")),
        params={**compute.run_params(), "config": dict(config)},
        stage="queued", heartbeat_at=now,
    )
    try:
        plan = stages.start_run(run.pk)
        if plan is None:  # pragma: no cover - claimed by nobody else: it was just created
            raise runs.RunAborted(run.pk)
        stages.run_stages_in_process(run.pk, plan)
    except BaseException as exc:
        runs.fail_run(run.pk, exc)
        raise
    run.refresh_from_db()
    return run


def compute_arm_runs(experiment_id: int | None = None) -> list[RecomputeRun]:
    """For each configuration arm of the running experiments (or of ``experiment_id``), a
    run computed with its configuration, which the arm then serves. Arms with the same
    configuration share one run. An arm whose configuration is invalid or whose run fails
    keeps its previous run (or the live run) and is logged; the others go on."""
    done: dict[str, RecomputeRun | None] = {}
    computed: list[RecomputeRun] = []
    for arm in configuration_arms(experiment_id):
        try:
            config = candidate_config(arm.config)
        except ValueError as exc:
            log.error("experiment arm %s: invalid configuration (%s); not computed", arm, exc)
            continue
        key = json.dumps(config, sort_keys=True)
        if key not in done:
            try:
                done[key] = compute_arm_run(config)
                computed.append(done[key])
            except Exception:
                log.exception("experiment arm %s: its run failed; it keeps serving run %s",
                              arm, arm.run_id)
                done[key] = None
        run = done[key]
        if run is None:
            continue
        arm.run = run
        arm.save(update_fields=["run"])
        # Now for this process, and after the commit for requests that re-read meanwhile.
        cache.forget_running_experiments()
        transaction.on_commit(cache.forget_running_experiments)
    return computed
