"""EASE at scale, and the full recompute it drives: the new default (EASE) beside the previous
default (item kNN, adjusted cosine), side by side in one run.

1. Dense solve on bench_engine's 5M synthetic set (``common.synthetic_interactions``,
   100k users x 20k items, seed 0), restricted to the N most interacted items (N = 5k, 10k,
   20k): ``ease_weights(X, 500.0)`` (float32 potrf + potri) against the textbook
   ``numpy.linalg.inv`` float64 route (Steck's code: ``P = inv(G)``, ``B = P / -diag(P)``)
   and, when installed, ``sansa`` (sparse approximate EASE); then the full
   ``EASE(lambda_=500, max_items=N, max_neighbours=None).fit`` on all 20k items (head N +
   cosine tail). Each fit runs in a child process of its own: time and peak RSS (VmHWM).
2. Full recompute of MovieLens latest-small on PostgreSQL (the shop bench_pipeline.py builds,
   ``seed_demo --movielens``), in-process (``pipeline.run_full_recompute``), new vs previous
   default alternating; seconds per phase from the run's own ``timings``.
3. The same on a generated power-law shop (20,000 users x 5,000 products, 1M ratings 1-5),
   loaded with COPY.

    .venv/bin/python bench/bench_ease_scale.py [--only solve,movielens,shop] [--repeat 3]
                                               [--quick] [--reload] [--no-sansa] [--no-inv]

Each recompute runs in a child process of its own (Django set up there, one run, then its peak
RSS is read), so each figure is one process's. sansa is optional and not in
requirements-bench.txt (its scikit-sparse needs SuiteSparse's headers, absent on a fresh
machine): ``apt-get install libsuitesparse-dev`` then
``pip install 'scikit-sparse<0.5' sansa`` (0.5 wants SuiteSparse 7; Debian 12 has 5.12).
Databases:
postgres://postgres@127.0.0.1:5432/ease_scale_ml and .../ease_scale_shop (created if absent;
--quick uses ease_scale_shop_quick); run files go to a temporary MEDIA_ROOT. Writes
bench/out/ease_scale.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_DIR)]

import common  # noqa: E402

PG = "postgres://postgres@127.0.0.1:5432/"
ML_DB = PG + "ease_scale_ml"
SHOP_DB = PG + "ease_scale_shop"
SEED = 0
LAMBDA = 500.0
# Section 1: bench_engine's (c) set at 5M, and the sizes of the dense solve.
SOLVE_SHAPE, SOLVE_NNZ = (100_000, 20_000), 5_000_000
SOLVE_SIZES = (5_000, 10_000, 20_000)
INV_SIZES = (5_000, 10_000, 20_000)  # 20k only when memory allows (see _inv_memory_ok)
FIT_SIZES = (5_000, 10_000)
SANSA_ROW_NNZ = 100  # sansa's weight_matrix_density = this / N: ~100 weights per item row
SAMPLE_ROWS = 50  # rows of B compared across routes (float32 vs float64, sansa's overlap)
OVERLAP_K = 20
SOLVE_TIMEOUT_S = 1800.0
SOLVE_RSS_LIMIT = 12 * 2**30
# Section 3: the generated shop.
SHOP_USERS, SHOP_PRODUCTS, SHOP_NNZ = 20_000, 5_000, 1_000_000
SHOP_PREFIX = "pl-user-"
RECOMPUTE_TIMEOUT_S = 1800.0
# --quick: the same code on development sizes.
QUICK = {"solve_shape": (20_000, 4_000), "solve_nnz": 500_000, "solve_sizes": (1_000, 2_000, 4_000),
         "inv_sizes": (1_000, 2_000), "fit_sizes": (1_000, 2_000),
         "shop": (2_000, 1_000, 50_000)}

PHASES = ("load", "similarities", "recommendations", "write", "total")
NEW_DEFAULT = common.NEW_DEFAULT
PREVIOUS_DEFAULT = common.PREVIOUS_DEFAULT
CONFIGS = {"new": ("new default (ease, lambda auto, 10k head, penalty 0.15)", NEW_DEFAULT),
           "old": ("previous default (item, adjusted_cosine, shrinkage 10)", PREVIOUS_DEFAULT)}


def _secs(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


# =========================================================================== 1. dense solve


def _head(R, n: int) -> np.ndarray:
    from shopreco.engine.ease import head_items

    return head_items(np.bincount(R.indices, minlength=R.shape[1]), n)


def _sample_idx(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, SAMPLE_ROWS).astype(np.int64))


def _child_solve(kind: str, npz: str, n: int, sample_out: str) -> int:
    """Child: one fit of one route on the N-item head (or the full EASE fit), then its
    time, peak RSS and a sample of rows of B (saved to ``sample_out``)."""
    import warnings

    warnings.simplefilter("ignore")
    R = common.load_csr(Path(npz))
    head = _head(R, n)
    idx = _sample_idx(head.size)
    extra: dict[str, Any] = {}
    if kind == "ease_fit":
        from shopreco.engine.ease import EASE

        model = EASE(lambda_=LAMBDA, max_items=n, max_neighbours=None)
        rss_before = common.proc_status_bytes("VmRSS")
        _, seconds = common.timed(lambda: model.fit(R))
        extra = {"tail_nnz": int(model.similarity_.nnz), "head": int(model.head_.size)}
        sample = None
    else:
        X = R[:, head].tocsr()
        del R
        rss_before = common.proc_status_bytes("VmRSS")
        if kind == "ours":
            from shopreco.engine.ease import ease_weights

            B, seconds = common.timed(lambda: ease_weights(X, LAMBDA))
            sample = np.asarray(B[idx], dtype=np.float64)
        elif kind == "inv64":
            from shopreco.engine.ease import gram

            def solve():  # Steck's reference code, with the Gram built in blocks as ours is
                G = gram(X, np.float64)
                G[np.diag_indices(G.shape[0])] += LAMBDA
                P = np.linalg.inv(G)
                B = P / (-np.diag(P))
                B[np.diag_indices(G.shape[0])] = 0.0
                return B

            B, seconds = common.timed(solve)
            sample = np.asarray(B[idx], dtype=np.float64)
        elif kind == "sansa":
            from sansa import (
                SANSA,
                ICFGramianFactorizerConfig,
                SANSAConfig,
                UMRUnitLowerTriangleInverterConfig,
            )

            density = min(1.0, SANSA_ROW_NNZ / head.size)
            config = SANSAConfig(
                l2=LAMBDA, weight_matrix_density=density,
                gramian_factorizer_config=ICFGramianFactorizerConfig(),
                lower_triangle_inverter_config=UMRUnitLowerTriangleInverterConfig(
                    scans=1, finetune_steps=5))
            model = SANSA(config)
            _, seconds = common.timed(lambda: model.fit(X))
            W, Wr = model.weights
            sample = (W[idx] @ Wr).toarray().astype(np.float64)
            sample[np.arange(idx.size), idx] = 0.0  # EASE's diagonal is zero
            extra = {"density": density, "weights_nnz": int(W.nnz + Wr.nnz)}
        else:
            raise ValueError(kind)
    if sample is not None:
        np.save(sample_out, sample)
    common.emit_result({"fit_s": seconds, "rss_before": rss_before, **extra})
    return 0


def _inv_memory_ok(n: int) -> tuple[bool, str]:
    """The float64 inv route holds G, inv's copy of it, its identity/work and the result:
    4 * 8 * N^2 bytes. Run it only with that plus 6 GiB left for the others on the machine."""
    need = 4 * 8 * n * n + 2**30
    avail = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    ok = avail >= need + 6 * 2**30
    return ok, f"needs ~{common.gib(need)}, {common.gib(avail)} available"


def _overlap(ref: np.ndarray, other: np.ndarray, k: int) -> float:
    """Mean share of each sample row's top-k items (by weight) that ``other`` also ranks in
    its top k."""
    shares = []
    for a, b in zip(ref, other, strict=True):
        ta = set(np.argsort(-a, kind="stable")[:k].tolist())
        tb = set(np.argsort(-b, kind="stable")[:k].tolist())
        shares.append(len(ta & tb) / k)
    return float(np.mean(shares))


def section_solve(args, sizes: dict[str, Any], tmp: Path) -> tuple[str, list[list[str]]]:
    load_start = common.load_average()
    shape, nnz = sizes["solve_shape"], sizes["solve_nnz"]
    R, gen_s = common.timed(lambda: common.synthetic_interactions(*shape, nnz=nnz, seed=SEED))
    npz = tmp / "syn.npz"
    common.save_csr(R, npz)
    del R
    print(f"  generated {nnz:,} interactions {shape} in {gen_s:.1f} s", flush=True)
    try:
        import sansa  # noqa: F401

        have_sansa = not args.no_sansa
        sansa_note = "" if have_sansa else "sansa: skipped (--no-sansa)."
    except ImportError as exc:
        have_sansa = False
        sansa_note = f"sansa: not installed ({exc}); skipped."
    results: dict[tuple[str, int], list[common.ChildResult]] = {}
    notes: list[str] = []

    def run(kind: str, n: int, rep: int, rss_limit: int = SOLVE_RSS_LIMIT) -> None:
        out = tmp / f"sample-{kind}-{n}-{rep}.npy"
        res = common.run_child(
            common.python_cmd(Path(__file__), "--child-solve", kind, str(npz), str(n), str(out)),
            timeout=SOLVE_TIMEOUT_S, rss_limit_bytes=rss_limit)
        results.setdefault((kind, n), []).append(res)
        if res.ok:
            print(f"  N={n:,} {kind}: {res.payload['fit_s']:.2f} s, peak "
                  f"{common.mib(res.peak_rss_bytes)} (load {common.load_average()})", flush=True)
        else:
            why = res.killed_reason or f"exit {res.returncode}"
            notes.append(f"{kind} at N={n:,}: {why}: {res.stderr_tail[-400:]}")
            print(f"  N={n:,} {kind}: FAILED ({why})\n{res.stderr_tail}", flush=True)

    inv_skip: dict[int, str] = {}
    for n in sizes["solve_sizes"]:
        big = n == max(sizes["solve_sizes"]) and not args.quick
        reps = 1 if big else args.repeat
        kinds = ["ours"]
        if n in sizes["inv_sizes"] and not args.no_inv:
            ok, why = _inv_memory_ok(n)
            if ok:
                kinds.append("inv64")
            else:
                inv_skip[n] = f"not run: memory ({why})"
        elif not args.no_inv:
            inv_skip[n] = "not run (by design: sizes " + ", ".join(
                f"{s:,}" for s in sizes["inv_sizes"]) + ")"
        if have_sansa:
            kinds.append("sansa")
        if n in sizes["fit_sizes"]:
            kinds.append("ease_fit")
        for rep in range(reps):  # interleaved: slow spells of the shared machine hit all
            for kind in kinds:
                if kind == "inv64":
                    ok, why = _inv_memory_ok(n)  # again: the other work may have grown
                    if not ok:
                        inv_skip[n] = f"not run: memory ({why})"
                        continue
                    run(kind, n, rep, rss_limit=4 * 8 * n * n + 2 * 2**30)
                else:
                    run(kind, n, rep)

    # agreement of the routes on sample rows of B (first repeat of each)
    def sample(kind: str, n: int):
        p = tmp / f"sample-{kind}-{n}-0.npy"
        return np.load(p) if p.exists() else None

    labels = {
        "ours": "`ease_weights` float32 potrf+potri (ours)",
        "inv64": "`numpy.linalg.inv` float64 (reference code)",
        "sansa": f"sansa 1.x ICF, ~{SANSA_ROW_NNZ} weights/row",
        "ease_fit": "`EASE(500, max_items=N, max_neighbours=None).fit`, all "
                    f"{shape[1]:,} items (head N + cosine tail)",
    }
    rows = []
    for n in sizes["solve_sizes"]:
        ours = results.get(("ours", n), [])
        ours_t = common.median([r.payload["fit_s"] for r in ours if r.ok]) if ours else None
        ref = sample("ours", n)
        for kind in ("ours", "inv64", "sansa", "ease_fit"):
            runs = results.get((kind, n))
            if not runs:
                if kind == "inv64" and n in inv_skip:
                    rows.append([f"{n:,}", labels[kind], inv_skip[n], "", "", "", "", ""])
                continue
            ok = [r for r in runs if r.ok]
            if not ok:
                rows.append([f"{n:,}", labels[kind], "failed", "", "", "", "", ""])
                continue
            t = common.median([r.payload["fit_s"] for r in ok])
            peak = max(r.peak_rss_bytes for r in ok)
            added = common.median([r.peak_rss_bytes - r.payload["rss_before"] for r in ok])
            ratio = f"{t / ours_t:.2f}" if ours_t and kind != "ours" else ""
            agree = ""
            other = sample(kind, n)
            if kind == "inv64" and ref is not None and other is not None:
                err = np.max(np.abs(ref - other)) / max(np.max(np.abs(other)), 1e-300)
                agree = f"max abs diff / max abs B: {err:.1e}"
            elif kind == "sansa" and ref is not None and other is not None:
                agree = f"top-{OVERLAP_K} overlap with exact: {_overlap(ref, other, OVERLAP_K):.2f}"
            elif kind == "ease_fit":
                agree = f"tail nnz {ok[0].payload['tail_nnz']:,}"
            rows.append([f"{n:,}", labels[kind], _secs(t),
                         " / ".join(f"{r.payload['fit_s']:.2f}" for r in ok), ratio,
                         common.mib(peak), common.mib(added), agree])
    text = "\n".join([
        f"### 1. Dense EASE solve: synthetic {shape[0]:,} users x {shape[1]:,} items, "
        f"{nnz:,} interactions",
        "",
        f"bench_engine's (c) set (`common.synthetic_interactions(seed={SEED})`, Zipf 0.8 item "
        "popularity, log-normal users), restricted to the N most interacted items "
        f"(`ease.head_items`); lambda = {LAMBDA:g}. Each fit is a child process that loads the "
        "matrix, then times the call alone; peak RSS is the child's VmHWM (input matrix "
        "included), 'added' the peak minus the RSS just before the call. Medians of "
        f"{args.repeat} interleaved runs below {max(sizes['solve_sizes']):,} items, 1 run at "
        f"{max(sizes['solve_sizes']):,}. Both dense routes build the Gram matrix with "
        "`ease.gram` (column blocks); the float64 route is the paper's reference code "
        "(`P = inv(G)`, `B = P / -diag(P)`, G kept). Agreement is measured on "
        f"{SAMPLE_ROWS} rows of B spread over the head.",
        "",
        common.md_table(["N (head)", "route", "s (median)", "runs s", "/ ours", "peak RSS",
                         "added", "agreement / notes"], rows),
        "",
        f"Load average at the start / end: {load_start} / {common.load_average()}."
        + (f" {sansa_note}" if sansa_note else "")
        + (" sansa: `SANSAConfig(l2=500, weight_matrix_density=100/N, ICF factorizer, UMR "
           "inverter scans=1 finetune_steps=5)` (the README's settings but the density); "
           "approximate: its top lists are compared with the exact ones (ICF also rescales X's "
           "columns: even at density 1 it keeps ~half of the exact top 20 at 2k items, its "
           "CHOLMOD factoriser 0.94)." if have_sansa
           else ""),
    ] + (["", "Failures: " + "; ".join(notes)] if notes else []))
    return text, []


# =========================================================================== 2/3. recompute


def _child_load_ml(spec: dict[str, Any]) -> int:
    """Child: MovieLens latest-small as a shop, exactly as bench_pipeline.py loads it."""
    common.setup_demo_django(spec["db"], spec["media"], spec.get("config"))
    import bench_pipeline
    from django.contrib.auth import get_user_model

    from demo_shop.catalog.models import Product
    from shopreco.models import Rating

    seconds = bench_pipeline._load_shop(Path(spec["ml_dir"]), spec["reload"])
    common.emit_result({"seconds": seconds, "counts": {
        "users": get_user_model().objects.count(), "products": Product.objects.count(),
        "ratings": Rating.objects.count()}})
    return 0


def _shop_ratings(n_users: int, n_products: int, nnz: int, seed: int):
    """(user index, product index, score 1-5) of the generated shop: the power-law pattern of
    ``common.synthetic_interactions`` with scores from product quality + user bias + noise."""
    R = common.synthetic_interactions(n_users, n_products, nnz=nnz, seed=seed)
    rng = np.random.default_rng(seed + 1)
    quality = rng.normal(0.0, 0.6, n_products)
    bias = rng.normal(0.0, 0.5, n_users)
    u = np.repeat(np.arange(n_users), np.diff(R.indptr))
    i = R.indices
    score = np.clip(np.rint(3.6 + quality[i] + bias[u] + rng.normal(0.0, 0.9, u.size)), 1, 5)
    return u, i, score


def _child_load_shop(spec: dict[str, Any]) -> int:
    """Child: the generated power-law shop (users, a catalogue, ratings by COPY)."""
    common.setup_demo_django(spec["db"], spec["media"], spec.get("config"))
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.utils import timezone

    from demo_shop.catalog.models import Category, Product
    from shopreco.models import Rating
    from shopreco.pipeline import writer

    n_users, n_products, nnz = spec["shop"]
    marker = f"powerlaw-{n_users}x{n_products}-{nnz}-seed{SEED}"
    call_command("migrate", verbosity=0, interactive=False)
    if Category.objects.filter(slug=marker).exists() and Rating.objects.count() == nnz:
        common.emit_result({"seconds": 0.0, "counts": {"ratings": nnz}})
        return 0
    t0 = time.perf_counter()
    if Rating.objects.exists() or Product.objects.exists():
        raise RuntimeError(f"{spec['db']} holds another shop: run with --reload")
    u, i, score = _shop_ratings(n_users, n_products, nnz, SEED)
    cats = Category.objects.bulk_create(
        [Category(name=marker, slug=marker)]
        + [Category(name=f"Power-law {c}", slug=f"power-law-{c}") for c in range(1, 10)])
    Product.objects.bulk_create(
        [Product(external_id=f"PL{p:05d}", name=f"Product {p:05d}", category=cats[p % 10],
                 price=f"{5 + p % 95}.99") for p in range(n_products)], batch_size=2000)
    by_sku = dict(Product.objects.values_list("external_id", "pk"))
    product_pks = np.array([by_sku[f"PL{p:05d}"] for p in range(n_products)], dtype=np.int64)
    User = get_user_model()
    password = make_password(None)  # unusable, hashed once
    User.objects.bulk_create(
        [User(username=f"{SHOP_PREFIX}{k:06d}", password=password) for k in range(n_users)],
        batch_size=2000)
    by_name = dict(User.objects.filter(username__startswith=SHOP_PREFIX)
                   .values_list("username", "pk"))
    user_pks = np.array([by_name[f"{SHOP_PREFIX}{k:06d}"] for k in range(n_users)],
                        dtype=np.int64)
    now = timezone.now().replace(microsecond=0)
    ago = np.random.default_rng(SEED + 2).integers(0, 365 * 86400, u.size)
    stamps = [now - timedelta(seconds=int(s)) for s in np.unique(ago)]  # few distinct objects
    stamp_of = dict(zip(np.unique(ago).tolist(), stamps, strict=True))
    rows = ((up, pp, sc, stamp_of[a], stamp_of[a]) for up, pp, sc, a in zip(
        user_pks[u].tolist(), product_pks[i].tolist(), score.tolist(), ago.tolist(),
        strict=True))
    n = writer.insert_rows(Rating, ["user_id", "product_id", "score", "created_at",
                                    "updated_at"], rows)
    writer.vacuum_analyze(Rating)
    seconds = time.perf_counter() - t0
    common.emit_result({"seconds": seconds, "counts": {"ratings": n, "users": n_users,
                                                        "products": n_products}})
    return 0


def _child_recompute(spec: dict[str, Any]) -> int:
    """Child: one full in-process recompute with the given configuration."""
    common.setup_demo_django(spec["db"], spec["media"], spec.get("config"))
    from shopreco import pipeline
    from shopreco.conf import DEFAULTS, reco_settings
    from shopreco.models import RecomputeRun
    from shopreco.pipeline import compute

    assert reco_settings.NEIGHBOURS == 50 and reco_settings.RECOMMENDATIONS_PER_USER == 50
    for stuck in RecomputeRun.objects.filter(status__in=["pending", "running"]):
        pipeline.runs.fail_run(stuck.pk, "abandoned by an earlier bench run")
    rss_before = common.proc_status_bytes("VmRSS")
    run, wall = common.timed(pipeline.run_full_recompute)
    hwm = common.proc_status_bytes("VmHWM")  # before the lambda check below allocates more
    params = run.params
    common.check_run_config(params, spec["config"])
    lam = None
    if params["method"] == "ease":
        from shopreco.engine.ease import auto_lambda

        snap = pipeline.load_run_snapshot(run)
        lam = (auto_lambda(compute.weights(snap, params)) if params["ease_lambda"] == "auto"
               else float(params["ease_lambda"]))
    common.emit_result({
        "timings": run.timings, "counts": run.counts, "wall": wall, "rss_before": rss_before,
        "hwm_run": hwm, "method": params["method"], "lambda": lam,
        "defaults_agree": all(DEFAULTS.get(k) == v for k, v in NEW_DEFAULT.items()),
    })
    return 0


def _spawn(flag: str, spec: dict[str, Any], timeout: float = RECOMPUTE_TIMEOUT_S
           ) -> common.ChildResult:
    return common.run_child(common.python_cmd(Path(__file__), flag, json.dumps(spec)),
                            timeout=timeout, rss_limit_bytes=SOLVE_RSS_LIMIT)


def _recompute_series(db: str, media: str, repeat: int, warmup: bool
                      ) -> tuple[dict[str, list[dict]], list[str]]:
    """Alternating new/old recomputes (after one unrecorded warm-up run of each)."""
    out: dict[str, list[dict]] = {key: [] for key in CONFIGS}
    notes: list[str] = []
    order = ([("warm-up", k) for k in CONFIGS] if warmup else []) + [
        (f"run {r + 1}", k) for r in range(repeat) for k in CONFIGS]
    for label, key in order:
        res = _spawn("--child-recompute", {"db": db, "media": media,
                                           "config": CONFIGS[key][1]})
        if not res.ok:
            why = res.killed_reason or f"exit {res.returncode}"
            notes.append(f"{key} {label}: {why}: {res.stderr_tail[-600:]}")
            print(f"  {key} {label}: FAILED ({why})\n{res.stderr_tail}", flush=True)
            continue
        p = {**res.payload, "peak": res.peak_rss_bytes, "load_avg": common.load_average()}
        print(f"  {key} {label}: {p['timings']} peak {common.mib(p['peak'])} "
              f"(load {p['load_avg']})", flush=True)
        if label != "warm-up":
            out[key].append(p)
    return out, notes


def _recompute_table(series: dict[str, list[dict]]) -> str:
    rows = []
    for key, runs in series.items():
        label = CONFIGS[key][0]
        for i, p in enumerate(runs):
            t = p["timings"]
            rows.append([label if i == 0 else "", f"run {i + 1}",
                         *(f"{t.get(ph, 0):.2f}" for ph in PHASES),
                         f"{t['housekeeping']:.2f}" if "housekeeping" in t else "-",
                         common.mib(p["peak"])])
        if runs:
            med = {ph: common.median([p["timings"].get(ph, 0) for p in runs]) for ph in PHASES}
            hk = [p["timings"]["housekeeping"] for p in runs if "housekeeping" in p["timings"]]
            rows.append(["", f"**median of {len(runs)}**",
                         *(f"**{med[ph]:.2f}**" for ph in PHASES),
                         f"**{common.median(hk):.2f}**" if hk else "-",
                         f"**{common.mib(common.median([p['peak'] for p in runs]))}**"])
    return common.md_table(["configuration", "", *PHASES, "housekeeping (after total)",
                            "peak RSS (process)"], rows)


def _median_total(runs: list[dict]) -> float | None:
    return common.median([p["timings"]["total"] for p in runs]) if runs else None


def _shop_line(series: dict[str, list[dict]]) -> str:
    any_run = next((r[0] for r in series.values() if r), None)
    if any_run is None:
        return "No run succeeded."
    c = any_run["counts"]
    lam = next((p["lambda"] for p in series["new"]), None)
    agree = all(p["defaults_agree"] for r in series.values() for p in r)
    return (f"Shop: {c.get('users')} users, {c.get('products')} products, {c.get('ratings')} "
            f"ratings, {c.get('events')} events; EASE lambda 'auto' resolved to "
            f"{lam if lam is None else f'{lam:g}'}. "
            + ("" if agree else "**shopreco.conf.DEFAULTS differ from the new default "
               "spelled out here.** "))


def _load_and_recompute(args, db: str, media: str, flag: str, spec: dict, what: str,
                        **spawn: Any) -> tuple:
    """Load a shop in a child (``flag``), then the alternating recompute series on it:
    (load seconds, series, failure notes, median total new, median total previous)."""
    res = _spawn(flag, {"db": db, "media": media, **spec}, **spawn)
    if not res.ok:
        raise RuntimeError(f"loading {what} failed: {res.stderr_tail}")
    series, notes = _recompute_series(db, media, args.repeat, warmup=not args.quick)
    return (res.payload["seconds"], series, notes, _median_total(series["new"]),
            _median_total(series["old"]))


def section_movielens(args, media: str) -> tuple[str, bool | None]:
    ml_dir = common.require_data("ml-latest-small")
    load_start = common.load_average()
    common.ensure_database(ML_DB)
    seeded, series, notes, new_total, old_total = _load_and_recompute(
        args, ML_DB, media, "--child-load-ml", {"ml_dir": str(ml_dir), "reload": args.reload},
        "MovieLens")
    ok = None if new_total is None else new_total < 30
    text = "\n".join([
        "### 2. Full recompute, MovieLens latest-small on PostgreSQL, in-process",
        "",
        _shop_line(series) + "Loaded as bench_pipeline.py loads it (`seed_demo --flush "
        "--movielens`" + (f", {seeded:.0f} s, not part of any run" if seeded else
                          ", already in the database") + "). Each run is "
        "`pipeline.run_full_recompute()` in a child process of its own (its peak RSS, "
        "VmHWM, Django included); seconds from the run's own `timings`. "
        + ("One unrecorded warm-up run of each configuration, then " if not args.quick else "")
        + f"{args.repeat} runs each, alternating new / previous.",
        "",
        _recompute_table(series),
        "",
        (f"Total new / previous (medians): {new_total:.2f} / {old_total:.2f} s = "
         f"{new_total / old_total:.2f}. " if new_total and old_total else "")
        + f"Target: new default total < 30 s -> {common.verdict(ok)}. "
        f"Load average at the start / end: {load_start} / {common.load_average()}.",
    ] + (["", "Failures: " + "; ".join(notes)] if notes else []))
    return text, ok


def section_shop(args, media: str, shop: tuple[int, int, int]) -> tuple[str, bool | None]:
    load_start = common.load_average()
    n_users, n_products, nnz = shop
    db = SHOP_DB + ("_quick" if args.quick else "")
    common.ensure_database(db, drop=args.reload)
    seeded, series, notes, new_total, old_total = _load_and_recompute(
        args, db, media, "--child-load-shop", {"shop": list(shop)}, "the generated shop",
        timeout=3600)
    ratio = new_total / old_total if new_total and old_total else None
    paired = [a["timings"]["total"] / b["timings"]["total"]
              for a, b in zip(series["new"], series["old"], strict=False)]
    ok = None if ratio is None else ratio <= 1.0
    text = "\n".join([
        f"### 3. Full recompute, generated power-law shop ({n_users:,} users x "
        f"{n_products:,} products, {nnz:,} ratings) on PostgreSQL, in-process",
        "",
        _shop_line(series) + f"Ratings: the pattern of `common.synthetic_interactions("
        f"{n_users}, {n_products}, nnz={nnz}, seed={SEED})` (Zipf items, log-normal users), "
        "scores 1-5 from product quality + user bias + noise; users and products are the demo "
        "shop's models (auth users, `catalog.Product`), ratings loaded with COPY "
        "(`pipeline.writer.insert_rows`)"
        + (f", {seeded:.0f} s, not part of any run" if seeded else ", already in the database")
        + ". Runs as in section 2.",
        "",
        _recompute_table(series),
        "",
        (f"Total new / previous (medians): {new_total:.2f} / {old_total:.2f} s = "
         f"**{ratio:.2f}** (paired per round: {', '.join(f'{r:.2f}' for r in paired)}). "
         if ratio is not None else "")
        + f"Target: ratio <= 1.0 -> {common.verdict(ok)}. "
        f"Load average at the start / end: {load_start} / {common.load_average()}.",
    ] + (["", "Failures: " + "; ".join(notes)] if notes else []))
    return text, ok


# =========================================================================== main

SECTIONS = ("solve", "movielens", "shop")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"sections to run (default all): {','.join(SECTIONS)}")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per configuration / route (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="development sizes: small synthetic set, small shop, 1 repeat")
    parser.add_argument("--reload", action="store_true",
                        help="reload MovieLens and rebuild the generated shop's database")
    parser.add_argument("--no-sansa", action="store_true", help="skip sansa even if installed")
    parser.add_argument("--no-inv", action="store_true", help="skip the numpy.linalg.inv route")
    parser.add_argument("--child-solve", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child-load-ml", help=argparse.SUPPRESS)
    parser.add_argument("--child-load-shop", help=argparse.SUPPRESS)
    parser.add_argument("--child-recompute", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_solve:
        kind, npz, n, out = args.child_solve
        return _child_solve(kind, npz, int(n), out)
    for flag, fn in (("child_load_ml", _child_load_ml), ("child_load_shop", _child_load_shop),
                     ("child_recompute", _child_recompute)):
        if getattr(args, flag):
            return fn(json.loads(getattr(args, flag)))

    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = sorted(set(wanted) - set(SECTIONS))
    if bad:
        parser.error(f"--only: unknown {bad[0]} (have {', '.join(SECTIONS)})")
    if args.quick:
        args.repeat = min(args.repeat, 1)
    sizes = {"solve_shape": SOLVE_SHAPE, "solve_nnz": SOLVE_NNZ, "solve_sizes": SOLVE_SIZES,
             "inv_sizes": INV_SIZES, "fit_sizes": FIT_SIZES,
             "shop": (SHOP_USERS, SHOP_PRODUCTS, SHOP_NNZ)}
    if args.quick:
        sizes.update(QUICK)
    started, load_start = time.perf_counter(), common.load_average()
    body: list[str] = []
    targets: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="shopreco-ease-scale-") as tmp:
        media = str(Path(tmp) / "media")
        for name in SECTIONS:
            if name not in wanted:
                continue
            print(f"== {name} (load {common.load_average()})", flush=True)
            t0 = time.perf_counter()
            try:
                if name == "solve":
                    text, _ = section_solve(args, sizes, Path(tmp))
                elif name == "movielens":
                    text, ok = section_movielens(args, media)
                    targets.append(["full recompute of MovieLens latest-small < 30 s "
                                    "(new default, median total)", common.verdict(ok)])
                else:
                    text, ok = section_shop(args, media, sizes["shop"])
                    targets.append([f"{sizes['shop'][2]:,}-rating shop: total new / previous "
                                    "<= 1.0 (medians)", common.verdict(ok)])
            except common.DataMissing:
                raise
            except Exception as exc:  # noqa: BLE001 - report the section, keep the others
                traceback.print_exc()
                text = f"### {name}\n\nFailed: {type(exc).__name__}: {exc}"
                if name != "solve":
                    targets.append([name, "not measured (failed)"])
            body += [text, ""]
            print(text + f"\n({time.perf_counter() - t0:.0f} s)\n", flush=True)
    total = time.perf_counter() - started
    from run import _git_head  # bench/run.py: "<hash> <date>", notes uncommitted changes
    flags = (" --quick" if args.quick else "") + (
        f" --only {args.only}" if set(wanted) != set(SECTIONS) else "") + (
        f" --repeat {args.repeat}" if args.repeat != 3 and not args.quick else "")
    head = [
        "## EASE at scale and the recompute it drives" + (" (QUICK: development sizes)"
                                                          if args.quick else ""),
        "",
        f"New default = `{json.dumps(NEW_DEFAULT)}`; previous default = "
        f"`{json.dumps(PREVIOUS_DEFAULT)}` (SHOPRECO overrides). Reproduce: "
        f"`.venv/bin/python bench/bench_ease_scale.py{flags}` or "
        "`.venv/bin/python bench/run.py --only ease_scale` (needs PostgreSQL; sansa is "
        "optional, see the module docstring). "
        f"Code: commit {_git_head()}. Bench time {total / 60:.0f} min; load average "
        "(1, 5, 15 min) at the start / end: "
        f"{load_start} / {common.load_average()} (2 shared cores).",
        "",
    ]
    if targets:
        head += [common.md_table(["target", "verdict"], targets), ""]
    path = common.write_section("ease_scale", "\n".join(head + body))
    print(f"wrote {path} in {total:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
