"""Shared by settings_<kind>.py: replace the demo catalogue with one key-type test app.

The test database gets its own name (per kind and xdist worker) so that the subprocess never
touches the database of the pytest run that started it, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import os
from typing import Any


def swap_product_app(ns: dict[str, Any], kind: str) -> None:
    ns["INSTALLED_APPS"] = [
        app for app in ns["INSTALLED_APPS"] if app != "demo_shop.catalog"
    ] + [f"tests.keytypes.{kind}"]
    ns["SHOPRECO_PRODUCT_MODEL"] = f"{kind}.Product"
    ns["ROOT_URLCONF"] = "tests.keytypes.urls"
    ns["MIDDLEWARE"] = [m for m in ns["MIDDLEWARE"] if "demo_shop" not in m]
    templates = [dict(t) for t in ns["TEMPLATES"]]
    for template in templates:
        options = dict(template.get("OPTIONS", {}))
        options["context_processors"] = [
            cp for cp in options.get("context_processors", []) if "demo_shop" not in cp
        ]
        template["OPTIONS"] = options
    ns["TEMPLATES"] = templates
    database = dict(ns["DATABASES"]["default"])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if database["ENGINE"].endswith("sqlite3"):
        name = str(ns["BASE_DIR"] / "var" / f"test-keytypes-{kind}-{worker}-{os.getpid()}.sqlite3")
    else:
        name = f"test_{database['NAME']}_{kind}_{worker}"
    database["TEST"] = {**database.get("TEST", {}), "NAME": name}
    ns["DATABASES"] = {**ns["DATABASES"], "default": database}
