"""Offline evaluation of the lists the shop serves, on data the model did not see.

A model's RMSE says little about the lists a shopper is shown; this module measures those
lists. It holds part of the shop's interactions out, runs the pipeline's own compute
functions (the same ``prepared`` / ``similarity_block`` / ``fit_model`` / ``recommend`` a
recompute runs, with the shop's settings frozen by ``run_params``) on the rest, and scores
the stored lists -- "recommended for you" (the personal list) and "you may also like" (the
similar list) -- against what was held out. Three protocols:

- ``holdout``: each interaction of a shopper is held out with probability
  ``test_fraction`` (seeded); every held-out interaction counts as relevant.
- ``temporal``: each shopper's latest ``last_n`` interactions are held out (what a shop sees
  next); shoppers with no more than ``last_n`` interactions stay in training whole.
- ``next-item``: each shopper's latest interaction is held out; the similar list of the
  product they interacted with just before it is scored (hit rate: is the next one in it).

Metrics at ``k``: precision (implicit's: hits / sum of min(k, held-out)), recall, F1, NDCG,
MAP, hit rate, catalogue coverage (share of the products with history that appear in some
list), Gini of exposure (how unequally list slots go to products) and novelty (mean
self-information, -log2 of a recommended product's share of shoppers). Used by
``manage.py shopreco_evaluate``, the admin's "Evaluate now", the insights page and the
holdout gate of every full run (:mod:`shopreco.pipeline.selection`), which is why it lives in
the pipeline; ``shopreco.evaluation`` re-exports it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from shopreco.engine import evaluate as metrics
from shopreco.engine._sparse import row_ids
from shopreco.pipeline import compute
from shopreco.pipeline.matrix import RATED, Snapshot, values_at

PROTOCOLS = ("holdout", "temporal", "next-item")


class EvaluationError(ValueError):
    """The data cannot be evaluated with the protocol asked for (the message says why)."""


def split(snap: Snapshot, protocol: str, *, test_fraction: float = 0.2, last_n: int = 1,
          seed: int = 0, sample: float = 1.0) -> tuple[Snapshot, sp.csr_matrix]:
    """(training snapshot, held-out users x products matrix) for ``protocol``.

    Only shoppers' rows are split; anonymous sessions stay in training (they shape the
    similarities but get no list). A held-out cell leaves every part of the snapshot: its
    value, reason, ownership and purchase flag. ``sample`` < 1 holds out only a seeded
    share of the shoppers (the holdout gate's sample); the others stay in training whole."""
    if not 0 < sample <= 1:
        raise EvaluationError(f"sample must be in (0, 1], got {sample!r}")
    if protocol not in PROTOCOLS:
        raise EvaluationError(f"protocol must be one of {', '.join(PROTOCOLS)}, got "
                              f"{protocol!r}")
    R = snap.R
    users = row_ids(R) < snap.n_users
    if protocol == "holdout":
        if not 0 < test_fraction < 1:
            raise EvaluationError(f"test_fraction must be between 0 and 1, got {test_fraction}")
        test = (np.random.default_rng(seed).random(R.nnz) < test_fraction) & users
    else:
        if snap.times is None:
            raise EvaluationError(f"the {protocol} protocol needs interaction times "
                                  "(load_snapshot(times=True))")
        n = 1 if protocol == "next-item" else int(last_n)
        if n < 1:
            raise EvaluationError(f"last_n must be a positive integer, got {last_n}")
        _, held = metrics.leave_last_n(
            sp.csr_matrix((np.arange(1, R.nnz + 1, dtype=np.float64), R.indices, R.indptr),
                          shape=R.shape), snap.times, n)
        test = np.zeros(R.nnz, dtype=bool)
        test[held.data.astype(np.int64) - 1] = True  # the held-out cells' positions
        test &= users
    if sample < 1:
        chosen = np.random.default_rng([seed, 1]).random(R.shape[0]) < sample
        test &= chosen[row_ids(R)]
    return _subset(snap, ~test), _cells(R, test)


def _cells(R: sp.csr_matrix, mask: np.ndarray) -> sp.csr_matrix:
    out = sp.csr_matrix((np.ones(int(mask.sum())), (row_ids(R)[mask], R.indices[mask])),
                        shape=R.shape)
    out.sort_indices()
    return out


def _subset(snap: Snapshot, keep: np.ndarray) -> Snapshot:
    R = snap.R
    rows, cols = row_ids(R)[keep], R.indices[keep]
    new = sp.csr_matrix((R.data[keep], (rows, cols)), shape=R.shape)
    new.sort_indices()  # keep's order is already row-major, column-sorted
    owned_cells = values_at(snap.owned.astype(np.int8), R).astype(bool)[keep]
    bought_cells = values_at(snap.purchases.astype(np.int8), R).astype(bool)[keep]

    def mask(flags: np.ndarray) -> sp.csr_matrix:
        M = sp.csr_matrix((np.ones(int(flags.sum()), dtype=bool),
                           (rows[flags], cols[flags])), shape=R.shape)
        M.sort_indices()
        return M

    return Snapshot(R=new, reason=snap.reason[keep], owned=mask(owned_cells),
                    purchases=mask(bought_cells), user_pks=snap.user_pks,
                    product_pks=snap.product_pks, n_users=snap.n_users,
                    n_ratings=int(((snap.reason == RATED) & keep).sum()),
                    n_events=snap.n_events,
                    times=None if snap.times is None else snap.times[keep])


def fit(snap: Snapshot, params: dict[str, Any], *,
        personal_only: bool = False) -> tuple[Any, sp.csr_matrix]:
    """The run's model and its stored similar lists, as a recompute computes them.

    ``personal_only``: only the personal lists will be scored (the holdout gate), so the
    similar lists are computed only for a model whose personal lists sum over them (item
    kNN); for the others the returned similarity is empty."""
    params["method"] = compute.resolve_method(params, snap)
    model_record = compute.model_of(params)
    shared = compute.prepared(snap, params)
    if personal_only and not model_record.personal_from_similarity:
        S = sp.csr_matrix((snap.n_products, snap.n_products))
    else:
        parts = [compute.similarity_block(snap, params, a, b, shared=shared, n_jobs=None)
                 for a, b in compute.blocks_for(snap, params)]
        S = compute.assemble(parts, snap.n_products)
    # a model whose weights are the similarity (EASE) scores with its stored parts
    ease_parts = shared.parts() if model_record.learns_similarity else None
    model = compute.fit_model(snap, S, params, ease_parts=ease_parts,
                              user_rows=(0, snap.n_users))
    return model, S


def personal_lists(model: Any, snap: Snapshot, params: dict[str, Any], users: np.ndarray,
                   k: int) -> np.ndarray:
    """The stored personal lists of ``users`` (users x k product indices, -1 = empty), as
    the pipeline writes them: owned products excluded, positive scores only."""
    p = {**params, "recommendations": k}
    out = np.full((users.size, k), -1, dtype=np.int64)
    for a in range(0, users.size, 1000):
        batch = compute.recommend(model, snap, p, users[a:a + 1000])
        pos = np.searchsorted(users, batch.users)
        out[pos, batch.ranks - 1] = batch.items
    return out


def similar_lists(S: sp.csr_matrix, params: dict[str, Any], k: int) -> sp.csr_matrix:
    """The stored "similar" lists: the top SIMILAR_PER_PRODUCT of each row, cut at ``k``."""
    src, dst, score = compute.top_rows(S, min(k, params["similar_per_product"]))
    return sp.csr_matrix((np.arange(src.size) + 1.0, (src, dst)), shape=S.shape)


def list_metrics(recs: np.ndarray, relevant: sp.csr_matrix, train: sp.csr_matrix,
                 n_users: int, k: int) -> dict[str, float]:
    """Every metric of the module docstring for the lists ``recs`` (users x k)."""
    n_items = train.shape[1]
    support = np.bincount(train.indices, minlength=n_items)
    counts = np.bincount(recs[recs >= 0], minlength=n_items)
    has_history = support > 0
    filled = recs[recs >= 0]
    share = np.maximum(support, 1) / max(n_users, 1)
    return {
        f"precision@{k}": metrics.ranking_precision_at_k(recs, relevant, k),
        f"recall@{k}": metrics.recall_at_k(recs, relevant, k),
        f"f1@{k}": metrics.f1_at_k(recs, relevant, k),
        f"ndcg@{k}": metrics.ndcg_at_k(recs, relevant, k),
        f"map@{k}": metrics.map_at_k(recs, relevant, k),
        f"hit_rate@{k}": metrics.hit_rate(recs, relevant, k),
        "coverage": float(np.unique(filled).size / max(int(has_history.sum()), 1)),
        "gini": metrics.gini(counts[has_history]),
        "novelty": float(np.mean(-np.log2(np.minimum(share[filled], 1.0))))
        if filled.size else float("nan"),
    }


def evaluate(snap: Snapshot, protocol: str = "holdout", *, k: int = 10,
             test_fraction: float = 0.2, last_n: int = 1, seed: int = 0,
             params: dict[str, Any] | None = None,
             return_lists: bool = False) -> dict[str, Any]:
    """Score the lists the shop would serve, by ``protocol`` (see the module docstring).

    ``params``: the run parameters (default: the shop's settings, as a recompute freezes
    them). Returns {"protocol", "params", "counts", "metrics", "timings"}, and with
    ``return_lists`` the scored lists (users x k product indices) as "lists"."""
    if int(k) != k or k < 1:
        raise EvaluationError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    params = dict(params if params is not None else compute.run_params())
    t0 = time.perf_counter()
    train, test = split(snap, protocol, test_fraction=test_fraction, last_n=last_n, seed=seed)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    users = users[users < snap.n_users]
    if users.size == 0:
        raise EvaluationError("nothing to evaluate: no shopper has interactions to hold out "
                              f"under the {protocol} protocol")
    model, S = fit(train, params)
    t_fit = time.perf_counter() - t0
    counts = {"users": int(snap.n_users), "products": int(snap.n_products),
              "interactions": int(snap.R.nnz), "evaluated_users": int(users.size),
              "held_out": int(test.nnz)}
    if protocol == "next-item":
        out, recs = _next_item(train, test, S, params, users, k)
    else:
        recs = personal_lists(model, train, params, users, k)
        out = list_metrics(recs, test[users], train.R, snap.n_users, k)
    result = {
        "protocol": protocol,
        "params": {key: params[key] for key in ("algorithm", "method", "similarity",
                                                "ease_lambda", "popularity_penalty")
                   if key in params},
        "counts": counts,
        "metrics": {key: round(float(v), 6) for key, v in out.items()},
        "timings": {"fit": round(t_fit, 3), "total": round(time.perf_counter() - t0, 3)},
    }
    if return_lists:
        result["lists"] = recs
    return result


def _next_item(train: Snapshot, test: sp.csr_matrix, S: sp.csr_matrix,
               params: dict[str, Any], users: np.ndarray, k: int):
    """Hit rate of the similar list of each user's previous product for the next one."""
    R, times = train.R, train.times
    n_items = R.shape[1]
    # each user's latest remaining product: the one they had just before the hidden one
    rows = row_ids(R)
    order = np.lexsort((R.indices, times, rows))
    last = np.full(R.shape[0], -1, dtype=np.int64)
    last[rows[order]] = R.indices[order]
    source = last[users]
    ok = source >= 0
    users, source = users[ok], source[ok]
    lists = similar_lists(S, params, k)[source].tocsr()  # data: 1-based list position
    r = row_ids(lists)
    order = np.lexsort((lists.data, r))
    r = r[order]
    rank = np.arange(r.size) - lists.indptr[r]
    recs = np.full((users.size, k), -1, dtype=np.int64)
    recs[r, rank] = lists.indices[order]
    hidden = test[users]
    out = {f"hit_rate@{k}": metrics.hit_rate(recs, hidden, k),
           f"ndcg@{k}": metrics.ndcg_at_k(recs, hidden, k)}
    counts = np.bincount(recs[recs >= 0], minlength=n_items)
    support = np.bincount(R.indices, minlength=n_items)
    out["coverage"] = float(np.unique(recs[recs >= 0]).size / max(int((support > 0).sum()), 1))
    out["gini"] = metrics.gini(counts[support > 0])
    return out, recs
