"""Hooks the insights page into an admin site at ``<admin>/shopreco/insights/``.

The default ``admin.site`` is hooked automatically when the admin autodiscovers
``shopreco.admin``; a host with its own ``AdminSite`` either calls :func:`install_insights` on it
or mixes :class:`InsightsAdminSiteMixin` into its class. Either way the page gets an "Insights"
entry in shopreco's section of the index, the app page and the navigation sidebar.
"""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _

from shopreco.admin.views import InsightsView

APP_LABEL = "shopreco"
URL_NAME = "shopreco_insights"


def insights_urls(site: AdminSite) -> list[URLPattern]:
    view = site.admin_view(InsightsView.as_view(admin_site=site))
    return [path(f"{APP_LABEL}/insights/", view, name=URL_NAME)]


def add_insights_entry(site: AdminSite, request, app_list: list[dict]) -> list[dict]:
    """Adds an "Insights" row to shopreco's section of an app list (staff only by then)."""
    try:
        url = reverse(f"{site.name}:{URL_NAME}", current_app=site.name)
    except NoReverseMatch:  # this site has not been hooked up
        return app_list
    for app in app_list:
        if app.get("app_label") == APP_LABEL and not any(
            m.get("object_name") == "Insights" for m in app["models"]
        ):
            app["models"].insert(
                0,
                {
                    "name": _("Insights"),
                    "object_name": "Insights",
                    "perms": {"view": True},
                    "admin_url": url,
                    "add_url": None,
                    "view_only": True,
                },
            )
    return app_list


class InsightsAdminSiteMixin:
    """For hosts with their own ``AdminSite`` subclass: ``class MySite(InsightsAdminSiteMixin,
    AdminSite)``."""

    def get_urls(self):
        return insights_urls(self) + super().get_urls()

    def get_app_list(self, request, app_label=None):
        return add_insights_entry(self, request, super().get_app_list(request, app_label))


def install_insights(site: AdminSite) -> None:
    """Hooks an existing admin site instance (idempotent)."""
    if isinstance(site, InsightsAdminSiteMixin) or getattr(site, "_shopreco_insights", False):
        return
    original_urls, original_app_list = site.get_urls, site.get_app_list

    def get_urls():
        return insights_urls(site) + original_urls()

    def get_app_list(request, app_label=None):
        return add_insights_entry(site, request, original_app_list(request, app_label))

    site.get_urls = get_urls
    site.get_app_list = get_app_list
    site._shopreco_insights = True
