"""System checks: catch misconfiguration at start-up with a hint, not at the first request."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from shopreco.conf import ALGORITHMS, DEFAULTS, candidate_config, gate_metric
from shopreco.engine.similarity import method_names


@register(Tags.models, "shopreco")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list:
    errors: list = []
    label = getattr(settings, "SHOPRECO_PRODUCT_MODEL", None)
    if not label:
        errors.append(
            Error(
                "SHOPRECO_PRODUCT_MODEL is not set.",
                hint='Set SHOPRECO_PRODUCT_MODEL = "app_label.ModelName" to your product model.',
                id="shopreco.E001",
            )
        )
    else:
        try:
            apps.get_model(label, require_ready=False)
        except (ValueError, LookupError) as exc:
            errors.append(
                Error(
                    f"SHOPRECO_PRODUCT_MODEL refers to {label!r}, which cannot be loaded: {exc}",
                    hint="Use the form 'app_label.ModelName' and make sure the app is installed.",
                    id="shopreco.E002",
                )
            )
    user = getattr(settings, "SHOPRECO", {})
    if not isinstance(user, dict):
        return errors + [
            Error("SHOPRECO must be a dict.", hint="SHOPRECO = {...}", id="shopreco.E003")
        ]
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        errors.append(
            Error(
                f"Unknown SHOPRECO option(s): {', '.join(unknown)}.",
                hint="Check the spelling against the configuration reference in the README.",
                id="shopreco.E003",
            )
        )
    low = user.get("RATING_MIN", DEFAULTS["RATING_MIN"])
    high = user.get("RATING_MAX", DEFAULTS["RATING_MAX"])
    if not (isinstance(low, int | float) and isinstance(high, int | float) and low < high):
        errors.append(
            Error(
                f"Rating scale RATING_MIN={low!r}, RATING_MAX={high!r} is invalid.",
                hint="Both must be numbers with RATING_MIN < RATING_MAX.",
                id="shopreco.E004",
            )
        )
    weights = user.get("EVENT_WEIGHTS", DEFAULTS["EVENT_WEIGHTS"])
    if not (
        isinstance(weights, dict)
        and weights
        and all(isinstance(k, str) and isinstance(v, int | float) and v > 0
                for k, v in weights.items())
    ):
        errors.append(
            Error(
                "EVENT_WEIGHTS must map event kinds to positive numbers.",
                hint='For example {"view": 1, "cart": 3, "purchase": 5}.',
                id="shopreco.E005",
            )
        )
    for key in ("ADAPTER",):
        path = user.get(key, DEFAULTS[key])
        if isinstance(path, str):
            try:
                import_string(path)
            except ImportError as exc:
                errors.append(
                    Error(
                        f"SHOPRECO[{key!r}] = {path!r} cannot be imported: {exc}",
                        hint="Give the dotted path of a class.",
                        id="shopreco.E006",
                    )
                )
    errors += _model_errors(user)
    errors += _event_errors(user, weights)
    errors += _deployment_errors(user)
    errors += _value_errors(user, weights)
    for key in ("NEIGHBOURS", "RECOMMENDATIONS_PER_USER", "MAX_LIMIT", "DEFAULT_LIMIT",
                "BLOCK_SIZE", "USER_BATCH_SIZE", "KEEP_RUNS", "EASE_MAX_ITEMS",
                "SIMILAR_PER_PRODUCT", "STALE_RUN_SECONDS", "CACHE_TIMEOUT",
                "RECENT_ITEMS_FOR_COLD_START", "EVENT_RETENTION_DAYS", "SELECTION_EVERY",
                "FAILED_RUN_RETENTION_DAYS", "RANK_LIMIT"):
        value = user.get(key, DEFAULTS[key])
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            errors.append(
                Error(
                    f"SHOPRECO[{key!r}] must be a positive integer, not {value!r}.",
                    id="shopreco.E007",
                )
            )
    if "rest_framework" in settings.INSTALLED_APPS and "drf_spectacular" not in (
        settings.INSTALLED_APPS
    ):
        errors.append(
            Warning(
                "drf_spectacular is not installed: the API schema endpoint will not work.",
                hint="Add 'drf_spectacular' to INSTALLED_APPS.",
                id="shopreco.W001",
            )
        )
    return errors


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _model_errors(user: dict) -> list:
    """The ranking model's options: a bad one would only fail at the next recompute."""
    errors = []
    algorithm = user.get("ALGORITHM", DEFAULTS["ALGORITHM"])
    if algorithm not in ALGORITHMS:
        errors.append(Error(
            f"SHOPRECO['ALGORITHM'] = {algorithm!r} is not a ranking model.",
            hint=f"Choose one of {', '.join(map(repr, ALGORITHMS))}.", id="shopreco.E008"))
    similarity = user.get("SIMILARITY", DEFAULTS["SIMILARITY"])
    choices = ("auto", *method_names("item"))
    if similarity not in choices:
        errors.append(Error(
            f"SHOPRECO['SIMILARITY'] = {similarity!r} is not an item similarity.",
            hint=f"Choose one of {', '.join(map(repr, choices))}.", id="shopreco.E008"))
    lam = user.get("EASE_LAMBDA", DEFAULTS["EASE_LAMBDA"])
    if lam != "auto" and not (_number(lam) and lam > 0):
        errors.append(Error(
            f"SHOPRECO['EASE_LAMBDA'] must be 'auto' or a number > 0, not {lam!r}.",
            id="shopreco.E008"))
    beta = user.get("POPULARITY_PENALTY", DEFAULTS["POPULARITY_PENALTY"])
    if not (_number(beta) and 0 <= beta <= 1):
        errors.append(Error(
            f"SHOPRECO['POPULARITY_PENALTY'] must be a number from 0 to 1, not {beta!r}.",
            hint="0 ranks by the model alone; 0.1-0.3 lifts less popular products.",
            id="shopreco.E008"))
    return errors


