"""The served-path evaluation (:mod:`shopreco.pipeline.evaluation`), under its public name,
and the evaluation *run*: the options stored on a ``RecomputeRun`` of kind "evaluation",
evaluated and the figures stored on it, whether ``manage.py shopreco_evaluate`` runs it in
its own process or a Celery worker does (the admin's "Evaluate now", so no web request
waits on it).

The maths lives in the pipeline because every full run's holdout gate scores its candidates
with it; commands, admin, tasks and benchmarks import it from here."""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db.models import Count
from django.utils import timezone

from shopreco.adapter import get_adapter
from shopreco.conf import get_product_model
from shopreco.engine import MODELS
from shopreco.engine.evaluate import cross_validate
from shopreco.models import Recommendation, RecomputeRun
from shopreco.pipeline import compute, runs
from shopreco.pipeline.evaluation import (
    PROTOCOLS,
    EvaluationError,
    evaluate,
    fit,
    list_metrics,
    personal_lists,
    similar_lists,
    split,
)
from shopreco.pipeline.matrix import Snapshot, load_snapshot

__all__ = ["PROTOCOLS", "EvaluationError", "evaluate", "fit", "list_metrics",
           "personal_lists", "similar_lists", "split", "evaluation_params", "new_run",
           "run_evaluation", "category_coverage", "explanation_shares"]


def evaluation_params(protocol: str = "holdout", *, k: int = 10, seed: int = 0,
                      test_fraction: float = 0.2, last_n: int = 1, folds: int = 5,
                      algorithm: str | None = None, source: str = "shop") -> dict[str, Any]:
    """The options of an evaluation run, checked; an EvaluationError names the bad one."""
    if protocol not in (*PROTOCOLS, "cv"):
        raise EvaluationError(f"protocol must be one of {', '.join((*PROTOCOLS, 'cv'))}")
    if folds < 2:
        raise EvaluationError("--folds must be at least 2")
    if k < 1:
        raise EvaluationError("--k must be at least 1")
    if not 0 < test_fraction < 1:
        raise EvaluationError("--test-fraction must be between 0 and 1")
    if last_n < 1:
        raise EvaluationError("--last-n must be at least 1")
    if algorithm is not None and algorithm not in MODELS:
        raise EvaluationError(f"--algorithm must be one of {', '.join(MODELS)}")
    if protocol == "cv" and algorithm and not MODELS[algorithm].predicts_ratings:
        predicting = [name for name, model in MODELS.items() if model.predicts_ratings]
        raise EvaluationError(f"--protocol cv measures rating prediction: --algorithm "
                              f"{' or '.join(predicting)} ({algorithm} ranks, it does not "
                              f"predict ratings)")
    params: dict[str, Any] = {"protocol": protocol, "seed": seed, "k": k, "source": source}
    if protocol == "cv":
        params.update(folds=folds, algorithm=algorithm or "item")
    else:
        params.update(test_fraction=test_fraction, last_n=last_n)
        if algorithm:
            params["algorithm"] = algorithm
    return params


def _served_params(params: dict[str, Any]) -> dict[str, Any]:
    """The run parameters whose lists are scored: the shop's settings, with ``--algorithm``
    in place; under ``ALGORITHM = "auto"`` the live run's configuration (else the first
    candidate)."""
    run_params = compute.run_params()
    if params.get("algorithm"):
        return compute.with_config(run_params, {"algorithm": params["algorithm"]})
    if run_params["algorithm"] == "auto":
        live = RecomputeRun.live()
        config = (compute.config_of(live.params) if live is not None and live.params
                  else run_params["candidates"][0])
        return compute.with_config(run_params, config)
    return run_params


def new_run(params: dict[str, Any], *, pending: bool = False) -> RecomputeRun:
    """An evaluation run holding ``params``: pending (for a worker) or running (here)."""
    name = (f"{MODELS[params['algorithm']].estimator.__name__}" if params["protocol"] == "cv"
            else f"served:{params.get('algorithm') or _served_params(params)['algorithm']}")
    return RecomputeRun.objects.create(
        kind=RecomputeRun.Kind.EVALUATION,
        status=RecomputeRun.Status.PENDING if pending else RecomputeRun.Status.RUNNING,
        algorithm=name, params=params, stage="queued" if pending else "evaluate",
        started_at=None if pending else timezone.now(),
    )


