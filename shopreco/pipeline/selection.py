"""The holdout gate and model selection of a full run: nothing goes live untested.

Before a full run fits its model on all data, :func:`select` holds out the latest
interactions of a seeded sample of shoppers (``HOLDOUT``), fits every candidate
configuration (``CANDIDATES`` when ``ALGORITHM = "auto"``, else the one configured) and the
live run's configuration on the rest, and scores the lists each would serve to those
shoppers with the served-path evaluation (:mod:`shopreco.pipeline.evaluation`: lists
computed in memory, owned products excluded as in serving). The best candidate by
``GATE_METRIC`` is the run's configuration; if it scores more than ``GATE_TOLERANCE``
(relative) below the live configuration, the run is computed but not deployed (status
``rejected``, with the reason): the live run keeps serving until staff decide.

The comparison is skipped, and said so, where it could not tell anything: no live run and a
single candidate, or a single candidate fitting exactly the live configuration (the same
model on the same split scores the same). ``SELECTION_EVERY`` > 1 compares the candidates
only every Nth run; the runs between refit the configuration chosen last.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shopreco.conf import candidate_config, gate_metric
from shopreco.models import RecomputeRun
from shopreco.pipeline import compute
from shopreco.pipeline.evaluation import (
    EvaluationError,
    fit,
    list_metrics,
    personal_lists,
    split,
)
from shopreco.pipeline.matrix import Snapshot

log = logging.getLogger("shopreco.pipeline")


@dataclass
class Outcome:
    """What the gate decided: the run's parameters (the chosen configuration in place),
    whether it may go live, and the report stored as ``metrics["holdout"]``."""

    params: dict[str, Any]
    deploy: bool = True
    reason: str = ""
    report: dict[str, Any] = field(default_factory=dict)


def label(config: dict[str, Any]) -> str:
    """A configuration as people read it: "ease", "item k=50 similarity=cosine"."""
    rest = " ".join(f"{k}={v}" for k, v in sorted(config.items()) if k != "algorithm")
    return f"{config.get('algorithm', '?')} {rest}".strip()


def candidates(params: dict[str, Any],
               previous: list[RecomputeRun]) -> tuple[list[dict[str, Any]], bool]:
    """(configurations to compare, whether this run selects among several), from the
    settings the run froze (``compute.run_params``).

    ``previous``: the latest finished full runs, newest first (for ``SELECTION_EVERY``)."""
    configs = [candidate_config(c) for c in params["candidates"]]
    if len(configs) == 1:
        return configs, False
    every = int(params.get("selection_every", 1))
    if every > 1:
        recent = previous[: every - 1]
        chosen = next((r.metrics.get("holdout", {}).get("chosen_config") for r in recent
                       if r.metrics.get("holdout", {}).get("selected")), None)
        if chosen is not None:
            return [chosen], False
    return configs, len(configs) > 1


def _score(train: Snapshot, test: Any, users: np.ndarray, params: dict[str, Any],
           k: int) -> dict[str, float]:
    model, _ = fit(train, params, personal_only=True)
    recs = personal_lists(model, train, params, users, k)
    out = list_metrics(recs, test[users], train.R, train.n_users, k)
    return {key: round(float(v), 6) for key, v in out.items()}


def select(snap: Snapshot, base: dict[str, Any], live: RecomputeRun | None,
           previous: list[RecomputeRun] | None = None) -> Outcome:
    """Choose the run's configuration and decide whether it may go live (module docstring).

    ``snap`` must carry interaction times (``load_snapshot(times=True)``): the holdout is
    each sampled shopper's latest interactions."""
    t0 = time.perf_counter()
    configs, selecting = candidates(base, previous or [])
    metric, k = gate_metric(base["gate_metric"])
    key = f"{metric}@{k}"
    tolerance = base["gate_tolerance"]
    # each candidate's full parameters, and the live run's own (what it really fit with)
    rows = [{"config": c, "params": compute.with_config(base, c)} for c in configs]
    live_config = compute.config_of(live.params) if live is not None and live.params else None
    live_row = None
    for row in rows:
        if live_config is not None and compute.config_of(row["params"]) == live_config:
            live_row = row
    if live_config is not None and live_row is None:
        live_row = {"config": live.config or {"algorithm": live.params.get("algorithm")},
                    "params": compute.with_config(base, live_config), "live_only": True}
    scored = rows + ([live_row] if live_row is not None and live_row.get("live_only") else [])
    report: dict[str, Any] = {
        "metric": key, "tolerance": tolerance, "selected": selecting,
        "live_run": live.pk if live is not None else None,
    }
    if len(scored) == 1:
        why = ("no live run to compare with" if live is None
               else "the same configuration as the live run")
        row = rows[0]
        report.update(skipped=why, chosen=label(row["config"]), chosen_config=row["config"],
                      rows=[])
        return Outcome(params=row["params"], report=report)
    holdout = base["holdout"]
    try:
        if snap.times is None:
            raise EvaluationError("the snapshot has no interaction times")
        train, test = split(snap, "temporal", last_n=int(holdout["interactions"]),
                            seed=int(holdout["seed"]), sample=float(holdout["users"]))
        users = np.flatnonzero(np.diff(test.indptr) > 0)
        users = users[users < snap.n_users]
        if users.size == 0:
            raise EvaluationError("no shopper has enough interactions to hold any out")
    except EvaluationError as exc:
        row = rows[0]
        report.update(skipped=f"cannot hold out: {exc}", chosen=label(row["config"]),
                      chosen_config=row["config"], rows=[])
        return Outcome(params=row["params"], report=report)
    for row in scored:
        row["metrics"] = _score(train, test, users, dict(row["params"]), k)
    best = max(rows, key=lambda r: (r["metrics"].get(key, 0.0), -rows.index(r)))
    report.update(
        users=int(users.size), held_out=int(test.nnz),
        chosen=label(best["config"]), chosen_config=best["config"],
        live=label(live_row["config"]) if live_row is not None else None,
        rows=[{"label": label(r["config"]), "config": r["config"], "metrics": r["metrics"],
               "candidate": not r.get("live_only", False), "chosen": r is best,
               "live": r is live_row} for r in scored],
        seconds=round(time.perf_counter() - t0, 3),
    )
    outcome = Outcome(params=best["params"], report=report)
    if live_row is not None and tolerance is not None:
        ours, theirs = best["metrics"].get(key, 0.0), live_row["metrics"].get(key, 0.0)
        if theirs > 0 and ours < theirs * (1.0 - float(tolerance)):
            outcome.deploy = False
            outcome.reason = (
                f"{key} {ours:.4f} of {label(best['config'])} is {1 - ours / theirs:.1%} below "
                f"the live run's {theirs:.4f} ({label(live_row['config'])}, run "
                f"#{live.pk}); the tolerance is {float(tolerance):.0%}")
            report["rejected"] = outcome.reason
    log.info("holdout gate: chose %s (%s)", report["chosen"],
             outcome.reason or "may go live")
    return outcome
