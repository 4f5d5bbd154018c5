"""Source-level security rules: ORM only (raw SQL only in an explained allow-list) and no
switching off of HTML escaping in shopreco's code and templates."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shopreco"

# file -> why raw SQL is needed there; identifiers come from model _meta, values are bound
# parameters, never user input.
RAW_SQL_ALLOWED = {
    "shopreco/pipeline/runs.py": "pg_advisory_xact_lock / SQLite write lock for one-at-a-time runs",
    "shopreco/pipeline/writer.py": "PostgreSQL COPY and executemany for bulk result writes",
    "shopreco/serving/request.py": "the per-request state query (active run, preference): the ORM "
    "took longer to compile it than the database to run it",
    "shopreco/serving/ranking.py": "a ranked listing's history query (a UNION of ratings and "
    "grouped events): the ORM took longer to compile it than the database to run it",
}
RAW_SQL_ATTRS = {"raw", "extra", "cursor", "execute", "executemany", "executescript"}
RAW_SQL_NAMES = {"RawSQL"}

# file -> why it builds trusted HTML itself (must use format_html/escape for any data).
MARK_SAFE_ALLOWED = {
    "shopreco/admin/charts.py": "inline SVG charts; every label goes through escape() "
    "(checked by test_admin_charts_escape_labels)",
}


def python_files() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts]


def rel(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


def raw_sql_uses(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in RAW_SQL_ATTRS:
            found.append(f"{rel(path, root)}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in RAW_SQL_NAMES:
            found.append(f"{rel(path, root)}:{node.lineno} {node.id}")
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in RAW_SQL_NAMES:
                    found.append(f"{rel(path, root)}:{node.lineno} import {node.module}."
                                 f"{alias.name}")
    return found


def test_detector_finds_raw_sql(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from django.db.models.expressions import RawSQL\n"
        "Product.objects.raw('select 1')\n"
        "qs.extra(where=['1'])\n"
        "with connection.cursor() as c:\n"
        "    c.execute('x')\n"
        "qs.annotate(x=RawSQL('1', []))\n"
    )
    kinds = sorted(hit.split(" ", 1)[1] for hit in raw_sql_uses(probe, root=tmp_path))
    assert kinds == [".cursor", ".execute", ".extra", ".raw", "RawSQL",
                     "import django.db.models.expressions.RawSQL"]


def test_orm_only_outside_the_allow_list():
    offenders = [
        hit for path in python_files() if rel(path) not in RAW_SQL_ALLOWED
        for hit in raw_sql_uses(path)
    ]
    assert offenders == [], (
        "Raw SQL outside the allow-list (use the ORM, or add the file with a reason): "
        + ", ".join(offenders)
    )


METADATA = re.compile(r"_meta|quote_name|db_table")


def _assigned_from_metadata(tree: ast.Module, name: str) -> bool:
    """``name`` is assigned (alone or in a tuple) from an expression over model metadata,
    or from a module-level helper whose body is."""
    helpers = {f.name: ast.unparse(f) for f in tree.body if isinstance(f, ast.FunctionDef)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        targets = {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        if name not in targets:
            continue
        value = node.value
        if METADATA.search(ast.unparse(value)):
            return True
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and (
            METADATA.search(helpers.get(value.func.id, ""))
        ):
            return True
    return False


def test_allow_listed_sql_binds_values_as_parameters():
    """Where SQL is written by hand, f-strings may only interpolate identifiers taken from
    model metadata (quoted), never data: values go as bound parameters."""
    checked = 0
    for name in RAW_SQL_ALLOWED:
        path = ROOT / name
        if not path.exists():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.JoinedStr):
                continue
            text = ast.unparse(node)
            if not re.match(r"f['\"]\s*(SELECT|UPDATE|INSERT|DELETE|COPY)\b", text):
                continue
            checked += 1
            for value in node.values:
                if not isinstance(value, ast.FormattedValue):
                    continue
                names = [n.id for n in ast.walk(value.value) if isinstance(n, ast.Name)]
                if isinstance(value.value, ast.Call):  # e.g. ', '.join(['%s'] * n)
                    assert "'%s'" in ast.unparse(value.value), f"{name}: {text}"
                    continue
                for var in names:
                    assert _assigned_from_metadata(tree, var), (
                        f"{name}: {{{var}}} in {text} is not derived from model metadata"
                    )
    assert checked, "the allow-listed modules no longer build SQL: shrink the allow-list"


def test_no_escaping_switched_off_in_templates():
    offenders = []
    for tpl in (PACKAGE / "templates").rglob("*.html"):
        text = tpl.read_text(encoding="utf-8")
        for pattern in (r"\|\s*safe\b", r"{%\s*autoescape\s+off", r"\|\s*safeseq\b"):
            for m in re.finditer(pattern, text):
                line = text.count("\n", 0, m.start()) + 1
                offenders.append(f"{rel(tpl)}:{line} {m.group(0)}")
    assert offenders == [], "escaping switched off: " + ", ".join(offenders)


def test_mark_safe_only_where_explained():
    offenders = []
    for path in python_files():
        if rel(path) in MARK_SAFE_ALLOWED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue  # type annotations (-> SafeString) are fine; only calls bypass
            func = node.func
            name = (func.attr if isinstance(func, ast.Attribute)
                    else func.id if isinstance(func, ast.Name) else None)
            if name in {"mark_safe", "SafeString"}:
                offenders.append(f"{rel(path)}:{node.lineno} {name}")
    assert offenders == [], (
        "mark_safe/SafeString bypass escaping; use format_html, or allow-list with a reason: "
        + ", ".join(offenders)
    )


def test_admin_charts_escape_labels():
    """The one allow-listed mark_safe user: hostile labels and titles come out escaped."""
    from datetime import datetime

    from shopreco.admin import charts

    evil = '<script>alert("x")</script>'
    bar = charts.bar_chart([(evil, 1.0), ("ok", None)], title=evil)
    line = charts.line_chart([(datetime(2024, 1, 1), 0.5), (datetime(2024, 1, 2), 0.7)],
                             title=evil, fmt=lambda v: evil)
    for svg in (bar, line):
        assert "<script>" not in svg
        assert "&lt;script&gt;" in svg
