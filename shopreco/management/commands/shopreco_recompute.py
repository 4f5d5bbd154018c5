"""``manage.py shopreco_recompute``: the full recompute, in-process or through Celery.

- no option: compute in this process (no broker or worker needed; what ``make demo`` runs);
- ``--async``: hand the run to Celery and say which run it is and how to follow it (coalesced
  with a running run); with ``-v 0`` it prints only the run id, for scripts;
- ``--wait`` (with ``--async``, or alone when a run is already going): follow the run's
  progress until it ends; exit status 1 if it failed;
- ``--follow RUN``: follow a run started earlier (by ``--async``, the admin or beat).

On a terminal progress is a bar (tqdm); otherwise one plain line per stage change, so logs
and CI output stay readable. While the command computes in this process it speaks for the
run, so the pipeline's own INFO log records stay off the console (not out of log files);
``-v 2`` lets them through.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from shopreco import pipeline, tasks
from shopreco.management.commands._text import counted
from shopreco.models import RecomputeRun

FINISHED = (RecomputeRun.Status.SUCCEEDED, RecomputeRun.Status.REJECTED,
            RecomputeRun.Status.FAILED)


class Command(BaseCommand):
    help = "Recompute similarities and recommendations (a new versioned run)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--async", action="store_true", dest="run_async",
                            help="Enqueue the run on Celery and say how to follow it (with "
                                 "-v 0: print only its id).")
        parser.add_argument("--wait", action="store_true",
                            help="Follow the run until it ends; exit 1 if it failed.")
        parser.add_argument("--poll", type=float, default=0.5,
                            help="Seconds between progress checks with --wait (default 0.5).")
        parser.add_argument("--no-progress", action="store_true",
                            help="Plain lines even on a terminal.")
        parser.add_argument("--follow", type=int, metavar="RUN",
                            help="Follow run RUN (e.g. one started with --async) until it "
                                 "ends; exit 1 if it failed.")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        self.tty = not options["no_progress"] and _isatty(self.stdout)
        if options["follow"] is not None:
            if not RecomputeRun.objects.filter(pk=options["follow"]).exists():
                raise CommandError(f"There is no run #{options['follow']}.")
            self._follow(options["follow"], options["poll"])
            return
        if options["run_async"]:
            with _pipeline_info_off_console(self.verbosity < 2):
                run = tasks.request_full_recompute()
            run.refresh_from_db()  # without a broker it has run already, right here
            if self.verbosity == 0:
                self.stdout.write(str(run.pk))
            else:
                self.stdout.write(self._requested(run, following=options["wait"]))
            if options["wait"]:
                self._follow(run.pk, options["poll"])
            return
        reporter = _Reporter(self, self.tty)
        try:
            with _pipeline_info_off_console(self.verbosity < 2):
                run = tasks.run_full_recompute(progress=reporter)
        except pipeline.RecomputeInProgress as exc:
            reporter.close()
            self.stdout.write(f"Run #{exc.run.pk} is already {exc.run.status}; not starting "
                              f"another. Follow it with `manage.py shopreco_recompute "
                              f"--follow {exc.run.pk}`.")
            if options["wait"]:
                self._follow(exc.run.pk, options["poll"])
            return
        except Exception as exc:
            reporter.close()
            raise CommandError(f"Recompute failed: {exc}") from exc
        reporter.close()
        self._summary(run)
        if run.status == RecomputeRun.Status.REJECTED:
            raise CommandError(f"Run #{run.pk} was rejected by the holdout gate.", returncode=1)

    def _requested(self, run: RecomputeRun, *, following: bool) -> str:
        """What ``--async`` did, in a sentence, and how to follow the run from here."""
        if run.status in FINISHED:  # eager Celery (no broker): it ran in this process
            return (f"Full recompute run {run.pk} ran in this process (no Celery broker) and "
                    f"{run.status}.")
        where = f"in the admin (Recompute runs, run #{run.pk})"
        follow = (f"Following it here; or follow it later with `manage.py "
                  f"shopreco_recompute --follow {run.pk}` or {where}." if following else
                  f"Follow it with `manage.py shopreco_recompute --follow {run.pk}` or {where}.")
        if run.status == RecomputeRun.Status.RUNNING:
            return f"A full recompute is already running: run {run.pk}. {follow}"
        return f"Full recompute requested: run {run.pk} ({run.status}). {follow}"

    def _follow(self, run_id: int, poll: float) -> None:
        reporter = _Reporter(self, self.tty)
        while True:
            run = RecomputeRun.objects.get(pk=run_id)
            reporter(run.stage or run.status, run.progress)
            if run.status in FINISHED:
                break
            time.sleep(max(poll, 0.05))
        reporter.close()
        if run.status == RecomputeRun.Status.FAILED:
            raise CommandError(f"Run #{run.pk} failed: {run.error}", returncode=1)
        self._summary(run)
        if run.status == RecomputeRun.Status.REJECTED:
            raise CommandError(f"Run #{run.pk} was rejected by the holdout gate.", returncode=1)

    def _summary(self, run: RecomputeRun) -> None:
        c, t = run.counts, run.timings
        if run.kind != RecomputeRun.Kind.FULL:
            self.stdout.write(self.style.SUCCESS(f"Run #{run.pk} {run.status}."))
            return
        self.stdout.write(self.style.SUCCESS(
            f"Run #{run.pk} {run.status}: {counted(c.get('users', 0), 'user')}, "
            f"{counted(c.get('products', 0), 'product')}, "
            f"{counted(c.get('similarities', 0), 'similarity', 'similarities')}, "
            f"{counted(c.get('recommendations', 0), 'recommendation')} "
            f"in {t.get('total', 0):.1f} s "
            f"(load {t.get('load', 0):.1f}, holdout {t.get('holdout', 0):.1f}, "
            f"similarities {t.get('similarities', 0):.1f}, "
            f"recommendations {t.get('recommendations', 0):.1f}, write {t.get('write', 0):.1f})"
            + (f"; then housekeeping {t['housekeeping']:.1f} s" if "housekeeping" in t else "")
        ))
        self._gate(run)

    def _gate(self, run: RecomputeRun) -> None:
        """What the holdout gate decided, in a sentence (and what to do about a rejection)."""
        holdout = (run.metrics or {}).get("holdout") or {}
        if not holdout:
            return
        chosen = holdout.get("chosen", run.algorithm)
        if run.status == RecomputeRun.Status.REJECTED:
            live = holdout.get("live_run")
            self.stdout.write(self.style.WARNING(
                f"Not deployed: {holdout.get('rejected', 'the holdout gate rejected it')}. "
                f"Run #{live} keeps serving. To serve run #{run.pk} anyway: "
                f"`manage.py shopreco_activate {run.pk}`."))
        elif "skipped" in holdout:
            self.stdout.write(f"Live now ({chosen}); holdout comparison skipped: "
                              f"{holdout['skipped']}.")
        else:
            key = holdout.get("metric", "ndcg@10")
            scores = ", ".join(f"{row['label']} {row['metrics'].get(key, 0):.4f}"
                               for row in holdout.get("rows", []))
            self.stdout.write(f"Live now: {chosen}, chosen on the holdout by {key} "
                              f"({scores}).")


class _NoPipelineInfo(logging.Filter):
    """Drops shopreco's INFO (and DEBUG) records; warnings and errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith("shopreco")


@contextmanager
def _pipeline_info_off_console(enabled: bool) -> Iterator[None]:
    """Keep shopreco's INFO records off console handlers while this command runs the
    pipeline: the command's own lines say the same for people, and a host's logging that
    sends shopreco INFO to the console (the demo's does) would print them twice, the second
    time as a raw log line with a dict. File handlers keep every record."""
    if not enabled:
        yield
        return
    loggers = [logging.root, *(
        logger for name, logger in list(logging.root.manager.loggerDict.items())
        if isinstance(logger, logging.Logger) and name.split(".")[0] == "shopreco"
    )]
    handlers = {
        h for logger in loggers for h in logger.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    }
    quiet = _NoPipelineInfo()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


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
