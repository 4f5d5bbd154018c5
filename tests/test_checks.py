"""System checks fire on each kind of misconfiguration, with a hint, and are registered."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from shopreco.checks import check_settings
from shopreco.conf import ALGORITHMS
from shopreco.engine.similarity import method_names


def messages(**overrides) -> list:
    with override_settings(**overrides):
        return check_settings()


def ids(**overrides) -> list[str]:
    return [m.id for m in messages(**overrides)]


def test_the_test_settings_pass():
    assert check_settings() == []


def test_e001_product_model_missing_or_empty():
    with override_settings():
        del settings.SHOPRECO_PRODUCT_MODEL
        found = check_settings()
    assert [m.id for m in found] == ["shopreco.E001"]
    assert "SHOPRECO_PRODUCT_MODEL" in found[0].hint
    assert ids(SHOPRECO_PRODUCT_MODEL="") == ["shopreco.E001"]
    assert ids(SHOPRECO_PRODUCT_MODEL=None) == ["shopreco.E001"]


@pytest.mark.parametrize("label", ["catalog.Nope", "missingapp.Product", "notalabel"])
def test_e002_product_model_cannot_be_loaded(label):
    found = messages(SHOPRECO_PRODUCT_MODEL=label)
    assert [m.id for m in found] == ["shopreco.E002"]
    assert label in found[0].msg and found[0].hint


def test_e003_shopreco_not_a_dict_or_unknown_option():
    assert ids(SHOPRECO=["NEIGHBOURS", 5]) == ["shopreco.E003"]
    found = messages(SHOPRECO={"NEIGHBORS": 5, "CACHE_TIMEOUT": 10})
    assert [m.id for m in found] == ["shopreco.E003"]
    assert "NEIGHBORS" in found[0].msg and "CACHE_TIMEOUT" not in found[0].msg


@pytest.mark.parametrize(
    "scale",
    [{"RATING_MIN": 5, "RATING_MAX": 1}, {"RATING_MIN": 3, "RATING_MAX": 3},
     {"RATING_MAX": "5"}],
)
def test_e004_rating_scale(scale):
    assert ids(SHOPRECO=scale) == ["shopreco.E004"]


@pytest.mark.parametrize(
    "weights", [{}, {"view": 0}, {"view": -1.0}, {"view": "1"}, {1: 2.0}, ["view"]]
)
def test_e005_event_weights(weights):
    assert ids(SHOPRECO={"EVENT_WEIGHTS": weights}) == ["shopreco.E005"]


def test_e005_accepts_extra_event_kinds():
    assert ids(SHOPRECO={"EVENT_WEIGHTS": {"view": 1, "wishlist": 2.5}}) == []


def test_e006_adapter_not_importable():
    found = messages(SHOPRECO={"ADAPTER": "shopreco.adapter.NoSuchAdapter"})
    assert [m.id for m in found] == ["shopreco.E006"]
    assert "shopreco.adapter.NoSuchAdapter" in found[0].msg


@pytest.mark.parametrize("key", ["NEIGHBOURS", "RECOMMENDATIONS_PER_USER", "MAX_LIMIT",
                                 "DEFAULT_LIMIT", "BLOCK_SIZE", "USER_BATCH_SIZE", "KEEP_RUNS",
                                 "EASE_MAX_ITEMS", "SIMILAR_PER_PRODUCT", "STALE_RUN_SECONDS",
                                 "CACHE_TIMEOUT", "RECENT_ITEMS_FOR_COLD_START",
                                 "EVENT_RETENTION_DAYS", "RANK_LIMIT"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True, "10"])
def test_e007_positive_integers(key, value):
    found = messages(SHOPRECO={key: value})
    assert [m.id for m in found] == ["shopreco.E007"]
    assert key in found[0].msg


@pytest.mark.parametrize("conf", [{"ALGORITHM": "svd"}, {"EASE_LAMBDA": 0},
                                  {"EASE_LAMBDA": "big"}, {"POPULARITY_PENALTY": -0.1},
                                  {"POPULARITY_PENALTY": 2}, {"POPULARITY_PENALTY": "0.1"}])
def test_e008_ranking_model_options(conf):
    found = messages(SHOPRECO=conf)
    assert [m.id for m in found] == ["shopreco.E008"]
    assert next(iter(conf)) in found[0].msg


@pytest.mark.parametrize(("key", "choices"), [
    ("ALGORITHM", ALGORITHMS),
    ("SIMILARITY", ("auto", *method_names("item"))),
])
def test_e008_unknown_name_lists_the_choices(key, choices):
    found = messages(SHOPRECO={key: "nope"})
    assert [m.id for m in found] == ["shopreco.E008"]
    assert key in found[0].msg and "'nope'" in found[0].msg
    for choice in choices:  # the hint names every valid value, so the fix is a copy away
        assert repr(choice) in found[0].hint


@pytest.mark.parametrize("conf", [{"ALGORITHM": "user"}, {"EASE_LAMBDA": 250},
                                  {"POPULARITY_PENALTY": 0}, {"SIMILARITY": "auto"},
                                  {"SIMILARITY": "cosine_baseline"}])
def test_good_ranking_model_options_pass(conf):
    assert messages(SHOPRECO=conf) == []


def test_w001_api_schema_needs_drf_spectacular():
    apps = [a for a in settings.INSTALLED_APPS if a != "drf_spectacular"]
    found = messages(INSTALLED_APPS=apps)
    assert [m.id for m in found] == ["shopreco.W001"]
    assert found[0].level == checks.WARNING


def test_checks_are_registered_and_run_by_manage_py_check():
    assert checks.run_checks(tags=["shopreco"]) == []
    with override_settings(SHOPRECO={"NEIGHBOURS": 0}):
        assert [m.id for m in checks.run_checks(tags=["shopreco"])] == ["shopreco.E007"]
        with pytest.raises(SystemCheckError, match="shopreco.E007"):
            call_command("check")


@pytest.mark.parametrize(("conf", "accepted"), [
    ({"EXCLUDE_OWNED": "yes"}, "True or False"),
    ({"HONOR_GPC": 1}, "True or False"),
    ({"SHRINKAGE": -1}, "a number >= 0"),
    ({"REFRESH_DEBOUNCE_SECONDS": "5"}, "a number >= 0"),
    ({"TRENDING_HALF_LIFE_DAYS": 0}, "a number > 0"),
    ({"VIEW_TRACKING": "auto"}, "'manual', 'middleware'"),
    ({"OWNED_EVENT_KINDS": ["order"]}, "kinds of EVENT_WEIGHTS"),
    ({"SNAPSHOT_PREFIX": "/"}, "a non-empty folder name"),
    ({"ANONYMIZE_SECRET": ""}, "None or a non-empty string"),
    ({"CACHE_ALIAS": "nope"}, "an alias of CACHES"),
])
def test_e010_every_other_option_is_checked(conf, accepted):
    found = messages(SHOPRECO=conf)
    assert [m.id for m in found] == ["shopreco.E010"]
    assert next(iter(conf)) in found[0].msg and accepted in found[0].msg


def test_e006_product_serializer_not_importable():
    found = messages(SHOPRECO={"API_PRODUCT_SERIALIZER": "nowhere.Serializer"})
    assert [m.id for m in found] == ["shopreco.E006"]


def test_every_option_has_a_check():
    """A new option gets its check with it: each is named in shopreco/checks.py."""
    from pathlib import Path

    from shopreco.conf import DEFAULTS

    source = (Path(__file__).resolve().parent.parent / "shopreco" / "checks.py").read_text()
    unchecked = [key for key in DEFAULTS if f'"{key}"' not in source]
    assert unchecked == []



@pytest.mark.parametrize("options,fragment", [
    ({"CANDIDATES": []}, "non-empty list"),
    ({"CANDIDATES": [{"algorithm": "svd"}]}, "'algorithm' must be one of"),
    ({"CANDIDATES": [{"algorithm": "ease", "lamda": 10}]}, "unknown key(s) 'lamda'"),
    ({"CANDIDATES": [{"algorithm": "item", "k": "50"}]}, "'k' must be a number"),
    ({"CANDIDATES": [{"algorithm": "item", "k": 2.5}]}, "'k' must be a number"),
    ({"CANDIDATES": [{"algorithm": "item", "similarity": "jaccard"}]}, "'similarity' must be"),
    ({"CANDIDATES": [{"algorithm": "ease", "lambda": -1}]}, "'lambda' must be > 0"),
    ({"HOLDOUT": {"users": 1.5}}, "share in (0, 1]"),
    ({"HOLDOUT": {"interactions": 0}}, "positive integer"),
    ({"HOLDOUT": {"users": 0.5, "days": 3}}, "must be a dict with"),
    ({"GATE_METRIC": "rmse"}, "such as 'ndcg@10'"),
    ({"GATE_METRIC": "ndcg"}, "such as 'ndcg@10'"),
    ({"GATE_TOLERANCE": 5}, "share from 0 to 1"),
    ({"SELECTION_EVERY": 0}, "positive integer"),
    ({"FAILED_RUN_RETENTION_DAYS": "7"}, "positive integer"),
])
def test_deployment_options_are_checked(options, fragment):
    found = messages(SHOPRECO=options)
    assert found and all(m.id in ("shopreco.E011", "shopreco.E007") for m in found)
    assert any(fragment in m.msg for m in found), [m.msg for m in found]


def test_deployment_options_accept_what_the_pipeline_runs():
    assert ids(SHOPRECO={
        "ALGORITHM": "auto", "GATE_METRIC": "recall@20", "GATE_TOLERANCE": None,
        "CANDIDATES": [{"algorithm": "ease", "lambda": 200}, {"algorithm": "popular"},
                       {"algorithm": "item", "similarity": "cosine", "k": 50},
                       {"algorithm": "user", "k": 30}],
        "HOLDOUT": {"users": 1, "interactions": 2, "seed": 4}}) == []
