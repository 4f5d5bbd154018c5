"""Approved Oscar reviews are the reviewers' ratings, kept in step as reviews change."""

from __future__ import annotations

import pytest
from oscar.core.loading import get_model

from shopreco.models import Rating

pytestmark = pytest.mark.django_db
ProductReview = get_model("reviews", "ProductReview")


def review(product, user, score, status=None, **fields):
    return ProductReview.objects.create(
        product=product, user=user, score=score, title="A review", body="Said it all.",
        status=ProductReview.APPROVED if status is None else status, **fields)


def ratings():
    return sorted(Rating.objects.values_list("user_id", "product_id", "score"))


def test_an_approved_review_is_a_rating(make_product, make_user):
    product, user = make_product(), make_user()
    review(product, user, 4)
    assert ratings() == [(user.pk, product.pk, 4.0)]


def test_a_review_awaiting_moderation_is_not(make_product, make_user):
    review(make_product(), make_user(), 5, status=ProductReview.FOR_MODERATION)
    assert ratings() == []


def test_edit_unapprove_approve_and_delete_keep_the_rating_in_step(make_product, make_user):
    product, user, other = make_product(), make_user(), make_user()
    mine = review(product, user, 2)
    review(product, other, 5)
    mine.score = 5
    mine.save()
    assert ratings() == [(user.pk, product.pk, 5.0), (other.pk, product.pk, 5.0)]
    mine.status = ProductReview.REJECTED
    mine.save()
    assert ratings() == [(other.pk, product.pk, 5.0)]
    mine.status = ProductReview.APPROVED
    mine.save()
    assert ratings() == [(user.pk, product.pk, 5.0), (other.pk, product.pk, 5.0)]
    mine.delete()
    assert ratings() == [(other.pk, product.pk, 5.0)]
    ProductReview.objects.filter(user=other).delete()  # a queryset delete, as the dashboard's
    assert ratings() == []


def test_a_variant_review_rates_its_parent_and_the_scale_is_kept(make_product, make_user):
    parent = make_product(structure="parent")
    child = make_product(parent=parent)
    user = make_user()
    zero = review(child, user, 0)  # Oscar allows 0 stars; shopreco's scale starts at 1
    assert ratings() == [(user.pk, parent.pk, 1.0)]
    zero.delete()
    assert ratings() == []


def test_anonymous_reviews_rate_nothing(make_product):
    review(make_product(), None, 5, name="Guest", email="guest@example.com")
    assert ratings() == []


def test_deleting_a_reviewer_or_a_product_still_works(make_product, make_user):
    product, user = make_product(), make_user()
    review(product, user, 4)
    review(make_product(), user, 3)
    other = make_user()
    review(product, other, 5)
    user.delete()
    assert ratings() == [(other.pk, product.pk, 5.0)]
    product.delete()
    assert ratings() == []
