"""Cleaning rules: each reason code is triggered by a hand-written fixture row."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from analysis import schemas
from analysis.clean import (
    FIX_REASONS,
    MERGE_REASONS,
    QUARANTINE_COLUMNS,
    QUARANTINE_REASONS,
    CleanResult,
    ConservationError,
    clean_tables,
)
from analysis.ingest import read_dataset

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
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
    assert (row["column"], row["value"]) == ("distance_km", "ten")
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
