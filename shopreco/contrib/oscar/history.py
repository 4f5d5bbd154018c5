"""Oscar's orders and reviews as shopreco's purchases and ratings: one order as it is placed
(the ``order_placed`` receiver), one reviewer's rating as their reviews change, and the
shop's whole history (``manage.py shopreco_oscar_import``).

A purchase is keyed by shopper, product (the parent of a variant) and the time the order was
placed, the key the core importer de-duplicates events by: a live order and a later import of
the history write it once, and importing twice adds nothing. Guest orders count as purchases
of nobody in particular (they weigh in popularity, not in anyone's list). Shoppers who
switched personalisation off are left out, as ``shopreco.track`` leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from oscar.core.loading import get_model

from shopreco import services
from shopreco.conf import get_product_model, reco_settings
from shopreco.models import CART_KIND, VIEW_KIND, Interaction, Preference, Rating

# How far back a purchase looks for the recommendation that led to the product (the shopper's
# latest click or cart of it carrying a recommendation id).
ATTRIBUTION_DAYS = 30


def purchase_kind() -> str:
    """The event kind of a purchase: ``"purchase"``, or the shop's first owned kind."""
    owned = [k for k in reco_settings.OWNED_EVENT_KINDS if k in reco_settings.EVENT_WEIGHTS]
    return "purchase" if "purchase" in owned or not owned else owned[0]


def _canonical_id(product_id: Any, parent_id: Any) -> Any:
    return parent_id if parent_id is not None else product_id


def _opted_out() -> Any:
    return Preference.objects.filter(personalize=False).values("user")


def _order_products(order: Any) -> dict[Any, Decimal | None]:
    """The order's products (parents for variants), in line order, each once, with what
    their lines were worth (incl. tax; None when a line has no price)."""
    rows = order.lines.filter(product__isnull=False).order_by("pk").values_list(
        "product_id", "product__parent_id", "line_price_incl_tax")
    out: dict[Any, Decimal | None] = {}
    for pk, parent, price in rows:
        key = _canonical_id(pk, parent)
        if price is None or (key in out and out[key] is None):
            out[key] = None  # a line without a price: revenue falls back to the adapter's
        else:
            out[key] = out.get(key, Decimal(0)) + Decimal(price)
    return out


def _attributions(user_id: Any, products: list[Any], until: datetime) -> dict[Any, str]:
    """Product -> the recommendation id of the shopper's latest click or cart of it before
    ``until``: the session that remembered it is gone by the time an order is placed."""
    if user_id is None or not products:
        return {}
    rows = (Interaction.objects.filter(
        user_id=user_id, product_id__in=products, kind__in=(VIEW_KIND, CART_KIND),
        recommendation_id__isnull=False, created_at__lte=until,
        created_at__gte=until - timedelta(days=ATTRIBUTION_DAYS))
        .exclude(recommendation_id="").order_by("created_at", "pk")
        .values_list("product_id", "recommendation_id"))
    return dict(rows)  # the latest wins


def record_order(order: Any) -> list[Interaction]:
    """The purchases of a just-placed order (one per product), credited to the
    recommendation each product was reached from; returns the events written."""
    user = order.user if order.user_id is not None else None
    if user is not None and not services.personalization_allowed(user):
        return []
    kind = purchase_kind()
    amounts = _order_products(order)
    products = list(amounts)
    done = set(Interaction.objects.filter(
        user_id=order.user_id, session_key="", product_id__in=products, kind=kind,
        created_at=order.date_placed).values_list("product_id", flat=True))
    credit = _attributions(order.user_id, products, order.date_placed)
    Product = get_product_model()
    # One event each, saved one by one: the shopper's cached lists and refresh follow them.
    return [
        Interaction.objects.create(user=user, product=Product(pk=pk), kind=kind,
                                   created_at=order.date_placed,
                                   recommendation_id=credit.get(pk), amount=amounts[pk])
        for pk in products if pk not in done
    ]


def _score(value: Any) -> float:
    """An Oscar review score (0 to 5) on shopreco's rating scale, clamped to its ends and
    rounded to its step."""
    low, high = float(reco_settings.RATING_MIN), float(reco_settings.RATING_MAX)
    step = 0.5 if reco_settings.RATING_HALF_STARS else 1.0
    score = min(max(float(value), low), high)
    return low + round((score - low) / step) * step


