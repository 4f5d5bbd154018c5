"""Cross-validate the recommender on the shop's own data or a ratings file.

Prints every metric of :mod:`shopreco.engine.evaluate` (RMSE, MAE, precision/recall/F1/
NDCG/MAP@k, hit rate, catalogue coverage, popularity bias) with fit/predict times, plus
a fairness summary (category coverage when the product model has categories), and
stores the figures on a ``RecomputeRun`` of kind "evaluation" so the admin can chart
them over time.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from shopreco.engine import ItemKNN, UserKNN
from shopreco.engine.evaluate import cross_validate
from shopreco.models import RecomputeRun

TABLE_KEYS = [
    "rmse", "mae", "precision@{k}", "recall@{k}", "f1@{k}", "ndcg@{k}", "map@{k}",
    "hit_rate@{k}", "catalogue_coverage", "category_coverage", "mean_popularity", "gini",
    "total_fit_time", "total_predict_time", "total_recommend_time",
]


def read_ratings_file(path: str, fmt: str) -> tuple[sp.csr_matrix, np.ndarray | None]:
    """Read ``user,item,rating[,timestamp]`` rows into a users x items matrix.

    ``csv``: comma-separated, optional header. ``movielens``: the MovieLens layouts
    (``userId,movieId,rating,timestamp`` CSV with header, ``u.data`` tab-separated or
    ``ratings.dat`` with ``::``). Bad rows raise ``CommandError`` naming the line.
    """
    p = Path(path)
    if not p.is_file():
        raise CommandError(f"--ratings: no such file: {path}")
    with p.open(encoding="utf-8", newline="") as fh:
        first = fh.readline()
        fh.seek(0)
        if fmt == "movielens" and "::" in first:
            rows = (line.rstrip("\r\n").split("::") for line in fh)
        elif fmt == "movielens" and "\t" in first:
            rows = (line.rstrip("\r\n").split("\t") for line in fh)
        else:
            rows = csv.reader(fh)
        users: list[str] = []
        items: list[str] = []
        scores: list[float] = []
        stamps: list[float] = []
        for lineno, row in enumerate(rows, start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < 3:
                raise CommandError(f"{path}, line {lineno}: expected user,item,rating"
                                   f"[,timestamp], got {len(row)} field(s)")
            try:
                score = float(row[2])
            except ValueError:
                if lineno == 1:  # header
                    continue
                raise CommandError(f"{path}, line {lineno}: rating {row[2]!r} is not a "
                                   f"number") from None
            if not np.isfinite(score):
                raise CommandError(f"{path}, line {lineno}: rating {row[2]!r} is not finite")
            users.append(row[0].strip())
            items.append(row[1].strip())
            scores.append(score)
            if len(row) > 3 and row[3].strip():
                try:
                    stamps.append(float(row[3]))
                except ValueError:
                    raise CommandError(f"{path}, line {lineno}: timestamp {row[3]!r} is not "
                                       f"a number") from None
    if not scores:
        raise CommandError(f"{path}: no ratings found")
    _, u = np.unique(np.array(users), return_inverse=True)
    _, i = np.unique(np.array(items), return_inverse=True)
    R = sp.coo_matrix((np.array(scores), (u, i))).tocsr()
    # duplicates: keep the last value, not the sum
    if R.nnz != len(scores):
        last = {}
        for idx, key in enumerate(zip(u.tolist(), i.tolist(), strict=True)):
            last[key] = idx
        keep = np.array(sorted(last.values()))
        R = sp.csr_matrix((np.array(scores)[keep], (u[keep], i[keep])))
    return R, None


def _category_coverage(model, product_pks: np.ndarray, k: int) -> float | None:
    """Share of the catalogue's categories reached by the top-k lists of every user."""
    from shopreco.adapter import get_adapter
    from shopreco.conf import get_product_model

    field = get_adapter().category_field()
    if not field:
        return None
    Product = get_product_model()
    cat_of = dict(Product.objects.values_list("pk", field))
    all_cats = {c for c in cat_of.values() if c is not None}
    if not all_cats:
        return None
    recs, _ = model.recommend(np.arange(model.n_users_), n=k)
    reached = {cat_of.get(product_pks[j]) for j in np.unique(recs[recs >= 0])}
    reached.discard(None)
    return len(reached) / len(all_cats)


