"""Linear mixed models of pain (NRS 0-10): lme4's profiled deviance, and MixedLM."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.design import Design, build_design, gls_covariance
from analysis.models.inference import (
    LmmInference,
    check_inference_options,
    lmm_inference,
)
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
    ddf: str = "satterthwaite",
    vcov: str = "model",
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
    ddf : ``"satterthwaite"`` (default: t tests and intervals with lmerTest's Satterthwaite
        df) or ``"wald"`` (normal z); see :mod:`analysis.models.inference`.
    vcov : ``"model"`` (default: lme4's GLS covariance), ``"robust"`` (cluster-robust by
        runner, CR1), ``"CR0"`` or ``"CR1"``; with a robust covariance the df are runners - 1.

    Returns
    -------
    ModelResult with the table's ``df`` and ``statistic`` (t or z) columns;
    ``extra["ddf"]``, ``extra["vcov_type"]`` and ``extra["inference"]`` (in words) name the
    choice, ``extra["vcov"]`` is the covariance behind the SEs, ``extra["vcov_model"]`` the GLS
    one.
    """
    check_inference_options(ddf, vcov)
    design = build_design(panel, outcome=outcome, exposures=exposures, covariates=covariates,
                          random_slopes=random_slopes, center=center, group=group)
    if engine == "profiled":
        fit = fit_lmm_design(design, reml=reml)
    elif engine == "statsmodels":
        fit = _fit_lmm_statsmodels(design, reml=reml)
    else:
        raise ModelSpecError(f"unknown LMM engine {engine!r}; use 'profiled' or 'statsmodels'")
    inference = lmm_inference(design, beta=fit.beta, vcov_model=fit.vcov, G=fit.G,
                              sigma2=fit.sigma2, reml=reml, ddf=ddf, vcov=vcov,
                              theta=fit.theta)
    result = _lmm_result(design, fit=fit, reml=reml, outcome=outcome, exposures=exposures,
                         covariates=covariates, random_slopes=random_slopes, group=group,
                         engine=engine, inference=inference)
    result.extra.update(center=center, group=group, vcov=inference.vcov.tolist(),
                        ddf=inference.ddf, vcov_type=inference.vcov_type,
                        inference=inference.description, **inference.extra)
    return result


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
                       full: bool = False) -> Any:
    """-2 log-likelihood profiled over beta and sigma (Bates et al. 2015, JSS 67(1), eq. 34/41).

    With ``V = I + Z Lambda Lambda' Z'`` (relative to sigma^2) and, per runner,
    ``M_i = Lambda' Z_i'Z_i Lambda + I``, Woodbury gives ``X'V^-1X = X'X - sum A_i' M_i^-1 A_i``
    with ``A_i = Lambda' Z_i'X_i`` and ``log|V| = sum log|M_i|``.
    """
    q = ss.ZZ.shape[1]
    lam = _theta_to_lambda(theta, q)
    M = np.einsum("ji,mjk,kl->mil", lam, ss.ZZ, lam) + np.eye(q)
    L = np.linalg.cholesky(M)
    logdet_v = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum()
    A = np.einsum("ji,mjp->mip", lam, ss.ZX)  # m x q x p
    a = np.einsum("ji,mj->mi", lam, ss.Zy)  # m x q
    rhs = np.concatenate([A, a[:, :, None]], axis=2)  # m x q x (p+1)
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
    if not full:
        return dev
    sigma2 = r2 / dof
    return dev, beta, sigma2 * np.linalg.inv(XVX), sigma2 * lam @ lam.T, sigma2


#: Bound on the relative Cholesky factor theta (random-effect SD / residual SD): a runner
#: SD of 1,000 residual SDs is far outside any plausible pain model and keeps X'V^-1X
#: numerically positive definite during line searches.
THETA_MAX = 1e3
#: Deviance returned for a theta at which X'V^-1X is numerically singular.
DEVIANCE_PENALTY = 1e15

#: scipy optimizers tried in turn by the profiled engine (all accept bounds).
PROFILED_OPTIMIZERS = ("L-BFGS-B", "Powell", "Nelder-Mead")


