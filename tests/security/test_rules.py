"""One test per security rule of the privacy issue, across every path that serves data:
the REST API, the template tags, the admin previews and the demo shop's pages."""

from __future__ import annotations

import inspect
import json
import re
from importlib import import_module

import pytest
from django.conf import settings
from django.template import engines
from django.test import RequestFactory, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from shopreco.models import Impression, Interaction, Preference, Rating, RecomputeRun
from shopreco.templatetags import shopreco as tags
from tests.security.conftest import client_for

pytestmark = pytest.mark.django_db

API = "/api/reco/"
RAW_SCRIPT = "<script>alert"


def api(client, method: str, path: str, body=None):
    kwargs = {"content_type": "application/json"}
    if body is not None:
        kwargs["data"] = json.dumps(body)
    return getattr(client, method)(f"{API}{path}", **kwargs)


def walk(patterns, prefix=""):
    """(route, callback) of every URL pattern of the project."""
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.callback


# --- 1. no cross-user access: API ------------------------------------------------------------


def test_api_never_lets_one_user_reach_anothers_data(shop):
    bob = client_for(shop.bob)
    rid = shop.alice_rating.pk
    assert api(bob, "get", f"ratings/{rid}/").status_code == 404
    assert api(bob, "put", f"ratings/{rid}/", {"product": shop.evil.pk, "score": 1}
               ).status_code == 404
    assert api(bob, "patch", f"ratings/{rid}/", {"score": 1}).status_code == 404
    assert api(bob, "delete", f"ratings/{rid}/").status_code == 404
    # POST on Alice's (user, product) creates Bob's own rating, never touches hers.
    assert api(bob, "post", "ratings/", {"product": shop.evil.pk, "score": 2}).status_code in (
        200, 201)
    shop.alice_rating.refresh_from_db()
    assert shop.alice_rating.score == 5 and shop.alice_rating.user_id == shop.alice.pk
    assert api(bob, "get", f"users/{shop.alice.pk}/recommendations/").status_code == 403

    # Everything Bob can read about "himself" holds nothing of Alice.
    for path in ("ratings/", "recommendations/", "me/export/", "me/preferences/"):
        response = api(bob, "get", path)
        assert response.status_code == 200, path
        body = response.content.decode()
        assert "alice-3f9c" not in body, path
        assert str(shop.alice_rating.pk) not in re.findall(r'"id":\s*(\d+)', body), path
    listing = api(bob, "get", "recommendations/").json()
    personal = [r["product"]["pk"] for r in listing["results"] if r.get("reason_kind") == "rated"]
    assert personal and not set(personal) & {p.pk for p in shop.alice_only}

    assert api(bob, "delete", "me/data/").status_code == 200  # erases Bob's data only
    assert Rating.objects.filter(user=shop.alice).count() == 1


# --- 1. no cross-user access: template tags ----------------------------------------------------


def render_for(user, source: str) -> str:
    request = RequestFactory().get("/")
    request.user = user
    request.session = import_module(settings.SESSION_ENGINE).SessionStore()
    return engines["django"].from_string("{% load shopreco %}" + source).render({}, request)


def test_template_tags_serve_only_the_viewers_own_list(shop):
    bob_html = render_for(shop.bob, "{% recommended_for_you limit=4 %}")
    alice_html = render_for(shop.alice, "{% recommended_for_you limit=4 %}")
    personal = re.compile(r'data-shopreco-product="(\d+)"[^>]*data-shopreco-reason="rated"')
    assert {int(pk) for pk in personal.findall(alice_html)} >= {p.pk for p in shop.alice_only}
    bob_personal = {int(pk) for pk in personal.findall(bob_html)}
    assert bob_personal and not bob_personal & {p.pk for p in shop.alice_only}
    reasons = re.findall(r'<p class="shopreco-reason">(.*?)</p>', bob_html, re.S)
    assert reasons and not any("Gadget" in r for r in reasons)  # nothing names her rating


