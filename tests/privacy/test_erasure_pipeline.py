"""Erasure end to end with the real pipeline: after erasing a user (function, command or
account deletion), the next full run carries no trace of them in its similarities."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client

from shopreco import pipeline, privacy
from shopreco.models import Interaction, ItemSimilarity, Rating, Recommendation
from tests.privacy.helpers import count_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(user_factory, product_factory):
    """Ten products; five ordinary shoppers with overlapping tastes; one "target" who alone
    links products X and Y (rated both, bought both), so any X~Y neighbour comes from them."""
    products = [product_factory() for _ in range(10)]
    x, y = products[8], products[9]
    for u in range(5):
        user = user_factory()
        for j in range(6):
            score = 1 + (u + j * 2) % 5
            Rating.objects.create(user=user, product=products[(u + j) % 8], score=score)
        # X and Y are each known to others, but never together.
        Rating.objects.create(user=user, product=x if u % 2 else y, score=2 + u % 3)
        Interaction.objects.create(user=user, product=products[u], kind="purchase")
        Interaction.objects.create(user=user, product=products[u + 1], kind="purchase")
    target = user_factory(username="target")
    Rating.objects.create(user=target, product=x, score=5)
    Rating.objects.create(user=target, product=y, score=5)
    Rating.objects.create(user=target, product=products[0], score=1)
    Interaction.objects.create(user=target, product=x, kind="purchase")
    Interaction.objects.create(user=target, product=y, kind="purchase")
    Interaction.objects.create(user=target, product=products[1], kind="view")
    return target, x, y, products


def item_sets() -> dict[int, set]:
    """user id -> products they rated or acted on."""
    sets: dict[int, set] = {}
    for model in (Rating, Interaction):
        for user_id, product_id in model.objects.exclude(user=None).values_list(
            "user_id", "product_id"
        ):
            sets.setdefault(user_id, set()).add(product_id)
    return sets


def pairs_only_linked_by(user_id) -> set[tuple]:
    """Product pairs that no user but ``user_id`` connects: any neighbour link between them
    can only come from that user's data."""
    sets = item_sets()
    mine = sets[user_id]
    theirs = [s for u, s in sets.items() if u != user_id]
    return {
        (a, b) for a in mine for b in mine
        if a != b and not any(a in s and b in s for s in theirs)
    }


def linked(run, pairs) -> set[tuple]:
    rows = ItemSimilarity.objects.filter(run=run).values_list(
        "kind", "product_id", "similar_product_id"
    )
    return {(kind, a, b) for kind, a, b in rows if (a, b) in pairs}


def erase_by_function(user):
    privacy.erase_user_data(user)


def erase_by_command(user):
    call_command("shopreco_forget_user", user.username, interactive=False, stdout=io.StringIO())


def erase_by_account_deletion(user):
    user.delete()


def erase_by_api(user):
    client = Client()
    client.force_login(user)
    response = client.delete("/api/reco/me/data/")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "erase", [erase_by_function, erase_by_command, erase_by_account_deletion, erase_by_api],
    ids=["function", "command", "account-deletion", "api"],
)
def test_erased_user_leaves_no_trace_in_the_next_run(
    shop, erase, django_capture_on_commit_callbacks
):
    target, x, y, _ = shop
    first = pipeline.run_full_recompute()
    assert first.status == "succeeded", first.error
    assert first.counts["users"] == 6
    # Precondition: the target's data did create links that nobody else's data supports
    # (at least X~Y, both as "similar" and as "also bought").
    only_target = pairs_only_linked_by(target.pk)
    traces = linked(first, only_target)
    assert {(kind, a.pk, b.pk) for kind in ("similar", "also_bought")
            for a, b in ((x, y), (y, x))} <= traces
    assert Recommendation.objects.filter(run=first, user=target).exists()

    user_id = target.pk
    with django_capture_on_commit_callbacks(execute=True):
        erase(target)
    assert count_rows(user_id) == dict.fromkeys(count_rows(user_id), 0)
    assert not Recommendation.objects.filter(user_id=user_id).exists()

    second = pipeline.run_full_recompute()
    assert second.status == "succeeded", second.error
    assert linked(second, only_target) == set()
    assert second.counts["users"] == 5
    assert second.counts["ratings"] == first.counts["ratings"] - 3
    assert second.counts["events"] == first.counts["events"] - 3
    assert not Recommendation.objects.filter(user_id=user_id).exists()
    # The snapshot of the new run no longer lists the user.
    snap = pipeline.load_run_snapshot(second.pk)
    assert user_id not in {int(pk) for pk in snap.user_pks.tolist()}
