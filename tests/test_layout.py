"""The layout of ``descend/``: arrows point down only (no import cycle, type-only and
function-level imports included) and no module grows past the split point."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "descend"
MAX_LINES = 800


def _module_name(path: Path) -> str:
    return "descend" if path.name == "__init__.py" else f"descend.{path.stem}"


def _targets(node: ast.AST, modules: set[str]) -> set[str]:
    """The package's modules an import statement loads (``descend`` for its ``__init__``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = ("descend" + (f".{node.module}" if node.module else "")) if node.level \
            else (node.module or "")
        names = [base]
        if base == "descend":  # `from . import x`: x is a module, or a name of __init__
            subs = [f"descend.{a.name}" for a in node.names]
            names = [n for n in subs if n in modules] or [base]
            if any(n not in modules for n in subs):
                names.append(base)
    else:
        return set()
    out = set()
    for t in names:
        while t and t not in modules:  # descend.x.y -> descend.x
            t = t.rpartition(".")[0]
        if t:
            out.add(t)
    return out


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, from every import statement in the
    source (at the top, inside functions, under ``if TYPE_CHECKING``)."""
    modules = {_module_name(p) for p in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        name = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = {t for node in ast.walk(tree) for t in _targets(node, modules)} - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_type_only_and_function_level_imports(tmp_path):
    pkg = tmp_path / "descend"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from .b import B\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    graph = import_graph(pkg)
    assert graph["descend.a"] == {"descend.b"} and graph["descend.b"] == {"descend.a"}


def test_descend_has_no_import_cycle():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("leaf", ["descend.errors", "descend.linesearch", "descend.mgh",
                                  "descend.tables", "descend.histfile", "descend._version",
                                  "descend.atomic"])
def test_leaves_import_nothing_above_errors(leaf):
    # (atomic, the one writer of files replaced whole, imports nothing of descend itself)
    assert import_graph()[leaf] <= {"descend.errors", "descend._version", "descend.atomic"}
    assert "descend.atomic" not in import_graph()[leaf] or not import_graph()["descend.atomic"]


def test_store_imports_only_errors_and_its_history_file():
    assert import_graph()["descend.store"] <= {"descend.errors", "descend._version",
                                               "descend.histfile", "descend.atomic"}


def test_the_atomic_writers_import_nothing_of_descend():
    assert import_graph()["descend.atomic"] == set()


def test_problems_imports_only_errors_and_mgh():
    assert import_graph()["descend.problems"] <= {"descend.errors", "descend.mgh"}


@pytest.mark.parametrize("part", ["descend.steps", "descend.stops", "descend.observers"])
def test_the_parts_read_the_state_not_the_loop(part):
    assert "descend.loop" not in import_graph()[part]


def test_no_module_past_the_split_point():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines())
             for p in PACKAGE.glob("*.py")}
    assert {n: k for n, k in sizes.items() if k > MAX_LINES} == {}


def test_export_imports_only_the_store_and_errors():
    assert import_graph()["descend.export"] <= {"descend.store", "descend.histfile",
                                                "descend.errors", "descend._version"}
