"""Engine glue: run parameters, similarity blocks, also-bought, recommendation batches.

Pure functions of a :class:`~shopreco.pipeline.matrix.Snapshot` and the run's params, so the
in-process run and the sharded (Celery) run execute exactly the same code on exactly the
same inputs and produce identical rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.core.exceptions import ImproperlyConfigured

from shopreco.conf import CONFIG_KEYS, DEFAULTS, candidate_config, reco_settings
from shopreco.engine import EASE, MODELS, RankingModel, prepare, ranking_model, tfidf_weight
from shopreco.engine.similarity import (
    IMPLICIT_METHOD,
    item_similarity,
    item_similarity_block,
    similarity_method,
    user_similarity_block,
)
from shopreco.pipeline.matrix import REASONS, Snapshot, preferences


def run_params() -> dict[str, Any]:
    """Settings frozen into the run at request time, so every task of a run agrees.

    With ``ALGORITHM = "auto"`` the algorithm is "auto" until the holdout gate
    (:mod:`shopreco.pipeline.selection`) puts the chosen configuration in its place."""
    algorithm = str(reco_settings.ALGORITHM)
    if algorithm not in (*MODELS, "auto"):
        raise ImproperlyConfigured(
            f"SHOPRECO['ALGORITHM'] = {algorithm!r}: choose one of {', '.join(MODELS)} "
            "or 'auto'."
        )
    k = int(reco_settings.NEIGHBOURS)
    n_similar = int(reco_settings.SIMILAR_PER_PRODUCT)
    lam = reco_settings.EASE_LAMBDA
    return {
        "token": uuid.uuid4().hex[:12],
        "snapshot_prefix": str(reco_settings.SNAPSHOT_PREFIX),
        "algorithm": algorithm,
        "similarity": str(reco_settings.SIMILARITY),
        "k": k,
        "shrinkage": float(reco_settings.SHRINKAGE),
        "stored_neighbours": max(k, n_similar),
        "recommendations": int(reco_settings.RECOMMENDATIONS_PER_USER),
        "similar_per_product": n_similar,
        "block_size": max(1, int(reco_settings.BLOCK_SIZE)),
        "user_batch_size": max(1, int(reco_settings.USER_BATCH_SIZE)),
        "exclude_owned": bool(reco_settings.EXCLUDE_OWNED),
        "ease_lambda": lam if lam == "auto" else float(lam),
        "ease_max_items": int(reco_settings.EASE_MAX_ITEMS),
        "popularity_penalty": float(reco_settings.POPULARITY_PENALTY),
        # the deployment strategy (pipeline.selection), frozen like the rest
        "candidates": ([candidate_config(c) for c in reco_settings.CANDIDATES]
                       if algorithm == "auto" else [{"algorithm": algorithm}]),
        "selection_every": max(1, int(reco_settings.SELECTION_EVERY)),
        "holdout": {**DEFAULTS["HOLDOUT"], **reco_settings.HOLDOUT},
        "gate_metric": str(reco_settings.GATE_METRIC),
        "gate_tolerance": (None if reco_settings.GATE_TOLERANCE is None
                           else float(reco_settings.GATE_TOLERANCE)),
    }


def with_config(params: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a candidate configuration's values in place (see ``CANDIDATES``);
    the configuration itself is kept as ``params["config"]``."""
    out = {**params, "config": dict(config)}
    for key, value in config.items():
        out[CONFIG_KEYS[key][0]] = value
    out["stored_neighbours"] = max(int(out["k"]), int(out["similar_per_product"]))
    out.pop("method", None)  # resolved again for the new configuration
    return out


def config_of(params: dict[str, Any]) -> dict[str, Any]:
    """The full configuration ``params`` fit with: every key a candidate may set, so two
    runs compare equal exactly when they fit the same model."""
    return {key: params[name] for key, (name, _) in sorted(CONFIG_KEYS.items())
            if name in params}


