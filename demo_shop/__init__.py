"""The demo shop: a host project that uses shopreco through its public surface only."""

from demo_shop.celery import app as celery_app

__all__ = ["celery_app"]
