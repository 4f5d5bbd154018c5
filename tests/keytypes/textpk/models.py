"""A product keyed by its SKU text, named ``title`` and with no availability flags: the adapter
must cope with all of that."""

from django.db import models


class Product(models.Model):
    sku = models.CharField(primary_key=True, max_length=64)
    title = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.title