def model_of(params: dict[str, Any]) -> RankingModel:
    """The engine's record of the run's ranking model: what the functions below switch on."""
    return ranking_model(params["algorithm"])


def resolve_method(params: dict[str, Any], snap: Snapshot) -> str:
    """The item similarity actually used for this data: the model's name for a model whose
    fitted weights are the similarity (EASE: "ease").

    "auto" is the top-N choice: cosine over TF-IDF weighted preferences (implicit's TFIDF
    item-item model), shrunk by co-occurrence (SHRINKAGE), which keeps a pair seen together
    once or twice from outranking well-supported neighbours on sparse shop data. A centred
    method (its record's ``centred``) ranks by rating values, as the engine's
    rating-prediction recipe does; on a shop with no explicit ratings at all it falls back
    to cosine: centring a shopper's uniform pseudo-ratings (all views, say) on their mean
    would erase exactly the co-view signal such a shop has. An unknown name is a ValueError
    naming the choices.
    """
    model = model_of(params)
    if model.learns_similarity:
        return model.name
    method = params["similarity"]
    if method == "auto":
        return IMPLICIT_METHOD
    if snap.n_ratings == 0 and similarity_method(method, "item").centred:
        return IMPLICIT_METHOD
    return method


def ranks_by_ratings(params: dict[str, Any]) -> bool:
    """Whether the item similarity is a named one (``cosine``, ``adjusted_cosine``, ...):
    those keep their meaning from before "auto" existed, computed on the rating matrix
    ``R`` (events as pseudo-ratings), and item kNN then ranks by ``R`` too. "auto", EASE
    and user kNN learn from the preference weights."""
    return params["similarity"] != "auto"


def weights(snap: Snapshot, params: dict[str, Any]) -> sp.csr_matrix:
    """The users x products matrix the run's model ranks with (see matrix.preferences)."""
    if model_of(params).ranks_with_similarity and ranks_by_ratings(params):
        return snap.R
    return preferences(snap)


def _ease(model: RankingModel, params: dict[str, Any], **kw: Any) -> Any:
    return model.estimator(lambda_=params["ease_lambda"], max_items=params["ease_max_items"],
                           max_neighbours=None, tail_k=params["stored_neighbours"],
                           beta=params["popularity_penalty"], **kw)


def prepared(snap: Snapshot, params: dict[str, Any]) -> Any:
    """What every similarity block of a run shares, computed once per process: the fitted
    EASE model, or the kNN similarity's prepared matrices.

    EASE's solve takes the BLAS library's threads in a Celery task as in process: it is the
    only task of its stage (the other workers wait for it), and a different thread count
    would change the last bits of the weights, so sharded and in-process runs would differ.
    """
    model = model_of(params)
    if model.learns_similarity:
        return _ease(model, params).fit(preferences(snap))
    X = snap.R if ranks_by_ratings(params) else tfidf_weight(preferences(snap))
    return prepare(X, params["method"], kind="item")


def blocks(n_items: int, block_size: int) -> list[tuple[int, int]]:
    return [(a, min(a + block_size, n_items)) for a in range(0, n_items, block_size)]


def user_batches(n_users: int, batch_size: int) -> list[tuple[int, int]]:
    return [(a, min(a + batch_size, n_users)) for a in range(0, n_users, batch_size)]


def blocks_for(snap: Snapshot, params: dict[str, Any]) -> list[tuple[int, int]]:
    """Similarity row blocks, one task each: EASE's solve is one dense factorisation,
    which does not split, so it is one block (the user batches still shard)."""
    if not model_of(params).sharded:
        return blocks(snap.n_products, max(snap.n_products, 1))
    return blocks(snap.n_products, params["block_size"])


