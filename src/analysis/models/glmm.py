"""Binomial (logit) mixed models of pain present: Laplace ML as lme4's glmer (docs/models.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.design import _binary_design
from analysis.models.laplace import fit_laplace
from analysis.models.result import (
    LOGIT_RESIDUAL_VARIANCE,
    ModelResult,
    _dropped_note,
    _variance_table,
    _wald_table,
)

#: GLMM engines: kneeload's own Laplace deviance (lme4's, nAGQ = 1) with analytic gradients.
GLMM_ENGINES = ("laplace",)
#: Fixed-effect covariance types: ``"model"`` (lme4's vcov, inverse Hessian of the deviance)
#: or ``"robust"`` (cluster-robust sandwich by runner, CR1 factor m / (m - 1)).
GLMM_VCOV_TYPES = ("model", "robust")


def fit_glmm(
    panel: pd.DataFrame,
    *,
    exposures: Sequence[str],
    outcome: str = "pain_any",
    covariates: Sequence[str] = (),
    random_slopes: Sequence[str] = (),
    center: str | None = None,
    group: str = "runner_id",
    engine: str = "laplace",
    vcov: str = "model",
    correlated: bool = True,
) -> ModelResult:
    """Binomial (logit) mixed model of pain present, by maximum likelihood (Laplace).

    Parameters
    ----------
    panel : one row per pain report.
    exposures, covariates, random_slopes, center, group : as in :func:`fit_lmm`.
    outcome : 0/1 or boolean column (``pain_any`` = pain >= threshold on the NRS).
    engine : ``"laplace"``: lme4's Laplace deviance (``glmer(nAGQ = 1)``) minimised over
        (theta, beta) with analytic gradients (:mod:`analysis.models.laplace`).
    vcov : ``"model"`` (default; lme4's ``vcov()``: the fixed-effect block of twice the
        inverse Hessian of the deviance over (theta, beta)) or ``"robust"`` (cluster-robust
        sandwich by runner on the same Hessian, small-sample factor m / (m - 1), CR1).
    correlated : random slopes correlated with the intercept (lme4's ``(1 + x | runner_id)``,
        default) or independent (``(1 + x || runner_id)``).

    Returns
    -------
    ModelResult with log-odds estimates, odds ratios and Wald 95 % intervals; ``icc`` on the
    latent scale, tau^2 / (tau^2 + pi^2/3), for a random intercept only (None with random
    slopes, as for :func:`fit_lmm`: the between-runner share then depends on the exposure).
    ``extra`` holds ``vcov`` (the covariance the table uses, table order), ``vcov_model``,
    ``vcov_type``, ``theta`` (lme4's), ``deviance``, ``newton_decrement``, ``singular``,
    ``n_params``, ``iterations``, ``center`` and ``group``.
    """
    if engine not in GLMM_ENGINES:
        raise ModelSpecError(f"unknown GLMM engine {engine!r}; use one of {GLMM_ENGINES}")
    if vcov not in GLMM_VCOV_TYPES:
        raise ModelSpecError(f"unknown vcov {vcov!r}; use one of {GLMM_VCOV_TYPES}")
    design = _binary_design(panel, outcome=outcome, exposures=exposures,
                            covariates=covariates, random_slopes=random_slopes, center=center,
                            group=group)
    fit = fit_laplace(design, correlated=correlated)
    notes = list(fit.notes)
    if fit.singular:
        notes.append("singular fit: a random-effect variance is estimated at zero (or a "
                     "correlation at +/-1); the random-effect structure is too rich for the "
                     "data")
    notes.extend(_dropped_note(design))
    cov = fit.vcov_robust if vcov == "robust" else fit.vcov
    n, p = design.X.shape
    q = design.Z.shape[1]
    n_theta = q * (q + 1) // 2 if correlated else q
    k = p + n_theta
    loglik = -0.5 * fit.deviance
    variance = _variance_table(group, design.z_names, fit.G, None)
    if not correlated:
        variance = variance.loc[variance["var2"].isna()].reset_index(drop=True)
    tau2 = float(fit.G[0, 0])
    return ModelResult(
        model="glmm", outcome=outcome, exposures=list(exposures), covariates=list(covariates),
        random_slopes=list(random_slopes),
        table=_wald_table(design.x_names, fit.beta, np.sqrt(np.diag(cov)), odds=True),
        variance_components=variance,
        icc=tau2 / (tau2 + LOGIT_RESIDUAL_VARIANCE) if q == 1 else None, n_obs=int(n),
        n_runners=len(design.group_labels), dropped=design.dropped, converged=fit.converged,
        optimizer="L-BFGS + Newton" if fit.converged else None,
        warnings=notes, loglik=loglik, aic=-2 * loglik + 2 * k,
        bic=-2 * loglik + math.log(n) * k, method="Laplace (ML)", engine=engine,
        extra={"singular": fit.singular, "n_params": k, "iterations": fit.iterations,
               "center": center, "group": group, "vcov": cov.tolist(),
               "vcov_model": fit.vcov.tolist(), "vcov_type": vcov,
               "theta": fit.theta.tolist(), "deviance": fit.deviance,
               "newton_decrement": fit.decrement, "correlated": correlated},
    )
