"""Signal receivers (wired in ``ShopRecoConfig.ready``): a new rating or event queues a
debounced refresh of that shopper's recommendations (see :mod:`shopreco.pipeline.refresh`).

Only deletions that start at a rating (a shopper removing it) trigger a refresh; ratings
removed because their user or product is being deleted do not, since writing an outbox row
for a user in the middle of deleting that user would break the deletion.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from shopreco.conf import reco_settings
from shopreco.models import Interaction, Rating


def _queue(user_id: Any) -> None:
    from shopreco.pipeline.refresh import request_user_refresh

    request_user_refresh(user_id)


@receiver(post_save, sender=Rating, dispatch_uid="shopreco.rating_saved")
def rating_saved(sender, instance: Rating, raw: bool = False, **kwargs: Any) -> None:
    if not raw:
        _queue(instance.user_id)


@receiver(post_delete, sender=Rating, dispatch_uid="shopreco.rating_deleted")
def rating_deleted(sender, instance: Rating, origin: Any = None, **kwargs: Any) -> None:
    started_here = isinstance(origin, Rating) or (
        isinstance(origin, QuerySet) and origin.model is Rating
    )
    if started_here:
        _queue(instance.user_id)


@receiver(post_save, sender=Interaction, dispatch_uid="shopreco.interaction_saved")
def interaction_saved(sender, instance: Interaction, created: bool = False, raw: bool = False,
                      **kwargs: Any) -> None:
    if created and not raw and instance.user_id is not None:
        if instance.kind == "view" and not reco_settings.REFRESH_ON_VIEW:
            return
        _queue(instance.user_id)
