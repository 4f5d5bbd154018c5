"""shopreco's REST API (needs ``djangorestframework`` and ``drf-spectacular``: the ``api``
extra). Kept in this subpackage, like django-filter's ``rest_framework`` integration, so the
rest of shopreco works without DRF. Mount with ``path("api/reco/", include("shopreco.api.urls"))``.

``shopreco.api.PersonalizedOrdering`` (a filter backend for the host's own product API) is
imported on first use, so importing this package costs nothing.
"""

from typing import Any

__all__ = ["PersonalizedOrdering"]


def __getattr__(name: str) -> Any:
    if name == "PersonalizedOrdering":
        from shopreco.api.filters import PersonalizedOrdering

        return PersonalizedOrdering
    raise AttributeError(f"module 'shopreco.api' has no attribute {name!r}")
