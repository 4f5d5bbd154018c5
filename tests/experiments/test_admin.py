"""The Experiment admin: arms inline with checked configurations, start / stop actions,
promotion, and the results page; staff only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from shopreco.models import Deployment, Experiment, ExperimentArm, RecomputeRun


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", "b@x.com", "pw"))
    return client


def _add(staff_client, arms):
    data = {"name": "New test", "arms-TOTAL_FORMS": str(len(arms)),
            "arms-INITIAL_FORMS": "0", "arms-MIN_NUM_FORMS": "0",
            "arms-MAX_NUM_FORMS": "1000"}
    for i, arm in enumerate(arms):
        for key, value in arm.items():
            data[f"arms-{i}-{key}"] = value
    return staff_client.post(reverse("admin:shopreco_experiment_add"), data)


def test_add_with_arms_normalises_the_configuration(shop, staff_client):
    response = _add(staff_client, [
        {"name": "control", "share": "50", "config": "{}"},
        {"name": "knn", "share": "50", "config": '{"k": 50, "algorithm": "item"}'},
    ])
    assert response.status_code == 302, response.content.decode()[:2000]
    exp = Experiment.objects.get()
    assert exp.status == Experiment.Status.DRAFT
    assert [(a.name, a.config) for a in exp.arms.order_by("pk")] == [
        ("control", {}), ("knn", {"algorithm": "item", "k": 50})]


@pytest.mark.parametrize("config, problem", [
    ('{"algorithm": "nope"}', "&#x27;algorithm&#x27; must be one of"),
    ('{"algorithm": "item", "neighbours": 5}', "unknown key(s) &#x27;neighbours&#x27;"),
    ('{"algorithm": "item", "k": "many"}', "&#x27;k&#x27; must be a number"),
])
def test_invalid_configuration_is_a_form_error_naming_the_problem(shop, staff_client, config,
                                                                  problem):
    response = _add(staff_client, [
        {"name": "control", "share": "50", "config": "{}"},
        {"name": "bad", "share": "50", "config": config},
    ])
    assert response.status_code == 200
    html = response.content.decode()
    assert "Not a valid configuration" in html and problem in html
    assert not Experiment.objects.exists()


def test_configuration_and_pinned_run_exclude_each_other(shop, staff_client):
    response = _add(staff_client, [
        {"name": "control", "share": "50", "config": "{}"},
        {"name": "both", "share": "50", "config": '{"algorithm": "item"}',
         "pinned_run": str(shop.run_b.pk)},
    ])
    assert response.status_code == 200
    assert "not both" in response.content.decode()


def _action(staff_client, action, *experiments):
    return staff_client.post(reverse("admin:shopreco_experiment_changelist"), {
        "action": action, "_selected_action": [e.pk for e in experiments]}, follow=True)


def test_start_and_stop(shop, experiment, staff_client, django_capture_on_commit_callbacks):
    exp = experiment(status=Experiment.Status.DRAFT).experiment
    with django_capture_on_commit_callbacks(execute=True):
        response = _action(staff_client, "start_experiments", exp)
    assert "started" in response.content.decode()
    exp.refresh_from_db()
    assert exp.status == Experiment.Status.RUNNING and exp.started_at is not None
    response = _action(staff_client, "stop_experiments", exp)
    exp.refresh_from_db()
    assert exp.status == Experiment.Status.STOPPED and exp.stopped_at is not None
    response = _action(staff_client, "start_experiments", exp)  # a stopped one stays stopped
    assert "only a draft experiment starts" in response.content.decode()


def test_start_refuses_one_arm_and_a_second_running_experiment(shop, experiment, staff_client):
    running = experiment().experiment
    lonely = Experiment.objects.create(name="lonely")
    ExperimentArm.objects.create(experiment=lonely, name="only")
    html = _action(staff_client, "start_experiments", lonely).content.decode()
    assert "needs at least two arms" in html
    second = experiment(status=Experiment.Status.DRAFT).experiment
    html = _action(staff_client, "start_experiments", second).content.decode()
    assert f"stop {running.name} first" in html
    second.refresh_from_db()
    assert second.status == Experiment.Status.DRAFT


def _promote(staff_client, exp, arm):
    url = reverse("admin:shopreco_experiment_promote", args=[exp.pk, arm.pk])
    return staff_client.post(url, follow=True)


def test_promote_a_pinned_arm_deploys_its_run_and_stops(shop, experiment, staff_client):
    exp = experiment()
    html = _promote(staff_client, exp.experiment, exp.b).content.decode()
    assert "promoted" in html
    assert RecomputeRun.live() == shop.run_b
    deployment = Deployment.objects.order_by("-pk").first()
    assert deployment.activated_by.username == "boss" and "arm B" in deployment.note
    exp.experiment.refresh_from_db()
    assert exp.experiment.status == Experiment.Status.STOPPED
    assert exp.experiment.promoted_arm == exp.b


def test_promote_the_live_arm_only_stops(shop, experiment, staff_client):
    exp = experiment()
    deployments = Deployment.objects.count()
    _promote(staff_client, exp.experiment, exp.a)
    assert RecomputeRun.live() == shop.run_a and Deployment.objects.count() == deployments
    exp.experiment.refresh_from_db()
    assert (exp.experiment.status, exp.experiment.promoted_arm) == (
        Experiment.Status.STOPPED, exp.a)


def test_promote_a_configuration_arm_without_a_run_says_why(shop, experiment, staff_client):
    exp = experiment(b={"config": {"algorithm": "item"}})
    html = _promote(staff_client, exp.experiment, exp.b).content.decode()
    assert "was not promoted" in html and "not computed yet" in html
    exp.experiment.refresh_from_db()
    assert exp.experiment.status == Experiment.Status.RUNNING
    assert staff_client.get(reverse("admin:shopreco_experiment_promote",
                                    args=[exp.experiment.pk, exp.b.pk])).status_code == 405


def test_results_page(shop, experiment, staff_client, client):
    exp = experiment()
    url = reverse("admin:shopreco_experiment_results", args=[exp.experiment.pk])
    html = staff_client.get(url).content.decode()
    assert 'id="shopreco-experiment-results"' in html
    assert 'data-arm="A"' in html and 'data-arm="B"' in html
    assert f"pinned run #{shop.run_b.pk}" in html and "Promote" in html
    assert staff_client.get(reverse("admin:shopreco_experiment_changelist")).status_code == 200
    assert staff_client.get(reverse("admin:shopreco_experiment_change",
                                    args=[exp.experiment.pk])).status_code == 200


def test_results_page_is_staff_only(shop, experiment, client):
    exp = experiment()
    client.force_login(shop.alice)
    url = reverse("admin:shopreco_experiment_results", args=[exp.experiment.pk])
    response = client.get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]
    response = client.post(reverse("admin:shopreco_experiment_promote",
                                   args=[exp.experiment.pk, exp.b.pk]))
    assert response.status_code == 302
    assert RecomputeRun.live() == shop.run_a


def test_promote_a_configuration_arm_deploys_its_arm_run(shop, experiment, staff_client):
    exp = experiment(b={"config": {"algorithm": "item"}})
    arm_run = RecomputeRun.objects.create(kind=RecomputeRun.Kind.ARM, status="succeeded",
                                          params={"config": {"algorithm": "item"}})
    ExperimentArm.objects.filter(pk=exp.b.pk).update(run=arm_run)
    html = _promote(staff_client, exp.experiment, exp.b).content.decode()
    assert "promoted" in html
    assert RecomputeRun.live() == arm_run
    exp.experiment.refresh_from_db()
    assert exp.experiment.status == Experiment.Status.STOPPED
    assert exp.experiment.promoted_arm_id == exp.b.pk
