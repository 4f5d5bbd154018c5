"""shopreco.privacy: export, erasure, preferences, retention and pseudonyms."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from shopreco import privacy
from shopreco.models import (
    Impression,
    Interaction,
    PendingRefresh,
    Preference,
    Rating,
    Recommendation,
)
from tests.privacy.helpers import count_rows

pytestmark = pytest.mark.django_db


# --- export ---------------------------------------------------------------------------------


def test_export_contains_every_row_of_the_user_and_nothing_of_others(footprint):
    me, other = footprint(), footprint()
    data = privacy.export_user_data(me.user)

    json.dumps(data)  # serialisable as is, no custom encoder needed
    assert data["user"]["id"] == me.user.pk
    assert data["user"]["username"] == me.user.username
    assert len(data["ratings"]) == Rating.objects.filter(user=me.user).count() == 2
    assert len(data["events"]) == Interaction.objects.filter(user=me.user).count() == 3
    assert len(data["recommendations"]) == Recommendation.objects.filter(user=me.user).count()
    assert len(data["impressions"]) == 1
    assert data["pending_refresh"] is not None
    assert data["preferences"]["personalize"] is True

    rated = {(r["product"]["pk"], r["score"]) for r in data["ratings"]}
    assert rated == set(Rating.objects.filter(user=me.user).values_list("product_id", "score"))
    kinds = sorted(e["type"] for e in data["events"])
    assert kinds == ["cart", "purchase", "view"]
    assert {e["recommendation_id"] for e in data["events"]} == {None, "abc123"}
    # Names come with the keys, so the export is readable by the person it is about.
    assert data["ratings"][0]["product"]["name"] == me.products[0].name
    # Nothing of the other user leaks in.
    assert str(other.user.username) not in json.dumps(data)


def test_export_marks_the_served_list_and_keeps_reasons(footprint):
    me = footprint()
    data = privacy.export_user_data(me.user)
    current = [r for r in data["recommendations"] if r["current"]]
    assert [r["run"] for r in current] == [me.run.pk, me.run.pk]
    assert [r["rank"] for r in current] == [0, 1]
    assert all(r["reason"] == "rated" for r in current)
    assert all(r["reason_product"]["pk"] == me.products[0].pk for r in current)
    assert len(data["recommendations"]) - len(current) == 1  # the older run's row is listed too


def test_export_reports_opt_out_and_optional_session_events(footprint, product_factory):
    me = footprint()
    privacy.set_preferences(me.user, False)
    Interaction.objects.create(session_key="sess-1", product=me.products[0], kind="view")
    Interaction.objects.create(session_key="sess-2", product=me.products[1], kind="view")
    Impression.objects.create(widget="popular", session_key="sess-1", products=[1, 2])
    Impression.objects.create(widget="popular", session_key="sess-2", products=[3])

    data = privacy.export_user_data(me.user, session_key="sess-1")
    assert data["preferences"]["personalize"] is False
    assert [e["product"]["pk"] for e in data["session_events"]] == [me.products[0].pk]
    assert [i["products"] for i in data["session_impressions"]] == [[1, 2]]
    plain = privacy.export_user_data(me.user)
    assert "session_events" not in plain and "session_impressions" not in plain


def test_export_of_a_user_with_no_data_is_empty_not_an_error(user_factory):
    data = privacy.export_user_data(user_factory())
    assert data["ratings"] == data["events"] == data["recommendations"] == []
    assert data["pending_refresh"] is None


@pytest.mark.parametrize("fn", [privacy.export_user_data, privacy.erase_user_data,
                                privacy.get_preferences])
def test_anonymous_user_is_refused_with_a_clear_error(fn):
    with pytest.raises(ValueError, match="user"):
        fn(AnonymousUser())


# --- erasure --------------------------------------------------------------------------------


def test_erase_removes_all_rows_of_the_user_and_reports_counts(footprint):
    me, other = footprint(), footprint()
    before_other = count_rows(other.user)

    counts = privacy.erase_user_data(me.user)

    assert counts == me.rows
    assert count_rows(me.user) == dict.fromkeys(me.rows, 0)
    assert count_rows(other.user) == before_other


def test_erase_keeps_the_opt_out_so_the_user_stays_untracked(footprint):
    me = footprint()
    privacy.set_preferences(me.user, False)
    privacy.erase_user_data(me.user)
    assert Preference.objects.get(user=me.user).personalize is False


def test_erase_with_session_key_removes_that_sessions_anonymous_events(footprint):
    me = footprint()
    Interaction.objects.create(session_key="mine", product=me.products[0], kind="view")
    Interaction.objects.create(session_key="theirs", product=me.products[0], kind="view")
    Impression.objects.create(widget="popular", session_key="mine", products=[1])
    Impression.objects.create(widget="popular", session_key="theirs", products=[1])
    counts = privacy.erase_user_data(me.user, session_key="mine")
    assert counts["session_events"] == counts["session_impressions"] == 1
    assert list(Interaction.objects.values_list("session_key", flat=True)) == ["theirs"]
    assert list(Impression.objects.values_list("session_key", flat=True)) == ["theirs"]


def test_erase_twice_is_harmless(footprint):
    me = footprint()
    privacy.erase_user_data(me.user)
    assert set(privacy.erase_user_data(me.user).values()) == {0}


def test_deleting_the_user_account_removes_every_shopreco_row(footprint):
    me, other = footprint(), footprint()
    privacy.set_preferences(me.user, True)
    user_id = me.user.pk
    me.user.delete()
    for model in (Rating, Interaction, Recommendation, Impression, PendingRefresh, Preference):
        assert not model.objects.filter(user_id=user_id).exists(), model.__name__
    assert count_rows(other.user) == other.rows


# --- preferences ----------------------------------------------------------------------------


def test_preferences_default_to_personalised_without_writing(user_factory):
    user = user_factory()
    assert privacy.get_preferences(user)["personalize"] is True
    assert not Preference.objects.filter(user=user).exists()


def test_opting_out_drops_personal_list_and_queued_refresh_but_keeps_history(footprint):
    me = footprint()
    result = privacy.set_preferences(me.user, False)
    assert result["personalize"] is False
    assert privacy.get_preferences(me.user)["personalize"] is False
    rows = count_rows(me.user)
    assert rows["recommendations"] == rows["pending_refreshes"] == 0
    assert rows["ratings"] == 2 and rows["events"] == 3

    assert privacy.set_preferences(me.user, True)["personalize"] is True
    assert Preference.objects.get(user=me.user).personalize is True


@pytest.mark.parametrize("value", ["false", 0, None, "yes"])
def test_set_preferences_rejects_non_booleans(user_factory, value):
    with pytest.raises(ValueError, match="personalize"):
        privacy.set_preferences(user_factory(), value)


# --- retention ------------------------------------------------------------------------------


def _event(product, *, age_days: float, **fields) -> Interaction:
    return Interaction.objects.create(
        product=product, kind="view", created_at=timezone.now() - timedelta(days=age_days),
        **fields,
    )


@override_settings(SHOPRECO={"EVENT_RETENTION_DAYS": 30})
def test_purge_deletes_events_and_impressions_older_than_retention(footprint, user_factory):
    me = footprint()
    p = me.products[0]
    old = [_event(p, age_days=31, user=me.user), _event(p, age_days=400, session_key="s")]
    young = _event(p, age_days=29, user=me.user)
    old_imp = Impression.objects.create(widget="popular", created_at=timezone.now()
                                        - timedelta(days=40))
    ratings_before = Rating.objects.count()

    purged = privacy.purge_old_events()

    assert purged == len(old)
    assert not Interaction.objects.filter(pk__in=[e.pk for e in old]).exists()
    assert Interaction.objects.filter(pk=young.pk).exists()
    assert Interaction.objects.filter(user=me.user).count() == 3 + 1  # fixture events are new
    assert not Impression.objects.filter(pk=old_imp.pk).exists()
    assert Rating.objects.count() == ratings_before  # ratings are never purged


@override_settings(SHOPRECO={"EVENT_RETENTION_DAYS": 30})
def test_purge_uses_the_given_now(product_factory):
    p = product_factory()
    e = _event(p, age_days=10, session_key="s")
    assert privacy.purge_old_events(now=timezone.now() + timedelta(days=15)) == 0
    assert privacy.purge_old_events(now=timezone.now() + timedelta(days=25)) == 1
    assert not Interaction.objects.filter(pk=e.pk).exists()


@override_settings(SHOPRECO={"EVENT_RETENTION_DAYS": 1})
def test_purge_works_in_batches(product_factory, monkeypatch):
    monkeypatch.setattr(privacy, "PURGE_BATCH_SIZE", 3)
    p = product_factory()
    for _ in range(8):
        _event(p, age_days=5, session_key="s")
    with CaptureQueriesContext(connection) as ctx:
        assert privacy.purge_old_events() == 8
    deletes = [q for q in ctx.captured_queries
               if q["sql"].startswith("DELETE") and "shopreco_interaction" in q["sql"]]
    assert len(deletes) == 3  # 3 + 3 + 2 rows
    assert not Interaction.objects.exists()


@pytest.mark.parametrize("days", [None, 0])
def test_purge_disabled_keeps_everything(product_factory, days):
    p = product_factory()
    _event(p, age_days=5000, session_key="s")
    with override_settings(SHOPRECO={"EVENT_RETENTION_DAYS": days}):
        assert privacy.purge_old_events() == 0
    assert Interaction.objects.count() == 1


@pytest.mark.parametrize("days", [-1, "30", True])
def test_purge_rejects_bad_setting_naming_it(days):
    with override_settings(SHOPRECO={"EVENT_RETENTION_DAYS": days}):
        with pytest.raises(ValueError, match="EVENT_RETENTION_DAYS"):
            privacy.purge_old_events()


# --- pseudonyms -----------------------------------------------------------------------------


def test_pseudonym_is_stable_distinct_and_hides_the_id():
    a1, a2, b = privacy.pseudonymise(42), privacy.pseudonymise(42), privacy.pseudonymise(43)
    assert a1 == a2 and a1 != b
    assert "42" not in a1 and len(a1) == 64
    assert privacy.pseudonymise("42") == a1  # same id whatever its Python type


def test_pseudonym_depends_on_the_secret_and_falls_back_to_secret_key():
    with override_settings(SHOPRECO={"ANONYMIZE_SECRET": "one"}):
        one = privacy.pseudonymise(7)
    with override_settings(SHOPRECO={"ANONYMIZE_SECRET": "two"}):
        two = privacy.pseudonymise(7)
    with override_settings(SHOPRECO={"ANONYMIZE_SECRET": None}, SECRET_KEY="one"):
        fallback = privacy.pseudonymise(7)
    assert one != two
    assert fallback == one


def test_session_pseudonyms_live_in_their_own_namespace():
    assert privacy.pseudonymise_session("7") != privacy.pseudonymise("7")
