"""The demo shop's admin: its own ModelAdmins, plus shopreco's add-ons (similar products on the
product page, a recommendations preview on the user page) mixed in as any host would."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from shopreco.admin import RecommendationPreviewAdminMixin, SimilarProductsAdminMixin

from .models import Category, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    search_fields = ("name",)


@admin.register(Product)
class ProductAdmin(SimilarProductsAdminMixin, admin.ModelAdmin):
    list_display = ("name", "category", "price", "in_stock", "is_active")
    list_filter = ("category", "in_stock", "is_active")
    list_select_related = ("category",)
    search_fields = ("name", "external_id")
    list_editable = ("in_stock", "is_active")
    fieldsets = (
        (None, {"fields": ("name", "category", "price", "description")}),
        ("Shop", {"fields": ("in_stock", "is_active", "image_color", "external_id")}),
    )


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class ShopUserAdmin(RecommendationPreviewAdminMixin, UserAdmin):
    pass
