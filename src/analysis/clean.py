"""Cleaning rules with reason codes: :class:`~analysis.ingest.RawTables` -> :class:`CleanResult`.

Every raw record ends in exactly one of three places: kept (typed, in the clean tables),
merged (a duplicate of a kept record) or quarantined (with file, line, column, value and a
reason code). Fixable problems (units, decimal commas, an invalid optional value) are fixed
in place and counted. The codes are documented in ``docs/cleaning.md``; per input file,
``read == kept + merged + quarantined`` is checked here and a mismatch raises
:class:`ConservationError` (a bug, not a user error).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.errors import DataContractError
from analysis.ingest import RawTables, count_files
from analysis.ingest._io import (
    ACTIVITY_ISSUE,
    DATE_AS_WRITTEN,
    HAS_TIME,
    PARTIAL_DATE,
    SOURCE_ISSUE,
    UNTERMINATED_QUOTE,
    printable_ascii,
    shown_values,
    time_of_day,
    to_datetime,
    to_number,
)
from analysis.ingest._io import text_cells as _text
from analysis.ingest.diary import SOURCE_COLUMN
from analysis.keys import day_numbers, factorize
from analysis.ostrc import OSTRC_VALID_ANSWERS  # option numbers 1-4 or OSTRC-O2 scores
from analysis.schemas import (
    HR_MAX_BPM,
    HR_MIN_BPM,
    MAX_DAILY_KM,
    OSTRC_ITEMS,
    PAIN_CONTRACT,
    PAIN_MAX,
    PAIN_MIN,
    RUNNERS_CONTRACT,
    RUNS_CONTRACT,
    SHOES_CONTRACT,
    SOURCE_FILE,
    SOURCE_LINE,
    check_table,
)

# --- thresholds ----------------------------------------------------------------------------
#: Fastest plausible pace (min/km): 2:30 min/km is faster than the marathon world record
#: (about 2:52 min/km, Kiptum 2023), so slower than any real training run can go.
MIN_PACE_MIN_PER_KM = 2.5
#: Slowest pace still counted as running (min/km); slower is walking (about 6-7 km/h
#: brisk walking = 8.5-10 min/km; 15 min/km = 4 km/h).
MAX_PACE_MIN_PER_KM = 15.0
#: Two records of the same runner whose times overlap are one run recorded by two devices
#: when their distances differ by at most this fraction (GPS distance error of consumer
#: watches is a few percent; Gilgen-Ammann et al. 2020, doi:10.7717/peerj.10366).
TWO_DEVICE_DISTANCE_TOLERANCE = 0.05
#: Longest possible run in calendar days a start can precede an overlapping record by:
#: 100 km at 15 min/km is 25 h, which can touch the day after next.
MAX_RUN_SPAN_DAYS = 2
KM_PER_MILE = 1.609344  # international mile (exact)
#: Control characters (C0, DEL, C1) that no runner ID or cohort label may hold: they
#: come from a file decoded with the wrong encoding or from a corrupted cell, and they
#: would print as nothing (or move the cursor) in reports and terminals.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
M_PER_KM = 1000.0

#: ``activity_type`` values counted as running (matched case-insensitively as a word).
RUNNING_PATTERN = re.compile(r"\brun(?:ning)?\b|\bjog(?:ging)?\b|\blauf|\blöp", re.IGNORECASE)

# --- reason codes (docs/cleaning.md) --------------------------------------------------------
#: Codes for records not kept because they duplicate a kept record (counted as "merged").
MERGE_REASONS: dict[str, str] = {
    "exact_duplicate": "same record (after parsing) as an earlier one",
    "two_device_duplicate": "same runner, overlapping time, distance within 5 % of a kept run",
    "same_day_pain_report": "a higher (or equal, later) pain report of the same runner and day "
                            "supersedes it",
}
#: Codes for quarantined records.
QUARANTINE_REASONS: dict[str, str] = {
    "malformed_row": "the line has more fields than the header",
    "unterminated_quote": "a quote opened on the line is not closed on it (the lines after it "
                          "are read on their own, not swallowed into this one)",
    "control_character": "runner_id or cohort holds a control character (wrong encoding or a "
                         "corrupted cell)",
    "partial_date": "date names a month or a year but no day (2025-03, 2025): not read as "
                    "the 1st",
    "missing_value": "a required column is empty",
    "non_running_activity": "activity_type is not running (ride, swim, walk, ...)",
    "unparseable_date": "date is not an ISO 8601 date (YYYY-MM-DD[ HH:MM[:SS]]), or not in "
                        "the date format of a Strava or Garmin export (--date-format)",
    "future_date": "date after today",
    "outside_follow_up": "pain report outside the runner's follow-up, or run after its end",
    "distance_not_number": "distance is not a number",
    "unknown_distance_unit": "distance_unit is not km, mi or m",
    "distance_not_positive": "distance <= 0 km",
    "distance_over_daily_max": "one run longer than 100 km",
    "daily_km_over_max": "the runner's runs on that day add up to more than 100 km",
    "pace_too_fast": "pace faster than 2:30 min/km",
    "pace_too_slow": "pace slower than 15:00 min/km",
    "pain_not_number": "pain is not a number",
    "pain_out_of_range": "pain outside the 0-10 numeric rating scale",
    "unknown_runner": "runner_id not in runners",
    "runner_without_cohort": "the runner's row in runners has no cohort",
    "missing_cohort": "runner has no cohort",
    "duplicate_runner_id": "runner_id already used by a different runners row",
    "duplicate_shoe_id": "the runner's shoe_id already used by a different shoes row",
    "unreadable_activity_file": "an activity file (FIT/GPX/TCX) is empty, truncated, corrupt "
                                "or not an activity; the value says which",
}
#: Codes for fixes applied to kept records (counted as "fixed").
FIX_REASONS: dict[str, str] = {
    "miles_to_km": "distance given in miles, converted to km",
    "metres_to_km": "distance given in metres, converted to km",
    "decimal_comma": "number written with a decimal comma",
    "invalid_optional_blanked": "an optional value (age, duration, rpe, OSTRC, shoe start, "
                                "heart rate, TRIMP) was not valid and was set to missing",
    "shoe_start_after_first_run": "the shoe's start_date was after its first logged run; "
                                  "moved to that run's date",
}

#: Columns of the quarantine table; ``runner_id`` (as read, trimmed) lets per-cohort reports
#: show their own runners' rows.
QUARANTINE_COLUMNS = ("file", "line", "column", "value", "reason", "runner_id")


class ConservationError(RuntimeError):
    """Rows were lost or double-counted during cleaning: a bug in this module."""


class CleanContractBug(RuntimeError):
    """A clean table fails its contract: a cleaning rule let a bad value through (a bug in
    this module, not a user error, so it is no :class:`~analysis.errors.KneeloadError` and
    keeps its traceback)."""


@dataclass
class CleanResult:
    """Clean, typed tables plus the audit of every record not kept."""

    runners: pd.DataFrame
    runs: pd.DataFrame
    pain: pd.DataFrame
    shoes: pd.DataFrame
    quarantine: pd.DataFrame  # file, line, column, value, reason, runner_id
    report: dict = field(default_factory=dict)


# --- helpers ---------------------------------------------------------------------------------
def _is_missing(series: pd.Series) -> pd.Series:
    if not (series.dtype == object or pd.api.types.is_string_dtype(series)):
        return series.isna()  # typed by the reader: a missing cell is NA
    return _text(series).isna()


class _Ledger:
    """Collects every record that leaves a table, with its reason."""

    def __init__(self) -> None:
        self.parts: list[pd.DataFrame] = []

    def drop(
        self,
        df: pd.DataFrame,
        mask: pd.Series,
        *,
        reason: str,
        column: str,
        values: pd.Series | Callable[[pd.DataFrame], pd.Series] | None = None,
    ) -> pd.DataFrame:
        """Record the rows of ``df`` under ``mask`` and return the others.

        ``values``: what the audit shows per row (default: the cell of ``column``), or a
        function of the dropped rows computing it (so nothing is formatted for kept rows).
        """
        if reason not in MERGE_REASONS and reason not in QUARANTINE_REASONS:
            raise KeyError(f"bug: reason code {reason!r} is not documented")
        if mask.index is not df.index and not mask.index.equals(df.index):
            mask = mask.reindex(df.index)
        mask = mask.fillna(False).astype(bool) if mask.dtype != bool else mask
        if not mask.any():
            return df
        bad = df[mask]
        if callable(values):
            values = values(bad)
        elif values is None:
            values = bad[column] if column in bad else pd.Series(pd.NA, index=bad.index)
        where: str | pd.Series = column
        if SOURCE_COLUMN in bad and column in ("pain", "date", "distance_km"):
            # the cell of a reshaped file (wide diary week, Lövdal block)
            where = bad[SOURCE_COLUMN].astype("str").fillna(column)
        self.parts.append(pd.DataFrame({
            "file": bad[SOURCE_FILE].astype("str"),
            "line": bad[SOURCE_LINE].astype("int64"),
            "column": where,
            "value": shown_values(values.reindex(bad.index)),
            "reason": reason,
            "runner_id": (_text(bad["runner_id"]) if "runner_id" in bad
                          else pd.Series(pd.NA, index=bad.index, dtype="str")),
        }))
        return df[~mask]

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({
                "file": pd.Series(dtype="str"), "line": pd.Series(dtype="int64"),
                "column": pd.Series(dtype="str"), "value": pd.Series(dtype="str"),
                "reason": pd.Series(dtype="str"), "runner_id": pd.Series(dtype="str"),
            })
        out = pd.concat(self.parts, ignore_index=True)
        return out.sort_values(["file", "line"], kind="stable").reset_index(drop=True)


def _fix(df: pd.DataFrame, code: str, mask: pd.Series) -> pd.DataFrame:
    col = f"_fix_{code}"
    if col not in df and not mask.any():
        return df  # no such fix yet: an absent column counts as False (see _report)
    prev = df[col] if col in df else pd.Series(False, index=df.index)
    return df.assign(**{col: prev | mask.reindex(df.index).fillna(False).astype(bool)})


def _common_rules(df: pd.DataFrame, led: _Ledger, required: tuple[str, ...]) -> pd.DataFrame:
    if SOURCE_ISSUE in df:
        issue = df[SOURCE_ISSUE]
        quote = issue.str.startswith(UNTERMINATED_QUOTE).fillna(False).astype(bool)
        df = led.drop(df, quote, reason="unterminated_quote", column=SOURCE_ISSUE)
        df = led.drop(df, df[SOURCE_ISSUE].notna(), reason="malformed_row", column=SOURCE_ISSUE)
    runner_id = _text(df["runner_id"]) if "runner_id" in df else None
    for col in required:
        missing = runner_id.isna() if col == "runner_id" else _is_missing(df[col])
        if col == "date" and DATE_AS_WRITTEN in df:
            # a refused date is not a missing one; a missing token (null) is, shown as written
            missing = missing & _text(df[DATE_AS_WRITTEN]).isna()
        df = led.drop(df, missing, reason="missing_value", column=col,
                      values=_date_as_written if col == "date" else None)
    if runner_id is None:
        return df
    df = led.drop(df, _has_control(runner_id.reindex(df.index)), reason="control_character",
                  column="runner_id")
    # reindexed by hand: assigning to a frame left with no rows would adopt the series' index
    return df.assign(runner_id=runner_id.reindex(df.index))


def _has_control(text: pd.Series) -> pd.Series:
    """True for text cells holding a :data:`CONTROL_CHARACTERS` character."""
    if not (text.dtype == object or pd.api.types.is_string_dtype(text)) \
            or printable_ascii(text):
        return pd.Series(False, index=text.index)
    return text.str.contains(CONTROL_CHARACTERS).fillna(False).astype(bool)


def _optional_number(
    df: pd.DataFrame, col: str, *, lo: float | None = None, hi: float | None = None,
    lo_open: bool = False, allowed: tuple[float, ...] | None = None,
) -> pd.DataFrame:
    """Parse an optional numeric column; invalid, out-of-range or not ``allowed`` values
    -> NaN (a fix)."""
    if col not in df:
        return df
    values, comma = to_number(df[col])
    bad = values.notna() & (
        (values < lo if not lo_open else values <= lo) if lo is not None else False
    )
    if hi is not None:
        bad = bad | (values > hi)
    if allowed is not None:
        bad = bad | (values.notna() & ~values.isin(allowed))
    invalid = (~_is_missing(df[col]) & values.isna()) | bad
    df = _fix(df, "decimal_comma", comma & ~bad)
    df = _fix(df, "invalid_optional_blanked", invalid)
    return df.assign(**{f"_{col}": values.mask(bad)})


def _optional_date(df: pd.DataFrame, col: str) -> pd.DataFrame:
    if col not in df:
        return df
    dt, _ = to_datetime(df[col])
    invalid = ~_is_missing(df[col]) & dt.isna()
    df = _fix(df, "invalid_optional_blanked", invalid)
    return df.assign(**{f"_{col}": dt.dt.normalize()})


def _runner_rows(runner_id: pd.Series, runners: pd.DataFrame) -> np.ndarray:
    """Row of each record's runner in ``runners`` (-1: not there), by one hash join."""
    found = pc.index_in(pa.array(runner_id, type=pa.string(), from_pandas=True),
                        value_set=pa.array(runners["runner_id"], type=pa.string(),
                                           from_pandas=True))
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _runner_filter(
    df: pd.DataFrame, runners: pd.DataFrame, no_cohort: set[str], led: _Ledger
) -> pd.DataFrame:
    """Drop records of runners not in ``runners``; the others get ``_runner_row``."""
    df = df.assign(_runner_row=_runner_rows(df["runner_id"], runners))
    unknown = df["_runner_row"] < 0
    cohortless = unknown & df["runner_id"].isin(no_cohort)
    df = led.drop(df, cohortless, reason="runner_without_cohort", column="runner_id")
    return led.drop(df, unknown, reason="unknown_runner", column="runner_id")


