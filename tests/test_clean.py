"""Cleaning rules: each reason code is triggered by a hand-written fixture row."""

from __future__ import annotations

import csv
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from analysis import schemas
from analysis.clean import (
    FIX_REASONS,
    MERGE_REASONS,
    QUARANTINE_COLUMNS,
    QUARANTINE_REASONS,
    CleanContractBug,
    CleanResult,
    ConservationError,
    clean_tables,
)
from analysis.errors import KneeloadError
from analysis.ingest import read_dataset
from analysis.pipeline import input_hashes

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
OSTRC_COLUMNS = ["ostrc_q1", "ostrc_q2", "ostrc_q3", "ostrc_q4"]
MESSY = FIXTURES / "canonical_messy"
TODAY = date(2024, 6, 1)

#: (file, line) -> reason, written by hand from the fixture files (see the comments there
#: and docs/cleaning.md).
EXPECTED = {
    ("runners.csv", 4): "missing_cohort",
    ("runners.csv", 6): "exact_duplicate",
    ("runners.csv", 8): "duplicate_runner_id",
    ("runs.csv", 3): "exact_duplicate",
    ("runs.csv", 5): "non_running_activity",
    ("runs.csv", 6): "unparseable_date",
    ("runs.csv", 7): "future_date",
    ("runs.csv", 8): "distance_not_positive",
    ("runs.csv", 9): "distance_over_daily_max",
    ("runs.csv", 10): "pace_too_fast",
    ("runs.csv", 11): "pace_too_slow",
    ("runs.csv", 12): "distance_not_number",
    ("runs.csv", 13): "unknown_runner",
    ("runs.csv", 14): "runner_without_cohort",
    ("runs.csv", 16): "two_device_duplicate",
    ("runs.csv", 17): "daily_km_over_max",
    ("runs.csv", 18): "daily_km_over_max",
    ("runs.csv", 19): "outside_follow_up",
    ("runs.csv", 20): "missing_value",
    ("runs.csv", 21): "malformed_row",
    ("pain.csv", 3): "exact_duplicate",
    ("pain.csv", 4): "pain_out_of_range",
    ("pain.csv", 5): "pain_not_number",
    ("pain.csv", 6): "same_day_pain_report",
    ("pain.csv", 8): "outside_follow_up",
    ("pain.csv", 9): "unknown_runner",
    ("shoes.csv", 4): "duplicate_shoe_id",
}


@pytest.fixture(scope="module")
def messy() -> CleanResult:
    return clean_tables(read_dataset(MESSY), today=TODAY)


def test_every_fixture_row_gets_its_hand_written_reason(messy: CleanResult) -> None:
    got = {(f, int(ln)): r for f, ln, r in
           messy.quarantine[["file", "line", "reason"]].itertuples(index=False)}
    assert got == EXPECTED


def test_quarantine_has_the_contract_columns(messy: CleanResult) -> None:
    assert tuple(messy.quarantine.columns) == QUARANTINE_COLUMNS
    row = messy.quarantine.query("file == 'runs.csv' and line == 12").iloc[0]
    assert (row["column"], row["value"], row["runner_id"]) == ("distance_km", "ten", "R01")
    unknown = messy.quarantine.query("file == 'runs.csv' and line == 13").iloc[0]
    assert unknown["runner_id"] == "R09"
    pace = messy.quarantine.query("file == 'runs.csv' and line == 10").iloc[0]
    assert pace["value"] == "2.00 min/km"  # 20 min over 10 km


def test_report_adds_up_per_file_with_hand_counts(messy: CleanResult) -> None:
    files = messy.report["files"]
    assert {k: files["runs.csv"][k] for k in ("read", "kept", "merged", "quarantined",
                                              "fixed")} == {
        "read": 20, "kept": 3, "merged": 2, "quarantined": 15, "fixed": 1}
    assert {k: files["pain.csv"][k] for k in ("read", "kept", "merged", "quarantined")} == {
        "read": 9, "kept": 3, "merged": 2, "quarantined": 4}
    assert files["runners.csv"]["fixes"] == {"invalid_optional_blanked": 1}  # age 'not-an-age'
    assert files["shoes.csv"]["fixes"] == {"invalid_optional_blanked": 1}  # start_km -5
    for entry in files.values():
        assert entry["read"] == entry["kept"] + entry["merged"] + entry["quarantined"]
        assert sum(entry["by_reason"].values()) == entry["merged"] + entry["quarantined"]


