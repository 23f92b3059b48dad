"""Linear mixed models of pain (NRS 0-10): lme4's profiled deviance, and MixedLM."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.design import Design, build_design, column_rms, gls_covariance
from analysis.models.inference import (
    NEGATIVE_HESSIAN_NOTE,
    LmmInference,
    check_inference_options,
    lmm_inference,
)
from analysis.models.nonlinear import nonlinearity_summaries, spline_request_extra
from analysis.models.result import (
    SINGULAR_TOL,
    ModelResult,
    _dropped_note,
    _variance_table,
    _wald_table,
)

#: Optimizers tried in turn for statsmodels' MixedLM until one converges.
LMM_OPTIMIZERS = ("lbfgs", "bfgs", "powell", "nm")


def fit_lmm(
    panel: pd.DataFrame,
    *,
    exposures: Sequence[str],
    outcome: str = "pain",
    covariates: Sequence[str] = (),
    random_slopes: Sequence[str] = (),
    center: str | None = None,
    reml: bool = True,
    group: str = "runner_id",
    engine: str = "profiled",
    correlation: str | None = None,
    time: str = "date",
    ddf: str = "satterthwaite",
    vcov: str = "model",
    splines: Mapping[str, int] | None = None,
    interactions: Sequence[str] = (),
    nonlinearity: bool = True,
) -> ModelResult:
    """Linear mixed model of pain (NRS 0-10) with a random intercept (and slopes) per runner.

    Parameters
    ----------
    panel : one row per pain report (``docs/exposures.md``).
    exposures : exposure columns, e.g. ``["mileage_jump", "shoe_km", "rest_days_7d"]``
        (fraction, km, days: each estimate is the change in pain per unit).
    outcome : response, pain NRS 0-10.
    covariates : adjustment columns; strings or ``C(col)`` are dummy-coded.
    random_slopes : exposures with a random slope per runner.
    center : None, ``"within-between"`` or ``"grand"`` (see :func:`build_design`).
    reml : REML (default) or ML (for likelihood-ratio tests of fixed effects).
    group : runner identifier column.
    engine : ``"profiled"`` (default: lme4's profiled deviance on per-runner sufficient
        statistics, :func:`fit_lmm_design`) or ``"statsmodels"`` (``MixedLM``, optimizers
        tried in turn, SEs recomputed in the GLS form).
    correlation : None (independent residuals) or ``"ar1"``: within a runner
        ``corr(e_j, e_k) = rho^|t_j - t_k|`` with t in days (nlme's ``corAR1(form = ~ day |
        runner_id)``, gaps respected); profiled engine only.
    time : column giving each row's time for ``correlation="ar1"``: dates (days since the
        epoch are used) or integer days.
    ddf : ``"satterthwaite"`` (default: t tests and intervals with lmerTest's Satterthwaite
        df) or ``"wald"`` (normal z); see :mod:`analysis.models.inference`.
    vcov : ``"model"`` (default: lme4's GLS covariance), ``"robust"`` (cluster-robust by
        runner, CR1), ``"CR0"`` or ``"CR1"``; with a robust covariance the df are runners - 1.
    splines : ``{exposure: df}``: natural cubic spline terms ``ns(<exposure>, df)`` (R's
        ``splines::ns`` basis; :func:`analysis.models.build_design`).
    interactions : ``"a:b"`` product terms, e.g. ``"km_7d:km_28d"``.
    nonlinearity : with splines, also store each spline's exposure-response curve
        (``extra["spline_curves"]``, relative to the median) and the ML likelihood-ratio
        test against the linear term (``extra["nonlinearity"]``;
        :func:`analysis.models.nonlinear.nonlinearity_summaries`, two or three more fits).

    Returns
    -------
    ModelResult with the table's ``df`` and ``statistic`` (t or z) columns;
    ``extra["ddf"]``, ``extra["vcov_type"]`` and ``extra["inference"]`` (in words) name the
    choice, ``extra["vcov"]`` is the covariance behind the SEs, ``extra["vcov_model"]`` the GLS
    one.
    """
    check_inference_options(ddf, vcov)
    if correlation is not None and vcov != "model":
        raise ModelSpecError(f"vcov={vcov!r} is not available with correlation="
                             f"{correlation!r}; use vcov='model'")
    if correlation not in CORRELATIONS:
        raise ModelSpecError(f"correlation must be one of {CORRELATIONS}, got {correlation!r}")
    if correlation is not None and engine != "profiled":
        raise ModelSpecError(f"correlation={correlation!r} needs engine='profiled'")
    design = build_design(panel, outcome=outcome, exposures=exposures, covariates=covariates,
                          random_slopes=random_slopes, center=center, group=group,
                          extra_columns=[time] if correlation else [], splines=splines,
                          interactions=interactions)
    days = None
    if correlation is not None:
        design, days = _sorted_in_time(design, time=time)
    if engine == "profiled":
        fit = fit_lmm_design(design, reml=reml, correlation=correlation, time=days)
    elif engine == "statsmodels":
        fit = _fit_lmm_statsmodels(design, reml=reml)
    else:
        raise ModelSpecError(f"unknown LMM engine {engine!r}; use 'profiled' or 'statsmodels'")
    ar1 = {}
    if correlation == "ar1" and ddf == "satterthwaite":
        # Satterthwaite in (theta, rho, sigma) on the AR(1) deviance
        ar1 = {"deviance": lambda vp: lmm_deviance(design, vp, reml=reml, correlation=correlation,
                                                   time=days),
               "vcov_beta": lambda vp: lmm_beta_covariance(design, vp, correlation=correlation,
                                                           time=days),
               "varpar": np.r_[fit.theta, fit.rho, math.sqrt(fit.sigma2)]}
    inference = lmm_inference(design, beta=fit.beta, vcov_model=fit.vcov, G=fit.G,
                              sigma2=fit.sigma2, reml=reml, ddf=ddf, vcov=vcov,
                              theta=fit.theta, **ar1)
    result = _lmm_result(design, fit=fit, reml=reml, outcome=outcome, exposures=exposures,
                         covariates=covariates, random_slopes=random_slopes, group=group,
                         engine=engine, inference=inference)
    if any(note.startswith(NEGATIVE_HESSIAN_NOTE) for note in inference.notes):
        result = result.with_problems(["Satterthwaite df doubtful: the deviance is not at a "
                                       "minimum in the variance parameters (negative Hessian "
                                       "eigenvalue)"])
    result.extra.update(center=center, group=group, vcov=inference.vcov.tolist(),
                        ddf=inference.ddf, vcov_type=inference.vcov_type,
                        inference=inference.description, **inference.extra)
    if correlation is not None:
        result.extra["correlation"]["time"] = time
    if interactions:
        result.extra["interactions"] = list(interactions)
    if design.splines:
        result.extra.update(spline_request_extra(design.splines, design.frame))
        if nonlinearity:
            refit = functools.partial(
                fit_lmm, panel, exposures=exposures, outcome=outcome, covariates=covariates,
                random_slopes=random_slopes, center=center, group=group, engine=engine,
                correlation=correlation, time=time, ddf="wald", vcov=vcov,
                interactions=interactions, nonlinearity=False)
            result.extra.update(nonlinearity_summaries(result, refit=refit))
    return result


def _days(values: pd.Series, *, column: str) -> np.ndarray:
    """A time column as integer days: dates -> days since 1970-01-01, integers as they are."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        days = values.to_numpy(dtype=float)
        if (days != np.round(days)).any():
            raise ModelSpecError(f"AR(1) time column {column!r} must hold whole days",
                                 column=column)
        return days
    try:
        stamps = pd.to_datetime(values)
    except (ValueError, TypeError) as exc:
        raise ModelSpecError(f"AR(1) time column {column!r} is neither dates nor integer "
                             f"days: {exc}", column=column) from None
    if (stamps != stamps.dt.normalize()).any():
        raise ModelSpecError(f"AR(1) time column {column!r} has times of day; the AR(1) "
                             "lag is in whole days", column=column)
    epoch = pd.Timestamp("1970-01-01")
    return ((stamps - epoch) // pd.Timedelta(days=1)).to_numpy(dtype=float)


def _sorted_in_time(design: Design, *, time: str) -> tuple[Design, np.ndarray]:
    """Design rows sorted by runner, then day (the order AR(1) whitening runs in)."""
    days = _days(design.frame[time], column=time)
    order = np.lexsort((days, design.groups))
    dup = (np.diff(days[order]) == 0) & (np.diff(design.groups[order]) == 0)
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        runner = design.group_labels[design.groups[order][k]]
        raise ModelSpecError(f"runner {runner!r} has two rows on one day ({time!r}); an "
                             "AR(1) residual needs one row per runner and day", column=time)
    sorted_design = Design(y=design.y[order], X=design.X[order], Z=design.Z[order],
                           groups=design.groups[order], starts=design.starts,
                           x_names=design.x_names, z_names=design.z_names,
                           group_labels=design.group_labels, dropped=design.dropped,
                           frame=design.frame.iloc[order].reset_index(drop=True))
    return sorted_design, days[order]


@dataclass
class LmmFit:
    """Raw estimates of one LMM fit (before tidying)."""

    beta: np.ndarray
    vcov: np.ndarray  # GLS covariance of beta, sigma^2 (X'V^-1X)^-1
    G: np.ndarray  # random-effect covariance (absolute scale)
    sigma2: float
    loglik: float
    converged: bool
    optimizer: str | None
    notes: list[str]
    theta: np.ndarray | None = None  # relative Cholesky factor (lme4's theta)
    singular: bool = False
    rho: float | None = None  # AR(1) correlation of residuals one day apart
    correlation: str | None = None  # residual correlation structure (None or "ar1")
    attempts: list[str] = field(default_factory=list)  # each optimizer's story, in words


@dataclass
class _SuffStats:
    """Per-runner cross products: all an LMM deviance needs (O(m q^2 p), not O(n))."""

    n: int
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    ZZ: np.ndarray  # m x q x q
    ZX: np.ndarray  # m x q x p
    Zy: np.ndarray  # m x q


def _suff_stats(design: Design, *, scale: np.ndarray | None = None) -> _SuffStats:
    X, Z, y, starts = design.X, design.Z, design.y, design.starts
    if scale is not None:
        X = X / scale
    q, p = Z.shape[1], X.shape[1]

    def gsum(v: np.ndarray) -> np.ndarray:
        return np.add.reduceat(v, starts)

    ZZ = np.empty((len(starts), q, q))
    for a in range(q):
        for b in range(a, q):
            ZZ[:, a, b] = ZZ[:, b, a] = gsum(Z[:, a] * Z[:, b])
    ZX = np.stack([np.stack([gsum(Z[:, a] * X[:, b]) for b in range(p)], axis=-1)
                   for a in range(q)], axis=1)
    Zy = np.stack([gsum(Z[:, a] * y) for a in range(q)], axis=-1)
    return _SuffStats(n=len(y), XtX=X.T @ X, Xty=X.T @ y, yty=float(y @ y), ZZ=ZZ, ZX=ZX,
                      Zy=Zy)


def _theta_to_lambda(theta: np.ndarray, q: int) -> np.ndarray:
    """lme4's theta (lower triangle, column by column) -> relative Cholesky factor Lambda."""
    lam = np.zeros((q, q))
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))  # column-major, as lme4 stores theta
    lam[rows[order], cols[order]] = theta
    return lam


