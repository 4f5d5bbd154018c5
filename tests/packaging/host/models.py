"""The fresh project's tiny catalogue: ``shop.Product``, the model the README's
``SHOPRECO_PRODUCT_MODEL = "shop.Product"`` names (copied to ``shop/models.py``)."""

from django.db import models
from django.urls import reverse


class Product(models.Model):
    name = models.CharField(max_length=100)
    category = models.CharField(max_length=40, blank=True)
    price = models.DecimalField(max_digits=8, decimal_places=2, default=0)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("product", args=[self.pk])
