"""Evaluate the lists the shop serves (or the engine's rating prediction) on held-out data.

``--protocol holdout`` (default), ``temporal`` or ``next-item`` score the lists a recompute
would store with the shop's settings (:mod:`shopreco.evaluation`: precision/recall/F1/NDCG/
MAP@k, hit rate, catalogue coverage, Gini of exposure, novelty); ``--protocol cv``
cross-validates the engine's rating prediction (RMSE, MAE and the same ranking metrics of
the bare model). On the shop's data it adds a fairness summary (category coverage when the
product model has categories) and the explanation shares of the served run. The figures
are stored on a ``RecomputeRun`` of kind "evaluation" so the admin can chart them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count
from django.utils import timezone

from shopreco import evaluation, importing
from shopreco.adapter import get_adapter
from shopreco.conf import ALGORITHMS, get_product_model
from shopreco.engine import MODELS
from shopreco.engine.evaluate import cross_validate
from shopreco.management.commands._text import counted
from shopreco.models import Recommendation, RecomputeRun
from shopreco.pipeline import compute
from shopreco.pipeline.matrix import Snapshot, load_snapshot

TABLE_KEYS = [
    "rmse", "mae", "precision@{k}", "recall@{k}", "f1@{k}", "ndcg@{k}", "map@{k}",
    "hit_rate@{k}", "catalogue_coverage", "coverage", "category_coverage",
    "mean_popularity", "gini", "novelty", "total_fit_time", "total_predict_time",
    "total_recommend_time", "fit", "total",
]


def read_ratings_file(path: str, fmt: str) -> tuple[sp.csr_matrix, np.ndarray | None]:
    """Read a ratings file into a users x items matrix (and each cell's time, when every row
    has one), through the importer's parsers so both commands read a file the same way.

    ``csv``: ``user,item,rating[,timestamp]`` by position, optional header
    (:func:`shopreco.importing.parse_ratings`). ``movielens``: the MovieLens layouts
    (:func:`shopreco.importing.parse_movielens`: ``ratings.csv``, ``u.data`` or
    ``ratings.dat``, or their directory). The first bad row raises ``CommandError`` naming its
    line: an evaluation on silently thinned data would mislead.
    """
    p = Path(path)
    if not p.exists():
        raise CommandError(f"--ratings: no such file: {path}")
    parse = importing.parse_movielens if fmt == "movielens" else importing.parse_ratings
    users: list[str] = []
    items: list[str] = []
    scores: list[float] = []
    stamps: list[float] = []
    try:
        for row in parse(p):
            if isinstance(row, importing.Skip):
                raise CommandError(f"{path}, line {row.line}: {row.message or row.reason}")
            users.append(row.user)
            items.append(row.product)
            scores.append(row.score)
            if row.at is not None:
                stamps.append(row.at.timestamp())
    except importing.FatalImportError as exc:
        raise CommandError(f"{path}, {exc}") from None
    if not scores:
        raise CommandError(f"{path}: no ratings found")
    _, u = np.unique(np.array(users), return_inverse=True)
    _, i = np.unique(np.array(items), return_inverse=True)
    # duplicates: keep the last value, not the sum
    keep = np.arange(len(scores))
    if len({(a, b) for a, b in zip(u.tolist(), i.tolist(), strict=True)}) != len(scores):
        last = {}
        for idx, key in enumerate(zip(u.tolist(), i.tolist(), strict=True)):
            last[key] = idx
        keep = np.array(sorted(last.values()))
    shape = (int(u.max()) + 1, int(i.max()) + 1)
    R = sp.csr_matrix((np.array(scores)[keep], (u[keep], i[keep])), shape=shape)
    R.sort_indices()
    times = None
    if len(stamps) == len(scores):
        T = sp.csr_matrix((np.array(stamps)[keep] + 1.0, (u[keep], i[keep])), shape=shape)
        T.sort_indices()
        times = T.data - 1.0  # +1: a timestamp of 0 must stay a stored entry
    return R, times


def _category_coverage(recs: np.ndarray | None, product_pks: np.ndarray) -> float | None:
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
    run = RecomputeRun.latest_succeeded()
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


class Command(BaseCommand):
    help = ("Evaluate the served lists on held-out data (or cross-validate rating prediction "
            "with --protocol cv) and store the figures.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--protocol", choices=[*evaluation.PROTOCOLS, "cv"],
                            default="holdout",
                            help="holdout (random, every held-out interaction relevant), "
                                 "temporal (each shopper's latest --last-n), next-item "
                                 "(the similar list of the previous product), cv (rating "
                                 "prediction, --folds).")
        parser.add_argument("--ratings", help="Ratings file instead of the shop's data.")
        parser.add_argument("--format", choices=["csv", "movielens"], default="csv",
                            help="csv: user,item,rating[,timestamp] by position, optional "
                                 "header; movielens: ratings.csv, u.data or ratings.dat (or "
                                 "their directory).")
        parser.add_argument("--algorithm", choices=ALGORITHMS, default=None,
                            help="Model to evaluate (default: SHOPRECO['ALGORITHM']; cv: "
                                 "item).")
        parser.add_argument("--test-fraction", type=float, default=0.2)
        parser.add_argument("--last-n", type=int, default=1)
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--json", action="store_true", help="Print JSON, not a table.")

    def handle(self, *args: Any, **opts: Any) -> None:
        protocol = opts["protocol"]
        if opts["folds"] < 2:
            raise CommandError("--folds must be at least 2")
        if opts["k"] < 1:
            raise CommandError("--k must be at least 1")
        if not 0 < opts["test_fraction"] < 1:
            raise CommandError("--test-fraction must be between 0 and 1")
        if opts["last_n"] < 1:
            raise CommandError("--last-n must be at least 1")
        if protocol == "cv" and opts["algorithm"] and not (
                MODELS[opts["algorithm"]].predicts_ratings):
            predicting = [name for name, model in MODELS.items() if model.predicts_ratings]
            raise CommandError(f"--protocol cv measures rating prediction: --algorithm "
                               f"{' or '.join(predicting)} ({opts['algorithm']} ranks, it "
                               f"does not predict ratings)")
        timed = protocol in ("temporal", "next-item")
        product_pks = None
        if opts["ratings"]:
            R, times = read_ratings_file(opts["ratings"], opts["format"])
            if timed and times is None:
                raise CommandError(f"--protocol {protocol} needs a timestamp on every line "
                                   f"of {opts['ratings']}")
            snap = Snapshot.from_ratings(R, times)
            source = str(opts["ratings"])
        else:
            snap = load_snapshot(times=timed)
            product_pks = snap.product_pks
            source = "shop"
        if snap.R.nnz < max(opts["folds"] * 2, 4):
            raise CommandError(f"not enough data to evaluate: {snap.R.nnz} ratings/"
                               f"interactions")
        params = {key: opts[key] for key in ("protocol", "seed", "k")}
        params["source"] = source
        if protocol == "cv":
            params["folds"] = opts["folds"]
            params["algorithm"] = opts["algorithm"] or "item"
            name = MODELS[params["algorithm"]].estimator.__name__
        else:
            params.update(test_fraction=opts["test_fraction"], last_n=opts["last_n"])
            run_params = compute.run_params()
            if opts["algorithm"]:
                run_params["algorithm"] = opts["algorithm"]
            params["algorithm"] = run_params["algorithm"]
            name = f"served:{run_params['algorithm']}"
        run = RecomputeRun.objects.create(
            kind=RecomputeRun.Kind.EVALUATION, status=RecomputeRun.Status.RUNNING,
            algorithm=name, params=params, started_at=timezone.now(),
        )
        folds = None
        try:
            if protocol == "cv":
                cls = MODELS[params["algorithm"]].estimator
                result = cross_validate(cls, snap.R, folds=opts["folds"], seed=opts["seed"],
                                        k=opts["k"])
                folds = result.pop("folds")
                counts = {key: result.pop(key) for key in ("n_users", "n_items", "n_ratings")}
                timings = {key: result.pop(key) for key in list(result)
                           if key.endswith("_time")}
                recs = None
                if product_pks is not None:
                    recs, _ = cls().fit(snap.R).recommend(np.arange(snap.n_users), n=opts["k"])
            else:
                result = evaluation.evaluate(
                    snap, protocol, k=opts["k"], test_fraction=opts["test_fraction"],
                    last_n=opts["last_n"], seed=opts["seed"], params=run_params,
                    return_lists=True)
                params["method"] = result["params"].get("method")
                recs = result.pop("lists")
                counts, timings = result["counts"], result["timings"]
                result = dict(result["metrics"])
            if product_pks is not None:
                result["category_coverage"] = _category_coverage(recs, product_pks)
                result["explanations"] = explanation_shares(opts["k"])
        except evaluation.EvaluationError as exc:
            self._failed(run, exc)
            raise CommandError(str(exc)) from None
        except Exception as exc:
            self._failed(run, exc)
            raise
        metrics = result
        run.status = RecomputeRun.Status.SUCCEEDED
        run.params = params
        run.metrics = metrics
        run.timings = timings
        run.counts = counts
        run.stage = "done"
        run.progress = 100.0
        run.finished_at = timezone.now()
        run.save()
        if opts["json"]:
            payload = {"run": run.pk, "params": params, "counts": counts, "metrics": metrics,
                       "timings": timings}
            if folds is not None:
                payload["folds"] = folds
            self.stdout.write(json.dumps(payload, indent=2))
            return
        k = opts["k"]
        what = (f"{name}, {opts['folds']}-fold CV (seed {opts['seed']})" if protocol == "cv"
                else f"The served lists of {params['algorithm']} ({protocol} protocol, "
                     f"seed {opts['seed']})")
        self.stdout.write(f"{what} on {source}: {counted(snap.n_users, 'user')}, "
                          f"{counted(snap.n_products, 'product')}, "
                          f"{counted(snap.R.nnz, 'rating or interaction', 'ratings/interactions')}")
        shown_all = {**metrics, **timings}
        for key in TABLE_KEYS:
            name_k = key.format(k=k)
            value = shown_all.get(name_k)
            if value is None and name_k not in ("category_coverage",):
                continue
            shown = "n/a" if value is None else f"{value:.4f}"
            self.stdout.write(f"  {name_k:<22} {shown}")
        shares = metrics.get("explanations")
        if shares:
            self.stdout.write(f"Explanations shown in the served top-{k} lists:")
            for reason, share in shares.items():
                self.stdout.write(f"  {reason:<22} {share:.1%}")
        self.stdout.write(f"Stored as evaluation run #{run.pk}.")

    @staticmethod
    def _failed(run: RecomputeRun, exc: BaseException) -> None:
        run.status = RecomputeRun.Status.FAILED
        run.error = str(exc)
        run.finished_at = timezone.now()
        run.save()
