"""Database <-> engine: full recomputes and per-user refreshes.

The stages live in :mod:`shopreco.pipeline.stages`, the per-user refresh in
:mod:`shopreco.pipeline.refresh`, run bookkeeping in :mod:`shopreco.pipeline.runs`. The
pipeline computes and returns what must follow; :mod:`shopreco.tasks` dispatches it.
"""

from shopreco.pipeline.arms import compute_arm_runs, configuration_arms
from shopreco.pipeline.files import (
    EASE_PARTS,
    SIMILARITY,
    SNAPSHOT,
    load_run_ease_parts,
    load_run_similarity,
    load_run_snapshot,
    run_file,
)
from shopreco.pipeline.refresh import (
    due_refreshes,
    note_refresh,
    refresh_user,
    request_user_refresh_later,
)
from shopreco.pipeline.runs import RecomputeInProgress, RunAborted
from shopreco.pipeline.stages import (
    STAGES,
    assemble_similarities,
    catch_up,
    compute_batch,
    compute_block,
    create_run,
    finish_run,
    housekeeping,
    run_full_recompute,
    run_stages_in_process,
    start_run,
)

__all__ = [
    "EASE_PARTS",
    "SIMILARITY",
    "SNAPSHOT",
    "STAGES",
    "RecomputeInProgress",
    "RunAborted",
    "assemble_similarities",
    "catch_up",
    "compute_arm_runs",
    "compute_batch",
    "compute_block",
    "configuration_arms",
    "create_run",
    "due_refreshes",
    "finish_run",
    "housekeeping",
    "load_run_ease_parts",
    "load_run_similarity",
    "load_run_snapshot",
    "note_refresh",
    "refresh_user",
    "request_user_refresh_later",
    "run_file",
    "run_full_recompute",
    "run_stages_in_process",
    "start_run",
]
