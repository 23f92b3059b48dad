"""Hostile inputs to ``kneeload report`` (issue 13, the report side): labels that try to be
HTML, Markdown or rich markup, output folders that are data or not kneeload's, a lowered
privacy floor, leaks of a suppressed cohort, machine paths in the saved notebook, and inputs
the ``--changed-only`` fingerprint must see.

One real report run (``hostile_run``: papermill, kernels, nbconvert) renders a study whose
cohort labels are hostile; everything else either stops before any notebook runs (exit 2) or
runs only a suppressed cohort (no notebook), so the module stays fast.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from report_study import make_raw

from analysis import reports
from analysis.errors import ReportError
from analysis.outputs import (
    REPORTS_MARKER,
    OutputFolderError,
    check_output_folder,
    is_temporary_name,
    temporary_name,
)
from analysis.pipeline import build
from analysis.reports.manifest import remove_stale_temporaries

CLI_TIMEOUT_S = 240
#: <script>, <img onerror>, a javascript: link, Markdown emphasis, rich markup, TeX math.
XSS_LABEL = ("<script>alert(1)</script><img src=x onerror=alert(2)> "
             "[click](javascript:alert(3)) <a href='javascript:alert(4)'>a</a> [/x] **b** $x$")
#: 300 characters ending in rich markup and a tag (a folder name this long is refused by
#: the file system; rich raises on the closing tag).
LONG_LABEL = "L" * 287 + "[/bold]<b>bold"
#: The suppressed cohort: its label must appear in no other cohort's report.
SECRET_LABEL = "secret-club <i>x</i> [/x]"


def kneeload(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KNEELOAD_ID_SALT"}
    return subprocess.run([sys.executable, "-m", "analysis.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


def one_line_error(done: subprocess.CompletedProcess[str], text: str) -> None:
    """Exit 2 with exactly one stderr line that contains ``text`` (no traceback)."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert text in lines[0], lines[0]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The report study with hostile cohort labels, built (raw folder, processed folder)."""
    root = tmp_path_factory.mktemp("hostile")
    made = make_raw(root / "raw")
    normal, painless, small = made["names"]
    runners = pd.read_csv(root / "raw" / "runners.csv")
    labels = {normal: XSS_LABEL, painless: LONG_LABEL, small: SECRET_LABEL}
    runners["cohort"] = runners["cohort"].map(labels)
    runners.to_csv(root / "raw" / "runners.csv", index=False)
    build(root / "raw", root / "processed")
    return {"root": root, "raw": root / "raw", "processed": root / "processed"}


@pytest.fixture(scope="module")
def hostile_run(hostile: dict[str, Any]) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = hostile["root"] / "reports"
    done = kneeload("report", hostile["processed"], "--out", out, "--workers", "2")
    return out, done


