"""A shopper's arm: drawn once by weighted hash, stored, stable across requests and share
changes, balanced over many ids; opt-out, Sec-GPC and cookie-less visitors never enrolled;
a user signing in adopts the arm of their session."""

from __future__ import annotations

import uuid

import pytest

from shopreco import services
from shopreco.models import Assignment, Experiment, Preference
from shopreco.serving import experiments
from shopreco.serving.request import ANONYMOUS_ID_SESSION_KEY, state

# chi-square critical value, 1 degree of freedom, p = 0.001
CHI2_1DF_P001 = 10.828


@pytest.mark.parametrize("shares", [(70, 30), (50, 50), (1, 3)])
def test_draw_is_balanced_by_share(shares):
    arms = (experiments.RunningArm(1, 1, shares[0], None),
            experiments.RunningArm(2, 1, shares[1], None))
    n = 10_000
    got = {1: 0, 2: 0}
    for i in range(n):
        got[experiments.draw("salt-1", experiments.shopper_id(visitor=f"v{i}"), arms).id] += 1
    total = sum(shares)
    chi2 = sum((got[a.id] - n * a.share / total) ** 2 / (n * a.share / total) for a in arms)
    assert chi2 < CHI2_1DF_P001, (got, chi2)


def test_draw_is_reproducible_and_differs_between_salts():
    arms = (experiments.RunningArm(1, 1, 50, None), experiments.RunningArm(2, 1, 50, None))
    ids = [experiments.shopper_id(visitor=uuid.uuid4().hex) for _ in range(200)]
    first = [experiments.draw("s1", i, arms).id for i in ids]
    assert first == [experiments.draw("s1", i, arms).id for i in ids]
    other = [experiments.draw("s2", i, arms).id for i in ids]
    assert first != other  # two experiments split the same shoppers independently
    zero = (experiments.RunningArm(1, 1, 0, None), experiments.RunningArm(2, 1, 5, None))
    assert {experiments.draw("s1", i, zero).id for i in ids} == {2}


def test_ten_thousand_stored_assignments_are_balanced(shop, experiment):
    exp = experiment(shares=(70, 30))
    running = experiments.running()
    n = 10_000
    for i in range(n):
        experiments.assign(running, visitor=f"visitor-{i}")
    a = Assignment.objects.filter(experiment=exp.experiment, arm=exp.a).count()
    b = Assignment.objects.filter(experiment=exp.experiment, arm=exp.b).count()
    assert a + b == n
    chi2 = (a - 0.7 * n) ** 2 / (0.7 * n) + (b - 0.3 * n) ** 2 / (0.3 * n)
    assert chi2 < CHI2_1DF_P001, (a, b)


def test_arm_is_stored_and_stable_across_requests_and_share_changes(shop, experiment,
                                                                    make_request):
    exp = experiment(shares=(0, 1))  # everyone drawn now lands in B
    request = make_request()
    session = request.session
    assert state(None, request)[0] == shop.run_b.pk
    row = Assignment.objects.get(experiment=exp.experiment)
    assert row.arm == exp.b and row.user is None
    assert row.visitor == session[ANONYMOUS_ID_SESSION_KEY]
    exp.a.share, exp.b.share = 1, 0  # now everyone new lands in A...
    exp.a.save()
    exp.b.save()
    for _ in range(3):  # ...but this visitor stays in B, on every request
        assert state(None, make_request(session_store=session))[0] == shop.run_b.pk
    assert Assignment.objects.count() == 1
    newcomer = make_request()
    assert state(None, newcomer)[0] == shop.run_a.pk
    assert Assignment.objects.get(visitor=newcomer.session[ANONYMOUS_ID_SESSION_KEY]).arm == exp.a


def test_signed_in_user_is_keyed_by_user(shop, experiment, make_request):
    exp = experiment(shares=(0, 1))
    assert services.active_run_id(make_request(shop.alice)) == shop.run_b.pk
    row = Assignment.objects.get()
    assert (row.user, row.visitor, row.arm) == (shop.alice, "", exp.b)


def test_a_second_draw_after_a_race_keeps_the_stored_arm(shop, experiment):
    exp = experiment(shares=(1, 0))
    Assignment.objects.create(experiment=exp.experiment, arm=exp.b, visitor="v1")
    running = experiments.running()
    # the read found nothing (another request stored it meanwhile): the unique constraint
    # wins and the stored arm is returned
    assert experiments._store(running[0], None, "v1") == exp.b.pk
    assert Assignment.objects.filter(visitor="v1").count() == 1


@pytest.mark.parametrize("who", ["opted-out", "gpc", "cookie-less", "not-running"])
def test_never_enrolled(shop, experiment, make_request, settings, who):
    settings.SHOPRECO = {**settings.SHOPRECO, "HONOR_GPC": True}
    experiment(shares=(0, 1),
               status=Experiment.Status.DRAFT if who == "not-running"
               else Experiment.Status.RUNNING)
    if who == "opted-out":
        Preference.objects.create(user=shop.alice, personalize=False)
        request = make_request(shop.alice)
    elif who == "gpc":
        request = make_request(headers={"Sec-GPC": "1"})
    elif who == "cookie-less":
        request = make_request(session=False)
    else:
        request = make_request()
    assert services.active_run_id(request) == shop.run_a.pk
    services.similar_products(shop.products[0], request=request)
    assert not Assignment.objects.exists()


def test_sign_in_adopts_the_session_arm(shop, experiment, client):
    exp = experiment(shares=(0, 1))
    client.session.save()
    client.get(f"/p/{shop.products[0].pk}/")
    visitor = Assignment.objects.get()
    assert visitor.arm == exp.b and visitor.user is None
    exp.a.share, exp.b.share = 1, 0  # a fresh draw for alice would now give A
    exp.a.save()
    exp.b.save()
    client.force_login(shop.alice)  # login(): user_logged_in, the session data kept
    row = Assignment.objects.get()
    assert (row.user, row.arm) == (shop.alice, exp.b)
    client.get(f"/p/{shop.products[0].pk}/")
    assert Assignment.objects.count() == 1


def test_sign_in_keeps_an_arm_the_user_already_has(shop, experiment, client):
    exp = experiment(shares=(0, 1))
    Assignment.objects.create(experiment=exp.experiment, arm=exp.a, user=shop.alice)
    client.session.save()
    client.get(f"/p/{shop.products[0].pk}/")
    client.force_login(shop.alice)
    assert Assignment.objects.get(user=shop.alice).arm == exp.a
    assert Assignment.objects.get(user__isnull=True).arm == exp.b
