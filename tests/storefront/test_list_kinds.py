"""The registry of list kinds: a new kind is one record, and tags and serving take it."""

from __future__ import annotations

import re

import pytest
from django.template import RequestContext, Template

from shopreco import services, serving
from shopreco.models import Impression, Reason
from shopreco.serving.kinds import LIST_KINDS, ListKind
from shopreco.serving.types import Candidate


def render(source, request, **ctx):
    return Template("{% load shopreco %}" + source).render(RequestContext(request, ctx))


@pytest.fixture
def newest_first():
    """A host's own kind: the newest products of the page's category, nothing personal."""
    def step(plan, objs):
        model = type(plan.product)
        pks = (model.objects.filter(category=plan.product.category)
               .exclude(pk__in=plan.skip).order_by("-pk").values_list("pk", flat=True)[:plan.n])
        return [Candidate(pk, 1.0, Reason.NEW.value, None, "newest") for pk in pks]

    kind = serving.register(ListKind("newest", step, "shopreco/widgets/popular.html",
                                     needs_product=True, per_viewer=False))
    yield kind
    del LIST_KINDS["newest"]


def test_a_registered_kind_is_served_rendered_and_logged(shop, make_request, newest_first):
    page = shop.products[0]
    request = make_request(shop.alice)
    listed = services.serve("newest", product=page, limit=2, request=make_request())
    expected = sorted((p.pk for p in shop.products if p.category_id == page.category_id
                       and p.pk != page.pk), reverse=True)[:2]
    assert [i.pk for i in listed] == expected and listed.source == "newest"
    assert {i.reason_kind for i in listed} == {"trending"}  # Reason.NEW reads as trending
    html = render('{% shopreco_widget "newest" product=product limit=2 %}', request,
                  product=page)
    assert re.search(r'data-shopreco-widget="newest"', html)
    shown = [int(pk) for pk in re.findall(r'data-shopreco-product="(\d+)"', html)]
    assert shown == expected
    assert Impression.objects.filter(widget="newest").count() == 2


def test_built_in_kinds_render_through_the_generic_tag(shop, make_request):
    html = render('{% shopreco_widget "similar" product=product limit=3 %}',
                  make_request(shop.alice), product=shop.products[0])
    assert 'data-shopreco-widget="similar"' in html
    assert len(re.findall(r'data-shopreco-product="(\d+)"', html)) == 3


def test_unknown_kinds_and_missing_products_name_the_field(shop, make_request):
    with pytest.raises(ValueError, match="kind: one of similar, for-you, popular"):
        render('{% shopreco_widget "nope" %}', make_request())
    with pytest.raises(ValueError, match="widget: one of"):
        services.serve("nope")
    with pytest.raises(ValueError, match="product: a product is required"):
        services.serve("also-bought", limit=2)


def test_services_keeps_the_hosts_names():
    """Hosts import these from shopreco.services; the rooms behind it may move."""
    for name in ("recommended_for", "similar_products", "also_bought", "popular", "track",
                 "mark_viewed", "remember_click", "invalidate_user", "preview_for_user",
                 "widget_html", "RecoList", "RecoItem", "personalization_allowed",
                 "popularity_ranking", "refresh_rankings", "clean_limit"):
        assert callable(getattr(services, name)) or isinstance(getattr(services, name), type)
