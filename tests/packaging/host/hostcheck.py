"""Run inside the fresh project (copied next to its ``manage.py``) by check_install.py.

``python hostcheck.py seed FILE``: a small catalogue (three categories) and a ratings file
for ``manage.py shopreco_import FILE --format csv``: every shopper likes most of one category.

``python hostcheck.py serve``: after ``shopreco_recompute``, what a shop's visitors and
clients get: the product page with the README's widgets (as a guest and signed in), a
purchase through ``shopreco.track``, the REST API's lists, ``schema/`` and ``docs/``, and the
README's Celery beat entries naming registered tasks. Exits non-zero naming what failed.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myshop.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

CATEGORIES = ["books", "garden", "kitchen"]
PER_CATEGORY = 16  # enough that every widget of the page has products left to show
SHOPPERS = 60

failures: list[str] = []


def expect(ok: bool, what: str) -> bool:
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)
    return ok


def seed(path: str) -> None:
    from shop.models import Product

    for cat in CATEGORIES:
        for i in range(PER_CATEGORY):
            Product.objects.create(name=f"{cat.title()} {i + 1}", category=cat, price=10 + i)
    by_cat = {c: list(Product.objects.filter(category=c).values_list("pk", flat=True))
              for c in CATEGORIES}
    rng = random.Random(18)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["user", "product", "score"])
        for user in range(1, SHOPPERS + 1):
            liked = CATEGORIES[user % len(CATEGORIES)]
            for pk in rng.sample(by_cat[liked], 6):
                out.writerow([user, pk, rng.choice([4, 5])])
            other = rng.choice([c for c in CATEGORIES if c != liked])
            out.writerow([user, rng.choice(by_cat[other]), rng.choice([1, 2])])
    print(f"seeded {Product.objects.count()} products; ratings of {SHOPPERS} shoppers in {path}")


def widget_items(html: str, widget: str) -> list[str]:
    """The product keys listed by one widget of the page."""
    match = re.search(rf'<section[^>]*data-shopreco-widget="{widget}".*?</section>', html, re.S)
    return re.findall(r'class="shopreco-item" data-shopreco-product="([^"]+)"',
                      match.group(0)) if match else []


def serve() -> None:
    from shop.models import Product

    from shopreco.models import Interaction, ItemSimilarity, RecomputeRun

    setup_test_environment()  # the test client's host "testserver" is allowed
    run = RecomputeRun.objects.order_by("-pk").first()
    expect(run is not None and run.status == RecomputeRun.Status.SUCCEEDED,
           f"shopreco_recompute left a succeeded run ({run and run.status})")
    expect(ItemSimilarity.objects.exists(), "the run stored product neighbours")

    product = Product.objects.filter(category="books").order_by("pk").first()
    guest = Client()
    page = guest.get(product.get_absolute_url())
    html = page.content.decode()
    if expect(page.status_code == 200, f"GET {product.get_absolute_url()} answers 200 "
                                       f"(got {page.status_code})"):
        similar = widget_items(html, "similar")
        expect(bool(similar), "the page shows a 'similar' widget with products")
        expect(str(product.pk) not in similar, "the 'similar' widget leaves out the product")
        expect(bool(widget_items(html, "popular")), "the 'popular' widget has products")
        expect("shopreco/widgets.css" in html, "{% shopreco_stylesheet %} links the styles")
        expect("shopreco/clicks.js" in html, "{% shopreco_click_script %} adds the script")

    shopper = get_user_model().objects.get(username="ext-3")  # likes books
    member = Client()
    member.force_login(shopper)
    html = member.get(product.get_absolute_url()).content.decode()
    expect(bool(widget_items(html, "for-you")),
           "a signed-in shopper's 'recommended for you' widget has products")

    bought = member.post(f"/products/{product.pk}/buy/")
    expect(bought.status_code == 302 and Interaction.objects.filter(
               user=shopper, product_id=product.pk, kind="purchase").exists(),
           "shopreco.track(request, product, 'purchase') records an event")

    api = guest.get(f"/api/reco/products/{product.pk}/similar/?limit=4")
    if expect(api.status_code == 200, f"GET api/reco/products/{product.pk}/similar/ answers "
                                      f"200 (got {api.status_code})"):
        body = api.json()
        expect(bool(body.get("results")) and "recommendation_id" in body,
               "the similar/ list has results and a recommendation_id")
    recs = member.get("/api/reco/recommendations/?limit=3")
    if expect(recs.status_code == 200, f"GET api/reco/recommendations/ (signed in) answers 200 "
                                       f"(got {recs.status_code})"):
        top = [r["product"]["category"]["name"] for r in recs.json().get("results", [])]
        expect(top == ["books"] * 3, f"its top 3 are books, the shopper's taste ({top})")

    quiet = Client(raise_request_exception=False)  # a 500 is reported, not raised
    schema = quiet.get("/api/reco/schema/?format=json")
    ok = schema.status_code == 200
    exc = getattr(schema, "exc_info", None)
    detail = "" if ok else f": {exc[1]!r}" if exc else ": " + schema.content.decode()[:300]
    if expect(ok, f"GET api/reco/schema/ answers 200 (got {schema.status_code}){detail}"):
        doc = json.loads(schema.content)
        expect(str(doc.get("openapi", "")).startswith("3"), "schema/ is OpenAPI 3")
        expect(any(p.endswith("/similar/") for p in doc.get("paths", {})),
               "schema/ documents the similar/ endpoint")
    docs = quiet.get("/api/reco/docs/")
    expect(docs.status_code == 200, f"GET api/reco/docs/ answers 200 (got {docs.status_code})")

    from celery import current_app

    import shopreco.tasks  # noqa: F401  (registers the shared tasks)

    beat = getattr(settings, "CELERY_BEAT_SCHEDULE", {})
    missing = [e["task"] for e in beat.values() if e["task"] not in current_app.tasks]
    expect(bool(beat) and not missing,
           f"the README's {len(beat)} beat entries name registered tasks (missing: {missing})")

    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["seed"]:
        seed(sys.argv[2])
    elif sys.argv[1:2] == ["serve"]:
        serve()
    else:
        sys.exit(__doc__)
