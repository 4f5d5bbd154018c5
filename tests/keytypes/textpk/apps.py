from django.apps import AppConfig


class KeyTypeConfig(AppConfig):
    name = "tests.keytypes.textpk"
    label = "textpk"
    default_auto_field = "django.db.models.BigAutoField"