def test_kept_values_are_typed_and_fixed(messy: CleanResult) -> None:
    runs = messy.runs
    assert str(runs["runner_id"].dtype) == "str"
    assert pd.api.types.is_datetime64_any_dtype(runs["date"])
    assert runs["distance_km"].tolist() == [10.0, 8.5, 10.0]  # "8,5" decimal comma fixed
    assert runs["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-02", "2024-01-03",
                                                             "2024-01-10"]
    pain = messy.pain.set_index("source_line")
    assert pain.loc[7, "pain"] == 3.0  # later same-day report supersedes line 6
    assert pain.loc[10, "pain"] == 1.5  # "1,5"
    assert pain.loc[10, "date"] == pd.Timestamp("2024-01-28")  # time and zone dropped
    runners = messy.runners.set_index("runner_id")
    assert runners.index.tolist() == ["R01", "R02", "R04", "R05"]
    assert pd.isna(runners.loc["R04", "age"]) and runners.loc["R01", "age"] == 34.0
    assert runners.loc["R05", "cohort"] == "B"  # first row wins; the 'C' row is quarantined
    schemas.RUNNERS.validate(messy.runners)
    schemas.RUNS.validate(messy.runs)
    schemas.PAIN.validate(messy.pain)
    schemas.SHOES.validate(messy.shoes)


def test_reason_codes_are_disjoint_and_all_documented() -> None:
    codes = [*MERGE_REASONS, *QUARANTINE_REASONS, *FIX_REASONS]
    assert len(codes) == len(set(codes))
    doc = (Path(__file__).parents[1] / "docs" / "cleaning.md").read_text(encoding="utf-8")
    missing = [c for c in codes if f"`{c}`" not in doc]
    assert missing == []


def test_conservation_mismatch_raises() -> None:
    raw = read_dataset(MESSY)
    raw.files["runs.csv"] += 1  # pretend one record vanished
    with pytest.raises(ConservationError, match=r"runs\.csv: read 21"):
        clean_tables(raw, today=TODAY)


def test_future_is_relative_to_today() -> None:
    early = clean_tables(read_dataset(MESSY), today=date(2024, 1, 5))
    future = early.quarantine.query("reason == 'future_date'")
    assert set(future["file"]) == {"runs.csv", "pain.csv"}
    assert len(future) > 1


def test_same_day_reports_keep_the_highest_pain(tmp_path: Path) -> None:
    """Issue 4: duplicate reports on one day keep the highest (ties: the later line)."""
    (tmp_path / "runners.csv").write_text("runner_id,cohort\nR1,A\nR2,A\n")
    (tmp_path / "runs.csv").write_text("runner_id,date,distance_km\nR1,2024-01-01,5\n")
    (tmp_path / "pain.csv").write_text(
        "runner_id,date,pain\n"
        "R1,2024-01-07,5\n"  # line 2: the flare-up, kept
        "R1,2024-01-07,2\n"  # line 3: a calmer report later that day
        "R2,2024-01-07,1\n"  # line 4: tie with line 6, the later line wins
        "R2,2024-01-07,0\n"  # line 5
        "R2,2024-01-07,1.0\n"  # line 6 (same value as line 4 once parsed: a duplicate)
    )
    result = clean_tables(read_dataset(tmp_path), today=date(2025, 1, 1))
    kept = result.pain.set_index("runner_id")["pain"]
    assert kept.to_dict() == {"R1": 5.0, "R2": 1.0}
    merged = result.quarantine.set_index("line")["reason"].to_dict()
    assert merged == {3: "same_day_pain_report", 5: "same_day_pain_report",
                      6: "exact_duplicate"}


