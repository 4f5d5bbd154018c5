"""shopreco for django-oscar shops: ``INSTALLED_APPS = ["shopreco.contrib.oscar", "shopreco",
...Oscar's apps...]`` and ``SHOPRECO_PRODUCT_MODEL = "catalogue.Product"`` (docs/OSCAR.md)."""
