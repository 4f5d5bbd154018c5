"""The key-type tests need their own settings (another product model), so the main run must
not import them: tests/test_product_keys.py runs each in a subprocess with
DJANGO_SETTINGS_MODULE=tests.keytypes.settings_<kind>."""

import os

if not os.environ.get("DJANGO_SETTINGS_MODULE", "").startswith("tests.keytypes.settings_"):
    collect_ignore_glob = ["*"]
