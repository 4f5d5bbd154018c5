from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ShopRecoConfig(AppConfig):
    name = "shopreco"
    verbose_name = _("Recommendations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registering checks and signal receivers here, not at import time, keeps
        # `import shopreco` side-effect free (STYLE.md: wire-up in AppConfig.ready).
        from shopreco import checks, signals  # noqa: F401
