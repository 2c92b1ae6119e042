"""The architecture, checked: dependencies point down, and no module keeps mutable state.

* ``engine/`` imports nothing above it (no ``config``, ``assets``, front end): it gets
  typed settings (engine/settings.py) and resolved paths, so it can be used, tested
  and replaced on its own.
* Inside the engine, layers import only downward: the foundation (``errors``, ``types``,
  ``settings``) < ``text/`` < ``model/`` < ``serving/`` < the top (``engine``, ``builder``,
  ``protocol``). Every import counts, also those under ``TYPE_CHECKING`` or in a function.
* No import cycle anywhere in the package.
* The front ends (``http_api/``, ``wyoming_api/``) do not import each other.
* Module-level containers are constant tables: nothing rebinds a module global
  (``global``) or mutates one in place (``TABLE[k] = v``, ``TABLE.update(...)``).
* No module grows past ~400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fastkokoro_wyoming"
MUTATORS = {"append", "extend", "update", "add", "pop", "popitem", "clear", "setdefault",
            "insert", "remove", "discard", "__setitem__"}  # fmt: skip
MAX_LINES = 420


def _modules(under: str = "") -> list[Path]:
    return sorted((PACKAGE / under).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Absolute names of the package's own modules that ``path`` imports."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] == "fastkokoro_wyoming"}


@pytest.mark.parametrize("path", _modules("engine"), ids=lambda p: p.name)
def test_engine_imports_nothing_above_it(path: Path) -> None:
    outside = {n for n in _imported(path) if not n.startswith("fastkokoro_wyoming.engine")}
    # "from .. import x" inside engine/ resolves to the package root: also outside.
    assert not outside, f"{path.relative_to(PACKAGE)} imports {sorted(outside)}"


@pytest.mark.parametrize(("front", "other"), [("http_api", "wyoming_api"),
                                              ("wyoming_api", "http_api")])  # fmt: skip
def test_front_ends_do_not_import_each_other(front: str, other: str) -> None:
    for path in _modules(front):
        bad = {n for n in _imported(path) if n.startswith(f"fastkokoro_wyoming.{other}")}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_mutable_module_state(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    tables = set()
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else ([node.target] if isinstance(node, ast.AnnAssign) else [])
        )
        tables.update(t.id for t in targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        assert not isinstance(node, ast.Global), f"{path.name}:{node.lineno}: global"
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
            if isinstance(node.value, ast.Name) and node.value.id in tables:
                raise AssertionError(f"{path.name}:{node.lineno}: writes {node.value.id}[...]")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in tables
            and node.func.attr in MUTATORS
        ):
            raise AssertionError(
                f"{path.name}:{node.lineno}: {node.func.value.id}."
                f"{node.func.attr}() mutates module state"
            )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines"


ENGINE = "fastkokoro_wyoming.engine"
LAYERS = ("foundation", "text", "model", "serving", "top")
FOUNDATION = {"errors", "types", "settings"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Module -> the package's own modules it imports (names resolved to real modules)."""
    modules = {_module_name(p): p for p in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for imported in _imported(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                edges.add(imported)
        graph[name] = edges
    return graph


def _layer(module: str) -> str:
    rest = module.removeprefix(ENGINE).lstrip(".").split(".")
    if rest[0] in ("text", "model", "serving"):
        return rest[0]
    return "foundation" if rest[0] in FOUNDATION else "top"


def test_engine_layers_import_only_downward() -> None:
    bad = []
    for module, edges in _graph().items():
        if not module.startswith(ENGINE + "."):
            continue
        for target in edges:
            if target.startswith(ENGINE + ".") and (
                LAYERS.index(_layer(target)) > LAYERS.index(_layer(module))
            ):
                bad.append(f"{module} ({_layer(module)}) imports {target} ({_layer(target)})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    graph = _graph()
    # A package's __init__ may re-export its own modules; an edge from a module up to
    # the package that contains it would then be a cycle, and it is counted as one.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"
