"""The house is acyclic and layered: imports between ``analysis`` modules, read with ast.

Every ``import`` counts, at module level or inside a function (a lazy import is still an
arrow), except those under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import analysis

SRC = Path(analysis.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["analysis", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) \
        == "TYPE_CHECKING"


def _imports(tree: ast.AST, *, package: str) -> set[str]:
    """analysis.* modules a tree imports (``from analysis import paths`` -> analysis.paths)."""
    found: set[str] = set()
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "analysis")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1],
                                 *([base] if base else [])])
            if base.split(".")[0] != "analysis":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
        todo.extend(ast.iter_child_nodes(node))
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: analysis modules it imports}, for every module of the package."""
    graph = {}
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imports(ast.parse(path.read_text()), package=package) - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_reader_sees_lazy_and_relative_imports() -> None:
    tree = ast.parse("def f():\n    from analysis.models import fit_model\n"
                     "from analysis import paths\nfrom . import cohort\n"
                     "if TYPE_CHECKING:\n    from analysis.reports import runner\n")
    assert _imports(tree, package="analysis.reports") == {
        "analysis.models", "analysis.paths", "analysis.reports.cohort"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_analysis_imports_are_acyclic() -> None:
    cycle = _cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_models_never_import_reports() -> None:
    graph = import_graph()
    bad = {m: sorted(i for i in imports if i.startswith("analysis.reports"))
           for m, imports in graph.items() if m.startswith("analysis.models")}
    assert not {m: i for m, i in bad.items() if i}


def test_no_module_of_the_reports_package_imports_its_init() -> None:
    graph = import_graph()
    members = [m for m in graph if m.startswith("analysis.reports.")]
    assert len(members) >= 6  # runner, manifest, index, cohort, effects, parameters
    assert not [m for m in members if "analysis.reports" in graph[m]]


def test_reading_units_know_nothing_of_cohorts_manifests_or_models() -> None:
    graph = import_graph()
    assert graph["analysis.effects"] == set()
    assert not {i for i in graph["analysis.reports.effects"]
                if i.startswith(("analysis.reports.cohort", "analysis.reports.manifest",
                                 "analysis.reports.runner", "analysis.models"))}


def test_the_reports_layers() -> None:
    """parameters and manifest at the bottom; effects beside them; index above manifest;
    cohort beside index; runner on top (it alone starts processes)."""
    graph = import_graph()
    inside = {m: {i for i in graph[m] if i.startswith("analysis.reports.")}
              for m in graph if m.startswith("analysis.reports.")}
    assert inside["analysis.reports.parameters"] == set()
    assert inside["analysis.reports.manifest"] == set()
    assert inside["analysis.reports.effects"] == set()
    assert not inside["analysis.reports.index"] & {"analysis.reports.cohort",
                                                   "analysis.reports.runner"}
    assert "analysis.reports.runner" not in inside["analysis.reports.cohort"]


def _module_level_imports(path: Path) -> set[str]:
    """Top-level names a module imports when it is loaded (function bodies excluded)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module or "")
    return names


def test_the_cli_loads_only_the_light_layer() -> None:
    """``kneeload --help`` pays for typer and rich only: at module level the CLI imports
    analysis.defaults and analysis.errors, and those import nothing beyond the standard
    library (every other module is imported inside the command that needs it; the
    subprocess tests in test_cli check the running result)."""
    cli = {n for n in _module_level_imports(MODULES["analysis.cli"]) if n.startswith("analysis")}
    assert cli <= {"analysis.defaults", "analysis.errors"}, cli
    for light in ("analysis.defaults", "analysis.errors"):
        third_party = {n.split(".")[0] for n in _module_level_imports(MODULES[light])}
        assert third_party <= {"__future__", "pathlib", "typing", "collections", "dataclasses"}, (
            light, third_party)
