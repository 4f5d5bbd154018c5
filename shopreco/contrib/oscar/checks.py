"""System checks of the Oscar integration: the product model, the app order that lets its
templates override Oscar's, and the adapter."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks

from shopreco.conf import reco_settings

OSCAR_APP = "oscar"


@checks.register()
def check_oscar_setup(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from oscar.core.loading import get_model

    from shopreco.contrib.oscar.adapter import OscarAdapter

    errors: list[checks.CheckMessage] = []
    product = get_model("catalogue", "Product")
    wanted = f"{product._meta.app_label}.{product._meta.object_name}"
    if getattr(settings, "SHOPRECO_PRODUCT_MODEL", "").lower() != wanted.lower():
        errors.append(checks.Error(
            f"SHOPRECO_PRODUCT_MODEL is {getattr(settings, 'SHOPRECO_PRODUCT_MODEL', '')!r}, "
            f"but Oscar's products are {wanted!r}.",
            hint=f'Set SHOPRECO_PRODUCT_MODEL = "{wanted}".', id="shopreco_oscar.E001"))
    labels = [config.label for config in apps.get_app_configs()]
    if OSCAR_APP in labels and labels.index("shopreco_oscar") > labels.index(OSCAR_APP):
        errors.append(checks.Warning(
            "shopreco.contrib.oscar comes after Oscar in INSTALLED_APPS, so Oscar's product "
            "and basket templates win and the recommendation widgets are not shown.",
            hint='List "shopreco.contrib.oscar" before Oscar\'s apps.',
            id="shopreco_oscar.W001"))
    adapter = reco_settings.ADAPTER
    if not (isinstance(adapter, type) and issubclass(adapter, OscarAdapter)):
        errors.append(checks.Warning(
            f"SHOPRECO['ADAPTER'] is {adapter!r}, which does not see the catalogue as Oscar "
            "does (public products, stock records, parents of variants).",
            hint="Subclass shopreco.contrib.oscar.adapter.OscarAdapter, or leave ADAPTER unset.",
            id="shopreco_oscar.W002"))
    return errors
