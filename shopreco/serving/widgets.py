"""Rendered widgets: a list's HTML, cached per served list and re-checked on every render."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.html import format_html
from django.utils.safestring import SafeString

from shopreco import cache
from shopreco.conf import reco_settings
from shopreco.models import new_recommendation_id
from shopreco.serving import kinds
from shopreco.serving.lists import materialise, plan, served
from shopreco.serving.products import load_products
from shopreco.serving.types import RecoList

# Stands for the recommendation id in cached widget HTML; every render gets a fresh id.
RECOMMENDATION_ID_PLACEHOLDER = "0shopreco0recommendation0id0"


def widget_html(widget: str, render: Callable[[RecoList], Any], *, variant: str,
                limit: Any = None, product: Any = None, user: Any = None, request: Any = None,
                category: Any = None) -> SafeString:
    """The widget's HTML, rendered by ``render(reco_list) -> str`` and cached per served list.

    Same list, filters, de-dup and impression as the list functions; the cached HTML is
    reused only when the list's products, re-checked for availability and ownership on this
    request, are exactly the ones it shows (so a product that became unavailable is never
    shown), and it is dropped whenever a product is edited. ``variant`` names the template
    and title. The recommendation id is fresh on every render. ``render`` must return
    escaped HTML (a rendered template). A kind that is never padded (also-bought) renders
    nothing at all when it has nothing to list."""
    p = plan(widget, limit=limit, product=product, user=user, request=request,
             category=category)
    kind = kinds.get(widget)
    store = cache.store()
    catalogue = p.memo.get("catalogue")  # one round trip per page, not one per widget
    if catalogue is None:
        catalogue = p.memo["catalogue"] = cache.catalogue_version()
    html_key = cache.list_key("html", p.key, variant, catalogue)
    use_html = bool(reco_settings.CACHE_WIDGET_HTML)
    got = store.get_many([p.key, html_key] if use_html else [p.key])
    cands, cached = got.get(p.key), got.get(html_key)
    objs: dict[Any, Any] = {}
    load: set = set()
    rejected: set = set()
    if cands is not None and cached is not None:
        # The same availability/ownership check as a cache hit of the list (one query).
        chosen = [c for c in cands if c.pk not in p.shown][: p.limit + 4]
        page = getattr(product, "pk", None)  # the reason of similar/also-bought: in hand
        load = {c.pk for c in chosen} - {page}
        objs = load_products(load, p.viewer,
                             also={c.reason_pk for c in chosen} - load - {None, page})
        rejected = {pk for pk in load if pk not in objs or not objs[pk]._shopreco_ok}
        picks = [c.pk for c in chosen if c.pk in load and c.pk not in rejected][: p.limit]
        # A short list is complete for a kind that is never padded (also-bought): nothing
        # would top it up; a padded one is re-rendered to fill up.
        if picks == cached["pks"] and (len(picks) == p.limit or not kind.padded):
            rec_id = new_recommendation_id()
            served(p, picks, rec_id, log=True)
            return format_html(cached["html"], rec=rec_id)
    rec_id = new_recommendation_id()
    reco = materialise(p, cands, objs=objs, checked=load - rejected, rejected=rejected,
                       rec_id=rec_id)
    if not reco.items and not kind.padded:
        return format_html("{}", "")  # no box at all rather than an empty one (also-bought)
    html = str(render(RecoList(widget=reco.widget, items=reco.items, source=reco.source,
                               recommendation_id=RECOMMENDATION_ID_PLACEHOLDER)))
    # Stored as a format string: literal braces doubled, the id a replacement field, so
    # format_html() puts a fresh (escaped) id in without re-reading the rest as markup.
    stored = html.replace("{", "{{").replace("}", "}}").replace(
        RECOMMENDATION_ID_PLACEHOLDER, "{rec}")
    if use_html and reco.items:
        store.set(html_key, {"pks": [i.pk for i in reco.items], "html": stored},
                  timeout=reco_settings.CACHE_TIMEOUT)
    return format_html(stored, rec=rec_id)
