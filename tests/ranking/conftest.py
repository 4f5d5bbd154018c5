"""A shop with planted tastes and a real run (its files hold the weights ranking reads)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest


@pytest.fixture(autouse=True)
def _fresh_weights(monkeypatch):
    """Run ids restart with every test database: weights held for another test's run #1
    must not be taken for this one's. Requests wait for the weights (the background read
    has its own test)."""
    from shopreco.serving import ranking

    monkeypatch.setattr(ranking, "WAIT_FOR_WEIGHTS", True)
    ranking.forget_weights()
    yield
    ranking.forget_weights()


@pytest.fixture
def taste_shop(db, product_factory, user_factory, category_factory, settings, tmp_path):
    """Twenty shoppers over twenty products: even shoppers buy and view among the first ten
    ("books"), odd ones among the last ten ("games"); then a full recompute."""
    from shopreco import pipeline
    from shopreco.models import Interaction

    settings.MEDIA_ROOT = str(tmp_path)
    rng = random.Random(3)
    books, games = category_factory("Books"), category_factory("Games")
    products = [product_factory(f"Book {i:02d}", category=books) for i in range(10)]
    products += [product_factory(f"Game {i:02d}", category=games) for i in range(10)]
    users = [user_factory() for _ in range(20)]
    rows = []
    for u, user in enumerate(users):
        liked = products[:10] if u % 2 == 0 else products[10:]
        for p in rng.sample(liked, 5):
            rows.append(Interaction(user=user, product=p, kind=rng.choice(["view", "purchase"])))
    Interaction.objects.bulk_create(rows)
    run = pipeline.run_full_recompute()
    return SimpleNamespace(products=products, books=products[:10], games=products[10:],
                           users=users, run=run, books_cat=books, games_cat=games)
