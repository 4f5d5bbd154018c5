"""The OpenAPI schema, the docs page, and a property-based run of schemathesis against the
generated schema: no 500 and no response that violates the schema, on every operation, as a
staff user with a token (so every endpoint is reachable) over a shop with real results."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shopreco.models import Interaction, Rating
from tests.api.conftest import API

SCHEMA_URL = f"{API}schema/?format=json"
OPERATIONS = {
    ("GET", "products/{id}/similar/"), ("GET", "products/{id}/also-bought/"),
    ("GET", "recommendations/"), ("GET", "popular/"), ("POST", "events/"),
    ("GET", "ratings/"), ("POST", "ratings/"), ("GET", "ratings/{id}/"),
    ("PUT", "ratings/{id}/"), ("PATCH", "ratings/{id}/"), ("DELETE", "ratings/{id}/"),
    ("POST", "recompute/"), ("GET", "runs/"), ("GET", "runs/{id}/"),
    ("POST", "runs/{id}/activate/"),
    ("GET", "users/{id}/recommendations/"), ("GET", "me/export/"), ("DELETE", "me/data/"),
    ("GET", "me/preferences/"), ("PUT", "me/preferences/"),
}


@pytest.mark.django_db
def test_schema_lists_every_operation(anon):
    response = anon.get(SCHEMA_URL)
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    found = {
        (method.upper(), path.removeprefix(API))
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert found == OPERATIONS
    assert {"cookieAuth", "tokenAuth"} <= set(schema["components"]["securitySchemes"])


@pytest.mark.django_db
def test_docs_page_needs_no_cdn(anon):
    response = anon.get(f"{API}docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in html
    assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html
    assert f"{API}schema/" in html


class _InProcessApp:
    """Django's WSGI handler, without closing the test's database connection at the end of
    each request (Django's test client does the same)."""

    def __init__(self) -> None:
        self.handler = WSGIHandler()

    def __call__(self, environ, start_response):  # noqa: ANN001, ANN204 - WSGI signature
        return self.handler(environ, start_response)


@pytest.fixture
def _keep_connection():
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def staff_headers(_keep_connection, shop, staff, alice) -> dict[str, str]:
    """A token of a staff user who has ratings and a purchase, in a shop with results."""
    Rating.objects.create(user=staff, product=shop.products[1], score=4)
    Rating.objects.create(user=alice, product=shop.products[2], score=2)
    Interaction.objects.create(user=staff, product=shop.products[3], kind="purchase")
    token, _ = Token.objects.get_or_create(user=staff)
    return {"Authorization": f"Token {token.key}"}


# Loaded when the module is collected (Django is set up by then; generating the schema needs
# no database). Every operation becomes its own test item.
api_schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, _InProcessApp())


@pytest.mark.django_db
@api_schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_schema(case, staff_headers):
    case.call_and_validate(
        headers=staff_headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


@pytest.mark.django_db
def test_the_property_run_would_catch_a_500(monkeypatch, staff_headers):
    """Guard against a run that cannot fail: a crashing view must fail the same checks."""
    from hypothesis import given
    from schemathesis.core.failures import FailureGroup, ServerError

    from shopreco import serving

    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(serving, "popular", crash)
    operation = api_schema[f"{API}popular/"]["GET"]

    caught: list = []

    @given(case=operation.as_strategy())
    @settings(max_examples=10, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def run(case):
        try:
            response = case.call_and_validate(headers=staff_headers, checks=[not_a_server_error])
        except FailureGroup as failed:
            caught.extend(e for e in failed.exceptions if isinstance(e, ServerError))
        else:  # only invalid input (rejected before the view reaches the service) passes
            assert response.status_code == 400

    run()
    assert caught


def test_schema_and_docs_work_with_the_hosts_own_schema_settings(anon, settings):
    """A host that never set DEFAULT_SCHEMA_CLASS (DRF's default is its own AutoSchema) nor
    SPECTACULAR_SETTINGS still gets the schema and the docs."""
    settings.REST_FRAMEWORK = {k: v for k, v in settings.REST_FRAMEWORK.items()
                               if k != "DEFAULT_SCHEMA_CLASS"}
    response = anon.get(SCHEMA_URL)
    assert response.status_code == 200, response.content[:300]
    assert f"{API}popular/" in response.json()["paths"]
    assert anon.get(f"{API}docs/").status_code == 200
    # (tests/packaging/check_install.py runs this in a new project, where it failed before.)


def test_schema_has_shopreco_title_and_version_when_the_host_sets_none(monkeypatch):
    from drf_spectacular.settings import spectacular_settings

    from shopreco import __version__
    from shopreco.api.schema import MountedSchemaGenerator

    monkeypatch.setattr(spectacular_settings, "TITLE", "")
    monkeypatch.setattr(spectacular_settings, "VERSION", "0.0.0")
    info = MountedSchemaGenerator().get_schema(public=True)["info"]
    assert info["title"] == "shopreco API" and info["version"] == __version__
