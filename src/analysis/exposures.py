"""Daily calendar and the exposure panel (one row per pain report).

Every column is defined once in ``docs/exposures.md`` (formula, unit, reference) and computed
here without a Python loop per runner-day: the calendar is a complete daily grid per runner
(sorted by runner and day, contiguous), so a window of ``w`` days ending on row ``i`` is rows
``i-w+1..i`` and is valid when the runner has at least ``w`` days of follow-up up to row ``i``.
Each pain report on day ``t`` gets the features of its reference day ``s = t - L``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.clean import superseded_same_day
from analysis.defaults import DEFAULT_EXPOSURE_LAG_DAYS, DEFAULT_PAIN_THRESHOLD, PAIN_MAX, PAIN_MIN
from analysis.errors import DataContractError, KneeloadError
from analysis.keys import MISSING_DAY, day_dates, day_numbers, factorize, positions, stable_order

# OSTRC scoring lives in analysis.ostrc; its public names are re-exported from here (X as X)
from analysis.ostrc import OSTRC_CODINGS, ostrc_columns
from analysis.ostrc import OSTRC_O2_SCORES as OSTRC_O2_SCORES
from analysis.ostrc import OSTRC_SUBSTANTIAL_SCORE as OSTRC_SUBSTANTIAL_SCORE
from analysis.ostrc import ostrc_coding as infer_ostrc_coding
from analysis.ostrc import ostrc_scores as ostrc_scores
from analysis.schemas import OSTRC_ITEMS

# --- constants (docs/exposures.md) ---------------------------------------------------------
# DEFAULT_EXPOSURE_LAG_DAYS (7) and DEFAULT_PAIN_THRESHOLD (3.0) live in analysis.defaults
ACUTE_DAYS = 7  # acute window (Hulin et al. 2016; Gabbett 2016)
CHRONIC_DAYS = 28  # chronic window (Hulin et al. 2016; Gabbett 2016)
#: Week-over-week jump bands: < 10 %, 10-30 %, > 30 % (Nielsen et al. 2014, JOSPT 44:739).
NIELSEN_BANDS = (0.10, 0.30)
JUMP_CATEGORIES = ("<10%", "10-30%", ">30%")
#: 21+ consecutive days without a run inside follow-up are flagged as possibly unlogged.
UNLOGGED_GAP_MIN_DAYS = 21
UNLOGGED_GAP_POLICIES = ("rest", "missing")
#: EWMA smoothing conventions: Williams et al. 2017 (2/(N+1)), GoldenCheetah (1-e^(-1/N)),
#: intervals.icu / TrainingPeaks (1/N).
DECAYS = ("williams", "exp", "inverse")
#: Fitness (chronic) and fatigue (acute) time constants in days (Banister et al. 1975;
#: the 42/7-day performance-management-chart defaults, Allen & Coggan 2010).
CTL_DAYS = 42
ATL_DAYS = 7
#: Days of training history before ``follow_up_start`` the calendar holds (its lead-in), so
#: that the longest window, the 42-day fitness EWMA (and the 28-day chronic window inside
#: it), is warm on the first follow-up day. The lead-in starts at the runner's first logged
#: run when that is later (before the first logged run nothing is known: no rest days), and
#: its rows carry ``in_follow_up`` False: they feed the windows, never the panel.
LEAD_IN_DAYS = CTL_DAYS
#: A run more than 10 % longer than the longest run in the previous 30 days is a spike
#: (Frandsen et al. 2025, BJSM).
RUN_SPIKE_RATIO = 1.10
RUN_SPIKE_LOOKBACK_DAYS = 30
#: Shoes used in the last 30 days count as "in rotation".
ROTATION_DAYS = 30
#: Per-run heart-rate loads (:mod:`analysis.hrload`, AU) summed per day when the runs carry
#: them: Banister 1991 TRIMP and Edwards 1993 zone TRIMP.
TRIMP_COLUMNS = ("trimp_banister_au", "trimp_edwards_au")
#: Daily loads other than km that feed the same windows (:func:`load_windows`), as daily
#: column -> feature prefix: ``<prefix>_7d``, ``<prefix>_acwr_ewma``, ... (docs/exposures.md).
LOAD_PREFIXES = {"srpe_au": "srpe", "duration_min": "duration",
                 "trimp_banister_au": "trimp_banister", "trimp_edwards_au": "trimp_edwards"}
#: Every window feature of a daily load (:func:`load_windows`).
LOAD_WINDOWS = ("7d", "prev7d", "28d", "acwr_rolling", "acwr_uncoupled", "acwr_ewma", "ctl",
                "atl", "tsb")
#: The window features of the loads in :data:`LOAD_PREFIXES` (km has all of LOAD_WINDOWS).
OTHER_LOAD_WINDOWS = ("7d", "28d", "acwr_rolling", "acwr_ewma")
#: km's window features keep their historical names (``acwr_rolling``, not ``km_acwr_...``).
KM_WINDOW_NAMES = {"7d": "km_7d", "prev7d": "km_prev7d", "28d": "km_28d"}

#: Threads for independent groups of feature columns (at most three groups run at once).
_FEATURE_THREADS = max(1, min(3, os.cpu_count() or 1))
#: Cells (rows x columns) from which :func:`_take` gathers its columns on threads.
_THREADED_TAKE_CELLS = 1_000_000


@dataclass
class PanelBuild:
    """The exposure panel, the daily calendar it came from, metadata and an audit.

    Attributes
    ----------
    panel
        One row per pain report ``(runner_id, date)`` with exposures at ``reference_date``.
    daily
        One row per runner and calendar day of follow-up and of its lead-in
        (``in_follow_up`` False, :data:`LEAD_IN_DAYS`), with every daily feature.
    meta
        Options the panel was built with (``exposure_lag_days``, ``pain_threshold``, ...).
    audit
        What was merged, dropped or flagged, as counts and JSON-ready rows.
    """

    panel: pd.DataFrame
    daily: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)


# --- helpers ---------------------------------------------------------------------------------


def _require(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataContractError(f"{name} table lacks required column(s) {missing}",
                                column=missing[0])


def _runner_key(codes: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One sortable int64 per (runner code, day)."""
    return codes.astype(np.int64) * (1 << 32) + (days + (1 << 31))


def _shift(values: np.ndarray, days: int) -> np.ndarray:
    """Row ``i`` takes row ``i - days`` (callers mask rows that cross a runner)."""
    out = np.full(values.shape, np.nan)
    if days < len(values):
        out[days:] = values[: len(values) - days]
    return out


