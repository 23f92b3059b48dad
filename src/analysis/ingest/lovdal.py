"""Reader for the Lövdal, Den Hartigh & Azzopardi (2021) day-approach file.

Lövdal S.S., Den Hartigh R.J.R., Azzopardi G. (2021). Injury Prediction in Competitive
Runners With Machine Learning. IJSPP 16(10):1522-1531, doi:10.1123/ijspp.2020-0518; data
doi:10.34894/UWU9PV (CC0). Layout facts are from ``shared/data/real/lovdal2021/README.md``.

Each row of ``day_approach_maskedID_timeseries.csv`` is one athlete-day (``Athlete ID``,
``Date``) carrying the 7 preceding days as 7 blocks of 10 features; block suffix ``""`` is
the oldest day (t-6) and ``".6"`` the newest (t). The reader rebuilds one daily series per
athlete: every day takes its values from the newest block that covers it (the row's own
``.6`` block when that row exists; older blocks only fill the first six days of a series
and gaps between rows).

Mapping to the canonical tables (docs/data-contract.md, "Lövdal 2021"):

- ``Date`` is a masked integer day index; it is placed on a synthetic calendar,
  ``LOVDAL_EPOCH + Date`` days. Weekdays and seasons are therefore meaningless.
- runs: one record per rebuilt day with ``total km`` != 0 (days with 0 km are rest or
  cross-training days, which the canonical format encodes by having no run).
  ``activity_type`` is "run"; the other per-day features travel as ``x_`` columns
  (``x_sessions``, ``x_km_z3_4``, ...); the ``-0.01`` "no rating" sentinel of the
  perceived-* fields becomes missing.
- pain: one record per file row: ``pain = 10 * injury`` (so ``pain_any`` is the injury flag
  for any pain threshold in (0, 10]) and ``x_injury`` keeps the flag as read.
- runners: one per athlete, ``runner_id = "lovdal-<Athlete ID>"``, cohort ``lovdal2021``,
  follow-up from the first to the last row's day.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import InputFileError
from analysis.ingest._io import (
    SOURCE_ISSUE,
    FileInfo,
    read_text_table,
    records_frame,
    to_number,
    typed_number,
)
from analysis.ingest.canonical import DERIVED_RUNNERS
from analysis.ingest.diary import SOURCE_COLUMN
from analysis.schemas import SOURCE_FILE, SOURCE_LINE

#: Synthetic calendar origin for the masked ``Date`` index (the cohort was followed
#: 2012-2019; the real dates are not in the data).
LOVDAL_EPOCH = pd.Timestamp("2012-01-01")
LOVDAL_COHORT = "lovdal2021"
RUNNER_PREFIX = "lovdal-"
#: "No rating" in the perceived-* fields (README: on every day with 0 sessions).
NO_RATING_SENTINEL = -0.01
DAYS_PER_ROW = 7
#: Block suffixes, oldest (t-6) to newest (t).
BLOCK_SUFFIXES = ("", ".1", ".2", ".3", ".4", ".5", ".6")
#: Day-file feature -> canonical/extra column.
FEATURES = {
    "nr. sessions": "x_sessions",
    "total km": "distance_km",
    "km Z3-4": "x_km_z3_4",
    "km Z5-T1-T2": "x_km_z5_t1_t2",
    "km sprinting": "x_km_sprinting",
    "strength training": "x_strength_training",
    "hours alternative": "x_hours_alternative",
    "perceived exertion": "x_perceived_exertion",
    "perceived trainingSuccess": "x_perceived_training_success",
    "perceived recovery": "x_perceived_recovery",
}
PERCEIVED = ("x_perceived_exertion", "x_perceived_training_success", "x_perceived_recovery")
KEY_HEADERS = ("Athlete ID", "injury", "Date", "total km.6")
#: pain (NRS 0-10) carried for injury = 1.
PAIN_FOR_INJURY = 10.0


def is_day_file(header: list[str]) -> bool:
    """True when ``header`` is the day-approach file's."""
    return all(h in header for h in KEY_HEADERS)


def find_day_file(raw_dir: Path) -> tuple[Path, list[str]]:
    """The day-approach CSV in ``raw_dir`` (by header) and notes about other files."""
    notes, day = [], None
    for path in sorted(raw_dir.glob("*.csv")):
        with path.open("rb") as handle:
            head = handle.read(4096).decode("utf-8", errors="replace").splitlines()[:1]
        cells = [c.strip().strip('"') for c in head[0].split(",")] if head else []
        if is_day_file(cells):
            if day is not None:
                raise InputFileError(f"two Lövdal day files: {day.name}, {path.name}",
                                     file=raw_dir)
            day = path
        elif "Athlete ID" in cells and "total kms" in cells:
            notes.append(f"{path.name}: Lövdal week file ignored (the day file holds the "
                         "daily series)")
    if day is None:
        raise InputFileError("no Lövdal day-approach file (a CSV with 'Athlete ID', "
                             "'injury', 'Date' and 'total km.6' columns)", file=raw_dir)
    return day, notes


def _numbers(cells: pd.Series) -> pd.Series:
    return pd.to_numeric(cells, errors="coerce")


