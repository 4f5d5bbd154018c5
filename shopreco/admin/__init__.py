"""shopreco in the Django admin: its tables, "Recompute now" / "Evaluate now", run progress,
the insights page at ``<admin>/shopreco/insights/``, and mixins for the host's own admins.

Imported by the admin's autodiscovery; that registers the ModelAdmins on ``admin.site`` and
hooks the insights page into it. Hosts with their own ``AdminSite`` see :mod:`.sites`.
"""

from django.contrib import admin

from shopreco.admin.experiments import ExperimentAdmin
from shopreco.admin.mixins import RecommendationPreviewAdminMixin, SimilarProductsAdminMixin
from shopreco.admin.options import (
    ImpressionAdmin,
    InteractionAdmin,
    ItemSimilarityAdmin,
    RatingAdmin,
    RecommendationAdmin,
    RecomputeRunAdmin,
)
from shopreco.admin.sites import InsightsAdminSiteMixin, install_insights

install_insights(admin.site)

__all__ = [
    "ExperimentAdmin",
    "ImpressionAdmin",
    "InsightsAdminSiteMixin",
    "InteractionAdmin",
    "ItemSimilarityAdmin",
    "RatingAdmin",
    "RecommendationAdmin",
    "RecommendationPreviewAdminMixin",
    "RecomputeRunAdmin",
    "SimilarProductsAdminMixin",
    "install_insights",
]
