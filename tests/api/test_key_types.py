"""The API with integer, UUID and text product keys: tests/api/keytypes run once per key type,
each in its own pytest process (the product model is fixed when Django starts), using the
swapped-model settings of tests/keytypes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["intpk", "uuidpk", "textpk"])
def test_api_works_with_product_key(kind):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": f"tests.keytypes.settings_{kind}"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/api/keytypes", "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = re.search(r"(\d+) passed", output)
    assert passed and int(passed.group(1)) == 4, output