def read_lovdal(raw_dir: Path) -> tuple[dict[str, pd.DataFrame], dict[str, FileInfo],
                                        list[str]]:
    """Read the Lövdal 2021 day-approach file into canonical tables (see module doc)."""
    path, notes = find_day_file(raw_dir)
    name = path.relative_to(raw_dir).as_posix()
    parsed, info = read_text_table(path, name=name)
    header = parsed.header
    missing = [f"{f}{s}" for s in BLOCK_SUFFIXES for f in FEATURES if f"{f}{s}" not in header]
    if missing:
        raise InputFileError(f"Lövdal day file lacks column {missing[0]!r}", file=name,
                             column=missing[0])
    table = records_frame(parsed, header=header, file=name)

    def cells(column: str) -> pd.Series:
        return table[column].fillna("")

    athlete = table["Athlete ID"]
    day_index = _numbers(cells("Date"))
    line = pd.Series(parsed.lines, dtype="int64")
    bad_index = day_index.isna() | (day_index != day_index.round())
    if bad_index.any():
        i = int(np.flatnonzero(bad_index.to_numpy())[0])
        raise InputFileError(f"Date is not an integer day index: {cells('Date').iloc[i]!r}",
                             file=name, row=int(parsed.lines[i]), column="Date")
    # a missing Athlete ID stays missing, so clean quarantines its records (missing_value)
    runner = (RUNNER_PREFIX + athlete.str.replace(r"\.0$", "", regex=True)).astype("str")
    issue = table[SOURCE_ISSUE]

    # long table of (row, block) -> day values; newest covering block wins per day
    blocks = []
    for k, suffix in enumerate(BLOCK_SUFFIXES):
        block = pd.DataFrame({out: table[f"{feat}{suffix}"] for feat, out in FEATURES.items()})
        blocks.append(block.assign(
            runner_id=runner, _day=day_index - (DAYS_PER_ROW - 1 - k), _k=k,
            **{SOURCE_LINE: line, SOURCE_COLUMN: f"total km{suffix}", SOURCE_ISSUE: issue}))
    long = pd.concat(blocks, ignore_index=True)
    long = (long.sort_values(["runner_id", "_day", "_k", SOURCE_LINE],
                             ascending=[True, True, False, True], kind="stable")
            .drop_duplicates(["runner_id", "_day"], keep="first"))
    long = long.assign(**{out: typed_number(long[out]) for out in FEATURES.values()})
    # a day is a run unless its km reads as 0, and a rating is the sentinel, by cleaning's
    # one number rule (to_number: a decimal comma too), so a rest day written "0,0" is a
    # rest day, not a run that cleaning would quarantine as distance_not_positive
    km, _ = to_number(long["distance_km"])
    runs = long[~(km == 0).to_numpy()].copy()
    for col in PERCEIVED:
        value, _ = to_number(runs[col])
        runs[col] = runs[col].mask(np.isclose(value, NO_RATING_SENTINEL))
    runs_out = runs.assign(
        date=(LOVDAL_EPOCH + pd.to_timedelta(runs["_day"], unit="D")).astype("datetime64[us]"),
        activity_type="run",
        **{SOURCE_FILE: name},
    ).drop(columns=["_day", "_k"]).sort_values(["runner_id", "date"]).reset_index(drop=True)
    runs_out = runs_out.astype({SOURCE_FILE: "str", "activity_type": "str"})

    injury = typed_number(table["injury"])
    # a flag that is not a number stays text (clean quarantines it as pain_not_number)
    pain_value = injury * PAIN_FOR_INJURY if injury.dtype == "float64" else injury
    row_day = (LOVDAL_EPOCH + pd.to_timedelta(day_index, unit="D")).astype("datetime64[us]")
    pain = pd.DataFrame({
        "runner_id": runner,
        "date": row_day,
        "pain": pain_value,
        "x_injury": injury,
        SOURCE_FILE: pd.Series([name] * len(table), dtype="str"),
        SOURCE_LINE: line,
        SOURCE_COLUMN: pd.Series(["injury"] * len(table), dtype="str"),
        SOURCE_ISSUE: issue,
    })
    span = pd.DataFrame({"runner_id": runner, "day": row_day}).dropna().groupby(
        "runner_id", sort=True).agg(start=("day", "min"), end=("day", "max"))
    runners = pd.DataFrame({
        "runner_id": pd.Series(span.index, dtype="str"),
        "cohort": LOVDAL_COHORT,
        "follow_up_start": span["start"].to_numpy(),
        "follow_up_end": span["end"].to_numpy(),
        SOURCE_FILE: DERIVED_RUNNERS,
        SOURCE_LINE: np.arange(1, len(span) + 1, dtype="int64"),
    }).astype({"cohort": "str", SOURCE_FILE: "str"})
    from analysis.ingest.canonical import empty_table

    n_days = len(long)
    notes.append(
        f"{name}: {len(table)} rows -> {n_days} days rebuilt for {len(span)} athlete(s) "
        f"({n_days - len(table)} from older blocks), {len(runs_out)} days with running "
        f"km as runs, {n_days - len(runs_out)} days with 0 km not runs; Date placed on a "
        f"synthetic calendar from {LOVDAL_EPOCH.date()}; pain = 10 x injury"
    )
    tables = {"runners": runners, "runs": runs_out, "pain": pain, "shoes": empty_table("shoes")}
    return tables, {name: info}, notes
