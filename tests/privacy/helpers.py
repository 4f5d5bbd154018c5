"""Helpers shared by the privacy, security and fault tests."""

from __future__ import annotations

from shopreco.models import (
    Assignment,
    Impression,
    Interaction,
    PendingRefresh,
    Preference,
    Rating,
    Recommendation,
)


def count_rows(user) -> dict[str, int]:
    """What shopreco holds on ``user``, table by table."""
    return {
        "ratings": Rating.objects.filter(user=user).count(),
        "events": Interaction.objects.filter(user=user).count(),
        "recommendations": Recommendation.objects.filter(user=user).count(),
        "impressions": Impression.objects.filter(user=user).count(),
        "pending_refreshes": PendingRefresh.objects.filter(user=user).count(),
        "experiment_assignments": Assignment.objects.filter(user=user).count(),
    }


def opt_out(user) -> None:
    Preference.objects.update_or_create(user=user, defaults={"personalize": False})
