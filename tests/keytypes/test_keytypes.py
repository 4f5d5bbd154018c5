"""shopreco with a product model keyed by an integer, a UUID or text (run by
tests/test_product_keys.py once per settings_<kind>; see conftest.py)."""

from __future__ import annotations

import importlib.util
import uuid
import warnings

import pytest
from django.conf import settings
from django.core.cache.backends.base import CacheKeyWarning
from django.db import models

from shopreco.conf import get_product_model
from shopreco.models import (
    Deployment,
    Interaction,
    ItemSimilarity,
    Rating,
    Recommendation,
    RecomputeRun,
)

pytestmark = pytest.mark.django_db
KIND = settings.SHOPRECO_PRODUCT_MODEL.split(".")[0]
PK_FIELD = {"intpk": models.AutoField, "uuidpk": models.UUIDField, "textpk": models.CharField}
PK_TYPE = {"intpk": int, "uuidpk": uuid.UUID, "textpk": str}


def make_products(n: int) -> list:
    model = get_product_model()
    if KIND == "textpk":
        # Keys with a slash, spaces and non-ASCII: they must survive snapshots and mapping.
        return [model.objects.create(sku=f"SKU/ä {i:03d}", title=f"Item {i}") for i in range(n)]
    return [model.objects.create(name=f"Item {i}") for i in range(n)]


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("shopper", password="pw")


def test_the_swapped_model_is_in_use():
    model = get_product_model()
    assert model._meta.app_label == KIND
    assert type(model._meta.pk) is PK_FIELD[KIND]
    for related in (Rating, Interaction, ItemSimilarity, Recommendation):
        assert related._meta.get_field("product").related_model is model
    product = make_products(1)[0]
    assert isinstance(product.pk, PK_TYPE[KIND])


def test_create_read_and_cascade(user, django_user_model):
    a, b, c = make_products(3)
    other = django_user_model.objects.create_user("other", password="pw")
    Rating.objects.create(user=user, product=a, score=4)
    Rating.objects.create(user=other, product=b, score=2)
    Interaction.objects.create(user=user, product=a, kind="view")
    Interaction.objects.create(session_key="s1", product=b, kind="cart")
    run = RecomputeRun.objects.create(status=RecomputeRun.Status.SUCCEEDED)
    Deployment.objects.create(run=run)
    ItemSimilarity.objects.create(run=run, product=a, similar_product=b, score=0.5)
    ItemSimilarity.objects.create(run=run, product=b, similar_product=c, score=0.4)
    ItemSimilarity.objects.create(run=run, kind="also_bought", product=c, similar_product=a,
                                  score=0.3)
    Recommendation.objects.create(run=run, user=user, product=b, score=1, rank=1,
                                  reason="rated", reason_product=a)
    Recommendation.objects.create(run=run, user=other, product=c, score=1, rank=1)

    # Reads by key and joins back to the product, with the key's own type.
    rating = Rating.objects.select_related("product").get(product_id=a.pk)
    assert rating.product == a and isinstance(rating.product_id, PK_TYPE[KIND])
    assert Rating.objects.filter(product__in=[a, b]).count() == 2
    assert set(ItemSimilarity.objects.filter(product=b).values_list("similar_product_id",
                                                                    flat=True)) == {c.pk}

    a.delete()  # cascades on both sides of a similarity; the reason product is only unset
    assert not Rating.objects.filter(product_id=a.pk).exists()
    assert not Interaction.objects.filter(product_id=a.pk).exists()
    assert list(ItemSimilarity.objects.values_list("product_id", "similar_product_id")) == [
        (b.pk, c.pk)]
    recommendation = Recommendation.objects.get(user=user)
    assert recommendation.product == b and recommendation.reason_product is None

    other.delete()
    assert not Rating.objects.filter(user_id=other.pk).exists()
    assert not Recommendation.objects.filter(user_id=other.pk).exists()
    assert Interaction.objects.filter(session_key="s1", product=b).exists()
    user.delete()
    assert not Recommendation.objects.exists()


@pytest.mark.skipif(importlib.util.find_spec("shopreco.pipeline") is None,
                    reason="shopreco.pipeline is not written yet")
