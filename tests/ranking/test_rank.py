"""shopreco.rank(): the host's listing in the shopper's order."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import shopreco
from shopreco import tracking
from shopreco.models import Impression, Interaction, Preference
from shopreco.serving import ranking
from shopreco.serving.request import memo


def pks(listing):
    return [p.pk for p in listing]


def gamer(user_factory, shop, kinds=("purchase", "view", "view")):
    """A new shopper with a planted taste for games."""
    user = user_factory()
    for p, kind in zip(shop.games[:3], kinds, strict=False):
        Interaction.objects.create(user=user, product=p, kind=kind)
    return user


def host_order(shop):
    """The host's listing: books first (by name), the planted taste's games last."""
    return sorted(shop.products, key=lambda p: p.name)


# --------------------------------------------------------------------------- the order


def test_planted_taste_comes_first(taste_shop, user_factory, make_request):
    user = gamer(user_factory, taste_shop)
    listing = host_order(taste_shop)
    ranked = shopreco.rank(listing, make_request(user), blend=1)
    games = {p.pk for p in taste_shop.games}
    assert ranked.personal
    assert all(pk in games for pk in pks(ranked)[:7]), [p.name for p in ranked]
    assert sorted(pks(ranked)) == sorted(pks(listing))  # reordered, nothing lost or added
    first = ranked.items[0]
    assert first.score > 0 and first.reason_kind in ("bought", "viewed")
    assert first.reason_product in taste_shop.games[:3]
    assert first.reason.startswith("Because you")


def test_default_blend_lifts_the_taste_but_keeps_the_host_in_view(
        taste_shop, user_factory, make_request):
    user = gamer(user_factory, taste_shop)
    listing = host_order(taste_shop)
    ranked = shopreco.rank(listing, make_request(user))
    pure = shopreco.rank(listing, make_request(user), blend=1)
    games = {p.pk for p in taste_shop.games}
    # an even blend moves the shopper's favourite up without burying the host's first
    assert pks(ranked).index(pure[0].pk) < pks(listing).index(pure[0].pk) - 3
    assert pks(ranked).index(listing[0].pk) < 3
    where = [i for i, pk in enumerate(pks(ranked)) if pk in games]
    assert np.mean(where) < np.mean([i for i, p in enumerate(listing) if p.pk in games]) - 1


def test_blend_zero_is_the_host_order_and_one_the_personal_order(
        taste_shop, user_factory, make_request):
    user = gamer(user_factory, taste_shop)
    listing = host_order(taste_shop)
    assert pks(shopreco.rank(listing, make_request(user), blend=0)) == pks(listing)
    pure = shopreco.rank(listing, make_request(user), blend=1)
    scores = [item.score for item in pure.items]
    assert scores == sorted(scores, reverse=True)
    # ties (no evidence) keep the host's order
    tied = [item.host_position for item in pure.items if item.score == 0]
    assert tied == sorted(tied)


def test_only_the_first_limit_products_are_reordered(taste_shop, user_factory, make_request):
    user = gamer(user_factory, taste_shop)
    listing = host_order(taste_shop)[::-1][5:] + host_order(taste_shop)[::-1][:5]
    ranked = shopreco.rank(listing, make_request(user), limit=8, blend=1)
    assert sorted(pks(ranked)[:8]) == sorted(pks(listing)[:8])
    assert pks(ranked)[8:] == pks(listing)[8:]
    assert len(ranked.items) == 8 and len(ranked) == len(listing)


def test_rank_limit_setting(taste_shop, user_factory, make_request, settings):
    settings.SHOPRECO = {**settings.SHOPRECO, "RANK_LIMIT": 3}
    user = gamer(user_factory, taste_shop)
    listing = host_order(taste_shop)
    ranked = shopreco.rank(listing, make_request(user), blend=1)
    assert len(ranked.items) == 3 and pks(ranked)[3:] == pks(listing)[3:]


def test_a_queryset_keeps_its_rest_lazy_and_pages_like_one(
        taste_shop, user_factory, make_request, django_assert_num_queries):
    from django.core.paginator import Paginator

    from demo_shop.catalog.models import Product

    user = gamer(user_factory, taste_shop)
    qs = Product.objects.order_by("name")
    ranked = shopreco.rank(qs, make_request(user), limit=6, blend=1)
    assert pks(ranked)[6:] == list(qs.values_list("pk", flat=True))[6:]
    assert len(ranked) == 20 and ranked.count() == 20
    page = Paginator(ranked, 5).page(2)
    assert pks(page.object_list) == pks(ranked)[5:10]
    with django_assert_num_queries(0):
        assert pks(ranked[:6]) == pks(ranked.window)


# --------------------------------------------------------------------------- host order kept


def test_guests_without_history_keep_the_host_order(taste_shop, make_request):
    listing = host_order(taste_shop)
    ranked = shopreco.rank(listing, make_request())
    assert pks(ranked) == pks(listing) and not ranked.personal
    assert all(item.reason == "" for item in ranked.items)
    assert pks(shopreco.rank(listing, None)) == pks(listing)


def test_a_search_keeps_its_order_without_history(taste_shop, user_factory, make_request):
    from demo_shop.catalog.models import Product

    search = Product.objects.filter(name__icontains="0").order_by("-name")
    expected = list(search.values_list("pk", flat=True))
    ranked = shopreco.rank(search, make_request(user_factory()), blend=1)
    assert pks(ranked) == expected


def test_opted_out_shoppers_keep_the_host_order(taste_shop, user_factory, make_request):
    user = gamer(user_factory, taste_shop)
    Preference.objects.create(user=user, personalize=False)
    listing = host_order(taste_shop)
    ranked = shopreco.rank(listing, make_request(user), blend=1)
    assert pks(ranked) == pks(listing) and not ranked.personal
    impression = Impression.objects.get(recommendation_id=ranked.recommendation_id)
    assert impression.user is None and impression.session_key == ""


def test_gpc_visitors_keep_the_host_order(taste_shop, user_factory, make_request):
    user = gamer(user_factory, taste_shop)
    listing = host_order(taste_shop)
    ranked = shopreco.rank(listing, make_request(user, headers={"Sec-GPC": "1"}), blend=1)
    assert pks(ranked) == pks(listing)


def test_anonymous_session_history_ranks_like_a_shopper(taste_shop, make_request):
    request = make_request()
    tracking.track(request, taste_shop.games[0], "purchase")
    tracking.track(request, taste_shop.games[1], "view")
    listing = host_order(taste_shop)
    ranked = shopreco.rank(listing, request, blend=1)
    games = {p.pk for p in taste_shop.games}
    assert ranked.personal and all(pk in games for pk in pks(ranked)[:6])


def test_a_run_without_files_keeps_the_host_order(taste_shop, user_factory, make_request,
                                                  settings, tmp_path):
    user = gamer(user_factory, taste_shop)
    settings.MEDIA_ROOT = str(tmp_path / "elsewhere")  # the run's files are not there
    listing = host_order(taste_shop)
    assert pks(shopreco.rank(listing, make_request(user), blend=1)) == pks(listing)


# --------------------------------------------------------------------------- attribution, cost


def test_a_purchase_from_a_ranked_listing_is_credited(taste_shop, user_factory, make_request):
    user = gamer(user_factory, taste_shop)
    ranked = shopreco.rank(host_order(taste_shop), make_request(user), blend=1)
    impression = Impression.objects.get(recommendation_id=ranked.recommendation_id)
    assert impression.widget == "rank" and impression.user == user
    assert impression.products == pks(ranked.window)
    item = ranked.items[0]
    assert f"rec={ranked.recommendation_id}" in item.url
    # the product page the link leads to, then the checkout, in one session
    page = make_request(user, path=item.url.split("?")[0], rec=ranked.recommendation_id)
    tracking.mark_viewed(page, item.product)
    checkout = make_request(user)
    checkout.session = page.session
    bought = shopreco.track(checkout, item.product, "purchase")
    assert bought.recommendation_id == ranked.recommendation_id


def test_query_budget(taste_shop, user_factory, make_request, django_assert_num_queries):
    """Beyond the host's own query: the request state (shared with the page's widgets) and
    the shopper's history; the impression is written after the response."""
    user = gamer(user_factory, taste_shop)
    listing = host_order(taste_shop)
    shopreco.rank(listing, make_request(user))  # the process reads the run's weights once
    request = make_request(user)
    memo(request)["middleware"] = True  # as under ShopRecoMiddleware
    with django_assert_num_queries(2):
        ranked = shopreco.rank(listing, request)
    assert ranked.personal and len(memo(request)["impressions"]) == 1
    with django_assert_num_queries(1):  # reasons that name a product: one query for all
        [item.reason for item in ranked.items]


