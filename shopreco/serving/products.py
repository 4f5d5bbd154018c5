"""Loading the host's products for a list, with every business rule applied in SQL: the
adapter's availability, an optional category, and the viewer's owned products excluded.

Availability and ownership are checked on the candidate rows only (``pk IN ...``): a
correlated check over the whole catalogue made PostgreSQL scan every product."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Value
from django.utils import timezone

from shopreco.adapter import DefaultAdapter, get_adapter
from shopreco.cache import category_pk
from shopreco.conf import get_product_model, reco_settings
from shopreco.models import CART_KIND, Rating
from shopreco.serving.request import Viewer


def available_pks() -> QuerySet:
    return get_adapter().available().values("pk")


def category_filter(prefix: str, category: Any) -> dict[str, Any]:
    """Filter keywords restricting ``prefix`` products to ``category`` (none for None)."""
    if category is None:
        return {}
    cf = get_adapter().category_field()
    if cf is None:
        raise ValueError("category: the product model has no category field (see the adapter).")
    return {f"{prefix}{cf}": category_pk(category)}


# How long a product added to the cart counts as "in the cart" when the adapter does not say.
CART_DAYS = 1


def owned_exclusions(qs: QuerySet, path: str, viewer: Viewer) -> QuerySet:
    """Exclude, in SQL, products the viewer already rated or bought (EXCLUDE_OWNED) and those
    in their cart (the adapter's ``cart_products``, else their cart events of the last day),
    in the list's own query."""
    if not reco_settings.EXCLUDE_OWNED or not viewer.identified:
        return qs
    subs = viewer.owned_subqueries
    if subs is None:  # built once per viewer: the same subqueries serve every query
        events = Q(kind__in=list(reco_settings.OWNED_EVENT_KINDS))
        if viewer.cart is None and CART_KIND in reco_settings.EVENT_WEIGHTS:
            # The cart events in the same subquery as the owned ones: one pass over the
            # shopper's events (their index), not two.
            since = timezone.now() - timedelta(days=CART_DAYS)
            events |= Q(kind=CART_KIND, created_at__gte=since)
        subs = [viewer.events().filter(events).values("product")]
        if viewer.user is not None:
            subs.append(Rating.objects.filter(user=viewer.user).values("product"))
        if viewer.cart is not None:
            subs.append(list(viewer.cart))
        viewer.owned_subqueries = subs
    owned = Q()
    for sub in subs:
        owned |= Q(**{f"{path}__in": sub})
    return qs.exclude(owned)


def select_related_paths(prefix: str) -> list[str]:
    """Paths to select_related so reasons ("Popular in <category>") need no extra query."""
    cf = get_adapter().category_field()
    model = get_product_model()
    if cf and model._meta.get_field(cf).is_relation:
        return [f"{prefix}__{cf}" if prefix else cf]
    return [prefix] if prefix else []


def with_related(qs: QuerySet) -> QuerySet:
    paths = select_related_paths("")
    return qs.select_related(*paths) if paths else qs


def category_key_of(product: Any) -> Any:
    """The product's category as a key (its pk for a relation), read without a query."""
    adapter = get_adapter()
    cf = adapter.category_field()
    if not cf:
        return None
    field = get_product_model()._meta.get_field(cf)
    if field.is_relation and type(adapter).get_category is DefaultAdapter.get_category:
        return getattr(product, field.attname)
    return category_pk(adapter.get_category(product))


def load_in_order(candidates: list[Any], need: int, viewer: Viewer, category: Any,
                  objs: dict, spare: int = 0) -> list[Any]:
    """The first ``need`` (up to ``need + spare``) of ``candidates`` (pks, in order) that are
    available, in ``category`` and not owned by the viewer. One query over the first
    ``need + spare`` candidates' primary keys, cut to order in Python rather than ordered in
    SQL (a CASE per candidate); only when filters leave fewer than ``need`` does a further
    query look at the next ones. Full product rows are what costs, so none is loaded that
    the list cannot show (bench/bench_serving.py)."""
    chosen: list[Any] = []
    start = 0
    model = get_product_model()
    while start < len(candidates) and len(chosen) < need:
        short = need - len(chosen)
        chunk = candidates[start:start + (short + spare if not start else 2 * short + 4)]
        start += len(chunk)
        qs = get_adapter().available(model._default_manager.filter(pk__in=chunk))
        qs = owned_exclusions(qs.filter(**category_filter("", category)), "pk", viewer)
        loaded = {p.pk: p for p in with_related(qs)}
        objs.update(loaded)
        chosen += [pk for pk in chunk if pk in loaded]
    return chosen[:need + spare]


def load_products(pks: Iterable[Any], viewer: Viewer | None = None,
                  also: Iterable[Any] = ()) -> dict[Any, Any]:
    """Products ``pks`` that are still available and not owned by ``viewer``, plus the ``also``
    products (reasons, shown by name whatever their state), in ONE query. Each loaded product
    carries ``_shopreco_ok``: whether it passed the checks."""
    pks, also = set(pks), set(also) - {None}
    if not pks and not also:
        return {}
    model = get_product_model()
    ok = get_adapter().available(model._default_manager.filter(pk__in=list(pks)))
    if viewer is not None:
        ok = owned_exclusions(ok, "pk", viewer)
    if also:
        qs = model._default_manager.filter(pk__in=list(pks | also)).annotate(
            _shopreco_ok=Exists(ok.filter(pk=OuterRef("pk"))))
    else:
        qs = ok.annotate(_shopreco_ok=Value(True))
    return {p.pk: p for p in with_related(qs) if p.pk in also or p._shopreco_ok}
