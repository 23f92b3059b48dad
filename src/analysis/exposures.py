"""Daily calendar and the exposure panel (one row per pain report).

Every column is defined once in ``docs/exposures.md`` (formula, unit, reference) and computed
here without a Python loop per runner-day: the calendar is a complete daily grid per runner
(sorted by runner and day, contiguous), so a window of ``w`` days ending on row ``i`` is rows
``i-w+1..i`` and is valid when the runner has at least ``w`` days of follow-up up to row ``i``.
Each pain report on day ``t`` gets the features of its reference day ``s = t - L``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import DataContractError, KneeloadError

# --- constants (docs/exposures.md) ---------------------------------------------------------
DEFAULT_EXPOSURE_LAG_DAYS = 7  # s = t - 7: the week before the report's week (issue 4)
DEFAULT_PAIN_THRESHOLD = 3.0  # pain_any = pain >= 3 on the 0-10 NRS
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

_DAY = np.timedelta64(1, "D")
_DATE_UNIT = "datetime64[us]"  # pandas 3 default resolution; inputs may be any resolution


@dataclass
class PanelBuild:
    """The exposure panel, the daily calendar it came from, metadata and an audit.

    Attributes
    ----------
    panel
        One row per pain report ``(runner_id, date)`` with exposures at ``reference_date``.
    daily
        One row per runner and calendar day inside follow-up, with every daily feature.
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


def _day_numbers(dates: pd.Series) -> np.ndarray:
    """Calendar days since 1970-01-01 (int64); NaT becomes the int64 minimum."""
    values = pd.to_datetime(dates).to_numpy()
    days = values.astype("datetime64[D]")
    out = days.astype(np.int64)
    out[np.isnat(days)] = np.iinfo(np.int64).min
    return out


