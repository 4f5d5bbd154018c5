"""Hostile input (issue #17): every write endpoint, every list query parameter and every path
id answers a clean 4xx, never a 500, and writes nothing.

The probe set is built by :func:`probes` from the keys of the shop under test, so
tests/security reuses it to check that no response, with DEBUG on or off, carries a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from django.conf import settings
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from rest_framework.authtoken.models import Token

from shopreco.models import Interaction, Preference, Rating
from tests.api.conftest import API

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


@dataclass(frozen=True)
class Keys:
    """The rows the probes aim at: a product (available), a category, a rating of the probing
    user, a run and a user."""

    product: int
    category: int
    rating: int
    run: int
    user: int


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: str
    body: bytes | None = None
    content_type: str = "application/json"
    expect: tuple[int, ...] = (400,)
    json_answer: bool = True  # a short JSON error, not an HTML page


def _fullwidth(text: str) -> str:
    return text.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})


def _arabic(text: str) -> str:
    return text.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})


def key_variants(pk: int) -> dict[str, str]:
    """Spellings of an existing integer key that must not resolve to its row: only canonical
    ASCII digits do."""
    s = str(pk)
    return {
        "plus": f"+{s}", "leading space": f" {s}", "trailing space": f"{s} ",
        "trailing newline": f"{s}\n", "leading zero": f"0{s}", "fullwidth": _fullwidth(s),
        "arabic-indic": _arabic(s), "float": f"{s}.0", "exponent": f"{s}e0", "hex": hex(pk),
        "underscore": f"{s[0]}_{s[1:]}" if len(s) > 1 else f"{s}_0",
    }


# Hostile strings that are not keys of anything.
HOSTILE_STRINGS = {
    "nul": "\x00", "nul after a key": "1\x00", "sql or": "1 OR 1=1",
    "sql drop": "1; DROP TABLE shopreco_rating; --", "sql quote": "' OR ''='",
    "traversal": "../../../../etc/passwd", "windows traversal": "..\\..\\windows\\win.ini",
    "encoded traversal": "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "empty": "", "nan": "NaN",
    "infinity": "Infinity", "overflow float": "1e400", "past 63 bits": str(2**63),
    "past 64 bits": str(2**64), "huge integer": "9" * 400, "beyond int digits": "9" * 5000,
    "word": "abc",
}

# Raw JSON values (not strings): numbers JSON cannot or should not carry, and wrong types.
HOSTILE_JSON = {
    "2**64": str(2**64), "-(2**63)-1": str(-(2**63) - 1), "10**400": str(10**400),
    "1e400": "1e400", "-1e400": "-1e400", "NaN": "NaN", "Infinity": "Infinity",
    "-Infinity": "-Infinity", "null": "null", "list": "[]", "object": "{}",
    "deep list": "[" * 50 + "]" * 50, "beyond int digits": "9" * 5000,
}


WELL_FORMED_ID = re.compile(r'null|"[A-Za-z0-9_-]{0,64}"')


def _fields(**fragments: str) -> bytes:
    """A JSON object from raw value fragments (so NaN, 1e400 and 10**400 go through as sent)."""
    return ("{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in fragments.items()) + "}").encode()


def _hostile_values(pk: int | None) -> Iterator[tuple[str, str]]:
    """(name, raw JSON fragment) of every hostile value of a field."""
    for name, raw in HOSTILE_JSON.items():
        yield name, raw
    for name, text in HOSTILE_STRINGS.items():
        yield f"string {name}", json.dumps(text)
    if pk is not None:
        for name, text in key_variants(pk).items():
            yield f"key {name}", json.dumps(text)


def _raw_bodies(valid: dict[str, str]) -> Iterator[tuple[str, bytes, str]]:
    """(name, body, content type) of hostile bodies around an otherwise valid one."""
    form = "&".join(f"{k}={quote(json.loads(v) if v.startswith(chr(34)) else v)}"
                    for k, v in valid.items())
    for depth in (1000, 100_000):
        yield f"{depth} nested lists", b"[" * depth + b"]" * depth, "application/json"
        yield (f"{depth} nested objects", b'{"a":' * depth + b"1" + b"}" * depth,
               "application/json")
    first = next(iter(valid))
    deep = {**valid, first: "[" * 1000 + "1" + "]" * 1000}
    yield "1000 nested lists in a field", _fields(**deep), "application/json"
    for size in (1, 3, 50):
        pad = json.dumps("x" * (size * MB))
        yield f"{size} MB JSON", _fields(**valid, pad=pad), "application/json"
        yield (f"{size} MB form", f"{form}&pad={'x' * (size * MB)}".encode(),
               "application/x-www-form-urlencoded")
    yield "50 MB of brackets", b"[" * (50 * MB), "application/json"
    keys = {f"k{i}": "0" for i in range(300_000)}
    yield "300,000 keys", _fields(**valid, **keys), "application/json"
    yield ("5,000 form fields", (form + "".join(f"&f{i}=1" for i in range(5000))).encode(),
           "application/x-www-form-urlencoded")
    boundary = "probeboundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n1\r\n'
             for i in range(5000)]
    yield ("5,000 multipart fields", ("".join(parts) + f"--{boundary}--\r\n").encode(),
           f"multipart/form-data; boundary={boundary}")
    yield "truncated JSON", _fields(**valid)[:-1], "application/json"
    yield "single quotes", _fields(**valid).replace(b'"', b"'"), "application/json"
    yield "trailing garbage", _fields(**valid) + b" x", "application/json"
    yield "invalid UTF-8", b'{"a": "\xff\xfe"}', "application/json"
    yield "NUL in JSON", b'{"a": 1}\x00', "application/json"
    yield "JSON list", b"[1, 2]", "application/json"
    yield "JSON string", b'"x"', "application/json"
    yield "JSON null", b"null", "application/json"
    yield "text/plain", _fields(**valid), "text/plain"
    yield "XML", b"<product>1</product>", "application/xml"
    yield "no content type", _fields(**valid), ""
    yield "unknown charset", _fields(**valid), "application/json; charset=x-no-such"
    yield "text transform charset", _fields(**valid), "application/json; charset=rot13"
    yield "UTF-16 charset, UTF-8 body", b'{"a": "\xc3"}', "application/json; charset=utf-16"
    yield "multipart without boundary", _fields(**valid), "multipart/form-data"
    yield "multipart garbage", b"garbage", "multipart/form-data; boundary=x"
    yield "bad percent escapes", b"%ZZ=%ZZ&%=1", "application/x-www-form-urlencoded"


def write_endpoints(k: Keys) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, a valid body as raw JSON fragments) of every write endpoint."""
    event = {"product": str(k.product), "type": '"view"'}
    rating = {"product": str(k.product), "score": "3"}
    return [
        ("post", "events/", event),
        ("post", "ratings/", rating),
        ("put", f"ratings/{k.rating}/", rating),
        ("patch", f"ratings/{k.rating}/", {"score": "3"}),
        ("put", "me/preferences/", {"personalize": "true"}),
    ]


