from django.urls import path

from demo_shop.catalog import views

app_name = "catalog"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/<slug:slug>/", views.category, name="category"),
    path("p/<int:pk>/", views.product, name="product"),
    path("p/<int:pk>/image.svg", views.product_image, name="product-image"),
    path("login/", views.login_view, name="login"),
]
