"""The ranking models by name: one record each, what the recompute pipeline asks of a model.

``SHOPRECO["ALGORITHM"]`` names a record of :data:`MODELS`; the pipeline and the offline
evaluation read the record's fields instead of comparing names, so a new model is its
estimator class and one record here. (Similarity methods have their own registry,
:data:`shopreco.engine.similarity.SIMILARITY_METHODS`.)

``popular`` (:class:`~shopreco.engine.popularity.MostPopular`) offers everyone the most
popular products: the baseline the deployment strategy's model selection holds the
personal models to.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ease import EASE
from .knn import ItemKNN, UserKNN
from .popularity import MostPopular
from .similarity import KINDS


@dataclass(frozen=True)
class RankingModel:
    """One ranking model of the recompute pipeline.

    - ``estimator``: the class (``fit``, ``recommend_with_reasons`` and, when
      ``learns_similarity``, ``from_parts`` / ``parts`` / ``similar_matrix``).
    - ``neighbours``: whose similarity its personal lists sum over. "item": the run's stored
      item similarity, computed once; "user": user rows, computed per batch of shoppers
      against every shopper (the stored item similarity then only gives the similar lists).
    - ``learns_similarity``: the fitted model is the item similarity (EASE's weights), so
      ``SHOPRECO["SIMILARITY"]`` does not apply, the run's method is the model's name, and
      the similarity is one task (a dense solve does not split into row blocks); the
      batches score with the stored parts.
    - ``predicts_ratings``: it has rating prediction, so a cross-validation of RMSE applies
      (EASE only ranks).
    - ``personal_from_similarity``: its personal lists are sums over the stored item
      similarity (item kNN), so scoring them needs that similarity; the others' need only
      their own fit (the holdout gate then skips the "similar" lists it does not score).
    """

    name: str
    estimator: type
    neighbours: str = "item"
    learns_similarity: bool = False
    predicts_ratings: bool = True
    personal_from_similarity: bool = True

    def __post_init__(self) -> None:
        if self.neighbours not in KINDS:
            raise ValueError(f"neighbours must be one of {KINDS}, got {self.neighbours!r}")
        if self.learns_similarity and self.neighbours != "item":
            raise ValueError("a model that learns the item similarity ranks with it: "
                             "neighbours must be 'item'")

    @property
    def sharded(self) -> bool:
        """The item similarity is computed in row blocks, one task each."""
        return not self.learns_similarity

    @property
    def ranks_with_similarity(self) -> bool:
        """Its personal lists are sums over the named item similarity (item kNN): a named
        SIMILARITY is computed on the ratings, so the model ranks by them too."""
        return self.neighbours == "item" and not self.learns_similarity


# SHOPRECO["ALGORITHM"] -> model, in the order settings and errors list them.
MODELS: dict[str, RankingModel] = {m.name: m for m in (
    RankingModel("ease", EASE, learns_similarity=True, predicts_ratings=False,
                 personal_from_similarity=False),
    RankingModel("item", ItemKNN),
    RankingModel("user", UserKNN, neighbours="user", personal_from_similarity=False),
    RankingModel("popular", MostPopular, predicts_ratings=False,
                 personal_from_similarity=False),
)}


def ranking_model(name: str) -> RankingModel:
    """The record of model ``name``; a ValueError naming the choices when there is none."""
    model = MODELS.get(name) if isinstance(name, str) else None
    if model is None:
        raise ValueError(f"algorithm must be one of {', '.join(MODELS)}, got {name!r}")
    return model
