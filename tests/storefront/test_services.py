"""The serving layer: filters on every path, the cold-start chain, reasons, ids and caching."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from shopreco import cache as shopreco_cache
from shopreco import services
from shopreco.models import (
    Deployment,
    Impression,
    Interaction,
    Preference,
    Rating,
    Recommendation,
    RecomputeRun,
)
from shopreco.serving import popularity

ALL_PATHS = ("similar", "also-bought", "for-you", "popular")


def serve(path, shop, request, limit=6, **kw):
    product = shop.products[0]
    if path == "similar":
        return services.similar_products(product, limit, request=request, **kw)
    if path == "also-bought":
        return services.also_bought(product, limit, request=request, **kw)
    if path == "for-you":
        return services.recommended_for(request.user, limit, request=request, **kw)
    return services.popular(limit, request=request, **kw)


def pks(reco):
    return [i.product.pk for i in reco]


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("flag", ["in_stock", "is_active"])
def test_unavailable_product_never_shown(shop, make_request, path, flag):
    hidden = shop.products[3]  # in alice's personal list and a close neighbour of Book 0
    setattr(hidden, flag, False)
    hidden.save()
    for _ in range(2):  # uncached, then cached
        reco = serve(path, shop, make_request(shop.alice), limit=9)
        assert hidden.pk not in pks(reco)
        # 9 available products; a product page never recommends the product itself; also
        # bought lists Book 0's two co-purchases only, never padded.
        assert len(reco) == {"similar": 8, "also-bought": 2}.get(path, 9)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_going_out_of_stock_is_seen_through_the_cache(shop, make_request, path):
    first = serve(path, shop, make_request(shop.alice), limit=9)
    gone = first.items[0].product
    gone.in_stock = False
    gone.save()
    again = serve(path, shop, make_request(shop.alice), limit=9)
    assert gone.pk not in pks(again)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_bought_and_rated_products_excluded(shop, make_request, path):
    bought, rated = shop.products[4], shop.products[8]
    Interaction.objects.create(user=shop.alice, product=bought, kind="purchase")
    Rating.objects.create(user=shop.alice, product=rated, score=4)
    reco = serve(path, shop, make_request(shop.alice), limit=8)
    assert bought.pk not in pks(reco) and rated.pk not in pks(reco)
    assert len(reco) == {"similar": 7, "also-bought": 2}.get(path, 8)


def test_owned_kept_when_setting_off(shop, make_request, settings):
    settings.SHOPRECO = {"EXCLUDE_OWNED": False}
    Interaction.objects.create(user=shop.alice, product=shop.products[1], kind="purchase")
    reco = services.similar_products(shop.products[0], 3, request=make_request(shop.alice))
    assert pks(reco)[0] == shop.products[1].pk


@pytest.mark.parametrize("path", ["similar", "for-you", "popular"])  # also_bought: no category
def test_category_and_exclude(shop, make_request, path):
    excluded = shop.products[2]
    reco = serve(path, shop, make_request(shop.alice), limit=4, category=shop.books,
                 exclude=[excluded, shop.products[5].pk])
    assert reco.items
    assert all(i.product.category == shop.books for i in reco)
    assert excluded.pk not in pks(reco) and shop.products[5].pk not in pks(reco)


def test_no_product_twice_on_one_page(shop, make_request):
    request = make_request(shop.alice)
    seen = []
    for path in ALL_PATHS:
        seen += pks(serve(path, shop, request, limit=2))
    assert len(seen) == len(set(seen)) == 8


def test_similar_ranks_by_score_and_explains(shop, make_request):
    reco = services.similar_products(shop.products[0], 3, request=make_request())
    assert pks(reco) == [p.pk for p in shop.products[1:4]]
    assert reco.source == "similar"
    assert reco.items[0].reason == "Shoppers who liked Book 0 also liked this"
    assert reco.items[0].reason_product == shop.products[0]


def test_also_bought_lists_co_purchases_only_never_popular_padding(shop, make_request):
    reco = services.also_bought(shop.products[0], 4, request=make_request())
    assert pks(reco) == [shop.products[6].pk, shop.products[7].pk]  # short, not padded
    assert reco.items[0].reason == "Customers who bought Book 0 also bought this"
    assert {(i.reason_kind, i.source) for i in reco} == {("also_bought", "also_bought")}
    assert reco.source == "also_bought"


def test_also_bought_of_a_product_without_co_purchases_is_empty(shop, make_request):
    reco = services.also_bought(shop.products[1], 4, request=make_request(shop.alice))
    assert reco.items == [] and reco.source == "none"
    assert not Impression.objects.exists()  # nothing shown, nothing logged


def test_similar_is_padded_with_popular_products_labelled_as_such(shop, make_request):
    from shopreco.models import ItemSimilarity

    ItemSimilarity.objects.filter(product=shop.products[0], kind="similar").exclude(
        similar_product=shop.products[1]).delete()
    reco = services.similar_products(shop.products[0], 4, request=make_request())
    assert len(reco) == 4 and reco.items[0].product == shop.products[1]
    assert reco.items[0].source == "similar" and reco.items[0].reason_kind == "similar"
    padding = reco.items[1:]
    assert {i.source for i in padding} == {"popular"}
    assert {i.reason_kind for i in padding} <= {"popular", "trending"}
    assert all(i.reason.startswith(("Popular", "New in", "From our")) for i in padding)


def test_new_user_cold_start_chain(shop, make_request, user_factory):
    bob = user_factory("bob")
    request = make_request(bob)
    reco = services.recommended_for(bob, 4, request=request)
    assert reco.source == "popular" and len(reco) == 4
    # After viewing a game, recommendations come from its neighbours, with the reason.
    Interaction.objects.create(user=bob, product=shop.products[7], kind="view")
    reco = services.recommended_for(bob, 4, request=make_request(bob))
    assert reco.source == "recent"
    assert pks(reco)[:2] in ([shop.products[6].pk, shop.products[8].pk],
                             [shop.products[8].pk, shop.products[6].pk])
    assert reco.items[0].reason == "Because you viewed Game 1"


def test_anonymous_session_gets_item_based_list(shop, make_request):
    request = make_request()
    request.session.save()
    key = request.session.session_key
    Interaction.objects.create(session_key=key, product=shop.products[2], kind="cart")
    reco = services.recommended_for(key, 3, request=request)
    assert reco.source == "recent"
    assert shop.products[2].pk not in pks(reco)
    assert reco.items[0].reason == "Because you added Book 2 to your cart"


def test_guest_without_history_gets_popular(shop, make_request):
    for _ in range(3):
        Interaction.objects.create(product=shop.products[9], kind="purchase")
    reco = services.recommended_for(AnonymousUser(), 3, request=make_request())
    assert reco.source == "popular"
    assert pks(reco)[0] == shop.products[9].pk
    assert reco.items[0].reason == "Popular in Games this week"


def test_new_product_gets_exposure_in_popular(shop, make_request, product_factory):
    from demo_shop.catalog.models import Product

    old = timezone.now() - timedelta(days=120)
    Product.objects.exclude(pk__in=[]).update(created_at=old)
    for p in shop.products:
        for _ in range(5):
            Interaction.objects.create(product=p, kind="view", created_at=old)
    fresh = product_factory("Brand new", category=shop.games)
    reco = services.popular(3, request=make_request())
    assert pks(reco)[0] == fresh.pk
    assert reco.items[0].reason == "New in Games"
    # ...and as the cold-start fill of its own product page, which has no neighbours yet.
    similar = services.similar_products(fresh, 3, request=make_request())
    assert similar.source == "popular" and len(similar) == 3
    assert fresh.pk not in pks(similar)
    assert all(i.product.category == shop.games for i in similar)


def test_no_run_yet_still_serves(shop, make_request):
    RecomputeRun.objects.all().delete()
    for path in ("similar", "for-you", "popular"):
        assert len(serve(path, shop, make_request(shop.alice), limit=5)) == 5
    # no run: no co-purchases known, and also-bought is never padded
    assert len(serve("also-bought", shop, make_request(shop.alice), limit=5)) == 0


def test_only_latest_succeeded_run_is_read(shop, make_request):
    newer = RecomputeRun.objects.create(status=RecomputeRun.Status.SUCCEEDED,
                                        finished_at=timezone.now() + timedelta(seconds=5))
    Deployment.objects.create(run=newer)
    RecomputeRun.objects.create(status=RecomputeRun.Status.RUNNING)
    Recommendation.objects.create(run=newer, user=shop.alice, product=shop.products[5],
                                  score=1, rank=1, reason="bought",
                                  reason_product=shop.products[1])
    reco = services.recommended_for(shop.alice, 1, request=make_request(shop.alice))
    assert pks(reco) == [shop.products[5].pk]
    assert reco.items[0].reason == "Because you bought Book 1"


def test_new_run_invalidates_cached_lists(shop, make_request):
    first = services.recommended_for(shop.alice, 2, request=make_request(shop.alice))
    newer = RecomputeRun.objects.create(status=RecomputeRun.Status.SUCCEEDED,
                                        finished_at=timezone.now() + timedelta(seconds=5))
    Deployment.objects.create(run=newer)
    Recommendation.objects.create(run=newer, user=shop.alice, product=shop.products[5],
                                  score=1, rank=1, reason="rated",
                                  reason_product=shop.products[1])
    second = services.recommended_for(shop.alice, 2, request=make_request(shop.alice))
    assert pks(first) != pks(second) and pks(second)[0] == shop.products[5].pk


def test_new_run_neighbours_served_right_after_activation(shop, make_request):
    """Neighbour lists are cached by run id: the first request after a new run went live
    reads the new run's neighbours, never the old run's cached ones."""
    from shopreco.models import ItemSimilarity

    before = services.similar_products(shop.products[0], 2, request=make_request())
    assert pks(before) == [shop.products[1].pk, shop.products[2].pk]
    newer = RecomputeRun.objects.create(status=RecomputeRun.Status.SUCCEEDED,
                                        finished_at=timezone.now() + timedelta(seconds=5))
    Deployment.objects.create(run=newer)
    ItemSimilarity.objects.create(run=newer, kind="similar", product=shop.products[0],
                                  similar_product=shop.products[9], score=0.7)
    after = services.similar_products(shop.products[0], 2, request=make_request())
    assert pks(after)[0] == shop.products[9].pk
    assert after.items[0].reason_kind == "similar"


def test_shared_neighbour_list_filtered_per_shopper(shop, make_request, user_factory):
    """One cached neighbour list serves every shopper; what each one owns is still left out,
    and a rating made after the list was cached shows at once."""
    bob = user_factory("bob")
    Rating.objects.create(user=bob, product=shop.products[1], score=4)
    alice_list = services.similar_products(shop.products[0], 2, request=make_request(shop.alice))
    bob_list = services.similar_products(shop.products[0], 2, request=make_request(bob))
    assert pks(alice_list) == [shop.products[1].pk, shop.products[2].pk]
    assert pks(bob_list) == [shop.products[2].pk, shop.products[3].pk]
    Rating.objects.create(user=shop.alice, product=shop.products[2], score=5)
    again = services.similar_products(shop.products[0], 2, request=make_request(shop.alice))
    assert pks(again) == [shop.products[1].pk, shop.products[3].pk]


def test_user_action_invalidates_cached_lists(shop, make_request):
    first = services.similar_products(shop.products[0], 2, request=make_request(shop.alice))
    Rating.objects.create(user=shop.alice, product=first.items[0].product, score=5)
    second = services.similar_products(shop.products[0], 2, request=make_request(shop.alice))
    assert first.items[0].product.pk not in pks(second)


def test_cache_serves_same_list_with_fresh_ids(shop, make_request):
    a = services.similar_products(shop.products[0], 3, request=make_request())
    b = services.similar_products(shop.products[0], 3, request=make_request())
    assert pks(a) == pks(b)
    assert a.recommendation_id != b.recommendation_id
    assert Impression.objects.get(recommendation_id=b.recommendation_id).products == pks(b)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_opt_out_and_gpc_get_popular_only_and_no_tracking(shop, make_request, path):
    Preference.objects.create(user=shop.alice, personalize=False)
    reco = serve(path, shop, make_request(shop.alice), limit=4)
    assert reco.source in ("popular", "similar", "also_bought")
    assert services.track(make_request(shop.alice), shop.products[1], "view") is None
    gpc = make_request(headers={"Sec-GPC": "1"})
    assert services.recommended_for(gpc.user, 3, request=gpc).source == "popular"
    assert services.track(gpc, shop.products[1], "cart") is None
    assert not Interaction.objects.exists()
    impression = Impression.objects.get(recommendation_id=reco.recommendation_id)
    assert impression.user is None and impression.session_key == ""


def test_gpc_ignored_when_setting_off(shop, make_request, settings):
    settings.SHOPRECO = {"HONOR_GPC": False}
    request = make_request(shop.alice, headers={"Sec-GPC": "1"})
    assert services.personalization_allowed(shop.alice, request)
    assert services.recommended_for(shop.alice, 2, request=request).source == "personal"


def test_recommendation_id_recorded_through_view_cart_and_purchase(shop, make_request):
    reco = services.similar_products(shop.products[0], 3, request=make_request(shop.alice))
    target = reco.items[1].product
    request = make_request(shop.alice)
    view = services.track(request, target, "view", reco.recommendation_id)
    assert view.recommendation_id == reco.recommendation_id
    # Cart and purchase later in the same session carry it without being told.
    cart = services.track(request, target, "cart")
    purchase = services.track(request, target, "purchase")
    assert cart.recommendation_id == purchase.recommendation_id == reco.recommendation_id
    # A product that was not in that list is not credited.
    other = services.track(request, shop.products[9], "view", reco.recommendation_id)
    assert other.recommendation_id is None


def test_forged_recommendation_id_is_dropped(shop, make_request):
    event = services.track(make_request(shop.alice), shop.products[1], "view", "f" * 32)
    assert event is not None and event.recommendation_id is None


def test_anonymous_event_uses_session(shop, make_request):
    request = make_request()
    event = services.track(request, shop.products[1], "view")
    assert event.user is None and event.session_key == request.session.session_key != ""


@pytest.mark.parametrize("bad", [0, -1, 51, "x", True, 2.5])
def test_clean_limit_rejects(bad):
    with pytest.raises(ValueError, match="limit"):
        services.clean_limit(bad)


def test_clean_limit_default_and_strings():
    assert services.clean_limit(None) == 6
    assert services.clean_limit("4") == 4


def test_track_rejects_unknown_kind(shop, make_request):
    with pytest.raises(ValueError, match="kind"):
        services.track(make_request(), shop.products[0], "wishlist")


def test_preview_does_not_log_or_dedupe(shop):
    reco = services.preview_for_user(shop.alice, 3)
    assert reco.source == "personal" and len(reco) == 3
    assert not Impression.objects.exists()


def test_uuid_recommendation_ids_unique_per_list(shop, make_request):
    request = make_request(shop.alice)
    ids = {serve(p, shop, request, limit=2).recommendation_id for p in ALL_PATHS}
    assert len(ids) == 4
    assert Impression.objects.filter(recommendation_id__in=ids).count() == 4


@pytest.mark.django_db
@pytest.mark.parametrize("refresh_on_view", [True, False])
def test_view_queues_a_refresh_only_when_refresh_on_view(shop, refresh_on_view,
                                                         django_capture_on_commit_callbacks,
                                                         monkeypatch, settings):
    """Without a broker a queued refresh runs inside the page, so the demo turns view-triggered
    refreshes off; carts (and ratings, purchases) still queue one."""
    from shopreco.models import Interaction, PendingRefresh

    settings.SHOPRECO = {**settings.SHOPRECO, "REFRESH_ON_VIEW": refresh_on_view}
    sent = []
    monkeypatch.setattr("shopreco.tasks._enqueue_refresh", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        Interaction.objects.create(user=shop.alice, product=shop.products[1], kind="view")
    assert sent == ([shop.alice.pk] if refresh_on_view else [])
    assert PendingRefresh.objects.filter(user=shop.alice).exists() is refresh_on_view
    with django_capture_on_commit_callbacks(execute=True):
        Interaction.objects.create(user=shop.alice, product=shop.products[1], kind="cart")
    assert sent == [shop.alice.pk]


def test_middleware_writes_impressions_once_the_response_is_closed(shop, make_request):
    """The INSERT waits until the server has sent the response (and closes it); it is not
    lost, and the list's id is then valid for crediting a click."""
    from django.core.signals import request_finished
    from django.db import close_old_connections
    from django.http import HttpResponse

    from shopreco.middleware import ShopRecoMiddleware

    served = {}

    def view(request):
        served["list"] = services.similar_products(shop.products[0], 3, request=request)
        return HttpResponse("ok")

    request = make_request(shop.alice)
    response = ShopRecoMiddleware(view)(request)
    rec_id = served["list"].recommendation_id
    assert not Impression.objects.filter(recommendation_id=rec_id).exists()
    request_finished.disconnect(close_old_connections)  # as Django's test client does
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
    assert Impression.objects.get(recommendation_id=rec_id).products == pks(served["list"])
    event = services.track(request, served["list"].items[0].product, "cart",
                           recommendation_id=rec_id)
    assert event.recommendation_id == rec_id