# --- properties: messy inputs never lose or invent a record, raw files stay untouched ----
CELLS = {
    "runner_id": st.sampled_from(["R1", "R2", "R9", "", "NA", " R1 "]),
    "date": st.sampled_from(["2024-01-01", "2024-01-02", "2024-02-30", "x", "2030-01-01",
                             "2024-01-01 07:00", "2024-01-01T07:00:00Z", ""]),
    "distance_km": st.one_of(
        st.sampled_from(["5", "5.0", "0", "-1", "150", "8,5", "abc", "", "1e3", "nan", "60"]),
        st.floats(min_value=-5, max_value=120, allow_nan=False).map(str)),
    "duration_min": st.sampled_from(["30", "", "0", "-5", "600", "x", "3", "31"]),
    "activity_type": st.sampled_from(["run", "Ride", "", "Trail Run"]),
    "start_time": st.sampled_from(["", "07:00", "07:01", "25:99"]),
    "pain": st.sampled_from(["0", "3", "10", "11", "-1", "sore", "", "2,5"]),
    "cohort": st.sampled_from(["A", "B", ""]),
    "note": st.text(alphabet=st.sampled_from(list('ab ,;"\n\r\té')), max_size=6),
}
TABLE_COLUMNS = {
    "runners.csv": ("runner_id", "cohort", "note"),
    "runs.csv": ("runner_id", "date", "distance_km", "duration_min", "activity_type",
                 "start_time", "note"),
    "pain.csv": ("runner_id", "date", "pain", "note"),
}


@st.composite
def messy_tables(draw: st.DrawFn) -> dict[str, list[list[str]]]:
    tables = {}
    for name, columns in TABLE_COLUMNS.items():
        rows = draw(st.lists(st.tuples(*(CELLS[c] for c in columns)).map(list), max_size=12))
        copies = draw(st.lists(st.integers(0, max(len(rows) - 1, 0)), max_size=4))
        tables[name] = rows + [list(rows[i]) for i in copies if rows]
    return tables


