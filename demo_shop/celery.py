"""The host's Celery app (shopreco itself only defines ``@shared_task``s).

With no ``CELERY_BROKER_URL`` the settings make tasks run eagerly in-process, so the demo
works without a broker; set the URL and run ``celery -A demo_shop worker`` to go async.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_shop.settings")

app = Celery("demo_shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
