"""shopreco: personalised product recommendations for Django shops.

The public helpers are imported lazily so that ``import shopreco`` works before Django's app
registry is ready (settings modules, Celery config and ``pip`` metadata all import it).
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["track", "__version__"]


def track(request: Any, product: Any, kind: str, recommendation_id: str | None = None) -> Any:
    """Record a shopper's event (``view``, ``cart``, ``purchase``) for the current request.

    Hosts call this from their cart and checkout views; see ``shopreco.tracking.track``.
    """
    from shopreco.tracking import track as _track

    return _track(request, product, kind, recommendation_id=recommendation_id)