def write_tables(folder: Path, tables: dict[str, list[list[str]]]) -> None:
    for name, rows in tables.items():
        with (folder / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(TABLE_COLUMNS[name])
            writer.writerows(rows)


@settings(max_examples=30, deadline=None)
@given(tables=messy_tables())
def test_messy_inputs_conserve_every_record_and_leave_raw_files_alone(
        tables: dict[str, list[list[str]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_tables(folder, tables)
        before = input_hashes(folder)
        result = clean_tables(read_dataset(folder), today=TODAY)
        assert input_hashes(folder) == before
    files = result.report["files"]
    for name, rows in tables.items():
        # rows whose cells are all blank are blank lines, not records
        expected = sum(any(cell.strip() for cell in row) for row in rows)
        entry = files.get(name, {"read": 0, "kept": 0, "merged": 0, "quarantined": 0})
        assert entry["read"] == expected
        assert entry["read"] == entry["kept"] + entry["merged"] + entry["quarantined"]
    # every (file, line) is either kept or in the quarantine, exactly once
    kept = pd.concat([t[["source_file", "source_line"]] for t in
                      (result.runners, result.runs, result.pain)])
    places = list(zip(kept["source_file"], kept["source_line"], strict=True)) + list(
        zip(result.quarantine["file"], result.quarantine["line"], strict=True))
    assert len(places) == len(set(places)) == sum(e["read"] for e in files.values())
    # what is kept meets the rules
    runs = result.runs
    assert ((runs["distance_km"] > 0) & (runs["distance_km"] <= 100)).all()
    pace = runs["duration_min"] / runs["distance_km"]
    assert pace.dropna().between(2.5, 15).all()
    assert (runs.groupby(["runner_id", "date"])["distance_km"].sum() <= 100).all()
    assert not result.pain.duplicated(["runner_id", "date"]).any()
    assert set(runs["runner_id"]) | set(result.pain["runner_id"]) <= set(
        result.runners["runner_id"])


@settings(max_examples=20, deadline=None)
@given(body=st.text(max_size=200))
def test_arbitrary_text_either_fails_in_one_line_or_conserves(body: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_tables(folder, {"runners.csv": [["R1", "A", ""]], "pain.csv": []})
        (folder / "runs.csv").write_text("runner_id,date,distance_km\n" + body,
                                         encoding="utf-8", newline="")
        before = input_hashes(folder)
        try:
            result = clean_tables(read_dataset(folder), today=TODAY)
        except KneeloadError as exc:
            assert "\n" not in exc.one_line()
            return
        finally:
            assert input_hashes(folder) == before
    entry = result.report["files"]["runs.csv"]
    assert entry["read"] == entry["kept"] + entry["merged"] + entry["quarantined"]


def test_unit_rules(tmp_path: Path) -> None:
    (tmp_path / "runners.csv").write_text("runner_id,cohort\nR1,A\n", encoding="utf-8")
    (tmp_path / "pain.csv").write_text("runner_id,date,pain\n", encoding="utf-8")
    (tmp_path / "runs.csv").write_text(
        "runner_id,date,distance_km,distance_unit\n"
        "R1,2024-01-01,3.1,mi\n"  # 3.1 * 1.609344 = 4.9889664 km
        "R1,2024-01-02,5000,m\n"
        "R1,2024-01-03,5,km\n"
        "R1,2024-01-04,5,furlong\n"
        "R1,2024-01-05,7,\n", encoding="utf-8")
    result = clean_tables(read_dataset(tmp_path), today=TODAY)
    assert result.runs["distance_km"].tolist() == pytest.approx([4.9889664, 5.0, 5.0, 7.0])
    assert result.quarantine[["line", "reason"]].to_numpy().tolist() == [
        [5, "unknown_distance_unit"]]
    entry = result.report["files"]["runs.csv"]
    assert (entry["fixed"], entry["fixes"]) == (2, {"miles_to_km": 1, "metres_to_km": 1})
    assert entry["read"] == 5 and result.report["files"]["pain.csv"]["read"] == 0


def test_two_device_rule_edges(tmp_path: Path) -> None:
    (tmp_path / "runners.csv").write_text("runner_id,cohort\nR1,A\nR2,A\n", encoding="utf-8")
    (tmp_path / "pain.csv").write_text("runner_id,date,pain\n", encoding="utf-8")
    (tmp_path / "runs.csv").write_text(
        "runner_id,date,distance_km,duration_min\n"
        "R1,2024-01-01 23:50,6.0,30\n"    # 2: kept
        "R1,2024-01-02 00:05,6.2,20\n"    # 3: overlaps line 2 across midnight, 3.2 % -> merged
        "R1,2024-01-03 07:00,10.0,50\n"   # 4: kept
        "R1,2024-01-03 07:10,10.6,50\n"   # 5: overlaps, 5.7 % apart -> kept
        "R1,2024-01-03 07:20,10.5,50\n"   # 6: overlaps line 4, exactly 4.76 % -> merged
        "R1,2024-01-03 18:00,10.0,50\n"   # 7: same day, no overlap -> kept
        "R2,2024-01-03 07:00,10.0,50\n"   # 8: another runner -> kept
        "R1,2024-01-04,8.0,40\n"          # 9: no time of day: never a two-device pair
        "R1,2024-01-04,8.0,41\n",         # 10: kept (a double day)
        encoding="utf-8")
    result = clean_tables(read_dataset(tmp_path), today=TODAY)
    merged = result.quarantine.query("reason == 'two_device_duplicate'")["line"].tolist()
    assert merged == [3, 6]
    assert sorted(result.runs["source_line"]) == [2, 4, 5, 7, 8, 9, 10]


def test_two_runners_may_name_their_shoes_alike(tmp_path: Path) -> None:
    # Strava's shoe_id is the gear's display name: R1's and R2's "Pegasus 38" are two shoes;
    # only a second row for the same runner and shoe is a duplicate
    (tmp_path / "runners.csv").write_text("runner_id,cohort\nR1,A\nR2,A\n", encoding="utf-8")
    (tmp_path / "pain.csv").write_text("runner_id,date,pain\n", encoding="utf-8")
    (tmp_path / "runs.csv").write_text("runner_id,date,distance_km\nR1,2024-01-01,5\n",
                                       encoding="utf-8")
    (tmp_path / "shoes.csv").write_text(
        "shoe_id,runner_id,start_km\n"
        "Pegasus 38,R1,10\n"  # line 2: kept
        "Pegasus 38,R2,20\n"  # line 3: another runner's shoe, kept
        "Pegasus 38,R2,30\n",  # line 4: R2's shoe again, different row -> duplicate
        encoding="utf-8")
    result = clean_tables(read_dataset(tmp_path), today=TODAY)
    assert result.shoes[["runner_id", "start_km"]].to_numpy().tolist() == [["R1", 10.0],
                                                                          ["R2", 20.0]]
    assert result.quarantine[["line", "reason"]].to_numpy().tolist() == [
        [4, "duplicate_shoe_id"]]


def test_an_ostrc_answer_outside_both_codings_is_blanked_not_fatal(tmp_path: Path) -> None:
    # one ostrc_q2 = 5 used to abort the whole build (in exposures, naming ostrc_q1 and no
    # file or row); answers must be option numbers 1-4 or OSTRC-O2 scores 0, 8, 17, 25
    (tmp_path / "runners.csv").write_text("runner_id,cohort\nR1,A\n", encoding="utf-8")
    (tmp_path / "runs.csv").write_text("runner_id,date,distance_km\nR1,2024-01-01,5\n",
                                       encoding="utf-8")
    (tmp_path / "pain.csv").write_text(
        "runner_id,date,pain,ostrc_q1,ostrc_q2,ostrc_q3,ostrc_q4\n"
        "R1,2024-01-07,2,2,5,1,1\n"  # line 2: q2 = 5 is blanked, the report kept
        "R1,2024-01-14,1,2,\"2,5\",1,-1\n"  # line 3: 2.5 (decimal comma) and -1 blanked
        "R1,2024-01-21,0,1,1,1,1\n",  # line 4: valid options
        encoding="utf-8")
    result = clean_tables(read_dataset(tmp_path), today=TODAY)
    pain = result.pain.set_index("source_line")
    assert pain.index.tolist() == [2, 3, 4]
    assert pain.loc[2, ["ostrc_q1", "ostrc_q3", "ostrc_q4"]].tolist() == [2.0, 1.0, 1.0]
    assert pain.loc[[2, 3], "ostrc_q2"].isna().all() and pd.isna(pain.loc[3, "ostrc_q4"])
    assert pain.loc[4, OSTRC_COLUMNS].tolist() == [1.0, 1.0, 1.0, 1.0]
    entry = result.report["files"]["pain.csv"]
    assert (entry["fixed"], entry["fixes"]) == (2, {"invalid_optional_blanked": 2})
    assert result.quarantine.empty


def test_a_clean_table_failing_its_contract_is_a_bug_with_a_traceback(
        messy: CleanResult) -> None:
    # a value a rule let through is a bug in a rule, not a user error: it must not become a
    # one-line KneeloadError (which the CLI prints without traceback)
    from analysis.clean import _checked

    bad_runs = messy.runs.assign(distance_km=messy.runs["distance_km"] + 100.0)
    with pytest.raises(CleanContractBug, match=r"^bug in analysis\.clean.*runs") as err:
        _checked(messy.runners, bad_runs, messy.pain, messy.shoes)
    assert not isinstance(err.value, KneeloadError)
    assert err.value.__cause__ is not None  # the contract check's error stays attached
    assert len(_checked(messy.runners, messy.runs, messy.pain, messy.shoes)) == 4


# --- one definition per computed value (issue 11) --------------------------------------------
def _former_same_day_rule(runner: list[str], day: list[int], pain: list[float]) -> list[bool]:
    """The rule as clean wrote it before issue 11 (sort by pain, then row; keep the last)."""
    df = pd.DataFrame({"runner_id": runner, "_date": day, "_pain": pain})
    ranked = df.assign(_order=range(len(df))).sort_values(["_pain", "_order"], kind="stable")
    return ranked.duplicated(["runner_id", "_date"], keep="last").reindex(df.index).tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("AB"), st.integers(0, 3),
                          st.sampled_from([0.0, 2.0, 2.0, 5.0, 10.0])), max_size=25))
def test_same_day_rule_is_the_former_clean_rule(rows: list[tuple[str, int, float]]) -> None:
    from analysis.clean import superseded_same_day

    runner, day, pain = ([r[i] for r in rows] for i in range(3))
    got = superseded_same_day(pd.Series(runner, dtype="str"), pd.Series(day, dtype="int64"),
                              pd.Series(pain, dtype="float64"))
    assert got.tolist() == _former_same_day_rule(runner, day, pain)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABC"), st.integers(0, 3),
                          st.sampled_from([0.0, 2.0, 2.0, 5.0, 10.0])), max_size=25),
       st.booleans(), st.sampled_from(["days", "midnight", "time of day"]))
