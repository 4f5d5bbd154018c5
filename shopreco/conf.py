"""Settings for shopreco, read through one object so ``override_settings`` works in tests.

All options live in the ``SHOPRECO`` dict of the host's settings; ``SHOPRECO_PRODUCT_MODEL``
stays top-level because migrations need it (like ``AUTH_USER_MODEL``). Modelled on DRF's
``api_settings``: values are resolved on first access and the cache is dropped whenever Django
sends ``setting_changed``.
"""

from __future__ import annotations

import warnings
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from shopreco.engine import MODELS

DEFAULTS: dict[str, Any] = {
    # Explicit ratings: allowed range and whether half stars (x.5) are accepted.
    "RATING_MIN": 1.0,
    "RATING_MAX": 5.0,
    "RATING_HALF_STARS": False,
    # Implicit events: kind -> weight in the interaction matrix. Add kinds to extend.
    "EVENT_WEIGHTS": {"view": 1.0, "cart": 3.0, "purchase": 5.0},
    # Kinds that count as "owning" a product (excluded from personal lists).
    "OWNED_EVENT_KINDS": ["purchase"],
    # Kinds that clients may post to the events API. Purchases are facts only the shop's
    # server knows: they come from shopreco.track() in the host's checkout; add "purchase"
    # here only if the shop has no server-side checkout to call it from.
    "CLIENT_EVENT_KINDS": ["view", "cart"],
    # An event repeating one the same shopper recorded for the same product and kind within
    # this many seconds is not stored again (0 or None: every event is stored).
    "EVENT_DEDUP_SECONDS": 600,
    # What an anonymous session counts for against a signed-in shopper in popularity,
    # trending and co-occurrence: sessions cost nothing to open, accounts do.
    "ANONYMOUS_WEIGHT": 0.2,
    # Exclude products the user already rated or bought from personal lists.
    "EXCLUDE_OWNED": True,
    # Ranking model of the recompute pipeline: "ease" (Steck 2019), "item" (item-based kNN),
    # "user" (user-based kNN), "popular" (the non-personal baseline), or "auto": each full run
    # chooses among CANDIDATES on the holdout.
    "ALGORITHM": "ease",
    # The configurations "auto" chooses among: dicts with "algorithm" and optionally
    # "lambda" (EASE), "similarity", "k", "shrinkage", "popularity_penalty".
    "CANDIDATES": [{"algorithm": "ease"}, {"algorithm": "item"}, {"algorithm": "popular"}],
    # The holdout gate: the latest "interactions" of a seeded share ("users") of shoppers
    # are held out; every candidate and the live run's configuration are fitted on the rest
    # and their lists scored on them. A run whose GATE_METRIC is more than GATE_TOLERANCE
    # (relative) below the live configuration's is rejected: the live run keeps serving.
    "HOLDOUT": {"users": 0.5, "interactions": 3, "seed": 0},
    "GATE_METRIC": "ndcg@10",
    "GATE_TOLERANCE": 0.05,
    # "auto" compares the candidates every Nth full run; the runs between refit the
    # configuration chosen last (bounding the cost of selection: each comparison fits every
    # candidate once more).
    "SELECTION_EVERY": 4,
    # Rejected and failed runs (and runs of experiment arms no longer served) are pruned
    # this many days after they finished.
    "FAILED_RUN_RETENTION_DAYS": 7,
    # EASE: L2 regularisation ("auto": from the data), items in the dense solve (the most
    # interacted; the rest are ranked by item cosine), popularity penalty (exponent beta:
    # weights into a product are divided by its interactions ** beta; 0 = none).
    "EASE_LAMBDA": "auto",
    "EASE_MAX_ITEMS": 10000,
    "POPULARITY_PENALTY": 0.15,
    # Item similarity of "item" (and of "user"'s similar lists): "auto" is cosine over TF-IDF
    # weighted preferences; a named one (cosine, adjusted_cosine, pearson, ...) is computed
    # on the ratings and "item" ranks by them, the rating-prediction recipe.
    "SIMILARITY": "auto",
    "NEIGHBOURS": 50,
    "SHRINKAGE": 10.0,
    "RECOMMENDATIONS_PER_USER": 50,
    "SIMILAR_PER_PRODUCT": 20,
    # Sharding: items per similarity block task.
    "BLOCK_SIZE": 2000,
    # Users per recommendation batch.
    "USER_BATCH_SIZE": 500,
    # Keep this many finished runs; older ones (and their results) are pruned.
    "KEEP_RUNS": 3,
    # A running run with no heartbeat for this many seconds is considered dead.
    "STALE_RUN_SECONDS": 600,
    # Debounce window for per-user refreshes after a rating/event (seconds).
    "REFRESH_DEBOUNCE_SECONDS": 5,
    # Whether a recorded product view queues that shopper's refresh (ratings, carts and
    # purchases always do). Hosts running Celery eagerly (no broker) set False: the refresh
    # would otherwise run inside every product page and hold up its response.
    "REFRESH_ON_VIEW": True,
    # Storage for the interaction matrix snapshot (dotted path or alias; None = default_storage).
    "SNAPSHOT_STORAGE": None,
    "SNAPSHOT_PREFIX": "shopreco/snapshots",
    # Serving.
    "DEFAULT_LIMIT": 6,
    "MAX_LIMIT": 50,
    "CACHE_TIMEOUT": 300,
    "CACHE_ALIAS": "default",
    # Cache widget HTML per served list (availability is still re-checked on every render).
    # Turn off if your widget templates show per-visitor content beyond the list itself.
    "CACHE_WIDGET_HTML": True,
    "TRENDING_HALF_LIFE_DAYS": 7.0,
    "RECENT_ITEMS_FOR_COLD_START": 10,
    # shopreco.rank(): how many of a listing's first products are reordered per shopper.
    "RANK_LIMIT": 200,
    # Adapter deciding availability, URLs, images, categories of the host's products.
    "ADAPTER": "shopreco.adapter.DefaultAdapter",
    # Record views automatically through the middleware ("middleware") or only via the
    # {% shopreco_track_view %} tag / shopreco.track() ("manual").
    "VIEW_TRACKING": "manual",
    "LOG_IMPRESSIONS": True,
    # Privacy.
    "HONOR_GPC": True,
    "EVENT_RETENTION_DAYS": 365,
    "ANONYMIZE_SECRET": None,  # falls back to SECRET_KEY
    # REST API.
    "API_PRODUCT_SERIALIZER": "shopreco.api.serializers.ProductSerializer",
}