def _event_errors(user: dict, weights: Any) -> list:
    """The anti-abuse options of events: a typo would open or close the events API, or
    silently switch de-duplication or the anonymous weighting off."""
    errors = []
    kinds = user.get("CLIENT_EVENT_KINDS", DEFAULTS["CLIENT_EVENT_KINDS"])
    # The default's kinds missing from a host's EVENT_WEIGHTS are simply not postable.
    known = set(weights) if isinstance(weights, dict) and "CLIENT_EVENT_KINDS" in user else set()
    if not (isinstance(kinds, list | tuple) and all(isinstance(k, str) for k in kinds)):
        errors.append(Error(
            f"SHOPRECO['CLIENT_EVENT_KINDS'] must be a list of event kinds, not {kinds!r}.",
            hint='For example ["view", "cart"].', id="shopreco.E009"))
    elif known and set(kinds) - known:
        errors.append(Error(
            f"SHOPRECO['CLIENT_EVENT_KINDS'] names kinds missing from EVENT_WEIGHTS: "
            f"{', '.join(sorted(set(kinds) - known))}.",
            hint="Every kind clients may post needs a weight in EVENT_WEIGHTS.",
            id="shopreco.E009"))
    window = user.get("EVENT_DEDUP_SECONDS", DEFAULTS["EVENT_DEDUP_SECONDS"])
    if window is not None and not (_number(window) and window >= 0):
        errors.append(Error(
            f"SHOPRECO['EVENT_DEDUP_SECONDS'] must be a number of seconds >= 0 or None, "
            f"not {window!r}.", id="shopreco.E009"))
    weight = user.get("ANONYMOUS_WEIGHT", DEFAULTS["ANONYMOUS_WEIGHT"])
    if not (_number(weight) and 0 <= weight <= 1):
        errors.append(Error(
            f"SHOPRECO['ANONYMOUS_WEIGHT'] must be a number from 0 to 1, not {weight!r}.",
            hint="0 ignores anonymous sessions in popularity; 1 counts them as shoppers.",
            id="shopreco.E009"))
    return errors


