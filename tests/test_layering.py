"""Imports run one way: no cycles between the project's modules (every import counts: inside functions, under
`if TYPE_CHECKING:`, and by name through `importlib.import_module`), and no wrong-way edges between its packages or
rooms (docs/architecture.md).

The graph is read from the source with `ast`, so the check needs no import of anything. Each failure names the
offending edge on one line: `module -> imported (file:line)`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("roadmap", "steps", "runner", "reports")
HEAVY = ("torch", "torchvision", "timm")  # what looking at the roadmap and rendering reports never pays for
# roadmap's base layer: below steps, runner and reports (the description and its layer plan, the records, errors)
CORE = ("roadmap.errors", "roadmap.enums", "roadmap.dataclass_fields", "roadmap.network", "roadmap.recipe",
        "roadmap.design", "roadmap.layers", "roadmap.schema", "roadmap.record_files", "roadmap.durations")


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported project module, or the top-level name of a third-party package
    file: str
    line: int
    top_level: bool  # executed on import (not inside a function, not type-only)
    type_only: bool = False  # under `if TYPE_CHECKING:` (never executed)

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.file}:{self.line})"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The most specific project module `name` refers to, or its top-level package if it is not ours."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules:
            return ".".join(parts[:i])
    return parts[0]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, in_function: bool = False, type_only: bool = False):
    """(imported name, line, inside a function, type-only) for every import statement: inside a function or under
    `if TYPE_CHECKING:`, an import still makes an edge of the graph, just not one that runs on import."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _imports(ast.Module(body=node.body, type_ignores=[]), in_function, True)
            yield from _imports(ast.Module(body=node.orelse, type_ignores=[]), in_function, type_only)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, in_function, type_only
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:  # `from pkg import submodule` imports the submodule; `from m import f`, m
                yield f"{node.module}.{alias.name}", node.lineno, in_function, type_only
        nested = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _imports(node, nested, type_only)


def _lazy_imports(tree: ast.AST, modules: dict[str, Path]):
    """A module that imports by name (`importlib.import_module`, e.g. the lazy attributes of roadmap/__init__.py)
    imports every project module whose name it spells as a string."""
    source = ast.unparse(tree)
    if "import_module" not in source:
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
            yield node.value, node.lineno, True, False


def import_graph() -> list[Edge]:
    modules = project_modules()
    edges = set()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        rel = str(path.relative_to(ROOT))
        for imported, line, in_function, type_only in (*_imports(tree), *_lazy_imports(tree, modules)):
            target = _resolve(imported, modules)
            if target != name and (target in modules or imported.split(".")[0] not in PACKAGES):
                edges.add(Edge(name, target, rel, line, not (in_function or type_only), type_only))
    # an edge reported once per (source, target, kind): the first line it occurs on
    first: dict[tuple[str, str, bool, bool], Edge] = {}
    for e in sorted(edges, key=lambda e: (e.source, e.target, e.line)):
        first.setdefault((e.source, e.target, e.top_level, e.type_only), e)
    return list(first.values())


def _package(module: str) -> str:
    return module.split(".")[0]


def _in_cli(module: str) -> bool:
    """The CLI package, roadmap/cli/: the one part of roadmap/ that knows every package."""
    return module == "roadmap.cli" or module.startswith("roadmap.cli.")


