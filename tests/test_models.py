"""Models and constraints: unique ratings, the configurable scale, cascades, serving order."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import override_settings
from django.utils import timezone

from shopreco.models import (
    Deployment,
    Interaction,
    ItemSimilarity,
    Rating,
    Recommendation,
    RecomputeRun,
)

pytestmark = pytest.mark.django_db


def test_one_rating_per_user_and_product(user_factory, product_factory):
    user, product = user_factory(), product_factory()
    Rating.objects.create(user=user, product=product, score=4)
    with pytest.raises(IntegrityError), transaction.atomic():
        Rating.objects.create(user=user, product=product, score=2)
    assert Rating.objects.get(user=user, product=product).score == 4


@pytest.mark.parametrize("score", [0, 0.5, 5.5, 6, -1, 3.5])
def test_score_outside_default_scale_or_half_star_is_rejected(score, user_factory,
                                                              product_factory):
    rating = Rating(user=user_factory(), product=product_factory(), score=score)
    with pytest.raises(ValidationError) as err:
        rating.full_clean()
    assert "score" in err.value.message_dict


@pytest.mark.parametrize("score", [1, 2, 5])
def test_score_on_default_scale_is_accepted(score, user_factory, product_factory):
    Rating(user=user_factory(), product=product_factory(), score=score).full_clean()


def test_scale_follows_settings_at_validation_time(user_factory, product_factory):
    rating = Rating(user=user_factory(), product=product_factory(), score=3.5)
    with override_settings(SHOPRECO={"RATING_HALF_STARS": True}):
        rating.full_clean()
    with override_settings(SHOPRECO={"RATING_MIN": 0, "RATING_MAX": 10}):
        rating.score = 10
        rating.full_clean()
    with pytest.raises(ValidationError):
        rating.full_clean()


def test_event_kind_is_validated_and_extensible(user_factory, product_factory):
    event = Interaction(user=user_factory(), product=product_factory(), kind="wishlist")
    with pytest.raises(ValidationError) as err:
        event.full_clean()
    assert "kind" in err.value.message_dict
    weights = {"view": 1, "cart": 3, "purchase": 5, "wishlist": 2}
    with override_settings(SHOPRECO={"EVENT_WEIGHTS": weights}):
        event.full_clean()


def test_anonymous_event_keeps_session_key(product_factory):
    event = Interaction.objects.create(session_key="abc123", product=product_factory(), kind="view")
    event.full_clean()
    assert event.user is None and event.session_key == "abc123"


def _results_for(user, product, other):
    run = RecomputeRun.objects.create(status=RecomputeRun.Status.SUCCEEDED,
                                      finished_at=timezone.now())
    Deployment.objects.create(run=run)
    ItemSimilarity.objects.create(run=run, product=product, similar_product=other, score=0.5)
    ItemSimilarity.objects.create(run=run, product=other, similar_product=product, score=0.5)
    Recommendation.objects.create(run=run, user=user, product=other, score=4.2, rank=1,
                                  reason_product=product)
    Rating.objects.create(user=user, product=product, score=5)
    Interaction.objects.create(user=user, product=other, kind="view")
    return run


def test_deleting_a_user_removes_all_their_rows(user_factory, product_factory):
    user, product, other = user_factory(), product_factory(), product_factory()
    _results_for(user, product, other)
    user.delete()
    assert not Rating.objects.exists()
    assert not Interaction.objects.exists()
    assert not Recommendation.objects.exists()
    assert ItemSimilarity.objects.count() == 2  # not personal data


def test_deleting_a_product_leaves_no_orphans(user_factory, product_factory):
    user, product, other = user_factory(), product_factory(), product_factory()
    _results_for(user, product, other)
    product.delete()
    assert not Rating.objects.exists()
    assert not ItemSimilarity.objects.exists()
    # The recommendation of `other` stays; only its reason pointed at the deleted product.
    rec = Recommendation.objects.get()
    assert rec.product == other and rec.reason_product is None
    other.delete()
    assert not Recommendation.objects.exists() and not Interaction.objects.exists()


def test_the_live_run_is_the_latest_deployments_not_the_newest_run():
    now = timezone.now()
    old = RecomputeRun.objects.create(status="succeeded", finished_at=now - timedelta(hours=2))
    Deployment.objects.create(run=old)
    new = RecomputeRun.objects.create(status="succeeded", finished_at=now - timedelta(hours=1))
    Deployment.objects.create(run=new)
    RecomputeRun.objects.create(status="succeeded", finished_at=now)  # never deployed
    RecomputeRun.objects.create(status="running", started_at=now)
    RecomputeRun.objects.create(kind="evaluation", status="succeeded", finished_at=now)
    assert RecomputeRun.live() == new
    assert RecomputeRun.latest_succeeded() == new  # the old name reads the pointer too
    Deployment.objects.create(run=old)  # a rollback
    assert RecomputeRun.live() == old
    new.delete()
    assert RecomputeRun.live() == old
    old.delete()
    assert RecomputeRun.live() is None
