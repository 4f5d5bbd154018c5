"""Simulated shoppers for the demo's insights page (and its screenshot): each one is served the
shop's widgets through ``shopreco.services`` (which logs the impressions) and clicks, carts and
buys through ``shopreco.track``, exactly as the storefront would record them.

    DATABASE_URL=... DJANGO_SETTINGS_MODULE=demo_shop.settings \
        python -m tests.admin.simulate_traffic --visits 600

Click probabilities fall with the position in the list and differ per widget; some purchases
are organic (no recommendation), so revenue shares stay below 100%. Seeded, so reproducible.
"""

from __future__ import annotations

import argparse
import random


def simulate(visits: int = 600, seed: int = 7) -> dict[str, int]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.db import transaction
    from django.test import RequestFactory

    from shopreco import services
    from shopreco.adapter import get_adapter

    rng = random.Random(seed)
    factory = RequestFactory()
    users = list(get_user_model().objects.filter(is_staff=False).order_by("pk")[:300])
    products = list(get_adapter().available().order_by("pk")[:2000])
    click_rate = {"for-you": 0.08, "similar": 0.06, "also-bought": 0.05, "popular": 0.03}
    counts = {"lists": 0, "clicks": 0, "carts": 0, "purchases": 0, "organic": 0}

    def request_for(user):
        request = factory.get("/")
        SessionMiddleware(lambda r: None).process_request(request)
        request.user = user
        return request

    def visit(user) -> None:
        request = request_for(user)
        react(request, services.recommended_for(user, 6, request=request))
        if rng.random() < 0.5:
            react(request, services.popular(6, request=request))
        for _ in range(rng.randint(1, 3)):
            product = rng.choice(products)
            services.track(request, product, "view")
            react(request, services.similar_products(product, 4, request=request))
            if rng.random() < 0.6:
                react(request, services.also_bought(product, 4, request=request))
            if rng.random() < 0.05:
                services.track(request, product, "purchase")
                counts["organic"] += 1

    def react(request, reco_list) -> None:
        counts["lists"] += 1
        base = click_rate[reco_list.widget]
        for rank, item in enumerate(reco_list.items, start=1):
            if rng.random() >= base / rank**0.7:
                continue
            services.track(request, item.product, "view", reco_list.recommendation_id)
            counts["clicks"] += 1
            if rng.random() < 0.35:
                services.track(request, item.product, "cart")  # credited via the session
                counts["carts"] += 1
                if rng.random() < 0.55:
                    services.track(request, item.product, "purchase")
                    counts["purchases"] += 1

    for _ in range(visits):
        with transaction.atomic():  # one visit, one commit: much faster on SQLite
            visit(rng.choice(users) if users and rng.random() < 0.8 else AnonymousUser())
    return counts


def main() -> None:
    import django

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    django.setup()
    print(simulate(args.visits, args.seed))


if __name__ == "__main__":
    main()