# Ranking models of the recompute pipeline (SHOPRECO["ALGORITHM"]): the engine's registry,
# and "auto" (model selection among CANDIDATES).
ALGORITHMS = (*MODELS, "auto")

# A candidate configuration's keys -> the run parameter each sets, with its type.
CONFIG_KEYS: dict[str, tuple[str, type]] = {
    "algorithm": ("algorithm", str),
    "lambda": ("ease_lambda", float),
    "similarity": ("similarity", str),
    "k": ("k", int),
    "shrinkage": ("shrinkage", float),
    "popularity_penalty": ("popularity_penalty", float),
}
# The metrics GATE_METRIC may name (at any cut-off k, e.g. "ndcg@20").
GATE_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate", "f1")


def candidate_config(config: Any) -> dict[str, Any]:
    """A candidate configuration checked and normalised (keys sorted, values typed); a
    ValueError saying what is wrong. Used by the system checks, the pipeline and the admin,
    so all three accept exactly the same configurations."""
    from shopreco.engine.similarity import method_names  # the engine registry, no Django

    if not isinstance(config, dict):
        raise ValueError(f"a configuration must be a dict, not {config!r}")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}: use "
                         f"{', '.join(map(repr, CONFIG_KEYS))}")
    algorithm = config.get("algorithm")
    if algorithm not in MODELS:
        raise ValueError(f"'algorithm' must be one of {', '.join(map(repr, MODELS))}, "
                         f"not {algorithm!r}")
    out: dict[str, Any] = {}
    for key, value in sorted(config.items()):
        if key == "lambda" and value == "auto":
            out[key] = value
            continue
        kind = CONFIG_KEYS[key][1]
        if kind is str:
            ok = isinstance(value, str)
        else:
            ok = (isinstance(value, int | float) and not isinstance(value, bool)
                  and value == value and (kind is float or float(value).is_integer()))
        if not ok:
            raise ValueError(f"{key!r} must be {'a string' if kind is str else 'a number'}, "
                             f"not {value!r}")
        out[key] = kind(value)
    if "similarity" in out and out["similarity"] not in ("auto", *method_names("item")):
        raise ValueError(f"'similarity' must be 'auto' or one of "
                         f"{', '.join(method_names('item'))}, not {out['similarity']!r}")
    for key in ("lambda", "k"):
        if key in out and out[key] != "auto" and not out[key] > 0:
            raise ValueError(f"{key!r} must be > 0, not {out[key]!r}")
    for key in ("shrinkage", "popularity_penalty"):
        if key in out and out[key] < 0:
            raise ValueError(f"{key!r} must be >= 0, not {out[key]!r}")
    return out


