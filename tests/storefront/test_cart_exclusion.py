"""Products in the shopper's cart are left out of their lists, in the list's own query."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone

from shopreco import services
from shopreco.adapter import DefaultAdapter
from shopreco.models import Interaction


def pks(reco) -> list:
    return [item.pk for item in reco]


def test_a_carted_product_leaves_the_shoppers_lists(shop, make_request,
                                                    django_assert_max_num_queries):
    page = shop.products[0]
    first = pks(services.similar_products(page, 3, request=make_request(shop.alice)))
    Interaction.objects.create(user=shop.alice, product_id=first[0], kind="cart")
    with django_assert_max_num_queries(3):  # state, the list, the impression
        now = pks(services.similar_products(page, 3, request=make_request(shop.alice)))
    assert first[0] not in now and now[:2] == first[1:]
    assert first[0] not in pks(services.recommended_for(shop.alice, 6,
                                                        request=make_request(shop.alice)))
    # someone else's cart changes nothing for others
    assert pks(services.similar_products(page, 3, request=make_request())) == first


def test_a_cart_left_for_a_day_no_longer_counts(shop, make_request):
    page = shop.products[0]
    first = pks(services.similar_products(page, 3, request=make_request(shop.alice)))
    old = Interaction.objects.create(user=shop.alice, product_id=first[0], kind="cart")
    Interaction.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    assert pks(services.similar_products(page, 3, request=make_request(shop.alice))) == first


class SessionCartAdapter(DefaultAdapter):
    def cart_products(self, request):
        return request.session.get("cart", [])


def test_the_adapter_says_what_is_in_the_cart(shop, make_request, settings):
    settings.SHOPRECO = {**settings.SHOPRECO,
                         "ADAPTER": "tests.storefront.test_cart_exclusion.SessionCartAdapter"}
    page = shop.products[0]
    first = pks(services.similar_products(page, 3, request=make_request(shop.alice)))
    request = make_request(shop.alice)
    request.session["cart"] = [str(first[1])]
    assert first[1] not in pks(services.similar_products(page, 3, request=request))


def test_a_product_page_never_lists_its_own_product(shop, make_request):
    from django.template import RequestContext, Template

    page = shop.products[3]
    request = make_request()
    html = Template("{% load shopreco %}{% shopreco_track_view product %}"
                    "{% popular_products limit=10 %}{% recommended_for_you limit=10 %}"
                    ).render(RequestContext(request, {"product": page}))
    listed = {int(pk) for pk in re.findall(r'data-shopreco-product="(\d+)"', html)}
    assert listed and page.pk not in listed
