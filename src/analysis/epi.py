"""Epidemiology summaries of knee pain: episode incidence and weekly prevalence, per cohort.

The injurytools-style summaries (Bahr 2009; Clarsen et al. 2013), for knee pain reports:

* incidence of pain episodes per 1,000 running hours and per 1,000 km, with exact (Garwood)
  Poisson intervals; a new episode starts when ``pain_any`` turns on after at least
  :data:`EPISODE_MIN_PAIN_FREE_REPORTS` pain-free reports of the same runner;
* weekly prevalence of ``pain_any`` and of OSTRC substantial problems (OSTRC-O2, scored by
  :func:`analysis.ostrc.ostrc_scores`), with Wilson intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.errors import ModelSpecError

#: A new pain episode needs at least this many pain-free reports before it (issue 5), so a
#: single pain-free week inside a continuing problem does not split it in two.
EPISODE_MIN_PAIN_FREE_REPORTS = 2

#: Rates are expressed per this many hours or km.
RATE_PER = 1000.0


def wilson_interval(k: np.ndarray | float, n: np.ndarray | float, *,
                    alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion k/n (Wilson 1927, JASA 22:209-12).

    Returns NaN where n == 0.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    low = np.where(n > 0, np.clip(centre - half, 0, 1), np.nan)
    high = np.where(n > 0, np.clip(centre + half, 0, 1), np.nan)
    return low, high


def poisson_interval(k: np.ndarray | float, *,
                     alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood 1936) interval for a Poisson count k: chi-square quantiles / 2."""
    k = np.asarray(k, dtype=float)
    low = np.where(k > 0, stats.chi2.ppf(alpha / 2, 2 * k) / 2, 0.0)
    high = stats.chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2
    return low, high


def _sorted_reports(panel: pd.DataFrame, group: str) -> pd.DataFrame:
    for col in (group, "date", "pain_any"):
        if col not in panel.columns:
            raise ModelSpecError(f"panel has no column {col!r}", column=col)
    reports = panel.loc[panel["pain_any"].notna()]
    return reports.sort_values([group, "date"], kind="stable").reset_index(drop=True)


def mark_episodes(panel: pd.DataFrame, *,
                  min_pain_free_reports: int = EPISODE_MIN_PAIN_FREE_REPORTS,
                  group: str = "runner_id") -> pd.DataFrame:
    """The panel sorted by runner and date with ``pain_free_before`` and ``episode_start``.

    ``pain_free_before`` is the number of consecutive pain-free reports of the same runner
    just before each report; ``episode_start`` is ``pain_any`` with at least
    ``min_pain_free_reports`` of them (pain at the start of follow-up is prevalent, not new).
    Reports with missing ``pain_any`` are left out.
    """
    reports = _sorted_reports(panel, group)
    pain = reports["pain_any"].to_numpy(dtype=bool)
    codes = pd.factorize(reports[group])[0]
    pos = np.arange(len(reports))
    is_first = np.r_[True, codes[1:] != codes[:-1]] if len(codes) else np.array([], bool)
    start = np.maximum.accumulate(np.where(is_first, pos, 0))
    last_pain = np.maximum.accumulate(np.where(pain, pos, -1))
    last_pain = np.where(last_pain >= start, last_pain, start - 1)
    run_length = pos - last_pain  # pain-free reports ending at (and including) each row
    before = np.where(is_first, 0, np.r_[0, run_length[:-1]])
    return reports.assign(pain_free_before=before,
                          episode_start=pain & (before >= min_pain_free_reports))


def _observed_running(panel: pd.DataFrame, runs: pd.DataFrame, group: str) -> pd.DataFrame:
    """Runs of each runner between their first and last pain report (inclusive)."""
    for col in (group, "date", "distance_km"):
        if col not in runs.columns:
            raise ModelSpecError(f"runs table has no column {col!r}", column=col)
    window = panel.groupby(group, observed=True)["date"].agg(["min", "max"])
    merged = runs.merge(window, left_on=group, right_index=True, how="inner")
    inside = (merged["date"] >= merged["min"]) & (merged["date"] <= merged["max"])
    return merged.loc[inside]