def _profiled_deviance(theta: np.ndarray, ss: _SuffStats, *, reml: bool,
                       full: bool = False, gradient: bool = False) -> Any:
    """-2 log-likelihood profiled over beta and sigma (Bates et al. 2015, JSS 67(1), eq. 34/41).

    With ``V = I + Z Lambda Lambda' Z'`` (relative to sigma^2) and, per runner,
    ``M_i = Lambda' Z_i'Z_i Lambda + I``, Woodbury gives ``X'V^-1X = X'X - sum A_i' M_i^-1 A_i``
    with ``A_i = Lambda' Z_i'X_i`` and ``log|V| = sum log|M_i|``.

    ``gradient=True`` returns ``(deviance, d deviance / d theta)``. With ``T = Lambda Lambda'``
    the deviance changes by ``tr(S dT)``, where, per runner, ``W_i = Z_i'V_i^-1 Z_i``,
    ``F_i = Z_i'V_i^-1 X_i``, ``b_i = Z_i'V_i^-1 (y_i - X_i beta)`` and

        S = sum_i W_i - (dof / r2) sum_i b_i b_i' - [REML] sum_i F_i (X'V^-1X)^-1 F_i'

    (the log-determinant, the profiled residual sum of squares r2 by the envelope theorem, and
    log|X'V^-1X|), so ``d deviance / d Lambda = 2 S Lambda`` on the lower triangle.
    """
    q = ss.ZZ.shape[1]
    lam = _theta_to_lambda(theta, q)
    ZZL = ss.ZZ @ lam  # m x q x q: Z_i'Z_i Lambda
    M = np.einsum("ji,mjk->mik", lam, ZZL) + np.eye(q)
    L = np.linalg.cholesky(M)
    logdet_v = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum()
    ZXy = np.concatenate([ss.ZX, ss.Zy[:, :, None]], axis=2)  # m x q x (p+1)
    rhs = np.einsum("ji,mjp->mip", lam, ZXy)  # Lambda' [Z'X | Z'y]
    sol = np.linalg.solve(M, rhs)
    cross = np.einsum("mqi,mqj->ij", rhs, sol)  # (p+1) x (p+1)
    p = ss.XtX.shape[0]
    XVX = ss.XtX - cross[:p, :p]
    XVy = ss.Xty - cross[:p, p]
    yVy = ss.yty - cross[p, p]
    cho = np.linalg.cholesky(XVX)
    beta = np.linalg.solve(XVX, XVy)
    r2 = max(float(yVy - beta @ XVy), 1e-300)
    dof = ss.n - p if reml else ss.n
    dev = logdet_v + dof * (1.0 + math.log(2.0 * math.pi * r2 / dof))
    if reml:
        dev += 2.0 * np.log(np.diag(cho)).sum()
    if gradient:
        FG = ZXy - ZZL @ sol  # [F_i | Z_i'V_i^-1 y_i]
        F = FG[:, :, :p]
        b = FG[:, :, p] - F @ beta
        ZLt = ZZL.transpose(0, 2, 1)
        W = (ss.ZZ - ZZL @ np.linalg.solve(M, ZLt)).sum(axis=0)
        S = W - (dof / r2) * (b.T @ b)
        if reml:
            S -= np.einsum("mip,pr,mjr->ij", F, np.linalg.inv(XVX), F)
        dlam = 2.0 * S @ lam
        rows, cols = _theta_index(q)
        return dev, dlam[rows, cols]
    if not full:
        return dev
    sigma2 = r2 / dof
    return dev, beta, sigma2 * np.linalg.inv(XVX), sigma2 * lam @ lam.T, sigma2


