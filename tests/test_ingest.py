"""Ingest: canonical reader, bad-file errors, encodings and file variants."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from realdata import real_sample

from analysis import hrload, privacy
from analysis.clean import clean_tables
from analysis.errors import InputFileError, KneeloadError
from analysis.exposures import build_panel
from analysis.ingest import _io, garmin, lovdal, read_dataset, strava
from analysis.ingest.detect import detect_format
from analysis.ingest.fetch import FetchError, fetch_dataset, read_sums, verify_sha256
from analysis.pipeline import input_hashes

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
MESSY = FIXTURES / "canonical_messy"

RUNNERS = "runner_id,cohort\nR1,A\nR2,B\n"
RUNS = "runner_id,date,distance_km\nR1,2024-01-01,5.0\nR2,2024-01-02,7.5\n"
PAIN = "runner_id,date,pain\nR1,2024-01-07,2\n"


def write_dataset(folder: Path, **files: str | bytes) -> Path:
    contents = {"runners.csv": RUNNERS, "runs.csv": RUNS, "pain.csv": PAIN}
    contents.update({k.replace("_", ".", 1) if "." not in k else k: v
                     for k, v in files.items()})
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        if text is None:
            continue
        path = folder / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return folder


def test_canonical_values_as_read_with_provenance() -> None:
    raw = read_dataset(MESSY)
    assert raw.format == "canonical"
    assert raw.files == {"pain.csv": 9, "runners.csv": 7, "runs.csv": 20, "shoes.csv": 3}
    runs = raw.runs
    assert runs["source_line"].iloc[0] == 2
    assert runs["source_line"].iloc[-1] == 21
    assert runs.loc[runs["source_line"] == 4, "distance_km"].item() == "8,5"
    assert runs.loc[runs["source_line"] == 21, "source_issue"].item() == (
        "8 fields where the header has 7")
    assert (runs["source_file"] == "runs.csv").all()


def test_line_numbers_count_blank_lines_and_crlf(tmp_path: Path) -> None:
    runs = "runner_id,date,distance_km\r\n\r\nR1,2024-01-01,5\r\nR2,2024-01-02,6\r\n"
    raw = read_dataset(write_dataset(tmp_path, runs_csv=runs))
    assert raw.runs["source_line"].tolist() == [3, 4]
    assert raw.files["runs.csv"] == 2


def test_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="raw data folder not found"):
        read_dataset(tmp_path / "nope")
    write_dataset(tmp_path)
    (tmp_path / "pain.csv").unlink()
    with pytest.raises(InputFileError, match=r"missing file pain\.csv") as err:
        read_dataset(tmp_path)
    assert err.value.file.endswith("pain.csv")


def test_empty_file(tmp_path: Path) -> None:
    write_dataset(tmp_path, runs_csv="  \n\n")
    with pytest.raises(InputFileError, match="file is empty") as err:
        read_dataset(tmp_path)
    assert err.value.one_line() == "runs.csv: file is empty"


def test_missing_column_is_named_and_found_columns_listed(tmp_path: Path) -> None:
    write_dataset(tmp_path, runs_csv="runner_id,day,km\nR1,2024-01-01,5\n")
    with pytest.raises(InputFileError) as err:
        read_dataset(tmp_path)
    assert err.value.one_line() == (
        "runs.csv, column 'date': missing required column 'date' (also 'distance_km'); "
        "found columns: runner_id, day, km")


def test_unknown_delimiter_is_explained(tmp_path: Path) -> None:
    write_dataset(tmp_path, runs_csv=RUNS.replace(",", ":"))
    with pytest.raises(InputFileError) as err:
        read_dataset(tmp_path)
    assert err.value.one_line() == (
        "runs.csv, column 'runner_id': missing required column 'runner_id' (also 'date', "
        "'distance_km'); found columns: runner_id:date:distance_km (the header is one "
        "column: separate columns with commas; semicolon, tab and | are also recognised)")


@pytest.mark.parametrize("delim", [";", "\t", "|"])
def test_other_delimiters_are_detected(tmp_path: Path, delim: str) -> None:
    write_dataset(tmp_path, runs_csv=RUNS.replace(",", delim))
    raw = read_dataset(tmp_path)
    assert raw.runs["distance_km"].tolist() == [5.0, 7.5]  # readers emit typed numbers
    assert raw.file_info["runs.csv"].delimiter == delim


def test_encodings_are_tried_and_named(tmp_path: Path) -> None:
    latin = "runner_id,cohort\nR1,Göteborg\n".encode("latin-1")
    bom = b"\xef\xbb\xbf" + RUNS.encode("utf-8")
    raw = read_dataset(write_dataset(tmp_path, runners_csv=latin, runs_csv=bom))
    assert raw.runners["cohort"].tolist() == ["Göteborg"]
    assert raw.runs.columns[0] == "runner_id"  # BOM not glued to the first name
    assert raw.file_info["runners.csv"].encoding == "Latin-1"
    assert raw.file_info["runs.csv"].encoding == "UTF-8 with BOM"
    assert raw.file_info["pain.csv"].encoding == "UTF-8"
    assert "runners.csv: not valid UTF-8, read as Latin-1" in raw.notes
    utf16 = read_dataset(write_dataset(tmp_path / "u16", pain_csv=PAIN.encode("utf-16")))
    assert utf16.pain["pain"].tolist() == [2.0]
    assert utf16.file_info["pain.csv"].encoding == "UTF-16"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "HTML/XML page, not a CSV"),
        (b"PK\x03\x04\x14\x00\x06\x00", "zip archive"),
        (b"runner_id\x00\x01\x02\xff\xfe", "binary file, not a CSV"),
    ],
)
def test_html_and_binary_pretending_to_be_csv(tmp_path: Path, content: bytes,
                                              message: str) -> None:
    write_dataset(tmp_path, runs_csv=content)
    with pytest.raises(InputFileError, match=message) as err:
        read_dataset(tmp_path)
    assert "\n" not in err.value.one_line()
    assert err.value.file == "runs.csv"


def test_xlsx_and_parquet_variants(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path, runs_csv=None)
    (folder / "runs.csv").unlink(missing_ok=True)
    frame = pd.DataFrame({"runner_id": ["R1", "R2"],
                          "date": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                          "distance_km": [5.0, 7.5]})
    frame.to_parquet(folder / "runs.parquet")
    shoes = pd.DataFrame({"shoe_id": ["S1"], "runner_id": ["R1"],
                          "start_date": pd.to_datetime(["2023-12-01"]), "start_km": [12.5]})
    shoes.to_excel(folder / "shoes.xlsx", index=False)
    raw = read_dataset(folder)
    assert raw.shoes[["start_date", "start_km", "source_line"]].to_numpy().tolist() == [
        [pd.Timestamp("2023-12-01"), 12.5, 2]]
    assert raw.runs["date"].tolist() == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")]
    assert raw.runs["distance_km"].tolist() == [5.0, 7.5]
    assert raw.runs["source_line"].tolist() == [2, 3]
    assert raw.files["runs.parquet"] == 2


def test_two_variants_of_one_table_are_ambiguous(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path)
    shutil.copy(folder / "runs.csv", folder / "runs.txt")
    with pytest.raises(InputFileError, match="more than one file for table 'runs'"):
        read_dataset(folder)


# --- Strava ------------------------------------------------------------------------------
STRAVA = FIXTURES / "strava_export"
TODAY = date(2025, 12, 31)


def test_strava_export_hand_checked() -> None:
    raw = read_dataset(STRAVA, timezone="Europe/Amsterdam")
    assert raw.format == "strava"
    assert raw.notes[0].startswith("format 'strava' chosen automatically: alice/activities.csv")
    assert raw.files == {"alice/activities.csv": 7, "bob/activities.csv": 3, "pain.csv": 2,
                         "runners.csv": 2}
    assert "Activity Name" not in raw.runs.columns  # free text is never read
    assert not raw.runs.isin(["with Bob in the park"]).any().any()
    clean = clean_tables(raw, today=TODAY)
    runs = clean.runs.set_index(["source_file", "source_line"])
    a2 = runs.loc[("alice/activities.csv", 2)]
    # 06:00 UTC = 08:00 in Amsterdam (CEST); 10004.5 m; Moving Time 2950 s
    assert a2["date"] == pd.Timestamp("2025-06-16")
    assert a2["distance_km"] == pytest.approx(10.0045)
    assert a2["duration_min"] == pytest.approx(2950 / 60, abs=1e-4)
    assert a2["shoe_id"] == "Pegasus 40"
    # 22:30 UTC on Jun 17 is 00:30 on Jun 18 in Amsterdam; no metres -> display km (6.00)
    a4 = runs.loc[("alice/activities.csv", 4)]
    assert (a4["date"], a4["distance_km"], a4["rpe"]) == (pd.Timestamp("2025-06-18"), 6.0, 7.0)
    # bob's account shows miles (9994 m / 6.21 = 1609.3 m per unit): 3.11 mi -> km
    assert runs.loc[("bob/activities.csv", 3), "distance_km"] == pytest.approx(3.11 * 1.609344)
    got = {(f, int(ln)): r for f, ln, r in
           clean.quarantine[["file", "line", "reason"]].itertuples(index=False)}
    assert got == {
        ("alice/activities.csv", 3): "two_device_duplicate",  # 06:01, 10.20 vs 10.0045 km
        ("alice/activities.csv", 5): "non_running_activity",  # Ride
        ("alice/activities.csv", 6): "unparseable_date",  # 18/06/2025 18:00
        ("alice/activities.csv", 7): "non_running_activity",  # Walk
        ("alice/activities.csv", 8): "pace_too_fast",  # 10 km in 20 min moving
        ("bob/activities.csv", 4): "future_date",
    }
    assert clean.report["files"]["bob/activities.csv"]["fixes"] == {"metres_to_km": 1,
                                                                    "miles_to_km": 1}


def test_strava_utc_dates_default_to_utc_days() -> None:
    clean = clean_tables(read_dataset(STRAVA), today=TODAY)
    row = clean.runs.set_index(["source_file", "source_line"]).loc[("alice/activities.csv", 4)]
    assert row["date"] == pd.Timestamp("2025-06-17")  # 22:30 UTC stays on the 17th


def test_strava_display_unit_inference() -> None:
    display = pd.Series([6.21, 3.0, 0.0])
    metres = pd.Series([9994.0, 4828.0, 0.0])
    assert strava.display_unit(display, metres) == "mi"
    assert strava.display_unit(display, metres * 1000 / 1609.344) == "km"
    assert strava.display_unit(display, metres * 3) is None  # neither: caller assumes km
    assert strava.display_unit(pd.Series([1.0]), pd.Series([float("nan")])) is None


# --- Garmin ------------------------------------------------------------------------------
GARMIN = FIXTURES / "garmin_export"


def test_garmin_export_hand_checked() -> None:
    raw = read_dataset(GARMIN)
    assert raw.format == "garmin"
    assert raw.files == {"(derived runners)": 1, "carol/Activities.csv": 7}
    assert raw.runners["cohort"].tolist() == ["all"]
    clean = clean_tables(raw, today=TODAY)
    assert clean.runs["distance_km"].tolist() == [12.4, 5.0]
    # Moving Time 01:03:30 = 63.5 min; Treadmill: Moving Time "--" -> Time 00:30:00
    assert clean.runs["duration_min"].tolist() == [63.5, 30.0]
    got = {int(ln): (col, val, r) for ln, col, val, r in
           clean.quarantine[["line", "column", "value", "reason"]].itertuples(index=False)}
    assert got[3][2] == got[6][2] == "non_running_activity"  # Cycling, Strength Training
    assert got[5][2] == got[7][2] == "missing_value"  # "--" and "NaN" distances
    # "1,001.00": the reader types the column, the audit shows the number's shortest form
    assert got[8] == ("distance_km", "1001", "distance_over_daily_max")


def test_garmin_miles_account() -> None:
    clean = clean_tables(read_dataset(GARMIN, format="garmin", distance_unit="mi"),
                         today=TODAY)
    assert clean.runs["distance_km"].tolist() == pytest.approx([12.4 * 1.609344,
                                                                5.0 * 1.609344])
    assert clean.report["files"]["carol/Activities.csv"]["fixes"] == {"miles_to_km": 2}


def test_garmin_cell_parsers() -> None:
    values = pd.Series(["1,684", "1,001.50", "8,5", "12", pd.NA], dtype="str")
    assert garmin.strip_thousands(values).tolist()[:4] == ["1684", "1001.50", "8,5", "12"]
    times = pd.Series(["01:05:09", "00:08:12.5", "42:30", "--"], dtype="str")
    minutes = pd.to_numeric(garmin.hms_to_minutes(times))
    assert minutes.tolist()[:3] == pytest.approx([65.15, 8 + 12.5 / 60, 42.5])
    assert pd.isna(minutes.iloc[3])


# --- wide pain diary ---------------------------------------------------------------------
def test_wide_diary_with_week_columns() -> None:
    raw = read_dataset(FIXTURES / "diary")
    assert raw.format == "diary"
    assert "name" not in raw.pain.columns and "notes" not in raw.pain.columns
    clean = clean_tables(raw, today=TODAY)
    # week N of a diary starting on day S is reported on S + 7N - 1
    assert [(r, d.strftime("%Y-%m-%d"), p) for r, d, p in
            clean.pain[["runner_id", "date", "pain"]].itertuples(index=False)] == [
        ("D1", "2024-01-07", 2.0), ("D1", "2024-01-21", 4.0), ("D2", "2024-01-14", 0.0)]
    q = clean.quarantine.set_index("column")
    assert q.loc["week_2", ["line", "value", "reason"]].tolist() == [3, "12",
                                                                     "pain_out_of_range"]
    assert q.loc["week_3", "reason"] == "pain_not_number"
    assert clean.report["files"]["pain_diary.csv"]["read"] == 5  # non-empty cells


def test_wide_diary_with_date_columns(tmp_path: Path) -> None:
    write_dataset(tmp_path, pain_csv=None)
    (tmp_path / "pain_diary.csv").write_text(
        "runner_id,2024-01-07,2024-01-14\nR1,1,\nR2,,3\n", encoding="utf-8")
    clean = clean_tables(read_dataset(tmp_path), today=TODAY)
    assert clean.pain[["runner_id", "pain"]].to_numpy().tolist() == [["R1", 1.0], ["R2", 3.0]]
    assert clean.pain["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-07", "2024-01-14"]


def test_wide_diary_without_start_date_is_an_error(tmp_path: Path) -> None:
    write_dataset(tmp_path, pain_csv=None)
    (tmp_path / "pain_diary.csv").write_text("runner_id,week_1\nR1,2\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="no start_date column"):
        read_dataset(tmp_path, format="diary")


# --- Lövdal 2021 -------------------------------------------------------------------------
def lovdal_file(folder: Path, rows: list[tuple[int, int, int]],
                km: dict[tuple[int, int], float], *, override: dict | None = None) -> Path:
    """Write a day-approach file: rows are (athlete, Date, injury); block k of a row at Date
    d holds day d-6+k of ``km`` (0 km when absent); ``override`` patches single cells."""
    features = list(lovdal.FEATURES)
    header = [f"{f}{s}" for s in lovdal.BLOCK_SUFFIXES for f in features]
    header += ["Athlete ID", "injury", "Date"]
    lines = [",".join(header)]
    for athlete, day, injury in rows:
        cells = []
        for k in range(7):
            d = day - 6 + k
            dist = km.get((athlete, d), 0.0)
            ran = dist > 0
            values = {"nr. sessions": float(ran), "total km": dist, "km Z3-4": 0.0,
                      "km Z5-T1-T2": 0.0, "km sprinting": 0.0, "strength training": 0.0,
                      "hours alternative": 0.0,
                      "perceived exertion": 0.1 if ran else -0.01,
                      "perceived trainingSuccess": 0.0 if ran else -0.01,
                      "perceived recovery": 0.17 if ran else -0.01}
            for f in features:
                key = (athlete, day, f"{f}{lovdal.BLOCK_SUFFIXES[k]}")
                cells.append(str((override or {}).get(key, values[f])))
        cells += [str(athlete), str(injury), str(day)]
        lines.append(",".join(cells))
    path = folder / "day_approach_maskedID_timeseries.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_lovdal_rebuilds_one_daily_series_from_the_newest_block(tmp_path: Path) -> None:
    # athlete 0: rows for Dates 0, 1, 2 and 5 (days 3-4 only in the Date-5 row's blocks);
    # athlete 7: one row, injured. km on day d of athlete 0 is 10 + d on odd days.
    km = {(0, d): 10.0 + d for d in range(-6, 6) if d % 2}
    km[(7, 0)] = 12.0
    override = {(0, 5, "total km.3"): 99.0}  # an older block disagreeing with Date 2's .6
    lovdal_file(tmp_path, [(0, 0, 0), (0, 1, 0), (0, 2, 0), (0, 5, 0), (7, 0, 1)], km,
                override=override)
    raw = read_dataset(tmp_path)
    assert raw.format == "lovdal"
    clean = clean_tables(raw, today=TODAY)
    a0 = clean.runs[clean.runs["runner_id"] == "lovdal-0"]
    day = (a0["date"] - pd.Timestamp("2012-01-01")).dt.days
    # odd days -5..5 (d = -6..5 covered; even days have 0 km and are not runs)
    assert dict(zip(day, a0["distance_km"], strict=True)) == {
        d: 10.0 + d for d in range(-5, 6, 2)}
    assert 99.0 not in a0["distance_km"].tolist()  # Date 2's own .6 block wins for day 2
    assert a0["x_perceived_exertion"].tolist() == [0.1] * 6
    # the sentinel -0.01 never reaches a clean table
    assert not (clean.runs.filter(like="x_perceived") < 0).any().any()
    pain = clean.pain.set_index("runner_id")
    assert pain.loc["lovdal-7", "pain"] == 10.0  # injury 1 -> pain 10
    assert (clean.pain.loc[clean.pain["runner_id"] == "lovdal-0", "pain"] == 0).all()
    runners = clean.runners.set_index("runner_id")
    assert runners.loc["lovdal-0", "follow_up_start"] == pd.Timestamp("2012-01-01")
    assert runners.loc["lovdal-0", "follow_up_end"] == pd.Timestamp("2012-01-06")
    assert set(runners["cohort"]) == {"lovdal2021"}
    report = clean.report["files"]["day_approach_maskedID_timeseries.csv"]
    assert report["lines"] == 5
    # runs: athlete 0 six odd days, athlete 7 one day; pain: one per row
    assert report["read"] == report["kept"] == 6 + 1 + 5


def test_a_lovdal_rest_day_written_with_a_decimal_comma_is_a_rest_day(tmp_path: Path) -> None:
    # review: the reader decided "not a run" with its own parser ("0,0" -> NaN, so a run),
    # and cleaning then read 0.0 with the decimal-comma rule and quarantined it as
    # distance_not_positive; both now read numbers by to_number
    km = {(1, d): 5.0 for d in range(4, 18) if d % 3}
    lovdal_file(tmp_path, [(1, 10, 0), (1, 17, 1)], km,
                override={(1, 17, "total km.6"): '"0,0"', (1, 17, "total km.5"): '"5,5"'})
    clean = clean_tables(read_dataset(tmp_path), today=TODAY)
    day = (clean.runs["date"] - pd.Timestamp("2012-01-01")).dt.days
    ran = dict(zip(day, clean.runs["distance_km"], strict=True))
    assert 17 not in ran and ran[16] == 5.5  # day 17 (block .6 of Date 17) rests
    assert ran == {d: (5.5 if d == 16 else 5.0) for d in range(4, 17) if d % 3}
    assert clean.quarantine.empty
    report = clean.report["files"]["day_approach_maskedID_timeseries.csv"]
    assert report["read"] == report["kept"] + report["merged"] + report["quarantined"]


def test_lovdal_without_day_file(tmp_path: Path) -> None:
    (tmp_path / "week_approach_maskedID_timeseries.csv").write_text(
        "total kms,Athlete ID,injury,Date\n1,0,0,0\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="no Lövdal day-approach file"):
        read_dataset(tmp_path, format="lovdal")


# --- auto detection ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("folder", "expected"),
    [("canonical_messy", "canonical"), ("strava_export", "strava"),
     ("garmin_export", "garmin"), ("diary", "diary")],
)
def test_auto_detection_says_what_it_chose(folder: str, expected: str) -> None:
    fmt, why = detect_format(FIXTURES / folder)
    assert fmt == expected
    assert why


def test_auto_detection_fails_with_the_files_seen(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"cannot tell the format.*found notes\.txt"):
        read_dataset(tmp_path)
    with pytest.raises(KneeloadError, match="unknown format 'fitbit'"):
        read_dataset(tmp_path, format="fitbit")


# --- pseudonymisation --------------------------------------------------------------------
SALT = "test-salt-not-secret-0123456789"


def test_pseudonymise_hashes_ids_consistently_and_drops_free_text() -> None:
    plain = read_dataset(STRAVA)
    raw = read_dataset(STRAVA, pseudonymise=True, salt=SALT)
    expected = privacy.pseudonym("alice", salt=SALT)
    assert expected in set(raw.runners["runner_id"])
    assert set(raw.runs["runner_id"]) == set(raw.runners["runner_id"])
    assert "alice" not in " ".join(raw.files) + " ".join(raw.notes)
    assert f"{expected}/activities.csv" in raw.files
    shoes = set(raw.runs["shoe_id"].dropna())
    assert shoes == {"s-" + privacy.pseudonym("Pegasus 40", salt=SALT)[2:],
                     "s-" + privacy.pseudonym("Commuter bike", salt=SALT)[2:]}
    assert set(raw.runs.columns) <= set(plain.runs.columns)
    other = read_dataset(STRAVA, pseudonymise=True, salt=SALT + "x")
    assert set(other.runners["runner_id"]).isdisjoint(raw.runners["runner_id"])
    clean = clean_tables(raw, today=TODAY)
    assert len(clean.runs) == 4  # same cleaning outcome as without pseudonyms
    assert clean.quarantine["file"].str.contains("alice").sum() == 0


def test_pseudonymise_drops_unknown_columns_and_needs_a_salt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dataset(tmp_path, runs_csv="runner_id,date,distance_km,comment\n"
                                     "R1,2024-01-01,5,ran with Jane Doe\n")
    raw = read_dataset(tmp_path, pseudonymise=True, salt=SALT)
    assert "comment" not in raw.runs.columns
    monkeypatch.delenv("KNEELOAD_ID_SALT", raising=False)
    with pytest.raises(KneeloadError, match="needs a secret salt: set KNEELOAD_ID_SALT"):
        read_dataset(tmp_path, pseudonymise=True)
    monkeypatch.setenv("KNEELOAD_ID_SALT", SALT)
    assert read_dataset(tmp_path, pseudonymise=True).runs["runner_id"].tolist() == [
        privacy.pseudonym("R1", salt=SALT)]


# --- fetch -------------------------------------------------------------------------------
def test_fetch_offline_is_one_line(tmp_path: Path) -> None:
    # port 9 (discard) on the loopback interface: connection refused, no network needed
    with pytest.raises(FetchError) as err:
        fetch_dataset("lovdal2021", tmp_path / "lovdal", base_url="http://127.0.0.1:9",
                      timeout_s=5)
    line = err.value.one_line()
    assert "\n" not in line
    assert line.startswith("cannot download the lovdal2021 file list from 127.0.0.1:9")
    assert "https://doi.org/10.34894/UWU9PV" in line
    assert not (tmp_path / "lovdal").exists()  # nothing written


def test_sha256_verification_on_a_local_file(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"abc")
    known = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2
    assert verify_sha256(path, known.upper()) == known
    with pytest.raises(FetchError, match=f"x.csv: sha256 mismatch: expected {'0' * 64}"):
        verify_sha256(path, "0" * 64)
    (tmp_path / "SHA256SUMS").write_text(f"{known}  x.csv\n", encoding="utf-8")
    assert read_sums(tmp_path) == {"x.csv": known}
    with pytest.raises(KneeloadError, match="unknown dataset 'nope'"):
        fetch_dataset("nope", tmp_path)


# --- real samples (shared folder, never copied into the repo) ----------------------------
@pytest.mark.real_data
def test_real_strava_sample() -> None:
    folder = real_sample("formats", "strava")
    before = input_hashes(folder)
    assert before["activities_sample.csv"] == (  # README: bytes unchanged from the source
        "842d26321e5103466ba8f643594af2cce3a5d2363bcb5621677957ef6485e98a")
    clean = clean_tables(read_dataset(folder), today=TODAY)
    report = clean.report["files"]["activities_sample.csv"]
    # README: 17 Run, 21 Ride and 7 Hike
    assert (report["read"], report["kept"], report["quarantined"]) == (45, 17, 28)
    assert report["by_reason"] == {"non_running_activity": 28}
    reference = pd.read_csv(folder / "activities_sample.csv")  # independent parse
    runs_ref = reference[reference["Activity Type"] == "Run"]
    assert clean.runs["distance_km"].to_numpy() == pytest.approx(
        runs_ref["Distance.1"].to_numpy() / 1000)
    assert clean.runs["duration_min"].to_numpy() == pytest.approx(
        runs_ref["Moving Time"].to_numpy() / 60)
    assert clean.runs["date"].min() == pd.Timestamp("2025-07-14")
    assert clean.runs["date"].max() <= pd.Timestamp("2025-08-25")
    assert input_hashes(folder) == before


@pytest.mark.real_data
def test_real_garmin_sample() -> None:
    folder = real_sample("formats", "garmin_connect")
    before = input_hashes(folder)
    raw = read_dataset(folder)
    # CRLF handled: every Date cell parsed, so the reader emits the column typed
    assert raw.runs["date"].dtype == "datetime64[us]"
    clean = clean_tables(raw, today=TODAY)
    report = clean.report["files"]["Activities.csv"]
    # README: 160 activities, Running 76
    assert (report["read"], report["kept"], report["quarantined"]) == (160, 76, 84)
    reference = pd.read_csv(folder / "Activities.csv")
    runs_ref = reference[reference["Activity Type"] == "Running"]
    assert clean.runs["distance_km"].to_numpy() == pytest.approx(
        runs_ref["Distance"].astype(float).to_numpy())
    assert clean.runs["date"].max() == pd.Timestamp("2024-10-17")
    assert input_hashes(folder) == before


@pytest.mark.real_data
def test_real_lovdal_excerpt() -> None:
    folder = real_sample("lovdal2021")
    before = input_hashes(folder)
    raw = read_dataset(folder)
    assert raw.format == "lovdal"
    assert any("week file ignored" in n for n in raw.notes)
    clean = clean_tables(raw, today=TODAY)
    reference = pd.read_csv(folder / "day_approach_maskedID_timeseries.EXCERPT.csv")
    # every row's newest block (.6) is that Date's value in the rebuilt series
    by_day = dict(zip((clean.runs["date"] - lovdal.LOVDAL_EPOCH).dt.days,
                      clean.runs["distance_km"], strict=True))
    for day, km in zip(reference["Date"], reference["total km.6"], strict=True):
        assert by_day.get(day, 0.0) == km
    # the first row's older blocks give days -6..-1
    first = reference.iloc[0]
    for k, suffix in enumerate(lovdal.BLOCK_SUFFIXES[:-1]):
        assert by_day.get(k - 6, 0.0) == first[f"total km{suffix}"]
    assert len(clean.pain) == 47 and (clean.pain["pain"] == 0).all()  # no injuries
    assert sum(reference["total km.6"] > 0) + sum(
        first[f"total km{s}"] > 0 for s in lovdal.BLOCK_SUFFIXES[:-1]) == len(clean.runs)
    assert input_hashes(folder) == before


@pytest.mark.real_data
@pytest.mark.parametrize("parts", [("formats", "strava"), ("formats", "garmin_connect"),
                                   ("lovdal2021",)])
def test_real_samples_reach_the_exposure_panel(parts: tuple[str, ...]) -> None:
    clean = clean_tables(read_dataset(real_sample(*parts)), today=TODAY)
    built = build_panel(clean.runs, clean.runners, clean.pain, clean.shoes)
    assert len(built.panel) == len(clean.pain)
    assert built.daily["runner_id"].nunique() == len(clean.runners)


# --- the two CSV paths -------------------------------------------------------------------
def _as_lists(parsed: _io.CsvCells) -> tuple:
    cells = parsed.cells.astype(object).where(parsed.cells.notna(), None)
    return (parsed.header, cells.to_numpy().tolist(), parsed.lines.tolist(),
            parsed.issues.astype(object).where(parsed.issues.notna(), None).tolist())


@pytest.mark.parametrize("block", [1, 2, 3, 7, 1 << 24])
def test_the_one_line_check_counts_quotes_per_line_in_any_block_size(block, monkeypatch):
    """_one_line_records (scanned in SCAN_BLOCK_BYTES blocks) says True exactly when there
    is no lone CR and every line holds an even number of quotes, whatever the block size."""
    import random

    import numpy as np

    monkeypatch.setattr(_io, "SCAN_BLOCK_BYTES", block)
    rng = random.Random(block)
    for _ in range(2000):
        data = bytes(rng.choice(b'ab,"\n\n\r') for _ in range(rng.randint(0, 40)))
        lone_cr = data.count(b"\r") != data.count(b"\r\n")
        expected = not lone_cr and all(line.count(b'"') % 2 == 0
                                       for line in data.split(b"\n"))
        assert _io._one_line_records(data, np.frombuffer(data, dtype=np.uint8)) is expected, \
            data


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list('ab1 ,;"\n\r\t')), min_size=1,
                    max_size=60))
def test_fast_and_careful_csv_paths_agree(text: str) -> None:
    fast = _io._fast_split(text, delimiter=",")
    if fast is None:  # the careful path alone decides
        return
    careful = _io.careful_split(text, delimiter=",", file="x.csv")
    assert _as_lists(fast) == _as_lists(careful)


@pytest.mark.parametrize("pad", range(0, 8))
def test_a_quoted_line_break_at_a_read_block_boundary_is_never_split(pad) -> None:
    """A record whose quoted value spans two lines, behind a quote inside a field (each line
    holds two quotes), placed at each offset just past pyarrow's 1 MiB read block: the fast
    path declines it and both paths give the careful path's one record with its issue
    (found by review: at offsets 0-5 the fast path returned two clean rows)."""
    body = "x,y\n" + "1,2\n" * ((1 << 20) // 4 - 5) + "1," + "1" * pad + "\n"
    text = body + 'a"b,"c\nd",e"f\n' + "1,2\n" * 10
    assert _io._fast_split(text, delimiter=",") is None
    parsed = _io.parse_csv_text(text, delimiter=",", file="x.csv")
    odd = parsed.cells[0] == 'a"b'
    assert odd.sum() == 1 and parsed.cells.loc[odd, 1].tolist() == ["c\nd"]
    assert parsed.issues[odd].tolist() == ["3 fields where the header has 2"]
    assert len(parsed.cells) == (1 << 20) // 4 - 5 + 1 + 1 + 10


@pytest.mark.parametrize("stray", ['3,"oops', 'a"b,"c'])
def test_a_stray_quote_far_before_the_next_quote_quarantines_one_line(stray) -> None:
    """A quote opened by mistake, with the next quote 160 KB later (the csv module's default
    field limit is 128 KiB): its line gets the unterminated-quote issue and every other line
    stays a record of its own (found by review: the whole file was "not a readable CSV")."""
    import csv

    limit = csv.field_size_limit(128 * 1024)  # the default, whatever ran before
    try:
        text = "x,y\n1,2\n" + stray + "\n" + "1,2\n" * 40_000 + '4,"fine"\n'
        parsed = _io.parse_csv_text(text, delimiter=",", file="x.csv")
    finally:
        csv.field_size_limit(max(limit, csv.field_size_limit()))
    assert len(parsed.cells) == 1 + 1 + 40_000 + 1
    assert parsed.lines.tolist() == list(range(2, 40_005))
    flagged = parsed.issues.notna().to_numpy()
    assert parsed.lines[flagged].tolist() == [3]
    assert parsed.issues[flagged].iloc[0].startswith(_io.UNTERMINATED_QUOTE)
    assert parsed.cells.iloc[-1].tolist() == ["4", "fine"]


def test_fast_path_is_taken_for_plain_files_and_not_for_quoted_newlines() -> None:
    plain = "a,b\n1,2\n\n3,4\n"
    assert _io._fast_split(plain, delimiter=",") is not None
    assert _io.parse_csv_text(plain, delimiter=",", file="x").lines.tolist() == [2, 4]
    quoted = 'a,b\n"x\ny",2\n3,4\n'
    assert _io._fast_split(quoted, delimiter=",") is None
    parsed = _io.parse_csv_text(quoted, delimiter=",", file="x")
    assert parsed.lines.tolist() == [2, 4]  # the record on lines 2-3 starts on line 2
    assert parsed.cells[0].tolist() == ["x\ny", "3"]


def test_lovdal_damaged_rows_are_quarantined_not_guessed(tmp_path: Path) -> None:
    km = {(0, d): 5.0 for d in range(-6, 3)}
    path = lovdal_file(tmp_path, [(0, 0, 0), (0, 1, 0), (0, 2, 0)], km)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] += ",extra"  # Date 1: one field too many
    cells = lines[3].split(",")
    cells[-3] = ""  # Date 2: Athlete ID missing
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    clean = clean_tables(read_dataset(tmp_path), today=TODAY)
    reasons = clean.quarantine.groupby("line")["reason"].apply(set).to_dict()
    assert reasons == {3: {"malformed_row"}, 4: {"missing_value"}}
    assert clean.pain["source_line"].tolist() == [2]
    report = clean.report["files"]["day_approach_maskedID_timeseries.csv"]
    assert report["read"] == report["kept"] + report["quarantined"]


# --- typed where they enter: the arrow and pandas typing paths (issue 11) -----------------
_DATE_CELLS = st.one_of(
    st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)).map(str),
    st.builds(lambda d, h, m, sep, sec: f"{d}{sep}{h:02d}:{m:02d}{sec}",
              st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 12, 31)),
              st.integers(0, 25), st.integers(0, 61), st.sampled_from([" ", "T"]),
              st.sampled_from(["", ":00", ":59", ":60", ".5", "Z", "+01:00"])),
    st.sampled_from(["", " ", "NA", "n/a", "--", "2024-02-30", "2024-1-7", "20240107",
                     "2024-01-07 06", "07/01/2024", "abc"]))
_NUMBER_CELLS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.integers(-1000, 1000).map(str),
    st.sampled_from(["", " 5 ", "NA", "nan", "inf", "-inf", "1e3", "+2", ".5", "5.", "2,5",
                     "abc", "None", "#N/A"]))


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.tuples(_DATE_CELLS, _NUMBER_CELLS), min_size=1, max_size=12))
def test_arrow_typing_gives_the_pandas_typing_frame(rows: list[tuple[str, str]]) -> None:
    """The fast path (pyarrow split, cells typed in arrow) and the careful path (csv module,
    typed in pandas) give the same frame, dtypes included, for dates and numbers of every
    shape: the arrow parsers only ever accept what pandas reads the same way."""
    text = "date,km\n" + "".join(f"{d},{n}\n" for d, n in rows)
    fast = _io.split_csv_bytes(text.encode("utf-8"), delimiter=",")
    if fast is None:
        return
    got = _io.typed_arrow_frame(fast, header=fast.header, file="x.csv", numbers=["km"],
                                dates=["date"], time_of_day="date")
    careful = _io.careful_split(text, delimiter=",", file="x.csv")
    ref = _io.typed_columns(
        _io.records_frame(careful, header=careful.header, file="x.csv"),
        numbers=["km"], dates=["date"], time_of_day="date")
    pd.testing.assert_frame_equal(got, ref, check_exact=True)


_LINE_ENDS = st.sampled_from(["\n", "\r\n"])
_TYPED_ROWS = st.lists(st.one_of(
    st.tuples(_NUMBER_CELLS, _NUMBER_CELLS, st.sampled_from(["", "x", " y ", "NA"])).map(
        lambda row: ",".join(f'"{c}"' if "," in c else c for c in row)),
    st.sampled_from(["", ",,", " , , ", '"","",""', "  "])), min_size=0, max_size=10)


@settings(max_examples=300, deadline=None)
@given(rows=_TYPED_ROWS, end=_LINE_ENDS, lead=st.sampled_from(["", "\n", "\n\n"]),
       last=st.booleans(), header=st.sampled_from(["km,hr,note", " KM , hr,note",
                                                   "km,km,note", "note,hr,km"]),
       probe=st.sampled_from([1, 12, 30, 1 << 20]), probes=st.integers(1, 4))
def test_number_columns_parsed_by_the_reader_give_the_text_read_frame(
        rows: list[str], end: str, lead: str, last: bool, header: str, probe: int,
        probes: int) -> None:
    """split_csv_bytes told which columns are numbers (pyarrow parses them as float64 while
    it splits; a column refused in the probe is read as text, a refusal after it means the
    text read) gives the frame, lines and dtypes of the text read cast afterwards, for
    number cells of every shape, blank and delimiter-only lines, CRLF, leading blank lines,
    a missing last line break and probes of every size."""
    text = lead + header + end + end.join(rows) + (end if last and rows else "")
    data = text.encode("utf-8")
    names = [_io.normalise_name(h) for h in header.split(",")]
    numbers = ["km", "hr"]
    before = _io.TYPED_PROBE_BYTES, _io.TYPED_PROBES
    _io.TYPED_PROBE_BYTES, _io.TYPED_PROBES = probe, probes
    try:
        typed = _io.split_csv_bytes(data, delimiter=",",
                                    number=lambda cell: _io.normalise_name(cell) in numbers)
    finally:
        _io.TYPED_PROBE_BYTES, _io.TYPED_PROBES = before
    plain = _io.split_csv_bytes(data, delimiter=",")
    assert (typed is None) == (plain is None)
    if plain is None:
        return
    assert typed.header == plain.header
    assert typed.lines.tolist() == plain.lines.tolist()
    frames = [_io.typed_arrow_frame(cells, header=names, file="x.csv", numbers=numbers)
              for cells in (typed, plain)]
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


def test_the_reader_parses_number_columns_and_reads_a_refused_one_as_text(monkeypatch) -> None:
    """A clean number column arrives as float64 from the reader; a column with ``NA`` or
    ``--`` in a probe (cells pyarrow's float parser refuses) is read as text and cast
    afterwards as before; a refused cell that no probe meets, or in a file no longer than
    one probe: the text read, every column."""
    monkeypatch.setattr(_io, "TYPED_PROBE_BYTES", 24)
    data = b"a,b,c,d,e\n1, 2,x,NA,--\n3,4.5 ,y,5,6\n" + b"7,8,z,9,10\n" * 5
    number = {"a", "b", "d", "e"}.__contains__
    cells = _io.split_csv_bytes(data, delimiter=",", number=number)
    assert [str(c.type) for c in cells.columns] == ["double", "double", "string", "string",
                                                    "string"]
    assert cells.columns[1].to_pylist() == [2.0, 4.5] + [8.0] * 5
    assert cells.lines.tolist() == list(range(2, 9))
    frame = _io.typed_arrow_frame(cells, header=cells.header, file="x.csv",
                                  numbers=["a", "b", "d", "e"])
    assert frame["d"].tolist()[1] == 5.0 and pd.isna(frame["d"].iloc[0])
    assert frame["e"].tolist()[1:3] == [6.0, 10.0] and pd.isna(frame["e"].iloc[0])
    # probes at the start, middle and end: a refused cell on the last line (no line break
    # after it) is found, its column read as text and the other still typed
    late = b"a,b\n" + b"1,2\n" * 10 + b"NA,3"
    cells = _io.split_csv_bytes(late, delimiter=",", number=number)
    assert [str(c.type) for c in cells.columns] == ["string", "double"]
    assert cells.columns[0].to_pylist()[-1] == "NA" and cells.lines.tolist()[-1] == 12
    # a refused cell between the probes: the text read, every column
    monkeypatch.setattr(_io, "TYPED_PROBES", 2)
    middle = b"a,b\n" + b"1,2\n" * 10 + b"NA,3\n" + b"1,2\n" * 10
    assert [str(c.type) for c in _io.split_csv_bytes(middle, delimiter=",",
                                                     number=number).columns] == ["string"] * 2
    monkeypatch.setattr(_io, "TYPED_PROBES", 3)
    assert [str(c.type) for c in _io.split_csv_bytes(middle, delimiter=",",
                                                     number=number).columns] == ["string",
                                                                                 "double"]
    monkeypatch.setattr(_io, "TYPED_PROBE_BYTES", 1 << 20)
    assert all(str(c.type) == "string"
               for c in _io.split_csv_bytes(data, delimiter=",", number=number).columns)


def test_a_date_column_is_typed_by_arrow_when_it_can_be() -> None:
    cells = _io.split_csv_bytes(b"date\n2024-01-07\n2024-01-07 06:30\n NA \n", delimiter=",")
    frame = _io.typed_arrow_frame(cells, header=["date"], file="x.csv", dates=["date"],
                                  time_of_day="date")
    assert frame["date"].dtype == "datetime64[us]"
    assert frame["date"].tolist()[:2] == [pd.Timestamp("2024-01-07"),
                                          pd.Timestamp("2024-01-07 06:30")]
    assert pd.isna(frame["date"].iloc[2])
    assert frame[_io.HAS_TIME].tolist() == [False, True, False]
    assert frame["source_line"].tolist() == [2, 3, 4]


def test_excel_and_parquet_cells_keep_their_types(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Typed Excel/Parquet columns are not written as text and parsed again."""
    from analysis.ingest import canonical

    folder = write_dataset(tmp_path, runs_csv=None)
    (folder / "runs.csv").unlink(missing_ok=True)
    pd.DataFrame({"runner_id": ["R1", "R2"],
                  "date": pd.to_datetime(["2024-01-01 06:30", "2024-01-02 00:00"]),
                  "distance_km": [5.0, 7.5], "duration_min": [30, 40]}).to_parquet(
        folder / "runs.parquet")
    pd.DataFrame({"runner_id": ["R1"], "date": pd.to_datetime(["2024-01-07"]),
                  "pain": [2]}).to_excel(folder / "pain.xlsx", index=False)
    (folder / "pain.csv").unlink()

    def no_text(frame: pd.DataFrame) -> pd.DataFrame:
        raise AssertionError(f"typed columns {list(frame.columns)} went through text")

    monkeypatch.setattr(canonical, "stringify", no_text)
    raw = read_dataset(folder)
    assert raw.runs["date_has_time"].tolist() == [True, False]
    assert raw.runs["duration_min"].tolist() == [30.0, 40.0]
    assert raw.pain[["date", "pain", "source_line"]].to_numpy().tolist() == [
        [pd.Timestamp("2024-01-07"), 2.0, 2]]


def test_mean_heart_rate_trimp_uses_runners_references(tmp_path: Path) -> None:
    """The mean-HR method by hand (Banister 1991; Edwards 1993): a man with HRrest 50 and
    HRmax 190 from runners.csv runs 40 min at a mean 148 bpm: HRr = 98/140 = 0.7, TRIMP =
    40 x 0.7 x 0.64 e^(1.92 x 0.7); 148/190 = 77.9 % HRmax is Edwards zone 3: 40 x 3. The
    second runner has no references, no age and only mean heart rates: a mean is no HRmax
    (analysis.hrload), so she has no HRmax and no TRIMP, and trimp_method says why."""
    import math

    (tmp_path / "runners.csv").write_text(
        "runner_id,cohort,sex,hr_rest,hr_max\nm,A,M,50,190\nu,A,,,\n", encoding="utf-8")
    (tmp_path / "runs.csv").write_text(
        "runner_id,date,distance_km,duration_min,avg_hr_bpm\n"
        "m,2024-01-01,8,40,148\nu,2024-01-01,6,30,160\nu,2024-01-02,6,30,\n",
        encoding="utf-8")
    (tmp_path / "pain.csv").write_text("runner_id,date,pain\nm,2024-01-03,1\n",
                                       encoding="utf-8")
    raw = read_dataset(tmp_path)
    runs = raw.runs.set_index(["runner_id", "date"])
    m = runs.loc[("m", pd.Timestamp("2024-01-01"))]
    assert m["trimp_banister_au"] == pytest.approx(40 * 0.7 * 0.64 * math.exp(1.92 * 0.7),
                                                   rel=1e-12)
    assert m["trimp_edwards_au"] == pytest.approx(40 * 3, rel=1e-12)
    u = runs.loc[("u", pd.Timestamp("2024-01-01"))]
    assert math.isnan(u["trimp_banister_au"]) and math.isnan(u["trimp_edwards_au"])
    assert math.isnan(runs.loc[("u", pd.Timestamp("2024-01-02")), "trimp_banister_au"])
    refs = raw.hr_references.set_index("runner_id")
    assert refs.loc["m", "hr_max_source"] == "runners.csv"
    assert refs.loc["u", "hr_rest_bpm"] == 60.0 and math.isnan(refs.loc["u", "hr_max_bpm"])
    assert refs.loc["u", "hr_max_source"] == hrload.SOURCE_NO_MAX
    assert raw.trimp_methods == {"mean HR": 1, hrload.METHOD_NO_HR_MAX: 1, "none": 1}
    clean = clean_tables(raw, today=date(2025, 1, 1))
    assert clean.runners.set_index("runner_id").loc["m", ["hr_rest", "hr_max"]].tolist() == [
        50.0, 190.0]
    assert clean.runs["trimp_edwards_au"].tolist()[0] == 120.0
    assert math.isnan(clean.runs["trimp_edwards_au"].tolist()[1])


def test_garmin_avg_hr_is_the_runs_mean_heart_rate() -> None:
    raw = read_dataset(FIXTURES / "garmin_export", format="garmin")
    running = raw.runs[raw.runs["activity_type"] == "Running"]
    assert running["avg_hr_bpm"].iloc[0] == 150.0
    # no runners.csv (no hr_max, no age) and only a mean HR: no HRmax, so no TRIMP
    assert running["trimp_banister_au"].isna().iloc[0]


def test_session_maximum_heart_rates_give_an_observed_hrmax(tmp_path: Path) -> None:
    """A runner without runners.csv references but with the export's per-session maximum
    (canonical max_hr_bpm; Strava "Max Heart Rate", Garmin "Max HR") over 3 sessions gets
    HRmax = the highest of them (hrload.MIN_OBSERVED_SESSIONS), HRrest the named default, so
    mean-HR TRIMP by hand: HRmax 180, HRrest 60, mean 150 over 30 min: HRr = 90/120 = 0.75;
    sex unknown -> the mean of the two Banister curves; 150/180 = 83.3 % HRmax -> Edwards 4."""
    import math

    (tmp_path / "runners.csv").write_text("runner_id,cohort\nu,A\n", encoding="utf-8")
    (tmp_path / "runs.csv").write_text(
        "runner_id,date,distance_km,duration_min,avg_hr_bpm,max_hr_bpm\n"
        "u,2024-01-01,6,30,150,170\nu,2024-01-02,6,30,150,180\nu,2024-01-03,6,30,150,175\n",
        encoding="utf-8")
    (tmp_path / "pain.csv").write_text("runner_id,date,pain\nu,2024-01-04,1\n",
                                       encoding="utf-8")
    raw = read_dataset(tmp_path)
    refs = raw.hr_references.set_index("runner_id")
    assert refs.loc["u", "hr_max_bpm"] == 180.0
    assert refs.loc["u", "hr_rest_bpm"] == 60.0
    hrr = 0.75
    banister = 30 * hrr * (0.64 * math.exp(1.92 * hrr) + 0.86 * math.exp(1.67 * hrr)) / 2
    assert raw.runs["trimp_banister_au"].tolist() == pytest.approx([banister] * 3, rel=1e-12)
    assert raw.runs["trimp_edwards_au"].tolist() == pytest.approx([30 * 4] * 3, rel=1e-12)
    clean = clean_tables(raw, today=date(2025, 1, 1))
    assert clean.runs["max_hr_bpm"].tolist() == [170.0, 180.0, 175.0]


@pytest.mark.parametrize(("options", "message"), [
    ({"dayfirst": True}, "--dayfirst/--no-dayfirst applies to strava exports only"),
    ({"date_format": "%d/%m/%Y"}, "--date-format applies to strava and garmin exports only"),
])
def test_date_options_a_canonical_reader_would_ignore_are_refused(small_raw, options, message):
    """Canonical dates are ISO 8601: a date option there would be silently ignored."""
    with pytest.raises(InputFileError, match=re.escape(message)):
        read_dataset(small_raw, **options)


@pytest.mark.parametrize(("date_format", "message"), [
    ("%Q", "is not a strptime format"), ("%H:%M", "does not name a day, month and year")])
def test_a_date_format_that_cannot_read_a_date_is_one_line(date_format, message):
    with pytest.raises(InputFileError, match=message):
        read_dataset(FIXTURES / "garmin_export", format="garmin", date_format=date_format)


def _former_text_cells(series: pd.Series) -> pd.Series:
    """text_cells as written before its short path: strip, then mask the missing tokens."""
    s = series.astype("str").str.strip()
    return s.mask(s.str.lower().isin(_io.MISSING_TOKENS))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(sorted(_io.MISSING_TOKENS)),
                          st.sampled_from([" NA", "Null ", "n/A", "R0001", " R0002 ", "R0003",
                                           "runner 7", "ø12345", "R\u00a0123", "\tR9", "-",
                                           "NONE", "abcde", "  ", "x"])),
                max_size=30),
       st.sampled_from(["str", "string[python]", "object", "sliced"]))
