"""``manage.py shopreco_export --anonymize FILE``: ratings and events for analysts.

User ids become keyed hashes (HMAC-SHA256 with ``SHOPRECO["ANONYMIZE_SECRET"]``, falling back
to ``SECRET_KEY``), anonymous session keys likewise, timestamps are coarsened to the day and
recommendation ids are reduced to a yes/no flag (the id would link back to the impression log,
which names the user). This is **pseudonymisation, not anonymisation**: whoever holds the
secret can re-link the rows, and a person's ratings may still single them out. Treat the file
as personal data.

Users who switched personalisation off are left out unless ``--include-opted-out``.
The file is written to a temporary name and renamed at the end, so a failed export never
leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shopreco import privacy
from shopreco.management.commands._text import counted
from shopreco.models import Interaction, Preference, Rating

FIELDS = ["type", "user", "product", "score", "event", "from_recommendation", "day"]
FORMATS = ("csv", "jsonl")


def _product(pk: Any) -> Any:
    return pk if isinstance(pk, int | str) else str(pk)


def anonymized_rows(*, include_opted_out: bool = False) -> Iterator[dict[str, Any]]:
    """Ratings, then events, as flat dicts with pseudonymous users and day-level dates."""
    opted_out: set[Any] = set()
    if not include_opted_out:
        opted_out = set(
            Preference.objects.filter(personalize=False).values_list("user_id", flat=True)
        )
    pseudonyms: dict[Any, str] = {}

    def user_ref(user_id: Any) -> str:
        if user_id not in pseudonyms:
            pseudonyms[user_id] = privacy.pseudonymise(user_id)
        return pseudonyms[user_id]

    ratings = Rating.objects.order_by("pk").values_list(
        "user_id", "product_id", "score", "created_at"
    )
    for user_id, product_id, score, created_at in ratings.iterator(chunk_size=5000):
        if user_id in opted_out:
            continue
        yield {
            "type": "rating",
            "user": user_ref(user_id),
            "product": _product(product_id),
            "score": score,
            "event": "",
            "from_recommendation": "",
            "day": created_at.date().isoformat(),
        }
    events = Interaction.objects.order_by("pk").values_list(
        "user_id", "session_key", "product_id", "kind", "recommendation_id", "created_at"
    )
    for user_id, session_key, product_id, kind, rec_id, created_at in events.iterator(
        chunk_size=5000
    ):
        if user_id is not None and user_id in opted_out:
            continue
        who = user_ref(user_id) if user_id is not None else (
            "s-" + privacy.pseudonymise_session(session_key) if session_key else ""
        )
        yield {
            "type": "event",
            "user": who,
            "product": _product(product_id),
            "score": "",
            "event": kind,
            "from_recommendation": bool(rec_id),
            "day": created_at.date().isoformat(),
        }


class Command(BaseCommand):
    help = (
        "Export ratings and events for analysis with pseudonymous user ids (keyed hash) and "
        "day-level dates. Pseudonymisation, not anonymity: keep the file as personal data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anonymize",
            metavar="FILE",
            required=True,
            help="Write the pseudonymised export to FILE ('-' for standard output).",
        )
        parser.add_argument(
            "--format",
            choices=FORMATS,
            help="csv or jsonl (JSON lines); default from FILE's extension, else csv.",
        )
        parser.add_argument(
            "--include-opted-out",
            action="store_true",
            help="Also export users who switched personalisation off (default: leave out).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["anonymize"]
        fmt = options["format"] or self.guess_format(path)
        rows = anonymized_rows(include_opted_out=options["include_opted_out"])
        if path == "-":
            count = self.write(rows, self.stdout, fmt)
            self.stderr.write(f"Exported {counted(count, 'row')} ({fmt}).", style_func=str)
            return
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise CommandError(f"--anonymize: directory {directory!r} does not exist.")
        fd, tmp = tempfile.mkstemp(prefix=".shopreco-export-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                count = self.write(rows, fh, fmt)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.stdout.write(self.style.SUCCESS(
            f"Exported {counted(count, 'row')} ({fmt}) to {path}: user ids pseudonymised with "
            f"HMAC-SHA256, dates coarsened to the day. This is pseudonymised personal data, "
            f"not anonymous."
        ))

    @staticmethod
    def guess_format(path: str) -> str:
        lower = path.lower()
        if lower.endswith((".jsonl", ".ndjson", ".json")):
            return "jsonl"
        return "csv"

    @staticmethod
    def write(rows: Iterator[dict[str, Any]], fh: Any, fmt: str) -> int:
        count = 0
        if fmt == "csv":
            writer = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
                count += 1
        else:
            for row in rows:
                compact = {k: v for k, v in row.items() if v != ""}
                fh.write(json.dumps(compact, ensure_ascii=False) + "\n")
                count += 1
        return count
