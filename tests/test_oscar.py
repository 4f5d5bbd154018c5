"""The django-oscar integration: tests/oscar run in their own pytest process against an Oscar
shop (tests/oscar/settings.py), because Oscar's product model is fixed when Django starts."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_shopreco_works_in_an_oscar_shop():
    if importlib.util.find_spec("oscar") is None:
        message = 'django-oscar is not installed (pip install "shopreco[oscar]")'
        if os.environ.get("CI") == "true":  # requirements.txt installs it: a skip would hide
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.oscar.settings"}
    env.pop("SHOPRECO_TEST_DB_NAME", None)  # the child picks its own test database
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/oscar", "-p", "no:cacheprovider", "-q", "-rs",
         "-W", "error::django.utils.deprecation.RemovedInNextVersionWarning"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = re.search(r"(\d+) passed", output)
    assert passed and int(passed.group(1)) >= 25, output
    assert " skipped" not in output, output


def test_the_wheel_carries_the_oscar_templates_and_static_files():
    """pyproject's package data names every template and static file of the integration
    (the wheel itself is built by ``make check-install``)."""
    import fnmatch
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["shopreco"]
    package = ROOT / "shopreco"
    files = [p.relative_to(package).as_posix()
             for folder in ("templates", "static")
             for p in (package / "contrib").glob(f"*/{folder}/**/*") if p.is_file()]
    assert len(files) >= 6
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert unshipped == []
    assert pyproject["project"]["optional-dependencies"]["oscar"][0].startswith("django-oscar")
