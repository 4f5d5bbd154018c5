"""shopreco_forget_user and shopreco_export --anonymize."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from shopreco import privacy
from shopreco.models import Interaction, Rating
from tests.privacy.helpers import count_rows, opt_out

pytestmark = pytest.mark.django_db


def forget(*args, **kwargs) -> str:
    out = io.StringIO()
    call_command("shopreco_forget_user", *args, interactive=False, stdout=out, **kwargs)
    return out.getvalue()


# --- shopreco_forget_user -------------------------------------------------------------------


def test_forget_by_username_erases_only_that_user(footprint):
    me, other = footprint(), footprint()
    out = forget(me.user.username)
    assert count_rows(me.user) == dict.fromkeys(me.rows, 0)
    assert count_rows(other.user) == other.rows
    assert '"ratings": 2' in out and f"user {me.user.pk}" in out


def test_forget_by_primary_key(footprint):
    me = footprint()
    forget(str(me.user.pk))
    assert count_rows(me.user)["ratings"] == 0


def test_forget_keeps_the_account(footprint, django_user_model):
    me = footprint()
    forget(me.user.username)
    assert django_user_model.objects.filter(pk=me.user.pk).exists()


def test_forget_dry_run_changes_nothing(footprint):
    me = footprint()
    out = forget(me.user.username, dry_run=True)
    assert "Would erase" in out and '"events": 3' in out
    assert count_rows(me.user) == me.rows


def test_forget_can_export_first(footprint, tmp_path):
    me = footprint()
    target = tmp_path / "subject.json"
    forget(me.user.username, export=str(target))
    data = json.loads(target.read_text())
    assert len(data["ratings"]) == 2 and len(data["events"]) == 3
    assert count_rows(me.user)["ratings"] == 0


def test_forget_unknown_user_is_a_clear_error(db):
    with pytest.raises(CommandError, match="no user with primary key or username 'nobody'"):
        forget("nobody")


def test_forget_text_with_id_flag_names_the_field(db):
    with pytest.raises(CommandError, match="not a valid primary key"):
        forget("abc", id=True)


def test_forget_ambiguous_reference_asks_for_a_flag(footprint, user_factory):
    target = footprint()
    # A user whose *username* is the other user's primary key.
    impostor = footprint(user_factory(username=str(target.user.pk)))
    with pytest.raises(CommandError, match="--id or --username"):
        forget(str(target.user.pk))
    assert count_rows(target.user) == target.rows and count_rows(impostor.user) == impostor.rows

    forget(str(target.user.pk), id=True)
    assert count_rows(target.user)["ratings"] == 0
    assert count_rows(impostor.user) == impostor.rows
    forget(str(target.user.pk), username=True)
    assert count_rows(impostor.user)["ratings"] == 0


def test_forget_interactive_needs_yes(footprint, monkeypatch):
    me = footprint()
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="Cancelled"):
        call_command("shopreco_forget_user", me.user.username, stdout=io.StringIO())
    assert count_rows(me.user) == me.rows
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    call_command("shopreco_forget_user", me.user.username, stdout=io.StringIO())
    assert count_rows(me.user)["ratings"] == 0


# --- shopreco_export --anonymize ------------------------------------------------------------


def export(path, **kwargs) -> str:
    out = io.StringIO()
    call_command("shopreco_export", anonymize=str(path), stdout=out, **kwargs)
    return out.getvalue()


@pytest.fixture
def shop(footprint, user_factory):
    a = footprint(user_factory(username="alice-secret"))
    b = footprint(user_factory(username="bob-secret"))
    Interaction.objects.create(session_key="guest-session-key", product=a.products[0],
                               kind="view")
    when = datetime(2024, 3, 5, 17, 42, 11, tzinfo=UTC)
    Rating.objects.filter(user=a.user).update(created_at=when)
    return a, b


def test_anonymized_csv_has_every_row_with_pseudonyms_and_days(shop, tmp_path):
    a, b = shop
    target = tmp_path / "out.csv"
    msg = export(target)
    assert "not anonymous" in msg

    rows = list(csv.DictReader(target.open()))
    assert len([r for r in rows if r["type"] == "rating"]) == Rating.objects.count()
    assert len([r for r in rows if r["type"] == "event"]) == Interaction.objects.count()
    users = {r["user"] for r in rows}
    assert privacy.pseudonymise(a.user.pk) in users and privacy.pseudonymise(b.user.pk) in users
    assert "s-" + privacy.pseudonymise_session("guest-session-key") in users
    # No raw identifiers, names, session keys or recommendation ids anywhere in the file.
    text = target.read_text()
    for secret in ("alice-secret", "bob-secret", "guest-session-key", "abc123"):
        assert secret not in text
    assert all(r["user"] not in {str(a.user.pk), str(b.user.pk)} for r in rows)
    # Timestamps are days only.
    alice = [r for r in rows if r["type"] == "rating"
             and r["user"] == privacy.pseudonymise(a.user.pk)]
    assert {r["day"] for r in alice} == {"2024-03-05"}
    assert all(len(r["day"]) == 10 for r in rows)
    assert {r["from_recommendation"] for r in rows if r["type"] == "event"} == {"True", "False"}


def test_anonymized_json_lines_by_extension(shop, tmp_path):
    a, _ = shop
    target = tmp_path / "out.jsonl"
    export(target)
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(lines) == Rating.objects.count() + Interaction.objects.count()
    rating = next(r for r in lines if r["type"] == "rating")
    assert set(rating) == {"type", "user", "product", "score", "day"}
    event = next(r for r in lines if r["type"] == "event")
    assert set(event) == {"type", "user", "product", "event", "from_recommendation", "day"}


def test_export_format_flag_overrides_extension(shop, tmp_path):
    target = tmp_path / "out.txt"
    export(target, format="jsonl")
    json.loads(target.read_text().splitlines()[0])


def test_export_leaves_out_opted_out_users_unless_asked(shop, tmp_path):
    a, b = shop
    opt_out(b.user)
    target = tmp_path / "out.csv"
    export(target)
    users = {r["user"] for r in csv.DictReader(target.open())}
    assert privacy.pseudonymise(b.user.pk) not in users
    assert privacy.pseudonymise(a.user.pk) in users

    export(target, include_opted_out=True)
    users = {r["user"] for r in csv.DictReader(target.open())}
    assert privacy.pseudonymise(b.user.pk) in users


def test_export_uses_the_configured_secret(shop, tmp_path):
    a, _ = shop
    target = tmp_path / "out.csv"
    with override_settings(SHOPRECO={"ANONYMIZE_SECRET": "analyst-key-2024"}):
        export(target)
        expected = privacy.pseudonymise(a.user.pk)
    assert expected != privacy.pseudonymise(a.user.pk)
    assert expected in {r["user"] for r in csv.DictReader(target.open())}


def test_export_to_missing_directory_is_a_clear_error(db, tmp_path):
    with pytest.raises(CommandError, match="--anonymize"):
        export(tmp_path / "nope" / "out.csv")


def test_failed_export_leaves_no_partial_file(shop, tmp_path, monkeypatch):
    from shopreco.management.commands import shopreco_export

    def boom(*args, **kwargs):
        yield {"type": "rating", "user": "x", "product": 1, "score": 1, "event": "",
               "from_recommendation": "", "day": "2024-01-01"}
        raise RuntimeError("database went away")

    monkeypatch.setattr(shopreco_export, "anonymized_rows", boom)
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        export(target)
    assert list(tmp_path.iterdir()) == []


def test_export_to_stdout(shop):
    out = export("-", format="jsonl")
    assert len(out.strip().splitlines()) == Rating.objects.count() + Interaction.objects.count()
