"""The package's import graph runs one way: no cycles, no import from a lower layer to a higher one.

Every ``import`` and ``from ... import`` in the package counts, including
those inside functions (a deferred import is still a dependency). A room is
a top-level subpackage or module (``writer``, ``storages``...), except under
``interop/`` where each foreign project is a room of its own
(``interop.minestudio``). Old import paths that moved are served by the
string table in :mod:`torchrl_ext.moved_paths`, which imports nothing.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "torchrl_ext"

# Lowest first. A room may import rooms of its own layer or below, never above.
LAYERS: list[set[str]] = [
    {"format", "compat", "validation", "parent_watch", "moved_paths", "progress", "torchrl_registry"},
    {"encodings", "remote"},
    {"writer", "storages"},
    {"events", "samplers"},
    {"sources", "datasets", "generate", "preprocessing", "export", "synthetic", "testing", "interop"},
    {"cli", "demo", "__main__", "__init__"},
]
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports (each name resolved to the longest known module)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != me:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, set(modules)) for name, path in modules.items()}


def _room(module: str) -> str:
    parts = module.split(".")[1:] or ["__init__"]
    if parts[0] == "interop" and len(parts) > 1:
        return f"interop.{parts[1]}"
    return parts[0]


def _layer(room: str) -> int:
    top = room.split(".")[0]
    for i, rooms in enumerate(LAYERS):
        if top in rooms:
            return i
    raise AssertionError(f"room {room!r} is in no layer of tests/test_layering.py: add it to LAYERS")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
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
                    out.append(sorted(component))
    return out


def test_cycle_finder_finds_a_cycle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles between modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_room_import_cycles():
    rooms: dict[str, set[str]] = defaultdict(set)
    for module, deps in _graph().items():
        rooms[_room(module)] |= {_room(d) for d in deps if _room(d) != _room(module)}
    cycles = _cycles(dict(rooms))
    assert not cycles, "rooms that import each other: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_upward_imports():
    upward = sorted(f"{m} -> {d}" for m, deps in _graph().items() for d in deps
                    if _layer(_room(d)) > _layer(_room(m)))
    assert not upward, "imports from a lower layer to a higher one: " + "; ".join(upward)


def test_generic_rooms_import_no_foreign_project():
    generic = {"format", "encodings", "writer", "storages", "events", "samplers"}
    leaks = sorted(f"{m} -> {d}" for m, deps in _graph().items() if _room(m) in generic
                   for d in deps if _room(d).startswith("interop"))
    assert not leaks, leaks


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_rooms_stay_small(path):
    text = path.read_text()
    assert text.count("\n") <= MAX_MODULE_LINES, f"{path.name}: {text.count(chr(10))} lines, split it by idea"
    long_classes = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(ast.parse(text))
                    if isinstance(n, ast.ClassDef) and n.end_lineno - n.lineno + 1 > MAX_CLASS_LINES]
    assert not long_classes, f"{path.name}: classes over {MAX_CLASS_LINES} lines: {long_classes}"
