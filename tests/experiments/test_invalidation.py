"""The cached running experiments never outlive a change: starting, stopping, an arm's
share or run, a deleted pinned run; and a cache outage serves the arm from the database."""

from __future__ import annotations

from shopreco import cache, services
from shopreco.admin.experiments import start, stop
from shopreco.models import Experiment
from tests.storefront.test_outage_cache import FlakyCache, flaky  # noqa: F401 - fixture


def test_start_and_stop_take_effect_on_the_next_request(shop, experiment, make_request,
                                                        django_capture_on_commit_callbacks):
    assert services.active_run_id(make_request()) == shop.run_a.pk  # caches "none running"
    assert cache.running_experiments() == []
    exp = experiment(shares=(0, 1), status=Experiment.Status.DRAFT)
    with django_capture_on_commit_callbacks(execute=True):
        assert start(exp.experiment) == ""
    request = make_request()
    assert services.active_run_id(request) == shop.run_b.pk
    assert services.active_run_id(make_request(session_store=request.session)) == shop.run_b.pk
    with django_capture_on_commit_callbacks(execute=True):
        assert stop(exp.experiment)
    assert services.active_run_id(make_request(session_store=request.session)) == shop.run_a.pk


def test_an_arm_edit_and_a_deleted_pinned_run_take_effect(shop, experiment, make_request):
    exp = experiment(shares=(0, 1))
    request = make_request()
    assert services.active_run_id(request) == shop.run_b.pk
    exp.b.pinned_run = None  # arm B now serves the live run
    exp.b.save()
    assert services.active_run_id(make_request(session_store=request.session)) == shop.run_a.pk
    exp.b.pinned_run = shop.run_b
    exp.b.save()
    assert services.active_run_id(make_request(session_store=request.session)) == shop.run_b.pk
    shop.run_b.delete()  # e.g. pruned: the arm falls back to the live run
    assert services.active_run_id(make_request(session_store=request.session)) == shop.run_a.pk


def test_a_cache_outage_serves_the_arm_from_the_database(shop, experiment, make_request,
                                                         flaky):  # noqa: F811
    experiment(shares=(0, 1))
    request = make_request()
    assert services.active_run_id(request) == shop.run_b.pk
    FlakyCache.down = True
    again = make_request(session_store=request.session)
    assert services.active_run_id(again) == shop.run_b.pk
    similar = services.similar_products(shop.products[0], limit=1, request=again)
    assert similar.items[0].product == shop.products[9]
