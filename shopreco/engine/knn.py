"""Neighbourhood models: ItemKNN and UserKNN, in the style of Surprise and implicit.

Both share one implementation written in "object" terms: the object is the item for
ItemKNN (neighbours are items the user rated) and the user for UserKNN (neighbours are
users who rated the item). Everything is batched over pairs or users with numpy and
sparse products; chunks bound the scratch memory, no loop runs per user or pair.

Two kinds of output:

- ``predict`` (ratings): issue 3's formula. For a pair (u, i) the stored similarity
  row is expanded, the neighbours with a rating in the other dimension are kept and the
  k most similar of them (ties: smaller index) are picked by a partition threshold, and
  ``pred = centre + sum(sim * (r - centre_n)) / (sum(|sim|) + damping)``, where the centre is the
  object's mean (``centering="mean"``) or the ALS baseline ``mu + b_u + b_i``
  (``"baseline"``). Without neighbours (or with fewer than ``min_k``) the prediction is
  the baseline.
- ``recommend`` (ranking): implicit's item-item score, the sum over the user's
  interactions j of ``weight(u, j) * sim_k(j, i)`` with ``sim_k`` the k nearest neighbours
  of j. Unnormalised sums favour items close to many of the user's items, which is what
  top-N ranking needs (normalised scores favour items with a single lucky neighbour).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._sparse import (
    DENSE_BLOCK_CELLS,
    as_csr,
    entry_keys,
    lookup,
    row_ids,
    segment_ranges,
    take_where,
    topk_mask,
    topk_rows,
)
from .baseline import Baselines, fit_baselines
from .similarity import (
    IMPLICIT_METHOD,
    check_support_shrinkage,
    item_similarity,
    prepare,
    resolve_similarity,
    similarity_method,
    user_similarity,
)

# Max entries of one expanded (pair x neighbour) chunk in predict / reasons.
_CHUNK = 1_000_000
# Largest dense (object, context) position table predict builds (int32 cells).
_TABLE_CELLS = 16_000_000


def tfidf_weight(R) -> sp.csr_matrix:
    """TF-IDF weights of ``R`` (users x items) for item-item similarity: sqrt(weight) *
    log(n_items / (1 + items of the user)), clipped at 0.

    Users are the documents and items the terms (implicit's TFIDFRecommender weighting):
    heavy users, who co-rate almost everything, count less in item similarities than
    focused ones. On MovieLens latest-small as binary feedback it ranked better than plain
    cosine (bench/bench_engine.py, section b).
    """
    R = as_csr(R)
    n_items = R.shape[1]
    idf = np.maximum(np.log(n_items / (1.0 + np.diff(R.indptr))), 0.0)
    out = R.copy()
    out.data = np.sqrt(np.abs(R.data)) * np.sign(R.data) * idf[row_ids(R)]
    return out


class _NeighbourModel:
    """Shared fit/predict/recommend; subclasses fix the orientation.

    What "auto" / None arguments become comes from the similarity's record
    (:data:`~shopreco.engine.similarity.SIMILARITY_METHODS`), and which similarity "auto"
    is from :func:`~shopreco.engine.similarity.resolve_similarity`: no method name is tested
    here, so a new similarity needs no change to the models."""

    _kind = "item"
    _auto_tfidf = False

    def __init__(
        self,
        similarity: str = "auto",
        k: int = 40,
        shrinkage: float | None = None,
        max_neighbours: int | str | None = "auto",
        min_k: int = 1,
        centering: str = "auto",
        positive_only: bool | str = "auto",
        reg_user: float = 15.0,
        reg_item: float = 10.0,
        n_epochs: int = 10,
        n_jobs: int | None = None,
        weighting: str = "auto",
        damping: float | str = "auto",
        support_shrinkage: float | None = None,
    ) -> None:
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if max_neighbours not in (None, "auto") and (
                not isinstance(max_neighbours, (int, np.integer)) or max_neighbours < 1):
            raise ValueError(f"max_neighbours must be a positive integer or None, "
                             f"got {max_neighbours!r}")
        if centering not in ("auto", "mean", "baseline"):
            raise ValueError(f"centering must be 'auto', 'mean' or 'baseline', got {centering!r}")
        if weighting not in ("auto", "none", "tfidf"):
            raise ValueError(f"weighting must be 'auto', 'none' or 'tfidf', got {weighting!r}")
        if shrinkage is not None and (not np.isfinite(shrinkage) or shrinkage < 0):
            raise ValueError(f"shrinkage must be None or a number >= 0, got {shrinkage!r}")
        self.similarity = similarity
        self.k = int(k)
        self.shrinkage = shrinkage
        self.max_neighbours = max_neighbours
        self.min_k = int(min_k)
        self.centering = centering
        self.positive_only = positive_only
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_epochs = n_epochs
        self.n_jobs = n_jobs
        self.weighting = weighting
        if damping != "auto" and (isinstance(damping, str) or not np.isfinite(damping)
                                  or damping < 0):
            raise ValueError(f"damping must be 'auto' or a finite number >= 0, got {damping!r}")
        self.damping = damping
        if support_shrinkage is not None:
            check_support_shrinkage(support_shrinkage)
        self.support_shrinkage = support_shrinkage

    # ------------------------------------------------------------------ fit
    def fit(self, R, similarity: sp.spmatrix | None = None) -> _NeighbourModel:
        """Fit on ``R`` (users x items, ratings or implicit weights).

        ``similarity`` (objects x objects) replaces the computed one, e.g. when a task
        queue computed it by blocks with ``item_similarity_block``.
        """
        R = as_csr(R)
        self.R_ = R
        self.n_users_, self.n_items_ = R.shape
        # "auto": cosine on binary data, the kind's rating method on ratings
        method = self.method_ = resolve_similarity(self.similarity, R, self._kind)
        spec = similarity_method(method)
        self.implicit_ = method == IMPLICIT_METHOD and self.similarity == "auto"
        weighting = self.weighting
        if weighting == "auto":
            weighting = "tfidf" if self.implicit_ and self._auto_tfidf else "none"
        self.weighting_ = weighting
        for cache in ("_baselines", "_pred_state", "_pos_table", "_rank_m", "_rank_t"):
            self.__dict__.pop(cache, None)
        centering = self.centering
        # "auto" / None arguments take the method's record (cosine_baseline shrinks by
        # support instead of co-counts: see ItemKNN's docstring)
        if centering == "auto":
            centering = "baseline" if spec.needs_baselines else "mean"
        self.centering_ = centering
        shrink = self.shrinkage
        self.shrinkage_ = float(spec.shrinkage if shrink is None else shrink)
        self.max_neighbours_ = self._resolve_store(method)
        damp = self.damping
        self.damping_ = float(spec.damping if damp == "auto" else damp)
        pos = self.positive_only
        self.positive_only_ = spec.positive_only if pos == "auto" else bool(pos)
        n_obj = self.n_items_ if self._kind == "item" else self.n_users_
        if similarity is not None:
            S = sp.csr_matrix(similarity, dtype=np.float64)
            if S.shape != (n_obj, n_obj):
                raise ValueError(f"similarity must have shape {(n_obj, n_obj)}, got {S.shape}")
            S = topk_rows(S, self.max_neighbours_, drop_offset=0)
        else:
            S = self._compute_similarity(R, method)
        self.similarity_ = S
        return self

    @property
    def baselines_(self) -> Baselines:
        """ALS baselines mu + b_u + b_i of the fitted matrix: the prediction fallback and
        the baseline similarities' centre (fitted on first use: ranking never needs them)."""
        b = self.__dict__.get("_baselines")
        if b is None:
            if "R_" not in self.__dict__:
                self._check_fitted()
            b = self._baselines = fit_baselines(self.R_, self.reg_user, self.reg_item,
                                                self.n_epochs)
        return b

    def _prediction_state(self) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
        """(object-major shape, sorted entry keys, centred residuals in that order): what
        rating prediction looks up, built on the first predict so that a model used only
        for ranking (implicit data) does not pay for it at fit."""
        state = self.__dict__.get("_pred_state")
        if state is None:
            R = self.R_
            # object-major view of the ratings: objects x contexts
            Ro = R.T.tocsr() if self._kind == "item" else R
            Ro.sort_indices()
            if self.centering_ == "baseline":
                resid = R.data - self.baselines_.of_entries(R)
            else:
                means = self._object_means(R)
                obj = R.indices if self._kind == "item" else row_ids(R)
                resid = R.data - means[obj]
                self.object_means_ = means
            resid_mat = sp.csr_matrix((resid, R.indices, R.indptr), shape=R.shape)
            resid_o = resid_mat.T.tocsr() if self._kind == "item" else resid_mat
            resid_o.sort_indices()
            state = self._pred_state = (Ro.shape, entry_keys(Ro), resid_o.data)
        return state

    @property
    def _rank(self) -> sp.csr_matrix:
        """The k nearest neighbours per object, for ranking (built on first use: rating
        prediction reads the stored list instead)."""
        M = self.__dict__.get("_rank_m")
        if M is None:
            S = self.similarity_
            M = topk_rows(S, self.k) if self.max_neighbours_ is None or \
                self.k < self.max_neighbours_ else S
            self._rank_m = M
        return M

    def _position_table(self) -> np.ndarray | None:
        """Position of every (object, context) rating in the object-major data, -1 if
        unrated, as a dense int32 table when it is small (<= _TABLE_CELLS cells: 64 MiB);
        None otherwise (lookups then binary-search the sorted keys).

        The table is context-major (cell ctx * n_obj + obj): one pair's neighbours are
        looked up in one context's line, close together, instead of one line apart each
        (the cache misses of the object-major layout dominated predict)."""
        if "_pos_table" not in self.__dict__:
            (n_obj, n_ctx), keys, _ = self._prediction_state()
            table = None
            if n_obj * n_ctx <= _TABLE_CELLS and keys.size < 2**31:
                table = np.full(n_obj * n_ctx, -1, dtype=np.int32)
                obj, ctx = np.divmod(keys, n_ctx)
                table[ctx * n_obj + obj] = np.arange(keys.size, dtype=np.int32)
            self._pos_table = table
        return self._pos_table

    def _resolve_store(self, method: str) -> int | None:
        """Neighbours stored per object. "auto": ``k`` for a ranking similarity (the
        record's ``ranking_only``: cosine), whose only use is the ranking score over the k
        nearest; ``max(k, 200)`` otherwise, because rating prediction looks in the stored
        list for the k most similar neighbours *the user rated* and a list cut at k rarely
        holds k of them (see the class docstring)."""
        if self.max_neighbours != "auto":
            return self.max_neighbours
        return self.k if similarity_method(method).ranking_only else max(self.k, 200)

    def _object_means(self, R: sp.csr_matrix) -> np.ndarray:
        axis = 0 if self._kind == "item" else 1
        counts = (np.bincount(R.indices, minlength=R.shape[1]) if self._kind == "item"
                  else np.diff(R.indptr))
        sums = np.asarray(R.sum(axis=axis)).ravel()
        return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)

    def _compute_similarity(self, R: sp.csr_matrix, method: str) -> sp.csr_matrix:
        fn = item_similarity if self._kind == "item" else user_similarity
        if self.weighting_ == "tfidf":
            R = tfidf_weight(R)
        base = self.baselines_ if similarity_method(method).needs_baselines else None
        P = prepare(R, method, kind=self._kind, baselines=base,
                    support_shrinkage=self.support_shrinkage)
        return fn(P, method=method, shrinkage=self.shrinkage_, k=self.max_neighbours_,
                  n_jobs=self.n_jobs, positive_only=self.positive_only_)

    # -------------------------------------------------------------- predict
    def _pairs(self, user_idx, item_idx):
        users = np.asarray(user_idx, dtype=np.int64).ravel()
        items = np.asarray(item_idx, dtype=np.int64).ravel()
        if users.shape != items.shape:
            raise ValueError(f"user_idx and item_idx must have the same length, "
                             f"got {users.size} and {items.size}")
        return users, items

    def predict(self, user_idx, item_idx) -> np.ndarray:
        """Predicted ratings for (user, item) pairs; baseline where no neighbour exists.

        Indices outside the fitted matrix (e.g. -1 for an unknown user) get the baseline
        with that bias set to 0.
        """
        self._check_fitted()
        users, items = self._pairs(user_idx, item_idx)
        out = self.baselines_.predict(users, items)
        known = (users >= 0) & (users < self.n_users_) & (items >= 0) & (items < self.n_items_)
        idx = np.nonzero(known)[0]
        if idx.size == 0:
            return out
        if self._kind == "item":
            obj, ctx = items[idx], users[idx]
        else:
            obj, ctx = users[idx], items[idx]
        lens = np.diff(self.similarity_.indptr)[obj]
        # chunk the pairs so that the expansion stays under _CHUNK entries
        bounds = _chunk_bounds(lens, _CHUNK)
        for a, z in zip(bounds[:-1], bounds[1:], strict=True):
            out[idx[a:z]] = self._predict_chunk(obj[a:z], ctx[a:z], users[idx[a:z]],
                                                items[idx[a:z]], out[idx[a:z]])
        return out

    def _predict_chunk(self, obj, ctx, users, items, fallback):
        S = self.similarity_
        (n_obj, n_ctx), keys, resid = self._prediction_state()
        seg, pos, _ = segment_ranges(S.indptr, obj)
        nb = S.indices[pos]
        lens = np.diff(S.indptr)[obj]
        table = self._position_table()
        if table is not None:
            # dense (context, object) -> entry position table: one gather per lookup
            key = np.repeat(ctx * np.int64(n_obj), lens)
            key += nb
            kpos = table[key]
            hit = np.nonzero(kpos >= 0)[0]
        else:
            key = nb.astype(np.int64)
            key *= n_ctx
            key += np.repeat(ctx, lens)
            kpos = np.minimum(np.searchsorted(keys, key), max(keys.size - 1, 0))
            found = keys[kpos] == key if keys.size else np.zeros(key.size, bool)
            hit = np.nonzero(found)[0]
        # only the neighbours the user rated go on (about a tenth of the expansion)
        segu, nbu, kposu = seg[hit], nb[hit], kpos[hit]
        sims = S.data[pos[hit]]
        if self.positive_only_:
            pos_ok = sims > 0
            segu, nbu, kposu, sims = take_where(pos_ok, segu, nbu, kposu, sims)
        n = obj.size
        counts = np.bincount(segu, minlength=n)
        if counts.size and counts.max() > self.k:
            # the k most similar rated neighbours per pair (ties: smaller neighbour index)
            use = topk_mask(sims, nbu, counts, self.k)
            segu, sims, kposu = segu[use], sims[use], kposu[use]
        res = resid[kposu]
        num = np.bincount(segu, sims * res, minlength=n)
        den = np.bincount(segu, np.abs(sims), minlength=n)
        cnt = np.bincount(segu, minlength=n)
        if self.centering_ == "baseline":
            base = self.baselines_.predict(users, items)
        else:
            base = self.object_means_[obj]
        ok = (den > 0) & (cnt >= self.min_k) & np.isfinite(base)
        pred = np.where(ok, base + np.divide(num, den + self.damping_, out=np.zeros(n),
                                                 where=den > 0), fallback)
        return pred

    # ------------------------------------------------------------ recommend
    def _weights(self, users: np.ndarray) -> sp.csr_matrix:
        """Interaction weights of ``users`` used for ranking (see the module docstring)."""
        return self.R_[users]

    def _scores(self, users: np.ndarray) -> sp.csr_matrix:
        raise NotImplementedError

    def recommend(self, user_idxs, n: int = 10, exclude_seen: bool = True, exclude=None):
        """Top-``n`` items per user: (items int array [len(users), n], scores float array).

        Rows are padded with -1 / -inf where fewer than ``n`` candidates exist. Seen items
        (stored in the fitted matrix) and the items of the optional ``exclude`` mask
        (users x items, e.g. bought) are skipped. Ties go to the smaller item index.
        """
        items, scores, _ = self._recommend(user_idxs, n, exclude_seen, exclude, reasons=False)
        return items, scores

    def recommend_with_reasons(self, user_idxs, n: int = 10, exclude_seen: bool = True,
                               exclude=None):
        """As :meth:`recommend`, plus ``reason_items[u, j]``: the item the user interacted
        with that contributed most to ``items[u, j]`` (-1 if none)."""
        return self._recommend(user_idxs, n, exclude_seen, exclude, reasons=True)

    def _recommend(self, user_idxs, n, exclude_seen, exclude, reasons):
        self._check_fitted()
        users = np.asarray(user_idxs, dtype=np.int64).ravel()
        if n < 1 or int(n) != n:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        bad = (users < 0) | (users >= self.n_users_)
        if bad.any():
            raise ValueError(f"user index out of range: {users[bad][0]}")
        if exclude is not None:
            exclude = sp.csr_matrix(exclude)
            if exclude.shape != (self.n_users_, self.n_items_):
                raise ValueError(f"exclude must have shape {(self.n_users_, self.n_items_)}, "
                                 f"got {exclude.shape}")
        n = int(n)
        n_items = self.n_items_
        out_items = np.full((users.size, n), -1, dtype=np.int64)
        out_scores = np.full((users.size, n), -np.inf)
        step = max(1, DENSE_BLOCK_CELLS // max(n_items, 1))
        for a in range(0, users.size, step):
            u = users[a:a + step]
            dense = self._dense_scores(u)
            if exclude_seen:
                seen = self.R_[u]
                dense[row_ids(seen), seen.indices] = -np.inf
            if exclude is not None:
                ex = exclude[u]
                dense[row_ids(ex), ex.indices] = -np.inf
            it, sv = _top_n_dense(dense, n)
            out_items[a:a + u.size] = it
            out_scores[a:a + u.size] = sv
        if not reasons:
            return out_items, out_scores, None
        return out_items, out_scores, self._reasons(users, out_items)

    def similar_items(self, item_idx: int, n: int = 10) -> list[tuple[int, float]]:
        """The ``n`` items most similar to ``item_idx``: [(item, score)], best first (ties:
        smaller index). ItemKNN reads its neighbour list; UserKNN, which has none, takes
        the cosine of the item's column with every other column of the fitted weights."""
        self._check_fitted()
        if not 0 <= int(item_idx) < self.n_items_:
            raise ValueError(f"item index out of range: {item_idx}")
        if self._kind == "item":
            row = self._rank[int(item_idx)].toarray().ravel()
        else:
            C = self.R_.tocsc()
            norms = np.sqrt(np.asarray(C.multiply(C).sum(axis=0)).ravel())
            col = C[:, int(item_idx)]
            dots = np.asarray((col.T @ C).todense()).ravel()
            row = np.divide(dots, norms * norms[int(item_idx)], out=np.zeros_like(dots),
                            where=norms > 0)
        return _top_of_row(row, int(item_idx), n)

    def _dense_scores(self, users: np.ndarray) -> np.ndarray:
        """Scores of ``users`` as a dense block, -inf where an item is no candidate."""
        sc = self._scores(users).tocsr()
        dense = np.full((users.size, self.n_items_), -np.inf)
        dense[row_ids(sc), sc.indices] = sc.data
        return dense

    def _check_fitted(self) -> None:
        if not hasattr(self, "similarity_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(R) first")


class ItemKNN(_NeighbourModel):
    """Item-based neighbourhood model (items similar to the ones the user rated).

    Defaults are tuned once on MovieLens latest-small so callers need not tune:

    - ``similarity="auto"``: ratings -> ``cosine_baseline`` (cosine of baseline residuals,
      each item's vector shrunk by its support, sqrt(n / (n + 10)); baseline centring,
      positive neighbours only); binary implicit data -> ``cosine`` over TF-IDF weighted
      interactions (``weighting="auto"`` -> :func:`tfidf_weight`), which measured best for
      top-N. On MovieLens latest-small ``cosine_baseline`` predicted better than
      KNNBaseline's recipe (``pearson_baseline`` with co-count shrinkage 100, still
      available; bench/RESULTS.md, rating prediction), and it is one plain sparse product
      that the fused top-k kernel computes, so it also fits faster. The support shrinkage
      (``support_shrinkage``: beta of the cosine methods, None = the method's default, 10
      for ``cosine_baseline`` and none for ``cosine``; other methods refuse it at fit)
      stands in for the co-count shrinkage, which would need a second product per pair;
      without either the RMSE is clearly worse.
    - ``k``: neighbours per prediction and per item in the ranking score.
    - ``damping`` ("auto": 0.5 with the baseline similarities, else 0 = issue 3's formula): added
      to the prediction's denominator, so a correction resting on a few weak neighbours
      shrinks toward the baseline; on MovieLens latest-small it lowered the RMSE.
    - ``max_neighbours`` ("auto": ``k`` for cosine, ``max(k, 200)`` for the rating
      similarities): similarities stored per item (top values), bounding memory
      at items x max_neighbours; ``None`` stores all (exact formula, small catalogues
      only). On MovieLens latest-small the RMSE stops improving at about 200 stored
      neighbours (``cosine_baseline`` still gains up to there), while predict time keeps
      growing with the store.
    """

    _kind = "item"
    _auto_tfidf = True

    def _scores(self, users: np.ndarray) -> sp.csr_matrix:
        return self._weights(users) @ self._rank

    def _reasons(self, users, items):
        """Reason per recommended pair: argmax_j weight(u, j) * sim_k(j, i) over j rated."""
        ST = self._rank_T()
        flat_u = np.repeat(users, items.shape[1])
        flat_i = items.ravel()
        reasons = np.full(flat_i.size, -1, dtype=np.int64)
        valid = np.nonzero(flat_i >= 0)[0]
        if valid.size == 0:
            return reasons.reshape(items.shape)
        lens = np.diff(ST.indptr)[flat_i[valid]]
        bounds = _chunk_bounds(lens, _CHUNK)
        R = self.R_
        keys = entry_keys(R)
        for a, z in zip(bounds[:-1], bounds[1:], strict=True):
            sel = valid[a:z]
            seg, pos, _ = segment_ranges(ST.indptr, flat_i[sel])
            j = ST.indices[pos].astype(np.int64)
            found, w = lookup(keys, R.data, flat_u[sel][seg] * np.int64(R.shape[1]) + j)
            contrib = w * ST.data[pos]
            reasons[sel] = _argmax_per_segment(seg, j, contrib, found, sel.size)
        return reasons.reshape(items.shape)

    def _rank_T(self) -> sp.csr_matrix:
        if not hasattr(self, "_rank_t"):
            self._rank_t = self._rank.T.tocsr()
        return self._rank_t

    def explain(self, user_idx: int, item_idx: int, top: int = 3) -> list[tuple[int, float]]:
        """Items the user interacted with that contributed most to the ranking score of
        ``item_idx``: [(item, weight * similarity)], largest first."""
        self._check_fitted()
        ST = self._rank_T()
        lo, hi = ST.indptr[item_idx], ST.indptr[item_idx + 1]
        j = ST.indices[lo:hi].astype(np.int64)
        found, w = lookup(entry_keys(self.R_), self.R_.data,
                          int(user_idx) * np.int64(self.n_items_) + j)
        contrib = w[found] * ST.data[lo:hi][found]
        j = j[found]
        order = np.lexsort((j, -contrib))[:top]
        return [(int(j[o]), float(contrib[o])) for o in order]


class UserKNN(_NeighbourModel):
    """User-based neighbourhood model (what similar users rated); same surface as ItemKNN.

    ``explain`` returns neighbour users; reasons in ``recommend_with_reasons`` are the
    user's own item most shared with the neighbour who contributed most. Ratings default
    to ``pearson_baseline`` (co-count shrinkage 100): for users ``cosine_baseline``
    measured worse on MovieLens latest-small.
    """

    _kind = "user"

    def _scores(self, users: np.ndarray) -> sp.csr_matrix:
        return self._rank[users] @ self.R_

    def _neighbour_contribs(self, flat_u, flat_i):
        """Expand pairs over the user's k nearest users: (seg, v, contribution, found)."""
        S = self._rank
        seg, pos, _ = segment_ranges(S.indptr, flat_u)
        v = S.indices[pos].astype(np.int64)
        found, w = lookup(entry_keys(self.R_), self.R_.data,
                          v * np.int64(self.n_items_) + flat_i[seg])
        return seg, v, w * S.data[pos], found

    def _reasons(self, users, items):
        flat_u = np.repeat(users, items.shape[1])
        flat_i = items.ravel()
        reasons = np.full(flat_i.size, -1, dtype=np.int64)
        valid = np.nonzero(flat_i >= 0)[0]
        if valid.size == 0:
            return reasons.reshape(items.shape)
        seg, v, contrib, found = self._neighbour_contribs(flat_u[valid], flat_i[valid])
        best_v = _argmax_per_segment(seg, v, contrib, found, valid.size)
        has = np.nonzero(best_v >= 0)[0]
        if has.size:
            # the user's item that the best neighbour also rated, highest joint weight
            R = self.R_
            seg2, pos, _ = segment_ranges(R.indptr, flat_u[valid][has])
            j = R.indices[pos].astype(np.int64)
            f2, w2 = lookup(entry_keys(R), R.data, best_v[has][seg2] * np.int64(R.shape[1]) + j)
            joint = R.data[pos] * w2
            reasons[valid[has]] = _argmax_per_segment(seg2, j, joint, f2, has.size)
        return reasons.reshape(items.shape)

    def explain(self, user_idx: int, item_idx: int, top: int = 3) -> list[tuple[int, float]]:
        """Neighbour users who contributed most to the ranking score of ``item_idx``:
        [(user, similarity * their weight for the item)], largest first."""
        self._check_fitted()
        seg, v, contrib, found = self._neighbour_contribs(
            np.array([user_idx], dtype=np.int64), np.array([item_idx], dtype=np.int64))
        v, contrib = v[found], contrib[found]
        order = np.lexsort((v, -contrib))[:top]
        return [(int(v[o]), float(contrib[o])) for o in order]


def _top_of_row(row: np.ndarray, item_idx: int, n: int) -> list[tuple[int, float]]:
    """Top-``n`` positive entries of a dense score row, the item itself left out."""
    row = np.asarray(row, dtype=np.float64).copy()
    row[item_idx] = 0.0
    cand = np.flatnonzero(row > 0)
    order = cand[np.lexsort((cand, -row[cand]))][: int(n)]
    return [(int(j), float(row[j])) for j in order]


def _chunk_bounds(lens: np.ndarray, budget: int) -> np.ndarray:
    """Cut positions so that each chunk's sum of ``lens`` is about ``budget``."""
    if lens.size == 0:
        return np.array([0, 0])
    c = np.cumsum(lens)
    cuts = np.searchsorted(c, np.arange(budget, c[-1], budget), side="right")
    return np.unique(np.r_[0, cuts, lens.size])


def _argmax_per_segment(seg, label, value, mask, n_seg):
    """For each segment the label with the largest value among ``mask`` (ties: smaller
    label); -1 for segments without any.

    Callers pass segments in order with ascending labels inside each (CSR rows with sorted
    indices): then one pass of ``maximum.reduceat`` finds each segment's maximum and its
    first holder is the smallest label. Other inputs take the general sort."""
    out = np.full(n_seg, -1, dtype=np.int64)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return out
    s, v, lab = seg[idx], value[idx], label[idx]
    ds = np.diff(s)
    if np.all((ds > 0) | ((ds == 0) & (np.diff(lab) > 0))):
        starts = np.flatnonzero(np.r_[True, ds != 0])
        top = np.maximum.reduceat(v, starts)
        lens = np.diff(np.r_[starts, s.size])
        holders = np.flatnonzero(v == np.repeat(top, lens))
        hs = s[holders]
        first = np.r_[True, hs[1:] != hs[:-1]]
        out[hs[first]] = lab[holders[first]]
        return out
    order = np.lexsort((lab, -v, s))
    s = s[order]
    first = np.r_[True, s[1:] != s[:-1]]
    out[s[first]] = lab[order[first]]
    return out


def _top_n_dense(scores: np.ndarray, n: int):
    """Top-n columns per row of a dense block (-inf = not a candidate), sorted by score
    desc then column asc; padded with -1 / -inf."""
    b, m = scores.shape
    nn = min(n, m)
    items = np.full((b, n), -1, dtype=np.int64)
    vals = np.full((b, n), -np.inf)
    if b == 0 or m == 0:
        return items, vals
    if nn < m:
        cand = np.argpartition(-scores, nn - 1, axis=1)[:, :nn]
        thr = scores[np.arange(b)[:, None], cand].min(axis=1)
        # all columns strictly above the threshold plus the ties, so ties resolve by column
        r, c = np.nonzero(scores >= thr[:, None])
    else:
        r, c = np.nonzero(np.ones_like(scores, dtype=bool))
    v = scores[r, c]
    order = np.lexsort((c, -v, r))
    r, c, v = r[order], c[order], v[order]
    starts = np.searchsorted(r, np.arange(b))
    rank = np.arange(r.size) - starts[r]
    keep = (rank < nn) & np.isfinite(v)
    items[r[keep], rank[keep]] = c[keep]
    vals[r[keep], rank[keep]] = v[keep]
    return items, vals