def test_same_day_rule_in_runner_day_order_is_the_former_rule(
        rows: list[tuple[str, int, float]], ordered: bool, kind: str) -> None:
    """Reports already in runner-then-day order take the path without a hash
    (``_ordered_pair_key``); day numbers, midnight datetimes and datetimes with a time of
    day (the hash path: whole values compared) all give the former rule's answer."""
    from analysis.clean import _ordered_pair_key, superseded_same_day

    if ordered:
        rows = sorted(rows, key=lambda r: (r[0], r[1]))
    runner, day, pain = ([r[i] for r in rows] for i in range(3))
    if kind == "days":
        days = pd.Series(day, dtype="int64")
        former_days: list = day
    else:
        hours = [7 * (i % 2) if kind == "time of day" else 0 for i in range(len(day))]
        stamps = [pd.Timestamp("2025-03-01") + pd.Timedelta(days=d, hours=h)
                  for d, h in zip(day, hours, strict=True)]
        days = pd.Series(stamps, dtype="datetime64[us]")
        former_days = stamps
    got = superseded_same_day(pd.Series(runner, dtype="str"), days,
                              pd.Series(pain, dtype="float64"))
    assert got.tolist() == _former_same_day_rule(runner, former_days, pain)
    codes = pd.factorize(pd.Series(runner, dtype="str"))[0].astype("int64")
    fast = _ordered_pair_key(codes, days)
    if ordered and kind != "time of day" and len(rows) >= 2:
        assert fast is not None  # the path without a hash was taken
    if kind == "time of day" and any(h for h in hours):
        assert fast is None


