"""analysis.reports.runner: real papermill runs on real kernels, real files, a real Dask cluster.

The end-to-end tests share one small simulated dataset (``report_study``: 3 cohorts x 6
runners x 8 weeks): one ordinary cohort, one whose every pain report is 0 (no pain events: the
report must say so), and one cut to 3 runners (below the privacy floor: suppressed). Every run
goes through the ``kneeload`` command in a subprocess, as a scheduler would call it. The
parameter checks run in process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from filelock import FileLock
from outcome_study import make_injury_study
from report_study import EXPOSURES, SALT, Study, make_raw, make_study

from analysis import __version__, reports
from analysis.errors import ReportError
from analysis.labels import format_interval
from analysis.models import fit_model
from analysis.outputs import REPORTS_MARKER
from analysis.pipeline import build
from analysis.privacy import pseudonym, pseudonymise
from analysis.reports.execute import UNUSED_SLOW_MODULES
from analysis.reports.parameters import declared_parameters
from analysis.simulate import simulate_dataset, write_dataset

CLI_TIMEOUT_S = 240


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return make_study(tmp_path_factory.mktemp("study"))


def kneeload(*args: str | Path, salt: str | None = None, **popen: Any
             ) -> subprocess.CompletedProcess[str]:
    """Run the kneeload command as a scheduler would (fresh process, no TTY)."""
    return subprocess.run(_command(*args), env=_env(salt), capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, check=False, **popen)


def _command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "analysis.cli", *map(str, args)]


def _env(salt: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KNEELOAD_ID_SALT"}
    if salt:
        env["KNEELOAD_ID_SALT"] = salt
    return env


@pytest.fixture(scope="module")
def baseline(study: Study, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """All cohorts with --workers 2 and a pseudonymisation salt."""
    out = tmp_path_factory.mktemp("reports") / "baseline"
    done = kneeload("report", study.processed, "--out", out, "--workers", "2", salt=SALT)
    assert done.returncode == 0, done.stderr
    return out, done


def _copy(out: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(out, target)
    (target / reports.LOCK_NAME).unlink(missing_ok=True)
    return target


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / reports.MANIFEST_NAME).read_text())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _summary(out: Path, cohort: str) -> dict[str, Any]:
    return json.loads((out / reports.safe_name(cohort) / reports.SUMMARY_NAME).read_text())


def _text(html: str) -> str:
    html = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.S)
    html = re.sub(r"<img[^>]*>|<svg\b.*?</svg>", " [figure] ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def assert_consistent(out: Path) -> None:
    """Manifest is valid JSON; every 'ok' entry's files are in place with the hashes it lists;
    no temporary file is left behind."""
    manifest = _manifest(out)
    for cohort, entry in manifest["cohorts"].items():
        folder = out / reports.safe_name(cohort)
        if entry["status"] in {"ok", "failed"} and entry["outputs_sha256"]:
            for name, digest in entry["outputs_sha256"].items():
                if "/" in name:
                    # a take-away file: a run killed later may have rewritten it (each file
                    # whole: written under a temporary name and renamed); --changed-only
                    # then sees the hash differ and renders the cohort again
                    assert (folder / name).is_file(), (cohort, name)
                else:
                    assert _sha(folder / name) == digest, (cohort, name)
        if entry["status"] == "suppressed":
            assert not any((folder / n).exists() for n in reports.REPORT_FILES)


# --- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_workers_2_reports_every_cohort_with_manifest(study: Study, baseline: tuple) -> None:
    out, done = baseline
    manifest = _manifest(out)
    status = {c: e["status"] for c, e in manifest["cohorts"].items()}
    assert status == {study.normal: "ok", study.painless: "ok"}  # suppressed: not recorded
    assert "3 cohorts: 2 ok, 1 suppressed" in done.stderr  # the operator's log counts it
    entry = manifest["cohorts"][study.normal]
    assert entry["template_sha256"] == _sha(reports.template_path())
    assert entry["package_version"] == __version__
    assert entry["parameters"]["min_cohort_size"] == 5
    assert entry["parameters"]["exposures"] == "auto"  # the defaults the data support ...
    assert _summary(out, study.normal)["exposures"] == EXPOSURES  # ... all three here
    assert entry["input_sha256"] == reports.cohort_input_hashes(
        study.processed, [study.normal])[study.normal]
    assert entry["started"] <= entry["finished"] and entry["duration_s"] > 0
    assert entry["error"] is None
    assert_consistent(out)
    assert not list(out.glob("*/.kneeload-tmp.*")) and not list(out.glob(".kneeload-tmp.*"))


@pytest.mark.slow
def test_summary_matches_an_in_process_fit(study: Study, baseline: tuple) -> None:
    """The index numbers are the model's: refit the cohort here and compare."""
    out, _ = baseline
    panel = pd.read_parquet(study.processed / "panel.parquet")
    panel = panel[panel["cohort"] == study.normal]
    # the report sorts runners by pseudonym; the same order gives the same optimizer path
    panel = panel.assign(runner_id=pseudonymise(panel["runner_id"], salt=SALT))
    expected = fit_model(panel, model="lmm", exposures=EXPOSURES).table.set_index("term")
    summary = _summary(out, study.normal)
    assert summary["n_runners"] == 6 and summary["model_note"] is None
    assert [e["term"] for e in summary["headline"]] == EXPOSURES
    for effect in summary["headline"]:
        row = expected.loc[effect["term"]]
        assert effect["estimate"] == pytest.approx(row["estimate"], rel=1e-9)
        assert effect["ci_low"] == pytest.approx(row["ci_low"], rel=1e-9)
        assert effect["ci_high"] == pytest.approx(row["ci_high"], rel=1e-9)
    # the index shows the mileage-jump effect per +10 %, with its interval
    jump = expected.loc["mileage_jump"]
    index = _text((out / "index.html").read_text())
    text, low, high = format_interval(jump["estimate"] * 0.1, jump["ci_low"] * 0.1,
                                      jump["ci_high"] * 0.1, signed=True, null=0.0)
    assert f"{text} NRS points ({low} to {high})" in index


