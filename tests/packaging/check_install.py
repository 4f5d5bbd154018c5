"""The install check (``make check-install``; CI runs it after the suite): what a shop gets
from ``pip install`` and the README, outside this repository.

1. ``python -m build`` makes the sdist and the wheel (no setuptools warning allowed) and
   ``twine check --strict`` checks them; the wheel holds the ``shopreco`` package only (no
   ``demo_shop``, tests or benchmarks), with its templates, static files and migrations, and
   metadata with the SPDX license and the version of ``shopreco/__init__.py``.
2. A fresh virtualenv (``python -m venv``, then ``pip install --upgrade pip``) installs the
   wheel with the extras of the README's ``pip install`` line, as a direct reference like the
   README's, and ``pip check`` passes; ``demo_shop`` is not importable there.
3. ``django-admin startproject myshop`` and ``startapp shop`` (a tiny ``shop.Product``) take
   the README's "Add it to your shop" snippets verbatim: settings (step 2), URLs (4), Celery
   beat schedule (5) and template tags (6, on a product page). Then ``check``,
   ``makemigrations --check`` for shopreco, ``migrate``, ``shopreco_import`` of a small
   ratings file, ``shopreco_recompute`` and host/hostcheck.py's page, API, ``schema/`` and
   ``docs/`` requests through Django's test client.
4. The ``redis`` extra: kombu's Redis transport loads (a Celery app with a ``redis://``
   broker); with ``--redis-url`` (CI) it also connects.

Where the README leaves a step out (an import a snippet needs, say), the check does what a
host has to and prints it under "README gaps". Pip's cache is its default user cache (set
PIP_CACHE_DIR to move it), so a second run downloads nothing.

    python tests/packaging/check_install.py [--redis-url redis://...] [--keep] [--workdir DIR]
                                            [--readme DRAFT.md]
"""

from __future__ import annotations

import argparse
import ast
import email.parser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = Path(__file__).resolve().parent / "host"

# Build output lines that are not warnings about the package: PYTHONDONTWRITEBYTECODE, and
# pip's own "WARNING: " lines while it fills the isolated build environment (a pip config's
# index that is missing, say).
HARMLESS = re.compile(r"byte-compiling is disabled|^\s*WARNING: ")
# What the wheel must carry besides Python modules.
DATA_FILES = (
    "shopreco/templates/shopreco/widgets/similar.html",
    "shopreco/templates/admin/shopreco/insights.html",
    "shopreco/static/shopreco/widgets.css",
    "shopreco/static/shopreco/clicks.js",
    "shopreco/migrations/0001_initial.py",
    "shopreco/templatetags/shopreco.py",
)

gaps: list[str] = []
failed: list[str] = []  # checks that failed without stopping the steps after them
timings: list[tuple[str, float]] = []


class CheckFailed(Exception):
    pass


def step(name: str):
    """Context manager printing a step's name and recording its time."""

    class _Step:
        def __enter__(self):
            print(f"\n== {name}", flush=True)
            self.t0 = time.monotonic()

        def __exit__(self, *exc):
            timings.append((name, time.monotonic() - self.t0))

    return _Step()


def run(cmd: list, cwd: Path | None = None, env: dict | None = None,
        capture: bool = False) -> str:
    """Run a command; its output goes to the log (or is returned when ``capture``)."""
    shown = " ".join(str(c) if "\n" not in str(c) else "<script>" for c in cmd)
    print(f"$ {shown}", flush=True)
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout
    if not capture and out.strip():
        print(textwrap.indent(out.rstrip(), "  "), flush=True)
    if proc.returncode:
        if capture:
            print(textwrap.indent(out.rstrip(), "  "))
        said = [line.strip() for line in out.splitlines() if line.startswith("FAIL")]
        raise CheckFailed(f"exit status {proc.returncode}: {shown}"
                          + "".join(f"\n      {line}" for line in said))
    return out


def soft(func, *args, **kwargs) -> None:
    """Run a check whose failure leaves the later steps meaningful: record it and go on."""
    try:
        func(*args, **kwargs)
    except CheckFailed as exc:
        print(f"FAIL  {exc}", flush=True)
        failed.append(str(exc))


