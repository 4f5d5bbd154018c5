from django.apps import AppConfig


class KeyTypeConfig(AppConfig):
    name = "tests.keytypes.uuidpk"
    label = "uuidpk"
    default_auto_field = "django.db.models.BigAutoField"