def test_ordered_pair_key_refuses_what_it_cannot_key() -> None:
    from analysis.clean import _ordered_pair_key
    from analysis.keys import MISSING_DAY

    codes = np.array([0, 0, 1], dtype=np.int64)
    assert _ordered_pair_key(codes, pd.Series([1, 2, 1])) is not None
    assert _ordered_pair_key(codes, pd.Series([2, 1, 1])) is None  # not in order
    assert _ordered_pair_key(np.array([-1, 0, 1]), pd.Series([1, 2, 1])) is None  # missing ID
    assert _ordered_pair_key(codes, pd.Series([MISSING_DAY, 2, 1])) is None  # key overflow
    assert _ordered_pair_key(codes, pd.Series(pd.to_datetime(["2025-01-01", None,
                                                              "2025-01-02"]))) is None
    assert _ordered_pair_key(codes, pd.Series([1.0, 2.0, 1.0])) is None  # not day numbers


def _brute_force_two_device(runs: pd.DataFrame) -> set[int]:
    """Every pair checked (O(n^2)): the later record of an overlapping, close pair."""
    from analysis.clean import TWO_DEVICE_DISTANCE_TOLERANCE

    dup = set()
    rows = list(runs.itertuples(index=False))
    for i, a in enumerate(rows):
        for b in rows[:i]:
            end_a = a.start + pd.Timedelta(minutes=a.dur)
            end_b = b.start + pd.Timedelta(minutes=b.dur)
            if a.runner_id == b.runner_id and a.start <= end_b and b.start <= end_a and \
                    abs(a.km - b.km) <= TWO_DEVICE_DISTANCE_TOLERANCE * max(a.km, b.km):
                dup.add(i)
    return dup


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("AB"), st.integers(0, 3 * 24 * 6),
                          st.sampled_from([10.0, 10.2, 10.6, 5.0]),
                          st.sampled_from([0.0, 20.0, 60.0, 600.0])), min_size=2, max_size=14))
