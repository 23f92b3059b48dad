"""Epidemiology summaries of knee pain: episode incidence and weekly prevalence, per cohort.

The injurytools-style summaries (Bahr et al. 2020, BJSM 54:372; Clarsen et al. 2013), for
knee pain reports; episodes and time at risk are :mod:`analysis.episodes`' (one definition):

* incidence of pain episodes per 1,000 running hours and per 1,000 km of time at risk (not
  inside an ongoing episode), first and all episodes separately, with exact (Garwood)
  Poisson intervals and two that allow for clustering within runners: a runner (cluster)
  bootstrap with a fixed seed and a quasi-Poisson interval (Pearson dispersion over runners,
  log-exposure offset);
* runner-level weekly prevalence of pain and of OSTRC substantial problems (OSTRC-O2, scored
  by :func:`analysis.ostrc.ostrc_scores`): the share of runners reporting in a week who
  reported pain that week, with Wilson intervals (one count per runner and week).

Definitions and the interval comparison: ``docs/episodes.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.defaults import DEFAULT_SEED
from analysis.episodes import (
    RESOLVE_AFTER_REPORTS,
    at_risk,
    episodes,
    mark_reports,
    ostrc_substantial,
)
from analysis.errors import ModelSpecError

__all__ = ["BOOTSTRAP_REPLICATES", "EPISODE_MIN_PAIN_FREE_REPORTS", "RATE_PER", "SCOPES",
           "cluster_bootstrap_interval", "incidence", "incidence_from_days", "mark_episodes",
           "ostrc_substantial", "poisson_interval", "quasi_poisson_interval",
           "weekly_prevalence", "wilson_interval"]

#: Former name of :data:`analysis.episodes.RESOLVE_AFTER_REPORTS` (kept for callers).
EPISODE_MIN_PAIN_FREE_REPORTS = RESOLVE_AFTER_REPORTS

#: Rates are expressed per this many hours or km.
RATE_PER = 1000.0
#: Runner-bootstrap replicates of the clustered incidence interval (percentile method,
#: Efron & Tibshirani 1993, ch. 13; resampling whole runners keeps their correlation,
#: Field & Welsh 2007, JRSS-B 69:369). 2,000 replicates put the Monte Carlo error of a
#: 2.5 % quantile near 0.35 percentage points of coverage.
BOOTSTRAP_REPLICATES = 2000
#: The two episode scopes of :func:`incidence`: first episodes only, and all incident ones.
SCOPES = ("first", "all")


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


def mark_episodes(panel: pd.DataFrame, *, threshold: float,
                  resolve_after: int = RESOLVE_AFTER_REPORTS) -> pd.DataFrame:
    """The panel's reports with their place in the episodes.

    Kept for callers of the former name: :func:`analysis.episodes.mark_reports` (columns
    ``pain_free_before``, ``onset``, ``prevalent``, ``episode_start`` = an incident onset,
    ``confirms``, ``in_episode``, ``episode``).
    """
    return mark_reports(panel, threshold=threshold, resolve_after=resolve_after)


def incidence(
    panel: pd.DataFrame,
    daily: pd.DataFrame,
    *,
    threshold: float,
    resolve_after: int = RESOLVE_AFTER_REPORTS,
    by: Sequence[str] = ("cohort",),
    alpha: float = 0.05,
    n_boot: int = BOOTSTRAP_REPLICATES,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Pain-episode incidence per 1,000 running hours and per 1,000 km of time at risk.

    :func:`analysis.episodes.episodes` and :func:`analysis.episodes.at_risk` of the panel and
    the daily log, then :func:`incidence_from_days`.

    Parameters
    ----------
    panel
        Pain reports (``runner_id``, ``date``, ``pain_any``, the ``by`` columns).
    daily
        The daily training log (``distance_km``, ``duration_min`` in minutes).
    threshold
        ``panel_meta.json`` ``pain_threshold`` (the one ``pain_any`` was built with).
    resolve_after, by, alpha, n_boot, seed
        As for :func:`analysis.episodes.episodes` and :func:`incidence_from_days`.
    """
    for col in by:
        if col not in panel.columns:
            raise ModelSpecError(f"panel has no column {col!r}", column=col)
    if "day_index" not in daily.columns and "n_runs" not in daily.columns:
        raise ModelSpecError("incidence needs the daily training log (daily.parquet), not "
                             "the runs table", column="date")
    table = episodes(panel, daily, threshold=threshold, resolve_after=resolve_after)
    days = at_risk(daily, table, reports=panel)
    for col in by:
        if col not in days.columns:
            first = panel.drop_duplicates("runner_id").set_index("runner_id")[col]
            days[col] = first.reindex(days["runner_id"]).to_numpy()
    return incidence_from_days(days, by=by, alpha=alpha, n_boot=n_boot, seed=seed)


