"""The packaging metadata, read without building anything (the build, the fresh virtualenv
and the README in a new project are check_install.py's, run by ``make check-install``)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import shopreco
from tests.packaging import check_install

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_one_version_source():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "shopreco.__version__"
    }
    assert check_install.source_version() == shopreco.__version__


def test_spdx_license_and_a_setuptools_that_reads_it():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert not any(c.startswith("License ::") for c in PYPROJECT["project"]["classifiers"])
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if "setuptools" in r]
    assert re.fullmatch(r"setuptools>=(\d+)", setuptools)
    assert int(setuptools.split(">=")[1]) >= 77
    packaging = (REPO / "requirements-packaging.txt").read_text(encoding="utf-8")
    assert re.search(r"^twine>=6\.[1-9]", packaging, re.M)


def test_only_the_app_is_packaged():
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert include == ["shopreco*"]
    assert "demo_shop" not in PYPROJECT["tool"]["setuptools"].get("package-data", {})
    manifest = (REPO / "MANIFEST.in").read_text(encoding="utf-8")
    for folder in ("demo_shop", "tests", "bench"):
        assert f"prune {folder}" in manifest


def test_the_readme_install_line_names_declared_extras():
    extras = PYPROJECT["project"]["optional-dependencies"]
    blocks = check_install.readme_blocks(check_install.readme_section())
    assert set(check_install.readme_extras(blocks)) <= set(extras)
    # A Redis broker needs kombu's redis transport (redis and packaging): celery[redis].
    assert any(r.startswith("celery[redis]") for r in extras["redis"])
    assert {"djangorestframework", "drf-spectacular", "drf-spectacular-sidecar"} <= {
        re.split(r"[<>=\[]", r)[0] for r in extras["api"]
    }


def test_the_install_check_finds_the_readme_snippets():
    blocks = check_install.readme_blocks(check_install.readme_section())
    for marker in ("SHOPRECO_PRODUCT_MODEL", 'include("shopreco.urls")', "{% load shopreco %}",
                   "CELERY_BEAT_SCHEDULE"):
        assert check_install.readme_block(blocks, marker, marker)
