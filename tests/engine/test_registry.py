"""The engine's registries: similarity methods and ranking models are records, read by code
that never tests a name, so a new one is one record (the toy records below prove it)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from shopreco.engine import (
    EASE,
    MODELS,
    SIMILARITY_METHODS,
    ItemKNN,
    RankingModel,
    SimilarityMethod,
    UserKNN,
    fit_baselines,
    item_similarity,
    prepare,
    ranking_model,
    resolve_similarity,
    similarity_method,
    user_similarity,
)
from shopreco.engine.similarity import IMPLICIT_METHOD, RATING_METHODS, method_names

from . import bruteforce as bf
from .test_similarity import random_ratings


def record_sim(R, spec: SimilarityMethod, kind: str, shrinkage: float = 0.0,
               support: float | None = None) -> np.ndarray:
    """The similarity a record describes, pair by pair (bruteforce's loops): centre as
    ``spec.centring`` says, norms over the co-rated set or the full vectors, support
    factor sqrt(n / (n + beta)) for the full norm."""
    V, M = bf.dense(R)
    b = fit_baselines(R)
    support = spec.support_shrinkage if support is None else support
    if kind == "user":  # objects are the rows: compare the transposed matrix's columns
        V, M = V.T, M.T
    n_r, n_o = V.shape

    def mean(x, m):
        return x[m].mean() if m.any() else 0.0

    def centre(o):
        """Centring value of each rating of object ``o`` (one per rater)."""
        if spec.centring == "none":
            return [0.0] * n_r
        if spec.centring == "object_mean" or (spec.centring == "user_mean" and kind == "user"):
            return [mean(V[:, o], M[:, o])] * n_r
        if spec.centring == "user_mean":  # the raters are the users
            return [mean(V[r], M[r]) for r in range(n_r)]
        if kind == "item":
            return [b.mu + b.user_bias[r] + b.item_bias[o] for r in range(n_r)]
        return [b.mu + b.user_bias[o] + b.item_bias[r] for r in range(n_r)]

    restricted = spec.norm == "co_rated"
    S = np.zeros((n_o, n_o))
    for i in range(n_o):
        for j in range(n_o):
            if i != j:
                S[i, j] = bf.pair_sim(V[:, i], M[:, i], V[:, j], M[:, j], centre(i), centre(j),
                                      shrinkage, restricted=restricted)
                if not restricted:
                    S[i, j] *= bf._support(M[:, i].sum(), support) * bf._support(
                        M[:, j].sum(), support)
    return S


# ---------------------------------------------------------------- similarity methods
def test_the_registry_lists_the_published_methods_in_order():
    assert all(name == m.name for name, m in SIMILARITY_METHODS.items())
    assert method_names("item") == ("pearson", "adjusted_cosine", "cosine", "pearson_baseline",
                                     "cosine_baseline")
    assert method_names("user") == ("pearson", "cosine", "pearson_baseline", "cosine_baseline")
    for kind, name in RATING_METHODS.items():
        assert kind in similarity_method(name).kinds
    assert similarity_method(IMPLICIT_METHOD).centring == "none"


@pytest.mark.parametrize("name", list(SIMILARITY_METHODS))
@pytest.mark.parametrize("kind", ["item", "user"])
def test_each_record_describes_what_is_computed(name, kind):
    spec = SIMILARITY_METHODS[name]
    if kind not in spec.kinds:
        with pytest.raises(ValueError, match=f"for {kind} similarity"):
            prepare(random_ratings(0), name, kind=kind)
        return
    R = random_ratings(3, integer=False)
    P = prepare(R, name, kind=kind)
    assert P.spec is spec and P.method == name
    fn = item_similarity if kind == "item" else user_similarity
    np.testing.assert_allclose(fn(P, shrinkage=1.5).toarray(),
                               record_sim(R, spec, kind, 1.5), atol=1e-9, rtol=0)
    # the kernel the norm chooses: only the restricted one builds the packed blocks
    assert ("left_packed" in vars(P)) == (spec.norm == "co_rated")


@pytest.mark.parametrize("name", list(SIMILARITY_METHODS))
@pytest.mark.parametrize("model", [ItemKNN, UserKNN])
def test_models_take_the_records_defaults(name, model):
    spec = SIMILARITY_METHODS[name]
    kind = model._kind
    if kind not in spec.kinds:
        with pytest.raises(ValueError, match=name):
            model(similarity=name).fit(random_ratings(0))
        return
    m = model(similarity=name, k=5).fit(random_ratings(1))
    assert m.method_ == name and not m.implicit_
    assert m.shrinkage_ == spec.shrinkage and m.damping_ == spec.damping
    assert m.positive_only_ is spec.positive_only
    assert m.centering_ == ("baseline" if spec.needs_baselines else "mean")
    assert m.max_neighbours_ == (5 if spec.ranking_only else 200)


def test_auto_resolves_through_the_registry():
    R = random_ratings(0)
    B = R.copy()
    B.data[:] = 1.0
    for kind in ("item", "user"):
        assert resolve_similarity("auto", R, kind) == RATING_METHODS[kind]
        assert resolve_similarity("auto", B, kind) == IMPLICIT_METHOD
        assert resolve_similarity("pearson", B, kind) == "pearson"  # a name stays itself
    assert ItemKNN().fit(B).implicit_ and not ItemKNN().fit(R).implicit_


def test_an_unknown_method_is_a_value_error_naming_the_choices():
    R = random_ratings(0)
    for call in (lambda: similarity_method("jaccard", "item"),
                 lambda: item_similarity(R, method="jaccard"),
                 lambda: prepare(R, "jaccard"),
                 lambda: ItemKNN(similarity="jaccard").fit(R),
                 lambda: resolve_similarity("jaccard", R, "item")):
        with pytest.raises(ValueError, match="jaccard") as err:
            call()
        assert all(name in str(err.value) for name in method_names("item"))
    with pytest.raises(ValueError, match="for user similarity") as err:
        UserKNN(similarity="adjusted_cosine").fit(R)
    assert "adjusted_cosine" not in str(err.value).split(" got ")[0]  # the user choices
    with pytest.raises(ValueError, match="kind must be"):
        similarity_method("cosine", "shop")
    for bad in ({"centring": "median"}, {"norm": "l1"}, {"kinds": ("shop",)},
                {"support_shrinkage": 5.0}):
        with pytest.raises(ValueError):
            SimilarityMethod("bad", **{"centring": "none", "norm": "co_rated", **bad})


# A method no code knows by name: cosine of mean-centred vectors (full norms), with its own
# model default. Registering the record is all it takes.
TOY = SimilarityMethod("centred_cosine", "object_mean", "full", damping=0.25)


def test_a_new_similarity_is_one_record(monkeypatch):
    monkeypatch.setitem(SIMILARITY_METHODS, TOY.name, TOY)  # undone after the test
    R = random_ratings(2, integer=False)
    for kind, fn in (("item", item_similarity), ("user", user_similarity)):
        assert TOY.name in method_names(kind)
        np.testing.assert_allclose(fn(R, TOY.name).toarray(),
                                   record_sim(R, TOY, kind), atol=1e-9, rtol=0)
        # with k: the fused kernel path of "full" norms, positive values
        top = fn(R, TOY.name, k=3, positive_only=True)
        assert top.nnz and top.data.min() > 0 and np.diff(top.indptr).max() <= 3
    model = ItemKNN(similarity=TOY.name, k=5).fit(R)
    assert (model.damping_, model.centering_, model.max_neighbours_) == (0.25, "mean", 200)
    assert np.isfinite(model.predict([1, 2, 3], [0, 2, 4])).all()
    # the pipeline, its offline evaluation and the system check read the registry too
    from shopreco import checks, evaluation
    from shopreco.pipeline import compute
    from shopreco.pipeline.matrix import Snapshot

    assert checks._model_errors({"SIMILARITY": TOY.name}) == []
    params = {**compute.run_params(), "algorithm": "item", "similarity": TOY.name}
    snap = Snapshot.from_ratings(random_ratings(4, n_users=60, n_items=30, density=0.3))
    assert compute.resolve_method(params, snap) == TOY.name
    result = evaluation.evaluate(snap, k=3, params=params)
    assert result["params"]["method"] == TOY.name and result["metrics"]["coverage"] > 0
    snap.n_ratings = 0  # centred: a shop without ratings falls back to cosine
    assert compute.resolve_method(params, snap) == IMPLICIT_METHOD


def test_the_toy_record_is_gone_after_the_test():
    assert TOY.name not in SIMILARITY_METHODS
    with pytest.raises(ValueError, match=TOY.name):
        item_similarity(random_ratings(0), TOY.name)
    from shopreco import checks

    assert [e.id for e in checks._model_errors({"SIMILARITY": TOY.name})] == ["shopreco.E008"]


# ---------------------------------------------------------------------- ranking models
def test_the_model_registry():
    assert list(MODELS) == ["ease", "item", "user", "popular"]
    assert all(name == m.name for name, m in MODELS.items())
    ease, item, user = MODELS["ease"], MODELS["item"], MODELS["user"]
    assert (ease.estimator, item.estimator, user.estimator) == (EASE, ItemKNN, UserKNN)
    assert ease.learns_similarity and not ease.sharded and not ease.predicts_ratings
    assert item.ranks_with_similarity and item.sharded and item.predicts_ratings
    assert user.neighbours == "user" and not user.ranks_with_similarity and user.sharded
    from shopreco.conf import ALGORITHMS

    assert ALGORITHMS == (*MODELS, "auto")
    with pytest.raises(ValueError, match="ease, item, user, popular") as err:
        ranking_model("svd")
    assert "svd" in str(err.value)
    with pytest.raises(ValueError, match="neighbours"):
        RankingModel("bad", ItemKNN, neighbours="shop")
    with pytest.raises(ValueError, match="neighbours must be 'item'"):
        RankingModel("bad", UserKNN, neighbours="user", learns_similarity=True)


class _ToyItemKNN(ItemKNN):
    """An item kNN no code knows by name."""


class _ToyEASE(EASE):
    """An EASE no code knows by name."""


@pytest.mark.parametrize(("toy", "like"), [
    (RankingModel("toy_item", _ToyItemKNN), "item"),
    (RankingModel("toy_user", UserKNN, neighbours="user"), "user"),
    (RankingModel("toy_ease", _ToyEASE, learns_similarity=True, predicts_ratings=False),
     "ease"),
], ids=["item", "user", "ease"])
def test_a_new_model_is_one_record(toy, like, monkeypatch, settings):
    """A registered model runs through the pipeline's compute functions and the offline
    evaluation exactly as the model it copies: they read the record, not the name."""
    from shopreco import evaluation
    from shopreco.pipeline import compute
    from shopreco.pipeline.matrix import Snapshot

    monkeypatch.setitem(MODELS, toy.name, toy)
    settings.SHOPRECO = {**settings.SHOPRECO, "ALGORITHM": toy.name, "SIMILARITY": "pearson"}
    params = compute.run_params()  # the name is accepted: the registry is read per call
    assert params["algorithm"] == toy.name
    rng = np.random.default_rng(0)
    R = sp.random(60, 30, density=0.2, random_state=1, format="csr")
    R.data = rng.integers(1, 6, R.nnz).astype(float)
    snap = Snapshot.from_ratings(R)
    got = evaluation.evaluate(snap, k=5, params=params, return_lists=True)
    want = evaluation.evaluate(snap, k=5, params={**params, "algorithm": like},
                               return_lists=True)
    assert got["params"]["method"] == (toy.name if toy.learns_similarity else "pearson")
    assert got["metrics"] == want["metrics"]
    np.testing.assert_array_equal(got["lists"], want["lists"])
    n_blocks = len(compute.blocks_for(snap, {**params, "block_size": 7}))
    assert n_blocks == (1 if toy.learns_similarity else 5)
    assert type(evaluation.fit(snap, dict(params))[0]) is toy.estimator