def explanation_shares(k: int) -> dict[str, float]:
    """How often each explanation type is shown: the share of reason codes ("rated",
    "bought", ...) among the top-k items of every personal list of the run being served.
    Items without a reason count as "none", so the shares always add up to 1."""
    from django.db.models import Count

    from shopreco.models import Recommendation

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
    help = "Cross-validate the recommender (shop data or a ratings file) and store the figures."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ratings", help="Ratings file instead of the shop's data.")
        parser.add_argument("--format", choices=["csv", "movielens"], default="csv")
        parser.add_argument("--algorithm", choices=["item", "user"], default="item")
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--json", action="store_true", help="Print JSON, not a table.")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["folds"] < 2:
            raise CommandError("--folds must be at least 2")
        if opts["k"] < 1:
            raise CommandError("--k must be at least 1")
        product_pks = None
        if opts["ratings"]:
            R, _ = read_ratings_file(opts["ratings"], opts["format"])
            source = str(opts["ratings"])
        else:
            from shopreco.pipeline.matrix import load_snapshot

            snap = load_snapshot()
            R, product_pks = snap.R, snap.product_pks
            source = "shop"
        if R.nnz < opts["folds"] * 2:
            raise CommandError(f"not enough data to cross-validate: {R.nnz} ratings/"
                               f"interactions for {opts['folds']} folds")
        cls = ItemKNN if opts["algorithm"] == "item" else UserKNN
        params = {key: opts[key] for key in ("algorithm", "folds", "seed", "k")}
        params["source"] = source
        run = RecomputeRun.objects.create(
            kind=RecomputeRun.Kind.EVALUATION, status=RecomputeRun.Status.RUNNING,
            algorithm=cls.__name__, params=params, started_at=timezone.now(),
        )
        try:
            result = cross_validate(cls, R, folds=opts["folds"], seed=opts["seed"],
                                    k=opts["k"])
            cat = None
            if product_pks is not None:
                cat = _category_coverage(cls().fit(R), product_pks, opts["k"])
            result["category_coverage"] = cat
            if product_pks is not None:
                result["explanations"] = explanation_shares(opts["k"])
        except Exception as exc:
            run.status = RecomputeRun.Status.FAILED
            run.error = str(exc)
            run.finished_at = timezone.now()
            run.save()
            raise
        folds = result.pop("folds")
        timings = {key: result[key] for key in list(result) if key.endswith("_time")}
        counts = {key: result.pop(key) for key in ("n_users", "n_items", "n_ratings")}
        metrics = {key: v for key, v in result.items() if key not in timings}
        run.status = RecomputeRun.Status.SUCCEEDED
        run.metrics = metrics
        run.timings = timings
        run.counts = counts
        run.stage = "done"
        run.progress = 100.0
        run.finished_at = timezone.now()
        run.save()
        if opts["json"]:
            self.stdout.write(json.dumps({"run": run.pk, "params": params, "counts": counts,
                                          "metrics": metrics, "timings": timings,
                                          "folds": folds}, indent=2))
            return
        k = opts["k"]
        self.stdout.write(f"{cls.__name__} on {source}: {counts['n_users']} users, "
                          f"{counts['n_items']} items, {counts['n_ratings']} ratings, "
                          f"{opts['folds']}-fold CV (seed {opts['seed']})")
        for key in TABLE_KEYS:
            name = key.format(k=k)
            value = result.get(name)
            shown = "n/a" if value is None else f"{value:.4f}"
            self.stdout.write(f"  {name:<22} {shown}")
        shares = result.get("explanations")
        if shares:
            self.stdout.write(f"Explanations shown in the served top-{k} lists:")
            for reason, share in shares.items():
                self.stdout.write(f"  {reason:<22} {share:.1%}")
        self.stdout.write(f"Stored as evaluation run #{run.pk}.")
