"""The house is acyclic and layered: imports between ``analysis`` modules, read with ast.

Every ``import`` counts, at module level or inside a function (a lazy import is still an
arrow), except those under ``if TYPE_CHECKING:``, which never run. docs/architecture.md names
the same graph (its module table, the reports arrows and layers); a test holds it to the code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import analysis

SRC = Path(analysis.__file__).parent
ARCHITECTURE_MD = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _module_name(path: Path) -> str:
    parts = ["analysis", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) \
        == "TYPE_CHECKING"


def _imports(tree: ast.AST, *, package: str, functions: bool = True) -> set[str]:
    """analysis.* modules a tree imports (``from analysis import paths`` -> analysis.paths);
    with ``functions=False`` only those imported when the module loads (none of a def's)."""
    found: set[str] = set()
    todo = [tree]
    while todo:
        node = todo.pop()
        if not functions and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
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


def import_graph(*, functions: bool = True) -> dict[str, set[str]]:
    """{module: analysis modules it imports}, for every module of the package; with
    ``functions=False`` only the imports that run when the module loads."""
    graph = {}
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imports(ast.parse(path.read_text()), package=package,
                               functions=functions) - {name}
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
    assert _imports(tree, package="analysis.reports", functions=False) == {
        "analysis.paths", "analysis.reports.cohort"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_analysis_imports_are_acyclic() -> None:
    cycle = _cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def _with_parent_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph with the imports Python adds: importing ``analysis.models.result`` first
    runs ``analysis/models/__init__.py`` (review: ``labels``' lazy import of Z_95 loads every
    model module). A module's own parent packages are left out: they are already loading
    when it runs."""
    out = {}
    for module, imports in graph.items():
        own = {".".join(module.split(".")[:k]) for k in range(1, module.count(".") + 1)}
        parents = {".".join(i.split(".")[:k]) for i in imports for k in range(2, i.count(".") + 1)}
        out[module] = (imports | parents) - own - {module}
    return out


def test_analysis_imports_are_acyclic_with_the_parent_packages_python_runs() -> None:
    # on a made-up graph: an import of p.a.x adds p.a; a module's own parents are left out
    made_up = {"p": {"p.a.x"}, "p.a": {"p.a.x"}, "p.a.x": {"p.b.y"}, "p.b.y": set()}
    assert _with_parent_packages(made_up) == {"p": {"p.a", "p.a.x"}, "p.a": {"p.a.x"},
                                              "p.a.x": {"p.b", "p.b.y"}, "p.b.y": set()}
    cycle = _cycle(_with_parent_packages(import_graph()))
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


# docs/architecture.md: module names relative to ``analysis.`` with ``/`` for the dots
# (``models/result``), ``analysis`` for the package root, a package for its __init__.py;
# an imports cell reads "a, b; lazily: c" (c imported only inside functions) or "nothing".


def _doc_module(name: str) -> str:
    """``models/result`` -> analysis.models.result; ``analysis`` stays the package root."""
    return name if name == "analysis" else "analysis." + name.replace("/", ".")


def _doc_name(module: str) -> str:
    """The document's spelling of a module (the inverse of :func:`_doc_module`)."""
    return module if module == "analysis" else module.removeprefix("analysis.").replace(".", "/")


def _doc_imports(text: str) -> tuple[set[str], set[str]]:
    """``"a, b; lazily: c"`` -> ({a, b} imported at load, {c} only inside functions)."""
    text = " ".join(text.split())
    if text == "nothing":
        return set(), set()
    loaded, _, lazy = text.partition("lazily:")

    def names(part: str) -> set[str]:
        return {_doc_module(n.strip()) for n in part.split(",") if n.strip()}

    return names(loaded.strip().removesuffix(";")), names(lazy)


def _documented_imports(lines: list[str]) -> list[tuple[str, str, set[str], set[str]]]:
    """(where, module, imported at load, imported lazily) for every row of the module table
    and every line of the reports arrows; the table's ``reports/*`` row defers to the arrows."""
    found = []
    header = lines.index("| module | job | imports (`analysis.`) |")
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        cells = line.strip().strip("|").split(" | ")
        module = re.match(r"\s*`([^`]+)`", cells[0])
        assert module, f"module table: no `module` in the first cell of {line!r}"
        if module[1] != "reports/*":
            found.append(("module table", _doc_module(module[1]), *_doc_imports(cells[-1])))
    start = next(i for i, line in enumerate(lines) if line.startswith("Import arrows ("))
    fence = lines.index("```", start)
    arrows: list[list[str]] = []
    for line in lines[fence + 1:lines.index("```", fence + 1)]:
        if "──▶" in line:
            arrows.append(list(line.split("──▶")))
        elif line.strip():
            assert arrows and line.startswith(" "), f"reports arrows: stray line {line!r}"
            arrows[-1][-1] += " " + line
    found += [("reports arrows", _doc_module(source.strip()), *_doc_imports(targets))
              for source, targets in arrows]
    return found


def _documented_layers(lines: list[str]) -> dict[str, int]:
    """{reports module: its layer} from the numbered list after "Layers, bottom up"."""
    start = next(i for i, line in enumerate(lines) if line.startswith("Layers, bottom up"))
    layers: dict[str, int] = {}
    layer = 0
    for line in lines[start + 1:]:
        if re.match(r"\d+\. ", line):
            layer += 1
        elif not (layer and line.startswith("   ")):
            if layer:
                break
            continue
        for name in re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", line)):
            module = "analysis.reports" + ("" if name == "__init__" else f".{name}")
            assert module not in layers, f"layers: {name} is listed twice"
            layers[module] = layer
    return layers


def _import_problems(documented: list[tuple[str, str, set[str], set[str]]],
                     graph: dict[str, set[str]], loaded: dict[str, set[str]]) -> list[str]:
    """One line per module whose documented imports differ from the code's."""

    def names(modules: set[str]) -> str:
        return ", ".join(sorted(map(_doc_name, modules)))

    problems, seen = [], set()
    for where, module, eager, lazy in documented:
        if (where, module) in seen:
            problems.append(f"{where}: {_doc_name(module)} is listed twice")
        seen.add((where, module))
        if module not in graph:
            problems.append(f"{where}: {_doc_name(module)} is not a module of analysis")
            continue
        lazily = graph[module] - loaded[module]
        wrong = [eager & lazy, graph[module] - eager - lazy,
                 (eager | lazy) - graph[module], eager & lazily, lazy & loaded[module]]
        what = ["listed both before and after lazily:", "missing", "extra (not imported)",
                "imported only inside functions (list after lazily:)",
                "imported when the module loads (list before lazily:)"]
        if any(wrong):
            problems.append(f"{where}, {_doc_name(module)}: " + "; ".join(
                f"{w} {names(m)}" for w, m in zip(what, wrong, strict=True) if m))
    undocumented = set(graph) - {module for _, module, *_ in documented}
    if undocumented:
        problems.append(f"no row in the module table (reports: no arrow): {names(undocumented)}")
    return problems


def test_architecture_md_names_every_modules_imports() -> None:
    """Every module has its row (the reports package: its arrow), naming exactly the analysis
    modules it imports, the ones imported only inside functions after ``lazily:``."""
    documented = _documented_imports(ARCHITECTURE_MD.read_text().splitlines())
    problems = _import_problems(documented, import_graph(), import_graph(functions=False))
    assert not problems, "docs/architecture.md is stale:\n" + "\n".join(problems)


def test_architecture_md_layers_of_the_reports_package() -> None:
    """Each reports module sits one layer above the highest module of the package it imports
    (bottom layer: it imports none), as the document's numbered list says."""
    graph = import_graph()
    inside = {m: {i for i in imports if i.startswith("analysis.reports")}
              for m, imports in graph.items() if m.startswith("analysis.reports")}
    layer: dict[str, int] = {}

    def level(module: str) -> int:
        if module not in layer:
            layer[module] = 1 + max(map(level, inside[module]), default=0)
        return layer[module]

    actual = {m: level(m) for m in inside}
    documented = _documented_layers(ARCHITECTURE_MD.read_text().splitlines())
    wrong = {_doc_name(m): (documented.get(m), actual.get(m))
             for m in actual.keys() | documented.keys() if documented.get(m) != actual.get(m)}
    assert not wrong, f"docs/architecture.md layers, module: (documented, actual): {wrong}"


def test_the_document_reader_reads_lazily_and_reports_every_difference() -> None:
    assert _doc_imports("nothing") == (set(), set())
    assert _doc_imports("errors, models/result;\n  lazily: analysis, ingest") == (
        {"analysis.errors", "analysis.models.result"}, {"analysis", "analysis.ingest"})
    assert _doc_imports("lazily: keys") == (set(), {"analysis.keys"})
    graph = {"analysis.a": {"analysis.b", "analysis.c"}, "analysis.b": set(), "analysis.c": set()}
    loaded = {"analysis.a": {"analysis.b"}, "analysis.b": set(), "analysis.c": set()}
    right = [("t", "analysis.a", {"analysis.b"}, {"analysis.c"}),
             ("t", "analysis.b", set(), set()), ("t", "analysis.c", set(), set())]
    assert _import_problems(right, graph, loaded) == []
    wrong = [("t", "analysis.a", {"analysis.c", "analysis.d"}, set()),
             ("t", "analysis.b", set(), set())]
    assert _import_problems(wrong, graph, loaded) == [
        "t, a: missing b; extra (not imported) d; imported only inside functions (list after "
        "lazily:) c", "no row in the module table (reports: no arrow): c"]
