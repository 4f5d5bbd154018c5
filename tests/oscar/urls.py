"""URLs of the Oscar test shop: Oscar's storefront, shopreco's click endpoint and API."""

from django.apps import apps
from django.urls import include, path

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    path("shopreco/", include("shopreco.urls")),
    path("api/reco/", include("shopreco.api.urls")),
    path("", include(apps.get_app_config("oscar").urls[0])),
]
