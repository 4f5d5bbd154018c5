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
- An experiment or an arm saved or deleted drops the cached running experiments.
- At sign-in, a user without an arm in a running experiment adopts their session's.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from shopreco import cache, tasks
from shopreco.conf import reco_settings
from shopreco.models import (
    VIEW_KIND,
    Experiment,
    ExperimentArm,
    Interaction,
    Preference,
    Rating,
    RecomputeRun,
)
from shopreco.serving import experiments
from shopreco.serving.request import ANONYMOUS_ID_SESSION_KEY


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


@receiver(post_save, sender=Experiment, dispatch_uid="shopreco.experiment_saved")
@receiver(post_delete, sender=Experiment, dispatch_uid="shopreco.experiment_deleted")
@receiver(post_save, sender=ExperimentArm, dispatch_uid="shopreco.arm_saved")
@receiver(post_delete, sender=ExperimentArm, dispatch_uid="shopreco.arm_deleted")
def experiment_changed(sender: Any, **kwargs: Any) -> None:
    # Now, and again after the commit: a request may re-read the old rows in between.
    cache.forget_running_experiments()
    transaction.on_commit(cache.forget_running_experiments)


@receiver(user_logged_in, dispatch_uid="shopreco.user_logged_in")
def user_logged_in_adopts_arm(sender: Any, request: Any = None, user: Any = None,
                              **kwargs: Any) -> None:
    """The anonymous id survives sign-in (it is kept in the session data): the arm the
    shopper was served in before signing in stays theirs."""
    session = getattr(request, "session", None) if request is not None else None
    visitor = session.get(ANONYMOUS_ID_SESSION_KEY) if session is not None else None
    if visitor and getattr(user, "pk", None) is not None:
        experiments.adopt(user.pk, visitor)


def product_changed(sender: Any, **kwargs: Any) -> None:
    cache.renew_catalogue_version()


# Connected for the product model only ("app_label.Model" senders resolve lazily): a receiver
# without a sender would run on every save and, for post_delete, turn off Django's fast
# (single-statement) deletes for every model.
post_save.connect(product_changed, sender=settings.SHOPRECO_PRODUCT_MODEL,
                  dispatch_uid="shopreco.product_saved")
post_delete.connect(product_changed, sender=settings.SHOPRECO_PRODUCT_MODEL,
                    dispatch_uid="shopreco.product_deleted")