def _poisson_rate_interval(k: np.ndarray, exposure: np.ndarray, *, alpha: float
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rate per :data:`RATE_PER` and its exact Poisson interval (NaN where no exposure)."""
    lo, hi = poisson_interval(k, alpha=alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(exposure > 0, RATE_PER / exposure, np.nan)
    return k * scale, lo * scale, hi * scale


def quasi_poisson_interval(events: np.ndarray, exposure: np.ndarray, *,
                           alpha: float = 0.05) -> tuple[float, float, float, float]:
    """Rate per :data:`RATE_PER` with a quasi-Poisson interval over clusters (runners).

    The intercept-only Poisson GLM with offset ``log(exposure_i)`` has the pooled rate
    ``r = sum(y) / sum(E)`` as its estimate; the Pearson dispersion over the ``n`` runners
    with exposure, ``phi = sum((y_i - r E_i)^2 / (r E_i)) / (n - 1)``, scales its variance,
    ``Var(log r) = phi / sum(y)`` (McCullagh & Nelder 1989, sec. 4.5; statsmodels
    ``GLM(..., scale="X2")`` gives the same, ``tests/test_epi.py``). Wald interval on the log
    scale.

    Returns
    -------
    rate, low, high, phi
        NaN when there are no events, no exposure or fewer than two runners.
    """
    y = np.asarray(events, dtype=float)
    e = np.asarray(exposure, dtype=float)
    keep = e > 0
    y, e = y[keep], e[keep]
    total, expo = y.sum(), e.sum()
    if expo <= 0:
        return np.nan, np.nan, np.nan, np.nan
    rate = total / expo
    if total <= 0 or len(y) < 2:
        return rate * RATE_PER, np.nan, np.nan, np.nan
    mu = rate * e
    phi = float(np.sum((y - mu) ** 2 / mu) / (len(y) - 1))
    z = stats.norm.ppf(1 - alpha / 2)
    half = z * np.sqrt(phi / total)
    return (rate * RATE_PER, rate * np.exp(-half) * RATE_PER, rate * np.exp(half) * RATE_PER,
            phi)


def cluster_bootstrap_interval(events: np.ndarray, exposure: np.ndarray, *,
                               alpha: float = 0.05, n_boot: int = BOOTSTRAP_REPLICATES,
                               rng: np.random.Generator) -> tuple[float, float]:
    """Percentile interval of the pooled rate (per :data:`RATE_PER`) over runner resamples.

    Runners (clusters) are drawn with replacement, ``n_boot`` times; each replicate's rate is
    ``sum(y) / sum(E)`` over the runners drawn (a replicate without exposure is left out).
    """
    y = np.asarray(events, dtype=float)
    e = np.asarray(exposure, dtype=float)
    n = len(y)
    if n == 0 or e.sum() <= 0:
        return np.nan, np.nan
    draw = rng.integers(0, n, size=(n_boot, n))
    num, den = y[draw].sum(axis=1), e[draw].sum(axis=1)
    ok = den > 0
    rates = num[ok] / den[ok] * RATE_PER
    lo, hi = np.quantile(rates, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def incidence_from_days(
    days: pd.DataFrame,
    *,
    by: Sequence[str] = ("cohort",),
    alpha: float = 0.05,
    n_boot: int = BOOTSTRAP_REPLICATES,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Incidence per 1,000 h and per 1,000 km from :func:`analysis.episodes.at_risk` rows.

    Parameters
    ----------
    days
        :func:`analysis.episodes.at_risk` output (with the ``by`` columns).
    by
        Grouping columns (default: cohort).
    alpha
        1 - confidence level of every interval.
    n_boot, seed
        Runner-bootstrap replicates and the seed of its generator (one generator, groups
        in sorted order, so the result is reproducible).

    Returns
    -------
    pandas.DataFrame
        One row per ``by`` group and ``scope`` (``first``: first episodes over the time at
        risk before any episode; ``all``: every incident episode over all time at risk):
        ``runners`` (with observed days), ``runners_at_risk``, ``episodes``,
        ``days_at_risk``, ``hours`` and ``km`` at risk, ``hours_observed`` and
        ``km_observed`` (every observed day, for comparison), ``days_without_duration``
        (running days at risk without a logged duration: km but no hours); per unit
        ``h`` and ``km``: ``rate_per_1000_<u>``, the exact Poisson ``ci_low_<u>``,
        ``ci_high_<u>``, the runner-bootstrap ``boot_low_<u>``, ``boot_high_<u>``, the
        quasi-Poisson ``qp_low_<u>``, ``qp_high_<u>`` and its dispersion
        ``dispersion_<u>``.
    """
    by = list(by)
    for col in (*by, "runner_id", "observed", "at_risk", "at_risk_first", "event",
                "first_event", "km", "hours"):
        if col not in days.columns:
            raise ModelSpecError(f"at-risk table has no column {col!r}", column=col)
    rows = days.loc[days["observed"].to_numpy(dtype=bool)]
    km = rows["km"].to_numpy(dtype=float)
    hours = rows["hours"].to_numpy(dtype=float)
    no_duration = (np.nan_to_num(km) > 0) & np.isnan(hours)
    km, hours = np.nan_to_num(km), np.nan_to_num(hours)
    rng = np.random.default_rng(seed)
    out = []
    groups = rows.groupby(by, observed=True, sort=True) if by else [((), rows)]
    for key, group in groups:
        idx = rows.index.get_indexer(group.index)
        runner = pd.factorize(group["runner_id"])[0]
        n_runners = int(runner.max()) + 1 if len(runner) else 0
        key = key if isinstance(key, tuple) else (key,)
        for scope in SCOPES:
            risk = group["at_risk_first" if scope == "first" else "at_risk"].to_numpy(bool)
            hit = group["first_event" if scope == "first" else "event"].to_numpy(bool)
            per = {name: np.bincount(runner, weights=np.where(risk, v[idx], 0.0),
                                     minlength=n_runners)
                   for name, v in (("h", hours), ("km", km))}
            y = np.bincount(runner, weights=hit.astype(float), minlength=n_runners)
            k = float(y.sum())
            row = dict(zip(by, key, strict=True)) | {
                "scope": scope,
                "runners": n_runners,
                "runners_at_risk": int(np.bincount(runner, weights=risk,
                                                   minlength=n_runners).astype(bool).sum()),
                "episodes": int(k),
                "days_at_risk": int(risk.sum()),
                "hours": float(per["h"].sum()),
                "km": float(per["km"].sum()),
                "hours_observed": float(hours[idx].sum()),
                "km_observed": float(km[idx].sum()),
                "days_without_duration": int((risk & no_duration[idx]).sum()),
            }
            for unit, e in per.items():
                rate, lo, hi = _poisson_rate_interval(np.array([k]), np.array([e.sum()]),
                                                      alpha=alpha)
                blo, bhi = cluster_bootstrap_interval(y, e, alpha=alpha, n_boot=n_boot,
                                                      rng=rng)
                _, qlo, qhi, phi = quasi_poisson_interval(y, e, alpha=alpha)
                row |= {f"rate_per_1000_{unit}": float(rate[0]),
                        f"ci_low_{unit}": float(lo[0]), f"ci_high_{unit}": float(hi[0]),
                        f"boot_low_{unit}": blo, f"boot_high_{unit}": bhi,
                        f"qp_low_{unit}": qlo, f"qp_high_{unit}": qhi,
                        f"dispersion_{unit}": phi}
            out.append(row)
    return pd.DataFrame(out)


def weekly_prevalence(
    panel: pd.DataFrame,
    *,
    by: Sequence[str] = ("cohort",),
    ostrc_coding: str = "auto",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Runner-level weekly prevalence of pain and of OSTRC substantial problems, per cohort.

    Weeks run Monday to Sunday (``week_start``, by report date). A runner counts once per
    week: in the denominator when they reported that week, in the numerator when any of
    their reports that week has ``pain_any`` (OSTRC: any substantial problem among the
    week's answered reports, :func:`analysis.episodes.ostrc_substantial`). One count per
    runner and week makes the Wilson 95 % interval of a week's share an interval over
    independent runners (a daily reporter is one runner, not seven reports).

    Returns
    -------
    pandas.DataFrame
        One row per ``by`` group and week: ``runners``, ``runners_with_pain``,
        ``prevalence``, ``ci_low``, ``ci_high``; ``ostrc_runners`` (runners with an answered
        OSTRC report that week), ``runners_substantial``, ``prevalence_substantial``,
        ``ci_low_substantial``, ``ci_high_substantial``; and the report counts
        ``reports``, ``pain_reports`` (for comparison: the report-level share
        ``pain_reports / reports`` weights runners by how often they report).
    """
    by = list(by)
    for col in (*by, "runner_id", "date", "pain_any"):
        if col not in panel.columns:
            raise ModelSpecError(f"panel has no column {col!r}", column=col)
    reports = panel.loc[panel["pain_any"].notna()]
    dates = pd.to_datetime(reports["date"])
    week_start = (dates - pd.to_timedelta(dates.dt.day_of_week, unit="D")).dt.normalize()
    substantial = ostrc_substantial(reports, coding=ostrc_coding)
    frame = reports[[*by, "runner_id"]].assign(
        week_start=week_start, pain=reports["pain_any"].astype(bool),
        ostrc_answered=substantial.notna().to_numpy(),
        substantial=substantial.fillna(False).astype(bool).to_numpy())
    per_runner = frame.groupby([*by, "week_start", "runner_id"], observed=True).agg(
        reports=("pain", "size"), pain_reports=("pain", "sum"), pain=("pain", "any"),
        ostrc=("ostrc_answered", "any"), substantial=("substantial", "any"),
    ).reset_index()
    out = per_runner.groupby([*by, "week_start"], observed=True).agg(
        runners=("runner_id", "size"), runners_with_pain=("pain", "sum"),
        ostrc_runners=("ostrc", "sum"), runners_substantial=("substantial", "sum"),
        reports=("reports", "sum"), pain_reports=("pain_reports", "sum"),
    ).reset_index()
    n, k = out["runners"].to_numpy(), out["runners_with_pain"].to_numpy()
    lo, hi = wilson_interval(k, n, alpha=alpha)
    m, s = out["ostrc_runners"].to_numpy(), out["runners_substantial"].to_numpy()
    lo2, hi2 = wilson_interval(s, m, alpha=alpha)
    return out.assign(
        prevalence=k / n, ci_low=lo, ci_high=hi,
        prevalence_substantial=np.where(m > 0, s / np.where(m > 0, m, 1), np.nan),
        ci_low_substantial=lo2, ci_high_substantial=hi2,
    )