def gate_metric(name: Any) -> tuple[str, int]:
    """("ndcg", 10) from "ndcg@10"; a ValueError naming the accepted form."""
    metric, _, k = str(name).partition("@") if isinstance(name, str) else ("", "", "")
    if metric not in GATE_METRICS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"must be one of {', '.join(GATE_METRICS)} at a cut-off, such as "
                         f"'ndcg@10', not {name!r}")
    return metric, int(k)

# Options holding dotted paths that are imported on access.
IMPORT_STRINGS = {"ADAPTER", "API_PRODUCT_SERIALIZER"}


class ShopRecoSettings:
    """Attribute access to ``settings.SHOPRECO`` merged over :data:`DEFAULTS`."""

    def __init__(self) -> None:
        self._cached: set[str] = set()

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, "SHOPRECO", None) or {}

    @property
    def PRODUCT_MODEL(self) -> str:  # noqa: N802 - mirrors the setting name
        """Deprecated: the setting lives outside ``SHOPRECO`` (migrations read it), so read it
        where it lives."""
        warnings.warn(
            "reco_settings.PRODUCT_MODEL is deprecated and will be removed; read "
            "settings.SHOPRECO_PRODUCT_MODEL, or call shopreco.conf.get_product_model() for "
            "the model class.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(settings, "SHOPRECO_PRODUCT_MODEL", "")

    def __getattr__(self, attr: str) -> Any:
        if attr not in DEFAULTS:
            raise AttributeError(f"Invalid shopreco setting: {attr!r}")
        value = self.user_settings.get(attr, DEFAULTS[attr])
        if attr in IMPORT_STRINGS and isinstance(value, str):
            value = import_string(value)
        self._cached.add(attr)
        setattr(self, attr, value)
        return value

    def reload(self) -> None:
        for attr in self._cached:
            delattr(self, attr)
        self._cached.clear()


reco_settings = ShopRecoSettings()


def get_product_model() -> Any:
    """The host's product model class, from ``SHOPRECO_PRODUCT_MODEL``."""
    from django.apps import apps

    return apps.get_model(settings.SHOPRECO_PRODUCT_MODEL, require_ready=False)


def key_field(model: Any) -> Any:
    """The field that holds ``model``'s primary-key values: the parent's key under
    multi-table inheritance (whose own pk is a one-to-one link)."""
    field = model._meta.pk
    while field.is_relation:
        field = field.target_field
    return field


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting in ("SHOPRECO", "SHOPRECO_PRODUCT_MODEL"):
        reco_settings.reload()


setting_changed.connect(_reload)
