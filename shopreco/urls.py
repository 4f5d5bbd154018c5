"""Optional storefront URLs (the click beacon); mount with include("shopreco.urls")."""

from django.urls import path

from shopreco import views

app_name = "shopreco"

urlpatterns = [
    path("click/", views.click, name="click"),
]