def _take(table: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """Rows of ``table`` by position; position -1 gives a missing row (NaN / NA)."""
    hit = rows >= 0
    safe = np.where(hit, rows, 0)

    def column(values: pd.Series) -> Any:
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = np.where(hit, values.cat.codes.to_numpy()[safe] if len(values) else -1, -1)
            return pd.Categorical.from_codes(codes, dtype=values.dtype)
        if values.dtype == "boolean":
            taken = values.array[safe] if len(values) else pd.array([pd.NA] * len(rows),
                                                                    dtype="boolean")
            taken[~hit] = pd.NA
            return taken
        arr = values.to_numpy(dtype=float)
        return np.where(hit, arr[safe], np.nan) if len(arr) else np.full(len(rows), np.nan)

    # the columns are independent gathers (numpy's take and where release the GIL): on
    # _FEATURE_THREADS threads when the table is large (2 million panel rows: 1.9 s alone)
    # (each thread gets its column as a Series taken out here: no pandas object is shared)
    columns = [table[col] for col in table.columns]
    if len(rows) * len(columns) < _THREADED_TAKE_CELLS:
        taken = [column(values) for values in columns]
    else:
        with ThreadPoolExecutor(max_workers=_FEATURE_THREADS) as pool:
            taken = list(pool.map(column, columns))
    return pd.DataFrame(dict(zip(table.columns, taken, strict=True)), copy=False)


def _masked(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, values, np.nan)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``; NaN (never inf) when ``den`` is 0 or NaN."""
    ok = np.isfinite(den) & (den != 0)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=ok)
    return out


# --- daily calendar --------------------------------------------------------------------------


def _runner_universe(runners: pd.DataFrame) -> pd.Index:
    """The distinct runner IDs of the runners table, sorted (runner codes index into it)."""
    return pd.Index(pd.unique(runners["runner_id"].astype("str").dropna())).sort_values()


@dataclass
class _Grid:
    """Internals of the calendar shared by the feature code (all integer arrays)."""

    runner_ids: pd.Index  # runners with a follow-up window, sorted; codes index into it
    code: np.ndarray  # runner code of each grid row
    day: np.ndarray  # day number of each grid row
    in_follow_up: np.ndarray  # bool: the row is a follow-up day (False in the lead-in)
    runs: pd.DataFrame  # runs in total order: runner, day, distance_km, shoe, row
    shoe_keys: pd.MultiIndex  # (runner_id, shoe_id) pairs, sorted; runs["shoe"] indexes it
    has_shoes: bool
    loads: tuple[str, ...] = ()  # daily load columns of LOAD_PREFIXES the runs can fill


def _follow_up_windows(runners: pd.DataFrame, run_code: np.ndarray, run_day: np.ndarray,
                       ids: pd.Index, *, report_code: np.ndarray | None = None,
                       report_day: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calendar start, follow-up start and follow-up end day per runner (float day numbers,
    NaN = no window).

    Start: ``follow_up_start``, else the first logged run. End: ``follow_up_end``, else the
    later of the last logged run and the last pain report (``report_code``/``report_day``:
    each report's position in ``ids`` and day number), so a runner who stops running and
    keeps reporting is followed, with rest days, to the last report. The calendar starts
    :data:`LEAD_IN_DAYS` before follow-up, or at the first logged run when that is later.
    """
    n = len(ids)
    known = run_code >= 0
    first_run = np.full(n, np.inf)
    last = np.full(n, -np.inf)
    np.minimum.at(first_run, run_code[known], run_day[known].astype(float))
    np.maximum.at(last, run_code[known], run_day[known].astype(float))
    if report_code is not None and report_day is not None:
        mine = report_code >= 0
        np.maximum.at(last, report_code[mine], report_day[mine].astype(float))
    first = first_run.copy()
    order = positions(runners["runner_id"], ids)
    for col, target in (("follow_up_start", first), ("follow_up_end", last)):
        if col in runners.columns:
            given = runners[col]
            ok = given.notna().to_numpy() & (order >= 0)
            target[order[ok]] = day_numbers(given[ok]).astype(float)
    valid = np.isfinite(first) & np.isfinite(last) & (last >= first)
    lead = np.where(first_run < first, np.maximum(first - LEAD_IN_DAYS, first_run), first)
    return (np.where(valid, lead, np.nan), np.where(valid, first, np.nan),
            np.where(valid, last, np.nan))


_SECONDS_PER_DAY = 86_400


def _time_of_day_rank(start_time: pd.Series) -> np.ndarray:
    """Second of the day of each run's start, plus 1 (0 = missing or unreadable).

    Accepts datetimes or text: a clock time ``H:MM[:SS]`` or a full date-time; "7:05" sorts
    before "17:00" (times are compared as seconds since midnight, not as text).
    """
    if pd.api.types.is_datetime64_any_dtype(start_time):
        seconds = start_time.to_numpy().astype("datetime64[s]")
        missing = np.isnat(seconds)
        of_day = seconds.astype(np.int64) % _SECONDS_PER_DAY + 1
        return np.where(missing, 0, of_day)
    # text: parse each distinct value once (a log has few distinct clock times)
    codes, uniques = pd.factorize(start_time.astype("str"))
    text = pd.Series(np.asarray(uniques, dtype=object), dtype="str").str.strip()
    clock = text.str.fullmatch(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?").fillna(False).astype(bool)
    padded = text.where(~clock | text.str.count(":").eq(2), text + ":00")
    since_midnight = pd.to_timedelta(padded.where(clock), errors="coerce")
    stamps = pd.to_datetime(text.where(~clock), errors="coerce", format="ISO8601")
    since_midnight = since_midnight.fillna(stamps - stamps.dt.normalize())
    unique_s = since_midnight.to_numpy(dtype="timedelta64[s]").astype(np.int64) + 1
    unique_s[since_midnight.isna().to_numpy()] = 0
    unique_s = np.clip(unique_s, 0, _SECONDS_PER_DAY)
    return np.where(codes >= 0, unique_s[np.maximum(codes, 0)] if len(unique_s) else 0, 0)


def _shoe_codes(runs: pd.DataFrame) -> tuple[np.ndarray, pd.MultiIndex]:
    """Code of each run's shoe (-1: none) and the sorted ``(runner_id, shoe_id)`` pairs.

    A shoe belongs to one runner: Strava's ``shoe_id`` is the gear's display name, so two
    runners' "Pegasus 38" are two shoes with separate km.
    """
    n = len(runs)
    shoe = np.full(n, -1, dtype=np.int64)
    empty = pd.MultiIndex.from_arrays([pd.Index([], dtype="str")] * 2,
                                      names=["runner_id", "shoe_id"])
    if "shoe_id" not in runs.columns:
        return shoe, empty
    runner, runner_ids = factorize(runs["runner_id"].astype("str"), sort=True)
    name, names = pd.factorize(runs["shoe_id"].astype("str"), sort=True)
    ok = (name >= 0) & (runner >= 0)
    if not ok.any():
        return shoe, empty
    pair = runner[ok].astype(np.int64) * len(names) + name[ok]
    shoe[ok], pairs = pd.factorize(pair, sort=True)
    keys = pd.MultiIndex.from_arrays(
        [pd.Index(runner_ids).take(pairs // len(names)),
         pd.Index(names).take(pairs % len(names))], names=["runner_id", "shoe_id"])
    return shoe, keys


def _ordered_runs(runs: pd.DataFrame,
                  ids: pd.Index) -> tuple[pd.DataFrame, pd.MultiIndex]:
    """Runs as integer codes, in a total order that does not depend on input row order.

    Within a day, runs are ordered by ``start_time`` when present, then distance and shoe, so
    "the latest run of the day" is well defined.
    """
    n = len(runs)
    runner = positions(runs["runner_id"], ids)
    day = day_numbers(runs["date"])
    km = runs["distance_km"].to_numpy(dtype=float)
    shoe, shoe_keys = _shoe_codes(runs)
    start = (_time_of_day_rank(runs["start_time"]) if "start_time" in runs.columns
             else np.zeros(n, dtype=np.int64))
    # one composite int64 key (runner, day, start time) keeps the sort to three keys
    dmin = int(day.min()) if n else 0
    span = int(day.max()) - dmin + 1 if n else 1
    n_start = _SECONDS_PER_DAY + 1
    composite = ((runner.astype(np.int64) + 1) * span + (day - dmin)) * n_start + start
    order = np.argsort(composite, kind="stable")
    # runs sharing runner, day and start time (rare with start times) are then ordered by
    # distance and shoe; only those rows go through the slower three-key sort
    ranked = composite[order]
    tied = np.zeros(n, dtype=bool)
    if n > 1:
        same = ranked[1:] == ranked[:-1]
        tied[1:] |= same
        tied[:-1] |= same
    if tied.any():
        rows = order[tied]
        order[tied] = rows[np.lexsort((np.asarray(shoe)[rows], km[rows], composite[rows]))]
    out = pd.DataFrame({
        "runner": runner[order], "day": day[order], "distance_km": km[order],
        "shoe": np.asarray(shoe)[order],
        "duration_min": (runs["duration_min"].to_numpy(dtype=float)[order]
                         if "duration_min" in runs.columns else np.full(n, np.nan)),
        "rpe": (runs["rpe"].to_numpy(dtype=float)[order] if "rpe" in runs.columns
                else np.full(n, np.nan)),
        **{c: runs[c].to_numpy(dtype=float)[order] for c in TRIMP_COLUMNS
           if c in runs.columns},
    }, copy=False)
    return out, shoe_keys


def daily_calendar(
    runs: pd.DataFrame,
    runners: pd.DataFrame,
    *,
    pain: pd.DataFrame | None = None,
    unlogged_gaps: str = "rest",
) -> pd.DataFrame:
    """One row per runner and calendar day of follow-up and of its lead-in.

    Parameters
    ----------
    runs
        Clean runs (``runner_id``, ``date``, ``distance_km``; optional ``duration_min``,
        ``rpe``, ``shoe_id``, ``start_time``, ``trimp_banister_au``, ``trimp_edwards_au``).
        Runs before follow-up start feed the lead-in.
    runners
        Clean runners (``runner_id``; optional ``follow_up_start``, ``follow_up_end``).
        Without ``follow_up_start`` follow-up starts on the first logged run day; without
        ``follow_up_end`` it ends on the last logged run day or the last pain report in
        ``pain``, whichever is later.
    pain
        Pain reports (``runner_id``, ``date``), only to end follow-up where
        ``follow_up_end`` is not given; None: the last run ends it.
    unlogged_gaps
        ``"rest"`` (default): days without a run are rest days (0 km). ``"missing"``: days in a
        gap of ``UNLOGGED_GAP_MIN_DAYS`` or more days without a run have ``distance_km`` NaN.

    Returns
    -------
    pandas.DataFrame
        ``runner_id``, ``date``, ``day_index`` (days since follow-up start: negative in the
        lead-in), ``in_follow_up`` (bool: False in the lead-in of up to
        :data:`LEAD_IN_DAYS` days, which starts at the first logged run), ``distance_km``
        (sum over the day's runs, 0 on rest days), ``n_runs``, ``longest_run_km``,
        ``duration_min``, ``srpe_au`` (sum of rpe x duration_min, arbitrary units),
        ``rest_day`` (nullable boolean, NA on missing days), ``unlogged_gap`` (bool),
        ``shoe_id`` (shoe of the day's latest run), and ``trimp_banister_au``,
        ``trimp_edwards_au`` (AU) when the runs carry them. A load is 0 on a rest day and NaN
        on a day with a run that lacks it. Sorted by runner and date.
    """
    _check_choice("unlogged_gaps", unlogged_gaps, UNLOGGED_GAP_POLICIES)
    report = None
    if pain is not None:
        _require(pain, ("runner_id", "date"), "pain")
        report = (positions(pain["runner_id"], _runner_universe(runners)),
                  day_numbers(pain["date"]))
    return _calendar(runs, runners, unlogged_gaps=unlogged_gaps, reports=report)[0]


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """The one check of a string option (public functions call it once, helpers never)."""
    if value not in choices:
        raise KneeloadError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def _calendar(
    runs: pd.DataFrame, runners: pd.DataFrame, *, unlogged_gaps: str,
    reports: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, _Grid]:
    """The daily calendar and its integer internals (kept for shoe and spike features).

    ``unlogged_gaps`` was validated by the public caller. ``reports``: each pain report's
    position in :func:`_runner_universe` and its day number (they end follow-up where
    ``follow_up_end`` is not given).
    """
    _require(runs, ("runner_id", "date", "distance_km"), "runs")
    _require(runners, ("runner_id",), "runners")
    all_ids = _runner_universe(runners)
    ordered, shoe_keys = _ordered_runs(runs, all_ids)
    lead, first, last = _follow_up_windows(
        runners, ordered["runner"].to_numpy(), ordered["day"].to_numpy(), all_ids,
        report_code=None if reports is None else reports[0],
        report_day=None if reports is None else reports[1])
    has_window = np.isfinite(first)
    ids = all_ids[has_window]
    remap = np.full(len(all_ids) + 1, -1)
    remap[np.flatnonzero(has_window)] = np.arange(has_window.sum())
    ordered["runner"] = remap[ordered["runner"].to_numpy()]  # -1 stays -1 (last slot)
    begin = lead[has_window].astype(np.int64)
    start = first[has_window].astype(np.int64)
    end = last[has_window].astype(np.int64)
    code, position, offsets = _grid_rows(begin, end)
    day = begin[code] + position
    day_index = day - start[code]
    in_follow_up = day_index >= 0
    ordered["row"] = _grid_row_of_runs(ordered, begin, end, offsets)
    trimp = [c for c in TRIMP_COLUMNS if c in runs.columns]
    totals = _day_totals(ordered[ordered["row"].to_numpy() >= 0], len(code),
                         has_duration="duration_min" in runs.columns,
                         has_rpe="rpe" in runs.columns, trimp=trimp)
    gap = _unlogged_gap_days(totals["n_runs"], code)
    rest_day = pd.array(totals["n_runs"] == 0, dtype="boolean")
    if unlogged_gaps == "missing":
        for col in ("distance_km", "duration_min", "srpe_au", "longest_run_km", *trimp):
            totals[col][gap] = np.nan
        rest_day[gap] = pd.NA
    shoe_str = pd.array(np.asarray(shoe_keys.get_level_values("shoe_id"), dtype=object),
                        dtype="str")
    daily = pd.DataFrame({
        "runner_id": pd.array(np.asarray(ids, dtype=object), dtype="str").take(code),
        "date": day_dates(day),
        "day_index": day_index,
        "in_follow_up": in_follow_up,
        "distance_km": totals["distance_km"],
        "n_runs": totals["n_runs"],
        "longest_run_km": totals["longest_run_km"],
        "duration_min": totals["duration_min"],
        "srpe_au": totals["srpe_au"],
        "rest_day": rest_day,
        "unlogged_gap": gap,
        "shoe_id": shoe_str.take(totals["shoe"], allow_fill=True),
        **{c: totals[c] for c in trimp},
    }, copy=False)
    has_duration = "duration_min" in runs.columns
    loads = (*(("srpe_au",) if has_duration and "rpe" in runs.columns else ()),
             *(("duration_min",) if has_duration else ()), *trimp)
    grid = _Grid(runner_ids=ids, code=code, day=day, in_follow_up=in_follow_up, runs=ordered,
                 shoe_keys=shoe_keys, has_shoes=bool((ordered["shoe"] >= 0).any()),
                 loads=loads)
    return daily, grid


def _grid_rows(start: np.ndarray, end: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runner code and position (days since the runner's first calendar day) of every grid
    row, and each runner's first row, for calendars ``start..end`` (day numbers, inclusive)."""
    lengths = end - start + 1
    offsets = np.r_[0, np.cumsum(lengths)][:-1].astype(np.int64)
    code = np.repeat(np.arange(len(start)), lengths)
    day_index = (np.arange(int(lengths.sum())) - np.repeat(offsets, lengths)).astype(np.int64)
    return code, day_index, offsets


def _grid_row_of_runs(ordered: pd.DataFrame, start: np.ndarray, end: np.ndarray,
                      offsets: np.ndarray) -> np.ndarray:
    """The grid row of each run, -1 for runs outside their runner's calendar."""
    run_code = ordered["runner"].to_numpy()
    run_day = ordered["day"].to_numpy()
    if not len(start):
        return np.full(len(run_code), -1, dtype=np.int64)
    safe = np.maximum(run_code, 0)
    inside = (run_code >= 0) & (run_day >= start[safe]) & (run_day <= end[safe])
    return np.where(inside, offsets[safe] + run_day - start[safe], -1)


def _day_totals(on: pd.DataFrame, n: int, *, has_duration: bool, has_rpe: bool,
                trimp: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Per grid row, from the runs placed on it (in total order): km, runs, longest run (km),
    minutes, session RPE load and the ``trimp`` columns (each NaN when any run of the day
    lacks it, 0 on a day without runs) and the shoe code of the day's latest run (-1: none)."""
    rows = on["row"].to_numpy(dtype=np.int64)
    km = on["distance_km"].to_numpy(dtype=float)
    longest = np.zeros(n)
    np.maximum.at(longest, rows, km)
    minutes = on["duration_min"].to_numpy(dtype=float)
    load = on["rpe"].to_numpy(dtype=float) * minutes

    def total_unless_missing(values: np.ndarray, present: bool) -> np.ndarray:
        out = np.bincount(rows, weights=np.nan_to_num(values), minlength=n).astype(float)
        out[np.bincount(rows, weights=np.isnan(values), minlength=n) > 0] = np.nan
        if not present:
            out[:] = np.nan
        return out

    day_shoe = np.full(n, -1)
    last_of_day = np.r_[rows[1:] != rows[:-1], True] if len(rows) else np.zeros(0, bool)
    day_shoe[rows[last_of_day]] = on["shoe"].to_numpy()[last_of_day]
    return {
        "distance_km": np.bincount(rows, weights=km, minlength=n).astype(float),
        "n_runs": np.bincount(rows, minlength=n).astype(np.int64),
        "longest_run_km": longest,
        "duration_min": total_unless_missing(minutes, has_duration),
        "srpe_au": total_unless_missing(load, has_duration and has_rpe),
        "shoe": day_shoe,
        **{c: total_unless_missing(on[c].to_numpy(dtype=float), True) for c in trimp},
    }


def _unlogged_gap_days(n_runs: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Days in a run of :data:`UNLOGGED_GAP_MIN_DAYS` or more consecutive days without a run
    (per runner: a block never crosses two runners)."""
    n = len(n_runs)
    rest = n_runs == 0
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = (rest[1:] != rest[:-1]) | (code[1:] != code[:-1])
    block = np.cumsum(new_block) - 1
    block_len = np.bincount(block) if n else np.zeros(0, dtype=np.int64)
    return rest & (block_len[block] >= UNLOGGED_GAP_MIN_DAYS)


# --- features on the daily grid --------------------------------------------------------------


def _window_count(flags: np.ndarray, width: int, *, cumulative: bool = False) -> np.ndarray:
    """How many flags are set in rows ``i-width+1..i`` (exact integer arithmetic).

    With ``cumulative=True`` ``flags`` is already the running count.
    """
    c = flags if cumulative else np.cumsum(flags, dtype=np.int64)
    prev = np.zeros_like(c)
    prev[width:] = c[:-width]
    return c - prev


class _Windows:
    """Trailing windows on the grid that never cross a segment (a runner's known stretch).

    A runner's calendar starts where ``day_index`` does not continue the previous row's
    (a runner's last ``day_index`` is >= 0, the next runner's first <= 0). ``known``
    (default: ``distance_km`` is known) says which days hold a value.
    """

    def __init__(self, daily: pd.DataFrame, *, known: np.ndarray | None = None) -> None:
        n = len(daily)
        if known is None:
            known = daily["distance_km"].notna().to_numpy()
        day_index = daily["day_index"].to_numpy()
        runner_start = np.ones(n, dtype=bool)
        if n:
            runner_start[1:] = day_index[1:] != day_index[:-1] + 1
        self._init(runner_start, known)

    def _init(self, runner_start: np.ndarray, known: np.ndarray) -> None:
        n = len(runner_start)
        new = runner_start.copy()
        if n:
            new[1:] |= known[1:] != known[:-1]
        self.seg_id = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        self.seg_start = starts[self.seg_id] if n else np.zeros(0, dtype=np.int64)
        self.seg_pos = np.arange(n) - self.seg_start
        self.known = known
        self._runner_start = runner_start
        self._prefix: dict[int, tuple[np.ndarray, ...]] = {}

    def within(self, known: np.ndarray) -> _Windows:
        """The windows of the same calendar whose segments are the stretches of ``known``
        days (a subset of this one's known days); ``self`` when that changes nothing."""
        if np.array_equal(known, self.known):
            return self
        out = object.__new__(_Windows)
        out._init(self._runner_start, known)
        return out

    def prime(self, values: np.ndarray) -> None:
        """Compute the prefix sums of ``values`` now (before threads share this object)."""
        self._prefixes(values)

    def _prefixes(self, values: np.ndarray) -> tuple[np.ndarray, ...]:
        """Cumulative sum and running counts of NaN and non-zero values (cached, since one
        series feeds several windows).

        Whole numbers (day counts, flags) are summed exactly in int64 over the whole grid;
        other values per segment in float, so rounding stays at the scale of one runner.
        """
        key = id(values)
        if key not in self._prefix:
            v = values.astype(float)
            nan = np.isnan(v)
            filled = np.where(nan, 0.0, v)
            nan_count = np.cumsum(nan, dtype=np.int64) if nan.any() else None
            whole = filled == np.round(filled)
            if whole.all() and (np.abs(filled) < 2**40).all():
                # one exact running total over the whole grid; nothing to reset per segment
                cs = np.r_[0, np.cumsum(filled.astype(np.int64))]
                nonzero_count = None  # exact: a window of zeros is 0 already
            else:
                cs = pd.Series(filled).groupby(self.seg_id).cumsum().to_numpy()
                nonzero_count = np.cumsum(filled != 0, dtype=np.int64)
            self._prefix[key] = (values, cs, nan_count, nonzero_count)
        return self._prefix[key][1:]

    def valid(self, width: int, offset: int = 0) -> np.ndarray:
        return self.seg_pos >= width - 1 + offset

    def sum(self, values: np.ndarray, width: int, offset: int = 0) -> np.ndarray:
        """Sum over rows ``i-offset-width+1 .. i-offset``; NaN if any value is NaN.

        Per-segment cumulative sums (so rounding stays at the scale of one runner's total);
        windows holding only zeros are exactly 0.
        """
        cs, nan_count, nonzero_count = self._prefixes(values)
        n = len(values)
        if len(cs) == n + 1:  # exact whole-grid running total, cs[0] = 0
            # row i: cs[i + 1] - cs[max(i + 1 - width, 0)]
            lower = np.concatenate([np.zeros(min(width - 1, n), dtype=cs.dtype),
                                    cs[: max(n - width + 1, 0)]])
            total = (cs[1:] - lower).astype(float)
        else:  # per-segment running total
            before = np.where(self.seg_pos >= width, _shift(cs, width), 0.0)
            total = cs - before
        # a window of zeros is exactly 0 (pandas' compensated cumsum can leave a ~1e-15
        # residue, which made km_prev7d 3.6e-15 and mileage_jump 5e15; simulate seed 2026)
        if nonzero_count is not None:
            total[_window_count(nonzero_count, width, cumulative=True) == 0] = 0.0
        if nan_count is not None:
            total[_window_count(nan_count, width, cumulative=True) > 0] = np.nan
        if offset:
            total = _shift(total, offset)
        return _masked(total, self.valid(width, offset))

    def extreme(self, values: np.ndarray, width: int, offset: int = 0, *,
                lowest: bool = False) -> np.ndarray:
        """Max (or min) over the window; NaN if any value is NaN."""
        v = values.astype(float)
        nan = np.isnan(v)
        # rows before ``width - 1`` are never valid (``valid`` masks them): leave them NaN
        trailing = np.full(len(v), np.nan)
        if len(v) >= width:
            trailing[width - 1:] = _sliding_extreme(np.where(nan, 0.0, v), width,
                                                    lowest=lowest)
        if nan.any():
            trailing[_window_count(nan, width) > 0] = np.nan
        if offset:
            trailing = _shift(trailing, offset)
        return _masked(trailing, self.valid(width, offset))

    def sample_sd(self, values: np.ndarray, width: int) -> np.ndarray:
        """Sample standard deviation (ddof 1); exactly 0 when the window is constant."""
        mean = self.sum(values, width) / width
        n = len(values)
        v = values.astype(float)
        squares = np.zeros(n)
        high = np.full(n, -np.inf)
        low = np.full(n, np.inf)
        x = np.empty(n)
        for lag in range(width):
            # x = _shift(v, lag) and squares += (x - mean) ** 2, in place (same arithmetic)
            k = min(lag, n)
            x[:k] = np.nan
            x[k:] = v[: n - k]
            np.maximum(high, x, out=high)
            np.minimum(low, x, out=low)
            np.subtract(x, mean, out=x)
            np.square(x, out=x)
            squares += x
        sd = np.sqrt(squares / (width - 1))
        return np.where(high == low, 0.0, sd)  # NaN windows stay NaN through ``mean``


def _shoe_features(grid: _Grid, shoes: pd.DataFrame | None) -> pd.DataFrame:
    """``shoe_km`` and ``shoe_age_days`` for the shoe of the latest run on or before each day.

    Uses every logged run (also before follow-up): km on a shoe is a property of the shoe.
    """
    n = len(grid.code)
    shoe_km = np.full(n, np.nan)
    age = np.full(n, np.nan)
    if not grid.has_shoes or n == 0:
        return pd.DataFrame({"shoe_km": shoe_km, "shoe_age_days": age})
    runs = grid.runs
    shoe = runs["shoe"].to_numpy()
    day = runs["day"].to_numpy()
    km = runs["distance_km"].to_numpy(dtype=float)
    used = shoe >= 0
    key = _runner_key(shoe[used], day[used])
    order = np.argsort(key, kind="stable")
    key, km_used = key[order], km[used][order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    shoe_day_key = key[starts]
    shoe_of = (shoe_day_key >> 32).astype(np.int64)
    day_of = (shoe_day_key & 0xFFFFFFFF) - (1 << 31)
    cum_km = pd.Series(np.add.reduceat(km_used, starts)).groupby(shoe_of).cumsum().to_numpy()

    n_shoes = len(grid.shoe_keys)
    start_km = np.zeros(n_shoes)
    start_day = np.full(n_shoes, np.nan)
    first_of_shoe = np.r_[True, shoe_of[1:] != shoe_of[:-1]]
    start_day[shoe_of[first_of_shoe]] = day_of[first_of_shoe]
    if shoes is not None and len(shoes):
        _require(shoes, ("shoe_id", "runner_id"), "shoes")
        # a shoes row describes the shoe of that runner (shoe names repeat across runners)
        at = grid.shoe_keys.get_indexer(pd.MultiIndex.from_arrays(
            [shoes["runner_id"].astype("str"), shoes["shoe_id"].astype("str")]))
        ok = at >= 0
        if "start_km" in shoes.columns:
            given = shoes["start_km"].to_numpy(dtype=float)
            fill = ok & ~np.isnan(given)
            start_km[at[fill]] = given[fill]
        if "start_date" in shoes.columns:
            fill = ok & shoes["start_date"].notna().to_numpy()
            # a start_date after the shoe's first logged run is not believed: the age counts
            # from that run (never a negative shoe_age_days; clean fixes or flags the row)
            start_day[at[fill]] = np.fmin(day_numbers(shoes["start_date"][fill]),
                                          start_day[at[fill]])

    # the latest run of each runner-day (runs are in total order) and its shoe
    runner = runs["runner"].to_numpy()
    mine = runner >= 0
    r_key = _runner_key(runner[mine], day[mine])
    last = np.r_[r_key[1:] != r_key[:-1], True] if len(r_key) else np.zeros(0, dtype=bool)
    last_key = r_key[last]
    last_shoe = shoe[mine][last]
    last_day = day[mine][last]
    cum_at = np.full(len(last_key), np.nan)
    has = last_shoe >= 0
    found = np.searchsorted(shoe_day_key, _runner_key(last_shoe[has], last_day[has]))
    cum_at[has] = cum_km[found]

    grid_key = _runner_key(grid.code, grid.day)
    hit = np.searchsorted(last_key, grid_key, side="right") - 1
    ok = hit >= 0
    ok[ok] = (last_key[hit[ok]] >> 32) == (grid_key[ok] >> 32)
    s = np.where(ok, last_shoe[np.maximum(hit, 0)] if len(last_shoe) else -1, -1)
    ok &= s >= 0
    shoe_km[ok] = start_km[s[ok]] + cum_at[hit[ok]]
    age[ok] = grid.day[ok] - start_day[s[ok]]
    return pd.DataFrame({"shoe_km": shoe_km, "shoe_age_days": age})


def _rotation_counts(grid: _Grid, width: int) -> np.ndarray:
    """Distinct shoes used in the ``width`` days up to each grid row.

    Each (shoe, use row r) covers rows r..r+width-1; overlapping covers of one shoe are merged
    into blocks, and a difference array counts the blocks covering each row.
    """
    n = len(grid.code)
    counts = np.zeros(n + 1)
    runs = grid.runs
    use = (runs["row"].to_numpy() >= 0) & (runs["shoe"].to_numpy() >= 0)
    if n == 0 or not use.any():
        return counts[:n]
    key = np.sort(runs["shoe"].to_numpy()[use].astype(np.int64) * (n + 1)
                  + runs["row"].to_numpy()[use])
    key = key[np.r_[True, key[1:] != key[:-1]]]
    shoe, rows = key // (n + 1), key % (n + 1)
    ends = np.flatnonzero(np.r_[grid.code[1:] != grid.code[:-1], True])
    runner_last_row = np.repeat(ends, np.diff(np.r_[-1, ends]))[rows]
    new_block = np.ones(len(rows), dtype=bool)
    new_block[1:] = ((shoe[1:] != shoe[:-1]) | (rows[1:] - rows[:-1] > width)
                     | (runner_last_row[1:] != runner_last_row[:-1]))
    block = np.cumsum(new_block) - 1
    first = rows[new_block]
    last = np.zeros(block[-1] + 1, dtype=np.int64)
    np.maximum.at(last, block, rows)
    stop = np.minimum(last + width - 1, runner_last_row[new_block]) + 1
    np.add.at(counts, first, 1.0)
    np.add.at(counts, stop, -1.0)
    return np.cumsum(counts)[:n]


def _daily_features(
    daily: pd.DataFrame,
    grid: _Grid,
    shoes: pd.DataFrame | None,
    *,
    decay: str = "williams",
    ctl_days: int = CTL_DAYS,
    atl_days: int = ATL_DAYS,
) -> pd.DataFrame:
    """Every exposure feature on every calendar day (each day taken as reference day ``s``).

    Columns and definitions: ``docs/exposures.md``. km and every load of ``grid.loads`` go
    through the one :func:`_load_windows`.
    """
    km = daily["distance_km"].to_numpy(dtype=float)
    win = _Windows(daily)
    win.prime(km)  # the km prefix sums, once, before the threads share them
    known = win.known
    other = {col: (daily[col].to_numpy(dtype=float),
                   OTHER_LOAD_WINDOWS if col in grid.loads else ("7d",))
             for col in LOAD_PREFIXES if col in grid.loads or col == "srpe_au"}

    def windows(values: np.ndarray, which: Sequence[str]) -> dict[str, np.ndarray]:
        return _load_windows(values, win, decay=decay, windows=which, ctl_days=ctl_days,
                             atl_days=atl_days)

    def shoe_columns() -> tuple[pd.DataFrame, np.ndarray]:
        return _shoe_features(grid, shoes), _rotation_counts(grid, ROTATION_DAYS)

    # Independent groups of columns run on separate threads: the numpy and pandas kernels
    # they spend their time in release the GIL, so a second core is used.
    # Nothing may be imported lazily on these threads: two first imports of scipy submodules
    # at once raced (KeyError: 'scipy'), so every module they use is imported at module top.
    with ThreadPoolExecutor(max_workers=_FEATURE_THREADS) as pool:
        km_job = pool.submit(windows, km, LOAD_WINDOWS)
        shoe_job = pool.submit(shoe_columns)
        other_jobs = {col: pool.submit(windows, values, which)
                      for col, (values, which) in other.items()}
        out = _window_features(daily, km, win)
        km_windows = km_job.result()
        shoe, rotation_counts = shoe_job.result()
        loads = {col: job.result() for col, job in other_jobs.items()}

    out |= {KM_WINDOW_NAMES.get(k, k): v for k, v in km_windows.items()}
    km_7d, km_prev7d = out["km_7d"], out["km_prev7d"]
    out["mileage_jump"] = _safe_ratio(km_7d - km_prev7d, km_prev7d)
    out["jump_category"] = jump_category(pd.Series(out["mileage_jump"])).array
    out["monotony"] = _safe_ratio(km_7d / ACUTE_DAYS, out.pop("_km_sd_7d"))
    out["strain"] = km_7d * out["monotony"]
    runner_has_shoe = np.zeros(len(grid.runner_ids) + 1, dtype=bool)
    shod = (grid.runs["runner"].to_numpy() >= 0) & (grid.runs["shoe"].to_numpy() >= 0)
    runner_has_shoe[grid.runs["runner"].to_numpy()[shod]] = True
    rotation = _masked(rotation_counts,
                       win.valid(ROTATION_DAYS) & known & runner_has_shoe[grid.code])
    out.update({
        "shoe_km": _masked(shoe["shoe_km"].to_numpy(), known),
        "shoe_age_days": _masked(shoe["shoe_age_days"].to_numpy(), known),
        "shoes_in_rotation_30d": rotation,
    })
    for col, found in loads.items():
        out |= {f"{LOAD_PREFIXES[col]}_{k}": v for k, v in found.items()}
    order = ["km_7d", "km_prev7d", "km_28d", "mileage_jump", "jump_category", "run_spike",
             "acwr_rolling", "acwr_uncoupled", "acwr_ewma", "ctl", "atl", "tsb", "monotony",
             "strain", "srpe_7d", "rest_days_7d", "days_since_rest", "consecutive_run_days",
             "shoe_km", "shoe_age_days", "shoes_in_rotation_30d"]
    order += [f"{LOAD_PREFIXES[col]}_{k}" for col, found in loads.items() for k in found
              if f"{LOAD_PREFIXES[col]}_{k}" not in order]
    return pd.DataFrame({c: out[c] for c in order}, index=daily.index, copy=False)


def _load_windows(
    load: np.ndarray,
    win: _Windows,
    *,
    decay: str,
    windows: Sequence[str] = LOAD_WINDOWS,
    ctl_days: int = CTL_DAYS,
    atl_days: int = ATL_DAYS,
) -> dict[str, np.ndarray]:
    """The window features of one daily load (km, session RPE, minutes, TRIMP), by name.

    Parameters
    ----------
    load
        The load of each calendar day (unit of the load; 0 on rest days, NaN when unknown).
    win
        km's windows of the calendar (:class:`_Windows`).
    decay
        EWMA convention (:data:`DECAYS`).
    windows
        Names from :data:`LOAD_WINDOWS`: ``7d``, ``prev7d``, ``28d`` (sums over s-6..s,
        s-13..s-7, s-27..s), ``acwr_rolling`` (7d / (28d / 4)), ``acwr_uncoupled``
        (7d / (sum over s-27..s-7 / 3)), ``acwr_ewma`` (EWMA_7 / EWMA_28 seeded at the first
        day), ``ctl``, ``atl`` (EWMAs with time constants ``ctl_days``/``atl_days`` started at
        0), ``tsb`` (``ctl - atl`` of day s-1).

    Returns
    -------
    dict
        One array per name in ``windows``. A sum is NaN when a day in it is unknown; an EWMA
        restarts after unknown days (like km after an unlogged gap under ``"missing"``), so
        it needs its warm-up again.
    """
    out: dict[str, np.ndarray] = {}
    want = set(windows)
    weeks_chronic = CHRONIC_DAYS / ACUTE_DAYS
    weeks_uncoupled = (CHRONIC_DAYS - ACUTE_DAYS) / ACUTE_DAYS
    if want & {"7d", "acwr_rolling", "acwr_uncoupled"}:
        out["7d"] = win.sum(load, ACUTE_DAYS)
    if "prev7d" in want:
        out["prev7d"] = win.sum(load, ACUTE_DAYS, offset=ACUTE_DAYS)
    if want & {"28d", "acwr_rolling"}:
        out["28d"] = win.sum(load, CHRONIC_DAYS)
    if "acwr_rolling" in want:
        out["acwr_rolling"] = _safe_ratio(out["7d"], out["28d"] / weeks_chronic)
    if "acwr_uncoupled" in want:
        uncoupled = win.sum(load, CHRONIC_DAYS - ACUTE_DAYS, offset=ACUTE_DAYS)
        out["acwr_uncoupled"] = _safe_ratio(out["7d"], uncoupled / weeks_uncoupled)
    if want & {"acwr_ewma", "ctl", "atl", "tsb"}:
        own = win.within(win.known & ~np.isnan(load))
        start, pos, known = own.seg_start, own.seg_pos, own.known
        # ``valid`` counts days inside a segment, and a gap is a segment too: AND with
        # ``known`` so unknown days are NaN, not the filter's float residue (2e-16)
        if "acwr_ewma" in want:
            acute = _ewma(load, start, pos, _alpha(ACUTE_DAYS, decay), seed_first=True)
            chronic = _ewma(load, start, pos, _alpha(CHRONIC_DAYS, decay), seed_first=True)
            out["acwr_ewma"] = _masked(_safe_ratio(acute, chronic),
                                       own.valid(CHRONIC_DAYS) & known)
        if want & {"ctl", "atl", "tsb"}:
            fitness = _ewma(load, start, pos, _alpha(ctl_days, decay), seed_first=False)
            fatigue = _ewma(load, start, pos, _alpha(atl_days, decay), seed_first=False)
            ctl = _masked(fitness, own.valid(ctl_days) & known)
            atl = _masked(fatigue, own.valid(atl_days) & known)
            known_before = np.r_[False, known[:-1]]  # day s - 1 is known (tsb: yesterday)
            out |= {"ctl": ctl, "atl": atl,
                    "tsb": _masked(_shift(ctl - atl, 1),
                                   own.valid(ctl_days, offset=1) & known_before)}
    return {k: out[k] for k in windows}


def _window_features(daily: pd.DataFrame, km: np.ndarray, win: _Windows) -> dict[str, Any]:
    """The km-only columns of the daily series: rest days, streaks, run spikes, and the
    sample SD of daily km (``_km_sd_7d``, for ``monotony``); the windows of km itself come
    from :func:`_load_windows`."""
    seg_start, known = win.seg_start, win.known
    rest_7d = win.sum(np.where(known, km == 0, np.nan), ACUTE_DAYS)

    rest_flag = known & (km == 0)
    row = np.arange(len(km))
    prev_rest = _last_index(rest_flag, strictly_before=True)
    days_since_rest = np.where(known & (prev_rest >= seg_start), row - prev_rest, np.nan)
    last_rest = _last_index(rest_flag, strictly_before=False)
    streak = np.where(known & (last_rest >= seg_start), row - last_rest, np.nan)

    # run spike: the day's longest run > 110 % of the longest run in the 30 days before it
    longest = daily["longest_run_km"].to_numpy(dtype=float)
    before = _longest_before(longest, win, RUN_SPIKE_LOOKBACK_DAYS)
    ran = daily["n_runs"].to_numpy() > 0
    spike_day = np.where(ran, np.where(np.isnan(before), np.nan,
                                       longest > RUN_SPIKE_RATIO * before), 0.0)
    spike_day = np.where(known, spike_day, np.nan)
    spike_any = win.sum(np.nan_to_num(spike_day, nan=0.0), ACUTE_DAYS)
    spike_unknown = win.sum(np.isnan(spike_day).astype(float), ACUTE_DAYS)
    run_spike = pd.array(spike_any > 0, dtype="boolean")
    run_spike[~(spike_any > 0) & ~(spike_unknown == 0)] = pd.NA

    return {
        "run_spike": run_spike,
        "_km_sd_7d": win.sample_sd(km, ACUTE_DAYS),
        "rest_days_7d": rest_7d,
        "days_since_rest": days_since_rest,
        "consecutive_run_days": streak,
    }


def _longest_before(longest: np.ndarray, win: _Windows, lookback_days: int) -> np.ndarray:
    """The longest run (km) in the ``lookback_days`` days before each row (not the row's
    day); NaN when the window is not wholly known (see :func:`longest_run_before`)."""
    return win.extreme(longest, lookback_days, offset=1)


def longest_run_before(daily: pd.DataFrame, *,
                       lookback_days: int = RUN_SPIKE_LOOKBACK_DAYS) -> np.ndarray:
    """The longest single run (km) in the ``lookback_days`` days before each calendar day.

    The denominator of a run spike (``run_spike``: the day's longest run >
    :data:`RUN_SPIKE_RATIO` x this; Frandsen et al. 2025's session ratio), defined once here
    and read by :func:`analysis.models.session_exposures`.

    Parameters
    ----------
    daily
        The daily calendar (``daily.parquet`` or :func:`daily_calendar`: ``day_index``,
        ``distance_km``, ``longest_run_km``), each runner's days consecutive and in date
        order (lead-in days included, as the build keeps them).
    lookback_days
        Length of the window before the day (days; default
        :data:`RUN_SPIKE_LOOKBACK_DAYS`).

    Returns
    -------
    numpy.ndarray
        km, one value per row of ``daily``: 0 when no run was logged in the window; NaN
        when the window reaches before the runner's calendar or holds a day of unknown
        distance (an unlogged gap under ``unlogged_gaps="missing"``).
    """
    _require(daily, ("day_index", "distance_km", "longest_run_km"), "daily")
    longest = daily["longest_run_km"].to_numpy(dtype=float)
    return _longest_before(longest, _Windows(daily), int(lookback_days))


#: EWMA smoothing constant for a time constant of N days, per convention of :data:`DECAYS`.
_ALPHAS = {
    "williams": lambda n: 2.0 / (n + 1.0),  # Williams et al. 2017: 2 / (N + 1)
    "exp": lambda n: float(1.0 - np.exp(-1.0 / n)),  # GoldenCheetah PMC: 1 - e^(-1/N)
    "inverse": lambda n: 1.0 / n,  # intervals.icu / TrainingPeaks: 1 / N
}


def _alpha(days: int, decay: str) -> float:
    """EWMA smoothing constant for a time constant of ``days`` under ``decay``.

    ``decay`` was validated by :func:`build_panel`; an unknown one here is a bug (KeyError).
    """
    return _ALPHAS[decay](days)



def _ewma(values: np.ndarray, seg_start: np.ndarray, seg_pos: np.ndarray, alpha: float,
          *, seed_first: bool) -> np.ndarray:
    """``y_t = alpha x_t + (1 - alpha) y_(t-1)``, restarted at every segment start.

    ``seed_first`` starts each segment at its first value (pandas ``adjust=False``, the
    ``acwr`` package); otherwise at 0 (no training before follow-up). One linear filter over
    the whole grid, then the carry-over from the previous segment is subtracted in closed form.
    """
    x = np.nan_to_num(values.astype(float))
    y = alpha * _geometric_scan(x, 1.0 - alpha)
    if len(x) == 0:
        return y
    carry = np.where(seg_start > 0, y[np.maximum(seg_start - 1, 0)], 0.0)
    if seed_first:
        carry = carry - x[seg_start]
    # (1 - alpha) ** (seg_pos + 1), looked up in a table of the few distinct powers
    powers = (1.0 - alpha) ** np.arange(1, int(seg_pos.max()) + 2)
    return y - powers[seg_pos] * carry


def _sliding_extreme(v: np.ndarray, width: int, *, lowest: bool = False) -> np.ndarray:
    """Max (or min) of every run of ``width`` consecutive values, ``len(v) - width + 1`` of
    them (van Herk 1992; Gil & Werman 1993): within blocks of ``width`` values a running
    extreme from the left and from the right; a window spans at most two blocks, so its
    extreme is the right-running one at its start with the left-running one at its end.
    Three passes over the values instead of ``width``; exact (no arithmetic)."""
    n = len(v)
    ufunc = np.minimum if lowest else np.maximum
    blocks = np.full(-(-n // width) * width, np.inf if lowest else -np.inf)
    blocks[:n] = v
    blocks = blocks.reshape(-1, width)
    from_left = ufunc.accumulate(blocks, axis=1).ravel()
    from_right = ufunc.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    return ufunc(from_right[: n - width + 1], from_left[width - 1: n])



def _geometric_scan(x: np.ndarray, ratio: float) -> np.ndarray:
    """``y_t = x_t + ratio * y_(t-1)`` (``y_0 = x_0``) by doubling: after the pass with
    stride ``s`` every ``y_t`` holds the terms of lag below ``2 s``, so ``log2(n)`` vector
    passes replace a loop over rows (the same filter as ``scipy.signal.lfilter``, without
    importing scipy for the build)."""
    y = np.array(x, dtype=float)
    step, factor = 1, ratio
    while step < len(y) and factor != 0.0:
        y[step:] += factor * y[:-step]
        step, factor = 2 * step, factor * factor
    return y


def _last_index(flag: np.ndarray, *, strictly_before: bool) -> np.ndarray:
    """Row of the latest flagged row at or before (or strictly before) each row; -1 if none."""
    idx = np.where(flag, np.arange(len(flag)), -1)
    last = np.maximum.accumulate(idx) if len(idx) else idx
    if strictly_before:
        last = np.concatenate([[-1], last[:-1]]) if len(last) else last
    return last



def jump_category(mileage_jump: pd.Series) -> pd.Series:
    """Nielsen et al. 2014 bands of the week-over-week jump (fraction, 0.30 = +30 %).

    ``<10%`` (below 0.10, decreases included), ``10-30%`` (0.10 to 0.30 inclusive),
    ``>30%`` (above 0.30); NaN stays NaN. Ordered categorical.
    """
    low, high = NIELSEN_BANDS
    values = mileage_jump.to_numpy(dtype=float)
    codes = np.where(values < low, 0, np.where(values <= high, 1, 2))
    codes = np.where(np.isnan(values), -1, codes)
    cat = pd.Categorical.from_codes(codes, categories=list(JUMP_CATEGORIES), ordered=True)
    return pd.Series(cat, index=mileage_jump.index, name="jump_category")




# --- pain reports and the panel -------------------------------------------------------------


def _split_reports(pain: pd.DataFrame, runners: pd.DataFrame, *, cleaned: bool = False
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pain reports -> (kept, superseded same-day reports, reports of unknown runners).

    The same-day rule is :func:`analysis.clean.superseded_same_day`, the one clean applies.
    With ``cleaned`` (the build) neither rule runs again: clean merged the same-day reports
    and quarantined those of unknown runners (``unknown_runner``), so both other parts are
    empty, and a report whose runner is not in ``runners`` is refused
    (:class:`~analysis.errors.DataContractError`), not dropped a second time. Without it,
    such reports are dropped here (counted in the audit). ``kept`` is in panel order
    (runner, then date), so the panel is built sorted and never sorted as a whole, and
    carries ``_runner``, the runner's position in :func:`_runner_universe`.
    """
    table = pain.assign(runner_id=pain["runner_id"].astype(str),
                        _day=day_numbers(pain["date"]), pain=pain["pain"].astype(float))
    # one pass over the ID strings: integer codes for the dedupe, the join and the order
    runner, names = factorize(table["runner_id"], sort=True)
    dup = (np.zeros(len(table), dtype=bool) if cleaned else
           superseded_same_day(pd.Series(runner, index=table.index), table["_day"],
                               table["pain"]).to_numpy())
    at = _runner_universe(runners).get_indexer(pd.Index(names))
    code = np.where(runner >= 0, at[np.maximum(runner, 0)] if len(at) else -1, -1)
    if cleaned and (code < 0).any():
        first = int(np.flatnonzero(code < 0)[0])
        raise DataContractError(
            f"pain report of runner {table['runner_id'].iloc[first]!r} not in the runners "
            "table: pain_cleaned=True needs clean_tables' tables (it quarantines them)",
            column="runner_id")
    keep = ~dup & (code >= 0)
    rows = np.flatnonzero(keep)
    _check_kept_reports(table, rows)
    order = rows[stable_order(code[rows], table["_day"].to_numpy()[rows])]
    kept = table.take(order).assign(_runner=code[order])
    return kept, table[dup], table[~dup & (code < 0)]


def _check_kept_reports(table: pd.DataFrame, rows: np.ndarray) -> None:
    """Every kept report (``rows`` of ``table``: known runner, not superseded the same day)
    has a date and a pain value on the NRS, as the panel contract's ``date`` and ``pain``
    require: a missing date, or a missing or out-of-range value (which would become
    ``pain_any`` False), is refused (clean_tables quarantines such reports)."""
    pain = table["pain"].to_numpy()[rows]
    undated = table["_day"].to_numpy()[rows] == MISSING_DAY
    if undated.any():
        at = int(rows[np.flatnonzero(undated)[0]])
        raise DataContractError(
            f"a pain report of runner {table['runner_id'].iloc[at]!r} has no date "
            "(clean_tables quarantines such reports)", column="date")
    bad = ~((pain >= PAIN_MIN) & (pain <= PAIN_MAX))  # NaN included
    if bad.any():
        at = int(rows[np.flatnonzero(bad)[0]])
        raise DataContractError(
            f"the pain report of runner {table['runner_id'].iloc[at]!r} on "
            f"{pd.Timestamp(table['date'].iloc[at]).date()} has pain "
            f"{float(table['pain'].iloc[at]):g}, not a value on the {PAIN_MIN:g}-"
            f"{PAIN_MAX:g} NRS (clean_tables quarantines such reports)", column="pain")


def _validate_options(exposure_lag_days: int, pain_threshold: float, lags: Sequence[int],
                      unlogged_gaps: str, decay: str, ostrc_coding: str) -> None:
    if int(exposure_lag_days) != exposure_lag_days or exposure_lag_days < 0:
        raise KneeloadError(f"exposure_lag_days must be a whole number of days >= 0, "
                            f"got {exposure_lag_days!r}")
    if not PAIN_MIN <= pain_threshold <= PAIN_MAX:
        raise KneeloadError(f"pain_threshold must be on the {PAIN_MIN:g}-{PAIN_MAX:g} NRS, "
                            f"got {pain_threshold!r}")
    if any(int(k) != k or k < 1 for k in lags):
        raise KneeloadError(f"lags must be whole weeks >= 1, got {list(lags)!r}")
    _check_choice("unlogged_gaps", unlogged_gaps, UNLOGGED_GAP_POLICIES)
    _check_choice("decay", decay, DECAYS)
    _check_choice("ostrc_coding", ostrc_coding, OSTRC_CODINGS)


def _gap_rows(daily: pd.DataFrame) -> list[dict[str, Any]]:
    gap = daily[daily["unlogged_gap"] & daily["in_follow_up"]]
    if gap.empty:
        return []
    new = (gap["runner_id"] != gap["runner_id"].shift()) | (
        gap["date"].diff() != pd.Timedelta(days=1))
    spans = gap.groupby(new.cumsum()).agg(runner_id=("runner_id", "first"),
                                          first_day=("date", "min"), last_day=("date", "max"),
                                          days=("date", "size"))
    return [{"runner_id": r.runner_id, "first_day": r.first_day.date().isoformat(),
             "last_day": r.last_day.date().isoformat(), "days": int(r.days)}
            for r in spans.itertuples()]


def build_panel(
    runs: pd.DataFrame,
    runners: pd.DataFrame,
    pain: pd.DataFrame,
    shoes: pd.DataFrame | None = None,
    *,
    exposure_lag_days: int = DEFAULT_EXPOSURE_LAG_DAYS,
    pain_threshold: float = DEFAULT_PAIN_THRESHOLD,
    lags: Sequence[int] = (),
    unlogged_gaps: str = "rest",
    decay: str = "williams",
    ostrc_coding: str = "auto",
    pain_cleaned: bool = False,
    on_daily: Callable[[pd.DataFrame], None] | None = None,
) -> PanelBuild:
    """The exposure panel: one row per pain report with exposures at ``s = t - L``.

    Parameters
    ----------
    runs, runners, pain, shoes
        Clean canonical tables (:mod:`analysis.schemas`); ``shoes`` may be None or empty.
    exposure_lag_days
        L in days (default 7); L = 0 regresses pain on the same week's training.
    pain_threshold
        ``pain_any`` is ``pain >= pain_threshold`` (NRS 0-10, default 3).
    lags
        Whole weeks k: adds ``<feature>_lag{k}w``, the feature at ``s - 7k``.
    unlogged_gaps
        ``"rest"`` or ``"missing"`` (see :func:`daily_calendar`).
    decay
        EWMA convention for ``acwr_ewma``, ``ctl``, ``atl``: one of :data:`DECAYS`.
    ostrc_coding
        How ``ostrc_q1..q4`` are coded (see :func:`analysis.ostrc.ostrc_scores`).
    pain_cleaned
        True when ``pain`` is :func:`analysis.clean.clean_tables`' table (the build): its
        same-day reports were merged there by :func:`analysis.clean.superseded_same_day`,
        so the rule is not run a second time. False (default): it is applied here, to
        tables that did not come through cleaning.
    on_daily
        Called with the daily table as soon as it is complete, before the panel's columns
        are looked up in it (the build checks and writes it meanwhile); the table is not
        changed after, and is the ``daily`` returned. It must only read the table: the
        panel's exposures are taken from the same arrays.

    Returns
    -------
    PanelBuild
        ``panel`` (sorted by runner and date), ``daily``, ``meta`` and ``audit``.

    Notes
    -----
    The panel carries no within/between split of its exposures: the one definition of
    ``<x>_within`` and ``<x>_between`` is the model's, over the rows a model uses
    (:func:`analysis.models.build_design` with ``center="within-between"``).
    """
    _validate_options(exposure_lag_days, pain_threshold, lags, unlogged_gaps, decay,
                      ostrc_coding)
    _require(pain, ("runner_id", "date", "pain"), "pain")
    _require(runners, ("runner_id", "cohort"), "runners")
    kept, merged, unknown = _split_reports(pain, runners, cleaned=pain_cleaned)
    calendar, grid = _calendar(runs, runners, unlogged_gaps=unlogged_gaps,
                               reports=(kept["_runner"].to_numpy(), kept["_day"].to_numpy()))
    features = _daily_features(calendar, grid, shoes, decay=decay)
    daily = _side_by_side(calendar, features)
    if on_daily is not None:
        on_daily(daily)
    columns = _report_columns(kept, runners, exposure_lag_days=exposure_lag_days,
                              pain_threshold=pain_threshold)
    if any(c in kept.columns for c in OSTRC_ITEMS):
        if ostrc_coding == "auto":
            ostrc_coding = infer_ostrc_coding(kept)
        columns |= ostrc_columns(kept, coding=ostrc_coding)
    columns |= _exposure_columns(features, grid, kept["_runner"].to_numpy(),
                                 _runner_universe(runners), columns["reference_date"],
                                 lags=lags)
    meta = _panel_meta(exposure_lag_days=exposure_lag_days, pain_threshold=pain_threshold,
                       lags=lags, unlogged_gaps=unlogged_gaps, decay=decay,
                       ostrc_coding=ostrc_coding)
    return PanelBuild(panel=pd.DataFrame(columns, copy=False),
                      daily=daily, meta=meta,
                      audit=_panel_audit(calendar, merged, unknown))


def _side_by_side(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    """The columns of two tables of the same rows as one table, without copying them."""
    return pd.DataFrame({**{c: left[c].array for c in left.columns},
                         **{c: right[c].array for c in right.columns}}, copy=False)


def _report_columns(kept: pd.DataFrame, runners: pd.DataFrame, *, exposure_lag_days: int,
                    pain_threshold: float) -> dict[str, Any]:
    """Identity, runner information, dates and the outcome of each kept report."""
    info_cols = ["cohort", *[c for c in ("sex", "age") if c in runners.columns]]
    info = runners.assign(runner_id=runners["runner_id"].astype(str)).drop_duplicates(
        "runner_id").set_index("runner_id")[info_cols]
    # kept["_runner"] indexes the runner universe; every kept runner is in ``info``
    at = info.index.get_indexer(_runner_universe(runners))[kept["_runner"].to_numpy()]
    report_day = kept["_day"].to_numpy()
    pain = kept["pain"].to_numpy()
    out: dict[str, Any] = {"runner_id": pd.array(kept["runner_id"].array, dtype="str")}
    for col in info_cols:
        out[col] = info[col].take(at).array
    out |= {
        "date": day_dates(report_day),
        "reference_date": day_dates(report_day - int(exposure_lag_days)),
        "pain": pain,
        "pain_any": pain >= pain_threshold,
    }
    return out


def _exposure_columns(features: pd.DataFrame, grid: _Grid, runner: np.ndarray,
                      universe: pd.Index, reference_date: np.ndarray, *,
                      lags: Sequence[int]) -> dict[str, Any]:
    """Every feature at each report's reference day ``s`` and, per lag k, at ``s - 7k``.

    ``runner`` is each report's position in ``universe`` (:func:`_runner_universe`).
    """
    grid_key = _runner_key(grid.code, grid.day)
    code = grid.runner_ids.get_indexer(universe)[runner] if len(runner) else runner
    ref_day = reference_date.astype("datetime64[D]").astype(np.int64)

    def lookup(days: np.ndarray) -> pd.DataFrame:
        """Feature rows of each report's runner at ``days`` (NaN where off the calendar).

        A day in the lead-in is on the calendar: a reference (or lag) day before
        ``follow_up_start`` takes its window values; only days before the first logged run,
        where history is unknown, have none. Panel rows stay follow-up reports.
        """
        key = _runner_key(code, days)
        at = np.searchsorted(grid_key, key)
        found = (code >= 0) & (at < len(grid_key))
        found[found] = grid_key[at[found]] == key[found]
        return _take(features, np.where(found, at, -1))

    at_s = lookup(ref_day)
    out: dict[str, Any] = {c: at_s[c].array for c in features.columns}
    for k in lags:
        at_lag = lookup(ref_day - ACUTE_DAYS * int(k))
        out |= {f"{c}_lag{int(k)}w": at_lag[c].array for c in features.columns}
    return out


def _panel_meta(*, exposure_lag_days: int, pain_threshold: float, lags: Sequence[int],
                unlogged_gaps: str, decay: str, ostrc_coding: str) -> dict[str, Any]:
    """The options and constants the panel was built with (``panel_meta.json``)."""
    return {
        "exposure_lag_days": int(exposure_lag_days),
        "pain_threshold": float(pain_threshold),
        "lags": [int(k) for k in lags],
        "unlogged_gaps": unlogged_gaps,
        "decay": decay,
        "acute_days": ACUTE_DAYS,
        "chronic_days": CHRONIC_DAYS,
        "unlogged_gap_min_days": UNLOGGED_GAP_MIN_DAYS,
        "jump_bands": list(NIELSEN_BANDS),
        "ctl_days": CTL_DAYS,
        "atl_days": ATL_DAYS,
        "lead_in_days": LEAD_IN_DAYS,
        "ostrc_coding": ostrc_coding,
    }


def _panel_audit(calendar: pd.DataFrame, merged: pd.DataFrame,
                 unknown: pd.DataFrame) -> dict[str, Any]:
    """What the panel step merged, dropped or flagged, as counts and JSON-ready rows."""
    gaps = _gap_rows(calendar)
    gap_days = int((calendar["unlogged_gap"] & calendar["in_follow_up"]).sum())
    return {
        "duplicate_pain_reports": {
            "count": len(merged),
            "rows": [{"runner_id": r, "date": d.date().isoformat(), "pain": float(p)}
                     for r, d, p in zip(merged["runner_id"], pd.to_datetime(merged["date"]),
                                        merged["pain"], strict=True)],
        },
        "unlogged_gaps": {"count": len(gaps), "days": gap_days, "rows": gaps},
        "pain_unknown_runner": {"count": len(unknown),
                                "rows": sorted(unknown["runner_id"].unique().tolist())},
    }
