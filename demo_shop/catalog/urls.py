from django.urls import path

from demo_shop.catalog import views

app_name = "catalog"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/<slug:slug>/", views.category, name="category"),
    path("search/", views.search, name="search"),
    path("p/<int:pk>/", views.product, name="product"),
    path("p/<int:pk>/image.svg", views.product_image, name="product-image"),
    path("p/<int:pk>/rate/", views.rate, name="rate"),
    path("p/<int:pk>/add/", views.cart_add, name="cart-add"),
    path("cart/", views.cart, name="cart"),
    path("cart/update/", views.cart_update, name="cart-update"),
    path("checkout/", views.checkout, name="checkout"),
    path("checkout/done/", views.order_complete, name="order-complete"),
    path("login/", views.login_view, name="login"),
    path("login/demo/", views.demo_login, name="demo-login"),
    path("logout/", views.logout_view, name="logout"),
    path("account/", views.account, name="account"),
]
