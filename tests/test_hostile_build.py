"""Hostile input to ``kneeload build`` (issue 13): every input either builds with every
physical record accounted for, or fails with one line naming the file (row and column where
they apply); the raw folder is byte-identical afterwards and nothing outside ``--out`` is
created or removed.

Named cases run the real ``kneeload build`` in a subprocess; the hypothesis part calls
:func:`analysis.pipeline.build` in-process (fast), on broken copies of the exposure fixture.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from realdata import real_sample

from analysis.csvsafe import FORMULA_GUARD, FORMULA_TRIGGERS, restore_formulas
from analysis.errors import KneeloadError
from analysis.pipeline import build, load_processed

FIXTURE = Path(__file__).parent / "fixtures" / "exposures"
TABLE_FILES = ("runners.csv", "runs.csv", "pain.csv", "shoes.csv")
CLI_TIMEOUT_S = 120
TODAY = date(2026, 1, 1)
#: The real Strava sample, read in place (tests/realdata.py).
STRAVA_SAMPLE = "formats/strava/activities_sample.csv"


# --- helpers -----------------------------------------------------------------------------


def make_raw(folder: Path) -> Path:
    """A copy of the exposure fixture's four tables (7 runners, 119 runs)."""
    folder.mkdir(parents=True)
    for name in TABLE_FILES:
        shutil.copy(FIXTURE / name, folder / name)
    return folder


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file (links not followed) under ``folder``."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def physical_lines(data: bytes) -> list[str]:
    """The file's physical lines as the readers count them (``\\n``, ``\\r\\n`` or ``\\r``),
    decoded as the reader decodes (UTF-8, else Windows-1252 when it can, else Latin-1)."""
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    return io.StringIO(text, newline="").readlines()


def data_line_numbers(data: bytes) -> set[int]:
    """1-based numbers of the non-blank physical lines after the header line."""
    numbered = [(i + 1, line) for i, line in enumerate(physical_lines(data))
                if line.strip(" \t\r\n,;|")]
    return {n for n, _ in numbered[1:]}


@dataclass
class Outcome:
    code: int
    stderr: str


def run_cli(raw: Path, out: Path, *extra: str) -> Outcome:
    env = {k: v for k, v in os.environ.items() if k != "KNEELOAD_ID_SALT"}
    done = subprocess.run([sys.executable, "-m", "analysis.cli", "build", str(raw), "--out",
                           str(out), *extra], env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, check=False)
    return Outcome(done.returncode, done.stderr)


def hostile_build(raw: Path, out: Path, *, expect: int | None = None,
                  names: tuple[str, ...] = ()) -> Outcome:
    """``kneeload build raw --out out`` with the promises of issue 13 checked.

    Exit 0: every file's records add up (kept + merged + quarantined = read). Exit 2: one
    line, no traceback, naming each of ``names``. Either way the raw folder is unchanged
    and the parent of ``out`` gained at most ``out`` itself.
    """
    before_raw = tree_hashes(raw)
    before_parent = {p.name for p in out.parent.iterdir()}
    result = run_cli(raw, out)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code in (0, 2), result.stderr
    if expect is not None:
        assert result.code == expect, result.stderr
    if result.code == 2:
        text = result.stderr.strip()
        assert "\n" not in text and text.startswith("error:"), text
        for name in names:
            assert name in text, (name, text)
    else:
        report = load_processed(out)["cleaning_report"]
        for name, entry in report["files"].items():
            assert entry["read"] == entry["kept"] + entry["merged"] + entry["quarantined"], name
    assert tree_hashes(raw) == before_raw
    after_parent = {p.name for p in out.parent.iterdir()}
    assert after_parent - before_parent <= {out.name}
    assert before_parent - after_parent == set()
    return result


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


# --- named cases, one per defect class -------------------------------------------------------


def test_out_at_an_existing_file_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    out = tmp_path / "notes.txt"
    out.write_text("my notes\n")
    hostile_build(raw, out, expect=2, names=("notes.txt", "existing file"))
    assert out.read_text() == "my notes\n"  # not hidden as .notes.txt.old-PID
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "raw"]