def test_no_widget_tag_accepts_a_user_argument():
    """A template cannot ask for someone else's list: the tags take the shopper from the
    request only."""
    for name in ("similar_products", "also_bought", "recommended_for_you", "popular_products"):
        params = inspect.signature(getattr(tags, name)).parameters
        assert not {"user", "user_or_session", "session_key"} & set(params), name


# --- 1. no cross-user access: admin previews; 2. staff-only operations -------------------------


def test_admin_preview_is_for_staff_only_and_logs_nothing(shop, django_user_model):
    url = reverse("admin:auth_user_change", args=[shop.alice.pk])
    anon = client_for(None).get(url)
    assert anon.status_code == 302 and "/login/" in anon["Location"]
    bob = client_for(shop.bob).get(url)
    assert bob.status_code == 302 and "/login/" in bob["Location"]
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    assert client_for(clerk).get(url).status_code == 403  # staff, but no permission on users

    impressions = Impression.objects.count()
    page = client_for(shop.staff).get(url)
    assert page.status_code == 200
    html = page.content.decode()
    for p in shop.alice_only:
        assert f">{p.name}<" in html  # the preview shows Alice's list to staff
    assert Impression.objects.count() == impressions  # previews are not impressions


STAFF_API = [("post", "recompute/"), ("get", "runs/"), ("get", "runs/{run}/"),
             ("get", "users/{alice}/recommendations/")]


@pytest.mark.parametrize(("method", "path"), STAFF_API)
def test_staff_api_operations_refuse_everyone_else(shop, method, path):
    path = path.format(run=shop.run.pk, alice=shop.alice.pk)
    runs = RecomputeRun.objects.count()
    assert api(client_for(None), method, path).status_code in (401, 403)
    assert api(client_for(shop.bob), method, path).status_code == 403
    assert RecomputeRun.objects.count() == runs
    assert api(client_for(shop.staff), method, path).status_code in (200, 202)


def test_admin_recompute_refuses_non_staff_and_staff_without_permission(shop, django_user_model):
    url = reverse("admin:shopreco_recomputerun_recompute")
    runs = RecomputeRun.objects.count()
    assert client_for(shop.bob).post(url).status_code == 302  # to the admin login
    clerk = django_user_model.objects.create_user("clerk2", password="pw", is_staff=True)
    assert client_for(clerk).post(url).status_code == 403
    assert RecomputeRun.objects.count() == runs


# --- 3. CSRF on session writes -----------------------------------------------------------------


def test_session_authenticated_writes_need_a_csrf_token(shop):
    bob = client_for(shop.bob, csrf=True)
    before = (Rating.objects.count(), Interaction.objects.count())
    p = shop.products[5]
    assert api(bob, "post", "ratings/", {"product": p.pk, "score": 3}).status_code == 403
    assert api(bob, "post", "events/", {"product": p.pk, "type": "view"}).status_code == 403
    assert api(bob, "delete", "me/data/").status_code == 403
    assert api(bob, "put", "me/preferences/", {"personalize": False}).status_code == 403
    assert bob.post(reverse("catalog:rate", args=[p.pk]), {"score": 3}).status_code == 403
    assert bob.post(reverse("catalog:cart-add", args=[p.pk]), {"quantity": 1}).status_code == 403
    assert bob.post(reverse("catalog:account"), {}).status_code == 403
    assert (Rating.objects.count(), Interaction.objects.count()) == before
    assert not Preference.objects.filter(user=shop.bob, personalize=False).exists()
    # Anonymous visitors too, once they have a session a forged request could write into.
    anon = client_for(None, csrf=True)
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session.create()
    anon.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    assert api(anon, "post", "events/", {"product": p.pk, "type": "view"}).status_code == 403
    assert Interaction.objects.count() == before[1]


