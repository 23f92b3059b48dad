"""Time-to-event models of pain-episode onset with time-varying exposures (docs/models.md).

A counting-process table (:func:`counting_process`: one row per runner-day at risk, or per
session, with ``start``, ``stop``, ``event`` and the exposures at the lagged reference day)
is fitted by a compact Efron partial-likelihood Newton solver (:func:`cox_fit`):

* ``cox``            first episode only, time since the runner's follow-up start;
* ``andersen-gill``  every episode, total time since follow-up start (Andersen & Gill 1982,
  Ann Stat 10:1100);
* ``pwp``            every episode, gap time since the previous episode ended, stratified by
  episode number (Prentice, Williams & Peterson 1981, Biometrika 68:373).

Standard errors are runner-clustered sandwich estimates (the dfbeta residuals summed per
runner), what R's ``coxph(Surv(start, stop, event) ~ x + cluster(runner_id),
ties = "efron")`` reports as ``robust se``; ties by Efron's approximation (R's default).
Proportional hazards are checked by the score test of R's ``cox.zph`` (Grambsch & Therneau
1994; Therneau & Grambsch 2000, ch. 6) with ``transform = "km"`` (R's default). Kaplan-Meier
curves with Greenwood intervals (:func:`kaplan_meier`) take the same rows, so a band that
changes over time moves a runner between curves (Simon & Makuch 1984, Stat Med 3:35).

Agreement with R survival 3.5 is tested in ``tests/test_survival.py`` against
``tests/reference/cox_reference.csv`` (written by ``tests/reference/cox_reference.R``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from analysis.errors import ModelSpecError
from analysis.models.result import Z_95, ModelResult, _wald_table

#: The time-to-event models by name (``kneeload fit --model``) -> counting-process kind.
SURVIVAL_MODELS = {"cox": "first", "andersen-gill": "recurrent", "pwp": "gap"}
#: Kinds of counting-process table (:func:`counting_process`).
KINDS = ("first", "recurrent", "gap")
#: Units of a counting-process row.
UNITS = ("day", "session")
#: Newton's method stops when the Newton decrement ``g' I^-1 g`` (the squared gradient in
#: the metric of the information) falls below this; ``converged`` says whether it did.
NEWTON_TOL = 1e-18
NEWTON_MAX_ITER = 50
#: Relative rounding of a log partial likelihood summed over thousands of terms: a Newton step
#: that lowers it by less is not a worse fit.
LOGLIK_ROUNDING = 1e-11
#: Transforms of time for the proportional-hazards test (R ``cox.zph(transform = )``).
ZPH_TRANSFORMS = ("km", "identity")
#: A proportional-hazards test below this p is shown as a problem of the fit.
PH_ALPHA = 0.05
#: A coefficient beyond this many log-hazard units per SD of its column (a hazard ratio of
#: e^10 = 22,000 per SD) is a monotone likelihood: a band with no episodes, or a column
#: that separates the events; its estimate is infinite and Newton stops on a flat
#: likelihood (R's coxph warns "coefficient may be infinite"; Heinze & Schemper 2001).
MAX_STANDARDISED_LOG_HR = 10.0
PROBLEM_INFINITE = "infinite estimate (monotone likelihood)"
#: Start of a problem that a term breaks the proportional-hazards assumption.
PROBLEM_PH = "proportional hazards"
#: Single-session spike bands of the session's distance relative to the longest run in the
#: previous 30 days (Frandsen et al. 2025, BJSM, doi:10.1136/bjsports-2024-109380, time-varying
#: states of a Cox model): regression or up to a 10 % increase (ratio <= 1.10, the reference),
#: small spike (> 10-30 %), moderate spike (> 30-100 %), large spike (> 100 %).
#: The 1.10 edge is analysis.exposures.RUN_SPIKE_RATIO, the definition of ``run_spike``.
SPIKE_BAND_EDGES = (1.10, 1.30, 2.00)
SPIKE_BANDS = ("<=10%", "10-30%", "30-100%", ">100%")

#: Column contract of a counting-process table (:func:`counting_process`); exposures follow.
CP_COLUMNS = ("runner_id", "start", "stop", "event", "episode_number", "stratum", "date",
              "reference_date")


# --- the engine: Efron partial likelihood, Newton, sandwich -----------------------------------


@dataclass
class CoxFit:
    """Raw output of :func:`cox_fit` (coefficients per unit of each column, log hazard)."""

    coef: np.ndarray
    vcov: np.ndarray  # model-based, inverse information
    robust_vcov: np.ndarray | None  # cluster sandwich (None without clusters)
    loglik: float
    loglik_null: float
    n_iter: int
    converged: bool
    decrement: float
    n_events: int
    score_residuals: np.ndarray
    zph: pd.DataFrame | None = None


class _Risk:
    """Sorted indices that give risk-set sums of rows at every event time.

    Strata are laid end to end on one time axis (offset ``K`` per stratum, ``K`` beyond the
    span of the times), so a row is at risk at event time ``u`` iff ``start < u <= stop`` on
    that axis. Each row is paired with the event times inside its interval (one pair per row
    and time: a runner-day row covers at most one) and risk-set sums add the pairs up:
    exact, where "all with stop >= u minus all with start >= u" cancels catastrophically
    when a few large ``exp(eta)`` dominate the totals.
    """

    def __init__(self, start: np.ndarray, stop: np.ndarray, event: np.ndarray,
                 strata: np.ndarray) -> None:
        lo = min(float(start.min()), 0.0)
        span = float(stop.max()) - lo + 1.0
        self.start = start - lo + strata * span
        self.stop = stop - lo + strata * span
        self.event = event
        ev_t = self.stop[event]
        self.times, self.inverse, self.d = np.unique(ev_t, return_inverse=True,
                                                     return_counts=True)
        self.event_rows = np.flatnonzero(event)
        # Efron: k = 0..d-1 per event time, fraction k / d
        self.jj = np.repeat(np.arange(len(self.times)), self.d)
        first = np.r_[0, np.cumsum(self.d)[:-1]]
        self.frac = (np.arange(len(self.jj)) - first[self.jj]) / self.d[self.jj]
        # event times inside each row's interval: (start, stop] -> index range
        self.row_hi = np.searchsorted(self.times, self.stop, side="right")
        self.row_lo = np.searchsorted(self.times, self.start, side="right")
        counts = self.row_hi - self.row_lo
        pair_row = np.repeat(np.arange(len(self.stop)), counts)
        offsets = np.r_[0, np.cumsum(counts)[:-1]]
        pair_time = self.row_lo[pair_row] + (np.arange(len(pair_row)) - offsets[pair_row])
        self.row_pairs = (pair_row, pair_time)  # by row, for sums over a row's times
        order = np.argsort(pair_time, kind="stable")
        self.pair_row = pair_row[order]
        # every event time has its own events at risk, so no group of pairs is empty
        self.pair_first = np.searchsorted(pair_time[order], np.arange(len(self.times)))

    def at_risk_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` (rows first) over the risk set of each event time."""
        return np.add.reduceat(values[self.pair_row], self.pair_first, axis=0)

    def event_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` over the events at each event time."""
        out = np.zeros((len(self.times), *values.shape[1:]))
        np.add.at(out, self.inverse, values[self.event_rows])
        return out

    def over_rows(self, per_time: np.ndarray) -> np.ndarray:
        """Sum of a per-event-time quantity over the event times inside each row's interval
        (over the pairs: exact, as :meth:`at_risk_sum`)."""
        rows, times = self.row_pairs
        out = np.zeros((len(self.stop), *per_time.shape[1:]))
        np.add.at(out, rows, per_time[times])
        return out


@dataclass
class _Efron:
    loglik: float
    grad: np.ndarray
    info: np.ndarray
    a: np.ndarray  # Efron means per (time, k)
    s0: np.ndarray  # Efron denominators per (time, k)
    r: np.ndarray


def _efron(risk: _Risk, X: np.ndarray, beta: np.ndarray) -> _Efron:
    eta = X @ beta
    shift = float(eta.max())  # exp(eta - max): no overflow; log S0 gets the shift back
    r = np.exp(eta - shift)
    rx = r[:, None] * X
    rxx = rx[:, :, None] * X[:, None, :]
    s0 = risk.at_risk_sum(r)
    s1 = risk.at_risk_sum(rx)
    s2 = risk.at_risk_sum(rxx)
    e0, e1, e2 = risk.event_sum(r), risk.event_sum(rx), risk.event_sum(rxx)
    jj, frac = risk.jj, risk.frac
    s0k = s0[jj] - frac * e0[jj]
    s1k = s1[jj] - frac[:, None] * e1[jj]
    s2k = s2[jj] - frac[:, None, None] * e2[jj]
    a = s1k / s0k[:, None]
    loglik = float(eta[risk.event_rows].sum() - np.log(s0k).sum() - shift * len(s0k))
    grad = X[risk.event_rows].sum(axis=0) - a.sum(axis=0)
    info = (s2k / s0k[:, None, None]).sum(axis=0) - np.einsum("ki,kj->ij", a, a)
    return _Efron(loglik, grad, info, a, s0k, r)


def _score_residuals(risk: _Risk, X: np.ndarray, ef: _Efron) -> np.ndarray:
    """Per-row score residuals (Efron ties; they add up to the score; Therneau & Grambsch
    2000, sec. 3.7): ``dN_i (x_i - abar) - sum_k w_ik r_i (x_i - a_k) / S0_k``."""
    n_t = len(risk.times)
    inv = 1.0 / ef.s0
    h0 = np.bincount(risk.jj, weights=inv, minlength=n_t)
    h1 = np.zeros((n_t, X.shape[1]))
    np.add.at(h1, risk.jj, ef.a * inv[:, None])
    g0 = np.bincount(risk.jj, weights=risk.frac * inv, minlength=n_t)
    g1 = np.zeros_like(h1)
    np.add.at(g1, risk.jj, ef.a * (risk.frac * inv)[:, None])
    abar = np.zeros_like(h1)
    np.add.at(abar, risk.jj, ef.a)
    abar /= risk.d[:, None]
    resid = -ef.r[:, None] * (X * risk.over_rows(h0)[:, None] - risk.over_rows(h1))
    ev, t = risk.event_rows, risk.inverse
    resid[ev] += (X[ev] - abar[t]) + ef.r[ev, None] * (X[ev] * g0[t, None] - g1[t])
    return resid


def cox_fit(start: np.ndarray, stop: np.ndarray, event: np.ndarray, X: np.ndarray, *,
            strata: np.ndarray | None = None, cluster: np.ndarray | None = None,
            zph_transform: str | None = "km") -> CoxFit:
    """Cox partial likelihood (Efron ties) with (start, stop] rows, strata and clusters.

    Parameters
    ----------
    start, stop : interval of each row on the analysis time scale (days); ``start < stop``.
    event : whether the row's interval ends in an event.
    X : covariates (rows x terms), per unit of each column.
    strata : integer stratum of each row (separate baseline hazards), default one stratum.
    cluster : cluster code of each row (the runner): robust covariance from the dfbeta
        residuals summed per cluster (R ``coxph(..., cluster = )``); None: none.
    zph_transform : time transform of the proportional-hazards test (``"km"`` or
        ``"identity"``, as R ``cox.zph``), None to skip it.

    Returns
    -------
    :class:`CoxFit`. Newton-Raphson from 0 with step halving; ``converged`` when the Newton
    decrement is below :data:`NEWTON_TOL` within :data:`NEWTON_MAX_ITER` steps.
    """
    start = np.asarray(start, dtype=float)
    stop = np.asarray(stop, dtype=float)
    event = np.asarray(event, dtype=bool)
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    strata = np.zeros(len(stop), dtype=int) if strata is None else np.asarray(strata)
    Xc = X - X.mean(axis=0)  # centring changes nothing but the rounding (R centres too)
    risk = _Risk(start, stop, event, strata.astype(float))
    p = X.shape[1]
    beta = np.zeros(p)
    ef = _efron(risk, Xc, beta)
    loglik_null = ef.loglik
    converged, decrement, n_iter = False, np.inf, 0
    for n_iter in range(1, NEWTON_MAX_ITER + 1):  # noqa: B007 (n_iter reported)
        try:
            step = np.linalg.solve(ef.info, ef.grad)
        except np.linalg.LinAlgError:  # information singular: an estimate ran off to infinity
            break
        decrement = float(ef.grad @ step)
        if decrement < NEWTON_TOL:
            converged = True
            break
        halvings = 0
        while True:
            # a long first step can underflow every exp(eta) of a risk set (0/0, log 0):
            # its log-likelihood is then NaN or +inf, which the test below calls worse
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                trial = _efron(risk, Xc, beta + step)
            # a step is halved only when the log-likelihood falls by more than its rounding
            # (LOGLIK_ROUNDING relative): a fixed 1e-12 halved a converged step of a
            # -920 log-likelihood for ever (a simulated PWP fit, bench_survival_coverage)
            floor = LOGLIK_ROUNDING * (1.0 + abs(ef.loglik))
            better = np.isfinite(trial.loglik) and trial.loglik >= ef.loglik - floor
            if better or halvings > 30:
                break
            step, halvings = step / 2, halvings + 1
        beta, ef = beta + step, trial
    try:
        vcov = np.linalg.inv(ef.info)
    except np.linalg.LinAlgError:
        vcov = np.linalg.pinv(ef.info)
    resid = _score_residuals(risk, Xc, ef)
    robust = None
    if cluster is not None:
        codes = pd.factorize(np.asarray(cluster))[0]
        dfbeta = resid @ vcov
        per = np.zeros((codes.max() + 1, p))
        np.add.at(per, codes, dfbeta)
        robust = per.T @ per
    zph = None if zph_transform is None else _zph(risk, Xc, ef, start, stop, event,
                                                  transform=zph_transform)
    return CoxFit(beta, vcov, robust, ef.loglik, loglik_null, n_iter, converged, decrement,
                  int(event.sum()), resid, zph)


def _km_left(start: np.ndarray, stop: np.ndarray, event: np.ndarray,
             at: np.ndarray) -> np.ndarray:
    """Kaplan-Meier of all rows (strata ignored, as R ``cox.zph``) just before each ``at``."""
    km = _product_limit(start, stop, event)
    idx = np.searchsorted(km["time"].to_numpy(), at, side="left")  # times strictly below
    surv = np.r_[1.0, km["survival"].to_numpy()]
    return surv[idx]


def _zph(risk: _Risk, X: np.ndarray, ef: _Efron, start: np.ndarray, stop: np.ndarray,
         event: np.ndarray, *, transform: str) -> pd.DataFrame:
    """Score test of proportional hazards per term and global (R ``cox.zph``, survival 3).

    For ``g(t)`` the transformed event time (centred at its mean over events), the score of
    the added terms ``x g(t)`` at zero and the joint information of (beta, gamma) give
    ``u' I^-1 u`` with 1 df per term (the term's gamma with every beta) and p df globally.
    """
    if transform not in ZPH_TRANSFORMS:
        raise ModelSpecError(f"transform must be one of {', '.join(ZPH_TRANSFORMS)}; "
                             f"got {transform!r}")
    ev_stop = stop[risk.event_rows]
    if transform == "km":
        g_rows = 1.0 - _km_left(start, stop, event, ev_stop)
    else:
        g_rows = ev_stop
    g_rows = g_rows - g_rows.mean()
    g_time = np.zeros(len(risk.times))
    g_time[risk.inverse] = g_rows  # one value per (stratum, time): all its events share it
    gk = g_time[risk.jj]
    x_ev = X[risk.event_rows]
    u = (g_rows[:, None] * x_ev).sum(axis=0) - (gk[:, None] * ef.a).sum(axis=0)
    # per (time, k) variance of the Efron sum
    p = X.shape[1]
    inv = 1.0 / ef.s0
    r = ef.r
    rx = r[:, None] * X
    rxx = rx[:, :, None] * X[:, None, :]
    s2 = risk.at_risk_sum(rxx)
    e2 = risk.event_sum(rxx)
    s2k = s2[risk.jj] - risk.frac[:, None, None] * e2[risk.jj]
    v = s2k * inv[:, None, None] - ef.a[:, :, None] * ef.a[:, None, :]
    i_bb = v.sum(axis=0)
    i_bg = (gk[:, None, None] * v).sum(axis=0)
    i_gg = (gk[:, None, None] ** 2 * v).sum(axis=0)
    imat = np.block([[i_bb, i_bg], [i_bg, i_gg]])
    full_u = np.r_[np.zeros(p), u]
    rows = []
    for j in range(p):
        kk = np.r_[np.arange(p), p + j]
        rows.append((j, _quadratic(full_u[kk], imat[np.ix_(kk, kk)]), 1))
    rows.append((-1, _quadratic(full_u, imat), p))
    out = pd.DataFrame(rows, columns=["index", "chisq", "df"])
    out["p_value"] = special.chdtrc(out["df"].to_numpy(float), out["chisq"].to_numpy(float))
    out["transform"] = transform
    return out


def _quadratic(u: np.ndarray, info: np.ndarray) -> float:
    """``u' info^-1 u``; NaN when the information is singular (an infinite estimate)."""
    try:
        return float(u @ np.linalg.solve(info, u))
    except np.linalg.LinAlgError:
        return float("nan")


# --- Kaplan-Meier -----------------------------------------------------------------------------


def _product_limit(start: np.ndarray, stop: np.ndarray, event: np.ndarray) -> pd.DataFrame:
    """Product-limit estimate over (start, stop] rows at every distinct event time."""
    times = np.unique(stop[event])
    s_sorted = np.sort(stop)
    b_sorted = np.sort(start)
    n_risk = ((len(stop) - np.searchsorted(s_sorted, times, side="left"))
              - (len(start) - np.searchsorted(b_sorted, times, side="left")))
    d = np.bincount(np.searchsorted(times, stop[event]), minlength=len(times))
    surv = np.cumprod(1.0 - d / n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        green = np.cumsum(d / (n_risk * (n_risk - d)))
    return pd.DataFrame({"time": times, "n_risk": n_risk, "n_event": d, "survival": surv,
                         "greenwood": green})


def kaplan_meier(rows: pd.DataFrame, *, by: str | None = None,
                 start: str = "start", stop: str = "stop", event: str = "event") -> pd.DataFrame:
    """Kaplan-Meier survival and cumulative incidence with Greenwood 95 % intervals.

    Parameters
    ----------
    rows : counting-process rows (:func:`counting_process`, ``kind="first"`` for the first
        episode): ``start``, ``stop`` (days), ``event``.
    by : column of bands (e.g. ``jump_category`` at the reference day); a row counts in its
        own band, so a runner whose band changes moves between curves (Simon & Makuch 1984).

    Returns
    -------
    One row per band and event time: ``time`` (days), ``n_risk``, ``n_event``, ``survival``,
    ``std_error`` (Greenwood SE of the survival, R ``summary(survfit)``'s ``std.err``),
    ``surv_low``/``surv_high`` (R's default ``conf.type = "log"``: ``S exp(-/+ z se)``, capped
    at 1), and ``cum_incidence`` = 1 - survival with ``ci_low``/``ci_high``.
    """
    groups = [(None, rows)] if by is None else [
        (band, sub) for band, sub in rows.groupby(by, observed=True, sort=True)]
    parts = []
    for band, sub in groups:
        ev = sub[event].to_numpy(dtype=bool)
        if not ev.any():
            continue
        km = _product_limit(sub[start].to_numpy(float), sub[stop].to_numpy(float), ev)
        green = km.pop("greenwood").to_numpy()
        surv = km["survival"].to_numpy()
        # at S = 0 (everyone left had the event) the Greenwood sum is infinite: NaN, as R
        pos = surv > 0
        se = np.full(len(surv), np.nan)
        se[pos] = np.sqrt(green[pos])
        low, high, std = (np.full(len(surv), np.nan) for _ in range(3))
        low[pos] = surv[pos] * np.exp(-Z_95 * se[pos])
        high[pos] = np.minimum(surv[pos] * np.exp(Z_95 * se[pos]), 1.0)
        std[pos] = se[pos] * surv[pos]
        km = km.assign(std_error=std, surv_low=low, surv_high=high, cum_incidence=1.0 - surv,
                       ci_low=1.0 - high, ci_high=1.0 - low)
        if by is not None:
            km.insert(0, by, band)
        parts.append(km)
    if not parts:
        raise ModelSpecError("no events: a Kaplan-Meier curve needs at least one episode")
    return pd.concat(parts, ignore_index=True)


# --- the counting-process table -----------------------------------------------------------


def counting_process(daily: pd.DataFrame, episodes: pd.DataFrame, *, reports: pd.DataFrame,
                     exposures: Sequence[str], lag_days: int, unit: str = "day",
                     kind: str = "recurrent") -> pd.DataFrame:
    """One row per runner-day (or session) at risk of a new pain episode.

    Parameters
    ----------
    daily : ``daily.parquet``: runner_id, date, day_index (days since follow-up start),
        in_follow_up, distance_km and the exposure columns (their value on that day); the
        lead-in rows give the lagged values of the first follow-up days.
    episodes : :func:`analysis.episodes.episodes` of ``reports`` (the build's
        ``episodes.parquet``).
    reports : the pain reports (the panel) the episodes came from.
    exposures : daily columns, taken at the reference day ``date - lag_days``.
    lag_days : days between the reference day and the day at risk (panel_meta
        ``exposure_lag_days``).
    unit : ``"day"``, or ``"session"``: one row per session (a run day, its longest run)
        spanning the at-risk days from it to the next session, with the session's own
        ``spike_ratio`` / ``spike_band`` (:func:`session_exposures`; Frandsen et al. 2025)
        and the other exposures at the session's reference day. Merging consecutive days
        with equal covariates leaves the partial likelihood unchanged.
    kind : ``"first"`` (days at risk before any episode), ``"recurrent"`` (all days at risk,
        total time) or ``"gap"`` (all days at risk, time since the previous episode was
        resolved, ``stratum`` = episode number).

    Returns
    -------
    Columns :data:`CP_COLUMNS` then the exposures. Which days are at risk, which are events
    and how many episodes came before are :func:`analysis.episodes.at_risk`'s (the one
    definition of time at risk). ``start``/``stop`` in days: day ``day_index`` (days since
    follow-up start) is the interval (day_index, day_index + 1]; on the gap scale
    (``kind="gap"``) episode 1 keeps that clock and episode k > 1 restarts at 0 on the first
    day at risk after episode k - 1 was resolved. ``episode_number`` = 1 + episodes with
    onset before the day (a prevalent episode at the first report counts).
    """
    if kind not in KINDS:
        raise ModelSpecError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if unit not in UNITS:
        raise ModelSpecError(f"unit must be one of {', '.join(UNITS)}; got {unit!r}")
    from analysis.episodes import at_risk

    exposures = list(exposures)
    session_columns = ("spike_ratio", "spike_band")
    missing = [c for c in exposures if c not in daily.columns and c not in session_columns]
    if missing:
        raise ModelSpecError(f"no daily column(s) {', '.join(missing)} for the exposures",
                             column=missing[0])
    risk = at_risk(daily, episodes, reports=reports)
    days = daily.assign(_at_risk=risk["at_risk"].to_numpy(bool),
                        _first=risk["at_risk_first"].to_numpy(bool),
                        event=risk["event"].to_numpy(bool),
                        episode_number=risk["episodes_before"].to_numpy(int) + 1)
    days = days.sort_values(["runner_id", "date"], kind="stable").reset_index(drop=True)
    if unit == "session" or any(c in session_columns for c in exposures):
        days = days.join(session_exposures(days))
    lagged = [c for c in exposures if c not in session_columns]
    ref = days[["runner_id", "date", *lagged]].assign(
        date=lambda d: d["date"] + pd.Timedelta(days=lag_days))
    ref = ref.rename(columns={"date": "_date", **{c: f"_ref_{c}" for c in lagged}})
    days = days.drop(columns=lagged).merge(
        ref, left_on=["runner_id", "date"], right_on=["runner_id", "_date"],
        how="left").drop(columns="_date")
    days = days.rename(columns={f"_ref_{c}": c for c in lagged})
    rows = days.loc[days["_first"] if kind == "first" else days["_at_risk"]].copy()
    rows["start"] = rows["day_index"].astype(float)
    if kind == "gap":
        origin = rows.groupby(["runner_id", "episode_number"])["day_index"].transform("min")
        origin = origin.where(rows["episode_number"] > 1, 0)
        rows["start"] = (rows["day_index"] - origin).astype(float)
    rows["stop"] = rows["start"] + 1.0
    rows["stratum"] = rows["episode_number"] if kind == "gap" else 1
    rows["reference_date"] = rows["date"] - pd.Timedelta(days=lag_days)
    if unit == "session":
        rows = _collapse_sessions(rows, exposures)
    return rows[[*CP_COLUMNS, *exposures]].reset_index(drop=True)


def session_exposures(days: pd.DataFrame) -> pd.DataFrame:
    """Per daily row: the latest session's spike ratio and band (Frandsen et al. 2025).

    ``spike_ratio`` = the session's longest run (km) / the longest run in the
    :data:`analysis.exposures.RUN_SPIKE_LOOKBACK_DAYS` days before it
    (:func:`analysis.exposures.longest_run_before`, the one denominator of ``run_spike``,
    :data:`analysis.exposures.RUN_SPIKE_RATIO`); carried forward to the days after the
    session; NaN when that window is not wholly known (it reaches before the runner's
    calendar or into an unknown day); infinite (band ``>100%``) after 30 days without a
    run. ``spike_band`` its band (:data:`SPIKE_BANDS`); ``session`` a counter of sessions
    per runner. ``days``: the daily calendar, each runner's days consecutive in date order.
    """
    from analysis.exposures import longest_run_before

    before = longest_run_before(days)
    ran = days["n_runs"] > 0
    longest = days["longest_run_km"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = pd.Series(longest / before, index=days.index).where(ran)
    session = ran.astype(int).groupby(days["runner_id"], sort=False).cumsum()
    carried = ratio.groupby([days["runner_id"], session], sort=False).transform("first")
    carried = carried.where(session > 0)
    codes = np.searchsorted(np.asarray(SPIKE_BAND_EDGES), carried.to_numpy(float), side="left")
    codes = np.where(carried.isna(), -1, codes)
    band = pd.Categorical.from_codes(codes, categories=list(SPIKE_BANDS), ordered=True)
    return pd.DataFrame({"spike_ratio": carried, "spike_band": band, "session": session},
                        index=days.index)


def _collapse_sessions(rows: pd.DataFrame, exposures: list[str]) -> pd.DataFrame:
    """Consecutive at-risk days of one session (same stratum, exposures) -> one row."""
    rows = rows.loc[rows["session"] > 0]
    cont = rows["start"].ne(rows.groupby("runner_id")["stop"].shift(1))
    key = (cont | rows["session"].ne(rows.groupby("runner_id")["session"].shift(1))
           | rows["stratum"].ne(rows.groupby("runner_id")["stratum"].shift(1))
           | rows["event"].groupby(rows["runner_id"]).shift(1, fill_value=False))
    block = key.cumsum()
    agg = {"runner_id": "first", "start": "first", "stop": "last", "event": "max",
           "episode_number": "first", "stratum": "first", "date": "first",
           "reference_date": "first", **dict.fromkeys(exposures, "first")}
    return rows.groupby(block, sort=False).agg(agg)


# --- fitting and the tidy result ----------------------------------------------------------


def fit_counting_process(rows: pd.DataFrame, *, exposures: Sequence[str],
                         model: str = "andersen-gill", zph_transform: str | None = "km",
                         dropped: Mapping[str, int] | None = None,
                         splines: Mapping[str, int] | None = None) -> ModelResult:
    """Fit a Cox-type model to counting-process rows -> :class:`ModelResult`.

    Parameters
    ----------
    rows : :func:`counting_process` output (or the same columns from ``--design-out``).
    exposures : numeric columns of ``rows`` (a categorical band becomes dummies vs its
        first level, ``C(band)[T.level]``).
    model : ``cox``, ``andersen-gill`` or ``pwp`` (``pwp`` stratifies by ``stratum``).
    splines : ``{exposure: df}``: that exposure (one of ``exposures``) as a natural cubic
        spline ``ns(exposure, df)`` with R's ``splines::ns`` knots on the rows fitted (those
        with every exposure known, as R's model frame after ``na.omit``); terms
        ``ns(x, df)1..df``, the curve with :func:`analysis.models.exposure_response` (log
        hazard ratio vs the median) and a likelihood-ratio test of non-linearity in
        ``extra["nonlinearity"]`` (partial likelihoods of the spline and the linear fit on
        the same rows; model-based, not cluster-robust).

    Returns
    -------
    ModelResult with ``table`` (log hazard ratios, robust runner-clustered SE, Wald 95 %
    CI, ``hazard_ratio``, ``hr_ci_low``, ``hr_ci_high``), ``extra`` with ``n_events``,
    ``naive_std_error``, ``vcov`` (robust, in table order), ``ph_test`` (records of the
    cox.zph test) and problems "proportional hazards" for any PH p < :data:`PH_ALPHA`.
    """
    if model not in SURVIVAL_MODELS:
        raise ModelSpecError(f"unknown time-to-event model {model!r}; choose one of "
                             f"{', '.join(SURVIVAL_MODELS)}")
    splines = dict(splines or {})
    if splines:
        return _fit_with_splines(rows, exposures=list(exposures), model=model,
                                 zph_transform=zph_transform, dropped=dropped,
                                 splines=splines)
    X, names, complete = _design_matrix(rows, list(exposures))
    used = rows.loc[complete]
    n_events = int(used["event"].sum())
    if n_events == 0:
        raise ModelSpecError("no episodes in the rows at risk: nothing to fit")
    if np.linalg.matrix_rank(X - X.mean(axis=0)) < X.shape[1]:
        raise ModelSpecError(f"the exposures {', '.join(names)} are constant or collinear in "
                             "the rows at risk")
    strata = (pd.factorize(used["stratum"])[0] if model == "pwp"
              else np.zeros(len(used), dtype=int))
    fit = cox_fit(used["start"].to_numpy(float), used["stop"].to_numpy(float),
                  used["event"].to_numpy(bool), X, strata=strata,
                  cluster=used["runner_id"].to_numpy(), zph_transform=zph_transform)
    se = _sqrt_diag(fit.robust_vcov)
    # an infinite estimate (a problem below) has a zero SE: its z and bounds are not numbers
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        table = _wald_table(names, fit.coef, se).assign(
            hazard_ratio=lambda t: np.exp(t["estimate"]),
            hr_ci_low=lambda t: np.exp(t["ci_low"]),
            hr_ci_high=lambda t: np.exp(t["ci_high"]))
    zph = (pd.DataFrame({"term": [], "p_value": [], "transform": []}) if fit.zph is None
           else fit.zph.assign(term=[*names, "GLOBAL"]).drop(columns="index"))
    problems = [f"{PROBLEM_PH}: {r.term} p = {r.p_value:.3g} (cox.zph, "
                f"transform {r.transform})" for r in zph.itertuples() if r.p_value < PH_ALPHA]
    scale = X.std(axis=0)
    problems += [f"{PROBLEM_INFINITE}: {name}" for name, b, sd in zip(names, fit.coef, scale,
                                                                      strict=True)
                 if not abs(b) * sd <= MAX_STANDARDISED_LOG_HR]
    drop = dict(dropped or {})
    if (~complete).any():
        drop["rows at risk with a missing exposure"] = int((~complete).sum())
    k = len(names)
    return ModelResult(
        model=model, outcome="episode onset", exposures=list(exposures), covariates=[],
        random_slopes=[], table=table, variance_components=pd.DataFrame(), icc=None,
        n_obs=len(used), n_runners=int(used["runner_id"].nunique()), dropped=drop,
        converged=fit.converged, optimizer="newton", warnings=(
            [f"rows dropped: {', '.join(f'{a}: {b}' for a, b in drop.items())}"]
            if drop else []),
        loglik=fit.loglik, aic=-2 * fit.loglik + 2 * k, bic=None,
        method="partial likelihood (Efron ties), runner-clustered robust SE",
        engine="kneeload.survival", problems=problems,
        extra={"n_events": n_events, "n_iter": fit.n_iter, "newton_decrement": fit.decrement,
               "loglik_null": fit.loglik_null, "vcov": fit.robust_vcov.tolist(),
               "naive_std_error": _sqrt_diag(fit.vcov).tolist(),
               "ph_test": zph.to_dict(orient="records"), "strata": model == "pwp",
               "time_scale": "gap" if model == "pwp" else "total"})


def _fit_with_splines(rows: pd.DataFrame, *, exposures: list[str], model: str,
                      zph_transform: str, dropped: Mapping[str, int] | None,
                      splines: dict[str, int]) -> ModelResult:
    """:func:`fit_counting_process` with spline terms: the basis columns added to the rows
    (knots from the rows fitted), the fit, and its test against the linear fit."""
    from analysis.models.nonlinear import spline_request_extra
    from analysis.models.splines import natural_spline, spline_column_names, spline_term

    unknown = [c for c in splines if c not in exposures]
    if unknown:
        raise ModelSpecError(f"spline column {unknown[0]!r} is not one of the exposures "
                             f"({', '.join(exposures)})", column=unknown[0])
    missing = [c for c in exposures if c not in rows.columns]
    if missing:
        raise ModelSpecError(f"no column(s) {', '.join(missing)} in the counting-process rows",
                             column=missing[0])
    complete = rows[exposures].notna().all(axis=1).to_numpy()
    drop = dict(dropped or {})
    if (~complete).any():
        drop["rows at risk with a missing exposure"] = int((~complete).sum())
    used = rows.loc[complete]
    bases, columns, terms = {}, {}, []
    for c in exposures:
        if c not in splines:
            terms.append(c)
            continue
        basis = natural_spline(used[c].to_numpy(float), splines[c])
        names = spline_column_names(c, basis.df)
        bases[c] = basis
        columns.update(zip(names, basis.basis(used[c].to_numpy(float)).T, strict=True))
        terms.extend(names)
    design = used.assign(**columns)
    result = fit_counting_process(design, exposures=terms, model=model,
                                  zph_transform=zph_transform, dropped=drop)
    tests = {}
    for c, df in splines.items():
        if df == 1:  # ns(x, 1) is the straight line between the boundary knots
            tests[c] = {"statistic": None, "df": 0, "p_value": None,
                        "loglik_spline": result.loglik, "loglik_linear": result.loglik,
                        "method": "partial likelihood"}
            continue
        linear_terms = [t for t in terms if t not in spline_column_names(c, df)]
        linear_terms.append(c)
        linear = fit_counting_process(design, exposures=linear_terms, model=model,
                                      zph_transform=None, dropped=drop)
        statistic = max(2.0 * (result.loglik - linear.loglik), 0.0)
        tests[c] = {"statistic": statistic, "df": df - 1,
                    "p_value": float(special.chdtrc(df - 1, statistic)),
                    "loglik_spline": result.loglik, "loglik_linear": linear.loglik,
                    "method": "partial likelihood"}
    # a basis column has no per-SD reading: the monotone-likelihood check of a spline is on
    # its whole term, the SD over the rows of its linear predictor B(x) beta (for a linear
    # term that is |b| SD(x), the check of fit_counting_process)
    spline_names = {n for c, df in splines.items() for n in spline_column_names(c, df)}
    problems = [p for p in result.problems
                if not (p.startswith(PROBLEM_INFINITE) and p.split(": ", 1)[1] in spline_names)]
    estimate = result.table.set_index("term")["estimate"]
    for c, basis in bases.items():
        names = spline_column_names(c, basis.df)
        eta = np.column_stack([columns[n] for n in names]) @ estimate[names].to_numpy(float)
        if not float(np.std(eta)) <= MAX_STANDARDISED_LOG_HR:
            problems.append(f"{PROBLEM_INFINITE}: {spline_term(c, basis.df)}")
    result.problems = problems
    result.exposures = list(exposures)
    result.extra.update(spline_request_extra(bases, used))
    result.extra["nonlinearity"] = tests
    return result


def _sqrt_diag(vcov: np.ndarray) -> np.ndarray:
    """Standard errors from a covariance; NaN where a (near-singular) diagonal is negative."""
    d = np.diag(vcov)
    return np.sqrt(np.where(d >= 0, d, np.nan))


def _design_matrix(rows: pd.DataFrame, exposures: list[str]) -> tuple[np.ndarray, list[str],
                                                                      np.ndarray]:
    """Numeric matrix of the exposures (categoricals as dummies), names, complete-row mask."""
    missing = [c for c in exposures if c not in rows.columns]
    if missing:
        raise ModelSpecError(f"no column(s) {', '.join(missing)} in the counting-process rows",
                             column=missing[0])
    if not exposures:
        raise ModelSpecError("give at least one exposure")
    complete = rows[exposures].notna().all(axis=1).to_numpy()
    cols, names = [], []
    for c in exposures:
        s = rows[c]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or s.dtype == "str":
            levels = (list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype)
                      else sorted(s.dropna().unique()))
            present = set(s[complete].unique())
            levels = [lv for lv in levels if lv in present]
            for lv in levels[1:]:
                cols.append((s[complete] == lv).to_numpy(float))
                names.append(f"C({c})[T.{lv}]")
        else:
            cols.append(pd.to_numeric(s[complete]).to_numpy(float))
            names.append(c)
    return np.column_stack(cols), names, complete


def fit_survival(processed: Mapping[str, Any], *, model: str = "andersen-gill",
                 exposures: Sequence[str] = ("mileage_jump",), lag_days: int | None = None,
                 unit: str = "day", zph_transform: str = "km",
                 splines: Mapping[str, int] | None = None,
                 crossbasis: Mapping[str, Any] | None = None) -> ModelResult:
    """Fit a time-to-event model from a processed folder's tables (the API of reports).

    Parameters
    ----------
    processed : :func:`analysis.pipeline.load_processed` output (``daily``, ``panel``,
        ``panel_meta``, and ``episodes`` when the build wrote it).
    model : ``cox`` (first episode), ``andersen-gill`` or ``pwp``.
    exposures : daily columns at the reference day (``unit="session"`` also takes
        ``spike_band`` / ``spike_ratio``); may be empty with a ``crossbasis``.
    lag_days : default panel_meta ``exposure_lag_days``.
    splines : ``{exposure: df}``, natural-spline terms (:func:`fit_counting_process`).
    crossbasis : keywords of :func:`analysis.models.crossbasis` (``column``, ``max_lag``,
        ``var``, ``var_df``, ``lag``, ``lag_df``, ...): a DLNM of that daily load over the
        lags before each row's reference day, its columns added to the fit. The request is
        kept in ``extra["crossbasis"]``; :func:`survival_crossbasis` rebuilds the
        :class:`~analysis.models.CrossBasis` for :func:`analysis.models.crosspred`.

    Returns
    -------
    ModelResult (see :func:`fit_counting_process`); ``extra["design"]`` is not kept: use
    :func:`survival_design` for the rows.
    """
    rows = survival_design(processed, model=model, exposures=exposures, lag_days=lag_days,
                           unit=unit)
    terms = list(exposures)
    if crossbasis is not None:
        cb = survival_crossbasis(processed, rows, **crossbasis)
        rows = rows.join(cb.frame)
        terms += cb.names
    result = fit_counting_process(rows, exposures=terms, model=model,
                                  zph_transform=zph_transform, splines=splines)
    if crossbasis is not None:
        result.extra["crossbasis"] = dict(crossbasis)
    return result


def survival_crossbasis(processed: Mapping[str, Any], rows: pd.DataFrame,
                        **keywords: Any) -> Any:
    """The cross-basis of counting-process ``rows`` (:func:`analysis.models.crossbasis` of
    the processed daily calendar, lag 0 at each row's ``reference_date``); ``keywords`` as
    for that function (``day_column`` is always ``reference_date``)."""
    from analysis.models.crossbasis import crossbasis

    keywords = {k: v for k, v in keywords.items() if k != "day_column"}
    return crossbasis(processed["daily"], rows, day_column="reference_date", **keywords)


def survival_design(processed: Mapping[str, Any], *, model: str = "andersen-gill",
                    exposures: Sequence[str] = ("mileage_jump",), lag_days: int | None = None,
                    unit: str = "day") -> pd.DataFrame:
    """The counting-process rows :func:`fit_survival` fits (``kneeload fit --design-out``)."""
    if model not in SURVIVAL_MODELS:
        raise ModelSpecError(f"unknown time-to-event model {model!r}; choose one of "
                             f"{', '.join(SURVIVAL_MODELS)}")
    meta = processed.get("panel_meta") or {}
    if lag_days is None:
        from analysis.defaults import DEFAULT_EXPOSURE_LAG_DAYS

        lag_days = int(meta.get("exposure_lag_days", DEFAULT_EXPOSURE_LAG_DAYS))
    episodes = episodes_of(processed)
    return counting_process(processed["daily"], episodes, reports=processed["panel"],
                            exposures=exposures, lag_days=lag_days, unit=unit,
                            kind=SURVIVAL_MODELS[model])


def first_episode_curves(processed: Mapping[str, Any], *, band: str = "jump_category",
                         lag_days: int | None = None) -> pd.DataFrame:
    """Cumulative incidence of the first episode by band (Kaplan-Meier, Greenwood CIs).

    ``band`` at each day's reference day: ``jump_category`` (Nielsen et al. 2014 bands,
    :func:`analysis.exposures.jump_category`), or ``spike_band`` (Frandsen et al. 2025).
    Days whose band is unknown are left out. See :func:`kaplan_meier` for the columns.
    """
    rows = survival_design(processed, model="cox", exposures=[band], lag_days=lag_days)
    return kaplan_meier(rows.dropna(subset=[band]), by=band)


def episodes_of(processed: Mapping[str, Any]) -> pd.DataFrame:
    """The build's episodes table, else :func:`analysis.episodes.episodes` of the reports."""
    table = processed.get("episodes")
    if isinstance(table, pd.DataFrame):
        return table
    from analysis import episodes as ep
    from analysis.defaults import DEFAULT_PAIN_THRESHOLD

    meta = processed.get("panel_meta") or {}
    threshold = float(meta.get("pain_threshold", DEFAULT_PAIN_THRESHOLD))
    return ep.episodes(processed["panel"], processed["daily"], threshold=threshold)


def term_notes(result: Any) -> dict[str, list[str]]:
    """Problems of a time-to-event fit per term: ``proportional hazards violated``,
    ``infinite estimate`` (terms without a problem are absent). The one reading of the
    problems :func:`fit_counting_process` writes, for the report's tables and the CLI."""
    notes: dict[str, list[str]] = {}
    for problem in result.problems:
        for term in result.table["term"]:
            if f": {term} " in f"{problem} ":  # ": term p = ..." or ending ": term"
                what = ("proportional hazards violated" if problem.startswith(PROBLEM_PH)
                        else "infinite estimate")
                notes.setdefault(str(term), []).append(what)
    return notes
