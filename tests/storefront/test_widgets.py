"""Template tags: markup contract, overrides, escaping, query budget."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.template import Context, RequestContext, Template

from shopreco.models import Impression, ItemSimilarity

TAGS = {
    "similar": "{% similar_products product limit=3 %}",
    "also-bought": "{% also_bought product limit=3 %}",
    "for-you": "{% recommended_for_you limit=3 %}",
    "popular": "{% popular_products limit=3 %}",
}


# Book 0 has two co-purchases; also-bought is never padded with popular products.
SHOWN = {"also-bought": 2}


def render(source, request, **ctx):
    return Template("{% load shopreco %}" + source).render(RequestContext(request, ctx))


@pytest.mark.parametrize("widget", TAGS)
def test_markup_contract(shop, make_request, widget):
    html = render(TAGS[widget], make_request(shop.alice), product=shop.products[0])
    root = re.search(r'data-shopreco-widget="([^"]+)" data-shopreco-recommendation="(\w+)"', html)
    assert root.group(1) == widget
    rec_id = root.group(2)
    items = re.findall(r'data-shopreco-product="(\d+)" data-shopreco-recommendation="(\w+)"',
                       html)
    n = SHOWN.get(widget, 3)
    assert len(items) == n and {r for _, r in items} == {rec_id}
    for pk, _ in items:
        assert f'href="/p/{pk}/?rec={rec_id}"' in html
    assert html.count('alt="') == n and "<h2" in html
    assert Impression.objects.get(recommendation_id=rec_id).products == [int(pk) for pk, _ in items]


def test_xss_names_and_reasons_are_escaped(shop, make_request, product_factory):
    evil = product_factory('<script>alert("x")</script>', category=shop.books)
    source = product_factory('<img src=x onerror=alert(1)>', category=shop.books)
    ItemSimilarity.objects.create(run=shop.run, kind="similar", product=source,
                                  similar_product=evil, score=9)
    html = render("{% similar_products product limit=2 %}", make_request(), product=source)
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "Shoppers who liked &lt;img src=x onerror=alert(1)&gt; also liked this" in html


@pytest.fixture
def override_dirs(settings):
    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["DIRS"] = [Path(__file__).parent / "templates" / "override",
                            *templates[0]["DIRS"]]
    settings.TEMPLATES = templates


def test_host_overrides_default_widget_template(shop, make_request, override_dirs):
    html = render("{% similar_products product limit=2 %}", make_request(),
                  product=shop.products[0])
    assert 'class="host-override" data-shopreco-widget="similar"' in html
    assert html.count("<b data-shopreco-product=") == 2


def test_template_argument(shop, make_request, override_dirs):
    html = render('{% popular_products limit=2 template="custom_list.html" %}', make_request())
    assert html.startswith('<ol id="custom" data-shopreco-widget="popular">')
    assert html.count("<li>") == 2


def test_title_argument_is_escaped(shop, make_request):
    html = render('{% popular_products limit=1 title=t %}', make_request(), t="<b>Hot</b>")
    assert "&lt;b&gt;Hot&lt;/b&gt;" in html


def test_missing_request_context_processor_fails_clearly(shop):
    with pytest.raises(ImproperlyConfigured, match="context_processors.request"):
        Template("{% load shopreco %}{% popular_products %}").render(Context({}))


@pytest.mark.parametrize("widget", TAGS)
def test_at_most_three_queries_per_widget(shop, make_request, widget,
                                          django_assert_max_num_queries):
    """Cold (nothing cached, first widget of the request) and cached. A product's neighbour
    list is read from the database once per run (then cached for every shopper): that
    first list of a product after a run costs one query more."""
    from shopreco import services

    services.popularity_ranking()  # shared by all visitors, rebuilt every CACHE_TIMEOUT
    services.popularity_ranking(shop.books)
    for attempt in range(2):
        request = make_request(shop.alice)
        first_of_run = attempt == 0 and widget in ("similar", "also-bought")
        with django_assert_max_num_queries(4 if first_of_run else 3):
            html = render(TAGS[widget], request, product=shop.products[0])
        assert html.count("data-shopreco-product=") == SHOWN.get(widget, 3)


def test_two_product_widgets_share_request_state(shop, make_request,
                                                 django_assert_max_num_queries):
    from shopreco import services

    services.popularity_ranking()  # shared, cached ranking (rebuilt every CACHE_TIMEOUT)
    services.popularity_ranking(shop.books)
    render(TAGS["similar"] + TAGS["also-bought"], make_request(shop.alice),
           product=shop.products[1])  # not the neighbour lists of products[0]
    request = make_request(shop.alice)
    # 1 state + 2 x (neighbour list, read once per run and product + list + impression)
    with django_assert_max_num_queries(7):
        render(TAGS["similar"] + TAGS["also-bought"], request, product=shop.products[0])
    request = make_request(shop.alice)
    with django_assert_max_num_queries(5):  # 1 state + 2 x (list + impression)
        render(TAGS["similar"] + TAGS["also-bought"], request, product=shop.products[0])


def test_also_bought_without_co_purchases_renders_nothing_other_widgets_never_empty(
        shop, make_request):
    """Also-bought is never padded: a product nobody bought with another gets no box at all
    (no heading over an empty list), every time; the other widgets still fill up with
    popular products, labelled as such."""
    lonely = shop.products[1]  # similar neighbours, no co-purchases
    for _ in range(2):  # uncached, then with the neighbour list cached
        html = render(TAGS["also-bought"], make_request(shop.alice), product=lonely)
        assert html.strip() == ""
    assert not Impression.objects.filter(widget="also-bought").exists()
    ItemSimilarity.objects.filter(product=lonely).delete()  # nothing of its own at all
    for widget in ("similar", "for-you", "popular"):
        html = render(TAGS[widget], make_request(shop.alice), product=lonely)
        assert html.count("data-shopreco-product=") == 3, widget
    html = render(TAGS["similar"], make_request(shop.alice), product=lonely)
    assert html.count('data-shopreco-source="popular"') == 3
    reasons = re.findall(r'class="shopreco-reason">([^<]*)<', html)
    assert len(reasons) == 3 and "liked" not in html
    assert all(r.startswith(("Popular", "New in", "From our")) for r in reasons), reasons


def test_relevance_is_relative_to_the_best_item_and_padding_scaled_below():
    from shopreco.serving.lists import relevance
    from shopreco.serving.types import Candidate

    def c(score, source):
        return Candidate(1, score, "x", None, source)

    assert relevance([]) == []
    assert relevance([c(12.18, "personal"), c(6.09, "personal")]) == [1.0, 0.5]
    # padding's own scale (popularity counts), under the last neighbour's 0.5
    assert relevance([c(0.8, "similar"), c(0.4, "similar"), c(30.0, "popular"),
                      c(15.0, "popular")]) == [1.0, 0.5, 0.5, 0.25]
    assert relevance([c(2.0, "recent"), c(-1.0, "recent")]) == [1.0, 0.0]  # negative: 0
    assert relevance([c(0.0, "popular"), c(0.0, "popular")]) == [1.0, 1.0]  # no signal
