"""shopreco's recommendation engine: numpy/scipy only, no Django.

Matrices in, arrays out: similarities (whole or by row block), neighbourhood models,
popularity and offline evaluation (:mod:`shopreco.engine.evaluate`).
"""

from .baseline import Baselines, fit_baselines
from .ease import EASE, auto_lambda, ease_weights
from .knn import ItemKNN, UserKNN, tfidf_weight
from .popularity import popularity
from .similarity import (
    Prepared,
    item_similarity,
    item_similarity_block,
    prepare,
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
