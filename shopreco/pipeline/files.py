"""A run's files in Django storage (snapshot, similarity, EASE weights, stage outputs): their
names and readers, shared by the stages and the per-user refresh."""

from __future__ import annotations

from shopreco.engine import MODELS
from shopreco.models import RecomputeRun
from shopreco.pipeline import compute, storage
from shopreco.pipeline.matrix import Snapshot

# Run files; names carry the run's random token so no cache can mistake one run for another.
SNAPSHOT = "snapshot"
SIMILARITY = "similarity"
ALSO_BOUGHT = "also_bought"
# The fitted weights of a model that learns its similarity (EASE's dense head and its tail):
# batches and refreshes score with them.
EASE_PARTS = "ease"


def run_file(run: RecomputeRun, base: str) -> str:
    """Storage name of one of the run's files."""
    return storage.path(run.pk, f"{base}-{run.params.get('token', 'x')}.npz",
                        run.params.get("snapshot_prefix"))


def block_name(i: int) -> str:
    return f"block-{i:05d}"


def batch_name(i: int) -> str:
    return f"recs-{i:05d}"


def get_run(run: RecomputeRun | int) -> RecomputeRun:
    return run if isinstance(run, RecomputeRun) else RecomputeRun.objects.get(pk=run)


def load_run_snapshot(run: RecomputeRun | int) -> Snapshot:
    """The interaction matrix a run computed from (and its index <-> pk mapping)."""
    return storage.cached(run_file(get_run(run), SNAPSHOT), Snapshot.from_bytes)


def load_run_similarity(run: RecomputeRun | int):
    """The run's item-item similarity (CSR, top stored neighbours per row)."""
    return storage.cached(run_file(get_run(run), SIMILARITY), storage.csr_from_bytes)


def load_run_ease_parts(run: RecomputeRun | int) -> tuple | None:
    """(head, dense weights, tail) of a run whose model learns its similarity (EASE), once per
    process; None for other models."""
    run = get_run(run)
    model = MODELS.get(run.params.get("algorithm", ""))
    if model is None or not model.learns_similarity:
        return None
    return storage.cached(run_file(run, EASE_PARTS), lambda data: (
        compute.ease_parts_from_arrays(storage.arrays_from_bytes(data))))
