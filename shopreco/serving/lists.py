"""The one serving path every list takes, whoever asks (tags, API, admin previews):

plan (who, which run, what to skip, the cache key) -> candidates (the kind's own step, then
the popular fill unless the kind is not ``padded``) -> load the products with every filter
re-applied -> reasons and relevance -> the served list, its page de-duplication and its
impression.

Query budget per list (checked by tests): one request-level "state" query (active run id and
the user's preference, memoised on the request), one query for the list (products joined
in), one INSERT for the impression (written after the response with ShopRecoMiddleware).
Personal and popular lists are cached per viewer, keyed by the active run id and the
viewer's version tokens (:mod:`shopreco.cache`); a cache hit costs one query to re-check
availability and ownership of the cached products instead of the list query.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shopreco import cache
from shopreco.conf import reco_settings
from shopreco.models import Impression, new_recommendation_id
from shopreco.serving import kinds
from shopreco.serving.plan import Plan, make_plan
from shopreco.serving.popularity import popular_candidates
from shopreco.serving.products import load_products
from shopreco.serving.reasons import reason_kind, reason_text
from shopreco.serving.request import Viewer, json_pk, served_arm_id
from shopreco.serving.types import Candidate, RecoItem, RecoList


def plan(widget: str, *, limit: Any, product: Any = None, **kwargs: Any) -> Plan:
    """The plan of a list of kind ``widget``, checked against the kind's record."""
    if kinds.get(widget).needs_product and product is None:
        raise ValueError("product: a product is required.")
    return make_plan(widget, limit=limit, product=product, **kwargs)


def serve(widget: str, *, limit: Any = None, product: Any = None, user: Any = None,
          request: Any = None, category: Any = None, exclude: Iterable[Any] = (),
          log: bool = True, use_cache: bool = True, dedupe: bool = True,
          ignore_gpc: bool = False) -> RecoList:
    """The list of kind ``widget`` (a name of :data:`shopreco.serving.kinds.LIST_KINDS`)."""
    p = plan(widget, limit=limit, product=product, user=user, request=request,
             category=category, exclude=exclude, dedupe=dedupe, ignore_gpc=ignore_gpc)
    use_cache = use_cache and kinds.get(widget).per_viewer
    cands = cache.store().get(p.key) if use_cache else None
    return materialise(p, cands, log=log, use_cache=use_cache)


def materialise(plan: Plan, cands: list[Candidate] | None, *, log: bool = True,
                use_cache: bool = True, objs: dict | None = None, checked: set = frozenset(),
                rejected: set = frozenset(), rec_id: str | None = None) -> RecoList:
    """The list for ``plan`` from cached candidates (or computed now), with objects loaded
    and every filter re-applied. ``objs``: products already loaded on this request (checked
    ones, and reason products); ``checked``/``rejected``: pks that passed/failed the
    availability and ownership check on this request."""
    widget, limit, viewer = plan.widget, plan.limit, plan.viewer
    product, category, skip, shown, n = plan.product, plan.category, plan.skip, plan.shown, plan.n
    kind = kinds.get(widget)
    objs = dict(objs or {})
    unchecked = set(objs) - set(checked)  # reason products: shown by name, never as items
    if cands is None:
        need = limit + len(shown - skip)
        cands = kind.candidates(plan, objs)
        if kind.padded and len(cands) < need:
            have = skip | {c.pk for c in cands}
            cands += popular_candidates(viewer, n - len(cands), category, have, objs)
        if use_cache:
            cache.store().set(plan.key, cands, timeout=reco_settings.CACHE_TIMEOUT)

    chosen = [c for c in cands if c.pk not in shown and c.pk not in rejected][: limit + 4]
    # Objects not loaded by the list query (a cache hit, or the recent step) are loaded now,
    # re-checking availability and ownership; reason products are looked up by pk.
    if product is not None:
        objs[product.pk] = product
    load = {c.pk for c in chosen if c.pk not in objs or c.pk in unchecked}
    if load:
        reasons = {c.reason_pk for c in chosen} - set(objs) - load
        loaded = load_products(load, viewer, also=reasons)
        objs.update(loaded)
        chosen = [c for c in chosen if c.pk in objs and (c.pk not in loaded
                                                          or loaded[c.pk]._shopreco_ok)]
    reasons = {c.reason_pk for c in chosen[:limit]} - set(objs) - {None}
    if reasons:
        objs.update(load_products((), also=reasons))
    chosen = chosen[:limit]
    if len(chosen) < limit and kind.padded:
        # Page de-dup or a stale cache ate the margin: top up from the popular ranking.
        have = skip | shown | {c.pk for c in chosen}
        chosen += popular_candidates(viewer, limit - len(chosen), category, have, objs)

    items = [
        RecoItem(
            product=objs[c.pk],
            score=rel,
            reason=reason_text(c.code, objs[c.pk], objs.get(c.reason_pk)),
            reason_kind=reason_kind(c.code),
            reason_product=objs.get(c.reason_pk),
            source=c.source,
            raw_score=c.score,
        )
        for c, rel in zip(chosen, relevance(chosen), strict=True)
    ]
    source = chosen[0].source if chosen else "none"
    rec_id = rec_id or new_recommendation_id()
    served(plan, [c.pk for c in chosen], rec_id, log=log)
    return RecoList(widget=widget, recommendation_id=rec_id, items=items, source=source)