def test_text_cells_takes_the_short_path_with_the_same_values(cells: list, kind: str) -> None:
    """The short path (no strip without an edge space, no token lookup when every cell is
    longer than a token, printable ASCII only) gives exactly the former values, NA where
    the former gave NA, on every kind of text column."""
    import pyarrow as pa

    if kind == "sliced" and len(cells) > 2:
        whole = pa.array(cells, type=pa.large_string())
        series = pd.Series(pd.arrays.ArrowStringArray(
            pa.chunked_array([whole.slice(0, 1), whole.slice(1)]))).astype("str")
    else:
        series = pd.Series(cells, dtype="object" if kind in ("object", "sliced") else kind)
    got, expected = _io.text_cells(series), _former_text_cells(series)
    assert got.isna().tolist() == expected.isna().tolist()
    assert got.dropna().tolist() == expected.dropna().tolist()
    assert str(got.dtype) == str(expected.dtype)


def test_text_cells_short_path_on_ids_keeps_every_value() -> None:
    """Long printable IDs without edge spaces come back unchanged and unmasked; one edge
    space or one short token anywhere takes the full path."""
    ids = pd.Series([f"R{i:05d}" for i in range(1000)], dtype="str")
    assert _io.text_cells(ids).tolist() == ids.tolist()
    spaced = ids.copy()
    spaced.iloc[500] = " R00500"
    assert _io.text_cells(spaced).iloc[500] == "R00500"
    token = ids.copy()
    token.iloc[3] = "NULL"
    assert pd.isna(_io.text_cells(token).iloc[3])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-80_000, 80_000).map(
    lambda minutes: pd.Timestamp("1969-12-25") + pd.Timedelta(minutes=minutes * 37))),
    max_size=20), st.sampled_from(["s", "ms", "us", "ns"]))
