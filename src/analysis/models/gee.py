"""Population-averaged GEE (sensitivity analysis)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.design import _binary_design
from analysis.models.result import ModelResult, _dropped_note, _wald_table


def fit_gee(
    panel: pd.DataFrame,
    *,
    exposures: Sequence[str],
    outcome: str = "pain_any",
    covariates: Sequence[str] = (),
    random_slopes: Sequence[str] = (),
    center: str | None = None,
    group: str = "runner_id",
) -> ModelResult:
    """Population-averaged logistic GEE, exchangeable working correlation (sensitivity).

    Robust (sandwich) standard errors; odds ratios are marginal (population-averaged), so
    they are closer to 1 than the GLMM's runner-specific ones (Zeger, Liang & Albert 1988,
    Biometrics 44:1049-60).
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    if random_slopes:
        raise ModelSpecError("GEE is population-averaged: random slopes do not apply")
    design = _binary_design(panel, outcome=outcome, exposures=exposures,
                            covariates=covariates, random_slopes=(), center=center, group=group)
    model = sm.GEE(design.y, design.X, groups=design.groups, family=sm.families.Binomial(),
                   cov_struct=sm.cov_struct.Exchangeable())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(maxiter=100)
    notes = [str(w.message) for w in caught]
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    notes.extend(_dropped_note(design))
    corr = float(model.cov_struct.dep_params)
    vc = pd.DataFrame([{"group": group, "var1": "exchangeable_correlation", "var2": None,
                        "vcov": corr, "sdcor": corr}])
    return ModelResult(
        model="gee", outcome=outcome, exposures=list(exposures), covariates=list(covariates),
        random_slopes=[], table=_wald_table(design.x_names, np.asarray(fit.params),
                                            np.asarray(fit.bse), odds=True),
        variance_components=vc, icc=None, n_obs=len(design.y),
        n_runners=len(design.group_labels), dropped=design.dropped, converged=converged,
        optimizer=None, warnings=notes, loglik=None, aic=None, bic=None,
        method="GEE (exchangeable, robust SE)", engine="statsmodels",
        extra={"vcov": np.asarray(fit.cov_params()).tolist(), "center": center, "group": group},
    )


