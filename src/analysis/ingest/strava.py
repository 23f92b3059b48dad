"""Reader for Strava bulk exports: one folder per runner holding ``activities.csv``.

Layout: ``RAW/<runner_id>/activities.csv`` (or a single ``RAW/activities*.csv`` for one
runner named after ``RAW``), plus optional canonical ``runners``, ``pain`` (or a wide pain
diary) and ``shoes`` files in ``RAW``. Only activity rows become runs records; free-text
columns (name, description, private note) are never read.

Format facts (``shared/data/real/formats/README.md``, checked on a real export):

- ``Activity Date`` is UTC, written ``Jul 14, 2025, 2:19:19 PM``; the local day needs the
  runner's time zone (``timezone=``; default UTC, noted in the report).
- ``Distance`` appears twice: the first in the account's display unit (km or miles), the
  second in metres. The metres column is used; the display unit is inferred from the ratio
  of the two (median near 1000 -> km, near 1609 -> miles) for rows lacking metres.
- ``Moving Time`` is float seconds (the first ``Elapsed Time`` is the fallback).
- ``Activity Gear`` is the gear's display name -> ``shoe_id``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import InputFileError
from analysis.ingest._io import (
    HAS_TIME,
    SOURCE_ISSUE,
    FileInfo,
    read_text_table,
    typed_number,
)
from analysis.ingest.exports import read_export_folder
from analysis.schemas import SOURCE_FILE, SOURCE_LINE

EXPORT_PATTERNS = ("activities*.csv",)
STRAVA_DATE_FORMAT = "%b %d, %Y, %I:%M:%S %p"  # "Jul 14, 2025, 2:19:19 PM", UTC
#: Median metres per display unit that identifies the unit (1000 m/km, 1609.344 m/mile);
#: a ratio within 10 % of one of them decides.
DISPLAY_UNITS = {"km": 1000.0, "mi": 1609.344}
UNIT_RATIO_TOLERANCE = 0.10
SECONDS_PER_MINUTE = 60.0
REQUIRED_HEADERS = ("Activity Date", "Activity Type", "Distance")


def _indices(header: list[str], name: str) -> list[int]:
    return [i for i, h in enumerate(header) if h == name]


def local_datetime(utc_text: pd.Series, *, timezone: str) -> pd.Series:
    """Strava UTC ``Activity Date`` strings -> local wall-clock datetime64.

    When a cell does not parse, the column is returned as text, the parsed cells as local
    ``YYYY-MM-DD HH:MM:SS`` and the others unchanged, so that clean quarantines those as
    ``unparseable_date`` with the text as written (a broken file only: a well-formed
    export is typed once, here).
    """
    parsed = pd.to_datetime(utc_text, format=STRAVA_DATE_FORMAT, errors="coerce")
    local = parsed.dt.tz_localize("UTC").dt.tz_convert(timezone).dt.tz_localize(None)
    if not (parsed.isna() & utc_text.notna()).any():
        return local.astype("datetime64[us]")
    text = local.dt.strftime("%Y-%m-%d %H:%M:%S").astype("str")
    return text.where(parsed.notna(), utc_text)


def display_unit(display: pd.Series, metres: pd.Series) -> str | None:
    """The display unit of Strava's first ``Distance`` column, from rows holding both."""
    both = (display > 0) & (metres > 0)
    if not both.any():
        return None
    ratio = float(np.median(metres[both] / display[both]))
    for unit, m_per_unit in DISPLAY_UNITS.items():
        if abs(ratio / m_per_unit - 1) <= UNIT_RATIO_TOLERANCE:
            return unit
    return None


def read_activities(path: Path, *, name: str, runner_id: str, timezone: str = "UTC"
                    ) -> tuple[pd.DataFrame, FileInfo, list[str]]:
    """One Strava ``activities.csv`` -> raw runs records (all activity types), notes."""
    parsed, info = read_text_table(path, name=name)
    header, n = parsed.header, len(parsed.cells)
    missing = [h for h in REQUIRED_HEADERS if h not in header]
    if missing:
        raise InputFileError(
            f"not a Strava activities export: missing column {missing[0]!r}; found columns: "
            f"{', '.join(header[:12])}{', ...' if len(header) > 12 else ''}",
            file=name, column=missing[0])
    notes: list[str] = []

    def col(column: str, occurrence: int = 0) -> pd.Series:
        idx = _indices(header, column)
        if len(idx) <= occurrence:
            return pd.Series([pd.NA] * n, dtype="str")
        return parsed.cells[idx[occurrence]]

    display, metres = col("Distance", 0), col("Distance", 1)
    disp_num = pd.to_numeric(display, errors="coerce")
    m_num = pd.to_numeric(metres, errors="coerce")
    unit = display_unit(disp_num, m_num)
    if unit is None:
        unit = "km"
        if (disp_num.notna() & m_num.isna()).any():
            notes.append(f"{name}: display unit of the first Distance column unknown, "
                         "assumed km")
    use_m = m_num.notna()
    distance = display.where(~use_m, metres)
    dist_unit = pd.Series(np.where(use_m, "m", unit), dtype="str").where(distance.notna())
    moving = pd.to_numeric(col("Moving Time"), errors="coerce")
    elapsed = pd.to_numeric(col("Elapsed Time", 0), errors="coerce")
    seconds = moving.where(moving > 0, elapsed)
    duration = seconds / SECONDS_PER_MINUTE
    frame = pd.DataFrame({
        "runner_id": pd.Series([runner_id] * n, dtype="str"),
        "date": local_datetime(col("Activity Date"), timezone=timezone),
        HAS_TIME: pd.Series(True, index=range(n)),  # Strava dates always carry a time
        "distance_km": typed_number(distance),
        "distance_unit": dist_unit,
        "duration_min": duration,
        "activity_type": col("Activity Type"),
        "shoe_id": col("Activity Gear"),
        "rpe": typed_number(col("Perceived Exertion")),
        SOURCE_FILE: pd.Series([name] * n, dtype="str"),
        SOURCE_LINE: pd.Series(parsed.lines, dtype="int64"),
        SOURCE_ISSUE: parsed.issues,
    })
    return frame, info, notes


def read_strava(raw_dir: Path, *, timezone: str = "UTC", cohort: str = "all"
                ) -> tuple[dict[str, pd.DataFrame], dict[str, FileInfo], list[str]]:
    """Read a folder of Strava exports into canonical tables (runs, plus companions).

    Parameters
    ----------
    raw_dir
        Folder with ``<runner>/activities.csv`` files (or one ``activities*.csv``).
    timezone
        IANA zone the runners live in; Strava dates are UTC and are converted to local days.
    cohort
        Cohort of runners derived from folder names when there is no runners file.
    """
    def read_one(path: Path, name: str, runner_id: str
                 ) -> tuple[pd.DataFrame, FileInfo, list[str]]:
        return read_activities(path, name=name, runner_id=runner_id, timezone=timezone)

    tables, infos, notes = read_export_folder(
        raw_dir, patterns=EXPORT_PATTERNS, export_name="Strava activities.csv",
        read_one=read_one, cohort=cohort)
    return tables, infos, [f"Strava dates are UTC, converted to {timezone} days", *notes]
