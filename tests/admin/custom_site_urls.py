"""A host with its own AdminSite subclass, for tests of InsightsAdminSiteMixin."""

from django.contrib.admin import AdminSite
from django.urls import path

from shopreco.admin import InsightsAdminSiteMixin, RecomputeRunAdmin
from shopreco.models import RecomputeRun


class ShopAdminSite(InsightsAdminSiteMixin, AdminSite):
    site_header = "Shop back office"


site = ShopAdminSite(name="backoffice")
site.register(RecomputeRun, RecomputeRunAdmin)

urlpatterns = [path("backoffice/", site.urls)]
