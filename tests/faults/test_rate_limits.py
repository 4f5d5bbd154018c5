"""Probes of issue #17: rate limits hold against a client that forges X-Forwarded-For, and
the cache state anonymous clients leave behind expires."""

from __future__ import annotations

import os
import uuid

import pytest
from rest_framework.test import APIClient

from shopreco import cache
from tests.faults.helpers import API

pytestmark = pytest.mark.django_db

EVENTS_3_PER_MIN = {"shopreco_anon": "1000/min", "shopreco_user": "1000/min",
                    "shopreco_events": "3/min"}


def _purchases(product_pk, forwarded_for: list[str], **meta) -> list[int]:
    """Status codes of cookie-less anonymous cart events, one per X-Forwarded-For value."""
    return [APIClient().post(API + "events/", {"product": product_pk, "type": "cart"},
                             format="json", HTTP_X_FORWARDED_FOR=xff, **meta).status_code
            for xff in forwarded_for]


def test_a_changing_forwarded_header_does_not_reset_the_budget(settings, product_factory):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": EVENTS_3_PER_MIN}
    product = product_factory()
    codes = _purchases(product.pk, [f"203.0.113.{i}" for i in range(8)])
    assert codes == [201] * 3 + [429] * 5  # one client (REMOTE_ADDR), one budget


def test_behind_a_proxy_the_owner_names_the_client_is_the_address_it_saw(settings,
                                                                        product_factory):
    """With NUM_PROXIES = 1 the proxy's REMOTE_ADDR is shared; the client is the last
    X-Forwarded-For entry (what the proxy saw), not anything the client put before it."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1,
                               "DEFAULT_THROTTLE_RATES": EVENTS_3_PER_MIN}
    product = product_factory()
    first = _purchases(product.pk, [f"10.9.9.{i}, 198.51.100.1" for i in range(4)],
                       REMOTE_ADDR="192.0.2.10")
    second = _purchases(product.pk, ["198.51.100.2"] * 4, REMOTE_ADDR="192.0.2.10")
    assert first == [201] * 3 + [429]
    assert second == [201] * 3 + [429]


@pytest.fixture
def redis_cache(settings):
    """The serving cache on a real Redis (the demo's backend), under a prefix of our own."""
    redis = pytest.importorskip("redis")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    url = broker if broker.startswith("redis://") else "redis://127.0.0.1:6379/8"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {url}")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings.CACHES = {"default": {"BACKEND": "demo_shop.cache.ReusedClientRedisCache",
                                   "LOCATION": url, "KEY_PREFIX": prefix}}
    yield client, prefix
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def test_anonymous_version_tokens_expire(redis_cache, product_factory):
    client, prefix = redis_cache
    product = product_factory()
    for _ in range(5):  # cookie-less visitors: a session each
        APIClient().post(API + "events/", {"product": product.pk, "type": "cart"},
                         format="json")
        APIClient().get(API + "recommendations/")
    keys = list(client.scan_iter(f"{prefix}:*shopreco:v:*"))
    assert len(keys) >= 5
    ttls = {client.ttl(k) for k in keys}
    assert all(0 < ttl <= cache.VERSION_TIMEOUT for ttl in ttls), ttls
