"""The add-ons a host mixes into its own admin: the demo's product and user pages."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.test import RequestFactory
from django.urls import reverse

from demo_shop.catalog.models import Product
from shopreco.admin import RecommendationPreviewAdminMixin, SimilarProductsAdminMixin
from shopreco.models import Impression, ItemSimilarity

pytestmark = pytest.mark.django_db


def in_order(html: str, names: list[str]) -> bool:
    positions = [html.find(f">{name}<") for name in names]
    return all(p >= 0 for p in positions) and positions == sorted(positions)


def test_product_page_shows_similar_products_as_the_storefront_would(shop, staff_client):
    from shopreco import services

    products, run = shop["products"], shop["full"]
    for rank, other in enumerate(products[1:5], start=1):
        ItemSimilarity.objects.create(run=run, kind="similar", product=products[0],
                                      similar_product=other, score=1.0 / rank)
    expected = [item.product.name for item in services.similar_products(products[0], 10).items]
    impressions = Impression.objects.count()
    response = staff_client.get(reverse("admin:catalog_product_change", args=[products[0].pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Customers who bought this also bought" in html
    assert expected and in_order(html, expected)
    assert Impression.objects.count() == impressions  # staff views are not impressions


def test_user_page_previews_recommendations_with_reasons(shop, staff_client):
    from shopreco import services

    user = shop["users"][0]
    preview = services.preview_for_user(user, 10)
    impressions = Impression.objects.count()
    response = staff_client.get(reverse("admin:auth_user_change", args=[user.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Preview recommendations" in html
    assert preview.items and in_order(html, [i.product.name for i in preview.items])
    assert all(str(i.reason) in html for i in preview.items if i.reason)
    assert Impression.objects.count() == impressions  # previews are not logged


def test_add_pages_have_no_panel(shop, staff_client):
    for url in (reverse("admin:catalog_product_add"), reverse("admin:auth_user_add")):
        response = staff_client.get(url)
        assert response.status_code == 200
        assert "shopreco-panel" not in response.content.decode()


def test_panel_added_once_to_an_admin_without_fieldsets(shop, staff):
    class PlainProductAdmin(SimilarProductsAdminMixin, admin.ModelAdmin):
        pass

    class PreviewOnlyAdmin(RecommendationPreviewAdminMixin, admin.ModelAdmin):
        fields = ("name", "price")

    request = RequestFactory().get("/")
    request.user = staff
    product = shop["products"][0]
    for model_admin, field in (
        (PlainProductAdmin(Product, admin.AdminSite()), "shopreco_similar_products"),
        (PreviewOnlyAdmin(Product, admin.AdminSite()), "shopreco_recommendations_preview"),
    ):
        fields = flatten_fieldsets(model_admin.get_fieldsets(request, product))
        assert fields.count(field) == 1
        assert field in model_admin.get_readonly_fields(request, product)
        assert field not in flatten_fieldsets(model_admin.get_fieldsets(request, None))