def _deployment_errors(user: dict) -> list:
    """The deployment strategy's options: a bad candidate would only fail at the next run,
    and a bad gate would silently let any run go live (or none)."""
    errors = []

    def error(message: str, hint: str = "") -> None:
        errors.append(Error(message, hint=hint or None, id="shopreco.E011"))

    candidates = user.get("CANDIDATES", DEFAULTS["CANDIDATES"])
    if not (isinstance(candidates, list | tuple) and candidates):
        error(f"SHOPRECO['CANDIDATES'] must be a non-empty list of configurations, not "
              f"{candidates!r}.", 'For example [{"algorithm": "ease"}, {"algorithm": "item"}].')
    else:
        for i, config in enumerate(candidates):
            try:
                candidate_config(config)
            except ValueError as exc:
                error(f"SHOPRECO['CANDIDATES'][{i}]: {exc}.")
    holdout = user.get("HOLDOUT", DEFAULTS["HOLDOUT"])
    if not isinstance(holdout, dict) or set(holdout) - {"users", "interactions", "seed"}:
        error(f"SHOPRECO['HOLDOUT'] must be a dict with 'users', 'interactions' and 'seed', "
              f"not {holdout!r}.", 'For example {"users": 0.2, "interactions": 1, "seed": 0}.')
    else:
        share = holdout.get("users", DEFAULTS["HOLDOUT"]["users"])
        n = holdout.get("interactions", DEFAULTS["HOLDOUT"]["interactions"])
        seed = holdout.get("seed", DEFAULTS["HOLDOUT"]["seed"])
        if not (_number(share) and 0 < share <= 1):
            error(f"SHOPRECO['HOLDOUT']['users'] must be a share in (0, 1], not {share!r}.")
        if not (isinstance(n, int) and not isinstance(n, bool) and n > 0):
            error(f"SHOPRECO['HOLDOUT']['interactions'] must be a positive integer, not {n!r}.")
        if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
            error(f"SHOPRECO['HOLDOUT']['seed'] must be an integer >= 0, not {seed!r}.")
    metric = user.get("GATE_METRIC", DEFAULTS["GATE_METRIC"])
    try:
        gate_metric(metric)
    except ValueError as exc:
        error(f"SHOPRECO['GATE_METRIC'] {exc}.")
    tolerance = user.get("GATE_TOLERANCE", DEFAULTS["GATE_TOLERANCE"])
    if not (tolerance is None or (_number(tolerance) and 0 <= tolerance <= 1)):
        error(f"SHOPRECO['GATE_TOLERANCE'] must be a share from 0 to 1 (or None: no gate), "
              f"not {tolerance!r}.", "0.05 rejects a run scoring 5% below the live one.")
    return errors


# The rest of the options, by the kind of value they take: every option a host can set is
# checked here or above, so a typo in a value fails ``manage.py check``, not a later run.
_BOOLEANS = ("RATING_HALF_STARS", "EXCLUDE_OWNED", "REFRESH_ON_VIEW", "CACHE_WIDGET_HTML",
             "LOG_IMPRESSIONS", "HONOR_GPC")
_NON_NEGATIVE = ("SHRINKAGE", "REFRESH_DEBOUNCE_SECONDS")
_POSITIVE = ("TRENDING_HALF_LIFE_DAYS",)
_CHOICES = {"VIEW_TRACKING": ("manual", "middleware")}


def _value_errors(user: dict, weights: Any) -> list:
    """Options not covered above: their type, range or choices, naming what is accepted."""
    errors = []

    def error(key: str, expected: str) -> None:
        errors.append(Error(
            f"SHOPRECO[{key!r}] must be {expected}, not {user[key]!r}.", id="shopreco.E010"))

    for key in _BOOLEANS:
        if key in user and not isinstance(user[key], bool):
            error(key, "True or False")
    for key in _NON_NEGATIVE:
        if key in user and not (_number(user[key]) and user[key] >= 0):
            error(key, "a number >= 0")
    for key in _POSITIVE:
        if key in user and not (_number(user[key]) and user[key] > 0):
            error(key, "a number > 0")
    for key, choices in _CHOICES.items():
        if key in user and user[key] not in choices:
            error(key, f"one of {', '.join(map(repr, choices))}")
    if "OWNED_EVENT_KINDS" in user:
        kinds = user["OWNED_EVENT_KINDS"]
        known = set(weights) if isinstance(weights, dict) else set()
        if not (isinstance(kinds, list | tuple) and all(k in known for k in kinds)):
            error("OWNED_EVENT_KINDS", f"a list of kinds of EVENT_WEIGHTS ({', '.join(known)})")
    if "SNAPSHOT_PREFIX" in user and not (isinstance(user["SNAPSHOT_PREFIX"], str)
                                          and user["SNAPSHOT_PREFIX"].strip("/")):
        error("SNAPSHOT_PREFIX", "a non-empty folder name")
    for key in ("SNAPSHOT_STORAGE", "ANONYMIZE_SECRET"):
        if key in user and not (user[key] is None or (isinstance(user[key], str) and user[key])):
            error(key, "None or a non-empty string")
    if "CACHE_ALIAS" in user and user["CACHE_ALIAS"] not in settings.CACHES:
        error("CACHE_ALIAS", f"an alias of CACHES ({', '.join(map(repr, settings.CACHES))})")
    serializer = user.get("API_PRODUCT_SERIALIZER")
    if isinstance(serializer, str) and "rest_framework" in settings.INSTALLED_APPS:
        try:
            import_string(serializer)
        except ImportError as exc:
            errors.append(Error(
                f"SHOPRECO['API_PRODUCT_SERIALIZER'] = {serializer!r} cannot be imported: {exc}",
                hint="Give the dotted path of a serializer class.", id="shopreco.E006"))
    return errors