@example([("A", 0, 10.0, 600.0), ("A", 6, 5.0, 20.0), ("A", 30, 10.2, 20.0)])  # long covers two
def test_two_device_candidate_filter_loses_no_pair(
        rows: list[tuple[str, int, float, float]]) -> None:
    """The overlap pre-filter of _two_device (issue 11 speed-up) keeps every merged pair."""
    from analysis.clean import _two_device

    start = pd.Timestamp("2024-01-01") + pd.to_timedelta([r[1] * 10 for r in rows], unit="min")
    runs = pd.DataFrame({"runner_id": [r[0] for r in rows], "_start": start.astype(
        "datetime64[us]"), "_distance_km": [r[2] for r in rows],
        "_duration_min": [r[3] for r in rows], "_has_time": True})
    got = set(np.flatnonzero(_two_device(runs).to_numpy()))
    ref = _brute_force_two_device(runs.rename(columns={"_start": "start", "_distance_km": "km",
                                                       "_duration_min": "dur"}))
    assert got == ref


def test_readers_type_clean_columns_and_leave_broken_ones_as_text(tmp_path: Path) -> None:
    """A column whose every cell parses arrives typed (clean does not parse it again); one
    bad cell keeps the column text, so cleaning quarantines that cell as written."""
    (tmp_path / "runners.csv").write_text("runner_id,cohort\nR1,A\n", encoding="utf-8")
    (tmp_path / "pain.csv").write_text("runner_id,date,pain\nR1,2024-01-07,2\n",
                                       encoding="utf-8")
    (tmp_path / "runs.csv").write_text(
        "runner_id,date,distance_km,duration_min\n"
        "R1,2024-01-01 07:00,6.0,30\nR1,2024-01-02,ten,NA\n", encoding="utf-8")
    raw = read_dataset(tmp_path)
    assert raw.runs["date"].dtype.kind == "M" and raw.pain["pain"].dtype == "float64"
    assert raw.runs["duration_min"].tolist()[0] == 30.0  # "NA" is missing, not text
    assert raw.runs["date_has_time"].tolist() == [True, False]
    assert pd.api.types.is_string_dtype(raw.runs["distance_km"])  # "ten" keeps it text
    result = clean_tables(raw, today=TODAY)
    assert result.quarantine[["line", "value", "reason"]].to_numpy().tolist() == [
        [3, "ten", "distance_not_number"]]


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.sampled_from("xy")),
                     max_size=20), ordered=st.booleans())
def test_duplicates_found_on_a_coarse_key_are_all_the_duplicates(
        rows: list[tuple[int, int, str]], ordered: bool) -> None:
    """The pre-filter of the exact-duplicate rule (rows sharing runner and day, folded into
    one 64-bit key, or none when the file is in key order) loses no duplicate."""
    from analysis.clean import _duplicated_within, _shares_key

    rows = sorted(rows) if ordered else rows
    df = pd.DataFrame(rows, columns=["_runner_row", "day", "text"]).assign(
        _date=lambda d: pd.Timestamp("2024-01-01") + pd.to_timedelta(d["day"], unit="D"))
    shared = _shares_key(df, ["_runner_row", "_date"])
    assert (shared | ~df.duplicated(["_runner_row", "_date"], keep=False)).all()
    got = _duplicated_within(df, ["_runner_row", "_date", "text"], ["_runner_row", "_date"])
    assert got.tolist() == df.duplicated(["_runner_row", "_date", "text"]).tolist()


