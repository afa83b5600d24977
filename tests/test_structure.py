"""The import graph of rank1_eval, read statically: no circles, layers pointing one way, argparse only in the CLI.

The rule these tests enforce (run ``python -m pytest tests/test_structure.py -q`` to check it):

* A node is a module of ``rank1_eval`` (a package's ``__init__.py`` is the package itself).
* An edge A -> B is any import of B written in A, **at module level or inside a function** (a deferred import
  is still a dependency, it only runs later), and any ``"rank1_eval.x:Name"`` string (the engine registry
  imports its backends by name). ``from P import n`` is an edge to ``P.n`` when that is a module, else to
  ``P``. Imports under ``if TYPE_CHECKING:`` are not edges (they never run).
* Not an edge: the implicit import of a parent package (``import rank1_eval.paper.render`` also runs
  ``rank1_eval/paper/__init__.py``). A package ``__init__`` re-exports its children; a child that imports
  from its own package's ``__init__`` *is* an edge, and would show up as a circle.

With that rule the graph must have no cycle at all, module-level and function-level edges counted alike.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "rank1_eval"
_BY_NAME = re.compile(r"^(rank1_eval(?:\.\w+)+):\w+$")

# Lower layers never import higher ones (cli -> driver -> model -> scheduler -> scoring/engines/store -> records).
# Modules not listed are bound by the no-cycle rule only.
_LAYERS = (
    ("records", "_data"),
    (
        "prompts",
        "engines",
        "engines.base",
        "engines.device",
        "engines.hf_engine",
        "engines.vllm_engine",
        "engines.openai_engine",
        "servers",
        "scoring",
        "store",
        "store.sqlite",
        "store.writer",
        "store.merge",
        "store.repair",
        "registry",
        "runs",
        "beir",
        "tasks",
        "texts",
        "progress",
        "logs",
        "layout",
        "settings",
    ),
    ("scheduler",),
    ("judge",),
    ("model",),
    (
        "outputs",
        "preflight",
        "compare",
        "evaluate",
        "shards",
        "errors",
        "report",
        "report.data",
        "report.svg",
        "report.page",
        "report.single",
        "report.side_by_side",
        "paper",
        "paper.manifests",
        "paper.results",
        "paper.render",
        "paper.plots",
        "paper.files",
        "paper.reproduction",
    ),
    # "": the package's __init__ (the public API); within the cli package only the no-cycle rule applies
    ("", "cli", "cli.common", "cli.run", "cli.results", "cli.sweep", "cli.store", "cli.__main__", "__main__"),
)
LAYERS: dict[str, int] = {
    f"rank1_eval.{m}".rstrip("."): layer for layer, modules in enumerate(_LAYERS) for m in modules
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports_of(name: str) -> dict[str, bool]:
    """Every rank1_eval module ``name`` imports -> whether only inside functions (deferred)."""
    path = MODULES[name]
    found: dict[str, bool] = {}

    def add(target: str, deferred: bool) -> None:
        if target != name and target.split(".")[0] == "rank1_eval":
            found[target] = found.get(target, True) and deferred

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for stmt in child.orelse:
                    visit_one(stmt, deferred)
                continue
            visit_one(child, deferred)

    def visit_one(node: ast.AST, deferred: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, deferred)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in MODULES else base, deferred)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (m := _BY_NAME.match(node.value)):
            add(m.group(1), True)
        visit(node, deferred or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


GRAPH: dict[str, dict[str, bool]] = {name: imports_of(name) for name in MODULES}


def cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    return out


def _describe(component: list[str]) -> str:
    edges = [
        f"  {a} -> {b} ({'in a function' if deferred else 'module level'})"
        for a in component
        for b, deferred in GRAPH[a].items()
        if b in component
    ]
    return " <-> ".join(component) + "\n" + "\n".join(edges)


def test_every_import_target_exists():
    """The reader resolves every import it sees (a typo would hide an edge)."""
    unknown = {(a, b) for a, targets in GRAPH.items() for b in targets if b not in MODULES}
    assert not unknown


def test_reader_sees_deferred_imports_and_named_backends():
    """The rule counts function-level imports and registry strings (the edges a naive reader would miss)."""
    assert GRAPH["rank1_eval.cli.run"]["rank1_eval.evaluate"] is True  # imported inside cmd_run
    assert GRAPH["rank1_eval.engines"]["rank1_eval.engines.vllm_engine"] is True  # "module:Class" string
    assert GRAPH["rank1_eval.model"]["rank1_eval.scoring"] is False  # module level
    assert cycles({"a": {"b": True}, "b": {"c": False}, "c": {"a": True}, "d": {"a": False}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, "import cycles:\n" + "\n".join(_describe(c) for c in found)


def test_imports_point_down_the_layers():
    upward = [
        f"{a} (layer {LAYERS[a]}) -> {b} (layer {LAYERS[b]})"
        for a, targets in GRAPH.items()
        for b in targets
        if a in LAYERS and b in LAYERS and LAYERS[b] > LAYERS[a]
    ]
    assert not upward, "imports pointing up:\n" + "\n".join(upward)
    assert not GRAPH["rank1_eval.records"], "records are the bottom: they import nothing of rank1_eval"


def test_only_the_cli_knows_argparse():
    users = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if "argparse" in names or (isinstance(node, ast.ImportFrom) and node.module == "argparse"):
                users.append(name)
    assert {u.rpartition(".")[0] if u.count(".") > 1 else u for u in users} == {"rank1_eval.cli"}
    assert "rank1_eval.cli" in users and "rank1_eval.cli.common" in users
