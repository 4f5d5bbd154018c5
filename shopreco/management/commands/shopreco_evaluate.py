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

from shopreco import evaluation, importing
from shopreco.engine import MODELS
from shopreco.management.commands._text import counted
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
        parser.add_argument("--algorithm", choices=tuple(MODELS), default=None,
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
        try:
            params = evaluation.evaluation_params(
                protocol, k=opts["k"], seed=opts["seed"], test_fraction=opts["test_fraction"],
                last_n=opts["last_n"], folds=opts["folds"], algorithm=opts["algorithm"],
                source=str(opts["ratings"]) if opts["ratings"] else "shop")
        except evaluation.EvaluationError as exc:
            raise CommandError(str(exc)) from None
        timed = protocol in ("temporal", "next-item")
        product_pks = None
        if opts["ratings"]:
            R, times = read_ratings_file(opts["ratings"], opts["format"])
            if timed and times is None:
                raise CommandError(f"--protocol {protocol} needs a timestamp on every line "
                                   f"of {opts['ratings']}")
            snap = Snapshot.from_ratings(R, times)
        else:
            snap = load_snapshot(times=timed)
            product_pks = snap.product_pks
        source = params["source"]
        if snap.R.nnz < max(opts["folds"] * 2, 4):
            raise CommandError(f"not enough data to evaluate: {snap.R.nnz} ratings/"
                               f"interactions")
        run = evaluation.new_run(params)
        try:
            run = evaluation.run_evaluation(run, snap, product_pks)
        except evaluation.EvaluationError as exc:
            raise CommandError(str(exc)) from None
        params, metrics, timings, counts, folds = (run.params, run.metrics, run.timings,
                                                   run.counts, run.folds)
        name = run.algorithm
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