def test_a_shoe_started_after_its_first_run_is_moved_to_it(tmp_path: Path) -> None:
    # issue 12: a shoe start_date of 20 Jan with a first logged run on 3 Jan gave
    # shoe_age_days = -17; the start moves to 3 Jan (a fix with its code), the other shoe
    # (started before its first run, 1 Jan < 5 Jan) and a shoe without runs stay as written
    (tmp_path / "runners.csv").write_text("runner_id,cohort\nR1,A\n", encoding="utf-8")
    (tmp_path / "pain.csv").write_text("runner_id,date,pain\nR1,2024-01-21,2\n",
                                       encoding="utf-8")
    (tmp_path / "runs.csv").write_text(
        "runner_id,date,distance_km,shoe_id\n"
        "R1,2024-01-10,5,late\nR1,2024-01-03,6,late\nR1,2024-01-05,7,early\n",
        encoding="utf-8")
    (tmp_path / "shoes.csv").write_text(
        "shoe_id,runner_id,start_date,start_km\n"
        "late,R1,2024-01-20,0\nearly,R1,2024-01-01,50\nunused,R1,2024-02-01,0\n",
        encoding="utf-8")
    result = clean_tables(read_dataset(tmp_path), today=TODAY)
    starts = result.shoes.set_index("shoe_id")["start_date"]
    assert starts.to_dict() == {"late": pd.Timestamp("2024-01-03"),
                                "early": pd.Timestamp("2024-01-01"),
                                "unused": pd.Timestamp("2024-02-01")}
    shoes_file = result.report["files"]["shoes.csv"]
    assert shoes_file["fixes"] == {"shoe_start_after_first_run": 1}
    assert shoes_file["kept"] == 3 and shoes_file["fixed"] == 1
    assert any("1 shoe(s) had a start_date after their first logged run" in n
               for n in result.report["notes"])
    assert result.quarantine.empty


def test_the_control_character_check_agrees_with_its_regex_on_any_text_column():
    """clean._has_control skips the regex when every byte of a column is printable ASCII
    (ingest._io.printable_ascii); on random columns (printable, with C0/DEL/C1 controls, other
    non-ASCII text, missing cells, several chunks sharing one buffer, python-backed) it
    must flag exactly the cells the regex flags."""
    import numpy as np
    import pyarrow as pa

    from analysis.clean import CONTROL_CHARACTERS, _has_control

    rng = np.random.default_rng(17)
    alphabet = [chr(c) for c in range(0x20, 0x7F)]
    odd = ["\x00", "\x1f", "\x7f", "\x80", "\x9f", "\xa0", "ø", "\u200b", "\t", "\n"]
    for trial in range(300):
        n = int(rng.integers(0, 40))
        letters = alphabet + (odd[: int(rng.integers(0, len(odd) + 1))] if trial % 3 else [])
        cells = ["".join(rng.choice(letters, int(rng.integers(0, 6)))) for _ in range(n)]
        cells = [None if rng.random() < 0.1 else c for c in cells]
        if trial % 4 == 0 and n > 2:  # chunks that are slices of one array (one buffer)
            whole = pa.array(cells, type=pa.large_string())
            cut = int(rng.integers(1, n))
            arrow = pa.chunked_array([whole.slice(0, cut), whole.slice(cut)])
            series = pd.Series(pd.arrays.ArrowStringArray(arrow))
            series = series.astype("str")
        elif trial % 4 == 1:
            series = pd.Series(cells, dtype="string[python]")
        else:
            series = pd.Series(cells, dtype="str")
        expected = series.str.contains(CONTROL_CHARACTERS).fillna(False).astype(bool)
        got = _has_control(series)
        assert got.tolist() == expected.tolist(), (trial, cells)
    # a slice whose shared buffer holds a control character outside it: still no flag
    whole = pa.array(["ok", "b\x07d"], type=pa.large_string())
    sliced = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([whole.slice(0, 1)])))
    assert _has_control(sliced.astype("str")).tolist() == [False]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(-10**15, 10**15)), max_size=40))
def test_running_max_by_group_is_groupby_cummax(rows: list[tuple[int, int]]) -> None:
    """The lifted accumulate equals pandas' per-group cummax on groups in order, with values
    either side of zero and spans near the int64 fallback."""
    from analysis.clean import _running_max_by

    rows = sorted(rows, key=lambda r: r[0])
    group = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([r[1] for r in rows], dtype=np.int64)
    expected = pd.Series(values, dtype="int64").groupby(group, sort=False).cummax().to_numpy()
    assert _running_max_by(group, values).tolist() == expected.tolist()
    huge = np.array([-(2**61), 2**61, 0], dtype=np.int64)  # the lifted values would overflow
    assert _running_max_by(np.array([0, 1, 1]), huge).tolist() == [-(2**61), 2**61, 2**61]
