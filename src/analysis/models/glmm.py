"""Binomial (logit) mixed models of pain present."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.design import _binary_design
from analysis.models.result import (
    LOGIT_RESIDUAL_VARIANCE,
    SINGULAR_TOL,
    ModelResult,
    _dropped_note,
    _variance_table,
    _wald_table,
)

#: GPBoost's relative convergence tolerance; its default (1e-6) left fixed effects up to
#: 0.1 % from glmer's on the demo fixture, 1e-10 brings them within 0.01 % (docs/models.md).
GPBOOST_DELTA_REL_CONV = 1e-10
GPBOOST_MAXIT = 10000
#: GPBoost optimizers tried in turn (for the covariance and the fixed-effect parameters).
GLMM_OPTIMIZERS = ("lbfgs", "nelder_mead", "gradient_descent")


def _import_gpboost() -> Any:
    """Import gpboost without tqdm's "IProgress not found" warning.

    gpboost imports optuna, which imports ``tqdm.auto``; in a Jupyter kernel without
    ipywidgets that warns once, although kneeload never shows a tqdm bar.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import gpboost

    return gpboost


def fit_glmm(
    panel: pd.DataFrame,
    *,
    exposures: Sequence[str],
    outcome: str = "pain_any",
    covariates: Sequence[str] = (),
    random_slopes: Sequence[str] = (),
    center: str | None = None,
    group: str = "runner_id",
    engine: str = "gpboost",
) -> ModelResult:
    """Binomial (logit) mixed model of pain present, by maximum likelihood (Laplace).

    Parameters
    ----------
    panel : one row per pain report.
    exposures, covariates, random_slopes, center, group : as in :func:`fit_lmm`.
    outcome : 0/1 or boolean column (``pain_any`` = pain >= threshold on the NRS).
    engine : ``"gpboost"`` (C++ Laplace approximation, ML; matches ``glmer(nAGQ = 1)``
        within 0.1 % and is 10-50x faster, docs/models.md). Random slopes in GPBoost are
        independent of the intercept (no correlation parameter).

    Returns
    -------
    ModelResult with log-odds estimates, odds ratios and Wald 95 % intervals; ``icc`` on the
    latent scale, tau^2 / (tau^2 + pi^2/3), for a random intercept only (None with random
    slopes, as for :func:`fit_lmm`: the between-runner share then depends on the exposure).
    """
    if engine != "gpboost":
        raise ModelSpecError(f"unknown GLMM engine {engine!r}; use 'gpboost'")
    gpb = _import_gpboost()

    design = _binary_design(panel, outcome=outcome, exposures=exposures,
                            covariates=covariates, random_slopes=random_slopes, center=center,
                            group=group)
    q = design.Z.shape[1]
    kwargs: dict[str, Any] = {}
    if q > 1:
        kwargs = {"group_rand_coef_data": design.Z[:, 1:],
                  "ind_effect_group_rand_coef": [1] * (q - 1)}
    notes: list[str] = []
    best = None
    for opt in GLMM_OPTIMIZERS:
        model = gpb.GPModel(group_data=design.groups, likelihood="bernoulli_logit",
                            num_parallel_threads=1, **kwargs)
        model.fit(y=design.y, X=design.X,
                  params={"trace": False, "delta_rel_conv": GPBOOST_DELTA_REL_CONV,
                          "maxit": GPBOOST_MAXIT, "optimizer_cov": opt,
                          "optimizer_coef": opt})
        # GPBoost 1.8 exposes iterations and convergence (0 = converged) only privately
        num_it = int(getattr(model, "_get_num_optim_iter", lambda: -1)())
        status = int(getattr(model, "_get_convergence_status", lambda: 0)())
        nll = float(model.get_current_neg_log_likelihood())
        if best is None or nll < best[1] - 1e-9:
            best = (model, nll, opt, num_it, status)
        if status == 0:
            best = (model, nll, opt, num_it, status)
            break
        notes.append(f"GPBoost optimizer {opt} did not converge (status {status}, "
                     f"{num_it} iterations)")
    assert best is not None
    model, nll, opt, num_it, status = best
    coef = model.get_coef(std_err=True, format_pandas=False)
    cov_pars = model.get_cov_pars(std_err=False, format_pandas=False)
    beta, se = np.asarray(coef[0], float), np.asarray(coef[1], float)
    G = np.diag(np.asarray(cov_pars, float).ravel()[:q])
    loglik = -nll
    converged = status == 0 and bool(np.isfinite(beta).all() and np.isfinite(se).all())
    if not converged:
        notes.append("no GPBoost optimizer converged; estimates are from the lowest deviance")
    singular = bool((np.sqrt(np.diag(G)) < SINGULAR_TOL).any())
    if singular:
        notes.append("singular fit: a random-effect variance is estimated at zero")
    notes.extend(_dropped_note(design))
    n, p = design.X.shape
    k = p + q
    tau2 = float(G[0, 0])
    return ModelResult(
        model="glmm", outcome=outcome, exposures=list(exposures), covariates=list(covariates),
        random_slopes=list(random_slopes),
        table=_wald_table(design.x_names, beta, se, odds=True),
        variance_components=_variance_table(group, design.z_names, G, None).query(
            "var2.isna()", engine="python").reset_index(drop=True),
        icc=tau2 / (tau2 + LOGIT_RESIDUAL_VARIANCE) if q == 1 else None, n_obs=int(n),
        n_runners=len(design.group_labels), dropped=design.dropped, converged=bool(converged),
        optimizer=f"gpboost:{opt}" if converged else None,
        warnings=notes, loglik=loglik, aic=-2 * loglik + 2 * k,
        bic=-2 * loglik + math.log(n) * k, method="Laplace (ML)", engine=engine,
        extra={"singular": singular, "n_params": k, "iterations": num_it, "center": center,
               "group": group},
    )


