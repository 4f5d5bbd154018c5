"""The holdout gate's cost: what testing every run before it goes live adds to a full run.

On PostgreSQL with MovieLens latest-small loaded as a shop (bench_pipeline's database), full
runs alternate between two settings, in process, several rounds in one process:

- ``ALGORITHM = "ease"`` with an EASE run live: the gate has nothing to compare (the same
  configuration as the live run) and is skipped: the full run as it was before the gate;
- ``ALGORITHM = "auto"`` with the default ``CANDIDATES`` (and ``SELECTION_EVERY = 1``, so
  every such run compares): every candidate and the live configuration are fitted on the
  training part and scored on the holdout, then the winner is fitted on all data.

Reported: the medians of each run's total and of its holdout stage, the ratio of the totals
(target: at most +50% wall time) and the comparison table of the last "auto" run.

    .venv/bin/python bench/bench_holdout.py [--rounds 3]

Writes bench/out/holdout.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_DIR)]

import common  # noqa: E402

TARGET_RATIO = 1.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    import bench_pipeline

    bench_pipeline.movielens_shop("holdout")

    from django.test import override_settings

    from shopreco import pipeline
    from shopreco.conf import DEFAULTS
    from shopreco.models import RecomputeRun
    from shopreco.pipeline import runs

    def full_run(algorithm: str) -> RecomputeRun:
        with override_settings(SHOPRECO={"ALGORITHM": algorithm, "KEEP_RUNS": 2,
                                         "SELECTION_EVERY": 1}):
            from shopreco.conf import reco_settings
            reco_settings.reload()
            run = pipeline.run_full_recompute()
        reco_settings.reload()
        assert run.status in ("succeeded", "rejected"), run.status
        if run.status == "rejected":  # keep the comparison fair: EASE stays live
            runs.deploy(run.pk, note="bench")
        return run

    load_start = common.load_average()
    full_run("ease")  # an EASE run live, so "ease" below compares nothing
    plain, gated, holdout = [], [], []
    last = None
    for _ in range(max(1, args.rounds)):
        plain.append(full_run("ease").timings["total"])
        last = full_run("auto")
        gated.append(last.timings["total"])
        holdout.append(last.timings["holdout"])
        full_run("ease")  # back to EASE live for the next round
    base, with_gate = statistics.median(plain), statistics.median(gated)
    ratio = with_gate / base
    every = int(DEFAULTS["SELECTION_EVERY"])
    amortised = (ratio + (every - 1)) / every
    report = last.metrics["holdout"]
    key = report["metric"]
    table = [[row["label"] + (" (chosen)" if row["chosen"] else ""),
              "yes" if row["live"] else "", f"{row['metrics'][key]:.4f}",
              f"{row['metrics'].get('precision@10', float('nan')):.4f}",
              f"{row['metrics'].get('coverage', float('nan')):.3f}"]
             for row in report["rows"]]
    text = "\n".join([
        "## Holdout gate and model selection: cost per full run (PostgreSQL, MovieLens "
        "latest-small)",
        "",
        f"Full runs in process, {len(plain)} rounds alternating `ALGORITHM=\"ease\"` with an "
        "EASE run live (the gate has nothing to compare: the run as before the gate) and "
        "`ALGORITHM=\"auto\"` with the default `CANDIDATES` "
        f"({', '.join(c['algorithm'] for c in DEFAULTS['CANDIDATES'])}): each candidate and "
        f"the live configuration fitted on the training part and scored on the latest "
        f"interactions of {report.get('users', 0)} sampled shoppers "
        f"({report.get('held_out', 0)} held out, `HOLDOUT` = {DEFAULTS['HOLDOUT']}), then the "
        f"winner fitted on all data. Load average at start: {load_start}.",
        "",
        common.md_table(["", "median total (s)", "median holdout stage (s)"], [
            ["EASE, gate skipped", f"{base:.2f}", "0"],
            ["auto, default candidates", f"{with_gate:.2f}", f"{statistics.median(holdout):.2f}"],
        ]),
        "",
        f"Holdout comparison of the last \"auto\" run (#{last.pk}, {last.status}):",
        "",
        common.md_table(["configuration", "live", key, "precision@10", "coverage"], table),
        "",
        "### Targets",
        "",
        f"- a run that compares the default candidates: {ratio:.2f}x the plain full run's "
        f"wall time (target <= {TARGET_RATIO:.2f}x): {common.verdict(ratio <= TARGET_RATIO)}",
        f"- per run with the default `SELECTION_EVERY = {every}` (one comparing run, then "
        f"{every - 1} refitting the choice, whose gate has nothing to compare): "
        f"{amortised:.2f}x: {common.verdict(amortised <= TARGET_RATIO)}",
        "",
        "Reproduce: `.venv/bin/python bench/bench_holdout.py` (PostgreSQL at 127.0.0.1:5432, "
        "database pipeline_bench, loaded from ../shared/data if empty).",
    ])
    common.write_section("holdout", text)
    print(text)
    common.emit_result({"holdout": {"plain_s": plain, "auto_s": gated, "holdout_s": holdout,
                                    "ratio": ratio, "amortised": amortised}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
