"""Binomial (logit) mixed models of pain present: Laplace ML as lme4's glmer (docs/models.md)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.design import Design, _binary_design
from analysis.models.laplace import LaplaceFit, fit_laplace
from analysis.models.nonlinear import nonlinearity_summaries, spline_request_extra
from analysis.models.result import (
    LOGIT_RESIDUAL_VARIANCE,
    ModelResult,
    _dropped_note,
    _variance_table,
    _wald_table,
)

#: GLMM engines: kneeload's own Laplace deviance (lme4's, nAGQ = 1) with analytic gradients.
GLMM_ENGINES = ("laplace",)
#: A report's fitted probability (conditional on the runner's mode) within this of 0 or 1 is
#: "numerically 0 or 1" (glm.fit's warning; complete or quasi-complete separation, Albert &
#: Anderson 1984, Biometrika 71:1-10: the likelihood keeps rising as an estimate runs off to
#: +/-infinity). glm uses 10 x machine epsilon because its IRLS runs until mu reaches the
#: link's clamp; kneeload's optimiser stops earlier, when the Newton decrement (about the
#: summed fitted probability of the separated reports, since their deviance, gradient and
#: curvature along the runaway direction are all ~2 sum mu) is below 2e-7, so every separated
#: report ends below 1e-6. Legitimate fits stay far above it: one event per million reports is
#: more than any kneeload panel can estimate; the committed fixtures' smallest tail
#: probability is 1.1e-3 (|eta| <= 6.8 at 2.1 % prevalence, glmm_rare.csv), the separated
#: review panel's largest 1e-8 (tests/test_glmm.py).
SEPARATION_PROB = 1e-6
#: The logit of SEPARATION_PROB: a fixed effect that moves the linear predictor by more than
#: this across its column's observed range can alone push a report past that probability; it
#: is named as the separating term.
SEPARATION_LOGIT = -math.log(SEPARATION_PROB / (1 - SEPARATION_PROB))
#: The Hessian of the deviance over (theta, beta) is numerically singular when its smallest
#: eigenvalue is below this fraction of its largest: lme4's ``check.conv.hess`` tolerance
#: (``glmerControl()``, "Model is nearly unidentifiable: large eigenvalue ratio"), applied in
#: the optimiser's coordinates (theta and unit-RMS columns), so it does not depend on the
#: columns' units as glmer's does. Measured: 6e-11 on the separated review panel; >= 3.3e-3
#: on the committed fixtures and 9 other clean panels (rare events, slopes, 12 runners).
HESSIAN_RATIO_TOL = 1e-6
#: A random-effect SD above this many logits (the RMS over reports of the SD of the random
#: part z' Lambda u of the linear predictor, so slopes count in the units of their column
#: values) means the outcome is nearly constant within runners and the SD is not identified:
#: the likelihood is nearly flat in it (glmer: "nearly unidentifiable"). At 10
#: logits the latent ICC is 0.97 and runners one SD either side of a 50 % runner have pain
#: probabilities 4.5e-5 and 1 - 4.5e-5; runner SDs of binary outcomes are ~0.5-3 logits
#: (latent ICC 0.07-0.73; the committed fixtures 0.8-1.6). The novice review cohort (every
#: runner reports the same pain each week) stops at 76 logits.
RANDOM_SD_MAX = 10.0
PROBLEM_SEPARATION = "separation"
PROBLEM_UNIDENTIFIABLE = "nearly unidentifiable"

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
    splines: Mapping[str, int] | None = None,
    interactions: Sequence[str] = (),
    nonlinearity: bool = True,
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
    splines, interactions, nonlinearity : as in :func:`analysis.models.fit_lmm` (the curve
        in log-odds and odds ratios relative to the median).

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
                            group=group, splines=splines, interactions=interactions)
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
    problems = _doubtful_fit(fit, design, group=group)
    result = ModelResult(
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
        problems=problems,
    )
    if interactions:
        result.extra["interactions"] = list(interactions)
    if design.splines:
        result.extra.update(spline_request_extra(design.splines, design.frame))
        if nonlinearity:
            refit = functools.partial(
                fit_glmm, panel, exposures=exposures, outcome=outcome, covariates=covariates,
                random_slopes=random_slopes, center=center, group=group, engine=engine,
                vcov=vcov, correlated=correlated, interactions=interactions,
                nonlinearity=False)
            result.extra.update(nonlinearity_summaries(
                result, refit=lambda *, reml, splines: refit(splines=splines)))
    return result


def _doubtful_fit(fit: LaplaceFit, design: Design, *, group: str) -> list[str]:
    """Problems of a fit whose estimates run off to infinity (``ModelResult.problems``).

    Separation: reports with a fitted probability (conditional on the runner's mode) within
    :data:`SEPARATION_PROB` of 0 or 1, or a Hessian eigenvalue ratio below
    :data:`HESSIAN_RATIO_TOL`; nearly unidentifiable: a random-effect SD above
    :data:`RANDOM_SD_MAX` logits. Each message says how many reports or runners and which
    terms.
    """
    problems = []
    y, n = design.y, len(design.y)
    sd_random = math.sqrt(float(np.einsum("nq,qr,nr->", design.Z, fit.G, design.Z)) / n)
    if sd_random > RANDOM_SD_MAX:
        ends = np.r_[design.starts[1:], n]
        constant = int(sum(np.ptp(y[a:b]) == 0 for a, b in zip(design.starts, ends,
                                                                 strict=True)))
        problems.append(
            f"{PROBLEM_UNIDENTIFIABLE}: random-effect SD {sd_random:.3g} logits (above "
            f"{RANDOM_SD_MAX:g}); {constant} of {len(design.starts)} runners report the same "
            "outcome every time, so the outcome is nearly constant within runners and the SD "
            "and the standard errors are not usable")
    # min(mu, 1 - mu) from eta without cancellation: expit(-|eta|)
    tail = 1.0 / (1.0 + np.exp(np.minimum(np.abs(fit.eta), 700.0)))
    extreme = int((tail < SEPARATION_PROB).sum())
    spread = np.ptp(design.X, axis=0) * np.abs(fit.beta)
    terms = [name for name, s in zip(design.x_names, spread, strict=True)
             if s > SEPARATION_LOGIT]
    singular_hessian = fit.hessian_ratio < HESSIAN_RATIO_TOL
    if singular_hessian and not terms:  # name the flat direction's largest entries instead
        names = _parameter_names(design, fit, group=group)
        weak = np.abs(fit.weak_direction)
        terms = [names[i] for i in np.flatnonzero(weak >= 0.5 * weak.max())]
    if extreme or singular_hessian:
        parts = []
        if extreme:
            parts.append(f"fitted probabilities numerically 0 or 1 (within "
                         f"{SEPARATION_PROB:g}) for {extreme} of {n} reports")
        if singular_hessian:
            parts.append(f"the Hessian is numerically singular (eigenvalue ratio "
                         f"{fit.hessian_ratio:.1e})")
        where = (f" in {', '.join(terms)}" if terms else
                 " by runner (the random effects)" if sd_random > RANDOM_SD_MAX else "")
        problems.append(f"{PROBLEM_SEPARATION}{where}: {'; '.join(parts)}; those estimates "
                        "run off to infinity and their standard errors are not usable")
    return problems


def _parameter_names(design: Design, fit: LaplaceFit, *, group: str) -> list[str]:
    """Names of the Hessian's kept entries: theta (as lme4's Lambda entries), then beta."""
    q = design.Z.shape[1]
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))
    pairs = list(zip(rows[order], cols[order], strict=True))
    if len(fit.theta) < len(pairs):  # uncorrelated: the diagonal only
        pairs = [(r, c) for r, c in pairs if r == c]
    z = design.z_names
    theta = [f"random-effect SD ({group}: {z[r]})" if r == c else
             f"random-effect correlation ({group}: {z[c]}, {z[r]})" for r, c in pairs]
    names = theta + list(design.x_names)
    return [name for name, kept in zip(names, fit.hessian_kept, strict=True) if kept]
