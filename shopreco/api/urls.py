"""URLs of the REST API; a host mounts them with
``path("api/reco/", include("shopreco.api.urls"))``.

Product and user keys use the plain ``<pk>`` (str) converter: keys may be integers, UUIDs or
text, and malformed ones answer 404 from the view, never a 500. Text keys that contain a slash
(``SKU/12``) are matched by a second, ``<path:pk>`` route to the same view (left out of the
schema, where the ``<pk>`` route documents the key with the product model's own type).
Ratings and runs have integer keys: their routes match canonical ASCII digits only, so "+1",
" 1" or Arabic-Indic digits are no other name of row 1 (Django's ORM would read them as 1).
"""

from typing import Any

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from shopreco.api import views
from shopreco.api.schema import DocsView, SchemaView

app_name = "shopreco_api"


class IntegerKeyRouter(SimpleRouter):
    """A router whose detail routes take an integer key in canonical ASCII digits."""

    def get_lookup_regex(self, viewset: Any, lookup_prefix: str = "") -> str:
        lookup_field = getattr(viewset, "lookup_field", "pk")
        kwarg = getattr(viewset, "lookup_url_kwarg", None) or lookup_field
        return f"(?P<{lookup_prefix}{kwarg}>0|[1-9][0-9]{{0,18}})"


router = IntegerKeyRouter()
router.register("ratings", views.RatingViewSet, basename="rating")
router.register("runs", views.RunViewSet, basename="run")

urlpatterns = [
    path("products/<pk>/similar/", views.SimilarProductsView.as_view(), name="similar"),
    path("products/<pk>/also-bought/", views.AlsoBoughtView.as_view(), name="also-bought"),
    path("products/<path:pk>/similar/", views.SlashKeySimilarView.as_view()),
    path("products/<path:pk>/also-bought/", views.SlashKeyAlsoBoughtView.as_view()),
    path("recommendations/", views.RecommendationsView.as_view(), name="recommendations"),
    path("popular/", views.PopularView.as_view(), name="popular"),
    path("events/", views.EventView.as_view(), name="events"),
    path("recompute/", views.RecomputeView.as_view(), name="recompute"),
    path(
        "users/<pk>/recommendations/",
        views.UserRecommendationsView.as_view(),
        name="user-recommendations",
    ),
    path("me/export/", views.MeExportView.as_view(), name="me-export"),
    path("me/data/", views.MeDataView.as_view(), name="me-data"),
    path("me/preferences/", views.MePreferencesView.as_view(), name="me-preferences"),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", DocsView.as_view(), name="docs"),
    path("", include(router.urls)),
]
