from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

ADAPTER = "shopreco.contrib.oscar.adapter.OscarAdapter"


class ShopRecoOscarConfig(AppConfig):
    name = "shopreco.contrib.oscar"
    label = "shopreco_oscar"
    verbose_name = _("Recommendations for Oscar")

    def ready(self) -> None:
        # Installing the app is the whole set-up: OscarAdapter becomes the adapter a host gets
        # without SHOPRECO["ADAPTER"] (a host's own setting still wins), and Oscar's signals
        # are connected here rather than at import (STYLE.md: wire-up in AppConfig.ready).
        from shopreco import conf

        conf.DEFAULTS["ADAPTER"] = ADAPTER
        conf.reco_settings.reload()
        from shopreco.contrib.oscar import checks, receivers  # noqa: F401
