"""Erasure reaching derived data: how long until no served or kept result holds the user.

On PostgreSQL with MovieLens latest-small loaded as a shop (bench_pipeline's database), a
shopper is added with a copy of an ordinary shopper's ratings and a few events; a full run
serves them. Then their data is erased (``privacy.erase_user_data``) and the follow-up runs:
a full recompute in process (what the worker runs after ``DELETE me/data/``), whose
housekeeping prunes every run that read the data before the erasure. Timed: the erasure,
the follow-up, and the whole until the last run holding the user is gone. Target (issue
#17): under a minute. The added shopper is the only change to the database, and it is
erased: the data other benches read is as before.

    .venv/bin/python bench/bench_erasure.py

Writes bench/out/erasure.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_DIR)]

import common  # noqa: E402

TARGET_SECONDS = 60.0


def main() -> int:
    import bench_pipeline

    media = bench_pipeline.movielens_shop("erasure")

    from django.contrib.auth import get_user_model
    from django.db.models import Count

    from shopreco import pipeline, privacy, tasks
    from shopreco.models import Interaction, Rating, RecomputeRun

    user_model = get_user_model()
    user_model.objects.filter(username="bench-erased").delete()
    counts = (Rating.objects.values("user").annotate(n=Count("id")).order_by("n")
              .values_list("user", "n"))
    model_user, n_ratings = list(counts)[len(counts) // 2]  # the median shopper
    target = user_model.objects.create(username="bench-erased")
    Rating.objects.bulk_create(
        Rating(user=target, product_id=product, score=score)
        for product, score in Rating.objects.filter(user=model_user)
        .values_list("product_id", "score"))
    Interaction.objects.bulk_create(
        Interaction(user=target, product_id=product, kind=kind)
        for product, kind in zip(
            Rating.objects.filter(user=model_user).values_list("product_id", flat=True)[:5],
            ["view", "view", "cart", "purchase", "view"], strict=False))

    load_start = common.load_average()
    served = tasks.run_full_recompute()
    snap = pipeline.load_run_snapshot(served)
    assert str(target.pk) in {str(pk) for pk in snap.user_pks[: snap.n_users]}
    holding = set(RecomputeRun.objects.values_list("pk", flat=True))

    t0 = time.perf_counter()
    privacy.erase_user_data(target)
    t1 = time.perf_counter()
    after = tasks.run_full_recompute()
    t2 = time.perf_counter()
    left = holding & set(RecomputeRun.objects.values_list("pk", flat=True))
    snap = pipeline.load_run_snapshot(after)
    clean = str(target.pk) not in {str(pk) for pk in snap.user_pks[: snap.n_users]}
    folders = [pk for pk in holding
               if Path(media, "shopreco", "snapshots", f"run-{pk}").exists()]
    target.delete()
    total = t2 - t0
    rows = [
        ["erase the user's rows (`privacy.erase_user_data`)", f"{t1 - t0:.2f}"],
        ["follow-up: full run on the remaining data, then housekeeping", f"{t2 - t1:.2f}"],
        ["until no run that read the user's data is served or kept", f"{total:.2f}"],
    ]
    text = "\n".join([
        "## Erasure reaching derived data (PostgreSQL, MovieLens latest-small)",
        "",
        f"A shopper with {n_ratings} ratings (a copy of the median shopper's) and 5 events, "
        f"served by run #{served.pk} (kept runs holding them: {sorted(holding)}), is erased; "
        f"the follow-up full run #{after.pk} runs in process (what a worker runs after "
        "`DELETE me/data/`), and its housekeeping prunes every run that read the data before "
        f"the erasure. Load average at start: {load_start}.",
        "",
        common.md_table(["step", "seconds"], rows),
        "",
        f"After it: runs holding the user still kept: {sorted(left) or 'none'}; their folders "
        f"left: {folders or 'none'}; the served run's snapshot holds the user: "
        f"{'no' if clean else 'YES'}.",
        "",
        "### Targets",
        "",
        f"- until no served or kept result holds the user, on ml-latest-small: {total:.1f} s "
        f"(target < {TARGET_SECONDS:.0f} s): "
        f"{common.verdict(total < TARGET_SECONDS and not left and clean)}",
        "",
        "Reproduce: `.venv/bin/python bench/bench_erasure.py` (PostgreSQL at 127.0.0.1:5432, "
        "database pipeline_bench, loaded from ../shared/data if empty).",
    ])
    common.write_section("erasure", text)
    print(text)
    common.emit_result({"erasure": {"erase_s": t1 - t0, "follow_up_s": t2 - t1,
                                    "total_s": total, "left": sorted(left), "clean": clean}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