def _date_as_written(bad: pd.DataFrame) -> pd.Series:
    """The audit value of a dropped date: the text a reader's format did not read
    (:data:`~analysis.ingest._io.DATE_AS_WRITTEN`), else the cell."""
    if DATE_AS_WRITTEN not in bad:
        return bad["date"]
    written = bad[DATE_AS_WRITTEN].astype(object)
    return written.where(written.notna(), bad["date"].astype(object))


def _date_rules(df: pd.DataFrame, led: _Ledger, today: date) -> pd.DataFrame:
    dt, has_time = to_datetime(df["date"])
    if HAS_TIME in df:  # the reader typed the dates and kept which had a time of day
        # (missing where a file of the table did not say: the cells tell, review: NaN read
        # as True made the date-only runs of such a file timed)
        has_time = df[HAS_TIME].astype("boolean").fillna(has_time).astype(bool)
    df = df.assign(_start=dt, _date=dt.dt.normalize(), _has_time=has_time)
    text = df["date"] if df["date"].dtype == object or pd.api.types.is_string_dtype(
        df["date"]) else None
    if DATE_AS_WRITTEN in df:  # a date a reader's format refused: NaT, its text beside it
        text = df[DATE_AS_WRITTEN] if text is None else df[DATE_AS_WRITTEN].fillna(text)
    if text is not None:
        partial = df["_date"].isna() & _text(text).str.match(PARTIAL_DATE)
        df = led.drop(df, partial.fillna(False).astype(bool), reason="partial_date",
                      column="date", values=_date_as_written)
    # never read again: quarantined showing the text as written
    df = led.drop(df, df["_date"].isna(), reason="unparseable_date", column="date",
                  values=_date_as_written)
    return led.drop(df, df["_date"] > pd.Timestamp(today), reason="future_date", column="date")


