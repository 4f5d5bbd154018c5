"""Cached widget HTML: reused only for the same, re-checked list; fresh id on every render."""

from __future__ import annotations

import re

import pytest
from django.template import RequestContext, Template

from shopreco.models import Impression

TAG = "{% load shopreco %}{% similar_products product limit=3 %}"


def render(request, **ctx):
    return Template(TAG).render(RequestContext(request, ctx))


def shown(html):
    return re.findall(r'data-shopreco-product="(\d+)"', html)


def rec_ids(html):
    return set(re.findall(r'data-shopreco-recommendation="(\w+)"', html))


def test_cached_html_gets_a_fresh_recommendation_id_and_its_impression(
        shop, make_request, django_assert_max_num_queries):
    product = shop.products[0]
    first = render(make_request(shop.alice), product=product)
    with django_assert_max_num_queries(3):  # state, availability check, impression
        second = render(make_request(shop.alice), product=product)
    assert shown(first) == shown(second) and len(shown(second)) == 3
    (id1,), (id2,) = rec_ids(first), rec_ids(second)
    assert id1 != id2
    assert f"?rec={id2}" in second and id1 not in second
    assert "0shopreco0recommendation0id0" not in second
    logged = Impression.objects.get(recommendation_id=id2)
    assert [str(p) for p in logged.products] == shown(second)


def test_product_made_unavailable_after_caching_is_not_shown(shop, make_request):
    product = shop.products[0]
    first = shown(render(make_request(shop.alice), product=product))
    gone = type(product).objects.filter(pk=int(first[0]))
    gone.update(in_stock=False)  # bulk update: no signal, so only the re-check can catch it
    second = shown(render(make_request(shop.alice), product=product))
    assert first[0] not in second and len(second) == 3


def test_product_bought_after_caching_is_not_shown(shop, make_request):
    from shopreco.models import Interaction

    product = shop.products[0]
    first = shown(render(make_request(shop.alice), product=product))
    Interaction.objects.create(user=shop.alice, product_id=int(first[1]), kind="purchase")
    second = shown(render(make_request(shop.alice), product=product))
    assert first[1] not in second and len(second) == 3


def test_renamed_product_shows_its_new_name(shop, make_request):
    product = shop.products[0]
    request = make_request(shop.alice)
    first = render(request, product=product)
    pk = int(shown(first)[0])
    item = type(product).objects.get(pk=pk)
    item.name = "Renamed <b>"
    item.save()
    second = render(make_request(shop.alice), product=product)
    assert "Renamed &lt;b&gt;" in second and "Renamed <b>" not in second


def test_page_dedup_still_applies_to_cached_html(shop, make_request):
    tags = TAG + "{% also_bought product limit=3 %}"
    for _ in range(2):  # second pass: both widgets from cached HTML
        html = Template(tags).render(RequestContext(make_request(shop.alice),
                                                     {"product": shop.products[0]}))
        pks = shown(html)  # three similar, then Book 0's two co-purchases (never padded)
        assert len(pks) == 5 and len(set(pks)) == 5


@pytest.mark.parametrize("enabled", [True, False])
def test_setting_turns_html_cache_off(shop, make_request, settings, enabled):
    settings.SHOPRECO = {**settings.SHOPRECO, "CACHE_WIDGET_HTML": enabled}
    calls = []
    from shopreco import services

    for _ in range(2):
        services.widget_html("similar", lambda reco: calls.append(reco) or "<p></p>",
                             variant="v", product=shop.products[0], limit=3,
                             request=make_request(shop.alice))
    assert len(calls) == (1 if enabled else 2)


def test_braces_and_markup_in_names_stay_literal_in_cached_html(shop, make_request):
    product = shop.products[0]
    first = shown(render(make_request(shop.alice), product=product))
    item = type(product).objects.get(pk=int(first[0]))
    item.name = "Brace {rec} {} {0} }{ <i>x</i>"
    item.save()
    for _ in range(2):  # rendered, then from the cache
        html = render(make_request(shop.alice), product=product)
        assert "Brace {rec} {} {0} }{ &lt;i&gt;x&lt;/i&gt;" in html
        assert "<i>x</i>" not in html


def test_catalogue_receiver_is_bound_to_the_product_model_only():
    """A receiver without a sender would run on every save and switch off Django's fast
    deletes for every model (the pipeline prunes hundreds of thousands of rows)."""
    from django.db.models.signals import post_delete, post_save

    from shopreco import signals
    from shopreco.conf import get_product_model
    from shopreco.models import ItemSimilarity, Recommendation

    def bound(signal, sender):
        live = signal._live_receivers(sender)
        if isinstance(live, tuple):  # Django 5: (sync, async)
            live = [r for group in live for r in group]
        return signals.product_changed in live

    product = get_product_model()
    assert bound(post_save, product) and bound(post_delete, product)
    for other in (ItemSimilarity, Recommendation):
        assert not bound(post_save, other) and not bound(post_delete, other)
