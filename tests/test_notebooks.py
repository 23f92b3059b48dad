"""The notebooks are checked like code (issue 7).

* every ``notebooks/*.ipynb`` has a jupytext percent twin whose cells are the same;
* the first code cell is tagged ``parameters`` and holds typed, commented primitives only,
  which papermill reads back with the same names and types;
* the kernel is the registered ``kneeload`` one and stored outputs are complete and clean;
* no notebook opens a bare relative path (papermill, nbval and JupyterLab start in different
  folders), and one really runs through papermill on a dataset given as a folder.

Whether the stored outputs are still what the code produces is nbval's job (``make test``).
"""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

from analysis import paths

NOTEBOOKS_DIR = paths.project_root() / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
OURS = ("01_data_quality", "02_exposures", "03_models", "04_study_design", "05_time_to_event")
KERNEL = "kneeload"
PARAMETER_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
#: A file name (a folder from analysis.paths may be joined with it: ``folder / "truth.json"``).
FILE_NAME = re.compile(r"\.(csv|tsv|parquet|json|xlsx|ipynb|html|png)$")
#: A relative location written out (``"../data/x"``, ``"data/processed/demo"``).
RELATIVE_PATH = re.compile(r"^(\.\.?/|(data|reports|notebooks)/)")


def _ids(paths_: list[Path]) -> list[str]:
    return [p.stem for p in paths_]


def cell_signature(nb: nbformat.NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    """What must agree between the two files of a pair: type, source and tags of each cell."""
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ())))
            for c in nb.cells]


def pair_differences(ipynb: Path) -> list[str]:
    """Human-readable differences between a notebook and its ``.py`` twin (empty: in sync)."""
    twin = ipynb.with_suffix(".py")
    if not twin.is_file():
        return [f"{twin.name} is missing (run: jupytext --sync {ipynb.name})"]
    left = cell_signature(nbformat.read(ipynb, as_version=4))
    right = cell_signature(jupytext.read(twin))
    if len(left) != len(right):
        return [f"{ipynb.name} has {len(left)} cells, {twin.name} has {len(right)}"]
    return [f"cell {i}: {a[0]} {a[1][:60]!r} != {b[0]} {b[1][:60]!r} (tags {a[2]} vs {b[2]})"
            for i, (a, b) in enumerate(zip(left, right, strict=True)) if a != b]


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.cell_type == "code")


def parameter_problems(source: str) -> tuple[dict[str, tuple[str, object]], list[str]]:
    """Parse a parameters cell -> ({name: (type name, value)}, problems found)."""
    problems: list[str] = []
    found: dict[str, tuple[str, object]] = {}
    comments = {tok.start[0]: tok.string
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    for stmt in ast.parse(source).body:
        line = stmt.lineno
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(stmt.annotation, ast.Name) and stmt.value is not None):
            problems.append(f"line {line}: not `name: type = literal  # comment`")
            continue
        name, type_name = stmt.target.id, stmt.annotation.id
        if type_name not in PARAMETER_TYPES:
            problems.append(f"{name}: type {type_name} is not one of {sorted(PARAMETER_TYPES)}")
            continue
        try:
            value = ast.literal_eval(stmt.value)
        except ValueError:
            problems.append(f"{name}: default is an expression, not a literal")
            continue
        expected = PARAMETER_TYPES[type_name]
        if type(value) is not expected and not (expected is float and type(value) is int):
            problems.append(f"{name}: default {value!r} is not a {type_name}")
        comment = comments.get(line, "")
        if len(comment.lstrip("# ").strip()) < 10:
            problems.append(f"{name}: needs a comment saying what it is (unit, choices)")
        if "=" in comment:
            problems.append(f"{name}: '=' in the comment confuses papermill's parser")
        found[name] = (type_name, value)
    return found, problems


# --- pairing ---------------------------------------------------------------------------------


def test_every_notebook_of_ours_exists() -> None:
    assert {p.stem for p in NOTEBOOKS} >= set(OURS)


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_pair_in_sync(ipynb: Path) -> None:
    differences = pair_differences(ipynb)
    assert not differences, "\n".join(
        [f"{ipynb.name} and its .py differ; run `jupytext --sync notebooks/*.ipynb`:",
         *differences])


def test_pair_check_detects_an_edit(tmp_path: Path) -> None:
    """The sync check itself can fail: edit one line of a copied .py and it must notice."""
    source = NOTEBOOKS_DIR / f"{OURS[0]}.ipynb"
    copy = tmp_path / source.name
    copy.write_bytes(source.read_bytes())
    text = source.with_suffix(".py").read_text()
    edited = text.replace("import pandas as pd", "import pandas as pd  # edited", 1)
    assert edited != text
    copy.with_suffix(".py").write_text(edited)
    assert pair_differences(copy)
    copy.with_suffix(".py").write_text(text)
    assert pair_differences(copy) == []


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_kernel_and_pairing_metadata(ipynb: Path) -> None:
    meta = nbformat.read(ipynb, as_version=4).metadata
    assert meta.kernelspec.name == KERNEL
    assert meta.jupytext.formats == "ipynb,py:percent"


