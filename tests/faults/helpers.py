"""What the fault tests share: a port nothing listens on, the widget markup contract, and a
small shop with a computed run."""

from __future__ import annotations

import random
import re
import socket
from types import SimpleNamespace
from typing import Any

API = "/api/reco/"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def widget_items(html: str) -> dict[str, list[str]]:
    """widget name -> product pks listed in it, from the markup contract."""
    out = {}
    for match in re.finditer(r'<section[^>]*data-shopreco-widget="([^"]+)"(.*?)</section>',
                             html, re.S):
        out[match.group(1)] = re.findall(r'data-shopreco-product="([^"]+)"', match.group(2))
    return out


def make_shop(category_factory: Any, product_factory: Any, user_factory: Any) -> SimpleNamespace:
    """Two taste groups over one category, ratings and purchases, and a succeeded run."""
    from shopreco import pipeline
    from shopreco.models import Interaction, Rating

    rng = random.Random(7)
    cat = category_factory("Outage goods")
    products = [product_factory(category=cat) for _ in range(16)]
    users = [user_factory() for _ in range(8)]
    for u, user in enumerate(users):
        liked = products[:8] if u % 2 == 0 else products[8:]
        for p in rng.sample(liked, 5):
            Rating.objects.create(user=user, product=p, score=rng.choice([4, 5]))
        for p in rng.sample(liked, 2):
            Interaction.objects.create(user=user, product=p, kind="purchase")
    run = pipeline.run_full_recompute()
    assert run.status == "succeeded", run.error
    return SimpleNamespace(category=cat, products=products, users=users, run=run)
