"""These tests need another product model (settings tests.keytypes.settings_<kind>), so the
main run skips collecting them: tests/api/test_key_types.py runs them in subprocesses."""

import os

if not os.environ.get("DJANGO_SETTINGS_MODULE", "").startswith("tests.keytypes.settings_"):
    collect_ignore_glob = ["*"]
