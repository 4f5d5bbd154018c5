"""``manage.py shopreco_oscar_import``: the Oscar shop's history (placed orders and approved
reviews) as shopreco's purchases and ratings, streamed in batches. Idempotent: what is
already recorded (live by the signal receivers, or by an earlier run) is not written again,
so it can run again after a restore or on a schedule. Run a recompute afterwards."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from shopreco.contrib.oscar import history


def _since(value: str) -> datetime:
    when = parse_datetime(value)
    if when is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since: {value!r} is not a date (YYYY-MM-DD) or ISO datetime.")
        when = datetime(day.year, day.month, day.day)
    return timezone.make_aware(when) if timezone.is_naive(when) else when


class Command(BaseCommand):
    help = ("Import Oscar's placed orders as purchases and its approved reviews as ratings "
            "(idempotent; run a recompute afterwards).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="Only orders placed since this date (YYYY-MM-DD).")
        parser.add_argument("--no-orders", action="store_true", help="Skip the orders.")
        parser.add_argument("--no-reviews", action="store_true", help="Skip the reviews.")
        parser.add_argument("--batch-size", type=int, default=2000,
                            help="Rows per database batch (default %(default)s).")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["batch_size"] < 1:
            raise CommandError("--batch-size must be a positive integer.")
        since = _since(opts["since"]) if opts["since"] else None
        counts = history.import_history(since=since, orders=not opts["no_orders"],
                                        reviews=not opts["no_reviews"],
                                        batch_size=opts["batch_size"])
        self.stdout.write(
            f"Purchases: {counts.purchases_added} added, {counts.purchases_present} already "
            f"recorded. Ratings: {counts.ratings_added} added, {counts.ratings_updated} "
            f"updated, {counts.ratings_present} unchanged.")
        if counts.purchases_added or counts.ratings_added or counts.ratings_updated:
            self.stdout.write("Run `manage.py shopreco_recompute` to use them.")
