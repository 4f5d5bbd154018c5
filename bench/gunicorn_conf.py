"""gunicorn settings for the API benches: load the app once in the master, warm it, freeze it.

``preload_app`` imports Django, the URLconf, DRF and the serving layer once before forking, so
every worker starts with them in shared memory instead of paying the imports (hundreds of ms)
on its first requests; ``gc.freeze()`` moves that start-up heap out of the collector's reach,
so full collections in the workers stay short and do not touch (copy) the shared pages. Each
worker then opens its database and cache connections before it accepts a request. No request
is faked: the warm-up writes nothing.
"""

from __future__ import annotations

import gc

preload_app = True
worker_class = "sync"


def _warm_imports() -> None:
    from django.urls import get_resolver

    resolver = get_resolver()
    resolver.resolve("/api/reco/recommendations/")  # builds the URL patterns and regexes
    import rest_framework.authtoken.models  # noqa: F401
    from django.db import connections

    import shopreco.api.views  # noqa: F401
    import shopreco.services  # noqa: F401

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
