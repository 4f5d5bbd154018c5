"""URLs for the key-type test projects: shopreco's own, without the demo shop."""

from django.urls import include, path

urlpatterns = [
    path("shopreco/", include("shopreco.urls")),
    path("api/reco/", include("shopreco.api.urls")),
]