class _Live(html.parser.HTMLParser):
    """Every live thing a label could have become: a script that runs its code, an event
    handler, a javascript: URL, and the tags the labels contain."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[Any] = []
        self.text: list[str] = []
        self._tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        for key, value in attrs:
            value = (value or "").strip().lower()
            if key.startswith("on") and "alert" in value:
                self.found.append((tag, key, value))
            if key in {"href", "src"} and value.startswith("javascript:"):
                self.found.append((tag, key, value))
        if tag in {"i", "b"}:
            self.found.append(tag)  # the labels' <i>/<b>; nbconvert writes neither

    def handle_data(self, data: str) -> None:
        if self._tag == "script" and "alert(" in data:
            self.found.append(("script", data[:60]))
        self.text.append(data)


def _parse(path: Path) -> _Live:
    parser = _Live()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


# --- labels: escaped at the one place they enter HTML or Markdown ----------------------------


@pytest.mark.slow
def test_hostile_labels_render_as_text_and_never_as_tags_or_links(hostile: dict,
                                                                  hostile_run: tuple) -> None:
    out, done = hostile_run
    assert done.returncode == 0, done.stderr  # rich markup and 300 characters kill nothing
    manifest = json.loads((out / reports.MANIFEST_NAME).read_text())["cohorts"]
    assert {c: e["status"] for c, e in manifest.items()} == {
        XSS_LABEL: "ok", LONG_LABEL: "ok"}  # a suppressed cohort is not recorded
    for label in (XSS_LABEL, LONG_LABEL):
        page = _parse(out / reports.safe_name(label) / "report.html")
        assert page.found == [], label
        shown = " ".join("".join(page.text).split())
        assert label in shown  # the label as the characters it is
    index = _parse(out / "index.html")
    assert index.found == []
    assert XSS_LABEL in " ".join("".join(index.text).split())


@pytest.mark.slow
def test_a_suppressed_cohort_is_invisible_in_the_other_reports(hostile: dict,
                                                               hostile_run: tuple) -> None:
    """Not its label, not its files, not a dataset total from which its size follows: each
    report's per-file audit counts only its own cohort's rows."""
    out, _ = hostile_run
    counts = json.loads((hostile["processed"] / "counts.json").read_text())["cohorts"]
    for label in (XSS_LABEL, LONG_LABEL):
        folder = out / reports.safe_name(label)
        text = " ".join((folder / "report.html").read_text().split())
        assert "secret-club" not in text
        assert "secret-club" not in (folder / "report.ipynb").read_text()
        # the data-quality table: runs.csv kept = this cohort's runs, not the dataset's
        kept = re.search(r"<th>runs\.csv</th> <td>(\d+)</td>", text)
        assert kept is not None
        assert int(kept.group(1)) == counts[label]["runs"]
        total = sum(c["runs"] for c in counts.values())
        assert f"<td>{total}</td>" not in text
    # issue 14: not in the manifest or the index either (no file under --out names it)
    assert SECRET_LABEL not in json.loads((out / reports.MANIFEST_NAME).read_text())["cohorts"]
    assert "secret-club" not in (out / "index.html").read_text()


def test_the_per_file_audit_counts_only_the_cohorts_rows(hostile: dict) -> None:
    view = reports.load_cohort(hostile["processed"], XSS_LABEL)
    audit = reports.cohort_file_audit(view).set_index("file")
    counts = json.loads((hostile["processed"] / "counts.json").read_text())["cohorts"]
    mine = counts[XSS_LABEL]
    assert audit.loc["runs.csv", "kept"] == mine["runs"]
    assert audit.loc["pain.csv", "kept"] == mine["pain_reports"]
    assert audit.loc["runners.csv", "kept"] == mine["runners"]
    assert set(audit.columns) == {"kept", "merged", "merged by reason", "quarantined",
                                  "quarantined by reason"}  # no "read": a total


@pytest.mark.slow
def test_the_saved_notebooks_hold_no_absolute_path_of_this_machine(hostile: dict,
                                                                   hostile_run: tuple) -> None:
    out, _ = hostile_run
    root = str(hostile["root"])
    for label in (XSS_LABEL, LONG_LABEL):
        folder = out / reports.safe_name(label)
        for name in ("report.ipynb", "report.html", "summary.json"):
            assert root not in (folder / name).read_text(), name
        assert sys.prefix not in (folder / "report.ipynb").read_text()
        assert '"dataset": "../../processed"' in (folder / "report.ipynb").read_text()
    assert root not in (out / reports.MANIFEST_NAME).read_text()


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@given(st.text(max_size=60) | st.lists(st.sampled_from(
    ["<", ">", "[", "]", "(", ")", "*", "_", "`", "#", "$", "&", ";", "'", '"', "\\", "!",
     "javascript:", "http://x.y", "<script>", "&amp;", "&#x27;", "\n", "-", "1.", "|", "~",
     "[/x]", "a", " "]), max_size=20).map("".join))
@settings(max_examples=200, deadline=None)
def test_markdown_text_renders_as_exactly_its_characters(text: str) -> None:
    """Through nbconvert's own Markdown renderer (what report.html is made with): one
    paragraph, no other tag, and the visible text is the input (whitespace folded)."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    rendered = markdown2html_mistune(reports.markdown_text(text))
    parsed = _Tags()
    parsed.feed(rendered)
    expected = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    assert set(parsed.tags) <= {"p"}, rendered
    assert " ".join("".join(parsed.text).split()) == expected, rendered


def test_the_index_and_the_banner_share_the_one_html_escaping() -> None:
    from analysis.reports import effects, index

    assert index.escape_html is effects.escape_html
    assert reports.markdown_text("a<b") == "a&lt;b"
    assert reports.escape_html("<a href='x'>") == "&lt;a href=&#x27;x&#x27;&gt;"