def run_evaluation(run: RecomputeRun, snap: Snapshot | None = None,
                   product_pks: np.ndarray | None = None) -> RecomputeRun:
    """Evaluate with the options stored on ``run`` and store the figures on it.

    ``snap``: the data (default: the shop's, read here, whose products then also give the
    fairness summary). A failure marks the run failed and is raised again."""
    params = dict(run.params)
    protocol = params["protocol"]
    RecomputeRun.objects.filter(pk=run.pk).update(
        status=RecomputeRun.Status.RUNNING, stage="evaluate", progress=10.0,
        started_at=run.started_at or timezone.now(), heartbeat_at=timezone.now())
    folds = None
    try:
        if snap is None:
            snap = load_snapshot(times=protocol in ("temporal", "next-item"))
            product_pks = snap.product_pks
        if snap.R.nnz < max(int(params.get("folds", 2)) * 2, 4):
            raise EvaluationError(f"not enough data to evaluate: {snap.R.nnz} ratings/"
                                  f"interactions")
        k = int(params["k"])
        if protocol == "cv":
            cls = MODELS[params["algorithm"]].estimator
            result = cross_validate(cls, snap.R, folds=int(params["folds"]),
                                    seed=int(params["seed"]), k=k)
            folds = result.pop("folds")
            counts = {key: result.pop(key) for key in ("n_users", "n_items", "n_ratings")}
            timings = {key: result.pop(key) for key in list(result) if key.endswith("_time")}
            recs = None
            if product_pks is not None:
                recs, _ = cls().fit(snap.R).recommend(np.arange(snap.n_users), n=k)
        else:
            served = _served_params(params)
            params["algorithm"] = served["algorithm"]
            out = evaluate(snap, protocol, k=k, test_fraction=float(params["test_fraction"]),
                           last_n=int(params["last_n"]), seed=int(params["seed"]),
                           params=served, return_lists=True)
            params["method"] = out["params"].get("method")
            recs = out.pop("lists")
            counts, timings = out["counts"], out["timings"]
            result = dict(out["metrics"])
        if product_pks is not None:
            result["category_coverage"] = category_coverage(recs, product_pks)
            result["explanations"] = explanation_shares(k)
    except BaseException as exc:
        runs.fail_run(run.pk, str(exc) or type(exc).__name__)
        raise
    RecomputeRun.objects.filter(pk=run.pk).update(
        status=RecomputeRun.Status.SUCCEEDED, params=params, metrics=result, timings=timings,
        counts=counts, stage="done", progress=100.0, finished_at=timezone.now(),
        heartbeat_at=timezone.now())
    run.refresh_from_db()
    run.folds = folds  # cross-validation's per-fold figures, for the command's --json
    return run


def category_coverage(recs: np.ndarray | None, product_pks: np.ndarray) -> float | None:
    """Share of the catalogue's categories reached by the lists ``recs`` (product indices)."""
    field = get_adapter().category_field()
    if not field:
        return None
    Product = get_product_model()
    cat_of = dict(Product.objects.values_list("pk", field))
    all_cats = {c for c in cat_of.values() if c is not None}
    if not all_cats or recs is None:
        return None
    reached = {cat_of.get(product_pks[j].item()) for j in np.unique(recs[recs >= 0])}
    reached.discard(None)
    return len(reached) / len(all_cats)


def explanation_shares(k: int) -> dict[str, float]:
    """How often each explanation type is shown: the share of reason codes ("rated",
    "bought", ...) among the top-k items of every personal list of the run being served.
    Items without a reason count as "none", so the shares always add up to 1."""
    run = RecomputeRun.live()
    if run is None:
        return {}
    rows = (
        Recommendation.objects.filter(run=run, rank__lte=k)
        .values("reason")
        .annotate(n=Count("id"))
    )
    counts = {(row["reason"] or "none"): row["n"] for row in rows}
    total = sum(counts.values())
    return {reason: n / total for reason, n in sorted(counts.items())} if total else {}
