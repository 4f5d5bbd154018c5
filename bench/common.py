"""Shared helpers for the benchmarks in bench/: data, folds, timing, child processes, output.

Every bench_*.py module imports this as ``common`` (bench/run.py puts bench/ on sys.path).
Figures are medians and ratios because the machine is shared and noisy; memory is the peak
RSS (VmHWM) of a dedicated child process, read by the child itself just before it reports,
so nothing of the parent's heap is counted.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
CACHE_DIR = OUT_DIR / "cache"
RESULT_MARKER = "BENCH_RESULT "
SKIP_EXIT_CODE = 3  # a bench module's main() raised DataMissing: run.py reports "skipped"


def data_dir() -> Path:
    """../shared/data relative to the repository, or $SHOPRECO_DATA_DIR when set."""
    override = os.environ.get("SHOPRECO_DATA_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


class DataMissing(RuntimeError):
    """Raised by a bench when its data set is absent; run.py turns it into a 'skipped' line."""


def require_data(*parts: str) -> Path:
    """Path to a file or folder under the data directory, or DataMissing naming it."""
    path = data_dir().joinpath(*parts)
    if not path.exists():
        raise DataMissing(f"skipped: ../shared/data not found ({path} is missing)")
    return path


def file_sha256(path: Path, length: int = 12) -> str:
    """Short content hash, used to key cached peer results to the exact data."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


# --------------------------------------------------------------------------- MovieLens


@dataclass
class Ratings:
    """Explicit ratings in file order with a dense, sorted id mapping shared by every model."""

    path: Path
    sha: str
    user_raw: np.ndarray  # raw ids, file order
    item_raw: np.ndarray
    rating: np.ndarray  # float64
    timestamp: np.ndarray  # int64
    users: np.ndarray  # sorted unique raw user ids; index = dense user index
    items: np.ndarray
    u: np.ndarray = field(repr=False)  # dense user index per rating
    i: np.ndarray = field(repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.users), len(self.items))

    def __len__(self) -> int:
        return len(self.rating)

    def matrix(self, rows: np.ndarray | None = None, binary: bool = False) -> sp.csr_matrix:
        """users x items CSR of the selected ratings (all when rows is None)."""
        sel = slice(None) if rows is None else rows
        values = np.ones(len(self.u[sel]), dtype=np.float32) if binary else self.rating[sel]
        return sp.csr_matrix((values, (self.u[sel], self.i[sel])), shape=self.shape)


def load_movielens(name: str = "ml-latest-small") -> Ratings:
    """ratings.csv of a MovieLens release (userId,movieId,rating,timestamp with a header)."""
    path = require_data(name, "ratings.csv")
    users: list[int] = []
    items: list[int] = []
    ratings: list[float] = []
    stamps: list[int] = []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if [h.strip() for h in header[:3]] != ["userId", "movieId", "rating"]:
            raise ValueError(f"{path}: unexpected header {header!r}")
        for lineno, row in enumerate(reader, start=2):
            try:
                users.append(int(row[0]))
                items.append(int(row[1]))
                ratings.append(float(row[2]))
                stamps.append(int(row[3]) if len(row) > 3 else 0)
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{path}, line {lineno}: {exc}") from exc
    user_raw = np.asarray(users, dtype=np.int64)
    item_raw = np.asarray(items, dtype=np.int64)
    uniq_u, u = np.unique(user_raw, return_inverse=True)
    uniq_i, i = np.unique(item_raw, return_inverse=True)
    return Ratings(
        path=path,
        sha=file_sha256(path),
        user_raw=user_raw,
        item_raw=item_raw,
        rating=np.asarray(ratings, dtype=np.float64),
        timestamp=np.asarray(stamps, dtype=np.int64),
        users=uniq_u,
        items=uniq_i,
        u=u.astype(np.int32),
        i=i.astype(np.int32),
    )


def kfold_test_indices(n: int, n_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Test-row indices of each fold: one seeded permutation cut into near-equal parts."""
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(perm, n_folds)]


def train_indices(n: int, test: np.ndarray) -> np.ndarray:
    """The complement of a fold's test rows."""
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask)


# --------------------------------------------------------------------------- synthetic data