def _theta_index(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each theta element in Lambda (lower triangle, column by column)."""
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))
    return rows[order], cols[order]


def _fold_theta(theta: np.ndarray, q: int) -> np.ndarray:
    """Canonical theta: each column of Lambda with a negative diagonal negated.

    ``Lambda Lambda'`` (so the deviance) is unchanged by negating a column, which is why the
    engine can optimise theta without a bound at 0 and report lme4's form (diagonal >= 0).
    """
    rows, cols = _theta_index(q)
    out = np.array(theta, dtype=float)
    for j in range(q):
        if out[(rows == j) & (cols == j)][0] < 0:
            out[cols == j] *= -1.0
    return out


#: Bound on every element of the relative Cholesky factor theta (random-effect SD / residual
#: SD): a runner SD of 1,000 residual SDs is far outside any plausible pain model and keeps
#: X'V^-1X numerically positive definite during line searches.
THETA_MAX = 1e3
#: A random-effect correlation beyond +/- this is at the boundary (+/-1): a singular fit, as
#: a relative SD below ``SINGULAR_TOL`` is (lme4's ``isSingular`` looks at the same boundary
#: through the Cholesky factor's diagonal).
SINGULAR_CORRELATION = 1 - 1e-6
#: Deviance returned for a theta at which X'V^-1X is numerically singular.
DEVIANCE_PENALTY = 1e15

#: scipy optimizers tried in turn by the profiled engine, each from the best point so far.
PROFILED_OPTIMIZERS = ("L-BFGS-B", "Powell", "Nelder-Mead")

#: Largest |d deviance / d theta| accepted at an optimum. The deviance is O(n) and its
#: curvature in theta O(runners); a gradient of 1e-3 then means theta within ~1e-5 of the
#: optimum and a deviance within ~1e-8 of it (lme4 warns at a scaled gradient of 2e-3,
#: ``check.conv.grad``).
GRADIENT_TOL = 1e-3
#: Steps (in theta, i.e. random-effect SD / residual SD) by which a random-effect SD at 0 is
#: moved into the interior to check that the boundary is a minimum; ``restart_edge`` in lme4
#: does the same check with one step.
BOUNDARY_PROBES = (1e-3, 1e-2, 0.05, 0.1, 0.3, 1.0)
#: A probe that lowers the deviance by more than this (deviance units) means the boundary is
#: not the optimum: the optimizer is restarted from the probe.
BOUNDARY_GAIN_TOL = 1e-7
#: A random-effect SD below this (theta units) is set to exactly 0 when that does not raise the
#: deviance by more than ``SNAP_TOL``: a boundary optimum is then reported as lme4 reports it.
SNAP_BELOW = 1e-2
SNAP_TOL = 1e-9
#: Restarts from the boundary per optimizer before the next optimizer is tried.
MAX_BOUNDARY_RESTARTS = 3

_OPTIONS: dict[str, dict[str, float]] = {
    "L-BFGS-B": {"ftol": 1e-13, "gtol": 1e-6, "maxiter": 2000, "maxcor": 20},
    "Powell": {"xtol": 1e-8, "ftol": 1e-13, "maxiter": 20000},
    "Nelder-Mead": {"xatol": 1e-8, "fatol": 1e-11, "maxiter": 20000},
}


@dataclass
class _ThetaFit:
    theta: np.ndarray
    deviance: float
    converged: bool
    optimizer: str | None
    attempts: list[str]
    failure: str | None  # the check that failed, in words, when not converged


def _minimise_theta(ss: _SuffStats, *, reml: bool, theta0: np.ndarray,
                    optimizers: Sequence[str], maxiter: int | None,
                    z_names: Sequence[str]) -> _ThetaFit:
    """Minimise the profiled deviance over theta, then verify the optimum.

    theta is unbounded at 0 (the deviance is even in each column of Lambda) with the analytic
    gradient, so a quasi-Newton step cannot stop on a zero variance whose gradient vanishes by
    symmetry. The result passes only if |gradient| <= ``GRADIENT_TOL`` and no random-effect SD
    at 0 can be moved into the interior with a lower deviance; a failed boundary check
    restarts the optimizer from the better point, a failed optimizer hands its best point to
    the next one.
    """
    from scipy.optimize import minimize

    q = ss.ZZ.shape[1]
    rows, cols = _theta_index(q)
    diag = np.flatnonzero(rows == cols)

    def objective(th: np.ndarray) -> float:
        try:
            dev = float(_profiled_deviance(th, ss, reml=reml))
        except np.linalg.LinAlgError:
            return DEVIANCE_PENALTY
        return dev if math.isfinite(dev) else DEVIANCE_PENALTY

    def with_gradient(th: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            dev, grad = _profiled_deviance(th, ss, reml=reml, gradient=True)
        except np.linalg.LinAlgError:
            return DEVIANCE_PENALTY, np.zeros_like(th)
        if not (math.isfinite(dev) and np.isfinite(grad).all()):
            return DEVIANCE_PENALTY, np.zeros_like(th)
        return float(dev), grad

    def check(th: np.ndarray, f: float) -> tuple[str | None, np.ndarray | None]:
        """(failed check in words or None, a better start when a boundary probe won)."""
        for j in diag:
            if abs(th[j]) >= SINGULAR_TOL:
                continue
            for step in BOUNDARY_PROBES:
                probe = th.copy()
                probe[j] = step
                gain = f - objective(probe)
                if gain > BOUNDARY_GAIN_TOL:
                    return (f"the SD of {z_names[rows[j]]!r} is at 0 but {step:g} (relative "
                            f"to the residual SD, per RMS unit of the column) lowers the "
                            f"deviance by {gain:.3g}"), probe
        grad = with_gradient(th)[1]
        worst = float(np.abs(grad).max())
        if worst > GRADIENT_TOL:
            return f"the deviance gradient is {worst:.2g} (> {GRADIENT_TOL:g})", None
        return None, None

    def snap(th: np.ndarray, f: float) -> tuple[np.ndarray, float]:
        for j in diag:
            if 0 < abs(th[j]) < SNAP_BELOW:
                cand = th.copy()
                cand[j] = 0.0
                fc = objective(cand)
                if fc <= f + SNAP_TOL:
                    th, f = cand, min(f, fc)
        return th, f

    bounds = [(-THETA_MAX, THETA_MAX)] * len(theta0)
    best_x = np.asarray(theta0, dtype=float)
    best_f = objective(best_x)
    attempts: list[str] = []
    failure: str | None = None
    for opt in optimizers:
        opts = dict(_OPTIONS.get(opt, {}))
        if maxiter is not None:
            opts["maxiter"] = maxiter
        for restart in range(MAX_BOUNDARY_RESTARTS + 1):
            if opt == "L-BFGS-B":
                res = minimize(with_gradient, best_x, jac=True, method=opt, bounds=bounds,
                               options=opts)
            else:
                res = minimize(objective, best_x, method=opt, bounds=bounds, options=opts)
            x, f = snap(_fold_theta(res.x, q), float(res.fun))
            if f <= best_f:
                best_x, best_f = x, f
            start = "from the start" if not attempts else "from the best point so far"
            if not res.success:
                failure = f"{opt} stopped before converging ({_message(res)})"
                attempts.append(f"{opt} {start}: stopped before converging "
                                f"({_message(res)}); deviance {f:.10g}")
                break
            failure, better = check(best_x, best_f)
            if failure is None:
                attempts.append(f"{opt} {start}: converged, deviance {best_f:.10g}; "
                                "gradient and boundary checks passed")
                return _ThetaFit(theta=best_x, deviance=best_f, converged=True,
                                 optimizer=opt, attempts=attempts, failure=None)
            attempts.append(f"{opt} {start}: converged, deviance {f:.10g}, but {failure}")
            if better is None or restart == MAX_BOUNDARY_RESTARTS:
                break
            best_x, best_f = better, objective(better)
    return _ThetaFit(theta=best_x, deviance=best_f, converged=False, optimizer=None,
                     attempts=attempts, failure=failure)


def _message(res: Any) -> str:
    msg = res.message.decode() if isinstance(res.message, bytes) else str(res.message)
    return msg.rstrip(": ").strip() or "no message"


#: Correlation structures of the LMM residuals within a runner.
CORRELATIONS = (None, "ar1")
#: ``var1`` of the variance-components row holding the AR(1) rho (in ``sdcor``; group
#: ``Residual``, after the residual variance row).
AR1_TERM = "AR(1) rho"
#: Bound on atanh(rho) for the AR(1) correlation: |rho| <= tanh(6) = 0.99999 (a day-to-day
#: correlation closer to 1 is a random walk, not an AR(1) around the runner's level).
AR1_Z_MAX = 6.0
#: Brent's tolerance on atanh(rho).
AR1_Z_TOL = 1e-8
#: atanh(rho) this close to its bound counts as a boundary estimate (not converged).
AR1_EDGE = 1e-3
#: Step in atanh(rho) of the final check that the profile deviance is at a minimum in rho.
AR1_PROBE = 1e-4


def _theta_start(q: int) -> np.ndarray:
    rows, cols = _theta_index(q)
    return (rows == cols).astype(float)  # lme4's start: identity


def _x_scale(design: Design) -> np.ndarray:
    """Fixed-effect columns scaled to unit root-mean-square (km next to fractions), so that
    X'V^-1X stays well conditioned; estimates are scaled back after the fit."""
    return column_rms(design.X)


def _z_scale(design: Design) -> np.ndarray:
    """Random-effect columns scaled to unit root-mean-square, as :func:`_x_scale` does for X.

    theta is then a random-effect SD relative to the residual SD per RMS unit of its column,
    the same scale whatever the exposure's unit (a slope on ``shoe_km`` in km and one on a
    fraction), so the optimiser's gradient tolerance, boundary probes and singular test mean
    the same thing for every column. The deviance is invariant: ``Z b = (Z D^-1)(D b)``, so
    ``Lambda = D^-1 Lambda_scaled`` row by row.
    """
    return column_rms(design.Z)


def _check_time(design: Design, time: np.ndarray | None) -> np.ndarray:
    """Integer days per design row, increasing within each runner."""
    if time is None:
        raise ModelSpecError("correlation='ar1' needs the time of each row (integer days)")
    t = np.asarray(time, dtype=float)
    if t.shape != design.y.shape or not np.isfinite(t).all() or (t != np.round(t)).any():
        raise ModelSpecError("the AR(1) time must be one finite integer day per modelling row")
    step = np.diff(t)
    within = design.groups[1:] == design.groups[:-1]
    if (step[within] <= 0).any():
        raise ModelSpecError("the AR(1) time must increase strictly within each runner "
                             "(sort by runner and time; two reports on one day are not "
                             "allowed)")
    return t


def _ar1_whiten(design: Design, time: np.ndarray, rho: float, *,
                x_scale: np.ndarray) -> tuple[Design, float]:
    """Prewhiten y, X, Z by the AR(1) correlation of each runner -> (design, log|R|).

    In time order within a runner, ``phi_k = rho^(t_k - t_(k-1))``, ``e_1 = r_1`` and
    ``e_k = (r_k - phi_k r_(k-1)) / sqrt(1 - phi_k^2)``: the inverse Cholesky factor of
    ``R_jk = rho^|t_j - t_k|`` (a Markov chain with gaps), so ``log|R_i| = sum_k
    log(1 - phi_k^2)`` and the whitened rows have independent unit-variance errors.
    """
    first = np.r_[True, design.groups[1:] != design.groups[:-1]]
    lag = np.where(first, 0.0, np.r_[0.0, np.diff(time)])  # lags within a runner only
    phi = np.where(first, 0.0, np.power(rho, lag))
    one_minus = 1.0 - phi**2
    scale = 1.0 / np.sqrt(one_minus)

    def whiten(a: np.ndarray) -> np.ndarray:
        prev = np.roll(a, 1, axis=0)
        if a.ndim == 1:
            return (a - phi * prev) * scale
        return (a - phi[:, None] * prev) * scale[:, None]

    white = Design(y=whiten(design.y), X=whiten(design.X / x_scale), Z=whiten(design.Z),
                   groups=design.groups, starts=design.starts, x_names=design.x_names,
                   z_names=design.z_names, group_labels=design.group_labels,
                   dropped=design.dropped, frame=design.frame)
    return white, float(np.log(one_minus).sum())


def fit_lmm_design(design: Design, *, reml: bool = True,
                   optimizers: Sequence[str] = PROFILED_OPTIMIZERS,
                   maxiter: int | None = None, correlation: str | None = None,
                   time: np.ndarray | None = None) -> LmmFit:
    """Fit an LMM by minimising lme4's profiled (RE)ML deviance over theta (and AR(1) rho).

    The per-runner sufficient statistics are computed once (per rho), so each deviance
    evaluation costs O(m q^3 + p^3) whatever the number of rows. Optimizers are tried in
    turn, each from the best point so far, until one converges to a point that passes the
    gradient and boundary checks of :func:`_minimise_theta`; ``converged`` is True only
    then, and ``attempts`` tells each optimizer's story. ``maxiter`` caps every optimizer's
    iterations (for tests of the non-convergence path).

    ``correlation="ar1"`` gives the residuals of a runner ``corr(e_j, e_k) = rho^|t_j - t_k|``
    with ``time`` the integer day of each design row (rows sorted by runner, then time):
    the profiled deviance of the prewhitened design plus ``log|R|``, minimised over theta for
    each rho and over ``atanh(rho)`` by bounded Brent.
    """
    if correlation not in CORRELATIONS:
        raise ModelSpecError(f"correlation must be one of {CORRELATIONS}, got {correlation!r}")
    x_scale = _x_scale(design)
    z_scale = _z_scale(design)
    design = replace(design, Z=design.Z / z_scale)
    q = design.Z.shape[1]
    theta0 = _theta_start(q)
    rho: float | None = None
    logdet_r = 0.0
    extra_failure: str | None = None
    if correlation is None:
        ss = _suff_stats(design, scale=x_scale)
        tf = _minimise_theta(ss, reml=reml, theta0=theta0, optimizers=optimizers,
                             maxiter=maxiter, z_names=design.z_names)
    else:
        from scipy.optimize import minimize_scalar

        days = _check_time(design, time)

        # every inner fit starts from lme4's start: a warm start already at the optimum
        # leaves L-BFGS-B's line search nothing to gain (ABNORMAL). During the search the
        # inner fits skip Nelder-Mead (20,000 evaluations at a far-off rho cost a minute on
        # 182,500 rows); the final fit and the profile check below use every optimizer.
        def profile(z: float, inner_optimizers: Sequence[str] = optimizers[:2]) -> float:
            white, ldr = _ar1_whiten(design, days, math.tanh(z), x_scale=x_scale)
            inner = _minimise_theta(_suff_stats(white), reml=reml, theta0=theta0,
                                    optimizers=inner_optimizers, maxiter=maxiter,
                                    z_names=design.z_names)
            return inner.deviance + ldr

        outer = minimize_scalar(profile, bounds=(-AR1_Z_MAX, AR1_Z_MAX), method="bounded",
                                options={"xatol": AR1_Z_TOL, "maxiter": 500})
        z = float(outer.x)
        rho = math.tanh(z)
        white, logdet_r = _ar1_whiten(design, days, rho, x_scale=x_scale)
        ss = _suff_stats(white)
        tf = _minimise_theta(ss, reml=reml, theta0=theta0, optimizers=optimizers,
                             maxiter=maxiter, z_names=design.z_names)
        at_opt = tf.deviance + logdet_r
        if not outer.success:
            extra_failure = f"the search over rho stopped early ({outer.message})"
        elif AR1_Z_MAX - abs(z) < AR1_EDGE:
            extra_failure = f"rho is at its bound ({rho:.6f})"
        else:  # the profile deviance must not fall on either side of rho-hat
            for dz in (-AR1_PROBE, AR1_PROBE):
                gain = at_opt - profile(z + dz, optimizers)
                if gain > BOUNDARY_GAIN_TOL:
                    extra_failure = (f"moving atanh(rho) by {dz:+g} lowers the deviance by "
                                     f"{gain:.3g}")
        tf.attempts.append(f"bounded Brent over atanh(rho): rho = {rho:.8g} after "
                           f"{outer.nfev} profiled fits")
    theta = tf.theta  # on the scaled Z (see _z_scale)
    try:
        dev, beta, vcov, G, sigma2 = _profiled_deviance(theta, ss, reml=reml, full=True)
    except np.linalg.LinAlgError:
        worst = design.x_names[int(np.argmax(np.abs(design.X).max(axis=0) / x_scale))]
        raise ModelSpecError("the fixed-effect design is numerically singular at the optimum; "
                             f"check for extreme values (e.g. in {worst!r})",
                             column=worst) from None
    dev += logdet_r
    beta = beta / x_scale
    vcov = vcov / np.outer(x_scale, x_scale)
    if reml:  # log|X'V^-1X| of the unscaled design, as lme4 reports the REML criterion
        dev += 2.0 * np.log(x_scale).sum()
    converged = tf.converged and extra_failure is None
    notes: list[str] = []
    if not converged:
        reason = extra_failure if tf.converged else tf.failure
        notes.append("the fit did not reach a verified optimum: " + "; ".join(tf.attempts)
                     + f". Last failed check: {reason}. Estimates are from the lowest "
                     "deviance found and may be wrong")
    rows, cols = _theta_index(q)
    # a zero SD on the scaled Z: lme4's isSingular rule, made unit-free (see _z_scale)
    singular = bool((np.abs(theta[rows == cols]) < SINGULAR_TOL).any())
    G = G / np.outer(z_scale, z_scale)  # back to the units of the random-effect columns
    return LmmFit(beta=beta, vcov=vcov, G=G, sigma2=sigma2, loglik=-0.5 * dev,
                  converged=converged, optimizer=tf.optimizer if converged else None,
                  notes=notes, theta=theta / z_scale[rows], singular=singular, rho=rho,
                  correlation=correlation, attempts=list(tf.attempts))


def _variance_parameters(design: Design, varpar: Sequence[float], *,
                         correlation: str | None,
                         time: np.ndarray | None) -> tuple[_SuffStats, np.ndarray, float,
                                                          float, np.ndarray]:
    """Split (theta, [rho], sigma) and build the (whitened) sufficient statistics."""
    if correlation not in CORRELATIONS:
        raise ModelSpecError(f"correlation must be one of {CORRELATIONS}, got {correlation!r}")
    q = design.Z.shape[1]
    n_theta = q * (q + 1) // 2
    n_expected = n_theta + (correlation == "ar1") + 1
    varpar = np.asarray(varpar, dtype=float)
    if varpar.shape != (n_expected,):
        raise ModelSpecError(f"varpar must hold {n_expected} values (theta, "
                             f"{'rho, ' if correlation else ''}sigma), got {varpar.size}")
    x_scale = _x_scale(design)
    logdet_r = 0.0
    if correlation == "ar1":
        white, logdet_r = _ar1_whiten(design, _check_time(design, time),
                                      float(varpar[n_theta]), x_scale=x_scale)
        ss = _suff_stats(white)
    else:
        ss = _suff_stats(design, scale=x_scale)
    return ss, varpar[:n_theta], float(varpar[-1]), logdet_r, x_scale


def lmm_deviance(design: Design, varpar: Sequence[float], *, reml: bool = True,
                 correlation: str | None = None, time: np.ndarray | None = None) -> float:
    """-2 (RE)ML log-likelihood at variance parameters ``varpar = (theta..., [rho], sigma)``.

    beta is at its GLS value for those parameters (it does not depend on sigma); theta is
    lme4's relative Cholesky factor (lower triangle by column), rho the AR(1) correlation per
    day (only with ``correlation="ar1"``, ``time`` as in :func:`fit_lmm_design`), sigma the
    residual SD (NRS points). This is lmerTest's ``devfun_vp`` (Kuznetsova et al. 2017, JSS
    82(13)) for Satterthwaite's df; at ``sigma^2 = r2 / dof`` it equals the profiled deviance
    the engine minimises, so its minimum is ``-2 * LmmFit.loglik``.
    """
    ss, theta, sigma, logdet_r, x_scale = _variance_parameters(
        design, varpar, correlation=correlation, time=time)
    dev, _, _, _, sigma2_hat = _profiled_deviance(theta, ss, reml=reml, full=True)
    p = ss.XtX.shape[0]
    dof = ss.n - p if reml else ss.n
    r2 = sigma2_hat * dof
    # profiled: dof (1 + log(2 pi r2 / dof)); free sigma: dof log(2 pi sigma^2) + r2 / sigma^2
    dev += (dof * math.log(2.0 * math.pi * sigma**2) + r2 / sigma**2
            - dof * (1.0 + math.log(2.0 * math.pi * r2 / dof)))
    if reml:
        dev += 2.0 * np.log(x_scale).sum()
    return float(dev + logdet_r)


def lmm_beta_covariance(design: Design, varpar: Sequence[float], *,
                        correlation: str | None = None,
                        time: np.ndarray | None = None) -> np.ndarray:
    """GLS covariance ``sigma^2 (X'V^-1X)^-1`` of beta at ``varpar`` (as :func:`lmm_deviance`)."""
    ss, theta, sigma, _, x_scale = _variance_parameters(
        design, varpar, correlation=correlation, time=time)
    _, _, vcov, _, sigma2_hat = _profiled_deviance(theta, ss, reml=True, full=True)
    return vcov / sigma2_hat * sigma**2 / np.outer(x_scale, x_scale)


def _fit_lmm_statsmodels(design: Design, *, reml: bool) -> LmmFit:
    """statsmodels MixedLM, optimizers tried in turn; SEs recomputed in lme4's GLS form."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    model = sm.MixedLM(design.y, design.X, groups=design.groups, exog_re=design.Z)
    notes: list[str] = []
    fit = None
    used = None
    for opt in LMM_OPTIMIZERS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                candidate = model.fit(reml=reml, method=[opt])
            except (np.linalg.LinAlgError, ValueError) as exc:
                notes.append(f"optimizer {opt} failed: {exc}")
                continue
        conv_msgs = [str(w.message) for w in caught
                     if issubclass(w.category, ConvergenceWarning)]
        if candidate.converged and not any("did not converge" in m or "failed" in m.lower()
                                           for m in conv_msgs):
            fit, used = candidate, opt
            break
        notes.append(f"optimizer {opt} did not converge" +
                     (f": {'; '.join(conv_msgs)}" if conv_msgs else ""))
        if fit is None:
            fit = candidate
    if fit is None:
        raise ModelSpecError("statsmodels MixedLM failed with every optimizer: "
                             + "; ".join(notes))
    if used is None:
        notes.append("no optimizer converged; estimates are from the first attempt")
    sigma2 = float(fit.scale)
    G = np.asarray(fit.cov_re, dtype=float)
    beta = np.asarray(fit.fe_params, dtype=float)
    return LmmFit(beta=beta, vcov=gls_covariance(design, G=G, sigma2=sigma2), G=G,
                  sigma2=sigma2, loglik=float(fit.llf), converged=used is not None,
                  optimizer=used, notes=notes)


def _lmm_result(design: Design, *, fit: LmmFit, reml: bool, outcome: str,
                exposures: Sequence[str], covariates: Sequence[str],
                random_slopes: Sequence[str], group: str, engine: str,
                inference: LmmInference | None = None) -> ModelResult:
    notes = list(fit.notes) + (inference.notes if inference is not None else [])
    G, sigma2 = fit.G, fit.sigma2
    # singular fit: a random-effect SD (relative to the residual SD) at ~0, or |corr| ~ 1
    singular = fit.singular
    # per RMS unit of each random-effect column, as the profiled engine's theta (_z_scale)
    rel_sd = np.sqrt(np.clip(np.diag(G), 0, None) / sigma2) * _z_scale(design)
    singular |= bool((rel_sd < SINGULAR_TOL).any())
    if G.shape[0] > 1:
        d = np.sqrt(np.clip(np.diag(G), 1e-300, None))
        corr = G / np.outer(d, d)
        if (np.abs(corr[np.triu_indices_from(corr, 1)]) > SINGULAR_CORRELATION).any():
            singular = True
    if singular:
        notes.append("singular fit: a random-effect variance is estimated at zero (or a "
                     "correlation at +/-1); the random-effect structure is too rich for the "
                     "data")
    notes.extend(_dropped_note(design))
    n, p = design.X.shape
    q = design.Z.shape[1]
    k = p + q * (q + 1) // 2 + 1  # fixed effects + random-effect covariances + residual
    variance_components = _variance_table(group, design.z_names, G, sigma2)
    correlation = None
    if fit.correlation == "ar1" and fit.rho is not None:
        k += 1  # rho
        correlation = {"structure": "ar1", "rho": fit.rho, "lag_unit": "day"}
        variance_components = pd.concat(
            [variance_components,
             pd.DataFrame([{"group": "Residual", "var1": AR1_TERM, "var2": None,
                            "vcov": float("nan"), "sdcor": fit.rho}])],
            ignore_index=True)
    icc = float(G[0, 0] / (G[0, 0] + sigma2)) if q == 1 else None
    return ModelResult(
        model="lmm", outcome=outcome, exposures=list(exposures), covariates=list(covariates),
        random_slopes=list(random_slopes),
        table=(_wald_table(design.x_names, fit.beta, np.sqrt(np.diag(fit.vcov)))
               if inference is None else
               _wald_table(design.x_names, fit.beta, np.sqrt(np.diag(inference.vcov)),
                           df=inference.df)),
        variance_components=variance_components,
        icc=icc, n_obs=int(n), n_runners=len(design.group_labels), dropped=design.dropped,
        converged=fit.converged, optimizer=fit.optimizer, warnings=notes, loglik=fit.loglik,
        aic=-2 * fit.loglik + 2 * k, bic=-2 * fit.loglik + math.log(n) * k,
        method="REML" if reml else "ML", engine=engine,
        extra={"singular": singular, "n_params": k, "vcov": fit.vcov.tolist(),
               "correlation": correlation, "optimizer_attempts": list(fit.attempts)},
    )


