"""``manage.py shopreco_activate RUN``: serve a kept run from the next request on.

A rollback to an older run, or a run the holdout gate rejected, activated anyway; the same
as the admin's "Activate" button and ``POST api/reco/runs/RUN/activate/``. Without a run id
it lists the runs that could go live.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from shopreco.models import RecomputeRun
from shopreco.pipeline import runs


class Command(BaseCommand):
    help = "Serve a kept full run (rollback, or a rejected run activated anyway)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("run", nargs="?", type=int, metavar="RUN",
                            help="The run to serve; without it, list the runs that can go live.")
        parser.add_argument("--note", default="",
                            help="Why (recorded with the deployment).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["run"] is None:
            self._list()
            return
        try:
            deployment = runs.deploy(options["run"], note=options["note"])
        except runs.NotActivatable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(
            f"Run #{deployment.run_id} is live from the next request on "
            f"({deployment.note})."))

    def _list(self) -> None:
        live = RecomputeRun.live()
        kept = RecomputeRun.objects.filter(
            kind=RecomputeRun.Kind.FULL,
            status__in=[RecomputeRun.Status.SUCCEEDED, RecomputeRun.Status.REJECTED],
        ).order_by("-pk")
        if not kept:
            self.stdout.write("No finished full run is kept: run `manage.py shopreco_recompute`.")
            return
        for run in kept:
            holdout = (run.metrics or {}).get("holdout") or {}
            mark = "live" if live is not None and live.pk == run.pk else run.status
            when = f"{run.finished_at:%Y-%m-%d %H:%M}" if run.finished_at else "-"
            self.stdout.write(f"#{run.pk:<6} {mark:<10} {when}  "
                              f"{holdout.get('chosen', run.algorithm)}")
        self.stdout.write("Serve one with `manage.py shopreco_activate RUN`.")
