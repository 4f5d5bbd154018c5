"""Add-ons for the host's own admin (django-import-export style): mix them into your
``ModelAdmin`` and keep your templates.

    from shopreco.admin import RecommendationPreviewAdminMixin, SimilarProductsAdminMixin

    @admin.register(Product)
    class ProductAdmin(SimilarProductsAdminMixin, admin.ModelAdmin):
        ...

    class UserAdmin(RecommendationPreviewAdminMixin, auth_admin.UserAdmin):
        ...

Each adds one read-only panel (its own fieldset) to the change page, rendered from
``shopreco.services`` exactly as the storefront would serve it (same filters and reasons,
nothing logged).
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _

from shopreco import serving
from shopreco.adapter import get_adapter
from shopreco.models import Impression

logger = logging.getLogger(__name__)


def _without(fieldsets, name: str) -> list:
    """The fieldsets minus ``name`` (``get_fields`` may already list read-only fields)."""
    out = []
    for title, options in fieldsets or ():
        fields = []
        for entry in options.get("fields", ()):
            if isinstance(entry, list | tuple):
                entry = type(entry)(f for f in entry if f != name)
                if entry:
                    fields.append(entry)
            elif entry != name:
                fields.append(entry)
        out.append((title, {**options, "fields": fields}))
    return out


class _PanelMixin:
    """One read-only field, shown in its own fieldset on the change page (not on add)."""

    shopreco_panel_field = ""
    shopreco_panel_title = ""
    shopreco_panel_classes: tuple[str, ...] = ()

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and self.shopreco_panel_field not in fields:
            fields.append(self.shopreco_panel_field)
        return fields

    def get_fieldsets(self, request, obj=None):
        fieldsets = _without(super().get_fieldsets(request, obj), self.shopreco_panel_field)
        if obj is not None:
            fieldsets.append(
                (
                    self.shopreco_panel_title,
                    {
                        "fields": [self.shopreco_panel_field],
                        "classes": list(self.shopreco_panel_classes),
                    },
                )
            )
        return fieldsets

    def _admin_url(self, name: str, *args, query: dict | None = None) -> str | None:
        try:
            url = reverse(f"{self.admin_site.name}:{name}", args=args)
        except NoReverseMatch:
            return None
        return f"{url}?{urlencode(query)}" if query else url

    def _product_url(self, product) -> str | None:
        opts = product._meta
        if not self.admin_site.is_registered(type(product)):
            return None
        return self._admin_url(f"{opts.app_label}_{opts.model_name}_change", product.pk)

    def _rows(self, reco_list) -> list[dict[str, Any]]:
        adapter = get_adapter()
        rows = []
        for rank, item in enumerate(reco_list.items, start=1):
            product = item.product
            rows.append(
                {
                    "rank": rank,
                    "product": product,
                    "name": adapter.get_name(product),
                    "image": adapter.get_image(product),
                    "price": adapter.get_price(product),
                    "admin_url": self._product_url(product),
                    "score": item.score,
                    "reason": item.reason,
                    "reason_kind": item.reason_kind,
                }
            )
        return rows


class SimilarProductsAdminMixin(_PanelMixin):
    """"Similar products" and "Customers also bought" on the product change page."""

    shopreco_panel_field = "shopreco_similar_products"
    shopreco_panel_title = _("Recommendations")
    shopreco_similar_limit = 10
    shopreco_similar_template = "shopreco/admin/similar_products.html"

    @admin.display(description=_("Similar products"))
    def shopreco_similar_products(self, obj) -> str:
        lists = []
        for title, fetch in (
            (_("You may also like (similar)"), serving.similar_products),
            (_("Customers who bought this also bought"), serving.also_bought),
        ):
            reco_list = fetch(obj, self.shopreco_similar_limit)
            # A staff member opening the product page is not a shopper seeing a widget: drop
            # the impression the serving layer logged, so click-through rates stay honest.
            Impression.objects.filter(recommendation_id=reco_list.recommendation_id).delete()
            lists.append(
                {"title": title, "source": reco_list.source, "rows": self._rows(reco_list)}
            )
        return render_to_string(
            self.shopreco_similar_template,
            {
                "lists": lists,
                "raw_url": self._admin_url(
                    "shopreco_itemsimilarity_changelist", query={"product": obj.pk}
                ),
            },
        )


class RecommendationPreviewAdminMixin(_PanelMixin):
    """"Preview recommendations" on the user change page: the list this user would see now,
    with its reasons (``serving.preview_for_user``: storefront filters, nothing logged)."""

    shopreco_panel_field = "shopreco_recommendations_preview"
    shopreco_panel_title = _("Recommendations")
    shopreco_preview_limit = 10
    shopreco_preview_template = "shopreco/admin/preview.html"

    @admin.display(description=_("Preview recommendations"))
    def shopreco_recommendations_preview(self, obj) -> str:
        reco_list = serving.preview_for_user(obj, self.shopreco_preview_limit)
        return render_to_string(
            self.shopreco_preview_template,
            {
                "list": reco_list,
                "rows": self._rows(reco_list),
                "raw_url": self._admin_url(
                    "shopreco_recommendation_changelist", query={"user": obj.pk}
                ),
                "ratings_url": self._admin_url(
                    "shopreco_rating_changelist", query={"user": obj.pk}
                ),
                "events_url": self._admin_url(
                    "shopreco_interaction_changelist", query={"user": obj.pk}
                ),
            },
        )