def synthetic_interactions(
    n_users: int = 100_000,
    n_items: int = 20_000,
    nnz: int = 5_000_000,
    seed: int = 0,
    item_exponent: float = 0.8,
    user_sigma: float = 1.0,
) -> sp.csr_matrix:
    """Binary users x items matrix with exactly ``nnz`` distinct entries.

    Item popularity follows a Zipf law (rank^-item_exponent, ranks shuffled over item ids),
    user activity is log-normal: the long-tailed shape of real shop data. Deterministic for a
    given seed.
    """
    if nnz > n_users * n_items:
        raise ValueError("nnz: more interactions than cells in the matrix")
    rng = np.random.default_rng(seed)
    item_p = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** item_exponent
    item_p = item_p[rng.permutation(n_items)]
    item_p /= item_p.sum()
    user_p = rng.lognormal(0.0, user_sigma, n_users)
    user_p /= user_p.sum()
    user_cdf, item_cdf = np.cumsum(user_p), np.cumsum(item_p)
    # One bit per cell (n_users * n_items / 8 bytes: 250 MB for 100k x 20k) marks what has
    # been drawn, so each round costs only its own draws, however saturated popular items get.
    seen = np.zeros((n_users * n_items + 7) // 8, dtype=np.uint8)
    chunks: list[np.ndarray] = []
    total, draw = 0, int(nnz * 1.15) + 1000
    while total < nnz:
        u = np.minimum(np.searchsorted(user_cdf, rng.random(draw)), n_users - 1)
        i = np.minimum(np.searchsorted(item_cdf, rng.random(draw)), n_items - 1)
        cells = np.sort(u.astype(np.int64) * n_items + i)  # np.unique hashes: slower here
        cells = cells[np.concatenate(([True], cells[1:] != cells[:-1]))]
        bit = (cells & 7).astype(np.uint8)
        fresh = cells[((seen[cells >> 3] >> bit) & 1) == 0]
        np.bitwise_or.at(seen, fresh >> 3, np.left_shift(1, fresh & 7).astype(np.uint8))
        chunks.append(fresh)
        total += len(fresh)
        # popular cells saturate: size the next round by how many draws were new this time
        acceptance = max(len(fresh) / draw, 0.01)
        draw = int((nnz - total) / acceptance * 1.1) + 1000
    del seen
    keys = np.concatenate(chunks)
    keys = np.sort(rng.choice(keys, size=nnz, replace=False))
    rows = (keys // n_items).astype(np.int32)
    cols = (keys % n_items).astype(np.int32)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    data = np.ones(nnz, dtype=np.float32)
    return sp.csr_matrix((data, cols, indptr), shape=(n_users, n_items))


def save_csr(matrix: sp.csr_matrix, path: Path) -> None:
    """Uncompressed .npz so a child process loads it fast and identically."""
    np.savez(path, data=matrix.data, indices=matrix.indices, indptr=matrix.indptr,
             shape=np.asarray(matrix.shape))


def load_csr(path: Path) -> sp.csr_matrix:
    with np.load(path) as z:
        return sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(result, seconds) of one call, wall clock."""
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def repeat_median(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, list[float]]:
    """Median wall time of ``repeat`` calls and the individual times."""
    times = [timed(fn)[1] for _ in range(repeat)]
    return median(times), times


# --------------------------------------------------------------------------- child processes


def proc_status_bytes(key: str) -> int:
    """VmRSS / VmHWM etc. of this process from /proc/self/status, in bytes (0 if unknown)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class ChildResult:
    returncode: int | None  # None: killed after the timeout
    wall_s: float
    peak_rss_bytes: int  # the child's own VmHWM when it called emit_result(), else ru_maxrss
    payload: dict[str, Any] | None
    stderr_tail: str
    killed_reason: str = ""  # "timeout after N s" / "RSS over N GiB" when the parent killed it

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.payload is not None


def emit_result(payload: dict[str, Any]) -> None:
    """Child side: print the JSON line run_child() looks for, with this process's peak RSS."""
    payload = {**payload, "vm_hwm_bytes": proc_status_bytes("VmHWM")}
    print(RESULT_MARKER + json.dumps(payload), flush=True)


def _rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_child(argv: Sequence[str], timeout: float = 1800.0, env: dict[str, str] | None = None,
              cwd: Path | None = None, rss_limit_bytes: int | None = None) -> ChildResult:
    """Run argv as a child, return its wall time, peak RSS and last emit_result() payload.

    Peak RSS is the VmHWM the child reports through emit_result(): its own address space only.
    The kernel's ru_maxrss (from wait4) is only a fallback, an upper bound: Linux carries the
    spawning parent's RSS into the child's maximum across fork/vfork + exec, so a parent
    holding 1 GiB makes every child look 1 GiB big. The child is
    killed past ``timeout`` seconds or ``rss_limit_bytes`` of resident memory, since the
    machine is shared with other work.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=env,
                                cwd=str(cwd or REPO_DIR), start_new_session=True)
        deadline = t0 + timeout
        status = rusage = None
        killed = ""
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if not killed:
                if time.perf_counter() > deadline:
                    killed = f"timeout after {timeout:.0f} s"
                elif rss_limit_bytes and _rss_of(proc.pid) > rss_limit_bytes:
                    killed = f"RSS over {rss_limit_bytes / 2**30:.1f} GiB"
                if killed:
                    os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    payload = None
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            payload = json.loads(line[len(RESULT_MARKER):])
            break
    peak = int(rusage.ru_maxrss) * 1024
    if payload and payload.get("vm_hwm_bytes"):
        peak = int(payload["vm_hwm_bytes"])
    return ChildResult(
        returncode=None if killed else proc.returncode,
        wall_s=wall,
        peak_rss_bytes=peak,
        payload=payload,
        stderr_tail="\n".join(stderr.strip().splitlines()[-8:]),
        killed_reason=killed,
    )


# --------------------------------------------------------------------------- machine and output


def load_average() -> str:
    """'1-min, 5-min, 15-min' load averages: the machine is shared, so every result notes it."""
    try:
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"
    except OSError:
        return "unknown"


def _meminfo_total() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - absent package: say so rather than fail the report
        return "not installed"


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: cores, memory, CPU, library versions, BLAS."""
    blas: list[str] = []
    import importlib

    for lib in ("scipy.linalg", "implicit.nearest_neighbours", "sparse_dot_topn"):
        try:  # load their native pools so threadpoolctl can see them
            importlib.import_module(lib)
        except Exception:  # noqa: BLE001, S112 - absent optional peer: nothing to report
            continue
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            blas.append(
                f"{pool.get('internal_api')} {pool.get('version')} "
                f"({pool.get('architecture', '-')}, {pool.get('num_threads')} threads, "
                f"{Path(pool.get('filepath', '')).name})"
            )
    except ImportError:
        blas.append("threadpoolctl not installed")
    return {
        "nproc": os.cpu_count(),
        "ram_gib": round(_meminfo_total() / 2**30, 1),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "scikit-surprise": _version("scikit-surprise"),
        "implicit": _version("implicit"),
        "sparse_dot_topn": _version("sparse_dot_topn"),
        "blas": blas,
        "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                   "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
                         if k in os.environ},
        "load": load_average(),
    }


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats are written as given (format them before)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.0f} MiB"