@pytest.mark.slow
def test_report_has_every_section_and_says_when_there_is_no_model(study: Study,
                                                                   baseline: tuple) -> None:
    out, _ = baseline
    html = (out / reports.safe_name(study.normal) / "report.html").read_text()
    text = _text(html)
    for heading in ("Data quality", "Cohort summary", "Training and the outcome over time",
                    "Exposures and the outcome", "Mixed model", "Random-effect spread",
                    "Time to pain episode", "Runners"):
        assert heading in text
    assert text.index("Data quality") < text.index("Cohort summary")  # audit at the top
    assert "NRS points" in text and "per +10 % week-over-week mileage" in text
    assert "Knee pain and training load" in text and "Outcome modelled: Knee pain" in text
    assert "per +100 km on the shoe" in text and "per extra rest day" in text
    # over time, exposures, flow, forest, predictions, runner effects, residuals (issue 14);
    # the time-to-event section draws none here: no first episode (no curve) and its
    # Andersen-Gill fit of 3 episodes does not converge (no forest), which it says (issue 15)
    assert text.count("[figure]") == 7
    assert "No hazard-ratio figure: the model did not converge" in text
    assert "def " not in text and "import " not in text  # no code cells
    painless = _text((out / reports.safe_name(study.painless) / "report.html").read_text())
    assert "No model for this cohort" in painless and "no pain events" in painless
    summary = _summary(out, study.painless)
    assert summary["headline"] == [] and "no pain events" in summary["model_note"]
    assert "no pain events" in _text((out / "index.html").read_text())


@pytest.mark.slow
def test_small_cohort_is_suppressed_everywhere(study: Study, baseline: tuple) -> None:
    out, _ = baseline
    assert study.small not in _manifest(out)["cohorts"]
    assert not (out / reports.safe_name(study.small)).exists()
    for path in out.rglob("*"):  # issue 14: no file under --out names it
        assert study.small not in str(path.relative_to(out))
        if path.is_file():
            assert study.small not in path.read_text(errors="replace"), path


@pytest.mark.slow
def test_the_manifest_records_each_take_away_file_a_report_wrote(study: Study,
                                                                 baseline: tuple) -> None:
    """What a later suppression may remove is what the report wrote, by name and hash."""
    out, _ = baseline
    entry = _manifest(out)["cohorts"][study.normal]
    folder = out / reports.safe_name(study.normal)
    written = sorted(f"{d}/{p.name}" for d in ("figures", "tables")
                     for p in (folder / d).iterdir())
    recorded = sorted(k for k in entry["outputs_sha256"] if "/" in k)
    assert recorded == written and "figures/forest.svg" in recorded
    assert "tables/table1.csv" in recorded
    assert entry["outputs_sha256"]["figures/forest.svg"] == _sha(folder / "figures" /
                                                                  "forest.svg")