def test_due_ranking_rebuilt_by_one_request_others_serve_the_previous_copy(
        shop, django_assert_num_queries):
    from django.core.cache import caches

    cache = caches["default"]
    first = services.popularity_ranking()
    key = shopreco_cache.ranking_key(None)
    entry = cache.get(key)
    cache.set(key, {**entry, "fresh_until": 0})  # due for a rebuild
    Rating.objects.create(user=shop.alice, product=shop.products[9], score=5)
    assert cache.add(key + ":lock", 1)  # another worker is rebuilding it right now
    with django_assert_num_queries(0):
        assert services.popularity_ranking() == first
    cache.delete(key + ":lock")
    rebuilt = services.popularity_ranking()  # this request takes the lock and rebuilds
    assert rebuilt != first and rebuilt[0][0] == shop.products[9].pk
    assert cache.get(key)["fresh_until"] > time.time()
    assert cache.get(key + ":lock") is None


def test_beat_refreshes_the_rankings_shoppers_asked_for_before_they_fall_due(
        shop, django_assert_num_queries):
    """shopreco.tasks.refresh_rankings rebuilds the catalogue-wide ranking and those of the
    categories requests have built, before they fall due: afterwards no request builds one,
    and new activity shows. Rankings still fresh for a while, and one a request is
    rebuilding right now, are left alone."""
    from django.core.cache import caches

    from shopreco import tasks

    cache = caches["default"]
    # The task's worker would fill its own memory cache: nothing done there.
    assert tasks.refresh_rankings.apply().get() == 0
    assert services.refresh_rankings(local=True) == 1  # nothing asked for yet: all products
    assert services.refresh_rankings(local=True) == 0  # still fresh
    books = services.popularity_ranking(shop.books)  # built by a request: remembered
    Rating.objects.create(user=shop.alice, product=shop.products[9], score=5)
    Rating.objects.create(user=shop.alice, product=shop.products[4], score=5)  # a book
    for key in (shopreco_cache.ranking_key(None), shopreco_cache.ranking_key(shop.books)):
        cache.set(key, {**cache.get(key), "fresh_until": time.time() + 10})  # due soon
    assert services.refresh_rankings(local=True) == 2
    with django_assert_num_queries(0):  # fresh copies: no request-time build
        every = services.popularity_ranking()
        again = services.popularity_ranking(shop.books)
    assert every[0][0] in (shop.products[9].pk, shop.products[4].pk)
    assert again[0][0] == shop.products[4].pk and again != books
    assert cache.get(shopreco_cache.ranking_key(shop.books))["fresh_until"] > time.time() + 100
    for key in (shopreco_cache.ranking_key(None), shopreco_cache.ranking_key(shop.books)):
        cache.set(key, {**cache.get(key), "fresh_until": 0})
    assert cache.add(shopreco_cache.ranking_key(None) + ":lock", 1)  # a request is rebuilding
    assert services.refresh_rankings(local=True) == 1  # only the category's


def test_a_category_that_cannot_be_ranked_is_forgotten_not_fatal(shop, monkeypatch):
    services.popularity_ranking(shop.books)
    services.popularity_ranking(shop.games)
    real = popularity.build_ranking

    def build(category):
        if shopreco_cache.category_pk(category) == shop.books.pk:
            raise ValueError("category: gone")
        return real(category)

    monkeypatch.setattr(popularity, "build_ranking", build)
    for key in (shopreco_cache.ranking_key(c) for c in (None, shop.books, shop.games)):
        shopreco_cache.get_cache().delete(key)
    assert services.refresh_rankings(local=True) == 2  # all products and games
    assert shopreco_cache.get_cache().get(shopreco_cache.RANKINGS_KNOWN_KEY) == [shop.games.pk]


def test_ranking_keys_cannot_collide():
    """No category key gives the catalogue-wide ranking's key, or another key's lock."""
    keys = {shopreco_cache.ranking_key(c) for c in (None, "None", "x", "x:lock", "a b", "ä")}
    assert len(keys) == 6
    assert shopreco_cache.ranking_key("x:lock") != shopreco_cache.ranking_key("x") + ":lock"
    assert all(" " not in k and k.isascii() for k in keys)