def expect(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        raise CheckFailed(what)


def clean_env(venv: Path) -> dict:
    """The environment of a shell in the fresh virtualenv: nothing of this repository's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "DATABASE_URL",
                        "CELERY_BROKER_URL", "VIRTUAL_ENV", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


# -- the README ------------------------------------------------------------------------------

def readme_section(readme: Path = REPO / "README.md") -> str:
    text = readme.read_text(encoding="utf-8")
    match = re.search(r"^## Add it to your shop\n(.*?)(?=^## )", text, re.S | re.M)
    if not match:
        raise CheckFailed("README.md has no '## Add it to your shop' section")
    return match.group(1)


def readme_blocks(section: str) -> list[str]:
    """The fenced code blocks of the section, dedented (they sit in a numbered list)."""
    blocks = re.findall(r"^([ \t]*)```[^\n]*\n(.*?)^\1```", section, re.S | re.M)
    return [textwrap.dedent(body) for _, body in blocks]


def readme_block(blocks: list[str], marker: str, what: str) -> str:
    found = [b for b in blocks if marker in b]
    if len(found) != 1:
        raise CheckFailed(f"README: expected one {what} block containing {marker!r}, "
                          f"found {len(found)}")
    return found[0]


def readme_extras(blocks: list[str]) -> list[str]:
    line = readme_block(blocks, "pip install", "install")
    match = re.search(r'pip install "shopreco\[([^\]]*)\] @ ', line)
    if not match:
        raise CheckFailed(f"README: the install line is not 'pip install \"shopreco[...] @ "
                          f"...\"': {line.strip()}")
    return [e.strip() for e in match.group(1).split(",") if e.strip()]


# -- 1. build and inspect --------------------------------------------------------------------

def source_version() -> str:
    tree = ast.parse((REPO / "shopreco" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise CheckFailed("shopreco/__init__.py has no __version__")


def build(dist: Path) -> tuple[Path, Path]:
    out = run([sys.executable, "-m", "build", "--outdir", dist, REPO], capture=True)
    warnings = [line for line in out.splitlines()
                if re.search(r"(?i)warn|!!", line) and not HARMLESS.search(line)]
    print(f"  built {', '.join(p.name for p in sorted(dist.iterdir()))}")
    if warnings:
        print(textwrap.indent(out.rstrip(), "  "))
    expect(not warnings, "the build prints no warnings" + "".join(
        f"\n      {w.strip()}" for w in warnings[:10]))
    run([sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir())])
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    expect(len(wheels) == 1 and len(sdists) == 1, "one wheel and one sdist")
    return wheels[0], sdists[0]


def inspect(wheel: Path, sdist: Path, version: str, extras: list[str]) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
    tops = sorted({n.split("/")[0] for n in names})
    expect(tops == ["shopreco", f"shopreco-{version}.dist-info"],
           f"the wheel holds the shopreco package only (top level: {tops})")
    missing = [f for f in DATA_FILES if f not in names]
    expect(not missing, f"the wheel has the templates, static files and migrations ({missing})")
    expect(not any("__pycache__" in n or n.endswith(".pyc") for n in names),
           "no bytecode in the wheel")
    expect(meta["Version"] == version, f"wheel version {meta['Version']} is "
                                       f"shopreco.__version__ {version}")
    expect(meta["License-Expression"] == "MIT" and meta["License"] is None
           and not any(c.startswith("License ::") for c in meta.get_all("Classifier") or []),
           f"SPDX license metadata (License-Expression: {meta['License-Expression']}, "
           f"Metadata-Version {meta['Metadata-Version']})")
    provided = set(meta.get_all("Provides-Extra") or [])
    expect({"api", "redis", "progress"} <= provided and set(extras) <= provided,
           f"extras {sorted(provided)} cover the README's {extras} and redis")
    with tarfile.open(sdist) as tf:
        members = [m.split("/", 1)[1] for m in tf.getnames() if "/" in m]
    stray = sorted({m.split("/")[0] for m in members}
                   & {"demo_shop", "tests", "bench", "docs", "scripts", "manage.py"})
    expect(not stray, f"the sdist leaves out the repository's other folders ({stray})")
    expect("CHANGELOG.md" in members and "README.md" in members,
           "the sdist has README.md and CHANGELOG.md")


# -- 2. the fresh virtualenv -----------------------------------------------------------------

def make_venv(venv: Path, wheel: Path, extras: list[str]) -> dict:
    run([sys.executable, "-m", "venv", venv])
    env = clean_env(venv)
    py = venv / "bin" / "python"
    run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], env=env)
    requirement = f"shopreco[{','.join(extras)}] @ {wheel.as_uri()}"
    out = run([py, "-m", "pip", "install", "--quiet", requirement], env=env, capture=True)
    noise = "is ignored: it is neither a file nor a directory"  # a pip config's missing index
    said = "\n".join(line for line in out.splitlines() if noise not in line)
    print(textwrap.indent(said.rstrip(), "  ") if said.strip() else "  installed", flush=True)
    expect("does not provide the extra" not in out, f"pip knows the extras {extras}")
    run([py, "-m", "pip", "check"], env=env)
    return env


# -- 3. the README in a fresh project --------------------------------------------------------

def new_project(proj: Path, venv: Path, env: dict, blocks: list[str]) -> None:
    bin_ = venv / "bin"
    proj.mkdir()
    run([bin_ / "django-admin", "startproject", "myshop", proj], env=env, cwd=proj.parent)
    run([bin_ / "python", "manage.py", "startapp", "shop"], env=env, cwd=proj)
    shutil.copy(HOST / "models.py", proj / "shop" / "models.py")
    shutil.copy(HOST / "views.py", proj / "shop" / "views.py")
    shutil.copy(HOST / "hostcheck.py", proj / "hostcheck.py")
    templates = proj / "shop" / "templates" / "shop"
    templates.mkdir(parents=True)
    page = (HOST / "product.html").read_text(encoding="utf-8")
    tags = readme_block(blocks, "{% load shopreco %}", "template")
    (templates / "product.html").write_text(
        page.replace("@README_TEMPLATE_SNIPPET@", tags.rstrip()), encoding="utf-8")

    settings_py = proj / "myshop" / "settings.py"
    settings = readme_block(blocks, "SHOPRECO_PRODUCT_MODEL", "settings")
    beat = readme_block(blocks, "CELERY_BEAT_SCHEDULE", "Celery beat")
    with settings_py.open("a", encoding="utf-8") as fh:
        fh.write("\n# The shop's own catalogue app (startapp shop).\n"
                 "INSTALLED_APPS += [\"shop\"]\n"
                 "\n# README, Add it to your shop, step 2:\n" + settings
                 + "\n# README, step 5:\n" + beat)

    urls_py = proj / "myshop" / "urls.py"
    urls = urls_py.read_text(encoding="utf-8")
    snippet = readme_block(blocks, 'include("shopreco.urls")', "URLs").splitlines()
    imports = [line for line in snippet if line.startswith(("from ", "import "))]
    routes = [line for line in snippet if line not in imports]
    if "include(" in "\n".join(routes) and not any(re.search(r"\binclude\b", line)
                                                   for line in imports):
        gaps.append("step 4: the URL snippet calls include(), which a new project's urls.py "
                    "does not import (it has: from django.urls import path)")
        imports.append("from django.urls import include")
    imports.append("import shop.views")
    routes += ['path("products/<int:pk>/", shop.views.product, name="product"),',
               'path("products/<int:pk>/buy/", shop.views.buy, name="buy"),']
    # The imports go after the module docstring, the routes at the end of urlpatterns.
    urls = re.sub(r"^(from |import )", lambda m: "\n".join(imports) + "\n" + m.group(1), urls,
                  count=1, flags=re.M)
    urls = re.sub(r"(urlpatterns = \[\n(?:.*\n)*?)(\])",
                  lambda m: m.group(1) + "".join(f"    {r.strip()}\n" for r in routes if r.strip())
                  + m.group(2), urls, count=1)
    urls_py.write_text(urls, encoding="utf-8")


def exercise(proj: Path, venv: Path, env: dict) -> None:
    py = venv / "bin" / "python"
    manage = [py, "manage.py"]
    env = dict(env, DJANGO_SETTINGS_MODULE="myshop.settings")
    with step("check, migrations, migrate"):
        run([*manage, "check", "--fail-level", "WARNING"], cwd=proj, env=env)
        run([*manage, "makemigrations", "shop"], cwd=proj, env=env)
        run([*manage, "makemigrations", "--check", "--dry-run"], cwd=proj, env=env)
        run([*manage, "migrate", "--noinput", "-v", "0"], cwd=proj, env=env)
    with step("data and shopreco_recompute"):
        run([py, "hostcheck.py", "seed", "ratings.csv"], cwd=proj, env=env)
        run([*manage, "shopreco_import", "ratings.csv", "--format", "csv"], cwd=proj, env=env)
        run([*manage, "shopreco_recompute"], cwd=proj, env=env)
    with step("pages, API, schema/"):
        soft(run, [py, "hostcheck.py", "serve"], cwd=proj, env=env)


# -- 4. the redis extra ----------------------------------------------------------------------

REDIS_PROBE = """
import sys
from celery import Celery
url = sys.argv[1]
app = Celery("probe", broker=url or "redis://127.0.0.1:6379/0")
conn = app.connection_for_write()
transport = conn.transport  # loads kombu.transport.redis: needs redis and packaging
print("transport", type(transport).__module__)
if url:
    conn.ensure_connection(max_retries=2)
    print("connected to", url)
conn.release()
"""


def redis_extra(venv: Path, env: dict, wheel: Path, url: str) -> None:
    py = venv / "bin" / "python"
    run([py, "-m", "pip", "install", "--quiet", f"shopreco[redis] @ {wheel.as_uri()}"], env=env)
    run([py, "-c", REDIS_PROBE, url], env=env, cwd=venv)


# --------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path,
                        help="Where to build, make the venv and the project (default: a "
                             "temporary folder, removed afterwards unless --keep).")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    parser.add_argument("--redis-url", default=os.environ.get("SHOPRECO_CHECK_REDIS_URL", ""),
                        help="Also connect a Celery app of the fresh venv to this broker.")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md",
                        help="Follow this README instead (a draft of README.md, say).")
    args = parser.parse_args()

    start = time.monotonic()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="shopreco-check-install-"))
    marker = ".shopreco-check-install"  # an earlier run's folder: the only kind it empties
    if args.workdir and work.exists() and any(work.iterdir()):
        if not (work / marker).exists():
            parser.error(f"--workdir {work} is not empty and not an earlier check's folder")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / marker).touch()
    work = work.resolve()
    venv, proj, dist = work / "venv", work / "project", work / "dist"
    try:
        version = source_version()
        blocks = readme_blocks(readme_section(args.readme.resolve()))
        extras = readme_extras(blocks)
        with step(f"build and check the sdist and wheel of shopreco {version}"):
            wheel, sdist = build(dist)
            inspect(wheel, sdist, version, extras)
        with step(f"fresh virtualenv: pip install \"shopreco[{','.join(extras)}] @ <wheel>\""):
            env = make_venv(venv, wheel, extras)
            out = run([venv / "bin" / "python", "-c",
                       "import importlib.util as u, shopreco; "
                       "print(shopreco.__version__, u.find_spec('demo_shop'))"],
                      env=env, cwd=work, capture=True).split()
            expect(out == [version, "None"], f"shopreco {version} installed, demo_shop not "
                                             f"importable ({' '.join(out)})")
        with step("startproject and the README's snippets"):
            new_project(proj, venv, env, blocks)
        exercise(proj, venv, env)
        with step("the redis extra" + (f" ({args.redis_url})" if args.redis_url else "")):
            soft(redis_extra, venv, env, wheel, args.redis_url)
    except CheckFailed as exc:
        failed.append(str(exc))
    if args.keep or failed:
        kept = f"\nwork folder kept: {work}"
    else:
        with step("remove the work folder"):
            shutil.rmtree(work, ignore_errors=True)
        kept = ""
    print("\n== times")
    for name, secs in timings:
        print(f"  {secs:6.1f} s  {name}")
    print(f"  {time.monotonic() - start:6.1f} s  in all")
    if gaps:
        print("\nREADME gaps (the check filled them in as a host has to):")
        for gap in gaps:
            print(f"  - {gap}")
    print(kept)
    if failed:
        print("\ninstall check FAILED:\n" + "".join(f"  - {f}\n" for f in failed), flush=True)
        return 1
    print("\ninstall check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
