"""shopreco's recommendation engine: numpy/scipy only, no Django.

Matrices in, arrays out: similarities (whole or by row block), neighbourhood models,
popularity and offline evaluation (:mod:`shopreco.engine.evaluate`). Similarity methods are
records of a registry (:data:`SIMILARITY_METHODS`): a new one is one record.
"""

from .baseline import Baselines, fit_baselines
from .ease import EASE, auto_lambda, ease_weights
from .knn import ItemKNN, UserKNN, tfidf_weight
from .popularity import popularity
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
    "SIMILARITY_METHODS",
    "SimilarityMethod",
    "similarity_method",
    "resolve_similarity",
    "Prepared",
    "fit_baselines",
    "item_similarity",
    "popularity",
    "item_similarity_block",
    "prepare",
    "user_similarity",
    "tfidf_weight",
    "user_similarity_block",
]