def fit_lmm_design(design: Design, *, reml: bool = True,
                   optimizers: Sequence[str] = PROFILED_OPTIMIZERS,
                   maxiter: int | None = None) -> LmmFit:
    """Fit an LMM by minimising lme4's profiled (RE)ML deviance over theta.

    The per-runner sufficient statistics are computed once, so each deviance evaluation costs
    O(m q^3 + p^3) whatever the number of rows. Optimizers are tried in turn, each starting
    from the best point so far, until one reports convergence; theta's diagonal is bounded
    at 0 (a singular fit is then reported, as lme4 does). ``maxiter`` caps every optimizer's
    iterations (for tests of the non-convergence path).
    """
    from scipy.optimize import minimize

    # fixed-effect columns scaled to unit root-mean-square (km next to fractions), so that
    # X'V^-1X stays well conditioned; estimates are scaled back below
    x_scale = np.sqrt((design.X**2).mean(axis=0))
    x_scale[x_scale == 0] = 1.0
    ss = _suff_stats(design, scale=x_scale)
    q = design.Z.shape[1]
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))
    is_diag = (rows[order] == cols[order])
    theta0 = is_diag.astype(float)  # lme4's start: identity
    bounds = [(0.0, THETA_MAX) if d else (-THETA_MAX, THETA_MAX) for d in is_diag]
    notes: list[str] = []

    def objective(th: np.ndarray) -> float:
        try:
            dev = float(_profiled_deviance(th, ss, reml=reml))
        except np.linalg.LinAlgError:
            return DEVIANCE_PENALTY
        # finite, so that finite-difference gradients never subtract infinities
        return dev if math.isfinite(dev) else DEVIANCE_PENALTY

    best = None
    used = None
    options = {
        "L-BFGS-B": {"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000},
        "Powell": {"xtol": 1e-8, "ftol": 1e-12, "maxiter": 20000},
        "Nelder-Mead": {"xatol": 1e-7, "fatol": 1e-9, "maxiter": 20000},
    }
    for opt in optimizers:
        start = theta0 if best is None else best.x
        opts = dict(options.get(opt, {}))
        if maxiter is not None:
            opts["maxiter"] = maxiter
        res = minimize(objective, start, method=opt, bounds=bounds, options=opts)
        if best is None or res.fun < best.fun:
            best = res
        if res.success and np.isfinite(res.fun):
            used = opt
            break
        notes.append(f"optimizer {opt} did not converge: {res.message}")
    assert best is not None
    if used is None:
        notes.append("no optimizer converged; estimates are from the lowest deviance found")
    theta = np.asarray(best.x, dtype=float)
    try:
        dev, beta, vcov, G, sigma2 = _profiled_deviance(theta, ss, reml=reml, full=True)
    except np.linalg.LinAlgError:
        worst = design.x_names[int(np.argmax(np.abs(design.X).max(axis=0) / x_scale))]
        raise ModelSpecError("the fixed-effect design is numerically singular at the optimum; "
                             f"check for extreme values (e.g. in {worst!r})",
                             column=worst) from None
    beta = beta / x_scale
    vcov = vcov / np.outer(x_scale, x_scale)
    if reml:  # log|X'V^-1X| of the unscaled design, as lme4 reports the REML criterion
        dev += 2.0 * np.log(x_scale).sum()
    singular = bool((theta[is_diag] < SINGULAR_TOL).any())
    return LmmFit(beta=beta, vcov=vcov, G=G, sigma2=sigma2, loglik=-0.5 * dev,
                  converged=used is not None, optimizer=used, notes=notes, theta=theta,
                  singular=singular)


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
    rel_sd = np.sqrt(np.clip(np.diag(G), 0, None) / sigma2)
    singular |= bool((rel_sd < SINGULAR_TOL).any())
    if G.shape[0] > 1:
        d = np.sqrt(np.clip(np.diag(G), 1e-300, None))
        corr = G / np.outer(d, d)
        if (np.abs(corr[np.triu_indices_from(corr, 1)]) > 1 - 1e-6).any():
            singular = True
    if singular:
        notes.append("singular fit: a random-effect variance is estimated at zero (or a "
                     "correlation at +/-1); the random-effect structure is too rich for the "
                     "data")
    notes.extend(_dropped_note(design))
    n, p = design.X.shape
    q = design.Z.shape[1]
    k = p + q * (q + 1) // 2 + 1  # fixed effects + random-effect covariances + residual
    icc = float(G[0, 0] / (G[0, 0] + sigma2)) if q == 1 else None
    return ModelResult(
        model="lmm", outcome=outcome, exposures=list(exposures), covariates=list(covariates),
        random_slopes=list(random_slopes),
        table=(_wald_table(design.x_names, fit.beta, np.sqrt(np.diag(fit.vcov)))
               if inference is None else
               _wald_table(design.x_names, fit.beta, np.sqrt(np.diag(inference.vcov)),
                           df=inference.df)),
        variance_components=_variance_table(group, design.z_names, G, sigma2),
        icc=icc, n_obs=int(n), n_runners=len(design.group_labels), dropped=design.dropped,
        converged=fit.converged, optimizer=fit.optimizer, warnings=notes, loglik=fit.loglik,
        aic=-2 * fit.loglik + 2 * k, bic=-2 * fit.loglik + math.log(n) * k,
        method="REML" if reml else "ML", engine=engine,
        extra={"singular": singular, "n_params": k, "vcov": fit.vcov.tolist()},
    )


