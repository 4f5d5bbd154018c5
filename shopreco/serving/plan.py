"""Everything decided before a list is read: who, which run, what to skip, its cache key."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shopreco import cache
from shopreco.adapter import get_adapter
from shopreco.serving.request import (
    Viewer,
    clean_limit,
    gpc,
    memo,
    state,
    to_pk,
    versions,
    viewer_from,
)


@dataclass
class Plan:
    """Everything decided before the list is read: who, which run, what to skip, cache key."""

    widget: str
    limit: int
    viewer: Viewer
    allowed: bool
    run_id: int | None
    memo: dict
    shown: set
    skip: set
    n: int
    key_parts: tuple
    product: Any
    category: Any
    dedupe: bool
    request: Any
    _key: str | None = None

    @property
    def key(self) -> str:
        """The per-viewer cache key of the list; reads the viewer's version tokens (one cache
        round trip per request), so only paths that cache per viewer pay for it."""
        if self._key is None:
            version, views_version = versions(self.viewer.key, self.memo)
            self._key = cache.list_key(*self.key_parts[:3], version,
                                       views_version if self.widget == "for-you" else "",
                                       *self.key_parts[3:])
        return self._key


def cart_of(request: Any) -> list | None:
    """The adapter's ``cart_products(request)`` as primary keys, asked once per request (a
    host's cart may cost a query, and every widget of the page needs it)."""
    scratch = memo(request)
    if "cart" not in scratch:
        cart = get_adapter().cart_products(request)
        scratch["cart"] = None if cart is None else [to_pk(pk) for pk in cart]
    return scratch["cart"]


def make_plan(widget: str, *, limit: Any, product: Any = None, user: Any = None,
              request: Any = None, category: Any = None, exclude: Iterable[Any] = (),
              dedupe: bool = True, ignore_gpc: bool = False) -> Plan:
    """Who the list is for (a viewer who opted out becomes nobody in particular), the served
    run, what to skip, and how many candidates to fetch for page de-duplication."""
    limit = clean_limit(limit)
    viewer = viewer_from(user, request)
    allowed = (ignore_gpc or not gpc(request)) and (
        viewer.user is None or state(viewer.user, request)[1]
    )
    if not allowed:
        viewer = Viewer()  # popular lists only, nothing personal, nothing tracked
    elif request is not None and viewer.identified:
        viewer.cart = cart_of(request)
    run_id = state(viewer.user, request)[0]
    scratch = memo(request)
    shown: set = scratch.get("shown", set()) if dedupe else set()
    skip = {to_pk(x) for x in exclude}
    if product is not None:
        skip.add(product.pk)
    # Spares for page de-dup: products already shown that could be candidates (the page's
    # own product, declared by shopreco_track_view, is skipped anyway).
    n = limit + len(shown - skip) + 4
    key_parts = (widget, getattr(product, "pk", ""), viewer.key, run_id,
                 cache.category_pk(category), sorted(map(str, skip)), n)
    return Plan(widget, limit, viewer, allowed, run_id, scratch, shown, skip, n, key_parts,
                product, category, dedupe, request)