def test_long_and_hostile_labels_get_short_distinct_folder_names() -> None:
    names = {reports.safe_name(label) for label in (LONG_LABEL, LONG_LABEL + "x", XSS_LABEL)}
    assert len(names) == 3
    assert all(len(name) <= reports.manifest.SAFE_NAME_MAX_CHARS + 9 for name in names)
    assert reports.safe_name("novice") == "novice"  # ordinary labels keep their folder


# --- the privacy floor -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [4, 1, 0])
def test_min_cohort_size_cannot_go_below_the_floor(value: int) -> None:
    with pytest.raises(ReportError, match="below the privacy floor of 5"):
        reports.validate_parameters({**reports.DEFAULT_PARAMETERS, "min_cohort_size": value})
    reports.validate_parameters({**reports.DEFAULT_PARAMETERS, "min_cohort_size": 8})


@pytest.mark.slow
def test_min_cohort_size_1_is_a_one_line_error(hostile: dict, tmp_path: Path) -> None:
    done = kneeload("report", hostile["processed"], "--out", tmp_path / "r", "--param",
                    "min_cohort_size=1")
    one_line_error(done, "below the privacy floor of 5")
    assert not (tmp_path / "r").exists()


def test_docs_state_the_same_floor() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "reports.md").read_text()
    assert f"May be raised, not lowered below {reports.DEFAULT_MIN_COHORT_SIZE}" in docs


# --- output folders --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("where", ["raw", "raw/reports", "processed", "processed/reports",
                                   "parent", "file", "foreign"])
def test_report_refuses_an_output_folder_it_must_not_write(hostile: dict, tmp_path: Path,
                                                           where: str) -> None:
    """Exit 2, one line, and nothing written (raw and processed folders byte-identical)."""
    processed = tmp_path / "processed"
    raw = tmp_path / "raw"
    shutil.copytree(hostile["processed"], processed)
    shutil.copytree(hostile["raw"], raw)
    meta = json.loads((processed / "panel_meta.json").read_text())
    (processed / "panel_meta.json").write_text(json.dumps({**meta, "raw_dir": str(raw)}))
    (tmp_path / "notes.txt").write_text("mine")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "budget.xlsx").write_text("mine")
    target = {"raw": raw, "raw/reports": raw / "reports", "processed": processed,
              "processed/reports": processed / "reports", "parent": tmp_path,
              "file": tmp_path / "notes.txt", "foreign": foreign}[where]
    before = _tree(tmp_path)
    done = kneeload("report", processed, "--out", target, "--cohort", SECRET_LABEL)
    one_line_error(done, {"raw": "raw data folder", "raw/reports": "inside the raw data",
                          "processed": "processed data folder",
                          "processed/reports": "inside the processed data",
                          "parent": "must not contain the raw data",
                          "file": "is an existing file",
                          "foreign": "is not kneeload's"}[where])
    assert _tree(tmp_path) == before


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(root.rglob("*"))}


def test_the_guard_accepts_new_empty_marked_and_older_reports_folders(tmp_path: Path) -> None:
    assert check_output_folder(tmp_path / "new", marker=REPORTS_MARKER) == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", marker=REPORTS_MARKER)
    marked = tmp_path / "marked"
    marked.mkdir()
    (marked / REPORTS_MARKER).write_text("")
    (marked / "anything").write_text("")
    check_output_folder(marked, marker=REPORTS_MARKER)
    older = tmp_path / "older"  # written by kneeload before the marker existed
    older.mkdir()
    (older / "manifest.json").write_text('{"cohorts": {}, "package_version": "0.1.0"}')
    check_output_folder(older, marker=REPORTS_MARKER,
                        legacy=reports.runner._is_legacy_reports_folder)
    with pytest.raises(OutputFolderError, match="not kneeload's"):
        check_output_folder(older, marker=REPORTS_MARKER)
    link = tmp_path / "link"  # a symbolic link to the raw folder is the raw folder
    (tmp_path / "raw").mkdir()
    link.symlink_to(tmp_path / "raw")
    with pytest.raises(OutputFolderError, match="is the raw data folder"):
        check_output_folder(link, marker=REPORTS_MARKER, raw=tmp_path / "raw")


# --- cleanup touches only kneeload's own temporary files -------------------------------------


