"""Integer, UUID and text product keys: tests/keytypes/test_keytypes.py run once per key type,
each in its own pytest process because the product model is fixed when Django starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind", ["intpk", "uuidpk", "textpk"])
def test_shopreco_works_with_product_key(kind):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": f"tests.keytypes.settings_{kind}"}
    env.pop("SHOPRECO_TEST_DB_NAME", None)  # the child picks its own test database
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/keytypes", "-p", "no:cacheprovider", "-q",
         "-rs", "-W", "error::django.utils.deprecation.RemovedInNextVersionWarning"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = re.search(r"(\d+) passed", output)
    assert passed and int(passed.group(1)) >= 3, output