def verdict(ok: bool | None) -> str:
    """Plain words for a target: met / NOT met / not measured."""
    if ok is None:
        return "not measured"
    return "met" if ok else "NOT met"


def write_section(name: str, text: str) -> Path:
    """bench/out/<name>.md, the piece run.py assembles into RESULTS.md."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.md"
    path.write_text(text.rstrip() + "\n")
    return path


def python_cmd(script: Path, *args: str) -> list[str]:
    """argv to run a bench script with this interpreter."""
    return [sys.executable, str(script), *args]


def ensure_database(url: str, drop: bool = False) -> None:
    """Create the PostgreSQL database of ``url`` if absent (``drop``: anew); a server that
    does not answer skips the bench (DataMissing)."""
    from urllib.parse import urlparse

    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            if drop:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise DataMissing(f"skipped: PostgreSQL not reachable ({exc})") from exc


def setup_demo_django(db_url: str, media_root: str, shopreco: dict | None = None) -> None:
    """Django for a bench child: the demo shop's settings on ``db_url``, eager Celery and
    the demo's per-process memory cache, run files under ``media_root``, SHOPRECO options
    ``shopreco`` over the demo's."""
    os.environ["DATABASE_URL"] = db_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "demo_shop.settings"
    for var in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHE_URL"):
        os.environ.pop(var, None)
    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import override_settings

    override_settings(MEDIA_ROOT=media_root,
                      SHOPRECO={**settings.SHOPRECO, **(shopreco or {})}).enable()


def check_run_config(params: dict, config: dict) -> None:
    """Raise unless a run's frozen params took the SHOPRECO ``config`` the bench set."""
    expected = {"algorithm": config["ALGORITHM"], "similarity": config["SIMILARITY"],
                "popularity_penalty": float(config["POPULARITY_PENALTY"]),
                "ease_lambda": config["EASE_LAMBDA"], "ease_max_items": config["EASE_MAX_ITEMS"]}
    wrong = {k: (params.get(k), v) for k, v in expected.items() if params.get(k) != v}
    if wrong:
        raise RuntimeError(f"the run did not take the configuration: {wrong}")


# The configurations the model benches compare, spelled out so the figures do not move
# with a local edit of shopreco/conf.py (the benches report whether DEFAULTS agree).
NEW_DEFAULT: dict = {"ALGORITHM": "ease", "EASE_LAMBDA": "auto", "EASE_MAX_ITEMS": 10000,
                     "POPULARITY_PENALTY": 0.15, "SIMILARITY": "auto", "SHRINKAGE": 10.0}
PREVIOUS_DEFAULT: dict = {**NEW_DEFAULT, "ALGORITHM": "item", "SIMILARITY": "adjusted_cosine",
                          "SHRINKAGE": 10.0, "POPULARITY_PENALTY": 0.0}
