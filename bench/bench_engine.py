"""shopreco.engine side by side with Surprise and implicit: same data, same folds, one run.

(a) rating prediction, MovieLens latest-small, 5-fold CV (seed 0): ItemKNN()/UserKNN()
    defaults (plus ItemKNN on KNNBaseline's own pearson_baseline recipe, for reference) vs
    Surprise KNNWithMeans (user, item; pearson), KNNBaseline (item, pearson_baseline) and
    SVD.
(b) top-10 ranking on the same ratings as binary implicit feedback, split by implicit's own
    train_test_split(0.8, random_state=0), every model scored by implicit's own
    ranking_metrics_at_k (our model wrapped as an implicit recommender) and by one shared
    evaluator over the very same recommendation lists.
(c) scale: synthetic 100k users x 20k items, 0.5M / 5M / 20M interactions, ItemKNN(cosine,
    k=50).fit vs implicit CosineRecommender(K=50).fit, each fit in its own child process
    (wall time, peak RSS = the child's own VmHWM).

Writes bench/out/engine.md. Run alone with ``python bench/bench_engine.py`` (``--help``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import common  # noqa: E402

SEED = 0
N_FOLDS = 5
RATING_SCALE = (0.5, 5.0)
TOP_K = 10
NEIGHBOURS_B = 20  # implicit item-item K in (b)
SCALE_K = 50
SCALE_SHAPE = (100_000, 20_000)
SCALE_SIZES = (500_000, 5_000_000, 20_000_000)
SCALE_TIMEOUT_S = 1200.0
SCALE_RSS_LIMIT = 12 * 2**30  # kill a child past this: the machine is shared
MEMORY_TARGET = 2 * 2**30
RMSE_TARGET = 0.85
SPEED_TARGET = 0.10  # our 5-fold total / KNNBaseline's

SURPRISE_MODELS = (
    "Surprise KNNWithMeans (user, pearson)",
    "Surprise KNNWithMeans (item, pearson)",
    "Surprise KNNBaseline (item, pearson_baseline)",
    "Surprise SVD",
)
KNNBASELINE = SURPRISE_MODELS[2]
REFERENCE_MODEL = "shopreco ItemKNN(similarity=\"pearson_baseline\") (reference)"


def _ours() -> tuple[dict[str, Any] | None, str | None]:
    """Our estimators, or the reason they cannot be imported yet."""
    try:
        from shopreco.engine import ItemKNN, UserKNN
    except Exception as exc:  # noqa: BLE001 - report, keep benchmarking the peers
        return None, f"{type(exc).__name__}: {exc}"
    return {"ItemKNN": ItemKNN, "UserKNN": UserKNN}, None


def _engine_revision() -> str:
    """Last commit touching shopreco/engine, plus 'uncommitted changes' when the tree differs."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=common.REPO_DIR, capture_output=True,
                                  text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    rev = git("log", "-1", "--format=%h (%cd)", "--date=iso", "--", "shopreco/engine") or "unknown"
    dirty = git("status", "--porcelain", "--", "shopreco/engine")
    return rev + (" (plus uncommitted changes)" if dirty else "")


def _errors(est: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    err = est - truth
    return float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err)))


