"""shopreco's recommendation engine: numpy/scipy only, no Django.

Matrices in, arrays out: similarities (whole or by row block), neighbourhood models,
popularity and offline evaluation (:mod:`shopreco.engine.evaluate`). Extension points are
registries of records: similarity methods (:data:`SIMILARITY_METHODS`) and ranking models
(:data:`MODELS`); a new one is its code and one record.
"""

from .baseline import Baselines, fit_baselines
from .ease import EASE, auto_lambda, ease_weights
from .knn import ItemKNN, UserKNN, tfidf_weight
from .popularity import MostPopular, popularity
from .registry import MODELS, RankingModel, ranking_model
from .similarity import (
    SIMILARITY_METHODS,
    Prepared,
    SimilarityMethod,
    item_similarity,
    item_similarity_block,
    prepare,
    resolve_similarity,
    similarity_method,
    user_similarity,
    user_similarity_block,
)

__all__ = [
    "Baselines",
    "EASE",
    "auto_lambda",
    "ease_weights",
    "ItemKNN",
    "UserKNN",
    "MODELS",
    "RankingModel",
    "ranking_model",
    "SIMILARITY_METHODS",
    "SimilarityMethod",
    "similarity_method",
    "resolve_similarity",
    "Prepared",
    "fit_baselines",
    "item_similarity",
    "popularity",
    "MostPopular",
    "item_similarity_block",
    "prepare",
    "user_similarity",
    "tfidf_weight",
    "user_similarity_block",
]
