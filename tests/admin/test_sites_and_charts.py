"""Insights on a host's own AdminSite, and the SVG charts themselves."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.contrib.admin import AdminSite
from django.test import override_settings
from django.urls import reverse

from shopreco.admin import charts, install_insights


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="tests.admin.custom_site_urls")
def test_custom_admin_site_with_the_mixin(shop, staff_client, client, user_factory):
    url = reverse("backoffice:shopreco_insights")
    assert url == "/backoffice/shopreco/insights/"
    response = staff_client.get(url)
    assert response.status_code == 200
    assert "Recent recomputes" in response.content.decode()
    index = staff_client.get(reverse("backoffice:index")).content.decode()
    assert f'href="{url}"' in index
    client.force_login(user_factory("nobody"))
    assert client.get(url).status_code == 302


def test_install_insights_is_idempotent():
    site = AdminSite(name="other")
    install_insights(site)
    install_insights(site)
    names = [getattr(p, "name", None) for p in site.get_urls()]
    assert names.count("shopreco_insights") == 1


def test_line_chart_draws_one_marker_per_point_and_handles_edge_cases():
    start = datetime(2026, 1, 1)
    points = [(start + timedelta(days=i), v) for i, v in enumerate([0.9, 0.85, 0.87, 0.8])]
    svg = charts.line_chart(points, title="RMSE")
    assert svg.count("<circle") == len(points)
    assert "0.8" in svg  # the latest value is printed
    assert charts.line_chart(points[:1], title="one").count("<circle") == 1
    assert "no evaluation runs yet" in charts.line_chart([], title="none")
    flat = charts.line_chart([(start, 1.0), (start + timedelta(days=1), 1.0)], title="flat")
    assert "nan" not in flat.lower()


def test_bar_chart_scales_to_the_largest_value():
    svg = charts.bar_chart([("a", 2.0), ("b", 1.0), ("c", None)], title="t", width=460,
                           label_width=150, right=60)
    bars = re.findall(r'<rect x="150" y="\d+" width="([\d.]+)"[^>]*fill="#417690"', svg)
    assert [float(w) for w in bars] == [pytest.approx(250.0), pytest.approx(125.0)]
    assert "n/a" in svg
