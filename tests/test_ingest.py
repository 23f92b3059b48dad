"""Ingest: canonical reader, bad-file errors, encodings and file variants."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from analysis.errors import InputFileError
from analysis.ingest import read_dataset

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


@pytest.mark.parametrize("delim", [";", "\t", "|"])
def test_other_delimiters_are_detected(tmp_path: Path, delim: str) -> None:
    write_dataset(tmp_path, runs_csv=RUNS.replace(",", delim))
    raw = read_dataset(tmp_path)
    assert raw.runs["distance_km"].tolist() == ["5.0", "7.5"]
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
        ["2023-12-01", "12.5", 2]]
    assert raw.runs["date"].tolist() == ["2024-01-01", "2024-01-02"]
    assert raw.runs["distance_km"].tolist() == ["5.0", "7.5"]
    assert raw.runs["source_line"].tolist() == [2, 3]
    assert raw.files["runs.parquet"] == 2


def test_two_variants_of_one_table_are_ambiguous(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path)
    shutil.copy(folder / "runs.csv", folder / "runs.txt")
    with pytest.raises(InputFileError, match="more than one file for table 'runs'"):
        read_dataset(folder)
