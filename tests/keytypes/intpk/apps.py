from django.apps import AppConfig


class KeyTypeConfig(AppConfig):
    name = "tests.keytypes.intpk"
    label = "intpk"
    default_auto_field = "django.db.models.BigAutoField"