def test_only_the_click_beacon_is_csrf_exempt():
    """DRF views are marked exempt by DRF and enforce CSRF in SessionAuthentication (tested
    above); apart from them only the click beacon may be exempt (sendBeacon cannot send the
    token; it writes nothing but the caller's own session)."""
    exempt = {
        f"{cb.__module__}.{cb.__name__}"
        for _route, cb in walk(get_resolver().url_patterns)
        if getattr(cb, "csrf_exempt", False) and not hasattr(cb, "cls")
    }
    assert exempt == {"shopreco.views.click"}


def test_click_beacon_writes_no_rows(shop):
    anon = client_for(None, csrf=True)
    anon.session.save()  # a browser with a session: a cookie-less one leaves no impressions
    html = anon.get(reverse("catalog:home")).content.decode()
    match = re.search(r'data-shopreco-product="(\d+)" data-shopreco-recommendation="(\w+)"', html)
    assert match
    counts = (Rating.objects.count(), Interaction.objects.count())
    response = anon.post(reverse("shopreco:click"), {"product": match[1], "rec": match[2]})
    assert response.status_code == 204
    assert (Rating.objects.count(), Interaction.objects.count()) == counts


# --- 4. throttling on ------------------------------------------------------------------------


def test_every_api_view_is_throttled():
    unthrottled = []
    for route, cb in walk(get_resolver().url_patterns):
        cls = getattr(cb, "cls", None)
        if cls is None or not route.startswith("api/reco/"):
            continue
        if not getattr(cls, "throttle_classes", None):
            unthrottled.append(route)
    assert unthrottled == []


@override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": {
    "shopreco_anon": "3/min", "shopreco_user": "3/min", "shopreco_events": "2/min"}})
def test_throttles_answer_429(shop):
    anon, bob = client_for(None), client_for(shop.bob)
    assert [api(anon, "get", "popular/").status_code for _ in range(4)][-1] == 429
    assert [api(bob, "get", "ratings/").status_code for _ in range(4)][-1] == 429
    statuses = [api(client_for(shop.alice), "post", "events/",
                    {"product": shop.products[4].pk, "type": "view"}).status_code
                for _ in range(3)]
    assert statuses[-1] == 429


# --- 5. names and reasons escaped everywhere ------------------------------------------------------


def assert_escaped(html: str, where: str) -> None:
    assert RAW_SCRIPT not in html, f"unescaped product/category name in {where}"
    assert "&lt;script&gt;" in html, f"{where} did not show the hostile name at all"


def test_hostile_names_are_escaped_in_widgets_pages_admin_and_api(shop):
    alice = client_for(shop.alice)
    staff = client_for(shop.staff)
    # Widgets and demo pages: Alice's "Because you rated Gadget <script>" reasons, the evil
    # product in similar lists, the evil category's name.
    assert_escaped(alice.get(reverse("catalog:home")).content.decode(), "home page widgets")
    assert_escaped(alice.get(reverse("catalog:product", args=[shop.products[0].pk])
                             ).content.decode(), "product page widgets")
    assert_escaped(alice.get(reverse("catalog:product", args=[shop.evil.pk])).content.decode(),
                   "product page")
    assert_escaped(render_for(shop.alice, "{% recommended_for_you limit=4 %}"), "for-you tag")
    # Admin previews and change lists.
    assert_escaped(staff.get(reverse("admin:auth_user_change", args=[shop.alice.pk])
                             ).content.decode(), "admin user preview")
    assert_escaped(staff.get(reverse("admin:catalog_product_change", args=[shop.products[0].pk])
                             ).content.decode(), "admin similar-products panel")
    assert_escaped(staff.get(reverse("admin:shopreco_rating_changelist")).content.decode(),
                   "admin ratings list")
    # The API's browsable HTML pages (JSON itself cannot execute).
    browsable = alice.get(f"{API}recommendations/?format=api", HTTP_ACCEPT="text/html")
    assert_escaped(browsable.content.decode(), "browsable API")
