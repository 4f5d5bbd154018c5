"""The candidate steps of each list kind, before the popular fill: a product's stored
neighbours, the shopper's precomputed personal list, and neighbours of recent activity."""

from __future__ import annotations

from typing import Any

from shopreco import cache
from shopreco.conf import reco_settings
from shopreco.models import ItemSimilarity, Rating, Reason, Recommendation
from shopreco.serving.popularity import rankings
from shopreco.serving.products import (
    available_pks,
    category_filter,
    category_key_of,
    load_in_order,
    owned_exclusions,
    select_related_paths,
)
from shopreco.serving.request import Viewer
from shopreco.serving.types import Candidate


def neighbours(run_id: int, kind: str, product_pk: Any,
               cached: Any = None) -> list[tuple[Any, float]]:
    """The stored neighbours of a product in a run, best first: [(pk, score)].

    A run's results never change once it is live, so the list is cached by run id and shared
    by every shopper (no invalidation: a new run has new keys); filters are applied when the
    products are loaded. ``cached``: the value already fetched with other keys, if any."""
    if cached is not None:
        return cached
    rows = [
        (pk, float(score)) for pk, score in ItemSimilarity.objects.filter(
            run_id=run_id, kind=kind, product_id=product_pk,
        ).order_by("-score", "similar_product_id").values_list("similar_product_id", "score")
    ]
    cache.store().set(cache.neighbour_key(run_id, kind, product_pk), rows,
                          timeout=cache.NEIGHBOURS_TIMEOUT)
    return rows


def product_candidates(product: Any, kind: str, run_id: int | None, viewer: Viewer, n: int,
                       category: Any, skip: set, objs: dict,
                       need: int | None = None, fill: bool = True) -> list[Candidate]:
    """Neighbours of ``product`` plus, with ``fill``, the popular fill (same category first),
    as the first ``n`` candidates that pass every filter (at least ``need`` of them, the rest
    being spares for page de-duplication): the neighbour list and both popularity rankings
    come from the cache in one round trip, then one query loads the first candidates (the
    stored neighbours, then at most ``n`` popular ones) and keeps those that pass every
    filter. Without ``fill`` (also-bought) only the neighbours are read, and a product without
    any costs no product query at all."""
    need = n if need is None else need
    code = Reason.ALSO_BOUGHT if kind == ItemSimilarity.Kind.ALSO_BOUGHT else Reason.SIMILAR
    code = code.value
    same = category_key_of(product) if category is None and fill else None
    cats = (([same] if same is not None else []) + [category]) if fill else []
    nb_key = cache.neighbour_key(run_id, kind, product.pk) if run_id is not None else None
    got = rankings(cats, also=[nb_key] if nb_key else []) if cats or nb_key else {}
    found = neighbours(run_id, kind, product.pk, got.get(nb_key)) if nb_key else []
    scores = {pk: score for pk, score in found if pk not in skip}
    padding: dict[Any, tuple[float, str]] = {}
    for cat in cats:  # n fill candidates at most: usually the neighbours are enough
        for pk, score, pop_code in got[cache.ranking_key(cat)][: n * 2]:
            if len(padding) >= n:
                break
            if pk not in skip and pk not in scores:
                padding.setdefault(pk, (score, pop_code))
    chosen = load_in_order(list(scores) + list(padding), need, viewer, category, objs,
                           spare=n - need)
    objs[product.pk] = product
    return [
        Candidate(pk, scores[pk], code, product.pk, code) if pk in scores
        else Candidate(pk, padding[pk][0], padding[pk][1], None, "popular")
        for pk in chosen
    ]


def personal_candidates(viewer: Viewer, run_id: int | None, n: int, category: Any,
                        objs: dict) -> list[Candidate]:
    """The head of the shopper's precomputed list of the served run."""
    if run_id is None or viewer.user is None:
        return []
    qs = Recommendation.objects.filter(
        run_id=run_id, user=viewer.user, product__in=available_pks(),
        **category_filter("product__", category),
    )
    qs = owned_exclusions(qs, "product", viewer)
    qs = qs.select_related(*select_related_paths("product"), "reason_product").order_by("rank")
    activity = {r.value for r in Reason.activity()}
    out = []
    for row in qs[:n]:
        objs[row.product_id] = row.product
        if row.reason_product_id is not None:
            objs[row.reason_product_id] = row.reason_product
        code = row.reason if row.reason in activity else Reason.SIMILAR.value
        out.append(Candidate(row.product_id, float(row.score), code, row.reason_product_id,
                             "personal"))
    return out


def recent_candidates(viewer: Viewer, run_id: int | None, n: int,
                      category: Any) -> list[Candidate]:
    """Item-based from the viewer's recent views, cart, purchases and good ratings: serves
    anonymous sessions and users whose personal list is not computed yet."""
    if run_id is None or not viewer.identified:
        return []
    limit = int(reco_settings.RECENT_ITEMS_FOR_COLD_START)
    weights = reco_settings.EVENT_WEIGHTS
    sources: dict[Any, tuple[str, float]] = {}
    for pk, kind in viewer.events().order_by("-created_at").values_list("product_id", "kind")[
        : limit * 5
    ]:
        if len(sources) >= limit:
            break
        if pk not in sources:
            sources[pk] = (Reason.for_event(kind).value, float(weights.get(kind, 1.0)))
    if viewer.user is not None:
        mid = (float(reco_settings.RATING_MIN) + float(reco_settings.RATING_MAX)) / 2
        for pk, score in Rating.objects.filter(user=viewer.user, score__gte=mid).order_by(
            "-updated_at"
        ).values_list("product_id", "score")[:limit]:
            if pk not in sources or sources[pk][0] == Reason.VIEWED:
                sources[pk] = (Reason.RATED.value, 1.0 + float(score) - mid)
    if not sources:
        return []
    qs = ItemSimilarity.objects.filter(
        run_id=run_id, kind=ItemSimilarity.Kind.SIMILAR, product_id__in=list(sources),
        similar_product__in=available_pks(), **category_filter("similar_product__", category),
    ).exclude(similar_product_id__in=list(sources))
    qs = owned_exclusions(qs, "similar_product", viewer)
    totals: dict[Any, float] = {}
    best: dict[Any, tuple[float, Any]] = {}
    for cand, src, score in qs.values_list("similar_product_id", "product_id", "score"):
        contribution = float(score) * sources[src][1]
        totals[cand] = totals.get(cand, 0.0) + contribution
        if cand not in best or contribution > best[cand][0]:
            best[cand] = (contribution, src)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:n]
    return [Candidate(pk, s, sources[best[pk][1]][0], best[pk][1], "recent") for pk, s in ranked]
