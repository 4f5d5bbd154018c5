"""Run every bench/bench_*.py and assemble bench/RESULTS.md (what `make bench` does).

Each module's main() runs in its own subprocess (a crash or a leak in one cannot skew the
next), in turn, never in parallel: the machine has two shared cores. A bench whose data set is
missing raises common.DataMissing and is reported as "skipped: ../shared/data not found".
Each bench writes bench/out/<name>.md; this script stitches those sections together under a
description of the machine and the command that reproduces them.

    python bench/run.py                  # everything
    python bench/run.py --only engine    # one bench; other sections kept, marked as older
    python bench/run.py --assemble-only  # rebuild RESULTS.md from bench/out/*.md
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import common  # noqa: E402

RESULTS = BENCH_DIR / "RESULTS.md"
RUNLOG = common.OUT_DIR / "runlog.json"  # last status of each bench, kept across --only runs
FIRST = ("engine",)  # the rest follow in name order


def discover() -> list[str]:
    """Bench names (bench_<name>.py -> <name>), engine first."""
    names = sorted(p.stem[len("bench_"):] for p in BENCH_DIR.glob("bench_*.py"))
    return [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]


def _child(name: str) -> int:
    """Child side: import bench_<name> and call its main() with a clean argv."""
    sys.path[:0] = [str(BENCH_DIR), str(common.REPO_DIR)]
    sys.argv = [str(BENCH_DIR / f"bench_{name}.py")]
    try:
        module = importlib.import_module(f"bench_{name}")
        code = module.main()
    except common.DataMissing as exc:
        print(str(exc) if str(exc).startswith("skipped") else
              f"skipped: ../shared/data not found ({exc})", flush=True)
        return common.SKIP_EXIT_CODE
    except FileNotFoundError as exc:
        if exc.filename and str(common.data_dir()) in str(exc.filename):
            print(f"skipped: ../shared/data not found ({exc.filename})", flush=True)
            return common.SKIP_EXIT_CODE
        raise
    return int(code or 0)


def run_one(name: str, timeout: float) -> tuple[str, float]:
    """Run one bench in a subprocess, echoing its output. Returns (status, seconds)."""
    print(f"\n=== bench_{name} (load {common.load_average()}) ===", flush=True)
    t0 = time.perf_counter()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH_DIR), str(common.REPO_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                 else []))
    proc = subprocess.Popen([sys.executable, "-u", str(Path(__file__).resolve()), "--child", name],
                            cwd=common.REPO_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True)
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    skip_line = ""
    try:
        for line in proc.stdout:  # tee: the bench's progress stays visible
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.startswith("skipped:"):
                skip_line = line.strip()
        code = proc.wait()
    finally:
        timer.cancel()
    seconds = time.perf_counter() - t0
    if code == common.SKIP_EXIT_CODE:
        return skip_line or "skipped: ../shared/data not found", seconds
    if code == -signal.SIGKILL and seconds >= timeout:
        return f"failed: timed out after {timeout:.0f} s", seconds
    if code != 0:
        return f"failed: exit code {code}", seconds
    return "ok", seconds


def _git_head() -> str:
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h %cd", "--date=short"],
                             cwd=common.REPO_DIR, capture_output=True, text=True, timeout=20)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=common.REPO_DIR, capture_output=True, text=True, timeout=20)
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip()
                                     else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_EARLIER = re.compile(r"(\s*_This section is from an earlier run \([^)]*\)\._)+\s*$")


def _without_earlier_note(text: str) -> str:
    """A section without the "from an earlier run" notes an assembly appended to it (the
    next assembly adds the one that holds then)."""
    return _EARLIER.sub("", text.rstrip()).rstrip()


def recover_sections(names: list[str]) -> list[str]:
    """Rebuild bench/out (git-ignored, so absent in a fresh checkout) from the committed
    RESULTS.md: each bench's section and run-log row as they were assembled, so that a
    ``--only`` run keeps the other sections instead of dropping them. Sections stand in
    discover() order between "## Run log" and the end; a file that exists is kept. Returns
    the names recovered."""
    if not RESULTS.exists():
        return []
    text = RESULTS.read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("bench_") and cells[0].endswith(".py"):
            rows[cells[0][len("bench_"):-len(".py")]] = cells
    body = text.split("## Run log", 1)[-1].split("\n## ")[1:]
    present = [n for n in discover() if n in rows and not rows[n][3].startswith("none")]
    if len(body) != len(present):
        return []  # the layout changed: better nothing than sections under wrong names
    common.OUT_DIR.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RUNLOG.read_text()) if RUNLOG.exists() else {}
    recovered = []
    for name, section in zip(present, body, strict=True):
        out = common.OUT_DIR / f"{name}.md"
        if out.exists() or name not in names:
            continue
        out.write_text("## " + _without_earlier_note(section) + "\n")
        written = rows[name][3].removeprefix("written ").split(",")[0]
        try:
            stamp = datetime.strptime(written, "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
            os.utime(out, (stamp.timestamp(), stamp.timestamp()))
        except ValueError:
            pass
        status = rows[name][1].split(" (earlier run, ")
        when = status[1].rstrip(")") if len(status) > 1 else written
        seconds = float(rows[name][2]) if rows[name][2] else float("nan")
        previous.setdefault(name, {"status": status[0], "seconds": seconds, "when": when})
        recovered.append(name)
    RUNLOG.write_text(json.dumps(previous, indent=1))
    return recovered


def assemble(log: dict[str, tuple[str, float]], started: float, load_start: str) -> Path:
    """Write RESULTS.md from bench/out/<name>.md sections plus the machine and run log."""
    info = common.machine_info()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    blas = "; ".join(info["blas"]) or "none found"
    openblas_env = ", ".join(f"{k}={v}" for k, v in info["openblas_env"].items()) or "none set"
    lines = [
        "# shopreco benchmarks",
        "",
        "Reproduce with `make bench` (installs requirements-bench.txt, then runs "
        "`.venv/bin/python bench/run.py`). Data: MovieLens latest-small from ../shared/data "
        "(or $SHOPRECO_DATA_DIR); synthetic sets are generated with fixed seeds. The machine is "
        "shared, so figures are medians and ratios measured side by side in one run, and each "
        "section notes the load average at the time.",
        "",
        f"Assembled {now} at commit {_git_head()}.",
        "",
        "## Machine",
        "",
        common.md_table(["what", "value"], [
            ["cores (nproc)", info["nproc"]],
            ["RAM", f"{info['ram_gib']} GiB"],
            ["CPU", info["cpu"]],
            ["Python / numpy / scipy", f"{info['python']} / {info['numpy']} / {info['scipy']}"],
            ["scikit-surprise / implicit (peers)",
             f"{info['scikit-surprise']} / {info['implicit']}"],
            ["sparse_dot_topn (used by the engine)", info["sparse_dot_topn"]],
            ["BLAS and thread pools (threadpoolctl)", blas],
            ["OPENBLAS_* / OMP_* in the environment", openblas_env],
            ["load average (1, 5, 15 min) at start / end" if started else
             "load average (1, 5, 15 min) when assembled (each section notes its own)",
             f"{load_start} / {info['load']}" if started else info["load"]],
        ]),
        "",
        "## Run log",
        "",
    ]
    rows, sections = [], []
    previous = json.loads(RUNLOG.read_text()) if RUNLOG.exists() else {}
    for name in discover():
        section = common.OUT_DIR / f"{name}.md"
        if name in log:
            status, seconds = log[name]
        elif name in previous:
            status = f"{previous[name]['status']} (earlier run, {previous[name]['when']})"
            seconds = previous[name]["seconds"]
        else:
            status, seconds = "not run yet", float("nan")
        fresh = section.exists() and section.stat().st_mtime >= started  # started=0: all
        if section.exists():
            when = datetime.fromtimestamp(section.stat().st_mtime, UTC).strftime(
                "%Y-%m-%d %H:%M UTC")
            note = f"written {when}" + ("" if fresh else ", earlier run")
            text = _without_earlier_note(section.read_text())
            if started and not fresh:
                text += f"\n\n_This section is from an earlier run ({when})._"
            sections.append(text)
        else:
            note = "none written"
        rows.append([f"bench_{name}.py", status,
                     "" if seconds != seconds else f"{seconds:.0f}", note])
    lines.append(common.md_table(["bench", "status", "seconds", "section"], rows))
    lines += ["", *("\n\n".join(sections).splitlines())]
    RESULTS.write_text("\n".join(lines).rstrip() + "\n")
    return RESULTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated bench names (e.g. engine)")
    parser.add_argument("--assemble-only", action="store_true",
                        help="do not run anything, rebuild RESULTS.md from bench/out")
    parser.add_argument("--timeout", type=float, default=3 * 3600,
                        help="seconds allowed per bench (default 3 h)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child)

    started = time.time()
    load_start = common.load_average()
    names = discover()
    if args.only:
        wanted = [n.strip().removeprefix("bench_").removesuffix(".py")
                  for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"--only: no bench/bench_{unknown[0]}.py (have: {', '.join(names)})")
        names = [n for n in names if n in wanted]
    log: dict[str, tuple[str, float]] = {}
    recovered = recover_sections(discover())
    if recovered:
        print(f"note: sections of {', '.join(recovered)} taken from the committed RESULTS.md")
    if not args.assemble_only:
        if not common.data_dir().exists():
            print(f"note: {common.data_dir()} not found; benches that need it will be skipped")
        for name in names:
            status, seconds = run_one(name, args.timeout)
            log[name] = (status, seconds)
            print(f"--- bench_{name}: {status} ({seconds:.0f} s)", flush=True)
    if log:
        previous = json.loads(RUNLOG.read_text()) if RUNLOG.exists() else {}
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        previous.update({n: {"status": st, "seconds": round(sec, 1), "when": when}
                         for n, (st, sec) in log.items()})
        common.OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = assemble(log, 0.0 if args.assemble_only else started, load_start)
    if log:
        RUNLOG.write_text(json.dumps(previous, indent=1))
    print(f"\nwrote {path}")
    for name, (status, _) in log.items():
        print(f"  bench_{name}: {status}")
    return 1 if any(s.startswith("failed") for s, _ in log.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
