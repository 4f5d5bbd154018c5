"""``manage.py shopreco_recompute``: the full recompute, in-process or through Celery.

- no option: compute in this process (no broker or worker needed; what ``make demo`` runs);
- ``--async``: hand the run to Celery and print its id (coalesced with a running run);
- ``--wait`` (with ``--async``, or alone when a run is already going): follow the run's
  progress until it ends; exit status 1 if it failed.

On a terminal progress is a bar (tqdm); otherwise one plain line per stage change, so logs
and CI output stay readable.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from shopreco import pipeline, tasks
from shopreco.models import RecomputeRun


class Command(BaseCommand):
    help = "Recompute similarities and recommendations (a new versioned run)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--async", action="store_true", dest="run_async",
                            help="Enqueue the run on Celery and print its id.")
        parser.add_argument("--wait", action="store_true",
                            help="Follow the run until it ends; exit 1 if it failed.")
        parser.add_argument("--poll", type=float, default=0.5,
                            help="Seconds between progress checks with --wait (default 0.5).")
        parser.add_argument("--no-progress", action="store_true",
                            help="Plain lines even on a terminal.")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        self.tty = not options["no_progress"] and _isatty(self.stdout)
        if options["run_async"]:
            run = tasks.request_full_recompute()
            self.stdout.write(str(run.pk))
            if options["wait"]:
                self._follow(run.pk, options["poll"])
            return
        reporter = _Reporter(self, self.tty)
        try:
            run = tasks.run_full_recompute(progress=reporter)
        except pipeline.RecomputeInProgress as exc:
            reporter.close()
            self.stdout.write(f"Run #{exc.run.pk} is already {exc.run.status}; not starting "
                              "another.")
            if options["wait"]:
                self._follow(exc.run.pk, options["poll"])
            return
        except Exception as exc:
            reporter.close()
            raise CommandError(f"Recompute failed: {exc}") from exc
        reporter.close()
        self._summary(run)

    def _follow(self, run_id: int, poll: float) -> None:
        reporter = _Reporter(self, self.tty)
        while True:
            run = RecomputeRun.objects.get(pk=run_id)
            reporter(run.stage or run.status, run.progress)
            if run.status in (RecomputeRun.Status.SUCCEEDED, RecomputeRun.Status.FAILED):
                break
            time.sleep(max(poll, 0.05))
        reporter.close()
        if run.status == RecomputeRun.Status.FAILED:
            raise CommandError(f"Run #{run.pk} failed: {run.error}", returncode=1)
        self._summary(run)

    def _summary(self, run: RecomputeRun) -> None:
        c, t = run.counts, run.timings
        self.stdout.write(self.style.SUCCESS(
            f"Run #{run.pk} {run.status}: {c.get('users', 0)} users, "
            f"{c.get('products', 0)} products, {c.get('similarities', 0)} similarities, "
            f"{c.get('recommendations', 0)} recommendations in {t.get('total', 0):.1f} s "
            f"(load {t.get('load', 0):.1f}, similarities {t.get('similarities', 0):.1f}, "
            f"recommendations {t.get('recommendations', 0):.1f}, write {t.get('write', 0):.1f})"
            + (f"; then housekeeping {t['housekeeping']:.1f} s" if "housekeeping" in t else "")
        ))


def _isatty(stream) -> bool:
    raw = getattr(stream, "_out", stream)
    try:
        return bool(raw.isatty())
    except (AttributeError, ValueError):
        return False


class _Reporter:
    """Progress sink: a tqdm bar on a terminal, plain "stage percent" lines otherwise."""

    def __init__(self, command: BaseCommand, tty: bool) -> None:
        self.command = command
        self.bar = None
        self.last: tuple[str, int] | None = None
        if tty:
            try:
                from tqdm import tqdm
            except ImportError:  # optional dependency (extra "progress")
                tqdm = None
            if tqdm is not None:
                width = shutil.get_terminal_size().columns or 80  # a bare pty reports 0
                self.bar = tqdm(total=100, unit="%", ncols=min(width, 100),
                                file=getattr(command.stdout, "_out", sys.stdout),
                                bar_format="{desc:<16}{percentage:3.0f}%|{bar}| {elapsed}")

    def __call__(self, stage: str, progress: float) -> None:
        pct = int(max(0.0, min(100.0, float(progress))))
        if self.bar is not None:
            self.bar.set_description_str(stage)
            self.bar.update(pct - self.bar.n)
            return
        # plain output: a line when the stage changes or every 10 percent
        if self.last is None or stage != self.last[0] or pct // 10 != self.last[1] // 10:
            if getattr(self.command, "verbosity", 1) >= 1:
                self.command.stdout.write(f"{stage} {pct}%")
            self.last = (stage, pct)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