def similarity_block(snap: Snapshot, params: dict[str, Any], start: int, stop: int,
                     shared: Any = None, n_jobs: int | None = 1) -> sp.csr_matrix:
    """Rows [start, stop) of the item similarity: the unit of work one task computes.
    For EASE: the largest positive weights of each item (the "similar" list: what a shopper
    who has only that item is shown next) with the tail's scaled cosine rows."""
    P = shared if shared is not None else prepared(snap, params)
    if model_of(params).learns_similarity:
        return P.similar_matrix(params["stored_neighbours"])[start:stop]
    return item_similarity_block(P, start, stop, shrinkage=params["shrinkage"],
                                 k=params["stored_neighbours"], n_jobs=n_jobs)


def ease_parts_to_arrays(model: EASE) -> dict[str, np.ndarray]:
    """The fitted EASE model's parts as arrays for storage (see :func:`fit_model`)."""
    head, W, tail = model.parts()
    return {"head": head, "weights": W, "t_data": tail.data, "t_indices": tail.indices,
            "t_indptr": tail.indptr, "t_shape": np.array(tail.shape, dtype=np.int64)}


def ease_parts_from_arrays(a: dict[str, np.ndarray]) -> tuple:
    tail = sp.csr_matrix((a["t_data"], a["t_indices"], a["t_indptr"]),
                         shape=tuple(int(x) for x in a["t_shape"]))
    return a["head"], a["weights"], tail


def assemble(parts: list[sp.csr_matrix], n_items: int) -> sp.csr_matrix:
    if not parts:
        return sp.csr_matrix((n_items, n_items))
    S = sp.vstack(parts, format="csr")
    S.has_sorted_indices = True
    return S


def also_bought(snap: Snapshot, params: dict[str, Any]) -> sp.csr_matrix:
    """Co-purchase neighbours: cosine of binary purchase columns, i.e. co-purchase count
    / sqrt(buyers of i * buyers of j), top SIMILAR_PER_PRODUCT per product."""
    B = snap.purchases.astype(np.float64)
    return item_similarity(B, method="cosine", shrinkage=0.0,
                           k=params["similar_per_product"], n_jobs=1)


def top_rows(S: sp.csr_matrix, n: int, positive: bool = True):
    """(src, dst, score) of the top ``n`` entries per row, best first (ties: smaller dst).

    Sorted by two keys (row, -score), not three: with the row's columns in ascending order
    (sorted CSR indices) the stable sort already settles ties by the smaller column."""
    S = S.tocsr()
    if not S.has_sorted_indices:
        S = S.sorted_indices()
    rows = np.repeat(np.arange(S.shape[0], dtype=np.int64), np.diff(S.indptr))
    cols = S.indices.astype(np.int64)
    vals = S.data
    if positive:
        keep = vals > 0
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((-vals, rows))  # stable: equal scores keep ascending columns
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(S.shape[0]))
    rank = np.arange(rows.size) - starts[rows]
    keep = rank < n
    return rows[keep], cols[keep], vals[keep]


@dataclass
class RecBatch:
    users: np.ndarray  # row index per recommendation
    items: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray  # 1-based
    reason_codes: np.ndarray  # index into REASONS
    reason_items: np.ndarray  # -1 if none

    def to_arrays(self) -> dict[str, np.ndarray]:
        return dict(users=self.users, items=self.items, scores=self.scores, ranks=self.ranks,
                    reason_codes=self.reason_codes, reason_items=self.reason_items)

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> RecBatch:
        return cls(a["users"], a["items"], a["scores"], a["ranks"], a["reason_codes"],
                   a["reason_items"])

    @classmethod
    def concat(cls, parts: list[RecBatch]) -> RecBatch:
        if not parts:
            e = np.zeros(0, dtype=np.int64)
            return cls(e, e, np.zeros(0), e, np.zeros(0, dtype=np.int8), e)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("users", "items", "scores", "ranks", "reason_codes", "reason_items")))

    def reasons(self) -> list[str]:
        return [REASONS[c] for c in self.reason_codes.tolist()]

    def __len__(self) -> int:
        return int(self.users.size)


