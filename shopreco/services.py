"""The public serving functions, for hosts and the demo: ``from shopreco import services``.

A thin module over :mod:`shopreco.serving` (lists and widgets), :mod:`shopreco.tracking`
(events, clicks, impressions) and :mod:`shopreco.cache` (invalidation), kept so that hosts'
imports work whatever the rooms behind it.
"""

from shopreco.cache import invalidate_user
from shopreco.cache import is_shared as cache_is_shared
from shopreco.serving import (
    LIST_KINDS,
    RECOMMENDATION_ID_PLACEHOLDER,
    Ranked,
    RecoItem,
    RecoList,
    active_run_id,
    also_bought,
    clean_limit,
    personalization_allowed,
    popular,
    popularity_ranking,
    preview_for_user,
    rank,
    reason_text,
    recommended_for,
    refresh_rankings,
    serve,
    similar_products,
    widget_html,
)
from shopreco.tracking import (
    flush_impressions,
    mark_viewed,
    record_marked_view,
    remember_click,
    track,
)

__all__ = [
    "LIST_KINDS",
    "RECOMMENDATION_ID_PLACEHOLDER",
    "RecoItem",
    "Ranked",
    "RecoList",
    "active_run_id",
    "also_bought",
    "cache_is_shared",
    "clean_limit",
    "flush_impressions",
    "invalidate_user",
    "mark_viewed",
    "personalization_allowed",
    "popular",
    "popularity_ranking",
    "preview_for_user",
    "rank",
    "reason_text",
    "recommended_for",
    "record_marked_view",
    "refresh_rankings",
    "remember_click",
    "serve",
    "similar_products",
    "track",
    "widget_html",
]