def test_no_import_cycles():
    """Tarjan's strongly connected components over every import, inside functions too."""
    edges = [e for e in import_graph() if e.target in project_modules()]
    graph: dict[str, list[Edge]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for e in graph.get(v, []):
            if e.target not in index:
                visit(e.target)
                low[v] = min(low[v], low[e.target])
            elif e.target in stack:
                low[v] = min(low[v], index[e.target])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    problems = [f"import cycle through {sorted(c)}: " + "; ".join(str(e) for e in edges
                if e.source in c and e.target in c) for c in cycles]
    assert not problems, "\n".join(problems)


def wrong_way(e: Edge) -> str | None:
    """Why an edge goes the wrong way, or None."""
    src, dst = _package(e.source), _package(e.target)
    if _in_cli(e.target) and not _in_cli(e.source) and e.source != "roadmap.__main__":
        return "only roadmap/__main__.py imports the CLI"
    if src == "roadmap" and not _in_cli(e.source) and dst in ("runner", "reports"):
        return "in roadmap/, only the CLI (roadmap/cli/) imports runner or reports"
    if src == "reports" and (dst in HEAVY or dst == "runner"):
        return "reports render stored records only: no torch, timm or runner"
    if src == "runner" and dst == "reports":
        return "runner does not import reports (the CLI runs, then reports)"
    if e.source.startswith("runner.planning") and e.target.startswith("runner.fitting"):
        return "the plan is torch-free data that fitting reads: runner/planning/ never imports runner/fitting/"
    if src == "steps" and (dst in HEAVY or dst in ("runner", "reports")):
        return "steps are pure edits of a description: no torch, timm, runner or reports"
    if e.source in CORE and dst in ("steps", "runner", "reports", *HEAVY):
        return "roadmap's core (the description, the layer plan, the records) sits below steps, runner and reports"
    return None


def test_imports_go_one_way():
    bad = [f"{e}: {why}" for e in import_graph() if (why := wrong_way(e))]
    assert not bad, "\n".join(bad)


def test_steps_import_at_module_level():
    """A step module says what it depends on at its top: no imports hidden inside functions."""
    hidden = [str(e) for e in import_graph() if _package(e.source) == "steps" and not e.top_level and not e.type_only]
    assert not hidden, "imports inside functions in steps/: " + "; ".join(hidden)


def test_torch_free_modules_do_not_reach_torch_on_import():
    """What `reports` and `steps` import when loaded (module-level imports, followed through the project) never
    includes torch or timm; the same for the modules `roadmap steps|show|diff|flops` load."""
    edges = [e for e in import_graph() if e.top_level]
    graph: dict[str, list[Edge]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e)
    roots = [m for m in project_modules() if _package(m) in ("reports", "steps")]
    roots += ["roadmap", "roadmap.describe", "roadmap.complexity", *CORE]
    roots += [m for m in project_modules() if _in_cli(m)]  # every command group: the parser imports them all
    bad = []
    for root in roots:
        seen, todo, via = {root}, [root], {}
        while todo:
            v = todo.pop()
            for e in graph.get(v, []):
                if e.target in HEAVY:
                    chain, w = [str(e)], v
                    while w in via:
                        chain.append(str(via[w]))
                        w = via[w].source
                    bad.append(f"{root} imports {e.target}: " + " <- ".join(chain))
                elif e.target not in seen:
                    seen.add(e.target)
                    via[e.target] = e
                    todo.append(e.target)
    assert not bad, "\n".join(sorted(set(bad)))


def _planted_tree(tmp_path: Path, monkeypatch) -> None:
    """An empty project in `tmp_path` (one `__init__.py` per package), read instead of this one: the self-tests plant
    their modules in it."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)


def test_the_check_sees_a_cycle_and_a_wrong_way_edge(tmp_path, monkeypatch):
    """The checks above can fail: a planted cycle and a planted wrong-way import are each reported in one line."""
    e = Edge("runner.fitting.fit", "reports.table", "runner/fitting/fit.py", 3, False)
    assert wrong_way(e) and str(e) == "runner.fitting.fit -> reports.table (runner/fitting/fit.py:3)"
    assert wrong_way(Edge("runner.launchers.children", "roadmap.cli", "runner/launchers/children.py", 1, False))
    assert wrong_way(Edge("reports.table", "torch", "reports/table.py", 1, True))
    assert wrong_way(Edge("steps.micro", "torch", "steps/micro.py", 1, True))
    assert wrong_way(Edge("roadmap.__main__", "roadmap.cli", "roadmap/__main__.py", 1, True)) is None
    assert wrong_way(Edge("roadmap.cli", "roadmap.cli.training", "roadmap/cli/__init__.py", 1, True)) is None
    assert wrong_way(Edge("roadmap.cli.training", "runner.launchers.local", "roadmap/cli/x.py", 1, False)) is None
    assert wrong_way(Edge("roadmap.cli.reporting", "reports", "roadmap/cli/reporting.py", 1, False)) is None
    for base in ("roadmap.describe", "roadmap.model", "roadmap.draw.picture", "roadmap.weights", "roadmap"):
        assert wrong_way(Edge(base, "runner.store", "x.py", 1, False)), base
        assert wrong_way(Edge(base, "reports.table", "x.py", 1, False)), base
    assert wrong_way(Edge("runner.store", "roadmap.cli.common", "runner/store.py", 1, False))
    _planted_tree(tmp_path, monkeypatch)
    (tmp_path / "steps" / "a.py").write_text("def f():\n    from steps import b\n")
    (tmp_path / "steps" / "b.py").write_text("import steps.a\n")
    edges = {(e.source, e.target, e.top_level) for e in import_graph()}
    assert {("steps.a", "steps.b", False), ("steps.b", "steps.a", True)} <= edges
    try:
        test_no_import_cycles()
    except AssertionError as failure:
        assert "steps.a -> steps.b (steps/a.py:2)" in str(failure)
    else:
        raise AssertionError("the planted cycle was not found")


def test_the_check_sees_roadmap_importing_the_runner(tmp_path, monkeypatch):
    """A module of roadmap/ outside the CLI that imports runner or reports fails `test_imports_go_one_way`, named
    in one line; the same import from roadmap/cli/ passes."""
    _planted_tree(tmp_path, monkeypatch)
    (tmp_path / "runner" / "store.py").write_text("")
    (tmp_path / "reports" / "table.py").write_text("")
    (tmp_path / "roadmap" / "cli").mkdir()
    (tmp_path / "roadmap" / "cli" / "__init__.py").write_text("import runner.store\nimport reports.table\n")
    test_imports_go_one_way()  # the CLI may
    (tmp_path / "roadmap" / "describe.py").write_text("def f():\n    from runner.store import x\n")
    try:
        test_imports_go_one_way()
    except AssertionError as failure:
        assert "roadmap.describe -> runner.store (roadmap/describe.py:2)" in str(failure)
        assert "only the CLI" in str(failure)
    else:
        raise AssertionError("roadmap.describe importing runner was not found")


def test_the_check_sees_a_loop_of_type_only_and_function_level_imports(tmp_path, monkeypatch):
    """A loop that no import runs at load time (one side under `if TYPE_CHECKING:`, the other inside a function) is
    still a loop: both edges are in the graph, neither as top-level, and the cycle test names them."""
    _planted_tree(tmp_path, monkeypatch)
    (tmp_path / "runner" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from runner.b import B\n")
    (tmp_path / "runner" / "b.py").write_text("def f():\n    import runner.a\n")
    edges = {(e.source, e.target, e.top_level) for e in import_graph()}
    assert {("runner.a", "runner.b", False), ("runner.b", "runner.a", False)} <= edges
    assert [e.type_only for e in import_graph() if e.source == "runner.a" and e.target == "runner.b"] == [True]
    try:
        test_no_import_cycles()
    except AssertionError as failure:
        assert "runner.a -> runner.b (runner/a.py:3)" in str(failure)
        assert "runner.b -> runner.a (runner/b.py:2)" in str(failure)
    else:
        raise AssertionError("the loop of a type-only and a function-level import was not found")


def test_the_check_sees_planning_importing_fitting():
    """The plan is read by fitting, never the reverse: a planning module importing a fitting one, even lazily, is a
    wrong-way edge; fitting importing planning is the right way."""
    assert wrong_way(Edge("runner.planning.batching", "runner.fitting.timm_parts", "x.py", 1, False))
    assert wrong_way(Edge("runner.planning.runs", "runner.fitting.checkpoint", "x.py", 1, True))
    assert wrong_way(Edge("runner.fitting.fit", "runner.planning.batching", "x.py", 1, True)) is None
