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


def test_lines_chart_draws_one_line_per_series_with_a_legend():
    """Runs measured differently are separate lines, not one zig-zag: each series joins only
    its own points, the x axis is the order of all runs, and the legend names every line."""
    start = datetime(2026, 1, 1)
    day = timedelta(days=1)
    item = [(start, 0.10), (start + 2 * day, 0.12), (start + 4 * day, 0.15)]
    user = [(start + day, 0.30), (start + 3 * day, 0.32)]
    cv = [(start + 5 * day, 0.5)]
    svg = charts.lines_chart([("item · holdout", item), ("user · holdout", user),
                              ("item · cv, 5 folds", cv), ("empty", [])], title="P@10")
    lines = re.findall(r'<polyline points="([^"]+)"', svg)
    assert len(lines) == 2  # a single point is a marker, not a line
    xs = [[float(pair.split(",")[0]) for pair in line.split()] for line in lines]
    slots = [44 + 246 * i / 5 for i in range(6)]  # six runs evenly over the 246 px plot
    assert xs[0] == pytest.approx([slots[0], slots[2], slots[4]], abs=0.06)
    assert xs[1] == pytest.approx([slots[1], slots[3]], abs=0.06)
    assert svg.count("<circle") == 6
    colours = re.findall(r'<polyline[^>]*stroke="(#[0-9a-f]{6})"', svg)
    assert len(set(colours)) == 2
    for label in ("item · holdout", "user · holdout", "item · cv, 5 folds"):
        assert f"<title>{label}</title>" in svg
    assert "empty" not in svg  # a series without points gets no legend entry
    assert 'class="v"' not in svg  # no single "latest value" when it would name no line


def test_lines_chart_repeats_colours_dashed_past_the_palette():
    start = datetime(2026, 1, 1)
    series = [(f"s{i}", [(start, i), (start + timedelta(days=1), i + 1.0)])
              for i in range(len(charts.PALETTE) + 1)]
    svg = charts.lines_chart(series, title="many")
    styles = re.findall(r'<polyline[^>]*stroke="(#[0-9a-f]{6})"[^>]*?( stroke-dasharray="[^"]+")?>',
                        svg)
    assert len(set(styles)) == len(series)


def test_line_chart_of_one_series_has_no_legend():
    start = datetime(2026, 1, 1)
    svg = charts.line_chart([(start, 1.0), (start + timedelta(days=1), 2.0)], title="one")
    assert 'class="legend"' not in svg and svg.count("<polyline") == 1
    assert 'class="v">2</text>' in svg


def test_lines_chart_styles_keep_a_series_colour_across_charts():
    start = datetime(2026, 1, 1)
    points = [(start, 1.0), (start + timedelta(days=1), 2.0)]
    svg = charts.lines_chart([("gone", []), ("cv", points)], title="t", styles=[0, 3])
    assert re.findall(r'<polyline[^>]*stroke="(#[0-9a-f]{6})"', svg) == [charts.PALETTE[3]]