def test_an_unterminated_quote_swallows_no_row(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    lines = (raw / "runners.csv").read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(",trail,", ',"trail,')  # R2: a quote that never closes
    (raw / "runners.csv").write_text("".join(lines))
    out = tmp_path / "out"
    hostile_build(raw, out, expect=0)
    done = load_processed(out)
    entry = done["cleaning_report"]["files"]["runners.csv"]
    assert entry["read"] == len(data_line_numbers((raw / "runners.csv").read_bytes())) == 7
    assert entry["by_reason"] == {"unterminated_quote": 1}
    q = done["quarantine"]
    assert q.loc[q["reason"] == "unterminated_quote", "line"].tolist() == [3]
    assert sorted(done["runners"]["runner_id"]) == ["R1", "R3", "R4", "R5", "R6", "R7"]


def test_a_quote_opened_and_closed_mid_file_loses_no_line(tmp_path: Path) -> None:
    """The swallow runs to the next quote character; the lines in between are rows again."""
    raw = make_raw(tmp_path / "raw")
    lines = (raw / "runs.csv").read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace(",", ',"', 1)  # opens on line 4
    lines[9] = lines[9].replace(",", '",', 1)  # a stray quote on line 10
    (raw / "runs.csv").write_text("".join(lines))
    out = tmp_path / "out"
    hostile_build(raw, out, expect=0)
    done = load_processed(out)
    lines_seen = set(done["runs"]["source_line"]) | set(
        done["quarantine"].loc[done["quarantine"]["file"] == "runs.csv", "line"])
    assert lines_seen == data_line_numbers((raw / "runs.csv").read_bytes())


def test_formula_text_in_quarantine_csv_is_defused_and_recoverable(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    evil = ['=HYPERLINK("http://evil.example","x")', "=cmd|' /C calc'!A0", "@SUM(A1:A9)",
            "+1+1", "-2+3", "'=already quoted"]
    rows = "".join(f'"{e.replace(chr(34), chr(34) * 2)}",2025-02-20,3,1,,,\n' for e in evil)
    append(raw / "pain.csv", rows.encode())
    append(raw / "pain.csv", b"R1,@SUM(1),3,1,,,\n")  # a formula in the date column
    out = tmp_path / "out"
    hostile_build(raw, out, expect=0)
    with (out / "quarantine.csv").open(newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    risky = [c for c in cells if c.startswith(FORMULA_TRIGGERS) and not c.startswith(
        FORMULA_GUARD)]
    assert risky == []
    assert "'=HYPERLINK(\"http://evil.example\",\"x\")" in cells
    assert "'@SUM(1)" in cells
    q = load_processed(out)["quarantine"]  # the rule undone: values as read
    assert set(evil) <= set(q["runner_id"])
    assert "@SUM(1)" in set(q["value"])
    assert restore_formulas(pd.DataFrame({"v": ["''=x", "'-1", "plain"]}))["v"].tolist() == [
        "'=x", "-1", "plain"]


def test_a_symlink_leading_out_of_the_raw_folder_is_refused(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    secret = tmp_path / "elsewhere" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("runner_id,date,pain\nX,2025-01-01,3\n")
    (raw / "extra").mkdir()
    (raw / "extra" / "pain_more.csv").symlink_to(secret)
    hostile_build(raw, tmp_path / "out", expect=2, names=("extra/pain_more.csv", "outside"))


def test_a_loop_of_symlinks_in_the_raw_folder_is_one_line_not_a_traceback(
        tmp_path: Path) -> None:
    """Found by review: Path.resolve raised RuntimeError ("Symlink loop") out of the link
    check, a traceback with exit 1."""
    raw = make_raw(tmp_path / "raw")
    (raw / "a.csv").symlink_to(raw / "b.csv")
    (raw / "b.csv").symlink_to(raw / "a.csv")
    hostile_build(raw, tmp_path / "out", expect=2, names=("a.csv", "loop"))


def test_a_symlink_inside_the_raw_folder_is_read(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    (raw / "store").mkdir()
    (raw / "shoes.csv").rename(raw / "store" / "shoes.csv")
    (raw / "shoes.csv").symlink_to(raw / "store" / "shoes.csv")
    hostile_build(raw, tmp_path / "out", expect=0)


def test_partial_dates_are_quarantined_not_read_as_the_first(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    append(raw / "pain.csv", b"R1,2025-02,3,1,,,\nR2,2025,3,1,,,\n")
    append(raw / "runs.csv", b"R1,2025-02,5,,07:00,30,,,\n")
    out = tmp_path / "out"
    hostile_build(raw, out, expect=0)
    q = load_processed(out)["quarantine"]
    partial = q[q["reason"] == "partial_date"]
    assert sorted(zip(partial["file"], partial["value"], strict=True)) == [
        ("pain.csv", "2025"), ("pain.csv", "2025-02"), ("runs.csv", "2025-02")]


def test_a_duplicated_column_name_fails_naming_file_and_column(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    lines = (raw / "pain.csv").read_text().splitlines()
    (raw / "pain.csv").write_text("\n".join([lines[0] + ",Pain", *(f"{x},10" for x in
                                                                   lines[1:])]) + "\n")
    hostile_build(raw, tmp_path / "out", expect=2, names=("pain.csv", "'pain'"))


def test_a_duplicated_column_in_a_workbook_fails_too(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    shoes = pd.read_csv(raw / "shoes.csv")
    shoes.insert(1, "start_km_dup", 0)
    shoes = shoes.rename(columns={"start_km_dup": "start_km"})
    (raw / "shoes.csv").unlink()
    shoes.to_excel(raw / "shoes.xlsx", index=False)
    hostile_build(raw, tmp_path / "out", expect=2, names=("shoes.xlsx", "'start_km'"))


def test_the_real_strava_export_with_its_repeated_headers_still_builds(tmp_path: Path) -> None:
    sample = real_sample(STRAVA_SAMPLE)
    raw = tmp_path / "raw" / "runner1"
    raw.mkdir(parents=True)
    shutil.copy(sample, raw / "activities.csv")  # a temporary input folder, not the repo
    with sample.open(encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle))
    assert len(header) > len(set(header))  # Distance, Elapsed Time, ... twice by design
    hostile_build(tmp_path / "raw", tmp_path / "out", expect=0)
    assert len(load_processed(tmp_path / "out")["runs"]) > 0


def test_cp1252_is_decoded_as_cp1252(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    # 0x96 is an en dash in Windows-1252 and a C1 control character in Latin-1
    append(raw / "runners.csv", "R8,Caf\xe9 \u2013 Oslo,F,30,,\n".encode("cp1252"))
    out = tmp_path / "out"
    hostile_build(raw, out, expect=0)
    done = load_processed(out)
    assert "Caf\xe9 \u2013 Oslo" in set(done["runners"]["cohort"])
    assert done["cleaning_report"]["files"]["runners.csv"]["encoding"] == "Windows-1252"


def test_control_characters_in_labels_are_quarantined(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    append(raw / "runners.csv", b"R8,ro\x01ad,F,30,,\nR\x1b9,road,F,30,,\n")
    out = tmp_path / "out"
    hostile_build(raw, out, expect=0)
    done = load_processed(out)
    q = done["quarantine"]
    bad = q[q["reason"] == "control_character"]
    assert sorted(zip(bad["line"], bad["column"], strict=True)) == [(9, "cohort"),
                                                                    (10, "runner_id")]
    assert not {"R8", "R\x1b9"} & set(done["runners"]["runner_id"])


@pytest.mark.parametrize("content", [b"not a workbook at all\n", b"PK\x03\x04broken zip"],
                         ids=["text", "broken-zip"])
def test_a_corrupt_workbook_fails_in_one_line(tmp_path: Path, content: bytes) -> None:
    raw = make_raw(tmp_path / "raw")
    (raw / "shoes.csv").unlink()
    (raw / "shoes.xlsx").write_bytes(content)
    hostile_build(raw, tmp_path / "out", expect=2, names=("shoes.xlsx", "Excel"))


def test_a_zip_that_is_no_workbook_fails_in_one_line(tmp_path: Path) -> None:
    import zipfile

    raw = make_raw(tmp_path / "raw")
    (raw / "shoes.csv").unlink()
    with zipfile.ZipFile(raw / "shoes.xlsx", "w") as archive:
        archive.writestr("readme.txt", "hello")
    hostile_build(raw, tmp_path / "out", expect=2, names=("shoes.xlsx",))


def test_iso_offsets_mixed_with_plain_dates_and_z(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    append(raw / "pain.csv", b"R1,2025-02-10T07:30+01,3,1,,,\nR1,2025-02-11T07:30Z,2,1,,,\n"
                             b"R1,2025-02-12 07:30:00-0500,1,1,,,\n")
    out = tmp_path / "out"
    hostile_build(raw, out, expect=0)
    pain = load_processed(out)["pain"]
    days = set(pain.loc[pain["runner_id"] == "R1", "date"].dt.strftime("%Y-%m-%d"))
    assert {"2025-02-10", "2025-02-11", "2025-02-12"} <= days  # the day as written


@pytest.mark.parametrize("empty", ["runners.csv", "all"])
def test_header_only_tables_fail_or_build_in_one_line(tmp_path: Path, empty: str) -> None:
    raw = make_raw(tmp_path / "raw")
    for name in TABLE_FILES if empty == "all" else (empty,):
        header = (raw / name).read_text().splitlines()[0]
        (raw / name).write_text(header + "\n")
    result = hostile_build(raw, tmp_path / "out")
    if empty == "runners.csv":  # runs were read and none kept: one line with the reasons
        assert result.code == 2 and "unknown_runner" in result.stderr


def test_out_inside_raw_is_refused(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    hostile_build(raw, raw / "processed", expect=2, names=("inside the raw",))


# --- generated broken inputs (in-process) ---------------------------------------------------

SNIPPETS = ['"', ",", ";", "\t", "\r", "\n", "=HYPERLINK(x)", "@SUM(A1)", "-", "+", "2025-03",
            "2025", "T07:30+01", "Z", "NA", "--", "\x01", "\x85", "\x96", "\u2028", "\ufeff",
            "1e999", "nan", "-0", "  ", "R1", "10", "99"]


@st.composite
def broken_file(draw: st.DrawFn) -> tuple[str, list[tuple[str, int, str]]]:
    """A table file and up to three edits: insert a snippet at a position, delete a run of
    characters, or cut the file short. At most one edit inserts a quote character."""
    name = draw(st.sampled_from(TABLE_FILES))
    text = (FIXTURE / name).read_text()
    size, body = len(text), text.index("\n") + 1
    # mostly the data lines (a broken header fails early and tests little), sometimes any
    position = st.one_of(st.integers(body, size - 1), st.integers(body, size - 1),
                         st.integers(body, size - 1), st.integers(0, size - 1))
    edits = []
    quotes = 0
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["insert", "insert", "delete", "cut"]))
        at = draw(position)
        if kind == "insert":
            text = draw(st.sampled_from(SNIPPETS))
            if text == '"':
                quotes += 1
                if quotes > 1:
                    continue
            edits.append((kind, at, text))
        else:
            edits.append((kind, at, str(draw(st.integers(1, 40)))))
    return name, edits


def apply_edits(text: str, edits: list[tuple[str, int, str]]) -> str:
    for kind, at, arg in edits:
        at = min(at, len(text))
        if kind == "insert":
            text = text[:at] + arg + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + int(arg):]
        else:
            text = text[:max(at, 1)]
    return text


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=broken_file(), encoding=st.sampled_from(["utf-8", "cp1252"]))
def test_generated_broken_csv_builds_or_fails_in_one_line(
        tmp_path_factory: pytest.TempPathFactory, case: tuple[str, list], encoding: str) -> None:
    name, edits = case
    base = tmp_path_factory.mktemp("gen")
    raw = make_raw(base / "raw")
    text = apply_edits((raw / name).read_text(), edits)
    (raw / name).write_bytes(text.encode(encoding, errors="replace"))
    check_in_process(raw, base / "out")


def check_in_process(raw: Path, out: Path) -> None:
    """pipeline.build: a one-line KneeloadError naming a file, or every non-blank data line
    of every CSV is a record (kept, merged or quarantined) and the counts add up."""
    before_raw = tree_hashes(raw)
    before_parent = {p.name for p in out.parent.iterdir()}
    try:
        summary = build(raw, out, today=TODAY)
    except KneeloadError as error:
        line = error.one_line()
        assert "\n" not in line and error.file is not None, line
    else:
        done = load_processed(out)
        for name, entry in summary.cleaning["files"].items():
            assert entry["read"] == entry["kept"] + entry["merged"] + entry["quarantined"]
            path = raw / name
            if not path.is_file() or path.suffix != ".csv":
                continue
            seen = set(done["quarantine"].loc[done["quarantine"]["file"] == name, "line"])
            for table in ("runners", "runs", "pain", "shoes"):
                frame = done[table]
                seen |= set(frame.loc[frame["source_file"] == name, "source_line"])
            assert seen == data_line_numbers(path.read_bytes()), name
        with (out / "quarantine.csv").open(newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                for cell in row:
                    assert not cell.startswith(FORMULA_TRIGGERS) or cell.startswith(
                        FORMULA_GUARD), cell
    assert tree_hashes(raw) == before_raw
    after = {p.name for p in out.parent.iterdir()}
    assert after - before_parent <= {out.name} and before_parent <= after


HOSTILE_CELLS = st.one_of(
    st.sampled_from(["=1+1", "@SUM(A1)", "2025-03", "2025", "2025-02-10T07:30+01", "",
                     "R1", "R2", "road", "-5", "11", "NA"]),
    st.integers(-5, 20), st.floats(allow_nan=True, allow_infinity=True),
    st.dates(date(2024, 12, 1), date(2025, 4, 30)))


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cells=st.lists(st.tuples(HOSTILE_CELLS, HOSTILE_CELLS, HOSTILE_CELLS), min_size=0,
                      max_size=6),
       duplicate=st.booleans())
def test_generated_hostile_workbooks_build_or_fail_in_one_line(
        tmp_path_factory: pytest.TempPathFactory, cells: list[tuple], duplicate: bool) -> None:
    base = tmp_path_factory.mktemp("xlsx")
    raw = make_raw(base / "raw")
    pain = pd.read_csv(raw / "pain.csv", dtype=str)
    extra = pd.DataFrame([{"runner_id": a, "date": b, "pain": c} for a, b, c in cells],
                         columns=["runner_id", "date", "pain"], dtype=object)
    table = pd.concat([pain[["runner_id", "date", "pain"]].astype(object), extra],
                      ignore_index=True)
    if duplicate:
        table.insert(3, "pain_2", 10)
        table.columns = ["runner_id", "date", "pain", "pain"]
    (raw / "pain.csv").unlink()
    table.to_excel(raw / "pain.xlsx", index=False)
    check_in_process(raw, base / "out")


def test_a_defused_runner_id_still_counts_for_its_cohort_fingerprint(tmp_path: Path) -> None:
    """quarantine.csv writes runner ``-R8`` as ``'-R8``; the report fingerprint reads it back
    as ``-R8``, so a change to its quarantined row re-runs its cohort (``--changed-only``)."""
    from analysis.reports.manifest import cohort_input_hashes

    digests = []
    for pain in ("11", "12"):
        raw = make_raw(tmp_path / f"raw{pain}")
        append(raw / "runners.csv", b"-R8,hill,F,30,,\n")
        append(raw / "pain.csv", f"-R8,2025-02-20,{pain},1,,,\n-R8,2025-02-21,3,1,,,\n".encode())
        build(raw, tmp_path / f"out{pain}", today=TODAY)
        assert "'-R8" in (tmp_path / f"out{pain}" / "quarantine.csv").read_text()
        digests.append(cohort_input_hashes(tmp_path / f"out{pain}", ["hill"])["hill"])
    assert digests[0]["quarantine.csv[hill]"] != digests[1]["quarantine.csv[hill]"]
