"""``manage.py shopreco_forget_user <id|username>``: erase one user's shopreco data.

For data-protection requests handled by staff (the user can also do it themselves through
``DELETE me/data/``). Removes ratings, events, recommendations, impressions and the pending
refresh; the host's user account is left alone (delete it in the admin if that is asked too,
which removes the same rows by cascade).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from shopreco import privacy, tasks
from shopreco.management.commands._text import counted, listed


class Command(BaseCommand):
    help = (
        "Erase all shopreco data (ratings, events, recommendations, impressions) of one user, "
        "given by primary key or username. The user account itself is kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="The user's primary key or username.")
        how = parser.add_mutually_exclusive_group()
        how.add_argument("--id", action="store_true", help="Treat USER as a primary key only.")
        how.add_argument(
            "--username", action="store_true", help="Treat USER as a username only."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be erased; change nothing."
        )
        parser.add_argument(
            "--export",
            metavar="FILE",
            help="Write the user's data as JSON to FILE before erasing (for the requester).",
        )
        parser.add_argument(
            "--recompute",
            action="store_true",
            help="Also request a full recompute so aggregate similarities drop the user now "
            "rather than at the next scheduled run.",
        )
        parser.add_argument(
            "--noinput", "--no-input", action="store_false", dest="interactive",
            help="Do not ask for confirmation.",
        )

    def find_user(self, ref: str, *, by_id: bool, by_username: bool) -> Any:
        User = get_user_model()  # noqa: N806 - a class
        by_name = None
        if not by_id:
            by_name = User._default_manager.filter(**{User.USERNAME_FIELD: ref}).first()
        by_pk = None
        if not by_username:
            try:
                by_pk = User._default_manager.filter(pk=ref).first()
            except (ValueError, TypeError, ValidationError) as exc:  # e.g. text for an int pk
                if by_id:
                    raise CommandError(f"user: {ref!r} is not a valid primary key.") from exc
        if by_name and by_pk and by_name.pk != by_pk.pk:
            raise CommandError(
                f"user: {ref!r} is the username of user {by_name.pk} and the primary key of "
                f"another user; repeat with --id or --username."
            )
        found = by_name or by_pk
        if found is None:
            raise CommandError(f"user: no user with primary key or username {ref!r}.")
        return found

    def handle(self, *args: Any, **options: Any) -> None:
        user = self.find_user(
            options["user"], by_id=options["id"], by_username=options["username"]
        )
        label = f"user {user.pk} ({user.get_username()})"
        data = privacy.export_user_data(user)
        summary = {
            "ratings": len(data["ratings"]),
            "events": len(data["events"]),
            "recommendations": len(data["recommendations"]),
            "impressions": len(data["impressions"]),
        }
        if options["export"]:
            with open(options["export"], "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, ensure_ascii=False)
            self.stdout.write(f"Exported data of {label} to {options['export']}")
        if options["dry_run"]:
            self.stdout.write(f"Would erase for {label}: {json.dumps(summary)}")
            return
        if options["interactive"]:
            what = listed([counted(n, noun[:-1]) for noun, n in summary.items()])
            answer = input(f"Erase all shopreco data of {label}: {what}? Type 'yes': ")
            if answer.strip().lower() != "yes":
                raise CommandError("Cancelled; nothing was erased.")
        counts = privacy.erase_user_data(user)
        self.stdout.write(self.style.SUCCESS(f"Erased for {label}: {json.dumps(counts)}"))
        if options["recompute"]:
            run = tasks.request_full_recompute()
            self.stdout.write(f"Full recompute requested: run {run.pk} ({run.status}). Follow "
                              f"it with `manage.py shopreco_recompute --follow {run.pk}`.")