def test_full_recompute_maps_results_back_to_these_keys(
        django_user_model, monkeypatch, django_capture_on_commit_callbacks):
    from shopreco import pipeline

    products = make_products(8)
    group_a, group_b = products[:4], products[4:]
    users = [django_user_model.objects.create_user(f"u{i}", password="pw") for i in range(8)]
    # Two clear tastes: half the shoppers like group A, the other half group B; each leaves
    # one product of their group unrated so there is something to recommend.
    for i, shopper in enumerate(users):
        liked, disliked = (group_a, group_b) if i < 4 else (group_b, group_a)
        for j, product in enumerate(liked):
            if j != i % 4:
                Rating.objects.create(user=shopper, product=product, score=5)
        Rating.objects.create(user=shopper, product=disliked[i % 4], score=1)
        Interaction.objects.create(user=shopper, product=liked[(i + 1) % 4], kind="purchase")

    from shopreco import cache as shopreco_cache

    monkeypatch.setattr(shopreco_cache, "is_shared", lambda: True)
    with django_capture_on_commit_callbacks(execute=True):
        run = pipeline.run_full_recompute()

    assert run.status == RecomputeRun.Status.SUCCEEDED, run.error
    keys = {p.pk for p in products}
    sims = list(ItemSimilarity.objects.filter(run=run, kind="similar")
                .values_list("product_id", "similar_product_id", "score"))
    assert sims and all(p in keys and q in keys for p, q, _ in sims)
    assert all(isinstance(p, PK_TYPE[KIND]) for p, _, _ in sims)
    # The best neighbour of each product is from its own group.
    best = {}
    for p, q, score in sims:
        if p not in best or score > best[p][1]:
            best[p] = (q, score)
    in_a = {p.pk for p in group_a}
    assert best and all((p in in_a) == (q in in_a) for p, (q, _) in best.items())

    recs = list(Recommendation.objects.filter(run=run).values_list("user_id", "product_id"))
    assert recs and all(p in keys for _, p in recs)
    rated = set(Rating.objects.values_list("user_id", "product_id"))
    assert not rated & set(recs)
    for i, shopper in enumerate(users):
        top = (Recommendation.objects.filter(run=run, user=shopper).order_by("rank")
               .values_list("product_id", flat=True).first())
        if top is not None:
            assert (top in in_a) == (i < 4)

    services = importlib.util.find_spec("shopreco.services")
    if services is not None:
        from shopreco.services import similar_products

        # The lists cached as the run went live hold keys of this type, in the database's
        # order: serving finds its products with them. Text keys are not warmed (their
        # order among equal scores follows the database's collation).
        for kind in ("similar", "also_bought"):
            for p in products:
                stored = list(ItemSimilarity.objects.filter(run=run, kind=kind, product=p)
                              .order_by("-score", "similar_product_id")
                              .values_list("similar_product_id", "score"))
                got = shopreco_cache.get_cache().get(
                    shopreco_cache.neighbour_key(run.pk, kind, p.pk))
                assert got == (None if KIND == "textpk" else stored), (kind, p.pk)

        # Cache keys stay valid for every backend (memcached refuses spaces and non-ASCII,
        # which text keys may hold): Django warns about such keys, here an error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheKeyWarning)
            listed = similar_products(group_a[0], limit=3)
            listed = similar_products(group_a[0], limit=3)  # the cached neighbour list
        assert listed.items and all(item.product.pk in keys for item in listed.items)

        # A listing in a new shopper's order: their history's keys find the run's columns.
        import shopreco
        from shopreco.serving import ranking

        monkeypatch.setattr(ranking, "WAIT_FOR_WEIGHTS", True)
        ranking.forget_weights()
        fan = django_user_model.objects.create_user("fan", password="pw")
        Rating.objects.create(user=fan, product=group_b[0], score=5)
        Interaction.objects.create(user=fan, product=group_b[1], kind="purchase")
        ranked = shopreco.rank(products, fan, blend=1)
        assert ranked.personal
        assert {p.pk for p in list(ranked)[:2]} <= {p.pk for p in group_b}
        ranking.forget_weights()
