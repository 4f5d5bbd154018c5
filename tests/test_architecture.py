"""The rooms of docs/ARCHITECTURE.md held against the code: no module imports from a higher
floor, and no two modules import each other (directly or through others)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "shopreco"

# Floor of each room (a module, or a package: every module in it). Same as the table in
# docs/ARCHITECTURE.md; a new module must be placed here.
FLOORS = {
    "engine": 1,
    "conf": 2,
    "models": 3, "adapter": 3, "checks": 3, "cache": 3, "migrations": 3,
    "pipeline": 4, "serving": 4, "importing": 4, "insights": 4,
    "tracking": 5, "privacy": 5, "evaluation": 5,
    "tasks": 6, "services": 6, "middleware": 6, "templatetags": 6, "views": 6,
    "api": 7, "admin": 7, "management": 7, "signals": 7, "urls": 7, "apps": 7,
    # Optional integrations with other apps (django-oscar): they may import any of shopreco.
    "contrib": 8,
}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> dict[str, set[str]]:
    """Module -> shopreco modules it imports at module level (``TYPE_CHECKING`` blocks and
    imports inside functions excluded)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        targets: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("shopreco")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("shopreco"):
                    targets.add(node.module)
                    if node.module in ("shopreco", "shopreco.pipeline", "shopreco.serving"):
                        targets |= {f"{node.module}.{a.name}" for a in node.names}
        found[module] = targets
    return found


def known(module: str, modules: dict) -> str:
    while module not in modules and "." in module:
        module = module.rsplit(".", 1)[0]
    return module


def test_every_room_has_a_floor():
    rooms = {room(m) for m in imports()} - {"__init__"}
    assert rooms <= set(FLOORS), f"place these in FLOORS and the docs: {rooms - set(FLOORS)}"


def test_no_import_runs_up_a_floor():
    up = []
    for module, targets in imports().items():
        if room(module) == "__init__":
            continue
        for target in targets:
            if room(target) in FLOORS and FLOORS[room(target)] > FLOORS[room(module)]:
                up.append(f"{module} -> {target}")
    assert up == []


def test_the_core_never_imports_contrib():
    """Not even inside a function: the core must work without the integrated frameworks."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if "contrib" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name} -> {n}" for n in names if n.startswith("shopreco.contrib")]
    assert found == []


def test_no_import_circles():
    graph = imports()
    graph = {m: {known(t, graph) for t in ts} - {m} for m, ts in graph.items()}
    # a package's __init__ re-exports its own modules: that is not a circle with them
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []
