"""Every signal receiver of shopreco, connected when this module is imported (by
``ShopRecoConfig.ready``; nothing else imports it).

- A new rating or event queues a debounced refresh of that shopper's list
  (:func:`shopreco.tasks.request_user_refresh`). Only deletions that start at a rating (a
  shopper removing it) do; ratings removed because their user or product is being deleted
  do not, since writing an outbox row for a user in the middle of deleting that user would
  break the deletion.
- Ratings, events and preferences renew the viewer's cache tokens, so cached lists never
  outlive what they were built from; a view renews only the recent-activity token.
- A product save or delete renews the catalogue token of cached widget HTML.
- A run saved or deleted (an admin's edit, a test's fixture) drops the cached served run id;
  the pipeline's activation, a queryset update, drops it itself.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from shopreco import cache, tasks
from shopreco.conf import reco_settings
from shopreco.models import VIEW_KIND, Interaction, Preference, Rating, RecomputeRun


@receiver(post_save, sender=Rating, dispatch_uid="shopreco.rating_saved")
def rating_saved(sender: Any, instance: Rating, raw: bool = False, **kwargs: Any) -> None:
    cache.invalidate_viewer(instance.user_id)
    if not raw:
        tasks.request_user_refresh(instance.user_id)


@receiver(post_delete, sender=Rating, dispatch_uid="shopreco.rating_deleted")
def rating_deleted(sender: Any, instance: Rating, origin: Any = None, **kwargs: Any) -> None:
    cache.invalidate_viewer(instance.user_id)
    started_here = isinstance(origin, Rating) or (
        isinstance(origin, QuerySet) and origin.model is Rating
    )
    if started_here:
        tasks.request_user_refresh(instance.user_id)


@receiver(post_save, sender=Interaction, dispatch_uid="shopreco.interaction_saved")
def interaction_saved(sender: Any, instance: Interaction, created: bool = False,
                      raw: bool = False, **kwargs: Any) -> None:
    is_view = instance.kind == VIEW_KIND
    if is_view:
        cache.invalidate_viewer_views(instance.user_id, instance.session_key)
    else:
        cache.invalidate_viewer(instance.user_id, instance.session_key)
    if created and not raw and instance.user_id is not None:
        if is_view and not reco_settings.REFRESH_ON_VIEW:
            return
        tasks.request_user_refresh(instance.user_id)


@receiver(post_save, sender=Preference, dispatch_uid="shopreco.preference_saved")
def preference_saved(sender: Any, instance: Preference, **kwargs: Any) -> None:
    cache.invalidate_viewer(instance.user_id)


@receiver(post_save, sender=RecomputeRun, dispatch_uid="shopreco.run_saved")
@receiver(post_delete, sender=RecomputeRun, dispatch_uid="shopreco.run_deleted")
def run_changed(sender: Any, **kwargs: Any) -> None:
    cache.forget_served_run()


def product_changed(sender: Any, **kwargs: Any) -> None:
    cache.renew_catalogue_version()


# Connected for the product model only ("app_label.Model" senders resolve lazily): a receiver
# without a sender would run on every save and, for post_delete, turn off Django's fast
# (single-statement) deletes for every model.
post_save.connect(product_changed, sender=settings.SHOPRECO_PRODUCT_MODEL,
                  dispatch_uid="shopreco.product_saved")
post_delete.connect(product_changed, sender=settings.SHOPRECO_PRODUCT_MODEL,
                    dispatch_uid="shopreco.product_deleted")
