"""gunicorn settings for the API benches: load the app once in the master, warm it, freeze it.

``preload_app`` imports Django, the URLconf, DRF and the serving layer once before forking, so
every worker starts with them in shared memory instead of paying the imports (hundreds of ms)
on its first requests; ``gc.freeze()`` moves that start-up heap out of the collector's reach,
so full collections in the workers stay short and do not touch (copy) the shared pages. Each
worker then opens its database, cache and broker connections before it accepts a request. No
request is faked: the warm-up writes nothing.
"""

from __future__ import annotations

import gc

preload_app = True
worker_class = "sync"


def _warm_imports() -> None:
    import kombu.transport.redis  # noqa: F401
    import rest_framework.authtoken.models  # noqa: F401
    from celery import current_app
    from django.db import connections
    from django.urls import get_resolver

    import shopreco.api.views  # noqa: F401
    import shopreco.services  # noqa: F401

    get_resolver().resolve("/api/reco/recommendations/")  # builds the URL patterns
    # The first task a worker sends (a write's per-user refresh) would otherwise import the
    # broker transport and finalize the Celery app inside that request: ~0.45 s.
    app = current_app._get_current_object()
    app.loader.import_default_modules()
    app.finalize(auto=True)
    app.amqp  # noqa: B018 - builds the task message machinery (no connection yet)
    connections.close_all()  # never share a connection across fork


def when_ready(server) -> None:  # noqa: ANN001 - gunicorn hook
    _warm_imports()
    gc.collect()
    gc.freeze()


def post_worker_init(worker) -> None:  # noqa: ANN001 - gunicorn hook
    from django.core.cache import cache
    from django.db import connection

    connection.ensure_connection()
    cache.get("shopreco:warm")  # opens the worker's cache connection
    from celery import current_app

    with current_app.producer_or_acquire() as producer:  # the broker connection, per worker
        producer.connection.ensure_connection(max_retries=1)
