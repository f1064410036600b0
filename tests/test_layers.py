"""The layering stays: an AST read of every project module's imports (top-level and function-local).

Layers, each importing only those below it:
  1. ``core``                       -- imports no other project package;
  2. ``methods``, ``datasets``      -- import ``core`` (and their own package) only;
  3. ``benchmark.<subpackage>.*``   -- orchestration: may import 1, 2 and other sub-packages'
                                       modules, never the CLI modules in ``benchmark/`` nor a
                                       sub-package's ``__init__`` (its re-exports are for users);
  4. ``benchmark/*.py``             -- the thin CLI on top.
Also: no import cycle between files or between (sub)packages, no function-local import of a
project module (they hid cycles before), no private name imported from another module, and no
module over 400 lines outside ``methods/`` (a method may stay whole).

Run alone: ``python -m pytest tests/test_layers.py -q`` (no torch needed, pure AST).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "methods", "datasets", "benchmark")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def resolve(name: str) -> str | None:
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(path: Path) -> list[tuple[str, list[str], bool]]:
    """(module imported, names imported, inside a function?) for every import statement."""
    tree = ast.parse(path.read_text())
    out = []
    pkg = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, [], in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - (child.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                out.append((base, [a.name for a in child.names], in_function))
            visit(child, nested)

    visit(tree, False)
    return out


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, path in MODULES.items():
        for base, names, _ in imports(path):
            for target in [f"{base}.{n}" for n in names] + [base]:
                r = resolve(target)
                if r and r != m:
                    graph[m].add(r)
    return graph


def layer(module: str) -> tuple[int, str]:
    """(layer number, unit): the unit is the package, or the benchmark sub-package."""
    parts = module.split(".")
    if parts[0] == "core":
        return 1, "core"
    if parts[0] in ("methods", "datasets"):
        return 2, parts[0]
    if len(parts) >= 3:
        return 3, ".".join(parts[:2])
    # benchmark/__init__, the CLI modules benchmark/*.py and the sub-packages' __init__ re-exports:
    # orchestration imports its neighbours by module path (benchmark.tracking.store), never
    # through a package __init__, so the re-exports stay a convenience of the CLI and users.
    return 4, "benchmark"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


GRAPH = edges()


def test_no_file_cycle():
    assert cycles(GRAPH) == []


def test_no_package_cycle():
    units: dict[str, set[str]] = {}
    for m, targets in GRAPH.items():
        a = layer(m)[1]
        units.setdefault(a, set())
        for t in targets:
            b = layer(t)[1]
            units.setdefault(b, set())
            if a != b:
                units[a].add(b)
    assert cycles(units) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_lower_layers(module):
    own_layer, own_unit = layer(module)
    for target in GRAPH[module]:
        t_layer, t_unit = layer(target)
        if t_unit == own_unit:
            continue
        if own_layer == 2:
            assert t_layer == 1, f"{module} imports {target}: methods/ and datasets/ may import core only"
        else:
            assert t_layer < own_layer or (own_layer == 3 and t_layer == 3), \
                f"{module} (layer {own_layer}) imports {target} (layer {t_layer})"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_function_local_project_import_and_no_private_names(module):
    for base, names, in_function in imports(MODULES[module]):
        target = resolve(base)
        if target is None:
            continue  # third-party (optional dependencies may be imported lazily)
        assert not in_function, f"{module}: function-local import of {base} (hides the dependency)"
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        assert not private, f"{module} imports private name(s) {private} from {base}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("methods.")))
def test_module_size(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines (limit {MAX_LINES} outside methods/)"
