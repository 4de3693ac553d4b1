"""The code's shape stays as issue #12 left it: no file imports itself back through a chain of
others, no function grows past about 60 lines, nothing reads the environment at import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nurture", "workers")
LONGEST = 60


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _type_only(tree: ast.AST) -> set[ast.AST]:
    """Imports under `if TYPE_CHECKING:`: annotations only, never run (the way Flask's
    globals.py names the Flask class for current_app), so they cannot make a cycle."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        test = node.test if isinstance(node, ast.If) else None
        if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            found.update(n for stmt in node.body for n in ast.walk(stmt))
    return found


def _imports(tree: ast.AST, known: dict[str, Path]) -> set[str]:
    """Every module of ours this file imports, at the top or inside a function (not for
    type annotations only)."""
    names: set[str] = set()
    type_only = _type_only(tree)
    for node in ast.walk(tree):
        if node in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in known}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_file_imports_itself_back() -> None:
    known = _modules()
    graph = {
        name: _imports(ast.parse(path.read_text(encoding="utf-8")), known) - {name}
        for name, path in known.items()
    }
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_type_only_imports_are_told_apart() -> None:
    known = {"nurture.runtime": ROOT, "nurture.db": ROOT}
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nimport nurture.db\n"
        "if TYPE_CHECKING:\n    from nurture.runtime import Runtime\n"
    )
    assert _imports(tree, known) == {"nurture.db"}


def test_no_function_is_longer_than_about_sixty_lines() -> None:
    long = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > LONGEST:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []


def test_importing_everything_builds_nothing_and_reads_no_setting() -> None:
    """With a setting that cannot load, every module still imports: nothing is built from
    the environment at import (workers/app.py, the `celery -A` target, is the one place)."""
    # Left out: the celery -A target, `python -m` entry points, Alembic's env (run by Alembic).
    names = [
        n
        for n in _modules()
        if n != "workers.app" and not n.endswith("__main__") and n != "nurture.migrations.env"
    ]
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)\n"
    ran = subprocess.run(
        [sys.executable, "-c", code, *names],
        cwd=ROOT,
        env={"NURTURE_ENV": "not-a-valid-env", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