def test_cleanup_removes_only_kneeloads_own_temporary_files(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    (out / "docs").mkdir(parents=True)
    (out / "novice" / "figures" / "deeper").mkdir(parents=True)
    users = [out / ".budget.tmp", out / "docs" / ".report.docx", out / ".report.1.ipynb",
             out / "novice" / ".report.notes", out / ".manifest.json.bak.tmp",
             out / "novice" / "figures" / ".flow.svg.notes",
             out / "novice" / "figures" / "deeper" / temporary_name("x.svg")]  # not ours
    ours = [out / temporary_name("manifest.json"), out / "novice" / temporary_name(
        "report.ipynb"), out / "novice" / ".report.4242.0123456789ab.ipynb",
        out / ".index.html.4242.140000.tmp",
        out / "novice" / "figures" / temporary_name("flow.svg")]  # a figure's, killed
    for path in users + ours:
        path.write_text("x")
    removed = remove_stale_temporaries(out)
    assert sorted(removed) == sorted(ours)
    assert all(p.is_file() for p in users)
    assert not any(is_temporary_name(p.name) for p in users[:-1])


@pytest.mark.slow
def test_a_run_leaves_the_users_files_in_its_folder_alone(hostile: dict, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    first = kneeload("report", hostile["processed"], "--out", out, "--cohort", SECRET_LABEL)
    assert first.returncode == 0, first.stderr
    assert (out / REPORTS_MARKER).is_file()
    (out / "docs").mkdir()
    mine = {out / ".budget.tmp": "12", out / "docs" / ".report.docx": "draft"}
    for path, text in mine.items():
        path.write_text(text)
    again = kneeload("report", hostile["processed"], "--out", out, "--cohort", SECRET_LABEL)
    assert again.returncode == 0, again.stderr
    assert {p: p.read_text() for p in mine} == mine


# --- --changed-only sees every input the report reads ----------------------------------------


def test_a_change_to_quarantined_rows_changes_only_that_cohorts_fingerprint(
        hostile: dict, tmp_path: Path) -> None:
    processed = tmp_path / "processed"
    shutil.copytree(hostile["processed"], processed)
    runners = pd.read_parquet(processed / "runners.parquet")
    rid = runners.loc[runners["cohort"] == XSS_LABEL, "runner_id"].iloc[0]
    row = "runs.csv,7,distance_km,{value},negative_distance,{rid}\n"
    header = (processed / "quarantine.csv").read_text()
    (processed / "quarantine.csv").write_text(header + row.format(value=-3, rid=rid))
    cohorts = [XSS_LABEL, LONG_LABEL]
    before = reports.cohort_input_hashes(processed, cohorts)
    (processed / "quarantine.csv").write_text(header + row.format(value=-4, rid=rid))
    after = reports.cohort_input_hashes(processed, cohorts)
    assert after[LONG_LABEL] == before[LONG_LABEL]
    changed = {k for k in after[XSS_LABEL] if after[XSS_LABEL][k] != before[XSS_LABEL][k]}
    assert changed == {f"quarantine.csv[{XSS_LABEL}]"}
    # and every table and file the report reads is in the fingerprint
    keys = set(after[XSS_LABEL])
    for name in ("runners", "runs", "pain", "shoes", "panel", "daily"):
        assert f"{name}.parquet[{XSS_LABEL}]" in keys
    assert {"cleaning_report.json", "panel_meta.json", f"counts.json[{XSS_LABEL}]"} <= keys


# --- messages --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_malformed_dask_address_is_a_quick_one_line_error(hostile: dict,
                                                            tmp_path: Path) -> None:
    import time

    start = time.monotonic()
    done = kneeload("report", hostile["processed"], "--out", tmp_path / "r",
                    "--dask-scheduler", "foo")
    one_line_error(done, "'foo' is not a Dask scheduler address")
    assert time.monotonic() - start < 8  # no 20 s connection attempt (CLI start is ~2 s)
    assert not (tmp_path / "r").exists()


def test_rich_markup_in_an_error_is_printed_not_parsed() -> None:
    from typer.testing import CliRunner

    from analysis.cli import app

    done = CliRunner().invoke(app, ["report", "/nonexistent/[/x]", "--out", "/tmp/x"])
    assert done.exit_code == 2
    assert "[/x]" in done.output and "Traceback" not in done.output