def user_prepared(snap: Snapshot) -> Any:
    """User kNN's prepared preference matrix (cosine over users), which every batch of a
    run shares: computed once per process (see ``fit_model``'s ``shared``)."""
    return prepare(preferences(snap), "cosine", kind="user")


def fit_model(snap: Snapshot, S: sp.csr_matrix, params: dict[str, Any],
              ease_parts: tuple | None = None, user_rows: tuple[int, int] | None = None,
              shared: Any = None) -> Any:
    """The run's ranking model over ``snap``'s users, from the run's stored parts, so a
    batch task or a per-user refresh scores exactly as the full run does: the item
    similarity ``S``; for EASE the dense head weights (``ease_parts``: head, weights, tail);
    for the user-based model the similarity rows of users [start, stop) (``user_rows``),
    computed here against every user of ``snap`` (``shared``: :func:`user_prepared`)."""
    model = model_of(params)
    X = weights(snap, params)
    if model.learns_similarity:
        head, W, tail = ease_parts
        return model.estimator.from_parts(X, head, W, tail, tail_k=params["stored_neighbours"])
    if model.neighbours == "user":
        start, stop = user_rows if user_rows is not None else (0, X.shape[0])
        P = shared if shared is not None else user_prepared(snap)
        rows = user_similarity_block(P, start, stop, k=params["k"], n_jobs=1)
        n = X.shape[0]
        full = sp.vstack([sp.csr_matrix((start, n)), rows, sp.csr_matrix((n - stop, n))],
                         format="csr")
        return model.estimator(similarity="cosine", k=params["k"], max_neighbours=params["k"],
                               n_jobs=1, weighting="none").fit(X, similarity=full)
    return model.estimator(similarity=params["method"], k=params["k"],
                           shrinkage=params["shrinkage"],
                           max_neighbours=params["stored_neighbours"], n_jobs=1
                           ).fit(X, similarity=S)


def recommend(model: Any, snap: Snapshot, params: dict[str, Any],
              user_rows: np.ndarray) -> RecBatch:
    """Top-N for the given user rows, excluding owned products, with reason codes."""
    user_rows = np.asarray(user_rows, dtype=np.int64)
    exclude = snap.owned if params["exclude_owned"] else None
    items, scores, reason_items = model.recommend_with_reasons(
        user_rows, n=params["recommendations"], exclude_seen=False, exclude=exclude
    )
    n = items.shape[1]
    users = np.repeat(user_rows, n)
    ranks = np.tile(np.arange(1, n + 1, dtype=np.int64), user_rows.size)
    items, scores, reason_items = items.ravel(), scores.ravel(), reason_items.ravel()
    keep = (items >= 0) & np.isfinite(scores) & (scores > 0)
    users, items, scores, reason_items = users[keep], items[keep], scores[keep], reason_items[keep]
    # ranks re-numbered after dropping non-positive scores (they are sorted, so a prefix)
    ranks = ranks[keep]
    return RecBatch(users, items, scores, ranks, reason_codes(snap, users, reason_items),
                    reason_items)


def reason_codes(snap: Snapshot, users: np.ndarray, reason_items: np.ndarray) -> np.ndarray:
    """Reason code of each (user, reason item) cell: rated / bought / carted / viewed."""
    R = snap.R
    out = np.full(users.size, 3, dtype=np.int8)  # "viewed" if unknown
    has = reason_items >= 0
    if not has.any():
        return out
    keys = np.repeat(np.arange(R.shape[0], dtype=np.int64), np.diff(R.indptr)) * R.shape[1] \
        + R.indices
    q = users[has] * R.shape[1] + reason_items[has]
    pos = np.searchsorted(keys, q)
    pos = np.minimum(pos, keys.size - 1)
    found = keys[pos] == q
    codes = np.full(q.size, 3, dtype=np.int8)
    codes[found] = snap.reason[pos[found]]
    out[has] = codes
    return out