def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _secs(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


# =========================================================================== (a) ratings


def _run_ours_ratings(data: common.Ratings, folds: list[np.ndarray], classes: dict
                      ) -> dict[str, dict[str, list]]:
    results: dict[str, dict[str, list]] = {}
    n = len(data)
    models = {
        "shopreco ItemKNN()": lambda: classes["ItemKNN"](),
        "shopreco UserKNN()": lambda: classes["UserKNN"](),
        # KNNBaseline's own recipe in our engine (ItemKNN's default before cosine_baseline):
        # the same similarity as the peer, so its time compares like for like
        REFERENCE_MODEL: lambda: classes["ItemKNN"](similarity="pearson_baseline"),
    }
    for label, make in models.items():
        res = {"rmse": [], "mae": [], "rmse_unclipped": [], "fit": [], "predict": [],
               "nonfinite": []}
        for test in folds:
            R = data.matrix(common.train_indices(n, test))
            model = make()
            _, fit_s = common.timed(lambda m=model, R=R: m.fit(R))
            est, pred_s = common.timed(lambda m=model, t=test: m.predict(data.u[t], data.i[t]))
            est = np.asarray(est, dtype=np.float64)
            truth = data.rating[test]
            bad = ~np.isfinite(est)
            res["nonfinite"].append(int(bad.sum()))
            if bad.any():  # count them as the global train mean: visible, not hidden
                est = np.where(bad, R.data.mean(), est)
            res["rmse_unclipped"].append(_errors(est, truth)[0])
            rmse, mae = _errors(np.clip(est, *RATING_SCALE), truth)
            res["rmse"].append(rmse)
            res["mae"].append(mae)
            res["fit"].append(fit_s)
            res["predict"].append(pred_s)
        results[label] = res
    return results


def _surprise_algorithms() -> dict[str, Any]:
    from surprise import SVD, KNNBaseline, KNNWithMeans

    return {
        SURPRISE_MODELS[0]: lambda: KNNWithMeans(
            sim_options={"name": "pearson", "user_based": True}, verbose=False),
        SURPRISE_MODELS[1]: lambda: KNNWithMeans(
            sim_options={"name": "pearson", "user_based": False}, verbose=False),
        SURPRISE_MODELS[2]: lambda: KNNBaseline(
            sim_options={"name": "pearson_baseline", "user_based": False}, verbose=False),
        SURPRISE_MODELS[3]: lambda: SVD(random_state=SEED),
    }


def _run_surprise_ratings(data: common.Ratings, folds: list[np.ndarray]
                          ) -> dict[str, dict[str, list]]:
    """Surprise on exactly our folds: load_from_df keeps file order, so row j is rating j."""
    import pandas as pd
    from surprise import Dataset, Reader

    df = pd.DataFrame({"user": data.user_raw, "item": data.item_raw, "rating": data.rating})
    dataset = Dataset.load_from_df(df, Reader(rating_scale=RATING_SCALE))
    raw = dataset.raw_ratings
    n = len(data)
    results: dict[str, dict[str, list]] = {}
    for name, make in _surprise_algorithms().items():
        res = {"rmse": [], "mae": [], "fit": [], "predict": []}
        for test in folds:
            trainset = dataset.construct_trainset([raw[j] for j in common.train_indices(n, test)])
            testset = dataset.construct_testset([raw[j] for j in test])
            algo = make()
            _, fit_s = common.timed(lambda a=algo, t=trainset: a.fit(t))
            preds, pred_s = common.timed(lambda a=algo, t=testset: a.test(t))
            est = np.fromiter((p.est for p in preds), dtype=np.float64, count=len(preds))
            rmse, mae = _errors(est, data.rating[test])
            res["rmse"].append(rmse)
            res["mae"].append(mae)
            res["fit"].append(fit_s)
            res["predict"].append(pred_s)
        results[name] = res
        print(f"  {name}: RMSE {np.mean(res['rmse']):.4f}, "
              f"{sum(res['fit']) + sum(res['predict']):.1f} s", flush=True)
    return results


def _peer_cache(key: str) -> Path:
    return common.CACHE_DIR / f"engine-surprise-{key}.json"


def section_ratings(reuse_peers: bool) -> tuple[str, list[list[str]]]:
    data = common.load_movielens("ml-latest-small")
    folds = common.kfold_test_indices(len(data), N_FOLDS, SEED)
    load_before = common.load_average()
    classes, import_error = _ours()
    ours = _run_ours_ratings(data, folds, classes) if classes else {}

    from importlib.metadata import version
    key = f"{data.sha}-s{SEED}-f{N_FOLDS}-surprise{version('scikit-surprise')}"
    cache = _peer_cache(key)
    peer_note = "measured in this run"
    if reuse_peers and cache.exists():
        cached = json.loads(cache.read_text())
        peers = cached["results"]
        peer_note = (f"REUSED from an earlier run ({cached['when']}, load {cached['load']}); "
                     "rerun without --reuse-peers for a strict side-by-side")
    else:
        peers = _run_surprise_ratings(data, folds)
        common.CACHE_DIR.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"when": _now(), "load": common.load_average(),
                                     "results": peers}))
    results = {**ours, **peers}
    load_after = common.load_average()

    base_total = sum(peers[KNNBASELINE]["fit"]) + sum(peers[KNNBASELINE]["predict"])
    base_rmse = float(np.mean(peers[KNNBASELINE]["rmse"]))
    rows = []
    for name, res in results.items():
        total = sum(res["fit"]) + sum(res["predict"])
        rows.append([
            name, _fmt(np.mean(res["rmse"])), _fmt(np.std(res["rmse"])), _fmt(np.mean(res["mae"])),
            _secs(common.median(res["fit"])), _secs(common.median(res["predict"])),
            _secs(total), f"{total / base_total:.3f}",
        ])
    lines = [
        "### (a) Rating prediction: MovieLens latest-small, 5-fold CV",
        "",
        f"{len(data):,} ratings, {data.shape[0]} users x {data.shape[1]} items "
        f"(ratings.csv sha256 {data.sha}). Folds: one permutation with "
        f"`numpy.random.default_rng({SEED})` cut in {N_FOLDS}; every model sees the same "
        "train/test rows (Surprise through `Dataset.load_from_df` + `construct_trainset` / "
        "`construct_testset` on those rows, ours as scipy CSR with one sorted id mapping). "
        "Errors computed by the same function for all; predictions clipped to [0.5, 5] for all "
        "(Surprise clips inside `test()`). Times: wall clock of `fit` and of predicting the "
        "whole test fold. Surprise figures: " + peer_note + ".",
        "",
        common.md_table(
            ["model", "RMSE (mean)", "RMSE sd", "MAE", "fit s (median fold)",
             "predict s (median fold)", "5-fold fit+predict s", "time / KNNBaseline"],
            rows),
        "",
        f"Load average before / after: {load_before} / {load_after}.",
    ]
    targets: list[list[str]] = []
    if not ours:
        lines += ["", f"**shopreco engine not importable: {import_error}**"]
        targets.append(["(a) our best RMSE <= 0.85 and below KNNBaseline's", "engine missing",
                        common.verdict(None)])
        targets.append(["(a) 5-fold time <= 1/10 of KNNBaseline", "engine missing",
                        common.verdict(None)])
        return "\n".join(lines), targets
    # the defaults compete; the reference row (KNNBaseline's recipe) is shown, not chosen
    best = min((k for k in ours if k != REFERENCE_MODEL), key=lambda k: np.mean(ours[k]["rmse"]))
    best_rmse = float(np.mean(ours[best]["rmse"]))
    best_total = sum(ours[best]["fit"]) + sum(ours[best]["predict"])
    folds_better = sum(a < b for a, b in
                       zip(ours[best]["rmse"], peers[KNNBASELINE]["rmse"], strict=True))
    ratio = best_total / base_total
    nonfinite = {k: sum(v["nonfinite"]) for k, v in ours.items() if sum(v["nonfinite"])}
    unclipped = ", ".join(f"{k} {np.mean(v['rmse_unclipped']):.4f}" for k, v in ours.items())
    lines += [
        "",
        f"Our best: **{best}**, RMSE {best_rmse:.4f} vs KNNBaseline {base_rmse:.4f} "
        f"(lower on {folds_better}/{N_FOLDS} folds); 5-fold fit+predict {best_total:.2f} s vs "
        f"{base_total:.1f} s = **{ratio:.3f}x** KNNBaseline's time "
        f"({base_total / best_total:.1f} times faster). Our RMSE without clipping: {unclipped}.",
    ]
    if nonfinite:
        lines.append(f"Non-finite predictions (counted as the train mean): {nonfinite}.")
    targets.append(["(a) our best RMSE <= 0.85", f"{best_rmse:.4f} ({best})",
                    common.verdict(best_rmse <= RMSE_TARGET)])
    targets.append(["(a) our best RMSE below KNNBaseline's on the same folds",
                    f"{best_rmse:.4f} vs {base_rmse:.4f} (lower on {folds_better}/{N_FOLDS} "
                    "folds)", common.verdict(best_rmse < base_rmse)])
    targets.append(["(a) 5-fold fit+predict <= 1/10 of KNNBaseline's",
                    f"{ratio:.3f} ({best_total:.2f} s / {base_total:.1f} s)",
                    common.verdict(ratio <= SPEED_TARGET)])
    # The strict reading above times the model with the best RMSE. Also shown: the fastest of
    # our models that meets both RMSE targets on its own (a looser reading of the issue).
    qualifying = {
        k: v for k, v in ours.items()
        if k != REFERENCE_MODEL and np.mean(v["rmse"]) <= RMSE_TARGET
        and np.mean(v["rmse"]) < base_rmse
    }
    if qualifying:
        fast = min(qualifying, key=lambda k: sum(ours[k]["fit"]) + sum(ours[k]["predict"]))
        fast_total = sum(ours[fast]["fit"]) + sum(ours[fast]["predict"])
        fast_better = sum(a < b for a, b in
                          zip(ours[fast]["rmse"], peers[KNNBASELINE]["rmse"], strict=True))
        lines.append(
            f"Fastest of ours meeting both RMSE targets: **{fast}**, RMSE "
            f"{np.mean(ours[fast]['rmse']):.4f} (lower than KNNBaseline on {fast_better}/"
            f"{N_FOLDS} folds), {fast_total:.2f} s = {fast_total / base_total:.3f}x "
            "KNNBaseline's time.")
        targets.append(["(a) looser reading: a model of ours meeting both RMSE targets "
                        "within 1/10 of KNNBaseline's time",
                        f"{fast}: {fast_total / base_total:.3f} (RMSE "
                        f"{np.mean(ours[fast]['rmse']):.4f})",
                        common.verdict(fast_total / base_total <= SPEED_TARGET)])
    return "\n".join(lines), targets