@pytest.mark.slow
def test_reports_show_pseudonyms_never_raw_ids(study: Study, baseline: tuple) -> None:
    out, _ = baseline
    normal_ids = [i for i in study.raw_ids if i[:3].lower() == study.normal[:3].lower()]
    html = (out / reports.safe_name(study.normal) / "report.html").read_text()
    expected = {pseudonym(i, salt=SALT) for i in normal_ids}
    assert len(expected) == 6 and all(p in html for p in expected)  # the runner table
    by_hand = hmac.new(SALT.encode(), normal_ids[0].encode(), hashlib.sha256).hexdigest()
    assert f"r-{by_hand[:12]}" in html
    for path in [*out.rglob("*.html"), *out.rglob("*.ipynb"), *out.rglob("*.json")]:
        text = path.read_text()
        leaked = [i for i in study.raw_ids if i in text]
        assert not leaked, (path, leaked[:3])


@pytest.mark.slow
def test_changed_only_skips_then_reruns_the_changed_cohort(study: Study, baseline: tuple,
                                                          tmp_path: Path) -> None:
    out = _copy(baseline[0], tmp_path, "changed")
    before = _manifest(out)
    html_before = {c: _sha(out / reports.safe_name(c) / "report.html")
                   for c in (study.normal, study.painless)}
    done = kneeload("report", study.processed, "--out", out, "--changed-only", salt=SALT)
    assert done.returncode == 0, done.stderr
    assert "2 skipped, 1 suppressed" in done.stderr
    assert _manifest(out)["cohorts"] == before["cohorts"]

    # one pain report of one runner of the ordinary cohort changes: only that cohort re-runs
    runner = next(i for i in study.raw_ids if i[:3].lower() == study.normal[:3].lower())
    make_raw(tmp_path / "raw2", bump_runner=runner)
    build(tmp_path / "raw2", tmp_path / "processed2")
    done = kneeload("report", tmp_path / "processed2", "--out", out, "--changed-only",
                    salt=SALT)
    assert done.returncode == 0, done.stderr
    after = _manifest(out)["cohorts"]
    assert after[study.normal]["started"] > before["cohorts"][study.normal]["finished"] or \
        after[study.normal]["input_sha256"] != before["cohorts"][study.normal]["input_sha256"]
    assert after[study.normal]["fingerprint"] != before["cohorts"][study.normal]["fingerprint"]
    assert after[study.painless] == before["cohorts"][study.painless]
    assert re.search(rf"{study.normal}: ok in [\d.]+ s", done.stderr)
    assert re.search(rf"{study.painless}: skipped\n", done.stderr)
    assert _sha(out / reports.safe_name(study.painless) / "report.html") == \
        html_before[study.painless]
    assert _sha(out / reports.safe_name(study.normal) / "report.html") != \
        html_before[study.normal]
    assert_consistent(out)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs a pseudo-terminal")