def test_time_of_day_is_not_midnight(stamps: list, unit: str) -> None:
    """The typed date path's time-of-day mask from integer ticks equals the former
    ``notna & (dt != dt.dt.normalize())``, before and after 1970, in every unit, NaT
    included."""
    dt = pd.Series(stamps, dtype=f"datetime64[{unit}]")
    expected = dt.notna() & (dt != dt.dt.normalize())
    got = _io.time_of_day(dt.rename("date"))
    assert got.tolist() == expected.tolist()
    assert got.index.equals(dt.index) and got.name == "date"


def test_count_files_counts_records_per_file_as_value_counts_does() -> None:
    """Per-file records from codes and bincount: interleaved files, a missing file name
    (not counted), object and categorical columns (every category, 0 without records)."""
    from analysis.ingest import count_files

    files = pd.Series(["b.csv", "a.csv", "b.csv", None, "c.csv", "a.csv"], dtype="str")
    tables = {"x": pd.DataFrame({"source_file": files}),
              "y": pd.DataFrame({"source_file": pd.Series(["a.csv"], dtype=object)}),
              "z": pd.DataFrame({"source_file": pd.Categorical(["d.csv"],
                                                               categories=["d.csv", "e.csv"])}),
              "empty": pd.DataFrame({"source_file": pd.Series([], dtype="str")})}
    assert count_files(tables) == {"a.csv": 3, "b.csv": 2, "c.csv": 1, "d.csv": 1, "e.csv": 0}
