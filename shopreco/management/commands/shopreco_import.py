"""``manage.py shopreco_import FILE --format csv|movielens|online-retail``: load ratings and
events collected elsewhere. A thin wrapper over :mod:`shopreco.importing`, whose docstring
lists the formats and which errors skip a row and which abort the whole file.

A long import reports its progress on stderr every few seconds (``--progress-every``), so
stdout keeps only the summary; ``-v 0`` prints the summary alone."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from shopreco import importing


class Command(BaseCommand):
    help = (
        "Import ratings/events from a file. Bad rows are skipped and reported with their line "
        "numbers; a fatal error (unreadable encoding, missing columns, broken CSV) writes "
        "nothing and exits non-zero."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The file (or, for movielens, its directory).")
        parser.add_argument("--format", required=True, choices=importing.FORMATS,
                            dest="fmt", help="File format.")
        parser.add_argument(
            "--product-field", default="pk",
            help="Product model field the file's product ids refer to (default: the primary "
                 "key; e.g. 'external_id' or 'sku'). Its values must be unique.",
        )
        parser.add_argument("--user-prefix", default=importing.DEFAULT_USER_PREFIX,
                            help="Users are matched/created as <prefix><id> (default 'ext-').")
        parser.add_argument("--encoding", default="utf-8",
                            help="Text encoding of the file (default utf-8).")
        parser.add_argument("--round-scores", action="store_true",
                            help="Round scores half up to the rating scale's step first.")
        parser.add_argument("--strict", action="store_true",
                            help="Treat any rejected row as fatal: write nothing.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Check and count everything, then roll back.")
        parser.add_argument("--batch-size", type=int, default=importing.BATCH_SIZE,
                            help="Rows per database batch (default %(default)s).")
        parser.add_argument("--progress-every", type=float, default=2.0, metavar="SECONDS",
                            help="Seconds between progress lines on stderr (default "
                                 "%(default)s; 0 for none).")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["batch_size"] < 1:
            raise CommandError("--batch-size must be a positive integer.")
        verbosity = int(opts.get("verbosity", 1))
        progress = None
        if verbosity >= 1 and opts["progress_every"] > 0:
            progress = importing.ProgressPrinter(self._note, opts["progress_every"])
        try:
            report = importing.import_file(
                opts["file"], opts["fmt"],
                product_field=opts["product_field"], user_prefix=opts["user_prefix"],
                encoding=opts["encoding"], round_scores=opts["round_scores"],
                strict=opts["strict"], dry_run=opts["dry_run"], batch_size=opts["batch_size"],
                progress=progress,
            )
        except importing.FatalImportError as exc:
            raise CommandError(f"{opts['file']}: {exc}. Nothing was imported.") from exc
        self.stdout.write(report.summary())
        if verbosity >= 1 and not opts["dry_run"] and (report.ratings or report.events):
            self.stdout.write("Run `manage.py shopreco_recompute` to use the new data.")

    def _note(self, line: str) -> None:
        """A progress line on stderr, unstyled: stderr's default style is the error colour."""
        self.stderr.write(line, style_func=str)