def body_probes(k: Keys) -> list[Probe]:
    """Hostile bodies on every write endpoint."""
    out = []
    for method, path, valid in write_endpoints(k):
        for name, body, content_type in _raw_bodies(valid):
            out.append(Probe(f"{method} {path}: {name}", method, path, body, content_type,
                             expect=(400, 415)))
    return out


def field_probes(k: Keys) -> list[Probe]:
    """Each field of each write endpoint set to each hostile value, the others valid."""
    out = []
    for method, path, valid in write_endpoints(k):
        fields = dict(valid)
        if path == "events/":
            fields["recommendation_id"] = '"abc"'
        for field in fields:
            pk = k.product if field == "product" else None
            for name, raw in _hostile_values(pk):
                if field == "recommendation_id" and WELL_FORMED_ID.fullmatch(raw):
                    continue  # accepted and not credited (test_events), like a stale id
                body = _fields(**{**valid, field: raw})
                out.append(Probe(f"{method} {path}: {field} = {name}", method, path, body))
        if path == "me/preferences/":  # a form without the field must not turn it off
            out.append(Probe("form PUT me/preferences/ without the field", method, path,
                             b"other=1", "application/x-www-form-urlencoded"))
            out.append(Probe("multipart PUT me/preferences/ without the field", method, path,
                             b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n"
                             b"--b--\r\n", "multipart/form-data; boundary=b"))
    return out


