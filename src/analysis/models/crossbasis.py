"""Distributed-lag non-linear models: the cross-basis of a daily load x lag, and its readout.

A DLNM (Gasparrini, Armstrong & Kenward 2010, Stat Med 29:2224-34; Gasparrini 2014, Stat Med
33:881-99) lets the effect of a day's load depend on its size (the var basis) and on how long
ago it was (the lag basis). For each pain report with reference day s, the cross-basis column
(v, l) is ``sum_k b_v(x_{s-k}) c_l(k)`` over lags k = 0..L: the row-wise tensor product of the
var basis of the lagged daily loads and the lag basis, column order var-major (``v1.l1``,
``v1.l2``, ..., ``v2.l1``, ...) as R's ``dlnm::crossbasis``. Written for kneeload under its
MIT licence from the published definitions (no code of dlnm or its ports); the columns match
a committed R construction from ``splines::ns`` to 1e-10
(``tests/test_crossbasis.py::test_columns_match_committed_r``).

Daily series and missing days: the load is the daily calendar's column (``distance_km`` or a
TRIMP column of ``analysis.exposures.daily_calendar``), which follows the build's rule for
days without a run: 0 (rest days) under ``unlogged_gaps="rest"``, NaN in long unlogged gaps
under ``"missing"``. A report whose lag window reaches a NaN day or a day before the
runner's calendar (before the lead-in) gets a NaN cross-basis row, which the model drops
(counted as ``missing cb(...)``). Rest days are therefore 0 km, not missing, unless the
build said otherwise.

The columns are ordinary design columns: add :attr:`CrossBasis.frame` to the panel and pass
:attr:`CrossBasis.names` as exposures of :func:`analysis.models.fit_lmm` or
:func:`analysis.models.fit_glmm` (or stack them into any fitter's numeric design, e.g. the
Cox model's). :func:`crosspred` then gives the exposure-lag-response surface, the
lag-response at chosen exposure values and the overall cumulative effect with delta-method
95 % intervals from the coefficients' covariance, as ``dlnm::crosspred`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.keys import day_numbers
from analysis.models.result import Z_95, ModelResult
from analysis.models.splines import NaturalSpline, natural_spline

#: Default longest lag in days: four weeks, the chronic window of the acute:chronic ratios
#: (Hulin et al. 2016; Gabbett 2016).
DEFAULT_MAX_LAG = 28
#: Var bases: a natural cubic spline of the daily load, or the load itself (linear).
VAR_BASES = ("ns", "linear")
#: Lag bases: a natural cubic spline of the lag with intercept (dlnm's default for the lag
#: dimension), or strata (step function) between break points.
LAG_BASES = ("ns", "strata")
#: The reference load a cumulative effect is relative to: 0 (a rest day).
DEFAULT_REFERENCE = 0.0


@dataclass(frozen=True)
class CrossBasis:
    """A cross-basis built on one daily load and its columns for the panel rows.

    Attributes
    ----------
    column : the daily load (``distance_km``, km per day; or a TRIMP column, AU).
    max_lag : L, days: lags 0..L before the reference day.
    var : ``"ns"`` or ``"linear"``; var_spline its basis (None for linear).
    lag : ``"ns"`` or ``"strata"``; lag_matrix the lag basis at lags 0..L ((L + 1) x nl).
    names : the column names ``cb(<column>)v<v>.l<l>``, var-major.
    frame : the columns on the panel's index (NaN where a lag day is unknown).
    """

    column: str
    max_lag: int
    var: str
    var_spline: NaturalSpline | None
    lag: str
    lag_matrix: np.ndarray
    names: list[str]
    frame: pd.DataFrame

    def var_basis(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """The var basis at loads ``x`` (n x nv)."""
        x = np.asarray(x, dtype=float)
        if self.var_spline is None:
            return x[:, None]
        return self.var_spline.basis(x)

    @property
    def n_var(self) -> int:
        return 1 if self.var_spline is None else self.var_spline.df

    @property
    def n_lag(self) -> int:
        return int(self.lag_matrix.shape[1])


def lag_basis(max_lag: int, *, kind: str = "ns", df: int = 4,
              breaks: Sequence[int] = ()) -> np.ndarray:
    """The lag basis at lags 0..L ((L + 1) x nl).

    ``"ns"``: ``splines::ns(0:L, df, intercept = TRUE)`` (knots at quantiles of 0..L, i.e.
    equally spaced). ``"strata"``: one indicator per interval ``[b_i, b_{i+1})`` of
    ``(0, *breaks, L + 1)``, the first stratum included (dlnm's ``strata`` with intercept).
    """
    lags = np.arange(max_lag + 1, dtype=float)
    if kind == "ns":
        return natural_spline(lags, df, intercept=True).basis(lags)
    if kind == "strata":
        edges = [0, *sorted(int(b) for b in breaks), max_lag + 1]
        if len(set(edges)) != len(edges) or edges[1] <= 0 or edges[-2] > max_lag:
            raise ModelSpecError(f"strata breaks must be distinct lags in 1..{max_lag}, got "
                                 f"{list(breaks)}")
        stratum = np.searchsorted(edges, lags, side="right") - 1
        return (stratum[:, None] == np.arange(len(edges) - 1)[None, :]).astype(float)
    raise ModelSpecError(f"lag basis must be one of {LAG_BASES}, got {kind!r}")


def lagged_loads(daily: pd.DataFrame, rows: pd.DataFrame, *, column: str, max_lag: int,
                 day_column: str = "reference_date", group: str = "runner_id") -> np.ndarray:
    """The load of each row's runner on days s, s-1, ..., s-L (n x (L + 1); NaN where the
    day is not in the daily calendar or its load is unknown).

    Parameters
    ----------
    daily : one row per runner and calendar day (``runner_id``, ``date``, ``column``).
    rows : panel rows (``runner_id`` and ``day_column``, the reference day s).
    """
    for table, cols, name in ((daily, (group, "date", column), "daily"),
                              (rows, (group, day_column), "panel")):
        for col in cols:
            if col not in table.columns:
                raise ModelSpecError(f"{name} table has no column {col!r}", column=col)
    runners = pd.Index(pd.unique(daily[group].astype(str)))
    d_code = runners.get_indexer(daily[group].astype(str))
    d_day = day_numbers(daily["date"])
    span = int(d_day.max() - d_day.min()) + max_lag + 2
    base = int(d_day.min()) - max_lag - 1
    keys = pd.Index(d_code.astype(np.int64) * span + (d_day - base))
    if not keys.is_unique:
        raise ModelSpecError("daily table has more than one row for a runner and day",
                             column="date")
    values = pd.to_numeric(daily[column], errors="coerce").to_numpy(dtype=float)
    r_code = runners.get_indexer(rows[group].astype(str))
    r_day = day_numbers(rows[day_column])
    out = np.full((len(rows), max_lag + 1), np.nan)
    for k in range(max_lag + 1):
        day = r_day - k - base
        ok = (r_code >= 0) & (day >= 0) & (day < span)
        where = keys.get_indexer(r_code[ok].astype(np.int64) * span + day[ok])
        got = np.where(where >= 0, values[np.clip(where, 0, None)], np.nan)
        out[np.flatnonzero(ok), k] = got
    return out


def crossbasis(daily: pd.DataFrame, panel: pd.DataFrame, *, column: str = "distance_km",
               max_lag: int = DEFAULT_MAX_LAG, var: str = "ns", var_df: int = 3,
               lag: str = "ns", lag_df: int = 4, lag_breaks: Sequence[int] = (),
               var_knots: Sequence[float] | None = None,
               day_column: str = "reference_date", group: str = "runner_id") -> CrossBasis:
    """Cross-basis columns of a daily load x lag for each panel row.

    Parameters
    ----------
    daily : the daily calendar (``daily.parquet``: ``runner_id``, ``date``, ``column``).
    panel : one row per pain report, with ``day_column`` (lag 0; default the report's
        ``reference_date``, s = t - exposure lag).
    column : the daily load (km per day, or a TRIMP in AU).
    max_lag : L in days (default :data:`DEFAULT_MAX_LAG`).
    var, var_df : var basis: ``"ns"`` with ``var_df`` columns or ``"linear"``. The ns
        boundary knots are the range of the known daily loads of the runners in ``panel``;
        its interior knots the type-7 quantiles of the loads of running days (load > 0),
        not of all days as dlnm does: with 30-60 % rest days a quantile of all days falls on
        0 km, the boundary, and the basis then spans the constants (collinear with the
        intercept and with an intercept-carrying lag basis). ``var_knots`` gives them.
    lag, lag_df, lag_breaks : lag basis (:func:`lag_basis`).

    Returns
    -------
    CrossBasis; its ``frame`` columns are NaN for rows with an unknown lag day.
    """
    if var not in VAR_BASES:
        raise ModelSpecError(f"var basis must be one of {VAR_BASES}, got {var!r}")
    if int(max_lag) != max_lag or max_lag < 0:
        raise ModelSpecError(f"max_lag must be a whole number of days >= 0, got {max_lag!r}")
    max_lag = int(max_lag)
    L = lag_basis(max_lag, kind=lag, df=lag_df, breaks=lag_breaks)
    Q = lagged_loads(daily, panel, column=column, max_lag=max_lag, day_column=day_column,
                     group=group)
    spline = None
    if var == "ns":
        in_panel = daily[group].astype(str).isin(set(panel[group].astype(str)))
        loads = pd.to_numeric(daily.loc[in_panel, column], errors="coerce").to_numpy(float)
        spline = _var_spline(loads[np.isfinite(loads)], var_df, var_knots)
    nv = 1 if spline is None else spline.df
    # var basis of every lagged load: n x (L+1) x nv
    flat = Q.reshape(-1)
    bv = flat[:, None] if spline is None else spline.basis(flat)
    bv = bv.reshape(Q.shape[0], Q.shape[1], nv)
    cb = np.einsum("nkv,kl->nvl", bv, L).reshape(len(panel), nv * L.shape[1])
    names = [f"cb({column})v{v}.l{j}" for v in range(1, nv + 1)
             for j in range(1, L.shape[1] + 1)]
    frame = pd.DataFrame(cb, index=panel.index, columns=names)
    return CrossBasis(column=column, max_lag=max_lag, var=var, var_spline=spline, lag=lag,
                      lag_matrix=L, names=names, frame=frame)


def _var_spline(loads: np.ndarray, df: int, knots: Sequence[float] | None) -> NaturalSpline:
    """The var basis: boundary knots at the range of ``loads``, interior knots given or at
    the quantiles of the positive loads (running days)."""
    if loads.size == 0:
        raise ModelSpecError("no known daily load for the runners of the panel")
    if knots is None:
        knots = natural_spline(loads[loads > 0], df).knots
    knots = tuple(float(k) for k in sorted(knots))
    lo, hi = float(loads.min()), float(loads.max())
    if len(knots) != df - 1 or any(k <= lo or k >= hi for k in knots):
        raise ModelSpecError(f"var_knots must be {df - 1} values inside the load range "
                             f"({lo:g}, {hi:g}), got {list(knots)}")
    return NaturalSpline(knots=knots, boundary=(lo, hi))


def _coefficients(cb: CrossBasis, result: ModelResult) -> tuple[np.ndarray, np.ndarray]:
    terms = list(result.table["term"])
    missing = [n for n in cb.names if n not in terms]
    if missing:
        raise ModelSpecError(f"the model has no cross-basis term {missing[0]!r}: fit it with "
                             "the cross-basis names as exposures")
    idx = [terms.index(n) for n in cb.names]
    beta = result.table["estimate"].to_numpy(float)[idx]
    cov = np.asarray(result.extra["vcov"], dtype=float)[np.ix_(idx, idx)]
    return beta, cov


def _band(d: np.ndarray, beta: np.ndarray, cov: np.ndarray) -> dict[str, np.ndarray]:
    est = d @ beta
    se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", d, cov, d), 0.0, None))
    return {"estimate": est, "std_error": se, "ci_low": est - Z_95 * se,
            "ci_high": est + Z_95 * se}


def crosspred(cb: CrossBasis, result: ModelResult, *, at: Sequence[float],
              reference: float = DEFAULT_REFERENCE) -> dict[str, pd.DataFrame]:
    """Exposure-lag-response of a fitted DLNM, relative to a reference load (dlnm's
    ``crosspred`` with ``cen = reference``).

    Parameters
    ----------
    cb : the cross-basis the model was fitted with.
    result : the fit (its terms include ``cb.names``; ``extra["vcov"]`` in table order).
    at : daily loads to predict at (unit of ``cb.column``: km per day).
    reference : the load effects are relative to (default 0: a rest day).

    Returns
    -------
    ``{"surface": ..., "cumulative": ...}``: ``surface`` one row per (x, lag) with the
    lag-specific effect of load x on day s - lag (vs ``reference`` that day); ``cumulative``
    one row per x with the overall effect of load x on each of days s-L..s (sum over lags).
    Columns ``estimate``, ``std_error``, ``ci_low``, ``ci_high`` on the model's scale (NRS
    points; log-odds, plus ``odds_ratio`` columns, for a GLMM); delta-method 95 % intervals
    from the full covariance of the cross-basis coefficients.
    """
    beta, cov = _coefficients(cb, result)
    x = np.asarray(at, dtype=float)
    dv = cb.var_basis(x) - cb.var_basis(np.array([reference]))  # nx x nv
    lags = np.arange(cb.max_lag + 1)
    d_surface = np.einsum("xv,kl->xkvl", dv, cb.lag_matrix).reshape(
        len(x) * len(lags), cb.n_var * cb.n_lag)
    surface = pd.DataFrame({"x": np.repeat(x, len(lags)), "lag": np.tile(lags, len(x)),
                            **_band(d_surface, beta, cov)})
    d_cum = np.einsum("xv,l->xvl", dv, cb.lag_matrix.sum(axis=0)).reshape(
        len(x), cb.n_var * cb.n_lag)
    cumulative = pd.DataFrame({"x": x, **_band(d_cum, beta, cov)})
    out = {"surface": surface, "cumulative": cumulative}
    if result.model in ("glmm", "gee"):
        out = {k: v.assign(odds_ratio=np.exp(v["estimate"]), or_ci_low=np.exp(v["ci_low"]),
                           or_ci_high=np.exp(v["ci_high"])) for k, v in out.items()}
    for table in out.values():
        table.attrs["reference"] = reference
    return out


def lag_response(cb: CrossBasis, result: ModelResult, *, at: float,
                 reference: float = DEFAULT_REFERENCE) -> pd.DataFrame:
    """The lag-response at one load: the ``surface`` rows of :func:`crosspred` at ``at``."""
    return crosspred(cb, result, at=[at], reference=reference)["surface"]


__all__ = [
    "DEFAULT_MAX_LAG",
    "DEFAULT_REFERENCE",
    "LAG_BASES",
    "VAR_BASES",
    "CrossBasis",
    "crossbasis",
    "crosspred",
    "lag_basis",
    "lag_response",
    "lagged_loads",
]