# --- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_first_code_cell_is_typed_parameters(ipynb: Path) -> None:
    cell = parameters_cell(nbformat.read(ipynb, as_version=4))
    assert "parameters" in cell.metadata.get("tags", []), "first code cell is not tagged"
    found, problems = parameter_problems(cell.source)
    assert not problems, "\n".join(problems)
    assert found, "the parameters cell is empty"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_papermill_reads_the_same_parameters(ipynb: Path) -> None:
    found, _ = parameter_problems(parameters_cell(nbformat.read(ipynb, as_version=4)).source)
    inspected = papermill.inspect_notebook(str(ipynb))
    assert {name: p["inferred_type_name"] for name, p in inspected.items()} == {
        name: type_name for name, (type_name, _) in found.items()}
    assert all(p["help"] for p in inspected.values())


def test_parameter_check_catches_bad_cells() -> None:
    found, problems = parameter_problems(
        'dataset: str = "demo"  # processed dataset name or folder\n'
        'n: int = 2.5  # simulated studies per design\n'
        'x = 3  # untyped parameter without annotation\n'
        'alpha: float = 0.05  # level, alpha = 0.05 by default\n'
        'path: str = str(1)  # an expression, not a literal value\n'
        'flag: bool = True\n'
    )
    assert set(found) == {"dataset", "n", "alpha", "flag"}
    assert len(problems) == 5, problems  # n type, x untyped, alpha '=', path expr, flag comment


def test_datasets_default_to_the_bundled_demo() -> None:
    for stem in OURS:
        nb = nbformat.read(NOTEBOOKS_DIR / f"{stem}.ipynb", as_version=4)
        found, _ = parameter_problems(parameters_cell(nb).source)
        assert found["dataset"] == ("str", paths.DEFAULT_DATASET), stem


# --- stored outputs and paths ----------------------------------------------------------------


@pytest.mark.parametrize("stem", OURS)
def test_stored_outputs_are_complete_and_clean(stem: str) -> None:
    """Outputs come from one top-to-bottom run (``make notebooks``): counts 1..n, no errors,
    nothing on stderr (a warning there would reach every researcher who opens it)."""
    nb = nbformat.read(NOTEBOOKS_DIR / f"{stem}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        "not executed top to bottom in one run; run `make notebooks`"
    for i, cell in enumerate(code):
        for out in cell.outputs:
            assert out.output_type != "error", f"code cell {i}: {out.ename}: {out.evalue}"
            assert not (out.output_type == "stream" and out.name == "stderr"), \
                f"code cell {i} writes to stderr: {out.text[:200]}"
        assert "execution" not in cell.metadata, "timing metadata stored (record_timing)"
    assert any("image/png" in out.get("data", {}) for c in code for out in c.outputs), \
        "no figure in the stored outputs"


def bare_paths(source: str) -> list[str]:
    """String literals used as locations relative to the working directory: a relative path
    anywhere, or a file name passed straight to a call (``pd.read_csv("x.csv")``)."""
    tree = ast.parse(source)
    found = [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and RELATIVE_PATH.search(node.value)]
    found += [arg.value for node in ast.walk(tree) if isinstance(node, ast.Call)
              for arg in node.args
              if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
              and FILE_NAME.search(arg.value)]
    return found


@pytest.mark.parametrize("stem", OURS)
def test_no_bare_relative_paths(stem: str) -> None:
    nb = nbformat.read(NOTEBOOKS_DIR / f"{stem}.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert bare_paths(source) == []
    assert "paths.processed_dir(dataset)" in source


def test_path_check_would_see_a_relative_path() -> None:
    assert bare_paths('x = pd.read_parquet("../data/processed/demo/panel.parquet")') == [
        "../data/processed/demo/panel.parquet", "../data/processed/demo/panel.parquet"]
    assert bare_paths('pd.read_csv("quarantine.csv")') == ["quarantine.csv"]
    assert bare_paths('folder = "data/processed/demo"') == ["data/processed/demo"]
    assert bare_paths('truth = folder / "truth.json"\ncols = "mileage_jump,shoe_km"') == []


# --- a real run on someone else's data -------------------------------------------------------


@pytest.mark.slow
def test_data_quality_runs_through_papermill_on_a_folder(tmp_path: Path) -> None:
    """A researcher's own data: a small simulated cohort built into a folder of its own and
    passed to the notebook as ``-p dataset /path``, from a different working directory."""
    from analysis.pipeline import build
    from analysis.simulate import simulate_dataset, write_dataset

    raw = write_dataset(simulate_dataset(runners_per_cohort=5, weeks=8, cohorts=2, seed=7),
                        tmp_path / "raw")
    build(raw, tmp_path / "processed")
    counts = json.loads((tmp_path / "processed" / "counts.json").read_text())
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS_DIR / "01_data_quality.ipynb"), str(out), kernel_name=KERNEL,
        parameters={"dataset": str(tmp_path / "processed")}, cwd=str(tmp_path),
        progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(str(o.get("data", {}).get("text/markdown", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"{counts['runners']} runners" in text
    assert f"{counts['pain_reports']} pain reports" in text
    assert "demo" not in text
