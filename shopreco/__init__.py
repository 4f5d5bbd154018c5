"""shopreco: personalised product recommendations for Django shops.

The public helpers are imported lazily so that ``import shopreco`` works before Django's app
registry is ready (settings modules, Celery config and ``pip`` metadata all import it).
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["rank", "track", "__version__"]


def track(request: Any, product: Any, kind: str, recommendation_id: str | None = None, *,
          amount: Any = None) -> Any:
    """Record a shopper's event (``view``, ``cart``, ``purchase``) for the current request.

    Hosts call this from their cart and checkout views (a purchase with ``amount``, the
    order line's price times its quantity, for revenue figures); see
    ``shopreco.tracking.track``.
    """
    from shopreco.tracking import track as _track

    return _track(request, product, kind, recommendation_id=recommendation_id, amount=amount)


def rank(products: Any, request_or_user: Any, *, limit: Any = None, blend: Any = 0.5) -> Any:
    """The host's ``products`` (a QuerySet or a list) ordered for the shopper of
    ``request_or_user``: the first ``limit`` (``RANK_LIMIT``) reordered by the shopper's
    taste fused with the host's order (``blend`` 0: the host's, 1: purely personal).

    See ``shopreco.serving.ranking.rank``."""
    from shopreco.serving.ranking import rank as _rank

    return _rank(products, request_or_user, limit=limit, blend=blend)