def _follow_up(df: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame:
    """Attach each record's runner follow-up window as ``_fu_start``/``_fu_end`` (NaT: open)."""
    rows = df["_runner_row"].to_numpy()  # every record's runner is known here
    out = {}
    for name, col in (("_fu_start", "_follow_up_start"), ("_fu_end", "_follow_up_end")):
        out[name] = (pd.Series(runners[col].to_numpy()[rows], index=df.index)
                     if col in runners
                     else pd.Series(pd.NaT, index=df.index, dtype="datetime64[us]"))
    return df.assign(**out)


# --- per table ------------------------------------------------------------------------------
def _final(df: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Select output columns: {output name: internal column}; keep provenance."""
    out = pd.DataFrame({name: df[src] for name, src in columns.items() if src in df},
                       index=df.index)
    for col in out:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].astype("str")
    for col in (c for c in df.columns if c.startswith("x_")):  # extra measured columns
        out[col] = to_number(df[col])[0]
    out[SOURCE_FILE] = df[SOURCE_FILE].astype("str")
    out[SOURCE_LINE] = df[SOURCE_LINE].astype("int64")
    return out.reset_index(drop=True)


def clean_tables(raw: RawTables, *, today: date | None = None) -> CleanResult:
    """Apply the cleaning rules (docs/cleaning.md) to raw canonical tables.

    Parameters
    ----------
    raw
        Tables from :func:`analysis.ingest.read_dataset`.
    today
        Dates after this day are quarantined as ``future_date`` (default: today).

    Returns
    -------
    CleanResult
        Typed tables checked with :mod:`analysis.schemas`, the quarantine (file, line,
        column, value, reason, runner_id; merged duplicates included with their merge
        reason) and the
        per-file report ``{"files": {name: {read, kept, merged, quarantined, fixed,
        by_reason, fixes}}}``.

    Raises
    ------
    ConservationError
        If any input file's records do not add up (a bug).
    CleanContractBug
        If a clean table fails its schema (a bug in a rule, not a user error).
    """
    today = today or date.today()
    led = _Ledger()

    # runners
    runners = _common_rules(raw.runners, led, ("runner_id",))
    cohortless = _is_missing(runners["cohort"])
    cohortless_ids = set(runners.loc[cohortless, "runner_id"])
    runners = led.drop(runners, cohortless, reason="missing_cohort", column="cohort")
    runners = runners.assign(cohort=_text(runners["cohort"]))
    runners = led.drop(runners, _has_control(runners["cohort"]), reason="control_character",
                       column="cohort")
    if "sex" in runners:
        runners = runners.assign(sex=_text(runners["sex"]))
    runners = _optional_number(runners, "age", lo=0, hi=120)
    for col in ("hr_rest", "hr_max"):
        runners = _optional_number(runners, col, lo=HR_MIN_BPM, hi=HR_MAX_BPM)
    for col in ("follow_up_start", "follow_up_end"):
        runners = _optional_date(runners, col)
    if "_follow_up_start" in runners and "_follow_up_end" in runners:
        rev = runners["_follow_up_end"] < runners["_follow_up_start"]
        runners = _fix(runners, "invalid_optional_blanked", rev).assign(
            _follow_up_start=runners["_follow_up_start"].mask(rev),
            _follow_up_end=runners["_follow_up_end"].mask(rev),
        )
    key = [c for c in ("runner_id", "cohort", "sex", "_age", "_follow_up_start",
                       "_follow_up_end") if c in runners]
    runners = led.drop(runners, runners.duplicated(key, keep="first"),
                       reason="exact_duplicate", column="runner_id")
    runners = led.drop(runners, runners["runner_id"].duplicated(keep="first"),
                       reason="duplicate_runner_id", column="runner_id")
    cohortless_ids -= set(runners["runner_id"])

    # shoes
    shoes = _common_rules(raw.shoes, led, ("shoe_id", "runner_id"))
    shoes = shoes.assign(shoe_id=_text(shoes["shoe_id"]))
    shoes = _runner_filter(shoes, runners, cohortless_ids, led)
    shoes = _optional_date(shoes, "start_date")
    shoes = _optional_number(shoes, "start_km", lo=0)
    key = [c for c in ("shoe_id", "runner_id", "_start_date", "_start_km") if c in shoes]
    shoes = led.drop(shoes, shoes.duplicated(key, keep="first"), reason="exact_duplicate",
                     column="shoe_id")
    # a shoe is (runner_id, shoe_id): Strava's shoe_id is the gear's display name, which
    # two runners share ("Pegasus 38"); runs find their shoes row by the same pair
    shoes = led.drop(shoes, shoes.duplicated(["runner_id", "shoe_id"], keep="first"),
                     reason="duplicate_shoe_id", column="shoe_id")

    runs, pain = _clean_runs_and_pain(raw, runners, cohortless_ids, led, today)
    shoes, moved = _shoe_start_by_first_run(shoes, runs)

    out_runners = _final(runners, {"runner_id": "runner_id", "cohort": "cohort", "sex": "sex",
                                   "age": "_age", "follow_up_start": "_follow_up_start",
                                   "follow_up_end": "_follow_up_end", "hr_rest": "_hr_rest",
                                   "hr_max": "_hr_max"})
    out_shoes = _final(shoes, {"shoe_id": "shoe_id", "runner_id": "runner_id",
                               "start_date": "_start_date", "start_km": "_start_km"})
    out_runs = _final(runs, {"runner_id": "runner_id", "date": "_date",
                             "distance_km": "_distance_km", "duration_min": "_duration_min",
                             "shoe_id": "_shoe_id", "activity_type": "_activity_type",
                             "rpe": "_rpe", "start_time": "_start_time",
                             "avg_hr_bpm": "_avg_hr_bpm", "max_hr_bpm": "_max_hr_bpm",
                             "trimp_banister_au": "_trimp_banister_au",
                             "trimp_edwards_au": "_trimp_edwards_au"})
    out_pain = _final(pain, {"runner_id": "runner_id", "date": "_date", "pain": "_pain",
                             **{q: f"_{q}" for q in OSTRC_ITEMS}})
    quarantine = led.frame()
    kept = {"runners": runners, "shoes": shoes, "runs": runs, "pain": pain}
    report = _report(raw, kept, quarantine)
    if moved:
        report["notes"].append(
            f"{moved} shoe(s) had a start_date after their first logged run: start_date moved "
            "to that run's date (fix shoe_start_after_first_run)")
    runners_, runs_, pain_, shoes_ = _checked(out_runners, out_runs, out_pain, out_shoes)
    return CleanResult(runners=runners_, runs=runs_, pain=pain_, shoes=shoes_,
                       quarantine=quarantine, report=report)


def _clean_runs_and_pain(raw: RawTables, runners: pd.DataFrame, cohortless_ids: set[str],
                         led: _Ledger, today: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`_clean_runs` on a second thread while :func:`_clean_pain` runs on this one
    (their pandas and arrow kernels release the GIL: 2,000 x 365, 0.22-0.35 s -> 0.16-0.27
    s, three runs, 2-core VM). Each records into a ledger of its own, appended to ``led``
    runs first, as one after the other would; the quarantine sorts by file and line
    (stable) after that."""
    runs_led, pain_led = _Ledger(), _Ledger()
    with ThreadPoolExecutor(max_workers=1) as pool:
        # a copy of the small runners table for the thread: no pandas object (and no
        # lazily built index cache) is shared between the two
        runs_job = pool.submit(_clean_runs, raw.runs, runners.copy(deep=True),
                               set(cohortless_ids), runs_led, today)
        pain = _clean_pain(raw.pain, runners, cohortless_ids, pain_led, today)
        runs = runs_job.result()
    led.parts += runs_led.parts + pain_led.parts
    return runs, pain


def _checked(runners: pd.DataFrame, runs: pd.DataFrame, pain: pd.DataFrame,
             shoes: pd.DataFrame) -> tuple[pd.DataFrame, ...]:
    """The clean tables checked once each against their contracts
    (:func:`analysis.schemas.check_table`, the vectorised twin of the pandera schemas);
    a failure is a bug in a rule."""
    out = []
    for contract, table in ((RUNNERS_CONTRACT, runners), (RUNS_CONTRACT, runs),
                            (PAIN_CONTRACT, pain), (SHOES_CONTRACT, shoes)):
        try:
            out.append(check_table(table, contract))
        except DataContractError as exc:
            raise CleanContractBug(
                f"bug in analysis.clean: a cleaning rule let a value through that the "
                f"{contract.name} contract rejects ({exc}); please report it with the input "
                f"row") from exc
    return tuple(out)


def _shoe_start_by_first_run(shoes: pd.DataFrame, runs: pd.DataFrame
                             ) -> tuple[pd.DataFrame, int]:
    """Shoes whose ``start_date`` is after the first kept run logged with them get that run's
    date as ``start_date`` (fix ``shoe_start_after_first_run``), so ``shoe_age_days`` is
    never negative; returns the shoes and how many were moved."""
    if "_start_date" not in shoes or "_shoe_id" not in runs or not len(shoes):
        return shoes, 0
    first = runs.groupby(["runner_id", "_shoe_id"])["_date"].min()
    key = pd.MultiIndex.from_arrays([shoes["runner_id"], shoes["shoe_id"]])
    first_run = pd.Series(first.reindex(key).to_numpy(), index=shoes.index)
    late = (shoes["_start_date"] > first_run).fillna(False).astype(bool)
    if not late.any():
        return shoes, 0
    shoes = _fix(shoes, "shoe_start_after_first_run", late)
    return shoes.assign(_start_date=shoes["_start_date"].mask(late, first_run)), int(late.sum())


def _clean_runs(
    df: pd.DataFrame, runners: pd.DataFrame, cohortless: set[str], led: _Ledger, today: date
) -> pd.DataFrame:
    if ACTIVITY_ISSUE in df:
        df = led.drop(df, df[ACTIVITY_ISSUE].notna(), reason="unreadable_activity_file",
                      column="file", values=lambda bad: bad[ACTIVITY_ISSUE])
    df = _common_rules(df, led, ("runner_id", "date", "distance_km"))
    if "activity_type" in df:
        act = _text(df["activity_type"])
        codes, kinds = pd.factorize(act)  # a few distinct activity names: match each once
        running = np.asarray([bool(RUNNING_PATTERN.search(k)) for k in kinds], dtype=bool)
        not_run = pd.Series((codes >= 0) & ~np.r_[running, False][codes], index=act.index)
        df = led.drop(df.assign(_activity_type=act), not_run, reason="non_running_activity",
                      column="activity_type")
    df = _date_rules(df, led, today)
    dist, comma = to_number(df["distance_km"])
    df = _fix(df.assign(_distance_km=dist), "decimal_comma", comma)
    df = led.drop(df, df["_distance_km"].isna(), reason="distance_not_number",
                  column="distance_km")
    if "distance_unit" in df:
        unit = _text(df["distance_unit"]).str.lower()
        miles = unit.isin(["mi", "mile", "miles"])
        metres = unit.isin(["m", "metre", "metres", "meter", "meters"])
        known = unit.isna() | miles | metres | unit.isin(["km", "kilometre", "kilometres",
                                                          "kilometer", "kilometers"])
        df = led.drop(df, ~known, reason="unknown_distance_unit", column="distance_unit")
        factor = np.where(miles.reindex(df.index), KM_PER_MILE,
                          np.where(metres.reindex(df.index), 1 / M_PER_KM, 1.0))
        df = df.assign(_distance_km=df["_distance_km"] * factor)
        df = _fix(df, "miles_to_km", miles)
        df = _fix(df, "metres_to_km", metres)
    df = led.drop(df, df["_distance_km"] <= 0, reason="distance_not_positive",
                  column="distance_km")
    df = led.drop(df, df["_distance_km"] > MAX_DAILY_KM, reason="distance_over_daily_max",
                  column="distance_km")
    df = _optional_number(df, "duration_min", lo=0, lo_open=True)
    df = _optional_number(df, "rpe", lo=0, hi=10)
    df = _optional_number(df, "avg_hr_bpm", lo=HR_MIN_BPM, hi=HR_MAX_BPM)
    df = _optional_number(df, "max_hr_bpm", lo=HR_MIN_BPM, hi=HR_MAX_BPM)
    for col in ("trimp_banister_au", "trimp_edwards_au"):
        df = _optional_number(df, col, lo=0)
    if "_duration_min" in df:
        pace = df["_duration_min"] / df["_distance_km"]

        def shown(bad: pd.DataFrame) -> pd.Series:
            return pace[bad.index].map(lambda p: f"{p:.2f} min/km", na_action="ignore")

        df = led.drop(df, pace < MIN_PACE_MIN_PER_KM, reason="pace_too_fast",
                      column="duration_min", values=shown)
        df = led.drop(df, pace > MAX_PACE_MIN_PER_KM, reason="pace_too_slow",
                      column="duration_min", values=shown)
    if "shoe_id" in df:
        df = df.assign(_shoe_id=_text(df["shoe_id"]))
    if "start_time" in df:
        df = _start_time(df)
    df = _runner_filter(df, runners, cohortless, led)
    df = _follow_up(df, runners)
    df = led.drop(df, df["_date"] > df["_fu_end"], reason="outside_follow_up", column="date")
    key = [c for c in ("runner_id", "_start", "_distance_km", "_duration_min", "_shoe_id",
                       "_activity_type", "_rpe") if c in df]
    df = led.drop(df, _duplicated_within(df, key, ["_runner_row", "_start"]),
                  reason="exact_duplicate", column="distance_km")
    df = led.drop(df, _two_device(df), reason="two_device_duplicate", column="distance_km")
    # one run is at most MAX_DAILY_KM here, so only a runner's days with several runs can
    # add up to more: the sum is taken over those days only
    several = df[_shares_key(df, ["_runner_row", "_date"])]
    day_km = several.groupby(["_runner_row", "_date"])["_distance_km"].transform("sum")
    return led.drop(df, day_km > MAX_DAILY_KM, reason="daily_km_over_max",
                    column="distance_km",
                    values=lambda bad: day_km[bad.index].map(lambda v: f"{v:.2f} km that day",
                                                             na_action="ignore"))


#: Odd 64-bit multiplier (2^64 / golden ratio) folding several integer columns into one key.
_FOLD = np.uint64(0x9E3779B97F4A7C15)


def _shares_key(df: pd.DataFrame, coarse: list[str]) -> pd.Series:
    """Mask of rows whose ``coarse`` key another row may also have: a superset of
    ``df.duplicated(coarse, keep=False)`` (integer or datetime columns folded into one
    64-bit key by wrapping arithmetic: equal keys fold equally, a rare collision only adds
    a candidate, which the exact step after it then checks)."""
    columns = []
    for col in coarse:
        values = df[col].to_numpy()
        columns.append((values.view(np.int64) if values.dtype.kind == "M" else values)
                       .astype(np.int64, copy=False))
    # files usually list rows in key order: strictly increasing keys repeat none
    later, tie = np.zeros(max(len(df) - 1, 0), dtype=bool), None
    for values in columns:  # compared, not subtracted: no overflow at the int64 ends
        greater, equal = values[1:] > values[:-1], values[1:] == values[:-1]
        later |= greater if tie is None else (tie & greater)
        tie = equal if tie is None else (tie & equal)
    if later.all():
        return pd.Series(False, index=df.index)
    key = np.zeros(len(df), dtype=np.uint64)
    for values in columns:
        key = key * _FOLD + values.view(np.uint64)
    return pd.Series(pd.Index(key.view(np.int64)).duplicated(keep=False), index=df.index)


def _duplicated_within(df: pd.DataFrame, key: list[str], coarse: list[str]) -> pd.Series:
    """``df.duplicated(key, keep="first")``, computed only on rows whose ``coarse`` key
    (a subset of ``key``'s meaning: equal keys imply equal coarse keys) repeats; the same
    mask, without hashing every text column of every row."""
    shared = _shares_key(df, coarse)
    out = pd.Series(False, index=df.index)
    if shared.any():
        out[shared] = df[shared].duplicated(key, keep="first")
    return out


def _start_time(df: pd.DataFrame) -> pd.DataFrame:
    """``start_time``: a time of day (HH:MM[:SS]) combined with ``date``, or a datetime
    (typed by the reader, e.g. an activity file's local start, or ISO text)."""
    if pd.api.types.is_datetime64_any_dtype(df["start_time"]):
        dt = df["start_time"].astype("datetime64[us]")
        return df.assign(_start=dt.where(dt.notna(), df["_start"]),
                         _has_time=df["_has_time"] | dt.notna(), _start_time=dt)
    s = _text(df["start_time"])
    clock = s.str.fullmatch(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?").fillna(False).astype(bool)
    full = s.where(~clock, df["_date"].dt.strftime("%Y-%m-%d") + " " + s.str.zfill(5))
    dt, _ = to_datetime(full)
    has = dt.notna()
    df = _fix(df, "invalid_optional_blanked", s.notna() & ~has)
    return df.assign(_start=dt.where(has, df["_start"]), _has_time=df["_has_time"] | has,
                     _start_time=dt)


def _two_device(df: pd.DataFrame) -> pd.Series:
    """Mask of runs that repeat an earlier run of the same runner recorded by another device.

    Two runs are the same when both have a time of day, their intervals [start, start +
    duration] overlap (a missing duration is a zero-length interval) and their distances
    differ by at most :data:`TWO_DEVICE_DISTANCE_TOLERANCE` of the larger. The earlier
    record (by file, then line) is kept.
    """
    timed = df[df["_has_time"]]
    if len(timed) < 2:
        return pd.Series(False, index=df.index)
    timed = timed[_overlaps_any(timed)]  # a run that overlaps no other run is no duplicate
    if len(timed) < 2:
        return pd.Series(False, index=df.index)
    dur = timed["_duration_min"] if "_duration_min" in timed else pd.Series(np.nan,
                                                                           index=timed.index)
    t = pd.DataFrame({
        "runner_id": timed["runner_id"],
        "start": timed["_start"],
        "end": timed["_start"] + pd.to_timedelta(dur.fillna(0), unit="min"),
        "km": timed["_distance_km"],
        "order": np.arange(len(timed)),
        "row": timed.index,
    })
    # candidates start within MAX_RUN_SPAN_DAYS of each other (a run lasts at most 100 km
    # x 15 min/km = 25 h), so join on (runner, start day + offset), not on runner alone
    t["day"] = t["start"].dt.normalize()
    other = t.rename(columns=lambda c: c if c == "runner_id" else f"{c}_o")
    pairs = pd.concat([
        t.merge(other.assign(day=other["day_o"] + pd.Timedelta(days=off)),
                on=["runner_id", "day"])
        for off in range(-MAX_RUN_SPAN_DAYS, MAX_RUN_SPAN_DAYS + 1)
    ], ignore_index=True)
    pairs = pairs[pairs["order_o"] < pairs["order"]]
    overlap = (pairs["start"] <= pairs["end_o"]) & (pairs["start_o"] <= pairs["end"])
    close = (pairs["km"] - pairs["km_o"]).abs() <= TWO_DEVICE_DISTANCE_TOLERANCE * np.maximum(
        pairs["km"], pairs["km_o"])
    dup_rows = set(pairs.loc[overlap & close, "row"])
    return pd.Series(df.index.isin(list(dup_rows)), index=df.index)


def _running_max_by(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running maximum of int64 ``values`` within each stretch of equal, non-decreasing
    ``group`` codes (>= 0): one ``np.maximum.accumulate`` of the values lifted by their
    group's offset, so a maximum never crosses into the next group (17 -> 4 ms for the
    bench's 437,525 runs); ``groupby().cummax()`` when the lifted values would not fit in
    int64."""
    if not len(values):
        return values.copy()
    low = int(values.min())
    span = int(values.max()) - low + 1
    if (int(group[-1]) + 1) * span >= _INT64_KEY_LIMIT:
        return pd.Series(values).groupby(group, sort=False).cummax().to_numpy()
    lift = group.astype(np.int64) * span
    return np.maximum.accumulate(lift + (values - low)) - lift + low


def _overlaps_any(timed: pd.DataFrame) -> np.ndarray:
    """Mask of timed runs whose interval [start, start + duration] meets another run of the
    same runner (the only candidates of :func:`_two_device`).

    With a runner's runs sorted by start, run i meets an earlier-starting run iff its start
    is at most the largest end before it, and a later-starting run iff the next start is at
    most its end: two vector passes instead of pairing every run with its neighbours.
    """
    dur = (timed["_duration_min"].to_numpy(dtype=float) if "_duration_min" in timed
           else np.zeros(len(timed)))
    start = timed["_start"].to_numpy().astype("datetime64[us]").astype(np.int64)
    # rounded up by a microsecond: a superset of candidates is harmless, a missed one is not
    end = start + np.ceil(np.nan_to_num(dur) * 60e6).astype(np.int64) + 1
    runner = (timed["_runner_row"].to_numpy(dtype=np.int64) if "_runner_row" in timed
              else factorize(timed["runner_id"])[0].astype(np.int64))
    n = len(start)
    step_r, step_s = runner[1:] - runner[:-1], start[1:] >= start[:-1]
    if bool(np.all((step_r > 0) | ((step_r == 0) & step_s))):
        order = np.arange(n)  # files usually list a runner's runs in time order already
    else:
        order = np.lexsort((start, runner))
    r, s, e = runner[order], start[order], end[order]
    same_prev = np.r_[False, r[1:] == r[:-1]]
    # largest end among a runner's earlier-starting runs: a per-runner running maximum
    running = _running_max_by(r, e)
    prev_max = np.r_[np.iinfo(np.int64).min, running[:-1]]
    meets_earlier = same_prev & (s <= prev_max)
    same_next = np.r_[r[1:] == r[:-1], False]
    next_start = np.r_[s[1:], np.iinfo(np.int64).max]
    meets_later = same_next & (next_start <= e)
    out = np.zeros(len(s), dtype=bool)
    out[order] = meets_earlier | meets_later
    return out


def _clean_pain(
    df: pd.DataFrame, runners: pd.DataFrame, cohortless: set[str], led: _Ledger, today: date
) -> pd.DataFrame:
    df = _common_rules(df, led, ("runner_id", "date", "pain"))
    df = _date_rules(df, led, today)
    pain, comma = to_number(df["pain"])
    df = _fix(df.assign(_pain=pain), "decimal_comma", comma)
    df = led.drop(df, df["_pain"].isna(), reason="pain_not_number", column="pain")
    df = led.drop(df, (df["_pain"] < PAIN_MIN) | (df["_pain"] > PAIN_MAX),
                  reason="pain_out_of_range", column="pain")
    for item in OSTRC_ITEMS:
        df = _optional_number(df, item, allowed=OSTRC_VALID_ANSWERS)
    df = _runner_filter(df, runners, cohortless, led)
    df = _follow_up(df, runners)
    outside = (df["_date"] < df["_fu_start"]) | (df["_date"] > df["_fu_end"])
    df = led.drop(df, outside, reason="outside_follow_up", column="date")
    key = ["runner_id", "_date", "_pain", *[f"_{q}" for q in OSTRC_ITEMS if f"_{q}" in df]]
    df = led.drop(df, _duplicated_within(df, key, ["_runner_row", "_date"]),
                  reason="exact_duplicate", column="pain")
    superseded = superseded_same_day(df["runner_id"], df["_date"], df["_pain"])
    return led.drop(df, superseded, reason="same_day_pain_report", column="pain")


#: Largest key built from two integers (:func:`_ordered_pair_key`, :func:`_running_max_by`):
#: int64 with room.
_INT64_KEY_LIMIT = 1 << 62


def superseded_same_day(runner_id: pd.Series, day: pd.Series, pain: pd.Series) -> pd.Series:
    """The one same-day pain rule: mask of reports another report of the runner and day
    supersedes.

    Several reports on one day keep the highest pain (ties: the later row; a missing pain
    value is the lowest), so that a flare-up is never hidden by a second, calmer or empty
    report (issue 4, docs/cleaning.md).
    :func:`clean_tables` applies it (reason ``same_day_pain_report``);
    :func:`analysis.exposures.build_panel` applies the same function to tables that did
    not come through cleaning.

    Parameters
    ----------
    runner_id, day, pain
        Aligned series (same index): runner, calendar day (datetime64 or day number) and
        pain (NRS 0-10).
    """
    n = len(pain)
    runner = factorize(runner_id)[0].astype(np.int64)
    ordered = _ordered_pair_key(runner, day)
    if ordered is not None:
        # reports already in runner-then-day order (the build's files, cleaned in file
        # order): a shared key stands beside its twin, no hash pass
        same = ordered[1:] == ordered[:-1]
        beside = np.zeros(n, dtype=bool)
        beside[1:] |= same
        beside[:-1] |= same
        shared = np.flatnonzero(beside)
        days = ordered  # one value per (runner, day): groups as (runner, day) does
    else:
        days = pd.factorize(day)[0].astype(np.int64)
        # only reports sharing their (runner, day) with another can be superseded: one
        # hash pass finds them, and only those are sorted
        key = pd.Series(runner * (int(days.max(initial=0)) + 1) + days)
        shared = np.flatnonzero(key.duplicated(keep=False).to_numpy())
    dup = np.zeros(n, dtype=bool)
    if len(shared):
        # a missing pain value never supersedes a number (clean quarantines it first, as
        # pain_not_number; build_panel on tables that did not come through cleaning may
        # meet one): sorted as the lowest
        values = pain.to_numpy(dtype=float)[shared]
        values = np.where(np.isnan(values), -np.inf, values)
        # sorted by runner, day, pain, then row: each group's last row is the one kept
        order = np.lexsort((shared, values, days[shared], runner[shared]))
        key_r, key_d = runner[shared][order], days[shared][order]
        last = np.ones(len(shared), dtype=bool)
        last[:-1] = (key_r[1:] != key_r[:-1]) | (key_d[1:] != key_d[:-1])
        dup[shared[order]] = ~last
    return pd.Series(dup, index=pain.index)


def _ordered_pair_key(runner: np.ndarray, day: pd.Series) -> np.ndarray | None:
    """One int64 per (runner code, day) pair, increasing with runner then day, when the rows
    are already in that order (non-decreasing); None otherwise, or when ``day`` is not
    integer day numbers or midnight datetimes without NaT, or the key would not fit in
    int64 (then :func:`superseded_same_day` hashes the pairs). Equal pairs, and only
    they, get equal keys, so its groups are the hash path's
    (``tests/test_clean.py::test_same_day_rule_is_the_former_clean_rule``)."""
    n = len(runner)
    if n < 2 or runner.min() < 0:
        return None
    values = day.to_numpy()
    if values.dtype.kind == "M":
        # midnight datetimes only (a time of day: the hash path compares whole values)
        if pd.isna(values).any() or time_of_day(day).any():
            return None
        days = day_numbers(values)  # the one day number (analysis.keys)
    elif values.dtype.kind in "iu":
        days = values.astype(np.int64, copy=False)
    else:
        return None
    low, high = int(days.min()), int(days.max())
    span = high - low + 1
    if (int(runner.max()) + 1) * span >= _INT64_KEY_LIMIT:
        return None
    key = runner * span + (days - low)
    return key if (key[1:] >= key[:-1]).all() else None


def _report(raw: RawTables, kept: dict[str, pd.DataFrame], quarantine: pd.DataFrame) -> dict:
    """Per-file counts; raises ConservationError when read != kept + merged + quarantined."""
    fix_cols = sorted({c for t in kept.values() for c in t.columns if c.startswith("_fix_")})
    kept_n = count_files(kept)
    fixed_n: dict[str, int] = {}
    fix_n: dict[str, dict[str, int]] = {}
    for t in kept.values():
        present = [c for c in fix_cols if c in t]
        if not len(t) or not present:
            continue
        # each file's fixed records, coded as count_files codes them (no hash per row)
        codes, names = factorize(t[SOURCE_FILE])
        known = codes >= 0
        flags = t[present].to_numpy(dtype=bool)[known]
        code = codes[known]
        fixed = np.bincount(code, weights=flags.any(axis=1), minlength=len(names))
        per_column = [np.bincount(code, weights=flags[:, j], minlength=len(names))
                      for j in range(len(present))]
        for i, name in enumerate(str(n) for n in names):
            fixed_n[name] = fixed_n.get(name, 0) + int(fixed[i])
            per = fix_n.setdefault(name, {})
            for c, sums in zip(present, per_column, strict=True):
                per[c] = per.get(c, 0) + int(sums[i])
    raw_n = count_files(raw.tables())
    merged = quarantine["reason"].isin(list(MERGE_REASONS))
    by_file = quarantine.groupby("file", sort=False).groups if len(quarantine) else {}
    files: dict[str, dict] = {}
    names = sorted(set(raw.files) | set(raw_n))
    for name in names:
        rows = by_file.get(name, pd.Index([]))
        q = quarantine.loc[rows]
        m = int(merged[rows].sum())
        fix_counts = {c.removeprefix("_fix_"): fix_n.get(name, {}).get(c, 0) for c in fix_cols}
        entry = {
            "read": int(raw.files.get(name, 0)),
            "kept": kept_n.get(name, 0),
            "merged": m,
            "quarantined": len(q) - m,
            "fixed": fixed_n.get(name, 0),
            "by_reason": {str(k): int(v) for k, v in q["reason"].value_counts().sort_index()
                          .items()},
            "fixes": {k: v for k, v in fix_counts.items() if v},
        }
        if name in raw.file_info:
            info = raw.file_info[name]
            entry["encoding"] = info.encoding
            entry["lines"] = info.lines
        if entry["read"] != raw_n.get(name, 0) or \
                entry["read"] != entry["kept"] + entry["merged"] + entry["quarantined"]:
            raise ConservationError(
                f"{name}: read {entry['read']} (raw tables hold {raw_n.get(name, 0)}) != "
                f"kept {entry['kept']} + merged {m} + quarantined {entry['quarantined']}"
            )
        files[name] = entry
    return {"files": files, "format": raw.format, "notes": list(raw.notes)}
