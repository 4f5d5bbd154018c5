"""No response carries a secret (issue #17): the API's hostile-input probes (tests/api/
test_inputs.py) answer without a 500 and without the SECRET_KEY, a database password or the
environment, with DEBUG on and off; the demo runs with DEBUG off unless `make demo` turns it
on, and logs server errors when it is off."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from tests.api.conftest import API
from tests.api.test_inputs import (
    Keys,
    Probe,
    body_probes,
    field_probes,
    path_probes,
    query_probes,
    send,
    session_client,
    token_client,
)

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "probe-secret-key-3b7e1f0a"
DB_PASSWORD = "probe-db-password-91c4d2"
# What a WSGI server (runserver, gunicorn) puts into every request's environ from the process
# environment, and Django's debug pages list.
ENVIRON = {
    "DATABASE_URL": f"postgres://shop:{DB_PASSWORD}@db.internal:5432/shop",
    "DJANGO_SECRET_KEY": SECRET_KEY,
    "CELERY_BROKER_URL": f"redis://:{DB_PASSWORD}@cache.internal:6379/0",
}
LEAKS = (SECRET_KEY, DB_PASSWORD, "DATABASE_URL")


def secrets_in(response) -> list[str]:
    text = response.serialize_headers() + b"\n" + response.content
    return [leak for leak in LEAKS if leak.encode() in text]


def with_secrets(debug: bool) -> override_settings:
    databases = {alias: {**conf, "PASSWORD": DB_PASSWORD}
                 for alias, conf in settings.DATABASES.items()}
    return override_settings(DEBUG=debug, SECRET_KEY=SECRET_KEY, DATABASES=databases,
                             CELERY_BROKER_URL=ENVIRON["CELERY_BROKER_URL"])


@pytest.fixture
def keys(shop) -> Keys:
    return Keys(product=shop.evil.pk, category=shop.evil.category_id,
                rating=shop.alice_rating.pk, run=shop.run.pk, user=shop.alice.pk)


def _probe_all(client, selected: list[Probe]) -> list[str]:
    bad = []
    for probe in selected:
        response = send(client, probe)
        if response.status_code >= 500:
            bad.append(f"{probe.name!r}: {response.status_code}")
        leaked = secrets_in(response)
        if leaked:
            bad.append(f"{probe.name!r}: {response.status_code} carries {leaked}")
    return bad


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize("debug", [False, True], ids=["DEBUG off", "DEBUG on"])
def test_no_probe_answer_carries_a_secret(shop, keys, debug):
    """Every probe of the API's hostile-input set (bar the 50 MB bodies, the same code path as
    the 3 MB ones), as the user, her browser session, an anonymous session and staff."""
    bodies = [p for p in body_probes(keys) if "50 MB" not in p.name]
    with with_secrets(debug):
        runs = [
            (token_client(shop.alice, **ENVIRON), bodies + field_probes(keys) + path_probes(keys)),
            (session_client(shop.alice, **ENVIRON), bodies),
            (session_client(None, **ENVIRON), [p for p in bodies if p.path == "events/"]),
            (token_client(shop.staff, **ENVIRON), query_probes(keys) + path_probes(keys)),
        ]
        bad = [line for client, selected in runs for line in _probe_all(client, selected)]
    assert not bad, f"{len(bad)} answers:\n" + "\n".join(bad)


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_the_check_would_catch_a_debug_page(shop, monkeypatch):
    """The guard: with DEBUG on, a crashing view's technical 500 page does list the
    environment (so the grep above works, and DEBUG must stay off where others can reach);
    with DEBUG off the same crash answers a page without it."""
    from shopreco import serving

    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(serving, "popular", crash)
    for debug, leaks in ((True, True), (False, False)):
        with with_secrets(debug):
            response = token_client(shop.alice, **ENVIRON).get(f"{API}popular/")
        assert response.status_code == 500
        assert bool(secrets_in(response)) is leaks, debug


def test_demo_runs_with_debug_off_unless_make_demo_turns_it_on(monkeypatch):
    monkeypatch.delenv("DJANGO_DEBUG", raising=False)
    assert runpy.run_path(str(ROOT / "demo_shop" / "settings.py"))["DEBUG"] is False
    monkeypatch.setenv("DJANGO_DEBUG", "1")
    assert runpy.run_path(str(ROOT / "demo_shop" / "settings.py"))["DEBUG"] is True
    makefile = (ROOT / "Makefile").read_text()
    demo = re.search(r"^demo:.*?(?=^\S)", makefile, re.M | re.S)
    assert demo and re.search(r"^\tDJANGO_DEBUG=1 \S+ manage.py runserver", demo[0], re.M)
    assert "DJANGO_DEBUG" not in makefile.replace(demo[0], "")  # nowhere else


SERVER_ERROR = """
import sys
import django
from django.core.handlers.exception import response_for_exception
from django.test import RequestFactory

django.setup()
try:
    raise RuntimeError("marker-7f3a")
except RuntimeError as exc:
    response = response_for_exception(RequestFactory().get("/api/reco/popular/"), exc)
print(response.status_code)
"""


@pytest.mark.parametrize("debug", ["0", "1"], ids=["DEBUG off", "DEBUG on"])
def test_demo_logs_server_errors(debug):
    """A 500 of the demo is logged to the console once, with its traceback, whether DEBUG is
    on (Django's own console handler) or off (the demo's "errors" handler)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo_shop.settings", "DJANGO_DEBUG": debug}
    result = subprocess.run([sys.executable, "-c", SERVER_ERROR], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "500", result.stderr
    assert result.stderr.count("Internal Server Error: /api/reco/popular/") == 1, result.stderr
    assert "RuntimeError: marker-7f3a" in result.stderr
