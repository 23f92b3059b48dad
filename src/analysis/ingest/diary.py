"""Reader for a study team's wide pain diary: one row per runner, one column per week.

``pain_diary.csv`` (or ``.xlsx``/``.parquet``; also ``pain_wide.*``) with ``runner_id`` and
either

- report-date columns: headers are ISO dates (``2024-01-07``), the cell is that day's pain;
- week columns: ``week_1``, ``Week 2``, ``w3``, ... plus a ``start_date`` column (first
  day of week 1 for that runner). Week N covers the 7 days from ``start_date + 7 (N-1)``
  and its report is dated on the week's last day, ``start_date + 7 N - 1``.

Each non-empty cell becomes one long pain record (``runner_id``, ``date``, ``pain``) that
remembers its line and its column (``source_column``); empty cells are no report and not
records. Other columns (names, notes) are never read into the tables.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from analysis.errors import InputFileError
from analysis.filenames import TABLE_SUFFIXES
from analysis.ingest._io import SOURCE_ISSUE, FileInfo, typed_number
from analysis.ingest.canonical import read_table_file
from analysis.schemas import SOURCE_FILE, SOURCE_LINE

DIARY_STEMS = ("pain_diary", "pain_wide")
DAYS_PER_WEEK = 7
SOURCE_COLUMN = "source_column"
_WEEK = re.compile(r"^(?:week|wk|w)_?(\d+)$")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
START_COLUMNS = ("start_date", "diary_start", "week_1_start")


def find_diary(raw_dir: Path) -> Path | None:
    """The wide pain diary file in ``raw_dir``, if any."""
    for stem in DIARY_STEMS:
        for suffix in TABLE_SUFFIXES:
            if (raw_dir / f"{stem}{suffix}").is_file():
                return raw_dir / f"{stem}{suffix}"
    return None


def _report_dates(long: pd.DataFrame, week: pd.Series, start_col: str | None) -> pd.Series:
    """Each long record's report day: its date column's name, or its week's last day.

    datetime64 when every record has a day; otherwise text (the days that exist as
    ``YYYY-MM-DD``, an unparseable start date as written), so that clean quarantines the
    records without one as ``unparseable_date`` with the text as written.
    """
    named = pd.to_datetime(long[SOURCE_COLUMN].where(week.isna()), format="%Y-%m-%d",
                           errors="coerce")
    start = (pd.to_datetime(long[start_col], format="ISO8601", errors="coerce")
             if start_col else pd.Series(pd.NaT, index=long.index, dtype="datetime64[us]"))
    week_day = start + pd.to_timedelta(week * DAYS_PER_WEEK - 1, unit="D")
    day = named.where(week.isna(), week_day).astype("datetime64[us]")
    if day.notna().all():
        return day
    text = day.dt.strftime("%Y-%m-%d").astype("str")
    as_written = (long[start_col] if start_col
                  else pd.Series(pd.NA, index=long.index, dtype="str"))
    return text.where(day.notna(), long[SOURCE_COLUMN].where(week.isna(), as_written))


def read_diary(path: Path) -> tuple[pd.DataFrame, FileInfo]:
    """Wide diary -> long raw pain records with ``source_column``.

    Raises
    ------
    InputFileError
        No week or date columns, or week columns without a start-date column.
    """
    frame, info = read_table_file(path, required=("runner_id",))
    week_cols = {c: int(m.group(1)) for c in frame.columns if (m := _WEEK.match(c))}
    date_cols = [c for c in frame.columns if _ISO_DAY.match(c)]
    if not week_cols and not date_cols:
        raise InputFileError(
            "wide pain diary has no week columns (week_1, week_2, ...) or date columns "
            f"(YYYY-MM-DD); found columns: {', '.join(map(str, frame.columns[:12]))}",
            file=info.name)
    start_col = next((c for c in START_COLUMNS if c in frame.columns), None)
    if week_cols and start_col is None:
        raise InputFileError(
            "wide pain diary has week columns but no start_date column (first day of week 1)",
            file=info.name, column="start_date")
    id_vars = ["runner_id", SOURCE_FILE, SOURCE_LINE, *([start_col] if start_col else []),
               *([SOURCE_ISSUE] if SOURCE_ISSUE in frame.columns else [])]
    long = frame.melt(id_vars=id_vars, value_vars=[*week_cols, *date_cols],
                      var_name=SOURCE_COLUMN, value_name="pain")
    long = long[long["pain"].notna()]
    week = long[SOURCE_COLUMN].map(week_cols)
    out = pd.DataFrame({
        "runner_id": long["runner_id"],
        "date": _report_dates(long, week, start_col),
        "pain": typed_number(long["pain"]),
        SOURCE_FILE: long[SOURCE_FILE],
        SOURCE_LINE: long[SOURCE_LINE].astype("int64"),
        SOURCE_COLUMN: long[SOURCE_COLUMN].astype("str"),
    })
    if SOURCE_ISSUE in long:
        out[SOURCE_ISSUE] = long[SOURCE_ISSUE]
    order = {c: i for i, c in enumerate(frame.columns)}
    out = (out.assign(_order=out[SOURCE_COLUMN].map(order))
           .sort_values([SOURCE_LINE, "_order"], kind="stable")
           .drop(columns="_order").reset_index(drop=True))
    return out, info


def read_diary_folder(raw_dir: Path) -> tuple[pd.DataFrame, FileInfo]:
    """The wide pain diary of a study folder as the long pain table (``read_canonical``'s
    ``pain_reader`` for the ``diary`` format)."""
    diary_path = find_diary(raw_dir)
    if diary_path is None:
        raise InputFileError("missing wide pain diary pain_diary.csv",
                             file=raw_dir / "pain_diary.csv")
    return read_diary(diary_path)