def query_probes(k: Keys) -> list[Probe]:
    """Each query parameter of the list endpoints set to each hostile value."""
    lists = [f"products/{k.product}/similar/", f"products/{k.product}/also-bought/",
             "recommendations/", "popular/", f"users/{k.user}/recommendations/"]
    params = {path: ["limit"] for path in lists}
    for path in (f"products/{k.product}/similar/", "recommendations/", "popular/"):
        params[path].append("category")
    params["ratings/"] = ["page", "page_size", "product"]
    params["runs/"] = ["page", "page_size"]
    out = []
    for path, names in params.items():
        for param in names:
            pk = k.product if param == "product" else k.category if param == "category" else 1
            values = {**HOSTILE_STRINGS, **{f"key {n}": v for n, v in key_variants(pk).items()},
                      "zero": "0", "negative": "-1"}
            if param == "product":
                del values["zero"], values["negative"]  # well-formed keys: an empty list
            else:
                del values["empty"]  # the same as not given (test_empty_parameters_...)
            for name, value in values.items():
                expect = (404,) if param == "page" else (400,)
                out.append(Probe(f"GET {path}?{param}={name}", "get",
                                 f"{path}?{param}={quote(value)}", expect=expect))
    return out


def path_probes(k: Keys) -> list[Probe]:
    """Path ids spelled any way but canonical ASCII digits find nothing (404)."""
    routes = [
        ("get", "products/{}/similar/", k.product), ("get", "products/{}/also-bought/", k.product),
        ("get", "ratings/{}/", k.rating), ("put", "ratings/{}/", k.rating),
        ("patch", "ratings/{}/", k.rating), ("delete", "ratings/{}/", k.rating),
        ("get", "runs/{}/", k.run), ("get", "users/{}/recommendations/", k.user),
    ]
    out = []
    for method, route, pk in routes:
        values = {**key_variants(pk), **HOSTILE_STRINGS}
        del values["empty"]  # another route (the list)
        for name, value in values.items():
            body = _fields(score="3") if method in ("put", "patch") else None
            out.append(Probe(f"{method} {route.format(name)}", method,
                             route.format(quote(value, safe="")), body,
                             expect=(404,), json_answer=False))
    return out


def probes(k: Keys) -> list[Probe]:
    return body_probes(k) + field_probes(k) + query_probes(k) + path_probes(k)


# --- clients ----------------------------------------------------------------------------------


def _quiet(client: Client) -> Client:
    client.raise_request_exception = False  # a 500 is a response to report, not an exception
    return client


def token_client(user, **environ: str) -> Client:
    token, _ = Token.objects.get_or_create(user=user)
    return _quiet(Client(HTTP_AUTHORIZATION=f"Token {token.key}", **environ))


def session_client(user=None, **environ: str) -> Client:
    """A browser: session cookie and a valid CSRF token, so the CSRF check (which reads the
    body of a POST) runs before the view. ``user`` None: an anonymous visitor whose session
    already exists."""
    client = _quiet(Client(enforce_csrf_checks=True, **environ))
    if user is not None:
        client.force_login(user)
    else:
        from importlib import import_module

        store = import_module(settings.SESSION_ENGINE).SessionStore()
        store.create()
        client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    secret = _get_new_csrf_string()
    client.cookies[settings.CSRF_COOKIE_NAME] = secret
    client.defaults["HTTP_X_CSRFTOKEN"] = secret
    return client


def send(client: Client, probe: Probe):
    kwargs = {}
    if probe.body is not None:
        kwargs = {"data": probe.body, "content_type": probe.content_type}
    return client.generic(probe.method.upper(), f"{API}{probe.path}", **kwargs)


