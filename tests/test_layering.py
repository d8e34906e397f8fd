"""The package layout is the data flow: no import cycle between sslm_jax's packages and no upward import.

Layers, bottom to top (a package imports only from its own layer or below):
    errors, import_guard, config_loading, output_paths (-> errors)
    models, objectives, data          (data may read objectives' metric names; nothing above this line)
    interop                           (-> models)
    checkpoints                       (-> models, interop)
    inference                         (-> checkpoints, interop, models, data, objectives)
    tasks                             (-> models, data, objectives, inference)
    training                          (-> tasks, inference, checkpoints, models, data, objectives)
    main                              (the CLI: anything)
Every import statement counts, including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "sslm_jax"

ALLOWED = {
    "models": {"errors"},
    "data": {"errors", "import_guard", "objectives"},
    "objectives": {"errors"},
    "interop": {"errors", "models"},
    "checkpoints": {"errors", "models", "interop"},
    "output_paths": {"errors"},
    "inference": {"errors", "output_paths", "models", "data", "objectives", "interop", "checkpoints"},
    "tasks": {"errors", "models", "data", "objectives", "inference"},
    "training": {"errors", "import_guard", "models", "data", "objectives", "interop", "checkpoints", "inference",
                 "tasks"},
}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "sslm_jax" and len(parts) > 1 else None


def _imports(file: pathlib.Path) -> set[str]:
    """The sslm_jax packages `file` imports anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {p for p in map(_package, names) if p is not None}
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for file in PACKAGE.rglob("*.py"):
        rel = file.relative_to(PACKAGE)
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        graph.setdefault(own, set()).update(_imports(file) - {own})
    return graph


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_upward_import(package):
    imported = _graph().get(package, set())
    assert imported <= ALLOWED[package], f"sslm_jax.{package} imports {sorted(imported - ALLOWED[package])}"


def test_no_cycle_between_packages():
    graph = _graph()
    state: dict[str, str] = {}

    def visit(node, path):
        if state.get(node) == "open":
            raise AssertionError(f"import cycle: {' -> '.join(path + [node])}")
        if state.get(node) == "done":
            return
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


def test_big_files_say_why():
    """A module over 500 lines must say in its docstring why it is one topic (STYLE.md: small files)."""
    for file in PACKAGE.rglob("*.py"):
        text = file.read_text()
        if text.count("\n") > 500:
            doc = ast.get_docstring(ast.parse(text)) or ""
            assert "one topic" in doc, f"{file.relative_to(PACKAGE)} has {text.count(chr(10))} lines"
