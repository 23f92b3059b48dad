"""The install contract: environment.yml, pyproject.toml, the pins and CI agree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

#: pyproject names that conda-forge spells differently (pip name -> conda names).
CONDA_SPELLING = {"dask": {"dask", "distributed"}}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pyproject_requirements() -> list[Requirement]:
    project = _pyproject()["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("kneeload")]
    return reqs


def _environment_names() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names: set[str] = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {canonicalize_name(Requirement(p).name) for p in dep["pip"]
                      if not p.startswith("-e")}
        else:
            names.add(canonicalize_name(re.split(r"[<>=!\s]", dep, maxsplit=1)[0]))
    return names - {"python", "pip"}


def test_environment_yml_names_the_same_packages_as_pyproject():
    expected: set[str] = set()
    for req in _pyproject_requirements():
        expected |= CONDA_SPELLING.get(canonicalize_name(req.name), {canonicalize_name(req.name)})
    assert _environment_names() == expected


def test_environment_yml_uses_python_311_and_installs_the_package_editable_with_dev():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_block = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert "-e .[dev]" in pip_block
    assert env["channels"] == ["conda-forge"]


def test_constraints_pin_every_dependency_exactly():
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    for req in _pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is not pinned in requirements/constraints.txt"
        assert req.specifier.contains(pins[name]), f"pin {name}=={pins[name]} violates {req}"


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [ln.strip() for ln in ci.splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")
                and not ln.startswith(("set ", "cd "))]
    assert commands == ["make test"]
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make report" in readme


def test_console_script_runs_the_typer_app_and_freezes_what_is_left():
    assert _pyproject()["project"]["scripts"] == {"kneeload": "analysis.__main__:main"}
    import gc

    from analysis.__main__ import main

    before = gc.get_freeze_count()
    argv = sys.argv
    sys.argv = ["kneeload", "--help"]
    try:
        with pytest.raises(SystemExit) as done:
            main()
    finally:
        sys.argv = argv
        frozen = gc.get_freeze_count()
        gc.unfreeze()
    assert done.value.code == 0
    assert frozen > before  # the exit traces none of them


def _make_would_build(tmp_path: Path, changed: Path) -> bool:
    """Whether ``make`` would rebuild the panel after ``changed`` got newer than it (dry run
    with the raw/processed folders, stamp and sources pointed into ``tmp_path``)."""
    raw, processed = tmp_path / "raw", tmp_path / "processed"
    stamp, bytecode = tmp_path / "stamp", tmp_path / "bytecode"
    stamp.touch()
    bytecode.touch()
    panel = processed / "panel.parquet"
    os.utime(stamp, (1_000, 1_000))
    for path in raw.rglob("*"):
        os.utime(path, (2_000, 2_000))
    os.utime(raw, (2_000, 2_000))
    os.utime(panel, (3_000, 3_000))
    os.utime(changed, (4_000, 4_000))
    run = subprocess.run(
        ["make", "-n", "-f", str(ROOT / "Makefile"), f"RAW={raw}", f"PROCESSED={processed}",
         f"STAMP={stamp}", f"BYTECODE={bytecode}", "SRC=", "-o", str(stamp),
         "-o", str(bytecode), str(panel)],
        capture_output=True, text=True, check=True, cwd=tmp_path)
    return "kneeload build" in run.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_rebuilds_when_any_file_under_the_raw_folder_changes(tmp_path):
    raw = tmp_path / "raw"
    (raw / "exports" / "runner 01").mkdir(parents=True)
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "panel.parquet").write_bytes(b"x")
    nested = raw / "exports" / "runner 01" / "run 2024:03:04 #1.fit"  # ' ', ':', '#' in names
    sheet = raw / "pain.xlsx"
    for path in (raw / "runs.csv", nested, sheet):
        path.write_bytes(b"x")
    assert not _make_would_build(tmp_path, tmp_path / "processed" / "panel.parquet")
    assert _make_would_build(tmp_path, nested)
    assert _make_would_build(tmp_path, sheet)
    assert _make_would_build(tmp_path, raw / "exports")  # a file added or deleted there


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_report_passes_each_params_word_as_one_param():
    run = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "report",
         "PARAMS=exposures=km_7d min_cohort_size=8", "BUILD_OPTS=--timezone Europe/Oslo"],
        capture_output=True, text=True, check=True, cwd=ROOT)
    assert "--out data/processed/demo --timezone Europe/Oslo" in run.stdout
    assert "--param exposures=km_7d --param min_cohort_size=8" in run.stdout