def relevance(cands: list[Candidate]) -> list[float]:
    """Each item's ``score`` as shown: its relevance within the list, in [0, 1].

    Model scores mean nothing to shoppers and differ in scale per source (a neighbour's
    cosine, a personal list's EASE score, a popularity count), so the list is cut into runs of
    one source, in list order. In the first run each item gets its score divided by the run's
    best (the list's top item is 1.0); a later run, e.g. the popular padding after a product's
    neighbours, is scaled the same way and then multiplied by the relevance of the item just
    before it, so padding never reads as more relevant than the list's own items. Negative
    scores count as 0; a run whose scores are all 0 gets the ceiling throughout (no signal
    to tell its items apart)."""
    out: list[float] = []
    ceiling, start = 1.0, 0
    while start < len(cands):
        end = start
        while end < len(cands) and cands[end].source == cands[start].source:
            end += 1
        scores = [max(float(c.score), 0.0) for c in cands[start:end]]
        best = max(scores)
        out += [round(ceiling * (s / best if best > 0 else 1.0), 4) for s in scores]
        ceiling, start = out[-1], end
    return out


def served(plan: Plan, pks: list, rec_id: str, *, log: bool) -> None:
    """Page de-dup and the impression of a list just served."""
    if plan.dedupe and plan.request is not None:
        plan.memo.setdefault("shown", set()).update(pks)
    if log:
        record_impression(plan.memo, plan.widget, plan.viewer if plan.allowed else Viewer(),
                          pks, rec_id,
                          # the experiment arm this list was served in (the plan's state)
                          arm_id=(served_arm_id(plan.viewer.user, plan.request)
                                  if plan.allowed else None))


def record_impression(scratch: dict, widget: str, viewer: Viewer, pks: list,
                      rec_id: str, arm_id: int | None = None) -> None:
    """The impression of a served list (a widget's, or a ranked listing's), so clicks and
    purchases that carry ``rec_id`` are credited to it, in the experiment arm ``arm_id``
    when the shopper is in one. ``viewer``: nobody for a shopper who may not be tracked."""
    if not reco_settings.LOG_IMPRESSIONS or not pks:
        return
    impression = Impression(
        recommendation_id=rec_id,
        widget=widget,
        user=viewer.user,
        session_key=viewer.session_key,
        products=[json_pk(pk) for pk in pks],
        arm_id=arm_id,
    )
    if scratch.get("middleware"):
        # ShopRecoMiddleware writes all impressions of the page in one INSERT afterwards.
        scratch.setdefault("impressions", []).append(impression)
    else:
        impression.save()


# --- the public list functions --------------------------------------------------------------


def similar_products(product: Any, limit: Any = None, *, user: Any = None, request: Any = None,
                     category: Any = None, exclude: Iterable[Any] = ()) -> RecoList:
    """"You may also like": the product's CF neighbours, then popular in its category."""
    return serve("similar", limit=limit, product=product, user=user, request=request,
                 category=category, exclude=exclude)


def also_bought(product: Any, limit: Any = None, *, user: Any = None, request: Any = None,
                exclude: Iterable[Any] = ()) -> RecoList:
    """"Customers who bought this also bought": co-purchase neighbours only, never padded
    with popular products; empty (``source`` "none") for a product nobody bought with
    another."""
    return serve("also-bought", limit=limit, product=product, user=user, request=request,
                 exclude=exclude)


def recommended_for(user_or_session: Any, limit: Any = None, *, request: Any = None,
                    category: Any = None, exclude: Iterable[Any] = ()) -> RecoList:
    """Personal list -> item-based from recent activity (anonymous sessions too) -> popular."""
    return serve("for-you", limit=limit, user=user_or_session, request=request,
                 category=category, exclude=exclude)


def popular(limit: Any = None, *, category: Any = None, user: Any = None, request: Any = None,
            exclude: Iterable[Any] = ()) -> RecoList:
    """Popular and trending products (time-decayed), optionally within one category."""
    return serve("popular", limit=limit, user=user, request=request, category=category,
                 exclude=exclude)


def preview_for_user(user: Any, limit: Any = None) -> RecoList:
    """What ``user`` would see in "Recommended for you", for staff: same filters and chain,
    not cached, not logged, no page de-dup."""
    return serve("for-you", limit=limit, user=user, request=None, log=False, use_cache=False,
                 dedupe=False)