def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise(
        study: Study, baseline: tuple, tmp_path: Path) -> None:
    import pty

    out = _copy(baseline[0], tmp_path, "tty")
    args = ("report", study.processed, "--out", out, "--changed-only")
    plain = kneeload(*args, salt=SALT)
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[3/3\] ", plain.stderr, flags=re.M)
    leader, follower = pty.openpty()
    env = {**_env(SALT), "TERM": "xterm", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    with os.fdopen(leader, "rb", buffering=0) as terminal:
        proc = subprocess.Popen(_command(*args), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        chunks = []
        with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
            while chunk := terminal.read(4096):
                chunks.append(chunk)
        assert proc.wait(timeout=CLI_TIMEOUT_S) == 0
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert "3/3" in shown and "cohorts" in shown  # rich's bar: description, M/N column
    assert not re.search(r"\dZ \[\d/3\]", shown)  # not the plain log lines


@pytest.fixture(scope="module")
def failure_run(study: Study, baseline: tuple, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Path, subprocess.CompletedProcess[str], dict[str, str]]:
    """--workers 1 with a template that raises for the no-pain cohort, over a copy of the
    baseline (so that cohort has a previous good report)."""
    root = tmp_path_factory.mktemp("failing")
    out = _copy(baseline[0], root, "out")
    old = {c: _sha(out / reports.safe_name(c) / "report.html")
           for c in (study.normal, study.painless)}
    notebook = nbformat.read(str(reports.template_path()), as_version=4)
    notebook.cells.insert(2, nbformat.v4.new_code_cell(
        f"if cohort == {study.painless!r}:\n"
        "    raise RuntimeError('deliberate failure for the test')"))
    template = root / "failing.ipynb"
    nbformat.write(notebook, str(template))
    done = kneeload("report", study.processed, "--out", out, "--workers", "1",
                    "--template", template, salt=SALT)
    return out, done, old


@pytest.mark.slow
def test_failing_cohort_is_isolated_and_reported(study: Study, failure_run: tuple) -> None:
    out, done, old = failure_run
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "1 failed" in last and f"failed: {study.painless}" in last
    manifest = _manifest(out)["cohorts"]
    failed = manifest[study.painless]
    assert failed["status"] == "failed"
    # code cells of the executed notebook: parameters, papermill's injected parameters,
    # setup, then the raising cell
    assert failed["error"] == "cell 4: RuntimeError: deliberate failure for the test"
    assert failed["last_ok"] is not None
    folder = out / reports.safe_name(study.painless)
    assert _sha(folder / "report.html") == old[study.painless]  # previous report kept
    kept = nbformat.read(str(folder / reports.FAILED_NOTEBOOK), as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in kept.cells if c.cell_type == "code"
               for o in c.get("outputs", []))
    assert manifest[study.normal]["status"] == "ok"  # the other cohort still finished
    assert _sha(out / reports.safe_name(study.normal) / "report.html") != old[study.normal]
    index = _text((out / "index.html").read_text())
    assert "cell 4: RuntimeError: deliberate failure for the test" in index
    assert "failed notebook" in index
    assert_consistent(out)


def _wait_for(predicate: Any, *, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ctrl_c_as_a_terminal() -> None:
    """In the child before exec: SIGINT as a terminal gives it (default action), so Python
    turns it into KeyboardInterrupt. A test run started in the background of a
    non-interactive shell (``make test &``) has SIGINT ignored, every child inherits that,
    and the command (rightly) ignored the signal and finished with exit 0."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_run_leaves_previous_reports_and_a_consistent_manifest(
        study: Study, baseline: tuple, tmp_path: Path, how: signal.Signals) -> None:
    out = _copy(baseline[0], tmp_path, "interrupted")
    before = _manifest(out)
    old = {c: _sha(out / reports.safe_name(c) / "report.html")
           for c in (study.normal, study.painless)}
    proc = subprocess.Popen(_command("report", study.processed, "--out", out, "--param",
                                     "seed=1"), env=_env(SALT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_as_a_terminal)
    try:
        assert _wait_for(lambda: any(out.glob("*/.kneeload-tmp.*.report.ipynb")), timeout_s=120)
        children = _descendants(proc.pid)
        assert children  # papermill (and its kernel) are running
        proc.send_signal(how)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    if how == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    # papermill and the kernel die with the command (PDEATHSIG / Ctrl-C handling)
    assert _wait_for(lambda: not any(_alive(p) for p in children), timeout_s=30), \
        [p for p in children if _alive(p)]
    after = _manifest(out)
    for cohort in (study.normal, study.painless):
        entry = after["cohorts"][cohort]
        html = out / reports.safe_name(cohort) / "report.html"
        if entry == before["cohorts"][cohort]:
            assert _sha(html) == old[cohort]  # the previous good report survives
        else:  # finished before the signal: a complete new report, recorded
            assert entry["status"] == "ok" and entry["parameters"]["seed"] == 1
    assert_consistent(out)
    # the next scheduled run is not blocked and cleans up after the killed one
    done = kneeload("report", study.processed, "--out", out, "--changed-only",
                    "--cohort", study.small, salt=SALT)
    assert done.returncode == 0, done.stderr
    assert not list(out.glob("*/.kneeload-tmp.*")) and not list(out.glob(".kneeload-tmp.*"))
    index = (out / "index.html").read_text()  # a one-cohort run still lists every cohort
    for cohort in (study.normal, study.painless):
        assert f'href="{reports.safe_name(cohort)}/report.html"' in index


@pytest.mark.slow
def test_second_run_on_a_locked_folder_exits_2_with_a_clear_message(study: Study,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "locked"
    out.mkdir()
    (out / REPORTS_MARKER).write_text("")  # marked by the run that holds the lock
    with FileLock(str(out / reports.LOCK_NAME), timeout=0):
        done = kneeload("report", study.processed, "--out", out)
    assert done.returncode == 2
    assert "another 'kneeload report' is already writing this folder" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (out / reports.MANIFEST_NAME).exists()


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_reports_as_local_workers(
        study: Study, baseline: tuple, failure_run: tuple, tmp_path: Path) -> None:
    import dask
    from distributed import LocalCluster

    out = tmp_path / "dask"
    # the scheduler's and the worker's scratch folders in tmp_path, not the system's /tmp
    with dask.config.set({"temporary-directory": str(tmp_path)}), \
            LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                         host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        done = kneeload("report", study.processed, "--out", out, "--dask-scheduler",
                        address, salt=SALT)
    assert done.returncode == 0, done.stderr
    manifest = _manifest(out)["cohorts"]
    assert {c: e["status"] for c, e in manifest.items()} == {
        study.normal: "ok", study.painless: "ok"}
    workers_2, workers_1 = baseline[0], failure_run[0]
    for cohort in (study.normal, study.painless):
        assert _summary(out, cohort) == _summary(workers_2, cohort)
    assert _summary(out, study.normal) == _summary(workers_1, study.normal)  # --workers 1
    assert_consistent(out)


def _installed(distribution: str) -> bool:
    """True when the named distribution is installed (without importing it)."""
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_the_report_command_imports_papermill_without_the_iri_grammar(tmp_path: Path) -> None:
    """`kneeload report` reads the template's parameters with papermill; jsonschema under it
    would import rfc3987_syntax, 1.1-1.5 s of grammar building (the process took 1.9-2.2 s
    to refuse a missing folder, now 0.8 s). Import times on stderr name every module."""
    if not _installed("rfc3987-syntax"):  # not imported here: that is the 1.1 s
        pytest.skip("nothing to block: rfc3987-syntax is not installed "
                    "(jsonschema[format-nongpl] brings it)")
    env = {**_env(None), "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(_command("report", tmp_path / "missing", "--out", tmp_path / "r"),
                          env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                          check=False)
    assert done.returncode == 2
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert {"papermill", "nbformat", "jsonschema"} <= imported
    # a blocked import is still a line (microseconds, nothing loaded): none of its modules
    # nor the parser library it would bring is
    assert not {m for m in imported if m.split(".")[0] == "lark"
                or (m.split(".")[0] in UNUSED_SLOW_MODULES and "." in m)}
    assert "not a processed folder" in done.stderr


def test_a_saved_notebooks_first_error_is_read_without_nbformat(tmp_path: Path) -> None:
    """The runner names a failed cohort's first raising code cell and keeps only a readable
    notebook; it reads the file as JSON (a Dask worker imports no nbformat for it)."""
    from analysis.reports.runner import _first_error, _notebook_json

    def _readable_notebook(path: Path) -> bool:
        return _notebook_json(path) is not None

    def _notebook_error(path: Path) -> str | None:
        return _first_error(_notebook_json(path))

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("x = 1", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="ok\n")]),
        nbformat.v4.new_code_cell("raise ValueError", outputs=[nbformat.v4.new_output(
            "error", ename="ValueError", evalue="bad\n  thing", traceback=[])]),
        nbformat.v4.new_code_cell("raise KeyError", outputs=[nbformat.v4.new_output(
            "error", ename="KeyError", evalue="later", traceback=[])]),
    ])
    path = tmp_path / "report.ipynb"
    nbformat.write(nb, str(path))
    assert _readable_notebook(path)
    assert _notebook_error(path) == "cell 2: ValueError: bad thing"  # code cells counted
    nb.cells = nb.cells[:2]
    nbformat.write(nb, str(path))
    assert _readable_notebook(path) and _notebook_error(path) is None
    text = path.read_text()
    for broken in (text[: len(text) // 2], "{}", "[]", '{"nbformat": 3, "cells": []}'):
        path.write_text(broken)
        assert not _readable_notebook(path) and _notebook_error(path) is None, broken
    assert not _readable_notebook(tmp_path / "missing.ipynb")
    assert _notebook_error(tmp_path / "missing.ipynb") is None


def test_a_blocked_module_is_left_alone_once_imported() -> None:
    """The block never replaces a module a process already holds (a user's kernel that
    imported it keeps it); one not yet imported raises ImportError, which jsonschema skips."""
    code = ("import sys, importlib\n"
            "from analysis.reports.execute import block_unused_slow_modules\n"
            "import json\n"
            "sys.modules['rfc3987_syntax'] = json\n"
            "block_unused_slow_modules()\n"
            "held = sys.modules['rfc3987_syntax'] is json\n"
            "del sys.modules['rfc3987_syntax']\n"
            "block_unused_slow_modules()\n"
            "try:\n    importlib.import_module('rfc3987_syntax')\n    blocked = False\n"
            "except ImportError:\n    blocked = True\n"
            "import jsonschema\n"
            "checks = jsonschema.FormatChecker().checkers\n"
            "print(held, blocked, 'iri' in checks, 'uri' in checks and 'date-time' in checks)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=CLI_TIMEOUT_S)
    # the GPL rfc3987, when installed, gives jsonschema its IRI check without the grammar
    assert out.stdout.split() == ["True", "True", str(_installed("rfc3987")), "True"]


@pytest.mark.slow
def test_unreachable_dask_scheduler_is_a_one_line_error(study: Study, tmp_path: Path) -> None:
    done = kneeload("report", study.processed, "--out", tmp_path / "x", "--cohort",
                    study.normal, "--dask-scheduler", "tcp://127.0.0.1:9")
    assert done.returncode == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in done.stderr


# --- the pieces, in process ------------------------------------------------------------------


def test_param_items_are_typed_by_the_template() -> None:
    params = reports.parse_param_items(["seed=3", "exposures=km_7d", "min_cohort_size=8",
                                        "outcome=pain_any"])
    assert params == {"seed": 3, "exposures": "km_7d", "min_cohort_size": 8,
                      "outcome": "pain_any"}
    assert isinstance(params["seed"], int)
    for bad, message in [("seed=x", "expected int"), ("cohort=a", "set by 'kneeload report'"),
                         ("foo=1", "unknown report parameter 'foo'"),
                         ("min_cohort_size=1.5", "expected int"),
                         ("novalue", "KEY=VALUE")]:
        with pytest.raises(ReportError, match=re.escape(message)):
            reports.parse_param_items([bad])


def test_the_pain_threshold_is_the_builds_not_a_report_parameter() -> None:
    """One threshold: pain_any is the panel's (panel_meta.json), so a report cannot set
    another one; the former report parameter is gone from the defaults and the template."""
    assert "pain_threshold" not in reports.DEFAULT_PARAMETERS
    assert "pain_threshold" not in declared_parameters(reports.template_path())
    for call in (lambda: reports.parse_param_items(["pain_threshold=4"]),
                 lambda: reports.validate_parameters({**reports.DEFAULT_PARAMETERS,
                                                      "pain_threshold": 4.0})):
        with pytest.raises(ReportError, match=re.escape("kneeload build --pain-threshold")):
            call()


@pytest.mark.slow
def test_an_injury_flag_study_is_reported_as_injury_with_a_glmm(tmp_path: Path) -> None:
    """Issue 12: Lovdal-format data (pain in {0, 10}, no shoes, outcome injury_flag) reach
    a report with a fitted logistic model by default, labelled as injury, never as NRS
    knee pain, and saying that shoe_km was left out and why."""
    processed = make_injury_study(tmp_path / "injury")
    out = tmp_path / "reports"
    done = kneeload("report", processed, "--out", out)
    assert done.returncode == 0, done.stderr
    summary = _summary(out, "novice")
    assert summary["model"] == "glmm" and summary["scale"] == "odds"
    assert summary["outcome"] == "injury_flag" and summary["outcome_label"] == "Any injury"
    assert summary["exposures"] == ["mileage_jump", "rest_days_7d"]
    reason = "shoe_km left out: the Lovdal data have no shoe/gear records"
    assert summary["exposures_left_out"] == {"shoe_km": reason}
    assert [e["term"] for e in summary["headline"]] == ["mileage_jump", "rest_days_7d"]
    text = _text((out / "novice" / "report.html").read_text())
    # shown in words (labels.humanize): no raw column name on the page
    shown_reason = "Distance on the current shoe left out: the Lovdal data have no shoe/gear " \
        "records"
    assert "Any injury and training load" in text and shown_reason in text
    assert "shoe_km" not in text
    assert "the odds of injury change by a factor of" in text
    assert "Outcome modelled: Any injury" in text and "logistic mixed model" in text
    page = (out / "index.html").read_text()
    row = _text(next(r for r in re.findall(r"<tr>.*?</tr>", page, flags=re.S)
                     if "<td>novice</td>" in r))
    assert "Any injury" in row and shown_reason in row and "OR " in row
    assert "shoe_km" not in row
    for shown in (text, row):
        assert "NRS" not in shown and "Knee pain" not in shown and "knee pain" not in shown


@pytest.mark.parametrize(("change", "message"), [
    ({"outcome": "pain_score"}, "outcome must be one of"),
    ({"outcome": "ostrc"}, "models the column 'ostrc_severity', which the panel does not"),
    ({"min_cohort_size": 0}, "below the privacy floor of 5"),
    ({"min_cohort_size": 4}, "below the privacy floor of 5"),
    ({"exposures": " , "}, "at least one"),
    ({"random_slopes": "km_7d"}, "must be among the exposures"),
    ({"exposures": "mileage_jump,not_a_column"}, "['not_a_column'] are not panel columns; "
                                                 "leave them out (--param "
                                                 "exposures=mileage_jump)"),
])
def test_parameter_values_are_checked_before_running(change: dict, message: str) -> None:
    with pytest.raises(ReportError, match=re.escape(message)):
        reports.validate_parameters({**reports.DEFAULT_PARAMETERS, **change},
                                    panel_columns=["mileage_jump", "shoe_km", "rest_days_7d"])
    reports.validate_parameters(reports.DEFAULT_PARAMETERS, panel_columns=EXPOSURES)


# --- honest status end to end (issue 10, finding 2) ------------------------------------------


@pytest.fixture(scope="module")
def degenerate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One cohort of 6 runners x 8 weeks where every runner reports the same score every
    week (a different score per runner): no within-runner variation, so the LMM's residual
    variance goes to 0, a boundary estimate whose standard errors are meaningless."""
    root = tmp_path_factory.mktemp("degenerate")
    data = simulate_dataset(runners_per_cohort=6, weeks=8, cohorts=1, seed=11)
    ids = sorted(data.runners["runner_id"])
    level = {runner: float(1 + i) for i, runner in enumerate(ids)}
    data = dataclasses.replace(data, pain=data.pain.assign(pain=data.pain["runner_id"]
                                                            .map(level)))
    write_dataset(data, root / "raw")
    build(root / "raw", root / "processed")
    out = root / "reports"
    done = kneeload("report", root / "processed", "--out", out)
    assert done.returncode == 0, done.stderr  # a warning is not a failure
    return out, done.stderr


@pytest.mark.slow
def test_a_degenerate_cohort_is_a_warning_in_summary_index_and_report(degenerate: tuple
                                                                      ) -> None:
    out, stderr = degenerate
    cohort = next(iter(_manifest(out)["cohorts"]))
    summary = _summary(out, cohort)
    assert summary["status"] == "warning"
    assert any(p.startswith("boundary estimate: residual variance near 0")
               for p in summary["problems"]), summary["problems"]
    assert "1 cohorts: 1 warning; warning: " + cohort in stderr
    assert _manifest(out)["cohorts"][cohort]["status"] == "ok"  # the run itself succeeded
    rows = re.findall(r"<tr>.*?</tr>", (out / "index.html").read_text(), flags=re.S)
    row = next(r for r in rows if f"<td>{cohort}</td>" in r)
    assert '<td class="warning">warning</td>' in row
    shown = _text(row)
    assert "warning: " in shown and "boundary estimate: residual variance near 0" in shown
    html = (out / reports.safe_name(cohort) / "report.html").read_text()
    assert f'class="{reports.BANNER_CLASS}"' in html
    text = _text(html)
    banner = text.index("Warning: this model has problems")
    assert text.index("Mixed model") < banner < text.index("Random-effect spread")
    assert "residual variance near 0" in text[banner:banner + 400]


# --- ghosts: runners.csv rows with no data never lift a cohort over the privacy floor ------


GHOSTS = ("COM901", "COM902")  # runners.csv rows of the 3-runner cohort: no run, no report


@pytest.fixture(scope="module")
def ghost_study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """The report study with 2 ghost rows added to the small cohort (3 runners with data +
    2 ghosts = 5 rows of runners.csv, the privacy floor)."""
    root = tmp_path_factory.mktemp("ghosts")
    made = make_raw(root / "raw")
    normal, painless, small = made["names"]
    with (root / "raw" / "runners.csv").open("a") as handle:
        handle.writelines(f"{g},{small},F,40.0,2025-01-06,2025-03-02\n" for g in GHOSTS)
    build(root / "raw", root / "processed")
    return Study(raw=root / "raw", processed=root / "processed", normal=normal,
                 painless=painless, small=small, raw_ids=made["ids"])


def test_ghost_runners_do_not_lift_a_cohort_over_the_floor(ghost_study: Study,
                                                           tmp_path: Path) -> None:
    study = ghost_study
    runners = pd.read_parquet(study.processed / "runners.parquet")
    assert (runners["cohort"] == study.small).sum() == 5  # the ghosts are kept as runners
    sizes = reports.list_cohorts(study.processed).set_index("cohort")["runners"].to_dict()
    assert sizes == {study.normal: 6, study.painless: 6, study.small: 3}
    with pytest.raises(ReportError, match="suppressed"):
        reports.load_cohort(study.processed, study.small)

    def fake_papermill(jobs: list[reports.CohortJob]) -> Any:
        for job in jobs:  # what a finished run records, without a kernel
            yield dataclasses.replace(job.outcome, status="ok")

    run = reports.run_reports(study.processed, tmp_path / "out", submit=fake_papermill)
    status = {o.cohort: (o.status, o.runners) for o in run.outcomes}
    assert status == {study.normal: ("ok", 6), study.painless: ("ok", 6),
                      study.small: ("suppressed", None)}
    assert study.small not in _manifest(tmp_path / "out")["cohorts"]
    assert study.small not in (tmp_path / "out" / "index.html").read_text()

    # another cohort's report: its own runners only, so no total to subtract from
    view = reports.load_cohort(study.processed, study.normal)
    assert view.n_runners == 6
    assert reports.write_summary(None, view, None)["n_runners"] == 6
    summary = reports.cohort_summary(view).set_index("measure")["value"]
    assert summary["runners (with at least one pain report)"] == 6
    audit = reports.cohort_audit(view).set_index("count")["value"]
    assert audit["runners in runners.csv"] == 6
    files = reports.cohort_file_audit(view).set_index("file")
    assert files.loc["runners.csv", "kept"] == 6
    assert not view.quarantine.get("runner_id", pd.Series(dtype=str)).isin(GHOSTS).any()


# --- the kept kernel of a report worker (analysis.reports.execute) ---------------------------


def _without_cell_ids(html: str) -> str:
    """papermill gives the injected-parameters cell a random id on every run."""
    return re.sub(r'id="cell-id=[0-9a-f-]+"', 'id="cell-id=x"', html)


@pytest.mark.slow
def test_a_kept_kernel_gives_the_same_report_as_a_fresh_one(study: Study,
                                                            tmp_path: Path) -> None:
    """One worker runs both cohorts on one kernel (reset in between); the second cohort run
    alone on a fresh kernel gives the same HTML, figures included."""
    kept = reports.run_reports(study.processed, tmp_path / "kept", workers=1)
    ran = [o.cohort for o in kept.outcomes if o.status == "ok"]
    assert len(ran) == 2, kept.one_line()
    fresh = reports.run_reports(study.processed, tmp_path / "fresh", cohorts=[ran[1]])
    assert fresh.outcomes[0].status == "ok"
    folder = reports.safe_name(ran[1])
    assert _without_cell_ids((tmp_path / "kept" / folder / "report.html").read_text()) == \
        _without_cell_ids((tmp_path / "fresh" / folder / "report.html").read_text())


@pytest.mark.slow
def test_each_cohort_starts_from_an_empty_namespace(tmp_path: Path) -> None:
    """A name set by one cohort's notebook is gone for the next on the same kernel (the
    notebook asserts it), and a failed cohort's kernel is not reused."""
    import nbformat

    from analysis.reports.execute import KernelSession

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('n: int = 0', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('import os\nassert "leak" not in globals()\n'
                                          'leak = n\nassert n != 99, "asked to fail"\n'
                                          'print(os.getpid())')]
    nb.metadata.kernelspec = {"name": "kneeload", "display_name": "kneeload",
                              "language": "python"}
    template = tmp_path / "t.ipynb"
    nbformat.write(nb, template)
    session = KernelSession("kneeload", str(tmp_path))
    try:
        answers, pids = [], []
        for number, n in enumerate([1, 2, 99, 3]):
            output = tmp_path / f"out{number}.ipynb"
            answers.append(session.execute({"template": str(template), "output": str(output),
                                            "parameters": {"n": n}}))
            done = nbformat.read(output, as_version=4)
            code = [c for c in done.cells if c.cell_type == "code"]
            printed = [o for o in code[-1].outputs if o.get("name") == "stdout"]
            pids.append(int(printed[0]["text"]) if printed else None)
    finally:
        session.close()
    assert [a["ok"] for a in answers] == [True, True, False, True], answers
    assert "asked to fail" in answers[2]["error"]
    assert pids[0] == pids[1]  # kept across cohorts
    assert pids[3] not in (None, pids[0])  # a fresh kernel after the failed cohort
