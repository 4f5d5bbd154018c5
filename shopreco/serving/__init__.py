"""The serving layer: the only code that reads recommendation results for display.

Template tags, the REST API and admin previews all call these functions, so every path applies
the same business rules (Gorse once leaked hidden items because one serving path skipped a
filter): adapter availability, owned products excluded, optional category and exclude list,
no product twice on one page, and a cold-start chain that never leaves a widget empty while
the catalogue has available products (except also-bought, never padded with popular
products), and the shown ``score``: a relevance in [0, 1] within the list.

Modules: :mod:`~.request` (who, the served run, opt-out), :mod:`~.kinds` (the registry of list
kinds), :mod:`~.candidates` and :mod:`~.popularity` (where candidates come from),
:mod:`~.products` (loading with every filter), :mod:`~.reasons`, :mod:`~.lists` (the one
serving path), :mod:`~.widgets` (cached HTML), :mod:`~.ranking` (the host's own listings
in the shopper's order). The cache itself belongs to
:mod:`shopreco.cache`.
"""

from shopreco.serving.kinds import LIST_KINDS, ListKind, register
from shopreco.serving.lists import (
    also_bought,
    popular,
    preview_for_user,
    recommended_for,
    serve,
    similar_products,
)
from shopreco.serving.popularity import popularity_ranking, refresh_rankings
from shopreco.serving.ranking import Ranked, RankedItem, rank
from shopreco.serving.reasons import reason_text
from shopreco.serving.request import (
    active_run_id,
    clean_limit,
    personalization_allowed,
)
from shopreco.serving.types import RecoItem, RecoList
from shopreco.serving.widgets import RECOMMENDATION_ID_PLACEHOLDER, widget_html

__all__ = [
    "LIST_KINDS",
    "RECOMMENDATION_ID_PLACEHOLDER",
    "ListKind",
    "Ranked",
    "RankedItem",
    "RecoItem",
    "RecoList",
    "active_run_id",
    "also_bought",
    "clean_limit",
    "personalization_allowed",
    "popular",
    "popularity_ranking",
    "preview_for_user",
    "rank",
    "reason_text",
    "recommended_for",
    "refresh_rankings",
    "register",
    "serve",
    "similar_products",
    "widget_html",
]