def _dates(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype(_DATE_UNIT)


def _require(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataContractError(f"{name} table lacks required column(s) {missing}",
                                column=missing[0])


def _runner_key(codes: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One sortable int64 per (runner code, day)."""
    return codes.astype(np.int64) * (1 << 32) + (days + (1 << 31))


def _window(values: np.ndarray, width: int, reducer: str) -> np.ndarray:
    """Reduce rows ``i-width+1..i`` for every row ``i`` (earlier rows padded with NaN).

    NaN inside a window makes the result NaN; callers mask windows that cross a runner.
    """
    padded = np.concatenate([np.full(width - 1, np.nan), values.astype(float)])
    view = np.lib.stride_tricks.sliding_window_view(padded, width)
    if reducer == "sum":
        return view.sum(axis=1)
    if reducer == "max":
        return view.max(axis=1)
    if reducer == "std":
        return view.std(axis=1, ddof=1)
    raise ValueError(reducer)


def _shift(values: np.ndarray, days: int) -> np.ndarray:
    """Row ``i`` takes row ``i - days`` (callers mask rows that cross a runner)."""
    out = np.full(values.shape, np.nan)
    if days < len(values):
        out[days:] = values[: len(values) - days]
    return out


def _take(table: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """Rows of ``table`` by position; position -1 gives a missing row (NaN / NA)."""
    out = {}
    hit = rows >= 0
    safe = np.where(hit, rows, 0)
    for col in table.columns:
        values = table[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = np.where(hit, values.cat.codes.to_numpy()[safe] if len(values) else -1, -1)
            out[col] = pd.Categorical.from_codes(codes, dtype=values.dtype)
        elif values.dtype == "boolean":
            taken = values.array[safe] if len(values) else pd.array([pd.NA] * len(rows),
                                                                    dtype="boolean")
            taken[~hit] = pd.NA
            out[col] = taken
        else:
            arr = values.to_numpy(dtype=float)
            out[col] = np.where(hit, arr[safe], np.nan) if len(arr) else np.full(len(rows),
                                                                                  np.nan)
    return pd.DataFrame(out)


def _masked(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, values, np.nan)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``; NaN (never inf) when ``den`` is 0 or NaN."""
    ok = np.isfinite(den) & (den != 0)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=ok)
    return out


# --- daily calendar --------------------------------------------------------------------------


def _follow_up_windows(runs: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame:
    """First and last follow-up day per runner: runners.csv, else first/last run day."""
    ids = runners["runner_id"].astype(str)
    run_days = pd.DataFrame({"runner_id": runs["runner_id"].astype(str),
                             "day": _day_numbers(runs["date"])})
    span = run_days.groupby("runner_id")["day"].agg(["min", "max"])
    first = ids.map(span["min"]).to_numpy(dtype=float)
    last = ids.map(span["max"]).to_numpy(dtype=float)
    if "follow_up_start" in runners.columns:
        start = _day_numbers(runners["follow_up_start"]).astype(float)
        start[runners["follow_up_start"].isna().to_numpy()] = np.nan
        first = np.where(np.isnan(start), first, start)
    if "follow_up_end" in runners.columns:
        end = _day_numbers(runners["follow_up_end"]).astype(float)
        end[runners["follow_up_end"].isna().to_numpy()] = np.nan
        last = np.where(np.isnan(end), last, end)
    windows = pd.DataFrame({"runner_id": ids.to_numpy(), "start": first, "end": last})
    windows = windows[np.isfinite(windows["start"]) & np.isfinite(windows["end"])
                      & (windows["end"] >= windows["start"])]
    return windows.astype({"start": np.int64, "end": np.int64}).sort_values(
        "runner_id", kind="stable").reset_index(drop=True)


def _ordered_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with day numbers, in a total order that does not depend on input row order.

    Within a day, runs are ordered by ``start_time`` when present, then distance and shoe, so
    "the latest run of the day" is well defined.
    """
    out = pd.DataFrame({
        "runner_id": runs["runner_id"].astype(str).to_numpy(),
        "day": _day_numbers(runs["date"]),
        "distance_km": runs["distance_km"].astype(float).to_numpy(),
    })
    keys = ["runner_id", "day"]
    if "start_time" in runs.columns:
        out["start_time"] = runs["start_time"].astype(str).to_numpy()
        out.loc[runs["start_time"].isna().to_numpy(), "start_time"] = ""
        keys.append("start_time")
    keys.append("distance_km")
    out["shoe_id"] = (runs["shoe_id"].astype("str").to_numpy() if "shoe_id" in runs.columns
                      else pd.array([pd.NA] * len(runs), dtype="str"))
    if "shoe_id" in runs.columns:
        out.loc[runs["shoe_id"].isna().to_numpy(), "shoe_id"] = pd.NA
    out["_shoe_sort"] = out["shoe_id"].fillna("")
    keys.append("_shoe_sort")
    for col in ("duration_min", "rpe"):
        out[col] = runs[col].astype(float).to_numpy() if col in runs.columns else np.nan
    out = out.sort_values(keys, kind="stable").drop(columns="_shoe_sort")
    return out.reset_index(drop=True)


def daily_calendar(
    runs: pd.DataFrame,
    runners: pd.DataFrame,
    *,
    unlogged_gaps: str = "rest",
) -> pd.DataFrame:
    """One row per runner and calendar day inside follow-up.

    Parameters
    ----------
    runs
        Clean runs (``runner_id``, ``date``, ``distance_km``; optional ``duration_min``,
        ``rpe``, ``shoe_id``, ``start_time``).
    runners
        Clean runners (``runner_id``; optional ``follow_up_start``, ``follow_up_end``). A runner
        without a follow-up window is followed from the first to the last logged run day.
    unlogged_gaps
        ``"rest"`` (default): days without a run are rest days (0 km). ``"missing"``: days in a
        gap of ``UNLOGGED_GAP_MIN_DAYS`` or more days without a run have ``distance_km`` NaN.

    Returns
    -------
    pandas.DataFrame
        ``runner_id``, ``date``, ``day_index`` (days since follow-up start), ``distance_km``
        (sum over the day's runs, 0 on rest days), ``n_runs``, ``longest_run_km``,
        ``duration_min``, ``srpe_au`` (sum of rpe x duration_min, arbitrary units),
        ``rest_day`` (nullable boolean, NA on missing days), ``unlogged_gap`` (bool),
        ``shoe_id`` (shoe of the day's latest run). Sorted by runner and date.
    """
    return _calendar(runs, runners, unlogged_gaps=unlogged_gaps)[0]


def _calendar(
    runs: pd.DataFrame, runners: pd.DataFrame, *, unlogged_gaps: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The daily calendar and the ordered runs (kept for shoe and spike features)."""
    if unlogged_gaps not in UNLOGGED_GAP_POLICIES:
        raise KneeloadError(f"unlogged_gaps must be one of {UNLOGGED_GAP_POLICIES}, "
                            f"got {unlogged_gaps!r}")
    _require(runs, ("runner_id", "date", "distance_km"), "runs")
    _require(runners, ("runner_id",), "runners")
    ordered = _ordered_runs(runs)
    windows = _follow_up_windows(runs, runners)
    lengths = (windows["end"] - windows["start"] + 1).to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    n = int(lengths.sum())
    code = np.repeat(np.arange(len(windows)), lengths)
    day_index = np.arange(n) - np.repeat(offsets, lengths)
    day = np.repeat(windows["start"].to_numpy(), lengths) + day_index

    # place each run on its grid row (runs outside follow-up have no row)
    run_code = pd.Index(windows["runner_id"]).get_indexer(ordered["runner_id"])
    run_day = ordered["day"].to_numpy()
    inside = run_code >= 0
    start_of = np.where(inside, windows["start"].to_numpy()[run_code], 0)
    end_of = np.where(inside, windows["end"].to_numpy()[run_code], -1)
    inside &= (run_day >= start_of) & (run_day <= end_of)
    pos = np.where(inside, offsets[np.maximum(run_code, 0)] + run_day - start_of, -1)
    ordered = ordered.assign(row=pos)
    on = ordered[inside]
    rows = on["row"].to_numpy()
    km = np.bincount(rows, weights=on["distance_km"].to_numpy(), minlength=n)
    n_runs = np.bincount(rows, minlength=n)
    longest = np.zeros(n)
    np.maximum.at(longest, rows, on["distance_km"].to_numpy())
    duration = np.bincount(rows, weights=np.nan_to_num(on["duration_min"].to_numpy()),
                           minlength=n)
    dur_missing = np.bincount(rows, weights=on["duration_min"].isna().to_numpy(), minlength=n)
    load = (on["rpe"] * on["duration_min"]).to_numpy()
    srpe = np.bincount(rows, weights=np.nan_to_num(load), minlength=n)
    srpe_missing = np.bincount(rows, weights=np.isnan(load), minlength=n)
    duration[dur_missing > 0] = np.nan
    srpe[srpe_missing > 0] = np.nan
    shoe = np.full(n, None, dtype=object)
    last_of_day = ~on["row"].duplicated(keep="last").to_numpy()
    shoe[rows[last_of_day]] = on["shoe_id"].to_numpy(dtype=object)[last_of_day]

    # runs of consecutive days without a run, per runner: 21+ days are possibly unlogged
    rest = n_runs == 0
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = (rest[1:] != rest[:-1]) | (code[1:] != code[:-1])
    block = np.cumsum(new_block) - 1
    block_len = np.bincount(block)
    gap = rest & (block_len[block] >= UNLOGGED_GAP_MIN_DAYS)

    distance = km.copy()
    rest_day = pd.array(rest, dtype="boolean")
    if unlogged_gaps == "missing":
        for arr in (distance, duration, srpe):
            arr[gap] = np.nan
        rest_day[gap] = pd.NA
    longest[rest] = 0.0
    daily = pd.DataFrame({
        "runner_id": pd.array(windows["runner_id"].to_numpy()[code], dtype="str"),
        "date": _dates(day),
        "day_index": day_index.astype(np.int64),
        "distance_km": distance,
        "n_runs": n_runs.astype(np.int64),
        "longest_run_km": np.where(gap & (unlogged_gaps == "missing"), np.nan, longest),
        "duration_min": duration,
        "srpe_au": srpe,
        "rest_day": rest_day,
        "unlogged_gap": gap,
        "shoe_id": pd.array(shoe, dtype="str"),
    })
    return daily, ordered


# --- features on the daily grid --------------------------------------------------------------


def _segments(daily: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Segment start row and position within segment for every row.

    A segment is a runner's stretch of known days: the whole follow-up under
    ``unlogged_gaps="rest"``, split around missing days under ``"missing"``.
    """
    n = len(daily)
    known = daily["distance_km"].notna().to_numpy()
    first = daily["day_index"].to_numpy() == 0
    new = np.ones(n, dtype=bool)
    if n:
        new[1:] = first[1:] | (known[1:] != known[:-1])
    starts = np.flatnonzero(new)
    seg_start = starts[np.cumsum(new) - 1] if n else np.zeros(0, dtype=np.int64)
    return seg_start, np.arange(n) - seg_start


def daily_exposures(
    daily: pd.DataFrame,
    ordered_runs: pd.DataFrame | None = None,
    shoes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every exposure feature on every calendar day (the day is the reference day ``s``).

    Parameters
    ----------
    daily
        The output of :func:`daily_calendar`.
    ordered_runs, shoes
        Runs in calendar order (internal) and the shoes table, for the shoe features.

    Returns
    -------
    pandas.DataFrame
        Same rows as ``daily`` with the feature columns of ``docs/exposures.md``.
    """
    km = daily["distance_km"].to_numpy(dtype=float)
    seg_start, seg_pos = _segments(daily)
    known = ~np.isnan(km)

    km_7d = _masked(_window(km, ACUTE_DAYS, "sum"), seg_pos >= ACUTE_DAYS - 1)
    km_prev7d = _masked(_shift(km_7d, ACUTE_DAYS), seg_pos >= 2 * ACUTE_DAYS - 1)
    km_28d = _masked(_window(km, CHRONIC_DAYS, "sum"), seg_pos >= CHRONIC_DAYS - 1)
    jump = _safe_ratio(km_7d - km_prev7d, km_prev7d)
    is_rest = np.where(known, km == 0, np.nan)
    rest_7d = _masked(_window(is_rest, ACUTE_DAYS, "sum"), seg_pos >= ACUTE_DAYS - 1)

    out = pd.DataFrame({
        "km_7d": km_7d,
        "km_prev7d": km_prev7d,
        "mileage_jump": jump,
        "jump_category": jump_category(pd.Series(jump)).values,
        "rest_days_7d": rest_7d,
        "acwr_rolling": _safe_ratio(km_7d, km_28d / (CHRONIC_DAYS / ACUTE_DAYS)),
    }, index=daily.index)
    shoe = _shoe_features(daily, ordered_runs, shoes)
    for col in shoe.columns:
        out[col] = np.where(known, shoe[col].to_numpy(), np.nan)
    return out


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


def _shoe_features(
    daily: pd.DataFrame, ordered_runs: pd.DataFrame | None, shoes: pd.DataFrame | None
) -> pd.DataFrame:
    """``shoe_km`` and ``shoe_age_days`` for the shoe of the latest run on or before each day.

    Uses every logged run (also before follow-up): km on a shoe is a property of the shoe.
    """
    n = len(daily)
    nan = pd.DataFrame({"shoe_km": np.full(n, np.nan), "shoe_age_days": np.full(n, np.nan)},
                       index=daily.index)
    if ordered_runs is None or ordered_runs["shoe_id"].isna().all() or n == 0:
        return nan
    runs = ordered_runs
    with_shoe = runs[runs["shoe_id"].notna()]
    per_shoe_day = (with_shoe.groupby(["shoe_id", "day"], sort=True)["distance_km"].sum()
                    .reset_index())
    per_shoe_day["cum_km"] = per_shoe_day.groupby("shoe_id")["distance_km"].cumsum()
    first_use = with_shoe.groupby("shoe_id")["day"].min()

    start_km = pd.Series(0.0, index=first_use.index)
    start_day = first_use.astype(float)
    if shoes is not None and len(shoes):
        _require(shoes, ("shoe_id", "runner_id"), "shoes")
        info = shoes.assign(shoe_id=shoes["shoe_id"].astype(str)).set_index("shoe_id")
        if "start_km" in info.columns:
            given = info["start_km"].astype(float).reindex(start_km.index)
            start_km = given.fillna(0.0)
        if "start_date" in info.columns:
            given_day = pd.Series(_day_numbers(info["start_date"]).astype(float),
                                  index=info.index)
            given_day[info["start_date"].isna().to_numpy()] = np.nan
            given_day = given_day.reindex(start_day.index)
            start_day = given_day.fillna(start_day)

    # the latest run of each runner-day (runs are in total order) and its shoe
    last = runs.drop_duplicates(["runner_id", "day"], keep="last")
    last = last.merge(per_shoe_day[["shoe_id", "day", "cum_km"]], on=["shoe_id", "day"],
                      how="left")
    runner_codes = pd.Index(daily["runner_id"].unique())
    last_code = runner_codes.get_indexer(last["runner_id"])
    last = last[last_code >= 0]
    last_key = _runner_key(last_code[last_code >= 0], last["day"].to_numpy())
    order = np.argsort(last_key, kind="stable")
    last_key = last_key[order]
    last = last.iloc[order]
    day = _day_numbers(daily["date"])
    grid_key = _runner_key(runner_codes.get_indexer(daily["runner_id"]), day)
    hit = np.searchsorted(last_key, grid_key, side="right") - 1
    ok = hit >= 0
    ok[ok] = (last_key[hit[ok]] >> 32) == (grid_key[ok] >> 32)
    shoe_id = last["shoe_id"].to_numpy(dtype=object)[np.maximum(hit, 0)]
    ok &= pd.notna(shoe_id)
    shoe_index = pd.Index(start_km.index)
    sidx = shoe_index.get_indexer(np.where(ok, shoe_id, None))
    shoe_km = np.where(ok, start_km.to_numpy()[sidx] + last["cum_km"].to_numpy()[
        np.maximum(hit, 0)], np.nan)
    age = np.where(ok, day - start_day.to_numpy()[sidx], np.nan)
    return pd.DataFrame({"shoe_km": shoe_km, "shoe_age_days": age}, index=daily.index)


# --- pain reports and the panel -------------------------------------------------------------


def _dedupe_pain(pain: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the highest pain of several reports on one day; return (kept, merged rows)."""
    table = pain.assign(runner_id=pain["runner_id"].astype(str),
                        _day=_day_numbers(pain["date"]), pain=pain["pain"].astype(float))
    extra = [c for c in table.columns if c.startswith("ostrc_q")]
    table = table.sort_values(["runner_id", "_day", "pain", *extra],
                              ascending=[True, True, False, *[False] * len(extra)],
                              kind="stable", na_position="last")
    dup = table.duplicated(["runner_id", "_day"], keep="first")
    return table[~dup], table[dup]


def _validate_options(exposure_lag_days: int, pain_threshold: float, lags: Sequence[int],
                      unlogged_gaps: str, decay: str) -> None:
    if int(exposure_lag_days) != exposure_lag_days or exposure_lag_days < 0:
        raise KneeloadError(f"exposure_lag_days must be a whole number of days >= 0, "
                            f"got {exposure_lag_days!r}")
    if not 0 <= pain_threshold <= 10:
        raise KneeloadError(f"pain_threshold must be on the 0-10 NRS, got {pain_threshold!r}")
    if any(int(k) != k or k < 1 for k in lags):
        raise KneeloadError(f"lags must be whole weeks >= 1, got {list(lags)!r}")
    if unlogged_gaps not in UNLOGGED_GAP_POLICIES:
        raise KneeloadError(f"unlogged_gaps must be one of {UNLOGGED_GAP_POLICIES}, "
                            f"got {unlogged_gaps!r}")
    if decay not in DECAYS:
        raise KneeloadError(f"decay must be one of {DECAYS}, got {decay!r}")


def _gap_rows(daily: pd.DataFrame) -> list[dict[str, Any]]:
    gap = daily[daily["unlogged_gap"]]
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

    Returns
    -------
    PanelBuild
        ``panel``, ``daily``, ``meta`` and ``audit``.
    """
    _validate_options(exposure_lag_days, pain_threshold, lags, unlogged_gaps, decay)
    _require(pain, ("runner_id", "date", "pain"), "pain")
    _require(runners, ("runner_id", "cohort"), "runners")
    calendar, ordered = _calendar(runs, runners, unlogged_gaps=unlogged_gaps)
    features = daily_exposures(calendar, ordered, shoes)
    daily = pd.concat([calendar, features], axis=1)

    kept, merged = _dedupe_pain(pain)
    known_runner = kept["runner_id"].isin(runners["runner_id"].astype(str))
    unknown = kept[~known_runner]
    kept = kept[known_runner]

    info_cols = ["runner_id", "cohort", *[c for c in ("sex", "age") if c in runners.columns]]
    info = runners[info_cols].assign(runner_id=runners["runner_id"].astype(str))
    report_day = kept["_day"].to_numpy()
    ref_day = report_day - int(exposure_lag_days)
    panel = pd.DataFrame({"runner_id": pd.array(kept["runner_id"].to_numpy(), dtype="str")})
    panel = panel.merge(info, on="runner_id", how="left")
    panel["date"] = _dates(report_day)
    panel["reference_date"] = _dates(ref_day)
    panel["pain"] = kept["pain"].to_numpy()
    panel["pain_any"] = panel["pain"].to_numpy() >= pain_threshold
    for col in (c for c in kept.columns if c.startswith("ostrc_q")):
        panel[col] = kept[col].to_numpy()

    runner_codes = pd.Index(calendar["runner_id"].unique())
    grid_key = _runner_key(runner_codes.get_indexer(calendar["runner_id"]),
                           _day_numbers(calendar["date"]))
    panel_code = runner_codes.get_indexer(panel["runner_id"])
    feature_cols = list(features.columns)

    def lookup(days: np.ndarray) -> pd.DataFrame:
        """Feature rows of each report's runner at ``days`` (NaN where off the calendar)."""
        key = _runner_key(panel_code, days)
        at = np.searchsorted(grid_key, key)
        found = (panel_code >= 0) & (at < len(grid_key))
        found[found] = grid_key[at[found]] == key[found]
        return _take(features, np.where(found, at, -1))

    at_s = lookup(ref_day)
    for col in feature_cols:
        panel[col] = at_s[col].values
    panel = panel.sort_values(["runner_id", "date"], kind="stable").reset_index(drop=True)

    meta = {
        "exposure_lag_days": int(exposure_lag_days),
        "pain_threshold": float(pain_threshold),
        "lags": [int(k) for k in lags],
        "unlogged_gaps": unlogged_gaps,
        "decay": decay,
        "acute_days": ACUTE_DAYS,
        "chronic_days": CHRONIC_DAYS,
        "unlogged_gap_min_days": UNLOGGED_GAP_MIN_DAYS,
        "jump_bands": list(NIELSEN_BANDS),
    }
    gaps = _gap_rows(calendar)
    audit = {
        "duplicate_pain_reports": {
            "count": len(merged),
            "rows": [{"runner_id": r, "date": d.date().isoformat(), "pain": float(p)}
                     for r, d, p in zip(merged["runner_id"], pd.to_datetime(merged["date"]),
                                        merged["pain"], strict=True)],
        },
        "unlogged_gaps": {"count": len(gaps), "days": int(calendar["unlogged_gap"].sum()),
                          "rows": gaps},
        "pain_unknown_runner": {"count": len(unknown),
                                "rows": sorted(unknown["runner_id"].unique().tolist())},
    }
    return PanelBuild(panel=panel, daily=daily, meta=meta, audit=audit)
