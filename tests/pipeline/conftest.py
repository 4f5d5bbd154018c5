"""A small shop with two taste groups, so similarities and recommendations are non-trivial."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest


@pytest.fixture
def shop(product_factory, user_factory, category_factory) -> Callable:
    """Build ``n_users`` shoppers over ``n_products`` products: even users like the first
    half of the catalogue, odd users the second; ratings, events or both."""
    from shopreco.models import Interaction, Rating

    def make(n_users: int = 24, n_products: int = 30, ratings: bool = True,
             events: bool = True, sessions: int = 0, seed: int = 7):
        rng = random.Random(seed)
        cats = [category_factory(), category_factory()]
        products = [product_factory(category=cats[i * 2 // n_products]) for i in
                    range(n_products)]
        users = [user_factory() for _ in range(n_users)]
        half = n_products // 2
        rating_rows, event_rows = [], []
        for u, user in enumerate(users):
            liked = products[:half] if u % 2 == 0 else products[half:]
            other = products[half:] if u % 2 == 0 else products[:half]
            for p in rng.sample(liked, min(6, half)):
                if ratings:
                    rating_rows.append(Rating(user=user, product=p, score=rng.choice([4, 5])))
                if events:
                    kind = rng.choice(["view", "view", "cart", "purchase"])
                    event_rows.append(Interaction(user=user, product=p, kind=kind))
            for p in rng.sample(other, min(2, half)):
                if ratings:
                    rating_rows.append(Rating(user=user, product=p, score=rng.choice([1, 2])))
                if events:
                    event_rows.append(Interaction(user=user, product=p, kind="view"))
        for s in range(sessions):
            liked = products[:half] if s % 2 == 0 else products[half:]
            for p in rng.sample(liked, min(4, half)):
                event_rows.append(Interaction(session_key=f"sess{s}", product=p, kind="view"))
        Rating.objects.bulk_create(rating_rows)
        Interaction.objects.bulk_create(event_rows)
        return users, products

    return make
