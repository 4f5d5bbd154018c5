"""A product keyed by a UUID, as many headless shops do."""

import uuid

from django.db import models


class Product(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    in_stock = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name
