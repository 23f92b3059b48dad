"""Mixed-effects models of knee pain on training-load exposures -> one tidy result type.

Models (docs/models.md):

* ``lmm``  pain score (NRS 0-10), linear mixed model, random intercept per runner and optional
  random slopes; REML by default, ML for likelihood-ratio tests.
* ``glmm`` pain present (``pain_any``), binomial (logit) mixed model by maximum likelihood
  (Laplace approximation), odds ratios with Wald intervals.
* ``gee``  pain present, population-averaged GEE with an exchangeable working correlation
  (sensitivity analysis).
* ``cox``, ``andersen-gill``, ``pwp``  time to a pain episode on counting-process rows
  (:mod:`analysis.models.survival`), runner-clustered robust SEs.

Standard errors of LMM fixed effects are the generalised-least-squares covariance
``sigma^2 (X' V^-1 X)^-1`` at the estimated variance parameters, as lme4's ``vcov()`` reports
(statsmodels' ``bse_fe`` inverts the joint Hessian instead, which differs by up to 1e-3
relative on random-slope models; /work/shared/ANCHORS.md).
"""

from analysis.models.compare import likelihood_ratio_test
from analysis.models.crossbasis import CrossBasis, crossbasis, crosspred, lag_response
from analysis.models.design import (
    CENTER_OPTIONS,
    INTERCEPT,
    MIN_RUNNERS,
    MIN_RUNNERS_FOR_SLOPE,
    Design,
    build_design,
    design_of,
    gls_covariance,
    within_between,
    within_between_spread,
)
from analysis.models.fit import fit_model
from analysis.models.gee import fit_gee
from analysis.models.glmm import fit_glmm
from analysis.models.inference import (
    DDF_OPTIONS,
    VCOV_OPTIONS,
    cluster_robust_vcov,
    contrast_test,
    satterthwaite_df,
    satterthwaite_info,
)
from analysis.models.lmm import (
    AR1_TERM,
    CORRELATIONS,
    LmmFit,
    fit_lmm,
    fit_lmm_design,
    lmm_beta_covariance,
    lmm_deviance,
)
from analysis.models.modes import RandomEffects, conditional_modes
from analysis.models.nonlinear import exposure_response, spline_curve
from analysis.models.predict import (
    OUTCOME_RANGES,
    outcome_range,
    predicted_curve,
    prediction_problems,
)
from analysis.models.result import (
    LOGIT_RESIDUAL_VARIANCE,
    RESIDUAL_BOUNDARY_RATIO,
    SINGULAR_TOL,
    STATUS_OK,
    STATUS_WARNING,
    Z_95,
    ModelResult,
)
from analysis.models.sensitivity import lag0_panel, sensitivity
from analysis.models.splines import NaturalSpline, natural_spline
from analysis.models.survival import (
    SPIKE_BAND_EDGES,
    SPIKE_BANDS,
    SURVIVAL_MODELS,
    CoxFit,
    counting_process,
    cox_fit,
    episodes_of,
    first_episode_curves,
    fit_counting_process,
    fit_survival,
    kaplan_meier,
    session_exposures,
    survival_crossbasis,
    survival_design,
)

__all__ = [
    "AR1_TERM",
    "CENTER_OPTIONS",
    "CORRELATIONS",
    "DDF_OPTIONS",
    "INTERCEPT",
    "LOGIT_RESIDUAL_VARIANCE",
    "MIN_RUNNERS",
    "MIN_RUNNERS_FOR_SLOPE",
    "OUTCOME_RANGES",
    "RESIDUAL_BOUNDARY_RATIO",
    "SINGULAR_TOL",
    "SPIKE_BANDS",
    "SPIKE_BAND_EDGES",
    "STATUS_OK",
    "STATUS_WARNING",
    "SURVIVAL_MODELS",
    "VCOV_OPTIONS",
    "Z_95",
    "CoxFit",
    "CrossBasis",
    "Design",
    "LmmFit",
    "ModelResult",
    "NaturalSpline",
    "RandomEffects",
    "build_design",
    "cluster_robust_vcov",
    "conditional_modes",
    "contrast_test",
    "counting_process",
    "cox_fit",
    "crossbasis",
    "crosspred",
    "design_of",
    "episodes_of",
    "exposure_response",
    "first_episode_curves",
    "fit_counting_process",
    "fit_gee",
    "fit_glmm",
    "fit_lmm",
    "fit_lmm_design",
    "fit_model",
    "fit_survival",
    "gls_covariance",
    "kaplan_meier",
    "lag0_panel",
    "lag_response",
    "likelihood_ratio_test",
    "lmm_beta_covariance",
    "lmm_deviance",
    "natural_spline",
    "outcome_range",
    "predicted_curve",
    "prediction_problems",
    "satterthwaite_df",
    "satterthwaite_info",
    "sensitivity",
    "session_exposures",
    "spline_curve",
    "survival_crossbasis",
    "survival_design",
    "within_between",
    "within_between_spread",
]
