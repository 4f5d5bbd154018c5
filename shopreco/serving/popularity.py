"""Popularity rankings: the cold-start fill of every list, shared by all visitors.

A ranking is built from the database at most once per CACHE_TIMEOUT per category, by one
process at a time (a cache lock): the others serve the previous copy meanwhile, or on a cold
cache wait for the builder instead of repeating its work. The beat task
``shopreco.tasks.refresh_rankings`` rebuilds them before they fall due."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db.models import Case, Count, DateField, QuerySet, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from shopreco import cache
from shopreco.adapter import get_adapter
from shopreco.conf import reco_settings
from shopreco.models import Interaction, Rating, Reason, distinct_shoppers
from shopreco.serving.products import (
    category_filter,
    load_products,
    owned_exclusions,
    with_related,
)
from shopreco.serving.request import Viewer
from shopreco.serving.types import Candidate

logger = logging.getLogger("shopreco.serving")

# Weight of a rating in popularity (events use SHOPRECO["EVENT_WEIGHTS"]).
RATING_POPULARITY_WEIGHT = 2.0
# Entries kept in a cached popularity ranking.
POPULAR_RANKING_SIZE = 200
# Seconds one request may hold the rebuild of a popularity ranking (others wait or serve stale).
RANKING_LOCK_TIMEOUT = 10
# Categories whose rankings refresh_rankings keeps fresh (the first ones requests built).
RANKINGS_KNOWN_MAX = 200


def popularity_ranking(category: Any = None) -> list[tuple[Any, float, str]]:
    """Available products ranked by time-decayed activity: [(pk, score, code)], code being
    "trending" (recent activity dominates), "new" (recently added) or "popular".

    Score = sum(weight * 0.5 ** (age_days / TRENDING_HALF_LIFE_DAYS)) over the last four half
    lives + 0.1 * log1p(all-time weight), plus a decaying bonus for new products so they get
    exposure before anyone has interacted with them. Shared by every visitor and cached for
    CACHE_TIMEOUT seconds; rebuilt by one request at a time while the others serve the
    previous copy."""
    return rankings([category])[cache.ranking_key(category)]


def rankings(categories: list[Any], also: Iterable[str] = ()) -> dict[str, Any]:
    """The popularity rankings of ``categories`` (None: all products) and the ``also`` cache
    keys, read in ONE cache round trip; missing rankings are built now. Keyed by cache key."""
    keys = list(dict.fromkeys([cache.ranking_key(c) for c in categories] + list(also)))
    got = cache.store().get_many(keys)
    now = time.time()
    for category in categories:
        key = cache.ranking_key(category)
        entry = got.get(key)
        if entry is None:
            got[key] = _rebuild_ranking(category, key, stale=None)
        elif entry["fresh_until"] < now:
            got[key] = _rebuild_ranking(category, key, stale=entry["ranking"])
        else:
            got[key] = entry["ranking"]
    return got


def refresh_rankings(local: bool = False) -> int:
    """Beat (``shopreco.tasks.refresh_rankings``, every CACHE_TIMEOUT / 2): rebuild the
    catalogue-wide ranking and those of the categories whose rankings requests have built
    (up to RANKINGS_KNOWN_MAX, first come first kept) before they fall due, so that no
    request builds one, or waits for the one building it after a cache restart. Rankings
    with more than half their CACHE_TIMEOUT still to go, and one a request is rebuilding
    right now, are left alone; a category that cannot be ranked any more is logged and
    forgotten. Nothing to do in a cache private to this process (the web processes would
    never read it) unless ``local``, when this process serves too. Returns the number
    rebuilt."""
    if cache.is_private() and not local:
        return 0
    store = cache.store()
    known = list(store.get(cache.RANKINGS_KNOWN_KEY) or [])
    categories = [None, *known]
    entries = store.get_many([cache.ranking_key(c) for c in categories])
    soon = time.time() + int(reco_settings.CACHE_TIMEOUT) / 2
    n, forget = 0, []
    for category in categories:
        key = cache.ranking_key(category)
        entry = entries.get(key)
        if entry is not None and entry["fresh_until"] > soon:
            continue
        try:
            n += _build_under_lock(category, key) is not None
        except Exception:  # noqa: BLE001 - one bad category must not stop the others
            logger.exception("popularity ranking of category %r failed; forgotten", category)
            forget.append(category)
    if forget:
        store.set(cache.RANKINGS_KNOWN_KEY, [c for c in known if c not in forget], timeout=None)
    return n


def _build_under_lock(category: Any, key: str) -> list | None:
    """Build and cache the ranking of ``category`` (cache key ``key``) unless another process
    is building it right now (then None): the lock every rebuild, by a request or by the
    beat task, takes first."""
    store = cache.store()
    lock = key + ":lock"
    if not store.add(lock, 1, timeout=RANKING_LOCK_TIMEOUT):
        return None
    try:
        ranking = build_ranking(category)
        timeout = int(reco_settings.CACHE_TIMEOUT)
        store.set(key, {"ranking": ranking, "fresh_until": time.time() + timeout},
                  timeout=2 * timeout)
        return ranking
    finally:
        store.delete(lock)


def _remember_category(category: Any) -> None:
    """Note a category whose ranking a request built, for :func:`refresh_rankings` (the
    first RANKINGS_KNOWN_MAX; called on rebuilds only, not per request). Two requests
    noting different categories at the same moment may lose one; it is noted again the
    next time a request has to build it."""
    store = cache.store()
    pk = cache.category_pk(category)
    known = store.get(cache.RANKINGS_KNOWN_KEY) or []
    if pk not in known and len(known) < RANKINGS_KNOWN_MAX:
        store.set(cache.RANKINGS_KNOWN_KEY, [*known, pk], timeout=None)


def _rebuild_ranking(category: Any, key: str,
                     stale: list | None) -> list[tuple[Any, float, str]]:
    """Rebuild a ranking once, not once per concurrent request: the catalogue-wide one reads
    every rating. The request that takes the lock builds it; meanwhile the others serve the
    ``stale`` copy (kept one more CACHE_TIMEOUT after it is due), or, on a cold cache, wait
    for the builder instead of repeating its work. With the cache down there is no lock to
    take nor copy to share: the ranking is built here."""
    if cache.is_down():
        return build_ranking(category)
    ranking = _build_under_lock(category, key)
    if ranking is not None:
        if category is not None:
            _remember_category(category)
        return ranking
    if stale is not None:
        return stale
    store, lock = cache.store(), key + ":lock"
    deadline = time.monotonic() + RANKING_LOCK_TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.02)
        entry = store.get(key)
        if entry is not None:
            return entry["ranking"]
        if store.get(lock) is None:
            break  # the builder gave up (or the ranking cannot be cached): build it here
    return build_ranking(category)


def build_ranking(category: Any) -> list[tuple[Any, float, str]]:
    """The ranking of ``category`` read from the database now (no cache)."""
    adapter = get_adapter()
    now = timezone.now()
    half_life = max(float(reco_settings.TRENDING_HALF_LIFE_DAYS), 0.01)
    cutoff = now - timedelta(days=4 * half_life)
    today = timezone.localdate(now)
    available = adapter.available()
    if category is not None:
        available = available.filter(**category_filter("", category))
    avail_pks = available.values("pk")
    weights = reco_settings.EVENT_WEIGHTS
    recent: dict[Any, float] = {}
    base: dict[Any, float] = {}

    def add(pk: Any, weight: float, day: Any, n: int) -> None:
        base[pk] = base.get(pk, 0.0) + weight * n
        if day is not None:
            age = max((today - day).days, 0) + 0.5
            recent[pk] = recent.get(pk, 0.0) + weight * n * 0.5 ** (age / half_life)

    def bucketed(qs: QuerySet, field_name: str) -> QuerySet:
        return qs.annotate(
            _day=Case(
                When(**{f"{field_name}__gte": cutoff}, then=TruncDate(field_name)),
                default=Value(None),
                output_field=DateField(),
            )
        )

    events = (
        bucketed(Interaction.objects.filter(product__in=avail_pks), "created_at")
        .values("product_id", "kind", "_day")
        .annotate(_n=distinct_shoppers())  # each shopper once per product, kind and day
        .values_list("product_id", "kind", "_day", "_n")
        .order_by()
    )
    for pk, kind, day, n in events:
        add(pk, float(weights.get(kind, 1.0)), day, n)
    ratings = (
        bucketed(Rating.objects.filter(product__in=avail_pks), "created_at")
        .values("product_id", "_day")
        .annotate(_n=Count("id"))
        .values_list("product_id", "_day", "_n")
        .order_by()
    )
    for pk, day, n in ratings:
        add(pk, RATING_POPULARITY_WEIGHT, day, n)
    scores = {pk: recent.get(pk, 0.0) + 0.1 * math.log1p(b) for pk, b in base.items()}
    codes = {
        pk: Reason.TRENDING.value
        if recent.get(pk, 0.0) >= 1.0 and recent[pk] > 0.1 * math.log1p(base[pk])
        else Reason.POPULAR.value
        for pk in base
    }
    created = adapter.created_field()
    if created:
        for pk, when in available.filter(**{f"{created}__gte": cutoff}).values_list(
            "pk", created
        ).order_by():
            age = max((now - when).total_seconds() / 86400.0, 0.0)
            bonus = 0.5 ** (age / half_life)
            if recent.get(pk, 0.0) < bonus:
                codes[pk] = Reason.NEW.value
            scores[pk] = scores.get(pk, 0.0) + bonus
    ranking = sorted(scores.items(), key=lambda kv: (-kv[1], str(kv[0])))[:POPULAR_RANKING_SIZE]
    return [(pk, round(score, 6), codes[pk]) for pk, score in ranking]


def popular_candidates(viewer: Viewer, n: int, category: Any, skip: set,
                       objs: dict) -> list[Candidate]:
    """The head of the cached popularity ranking, loaded and filtered in one query; topped up
    from the rest of the catalogue when too few products have any activity."""
    ranking = [row for row in popularity_ranking(category) if row[0] not in skip][: n * 3 + 10]
    found = load_products([pk for pk, _, _ in ranking], viewer) if ranking else {}
    objs.update(found)
    out = [Candidate(pk, score, code, None, "popular") for pk, score, code in ranking
           if pk in found][:n]
    if len(out) < n and len(ranking) < n * 3 + 10:
        taken = skip | {pk for pk, _, _ in ranking}
        qs = get_adapter().available().filter(**category_filter("", category))
        qs = owned_exclusions(qs.exclude(pk__in=list(taken)), "pk", viewer)
        for p in with_related(qs).order_by("-pk")[: n - len(out)]:
            objs[p.pk] = p
            out.append(Candidate(p.pk, 0.0, Reason.CATALOGUE.value, None, "popular"))
    return out
