"""Reader for Garmin Connect "Activities" list exports (``Activities.csv``).

Layout: ``RAW/<runner_id>/Activities.csv`` (or a single ``RAW/Activities*.csv`` for one
runner named after ``RAW``), plus optional canonical ``runners``, ``pain`` (or a wide pain
diary) and ``shoes`` files in ``RAW`` (the export has no gear column).

Format facts (``shared/data/real/formats/README.md``, checked on a real export): CRLF line
endings; ``Date`` is local ``YYYY-MM-DD HH:MM:SS``; ``Distance`` is km for metric accounts
and miles for imperial ones (the header does not say: pass ``distance_unit="mi"``, or a
header ``Distance (mi)`` decides); missing values are ``--`` or ``NaN``; numbers may carry
thousands separators (``1,684``); times are ``HH:MM:SS[.f]``. ``Title`` is free text and is
never read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from analysis.errors import InputFileError, KneeloadError
from analysis.ingest._io import (
    DATE_AS_WRITTEN,
    HAS_TIME,
    SOURCE_ISSUE,
    FileInfo,
    format_has_time,
    read_text_table,
    refused_as_written,
    typed_date,
    typed_number,
)
from analysis.ingest.exports import read_export_folder
from analysis.schemas import SOURCE_FILE, SOURCE_LINE

EXPORT_PATTERNS = ("activities*.csv",)
GARMIN_MISSING = ("--", "NaN", "nan", "")
REQUIRED_HEADERS = ("Activity Type", "Date")
#: Distance units a Garmin account (or a header) can use; clean converts each to km.
DISTANCE_UNITS = ("km", "mi", "m")
_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")
_UNIT_IN_HEADER = re.compile(r"^Distance\s*\((km|mi|m)\)$", re.IGNORECASE)
_HMS = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2}(?:\.\d+)?)$")


def check_distance_unit(unit: str, *, file: str | Path | None = None) -> str:
    """``unit`` lower-cased if it is one of :data:`DISTANCE_UNITS`; else a
    :class:`KneeloadError` naming ``--distance-unit`` (a typo must not quarantine every run)."""
    key = unit.strip().lower()
    if key not in DISTANCE_UNITS:
        raise KneeloadError(f"--distance-unit {unit!r} is not a distance unit; use one of "
                            f"{', '.join(DISTANCE_UNITS)}", file=file)
    return key


def strip_thousands(values: pd.Series) -> pd.Series:
    """``1,684`` -> ``1684`` where the commas are thousands separators (Garmin, English)."""
    is_thousands = values.str.match(_THOUSANDS).fillna(False).astype(bool)
    return values.where(~is_thousands, values.str.replace(",", "", regex=False))


def hms_to_minutes(values: pd.Series) -> pd.Series:
    """``HH:MM:SS[.f]`` (or ``MM:SS``) -> minutes (float64); other text -> missing."""
    parts = values.str.extract(_HMS)
    hours = pd.to_numeric(parts[0], errors="coerce").fillna(0)
    minutes = hours * 60 + pd.to_numeric(parts[1], errors="coerce") + pd.to_numeric(
        parts[2], errors="coerce") / 60
    return minutes.astype("float64")


def read_activities(path: Path, *, name: str, runner_id: str, distance_unit: str = "km",
                    date_format: str | None = None) -> tuple[pd.DataFrame, FileInfo]:
    """One Garmin ``Activities.csv`` -> raw runs records (all activity types); ``date_format``
    (strptime) replaces the ISO reading of ``Date``."""
    parsed, info = read_text_table(path, name=name)
    header, n = parsed.header, len(parsed.cells)
    dist_idx = next((i for i, h in enumerate(header)
                     if h == "Distance" or _UNIT_IN_HEADER.match(h)), None)
    missing = [h for h in REQUIRED_HEADERS if h not in header]
    if dist_idx is None:
        missing.append("Distance")
    if missing or dist_idx is None:
        raise InputFileError(
            f"not a Garmin Connect activities export: missing column {missing[0]!r}; found "
            f"columns: {', '.join(header[:12])}{', ...' if len(header) > 12 else ''}",
            file=name, column=missing[0])
    unit_match = _UNIT_IN_HEADER.match(header[dist_idx])
    unit = unit_match.group(1).lower() if unit_match else distance_unit

    def col(column: str | int) -> pd.Series:
        idx = column if isinstance(column, int) else (
            header.index(column) if column in header else None)
        if idx is None:
            return pd.Series([pd.NA] * n, dtype="str")
        cells = parsed.cells[idx]
        return cells.mask(cells.isin(GARMIN_MISSING))

    distance = typed_number(strip_thousands(col(dist_idx)))
    date, has_time, refused = _dates(col("Date"), date_format)
    duration = hms_to_minutes(col("Moving Time")).fillna(hms_to_minutes(col("Time")))
    frame = pd.DataFrame({
        "runner_id": pd.Series([runner_id] * n, dtype="str"),
        "date": date,
        **({HAS_TIME: has_time} if has_time is not None else {}),
        **({DATE_AS_WRITTEN: refused} if refused is not None else {}),
        "distance_km": distance,
        "distance_unit": pd.Series([unit] * n, dtype="str").where(distance.notna()),
        "duration_min": duration,
        "activity_type": col("Activity Type"),
        "avg_hr_bpm": typed_number(strip_thousands(col("Avg HR"))),
        "max_hr_bpm": typed_number(strip_thousands(col("Max HR"))),
        SOURCE_FILE: pd.Series([name] * n, dtype="str"),
        SOURCE_LINE: pd.Series(parsed.lines, dtype="int64"),
        SOURCE_ISSUE: parsed.issues,
    })
    return frame, info


def _dates(cells: pd.Series, date_format: str | None
           ) -> tuple[pd.Series, pd.Series | None, pd.Series | None]:
    """``Date`` cells typed, with the has-a-time-of-day mask and the refused cells.

    Without ``date_format``: ISO 8601 (:func:`typed_date`; a column with a cell it refuses
    stays text, for cleaning). With it: every cell by that format, ``has_time`` where the
    format has a time of day (:func:`format_has_time`: 00:00 is a time), and each cell the
    format refuses NaT with its text kept (:func:`refused_as_written`), which cleaning
    quarantines as ``unparseable_date``; such a cell is never read again as ISO 8601.
    """
    if date_format is None:
        date, has_time = typed_date(cells)
        return date, has_time, None
    parsed = pd.to_datetime(cells, format=date_format, errors="coerce").astype("datetime64[us]")
    has_time = parsed.notna() & format_has_time(date_format)
    return parsed, has_time, refused_as_written(parsed, cells)


def read_garmin(raw_dir: Path, *, distance_unit: str = "km", cohort: str = "all",
                date_format: str | None = None
                ) -> tuple[dict[str, pd.DataFrame], dict[str, FileInfo], list[str]]:
    """Read a folder of Garmin Connect exports into canonical tables.

    Parameters
    ----------
    raw_dir
        Folder with ``<runner>/Activities.csv`` files (or one ``Activities*.csv``).
    distance_unit
        "km" (metric account) or "mi" (imperial account) when the header does not say.
    cohort
        Cohort of runners derived from folder names when there is no runners file.
    date_format
        strptime format of ``Date`` (``--date-format``); None: ISO 8601.

    Raises
    ------
    KneeloadError
        ``distance_unit`` is not one of :data:`DISTANCE_UNITS`.
    """
    distance_unit = check_distance_unit(distance_unit, file=raw_dir)

    def read_one(path: Path, name: str, runner_id: str
                 ) -> tuple[pd.DataFrame, FileInfo, list[str]]:
        frame, info = read_activities(path, name=name, runner_id=runner_id,
                                      distance_unit=distance_unit, date_format=date_format)
        return frame, info, []

    tables, infos, notes = read_export_folder(
        raw_dir, patterns=EXPORT_PATTERNS, export_name="Garmin Activities.csv",
        read_one=read_one, cohort=cohort)
    return tables, infos, [f"Garmin distances read as {distance_unit}", *notes]
