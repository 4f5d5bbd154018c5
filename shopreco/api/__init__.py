"""shopreco's REST API (needs ``djangorestframework`` and ``drf-spectacular``: the ``api``
extra). Kept in this subpackage, like django-filter's ``rest_framework`` integration, so the
rest of shopreco works without DRF. Mount with ``path("api/reco/", include("shopreco.api.urls"))``.
"""