# =========================================================================== (b) ranking


def _recording_adapter(model: Any, ours: bool):
    """An implicit RecommenderBase that forwards to ``model`` and keeps every list it returns.

    implicit's ranking_metrics_at_k calls ``recommend(userids, train_rows, N=K)``; recording
    the lists lets the shared evaluator score exactly what implicit scored.
    """
    from implicit.recommender_base import RecommenderBase

    class Adapter(RecommenderBase):
        def __init__(self) -> None:
            self.lists: dict[int, np.ndarray] = {}

        def fit(self, user_items, show_progress=True, callback=None):  # pragma: no cover
            raise NotImplementedError

        def recommend(self, userid, user_items, N=10, filter_already_liked_items=True,
                      filter_items=None, recalculate_user=False, items=None):
            scalar = np.isscalar(userid)
            users = np.atleast_1d(np.asarray(userid, dtype=np.int64))
            if ours:
                ids, scores = model.recommend(users, n=N, exclude_seen=filter_already_liked_items)
            else:
                ids, scores = model.recommend(users, user_items, N=N,
                                              filter_already_liked_items=filter_already_liked_items)
            ids = np.atleast_2d(np.asarray(ids)).astype(np.int32)  # implicit's C loop wants int
            scores = np.atleast_2d(np.asarray(scores)).astype(np.float32)
            for u, row in zip(users, ids, strict=False):
                self.lists[int(u)] = row.copy()
            return (ids[0], scores[0]) if scalar else (ids, scores)

        def similar_users(self, userid, N=10, filter_users=None, users=None):
            raise NotImplementedError

        def similar_items(self, itemid, N=10, recalculate_item=False, item_users=None,
                          filter_items=None, items=None):
            raise NotImplementedError

        def save(self, file):
            raise NotImplementedError

    return Adapter()


