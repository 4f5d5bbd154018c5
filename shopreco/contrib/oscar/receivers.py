"""Oscar's own signals feed shopreco, with no change to Oscar's views (connected by
``ShopRecoOscarConfig.ready``; nothing else imports this module).

- ``product_viewed`` (Oscar's product page): a view of the product (its parent for a
  variant), with the ``?rec=`` id of the recommendation that led there; the page's widgets
  then leave the product out.
- ``basket_addition``: a cart event (credited to the recommendation clicked before, as any
  ``shopreco.track``).
- ``order_placed``: a purchase per product of the order, dated when the order was placed (the
  history import uses the same date, so importing later adds nothing twice).
- ``ProductReview`` saved or deleted: the reviewer's rating of the product follows their
  approved reviews (see :func:`shopreco.contrib.oscar.history.sync_rating`).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save
from oscar.apps.basket.signals import basket_addition
from oscar.apps.catalogue.signals import product_viewed
from oscar.apps.order.signals import order_placed
from oscar.core.loading import get_model

from shopreco import services
from shopreco.contrib.oscar import history
from shopreco.contrib.oscar.adapter import canonical
from shopreco.models import CART_KIND

logger = logging.getLogger("shopreco.contrib.oscar")
ProductReview = get_model("reviews", "ProductReview")


def product_was_viewed(sender: Any, product: Any, request: Any = None, **kwargs: Any) -> None:
    # Oscar sends it before the page is rendered, so the page's widgets know their product.
    if request is None:
        return
    try:
        services.mark_viewed(request, canonical(product))
    except Exception:  # an analytics write must never break Oscar's page
        logger.exception("Could not record the view of product %s", product.pk)


def product_added_to_basket(sender: Any, product: Any, request: Any = None,
                            **kwargs: Any) -> None:
    if request is None or kwargs.get("raw", False):
        return
    try:
        services.track(request, canonical(product), CART_KIND)
    except Exception:  # never lose the basket over an analytics write
        logger.exception("Could not record the basket addition of product %s", product.pk)


def order_was_placed(sender: Any, order: Any, user: Any = None, **kwargs: Any) -> None:
    if kwargs.get("raw", False):
        return
    try:
        history.record_order(order)
    except Exception:  # the order is placed: never fail the checkout over analytics
        logger.exception("Could not record the purchases of order %s", order.number)


def review_saved(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    if not raw:
        history.sync_rating(instance.user_id, instance.product_id)


def review_deleted(sender: Any, instance: Any, origin: Any = None, **kwargs: Any) -> None:
    # Only a deletion that starts at the review: when its user or product is deleted, their
    # ratings go by cascade, and writing for a user being deleted would break the deletion.
    started_here = isinstance(origin, ProductReview) or (
        isinstance(origin, QuerySet) and origin.model is ProductReview)
    if started_here:
        history.sync_rating(instance.user_id, instance.product_id)


product_viewed.connect(product_was_viewed, dispatch_uid="shopreco.oscar.product_viewed")
basket_addition.connect(product_added_to_basket, dispatch_uid="shopreco.oscar.basket_addition")
order_placed.connect(order_was_placed, dispatch_uid="shopreco.oscar.order_placed")
post_save.connect(review_saved, sender=ProductReview, dispatch_uid="shopreco.oscar.review_saved")
post_delete.connect(review_deleted, sender=ProductReview,
                    dispatch_uid="shopreco.oscar.review_deleted")