def incidence(
    panel: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    by: Sequence[str] = ("cohort",),
    min_pain_free_reports: int = EPISODE_MIN_PAIN_FREE_REPORTS,
    alpha: float = 0.05,
    group: str = "runner_id",
) -> pd.DataFrame:
    """Pain-episode incidence per 1,000 running hours and per 1,000 km, per cohort.

    Exposure is the running (``distance_km``, ``duration_min``) of each runner between their
    first and last pain report; runs without a duration add km but no hours (counted in
    ``runs_without_duration``).

    Returns
    -------
    One row per ``by`` group: runners, reports, episodes, km, hours, the two rates and their
    exact Poisson 95 % intervals (``rate_per_1000_h``, ``ci_low_h``, ``ci_high_h``,
    ``rate_per_1000_km``, ``ci_low_km``, ``ci_high_km``).
    """
    by = list(by)
    marked = mark_episodes(panel, min_pain_free_reports=min_pain_free_reports, group=group)
    counts = marked.groupby(by, observed=True).agg(
        runners=(group, "nunique"), reports=("pain_any", "size"),
        episodes=("episode_start", "sum"))
    running = _observed_running(marked, runs, group)
    runner_keys = marked.drop_duplicates(group)[[group, *by]]
    running = running.drop(columns=[c for c in by if c in running.columns]).merge(
        runner_keys, on=group, how="left")
    duration = (running["duration_min"] if "duration_min" in running.columns
                else pd.Series(np.nan, index=running.index))
    running = running.assign(hours=duration / 60.0, no_duration=duration.isna())
    exposure = running.groupby(by, observed=True).agg(
        km=("distance_km", "sum"), hours=("hours", "sum"),
        runs_without_duration=("no_duration", "sum"))
    out = counts.join(exposure, how="left").fillna(
        {"km": 0.0, "hours": 0.0, "runs_without_duration": 0})
    k = out["episodes"].to_numpy(dtype=float)
    lo, hi = poisson_interval(k, alpha=alpha)
    for unit, col in (("h", "hours"), ("km", "km")):
        expo = out[col].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(expo > 0, RATE_PER / expo, np.nan)
        out[f"rate_per_1000_{unit}"] = k * scale
        out[f"ci_low_{unit}"] = lo * scale
        out[f"ci_high_{unit}"] = hi * scale
    return out.reset_index().astype({"episodes": int, "runs_without_duration": int})


def ostrc_substantial(reports: pd.DataFrame, *, coding: str = "auto") -> pd.Series:
    """OSTRC substantial problem per report (nullable boolean; NA when not answered).

    Uses the panel's ``ostrc_substantial`` column when present, else scores ``ostrc_q1`` ..
    ``ostrc_q4`` with :func:`analysis.ostrc.ostrc_scores` (OSTRC-O2, Clarsen et al.
    2020: item 1 "could not participate", or item 2 or 3 "moderate" or worse), so the
    definition lives in one place.
    """
    if "ostrc_substantial" in reports.columns:
        return reports["ostrc_substantial"].astype("boolean")
    if not any(c.startswith("ostrc_q") for c in reports.columns):
        return pd.Series(pd.NA, index=reports.index, dtype="boolean")
    from analysis.ostrc import ostrc_scores

    return ostrc_scores(reports, coding=coding)["ostrc_substantial"].astype("boolean")


def weekly_prevalence(
    panel: pd.DataFrame,
    *,
    by: Sequence[str] = ("cohort",),
    ostrc_coding: str = "auto",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Weekly prevalence of ``pain_any`` and of OSTRC substantial problems, per cohort.

    Weeks run Monday to Sunday (``week_start``, by report date). Wilson 95 % intervals.
    """
    by = list(by)
    reports = panel.loc[panel["pain_any"].notna()]
    dates = pd.to_datetime(reports["date"])
    week_start = (dates - pd.to_timedelta(dates.dt.day_of_week, unit="D")).dt.normalize()
    substantial = ostrc_substantial(reports, coding=ostrc_coding)
    frame = reports[by].assign(
        week_start=week_start, pain=reports["pain_any"].astype(bool),
        ostrc_answered=substantial.notna(), substantial=substantial.fillna(False).astype(bool))
    out = frame.groupby([*by, "week_start"], observed=True).agg(
        reports=("pain", "size"), pain_reports=("pain", "sum"),
        ostrc_reports=("ostrc_answered", "sum"), substantial=("substantial", "sum"),
    ).reset_index()
    n, k = out["reports"].to_numpy(), out["pain_reports"].to_numpy()
    lo, hi = wilson_interval(k, n, alpha=alpha)
    m, s = out["ostrc_reports"].to_numpy(), out["substantial"].to_numpy()
    lo2, hi2 = wilson_interval(s, m, alpha=alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        return out.assign(
            prevalence=k / n, ci_low=lo, ci_high=hi,
            prevalence_substantial=np.where(m > 0, s / np.where(m > 0, m, 1), np.nan),
            ci_low_substantial=lo2, ci_high_substantial=hi2,
        )