def sync_rating(user_id: Any, product_id: Any) -> Rating | None:
    """Make the reviewer's rating of the product (its parent for a variant) what their latest
    approved review of it says, or remove it when none is approved any more (edited,
    unapproved, deleted); returns the rating, or None."""
    if user_id is None or product_id is None:
        return None
    ProductReview = get_model("reviews", "ProductReview")
    parent_id = (get_product_model()._default_manager.filter(pk=product_id)
                 .values_list("parent_id", flat=True).first())
    target = _canonical_id(product_id, parent_id)
    latest = (ProductReview.objects.filter(user_id=user_id, status=ProductReview.APPROVED)
              .filter(Q(product_id=target) | Q(product__parent_id=target))
              .order_by("-date_created", "-pk").values_list("score", "date_created").first())
    user = get_user_model()._default_manager.filter(pk=user_id).first()
    if latest is None or user is None or not services.personalization_allowed(user):
        for rating in Rating.objects.filter(user_id=user_id, product_id=target):
            rating.delete()  # one by one: the shopper's caches and refresh follow
        return None
    score, when = latest
    rating, _ = Rating.objects.update_or_create(
        user_id=user_id, product_id=target, defaults={"score": _score(score)},
        create_defaults={"score": _score(score), "created_at": when})
    return rating


# --- the whole history ---------------------------------------------------------------------


@dataclass
class ImportCounts:
    purchases_added: int = 0
    purchases_present: int = 0
    ratings_added: int = 0
    ratings_updated: int = 0
    ratings_present: int = 0


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def import_orders(counts: ImportCounts, *, since: datetime | None = None,
                  batch_size: int = 2000) -> None:
    """Every order line (of orders placed since ``since``) as a purchase, streamed in
    batches; purchases already recorded (live, or by an earlier import) are skipped."""
    Line = get_model("order", "Line")
    kind = purchase_kind()
    lines = Line.objects.filter(product__isnull=False).exclude(order__user__in=_opted_out())
    if since is not None:
        lines = lines.filter(order__date_placed__gte=since)
    rows = lines.order_by("order_id", "pk").values_list(
        "order__user_id", "product_id", "product__parent_id", "order__date_placed"
    ).iterator(chunk_size=batch_size)
    for batch in _batches(rows, batch_size):
        wanted = dict.fromkeys((user, _canonical_id(pk, parent), when)
                               for user, pk, parent, when in batch)
        present = set(Interaction.objects.filter(
            kind=kind, session_key="", product_id__in={p for _, p, _ in wanted},
            created_at__in={w for _, _, w in wanted},
        ).values_list("user_id", "product_id", "created_at"))
        new = [key for key in wanted if key not in present]
        counts.purchases_present += len(wanted) - len(new)
        with transaction.atomic():
            Interaction.objects.bulk_create([
                Interaction(user_id=user, product_id=pk, kind=kind, created_at=when)
                for user, pk, when in new])
        counts.purchases_added += len(new)


def import_reviews(counts: ImportCounts, *, batch_size: int = 2000) -> None:
    """Every approved review by a signed-in reviewer as their rating of the product (the
    latest review wins), streamed in batches; ratings that already say so are left alone."""
    ProductReview = get_model("reviews", "ProductReview")
    reviews = (ProductReview.objects.filter(status=ProductReview.APPROVED, user__isnull=False,
                                            product__isnull=False)
               .exclude(user__in=_opted_out()).order_by("date_created", "pk")
               .values_list("user_id", "product_id", "product__parent_id", "score",
                            "date_created").iterator(chunk_size=batch_size))
    for batch in _batches(reviews, batch_size):
        latest: dict[tuple, tuple] = {}
        for user, pk, parent, score, when in batch:
            latest[(user, _canonical_id(pk, parent))] = (_score(score), when)
        have = {
            (user, pk): (score, rid) for user, pk, score, rid in Rating.objects.filter(
                user_id__in={u for u, _ in latest}, product_id__in={p for _, p in latest},
            ).values_list("user_id", "product_id", "score", "pk")
        }
        new, changed = [], []
        for (user, pk), (score, when) in latest.items():
            if (user, pk) not in have:
                new.append(Rating(user_id=user, product_id=pk, score=score, created_at=when))
            elif have[(user, pk)][0] != score:
                changed.append(Rating(pk=have[(user, pk)][1], score=score))
            else:
                counts.ratings_present += 1
        with transaction.atomic():
            Rating.objects.bulk_create(new)
            Rating.objects.bulk_update(changed, ["score"])
        counts.ratings_added += len(new)
        counts.ratings_updated += len(changed)


def import_history(*, since: datetime | None = None, orders: bool = True,
                   reviews: bool = True, batch_size: int = 2000) -> ImportCounts:
    """The shop's orders and approved reviews as purchases and ratings (idempotent)."""
    counts = ImportCounts()
    if orders:
        import_orders(counts, since=since, batch_size=batch_size)
    if reviews:
        import_reviews(counts, batch_size=batch_size)
    return counts