def _shared_metrics(lists: dict[int, np.ndarray], test, train, k: int) -> dict[str, float]:
    """Textbook metrics over the recorded lists: P@k = hits/k, recall, NDCG, hit rate, coverage."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    prec, rec, ndcg, hit, leaked = [], [], [], [], 0
    recommended = set()
    for u in range(test.shape[0]):
        truth = test.indices[test.indptr[u]:test.indptr[u + 1]]
        if len(truth) == 0:
            continue
        ids = np.asarray(lists.get(u, np.empty(0)), dtype=np.int64)[:k]
        ids = ids[ids >= 0]
        recommended.update(ids.tolist())
        seen = train.indices[train.indptr[u]:train.indptr[u + 1]]
        leaked += int(np.isin(ids, seen).sum())
        rel = np.isin(ids, truth).astype(np.float64)
        hits = rel.sum()
        prec.append(hits / k)
        rec.append(hits / len(truth))
        ideal = discounts[:min(k, len(truth))].sum()
        ndcg.append(float((rel * discounts[:len(rel)]).sum() / ideal))
        hit.append(float(hits > 0))
    return {"precision": float(np.mean(prec)), "recall": float(np.mean(rec)),
            "ndcg": float(np.mean(ndcg)), "hit_rate": float(np.mean(hit)),
            "coverage": len(recommended) / test.shape[1], "seen_items_recommended": leaked,
            "users": len(prec)}


def section_ranking() -> tuple[str, list[list[str]]]:
    from implicit.evaluation import ranking_metrics_at_k, train_test_split
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender

    data = common.load_movielens("ml-latest-small")
    R = data.matrix(binary=True)
    train, test = train_test_split(R, train_percentage=0.8, random_state=0)
    train, test = train.tocsr(), test.tocsr()
    load_before = common.load_average()
    classes, import_error = _ours()
    models: dict[str, tuple[Any, bool, Any]] = {}
    if classes:
        models["shopreco ItemKNN()"] = (classes["ItemKNN"](), True, lambda m: m.fit(train))
        models["shopreco UserKNN() (reference)"] = (classes["UserKNN"](), True,
                                                    lambda m: m.fit(train))
    for cls in (CosineRecommender, TFIDFRecommender, BM25Recommender):
        models[f"implicit {cls.__name__}(K={NEIGHBOURS_B})"] = (
            cls(K=NEIGHBOURS_B), False, lambda m: m.fit(train, show_progress=False))

    rows, figures = [], {}
    for name, (model, ours, fit) in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, fit_s = common.timed(lambda m=model, f=fit: f(m))
            adapter = _recording_adapter(model, ours)
            imp, eval_s = common.timed(lambda a=adapter: ranking_metrics_at_k(
                a, train, test, K=TOP_K, show_progress=False))
        shared = _shared_metrics(adapter.lists, test, train, TOP_K)
        figures[name] = (imp, shared)
        rows.append([name, _fmt(imp["precision"]), _fmt(imp["ndcg"]), _fmt(imp["map"]),
                     _fmt(shared["precision"]), _fmt(shared["recall"]), _fmt(shared["ndcg"]),
                     _fmt(shared["hit_rate"], 3), _fmt(shared["coverage"], 3),
                     shared["seen_items_recommended"], _secs(fit_s), _secs(eval_s)])
    lines = [
        "### (b) Top-10 ranking: the same ratings as binary implicit feedback",
        "",
        f"All {len(data):,} ratings set to 1; split by `implicit.evaluation.train_test_split("
        f"ratings, train_percentage=0.8, random_state=0)` ({train.nnz:,} train / {test.nnz:,} "
        "test interactions). Every model is evaluated by implicit's own `ranking_metrics_at_k("
        f"K={TOP_K})` through one adapter (our model wrapped as an implicit `RecommenderBase`); "
        "the adapter records the lists implicit scored and a shared evaluator recomputes "
        "textbook metrics on them (P@10 = hits/10; implicit's 'precision' divides by "
        "min(10, test items) instead). 'seen' counts training items recommended (must be 0).",
        "",
        common.md_table(
            ["model", "implicit P@10", "implicit NDCG@10", "implicit MAP@10", "P@10 (hits/10)",
             "recall@10", "NDCG@10", "hit rate", "coverage", "seen", "fit s", "eval s"],
            rows),
        "",
        f"Load average before: {load_before}.",
    ]
    targets: list[list[str]] = []
    peers = {k: v for k, v in figures.items() if k.startswith("implicit")}
    if not classes:
        lines += ["", f"**shopreco engine not importable: {import_error}**"]
        targets.append(["(b) P@10 and NDCG@10 >= best implicit item-item", "engine missing",
                        common.verdict(None)])
        return "\n".join(lines), targets
    ours_imp, ours_shared = figures["shopreco ItemKNN()"]
    best_p = max(v[0]["precision"] for v in peers.values())
    best_n = max(v[0]["ndcg"] for v in peers.values())
    best_p_shared = max(v[1]["precision"] for v in peers.values())
    best_n_shared = max(v[1]["ndcg"] for v in peers.values())
    ok = (ours_imp["precision"] >= best_p and ours_imp["ndcg"] >= best_n
          and ours_shared["precision"] >= best_p_shared and ours_shared["ndcg"] >= best_n_shared)
    targets.append([
        "(b) ItemKNN P@10 and NDCG@10 >= best implicit item-item (K=20)",
        f"implicit's metrics: P {ours_imp['precision']:.4f} vs {best_p:.4f}, "
        f"NDCG {ours_imp['ndcg']:.4f} vs {best_n:.4f}; shared: P {ours_shared['precision']:.4f} "
        f"vs {best_p_shared:.4f}, NDCG {ours_shared['ndcg']:.4f} vs {best_n_shared:.4f}",
        common.verdict(ok)])
    return "\n".join(lines), targets


# =========================================================================== (c) scale


def _child_scale(lib: str, path: str) -> int:
    """Child process: load the matrix, fit one model, report fit time and memory."""
    warnings.simplefilter("ignore")
    R = common.load_csr(Path(path))
    if lib == "ours":
        from shopreco.engine import ItemKNN

        model = ItemKNN(similarity="cosine", k=SCALE_K)

        def fit():
            model.fit(R)
            return model.similarity_
    else:
        from implicit.nearest_neighbours import CosineRecommender

        model = CosineRecommender(K=SCALE_K)

        def fit():
            model.fit(R, show_progress=False)
            return model.similarity
    rss_before = common.proc_status_bytes("VmRSS")
    sim, fit_s = common.timed(fit)
    common.emit_result({"fit_s": fit_s, "rss_before": rss_before, "sim_nnz": int(sim.nnz),
                        "sim_shape": list(sim.shape)})
    return 0


def _neighbour_agreement(R) -> str:
    """Share of implicit's off-diagonal cosine neighbours that ours also keeps (0.5M only)."""
    import scipy.sparse as sp
    from implicit.nearest_neighbours import CosineRecommender

    classes, _ = _ours()
    if not classes:
        return "n/a"
    ours = classes["ItemKNN"](similarity="cosine", k=SCALE_K).fit(R).similarity_
    peer = CosineRecommender(K=SCALE_K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer.fit(R, show_progress=False)

    def pattern(m):
        m = sp.csr_matrix(m, copy=True)
        m.setdiag(0)
        m.eliminate_zeros()
        m.data[:] = 1.0
        return m

    a, b = pattern(ours), pattern(peer.similarity)
    both = a.multiply(b).sum()
    return (f"{both / max(b.sum(), 1):.3f} of implicit's neighbour pairs are in ours, "
            f"{both / max(a.sum(), 1):.3f} of ours in implicit's")


def section_scale(sizes: tuple[int, ...], repeat: int) -> tuple[str, list[list[str]]]:
    classes, import_error = _ours()
    libs = ["implicit"] + (["ours"] if classes else [])
    rows, by_size, notes = [], {}, []
    load_before = common.load_average()
    agreement = "n/a"
    with tempfile.TemporaryDirectory(prefix="shopreco-bench-") as tmp:
        for nnz in sizes:
            R, gen_s = common.timed(lambda n=nnz: common.synthetic_interactions(
                *SCALE_SHAPE, nnz=n, seed=SEED))
            path = Path(tmp) / f"syn-{nnz}.npz"
            common.save_csr(R, path)
            if nnz == min(sizes) and classes:
                try:
                    agreement = _neighbour_agreement(R)
                except Exception as exc:  # noqa: BLE001
                    agreement = f"failed: {type(exc).__name__}: {exc}"
            del R
            reps = repeat if nnz <= 5_000_000 else 1
            runs: dict[str, list[common.ChildResult]] = {lib: [] for lib in libs}
            for _ in range(reps):  # interleaved, so slow spells hit both sides alike
                for lib in libs:
                    res = common.run_child(
                        common.python_cmd(Path(__file__), "--child-scale", lib, str(path)),
                        timeout=SCALE_TIMEOUT_S, rss_limit_bytes=SCALE_RSS_LIMIT)
                    runs[lib].append(res)
                    if not res.ok:
                        why = f"killed: {res.killed_reason}" if res.killed_reason else ""
                        notes.append(f"{lib} at {nnz:,}: exit {res.returncode} {why} "
                                     f"{res.stderr_tail[-300:]}")
                        break
                print(f"  scale {nnz:,}: " + ", ".join(
                    f"{lib} {runs[lib][-1].payload['fit_s']:.2f}s" if runs[lib][-1].ok
                    else f"{lib} failed" for lib in libs), flush=True)
            summary = {}
            for lib in libs:
                ok_runs = [r for r in runs[lib] if r.ok]
                if not ok_runs:
                    summary[lib] = None
                    continue
                summary[lib] = {
                    "fit": common.median([r.payload["fit_s"] for r in ok_runs]),
                    "fits": [r.payload["fit_s"] for r in ok_runs],
                    "peak": max(r.peak_rss_bytes for r in ok_runs),
                    "before": common.median([r.payload["rss_before"] for r in ok_runs]),
                    "sim_nnz": ok_runs[0].payload["sim_nnz"],
                }
            by_size[nnz] = summary
            for lib in libs:
                s = summary[lib]
                name = ("shopreco ItemKNN(similarity='cosine', k=50).fit" if lib == "ours"
                        else "implicit CosineRecommender(K=50).fit")
                if s is None:
                    rows.append([f"{nnz:,}", name, "failed", "", "", "", "", ""])
                    continue
                ratio = ""
                if lib == "ours" and summary.get("implicit"):
                    ratio = f"{s['fit'] / summary['implicit']['fit']:.2f}"
                    paired = [a / b for a, b in zip(s["fits"], summary["implicit"]["fits"],
                                                    strict=False)]
                    if len(paired) > 1:  # each round's own ratio: robust to slow spells
                        ratio += f" (paired {', '.join(f'{r:.2f}' for r in paired)})"
                rows.append([f"{nnz:,}", name, _secs(s["fit"]),
                             " / ".join(f"{t:.2f}" for t in s["fits"]), ratio,
                             common.mib(s["peak"]), common.mib(s["peak"] - s["before"]),
                             f"{s['sim_nnz']:,} ({s['sim_nnz'] / SCALE_SHAPE[1]:.0f}/item)"])
            print(f"  generated {nnz:,} in {gen_s:.1f}s", flush=True)

    growth = []
    ordered = sorted(by_size)
    for lib in libs:
        pts = [(n, by_size[n][lib]) for n in ordered if by_size[n].get(lib)]
        if len(pts) > 1:
            growth.append(f"{'ours' if lib == 'ours' else 'implicit'}: " + "; ".join(
                f"{a:,} -> {b:,}: time x{sb['fit'] / sa['fit']:.1f}, peak RSS "
                f"x{sb['peak'] / sa['peak']:.1f}"
                for (a, sa), (b, sb) in zip(pts, pts[1:], strict=False)))
    lines = [
        "### (c) Scale: synthetic 100k users x 20k items, binary, power-law popularity",
        "",
        f"Generated by `common.synthetic_interactions(seed={SEED})` (Zipf item popularity, "
        "exponent 0.8; log-normal user activity) and saved once per size; each fit runs in its "
        "own child process that loads the matrix, then times `fit` alone. Peak RSS is the "
        "child's own high-water mark (VmHWM: interpreter, libraries and input matrix "
        "included); 'fit added' subtracts the RSS just before `fit`. Children alternate "
        f"(implicit, ours, implicit, ...), {repeat} runs each up to 5M and 1 at 20M; "
        "the environment (BLAS threads, OPENBLAS_* variables) is left as the machine has it.",
        "",
        common.md_table(["interactions", "model", "fit s (median)", "runs s", "ours / implicit",
                         "peak RSS", "fit added", "similarity nnz"], rows),
        "",
        "Growth: " + (" | ".join(growth) if growth else "n/a"),
        "",
        f"Neighbour agreement at {min(sizes):,} (both plain cosine, top {SCALE_K}): {agreement}.",
        f"Load average before: {load_before}, after: {common.load_average()}.",
    ]
    if not classes:
        lines += ["", f"**shopreco engine not importable: {import_error}**"]
    if notes:
        lines += ["", "Failures: " + "; ".join(notes)]
    targets: list[list[str]] = []
    head = 5_000_000 if 5_000_000 in by_size else max(by_size)
    ours_s, peer_s = by_size[head].get("ours"), by_size[head].get("implicit")
    if ours_s and peer_s:
        targets.append([f"(c) ItemKNN cosine fit time <= implicit's at {head:,} (medians)",
                        f"{ours_s['fit']:.2f} s vs {peer_s['fit']:.2f} s "
                        f"(ratio {ours_s['fit'] / peer_s['fit']:.2f})",
                        common.verdict(ours_s["fit"] <= peer_s["fit"])])
        targets.append([f"(c) peak memory < 2 GiB at {head:,}", common.gib(ours_s["peak"]),
                        common.verdict(ours_s["peak"] < MEMORY_TARGET)])
    else:
        targets.append([f"(c) fit time and memory at {head:,}", "ours not measured",
                        common.verdict(None)])
    return "\n".join(lines), targets


# =========================================================================== main


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _parse_sizes(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split(","):
        part = part.strip().upper()
        mult = 1_000_000 if part.endswith("M") else 1_000 if part.endswith("K") else 1
        out.append(int(float(part.rstrip("MK")) * mult))
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="a,b,c", help="sections to run: a,b,c")
    parser.add_argument("--reuse-peers", action="store_true",
                        help="reuse cached Surprise results for (a) (development only)")
    parser.add_argument("--sizes", default="0.5M,5M,20M", help="interaction counts for (c)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per model and size in (c)")
    parser.add_argument("--child-scale", nargs=2, metavar=("LIB", "NPZ"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_scale:
        return _child_scale(*args.child_scale)

    common.require_data("ml-latest-small", "ratings.csv")
    started = time.perf_counter()
    info = common.machine_info()
    header = [
        "## Engine: shopreco.engine vs Surprise and implicit",
        "",
        f"Run {_now()}; engine at {_engine_revision()}; scikit-surprise "
        f"{info['scikit-surprise']}, implicit {info['implicit']}; "
        f"load average at start {common.load_average()} (2 shared cores). "
        "Reproduce: `make bench` or `.venv/bin/python bench/bench_engine.py`.",
    ]
    sections, targets = [], []
    runners = {
        "a": lambda: section_ratings(args.reuse_peers),
        "b": section_ranking,
        "c": lambda: section_scale(_parse_sizes(args.sizes), args.repeat),
    }
    for key in [s.strip() for s in args.only.split(",") if s.strip()]:
        print(f"engine bench: section ({key})", flush=True)
        try:
            text, tgt = runners[key]()
        except common.DataMissing:
            raise
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
            text = (f"### ({key}) failed\n\n```\n{traceback.format_exc()[-2000:]}\n```")
            tgt = [[f"({key})", f"section failed: {type(exc).__name__}: {exc}",
                    common.verdict(None)]]
        sections.append(text)
        targets += tgt
    summary = ["### Targets", "", common.md_table(["target", "measured", "verdict"], targets)]
    body = header + ["", *summary, "", *("\n\n".join(sections).splitlines()), "",
                     f"Engine bench wall time: {time.perf_counter() - started:.0f} s; "
                     f"load average at end {common.load_average()}."]
    path = common.write_section("engine", "\n".join(body))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
