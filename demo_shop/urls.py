from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/reco/", include("shopreco.api.urls")),
    path("shopreco/", include("shopreco.urls")),
    path("", include("demo_shop.catalog.urls")),
]