@pytest.mark.parametrize("kw,name", [({"blend": 1.5}, "blend"), ({"blend": "x"}, "blend"),
                                     ({"limit": 0}, "limit"), ({"limit": "many"}, "limit")])
def test_bad_arguments_name_the_argument(taste_shop, make_request, kw, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        shopreco.rank(taste_shop.products, make_request(), **kw)


# --------------------------------------------------------------------------- the arithmetic


def test_personal_scores_and_fusion_on_arrays():
    W = sp.csr_matrix(np.array([
        [0, 2, 0, 1],
        [0, 0, 3, 0],
        [0, 0, 0, 0],
        [1, 0, 0, 0],
    ], dtype=np.float32))
    # history: product 0 (weight 1) and product 1 (weight 0.5); candidates 3, 2, 1, and an
    # unknown product
    scores, reasons = ranking.personal_scores(
        W, np.array([0, 1]), np.array([1.0, 0.5]), np.array([3, 2, 1, -1]))
    assert scores.tolist() == [1.0, 1.5, 2.0, 0.0]
    assert reasons.tolist() == [0, 1, 0, -1]
    assert ranking.fuse(scores, 1.0).tolist() == [2, 1, 0, 3]
    assert ranking.fuse(scores, 0.0).tolist() == [0, 1, 2, 3]
    assert ranking.personal_ranks(np.array([0.0, 2.0, 2.0, 1.0])).tolist() == [4, 1, 1, 3]
    # a product listed twice scores the same in both places
    scores, reasons = ranking.personal_scores(
        W, np.array([0, 1]), np.array([1.0, 0.5]), np.array([2, 1, 2]))
    assert scores.tolist() == [1.5, 2.0, 1.5] and reasons.tolist() == [1, 0, 1]


def test_pruning_keeps_the_largest_positive_weights():
    W = np.array([[0, 5, -9, 1], [2, 0, 3, -1], [-1, -2, 0, -3], [4, 4, 1, 0]],
                 dtype=np.float32)
    P = ranking.prune_head(W, np.array([0, 2, 4, 5]), 6, k=2).toarray()
    assert P[0].tolist() == [0, 0, 5, 0, 0, 1]
    assert P[2].tolist() == [2, 0, 0, 0, 3, 0]
    assert P[4].tolist() == [0] * 6
    assert sorted(P[5].tolist()) == [0, 0, 0, 0, 4, 4]


def test_history_is_the_most_recent_rows_with_ratings_winning(
        taste_shop, user_factory, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from shopreco.models import Rating
    from shopreco.serving.request import Viewer

    user = user_factory()
    now = timezone.now()
    a, b, c = taste_shop.games[:3]
    Interaction.objects.create(user=user, product=a, kind="view",
                               created_at=now - timedelta(days=3))
    Interaction.objects.create(user=user, product=b, kind="view", created_at=now)
    Interaction.objects.create(user=user, product=b, kind="view", created_at=now)
    Interaction.objects.create(user=user, product=b, kind="cart", created_at=now)
    Rating.objects.create(user=user, product=c, score=2)
    Rating.objects.filter(user=user).update(updated_at=now - timedelta(days=2))
    Interaction.objects.create(user=user, product=c, kind="purchase",
                               created_at=now - timedelta(days=1))
    rows = ranking.history_rows(Viewer(user))
    assert {tuple(row) for row in rows} == {
        (a.pk, None, "view", 1), (b.pk, None, "view", 2), (b.pk, None, "cart", 1),
        (c.pk, 2.0, "", 1), (c.pk, None, "purchase", 1)}
    history = ranking.history_of(rows)
    by_pk = dict(zip(history.pks, zip(history.weights.tolist(), history.codes, strict=True),
                     strict=True))
    assert by_pk[c.pk] == (0.5 + 0.5 * 0.25, "rated")  # the rating wins over the purchase
    assert by_pk[b.pk][1] == "carted" and by_pk[b.pk][0] > by_pk[a.pk][0]
    monkeypatch.setattr(ranking, "HISTORY_ROWS", 2)
    recent = {pk for pk, *_ in ranking.history_rows(Viewer(user))}
    assert recent == {b.pk}  # the two newest rows: b's view and cart (the rating is older)


def test_weights_are_read_in_the_background_meanwhile_the_host_order(
        taste_shop, user_factory, make_request, monkeypatch):
    import threading

    monkeypatch.setattr(ranking, "WAIT_FOR_WEIGHTS", False)
    user = gamer(user_factory, taste_shop)
    listing = host_order(taste_shop)
    first = shopreco.rank(listing, make_request(user), blend=1)
    assert pks(first) == pks(listing) and not first.personal
    for thread in threading.enumerate():
        if thread.name.startswith("shopreco-rank-weights-"):
            thread.join(timeout=30)
    assert shopreco.rank(listing, make_request(user), blend=1).personal