def check(client: Client, selected: list[Probe]) -> list[str]:
    """The probes whose answer is not what they expect, as readable lines."""
    bad = []
    for probe in selected:
        response = send(client, probe)
        status = response.status_code
        if status not in probe.expect:
            bad.append(f"{probe.name!r}: {status} (expected {probe.expect})")
        elif probe.json_answer and not response["Content-Type"].startswith("application/json"):
            bad.append(f"{probe.name!r}: {status} as {response['Content-Type']}, not JSON")
    return bad


def assert_ok(bad: list[str]) -> None:
    assert not bad, f"{len(bad)} probes answered otherwise:\n" + "\n".join(bad)


# --- tests ------------------------------------------------------------------------------------


@pytest.fixture
def keys(shop, alice, staff) -> Keys:
    from shopreco.models import RecomputeRun

    rating = Rating.objects.create(user=alice, product=shop.products[0], score=4)
    return Keys(product=shop.products[0].pk, category=shop.books.pk, rating=rating.pk,
                run=RecomputeRun.objects.get().pk, user=alice.pk)


def _state(alice) -> tuple:
    return (
        sorted(Rating.objects.values_list("pk", "product_id", "score")),
        Interaction.objects.count(),
        list(Preference.objects.filter(user=alice).values_list("personalize", flat=True)),
    )


@pytest.mark.parametrize("who", ["token", "session", "anonymous session", "anonymous"])
def test_hostile_bodies_get_400_and_write_nothing(keys, alice, who):
    client = {"token": lambda: token_client(alice), "session": lambda: session_client(alice),
              "anonymous session": lambda: session_client(None),
              "anonymous": lambda: _quiet(Client())}[who]()
    selected = body_probes(keys)
    if who.startswith("anonymous"):
        selected = [p for p in selected if p.path == "events/"]
    before = _state(alice)
    assert_ok(check(client, selected))
    assert _state(alice) == before


def test_hostile_field_values_get_400_and_write_nothing(keys, alice):
    before = _state(alice)
    assert_ok(check(token_client(alice), field_probes(keys)))
    assert _state(alice) == before


def test_hostile_query_parameters_get_400(keys, staff):
    assert_ok(check(token_client(staff), query_probes(keys)))


def test_path_ids_resolve_only_in_canonical_form(keys, alice, staff):
    before = _state(alice)
    mine = [p for p in path_probes(keys) if p.path.startswith(("ratings/", "products/"))]
    assert_ok(check(token_client(alice), mine))
    staff_only = [p for p in path_probes(keys) if p.path.startswith(("runs/", "users/"))]
    assert_ok(check(token_client(staff), staff_only))
    assert _state(alice) == before


def test_canonical_keys_still_resolve(keys, alice, staff):
    """The guard: the same endpoints answer 200 to the plain spelling of each key."""
    alice_client, staff_client = token_client(alice), token_client(staff)
    for path in (f"products/{keys.product}/similar/", f"ratings/{keys.rating}/",
                 f"ratings/?product={keys.product}&page=1&page_size=5",
                 f"popular/?category={keys.category}&limit=3"):
        assert alice_client.get(f"{API}{path}").status_code == 200, path
    for path in (f"runs/{keys.run}/", f"users/{keys.user}/recommendations/"):
        assert staff_client.get(f"{API}{path}").status_code == 200, path
    for method, path, valid in write_endpoints(keys):
        response = alice_client.generic(method.upper(), f"{API}{path}", _fields(**valid),
                                        content_type="application/json")
        assert response.status_code in (200, 201), (method, path, response.content)


def test_empty_parameters_mean_not_given(keys, alice):
    """As the schema says (allowEmptyValue): ``?limit=`` is the default, ``?category=``
    every category, ``?page=`` the first and ``?page_size=`` the default size."""
    client = token_client(alice)
    assert client.get(f"{API}popular/?limit=&category=").status_code == 200
    assert client.get(f"{API}ratings/?page=&page_size=").status_code == 200
