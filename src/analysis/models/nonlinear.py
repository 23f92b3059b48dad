"""Spline terms read out: exposure-response curves with intervals, and the test of
non-linearity (docs/models.md, "Non-linear and lagged load").

A spline coefficient has no reading of its own; the curve ``f(x) - f(x_ref)`` does. Its
pointwise 95 % interval is the delta method on the full fixed-effect covariance of the basis
coefficients, ``d' V d`` with ``d = B(x) - B(x_ref)`` (normal quantile, as R's
``dlnm::crosspred`` and ``termplot`` use). The test of non-linearity is the likelihood ratio
of the spline model against the same model with the exposure linear, both by ML
(:func:`analysis.models.likelihood_ratio_test`): a natural cubic spline space contains the
straight lines, so the linear model is nested in the spline model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.compare import likelihood_ratio_test
from analysis.models.result import Z_95, ModelResult
from analysis.models.splines import NaturalSpline, spline_column_names

#: Points of a stored exposure-response curve (over the boundary knots: the data range).
CURVE_POINTS = 50
#: The default reference value of a curve: the median of the exposure in the modelling rows.
REFERENCE_RULE = "median of the modelling rows"


def spline_knots(result: ModelResult, exposure: str) -> NaturalSpline:
    """The basis a fit used for one spline exposure (``extra["spline_knots"]``)."""
    knots = (result.extra.get("spline_knots") or {}).get(exposure)
    if knots is None:
        raise ModelSpecError(f"{exposure!r} is not a spline term of this model (splines: "
                             f"{sorted(result.extra.get('spline_knots') or {})})",
                             column=exposure)
    return NaturalSpline(knots=tuple(knots["knots"]), boundary=tuple(knots["boundary"]))


def exposure_response(result: ModelResult, *, exposure: str,
                      x: Sequence[float] | np.ndarray | None = None,
                      reference: float | None = None,
                      n_points: int = CURVE_POINTS) -> pd.DataFrame:
    """The spline's effect at ``x`` relative to ``reference``, with pointwise 95 % intervals.

    Parameters
    ----------
    result : an LMM or GLMM (or any result with ``extra["spline_knots"]``, ``extra["vcov"]``
        in table order and the ``ns(<exposure>, df)j`` terms).
    exposure : the spline exposure (e.g. ``acwr_rolling``, a ratio).
    x : values of the exposure (its unit); default ``n_points`` over the boundary knots.
    reference : the value the effect is relative to; default the median in the modelling
        rows (``extra["spline_reference"]``).

    Returns
    -------
    ``x``, ``estimate`` (NRS points for an LMM, log-odds for a GLMM: f(x) - f(reference)),
    ``std_error``, ``ci_low``, ``ci_high`` and, for binomial models, ``odds_ratio``,
    ``or_ci_low``, ``or_ci_high``; ``reference`` in ``.attrs``.
    """
    basis = spline_knots(result, exposure)
    if reference is None:
        reference = float(result.extra["spline_reference"][exposure])
    if x is None:
        x = np.linspace(*basis.boundary, n_points)
    x = np.asarray(x, dtype=float)
    names = spline_column_names(exposure, basis.df)
    terms = list(result.table["term"])
    idx = [terms.index(n) for n in names]
    beta = result.table["estimate"].to_numpy(float)[idx]
    cov = np.asarray(result.extra["vcov"], dtype=float)[np.ix_(idx, idx)]
    d = basis.basis(x) - basis.basis(np.array([reference]))
    est = d @ beta
    se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", d, cov, d), 0.0, None))
    out = pd.DataFrame({"x": x, "estimate": est, "std_error": se,
                        "ci_low": est - Z_95 * se, "ci_high": est + Z_95 * se})
    if result.model in ("glmm", "gee"):
        out = out.assign(odds_ratio=np.exp(out["estimate"]), or_ci_low=np.exp(out["ci_low"]),
                         or_ci_high=np.exp(out["ci_high"]))
    out.attrs["reference"] = reference
    return out


def spline_request_extra(design_splines: dict[str, NaturalSpline], frame: pd.DataFrame
                         ) -> dict[str, Any]:
    """What a result stores of its spline terms: ``splines`` ({exposure: df}),
    ``spline_knots`` and ``spline_reference`` (the median, :data:`REFERENCE_RULE`)."""
    return {
        "splines": {c: b.df for c, b in design_splines.items()},
        "spline_knots": {c: {"knots": list(b.knots), "boundary": list(b.boundary)}
                         for c, b in design_splines.items()},
        "spline_reference": {c: float(np.median(frame[c].to_numpy(float)))
                             for c in design_splines},
        "spline_reference_rule": REFERENCE_RULE,
    }


def nonlinearity_summaries(result: ModelResult, *, refit: Callable[..., ModelResult]
                           ) -> dict[str, Any]:
    """The stored curve and the likelihood-ratio test of non-linearity of each spline.

    Parameters
    ----------
    result : the spline fit (REML or ML).
    refit : the fitter on the same panel and request, taking ``reml`` and ``splines``
        keywords (``functools.partial`` of :func:`fit_lmm` or :func:`fit_glmm`); called for
        the ML spline fit (unless ``result`` is ML) and once per spline exposure with that
        exposure linear.

    Returns
    -------
    ``{"spline_curves": {exposure: {column: list}}, "nonlinearity": {exposure: {statistic,
    df, p_value, loglik_spline, loglik_linear, method}}}`` (a df=1 spline is a straight
    line: its test has df 0 and no statistic).
    """
    splines = dict(result.extra.get("splines") or {})
    ml = result if result.method != "REML" else refit(reml=False, splines=splines)
    curves, tests = {}, {}
    for exposure in splines:
        curve = exposure_response(result, exposure=exposure)
        curves[exposure] = {"reference": curve.attrs["reference"],
                            **{c: curve[c].tolist() for c in curve.columns}}
        if splines[exposure] == 1:  # ns(x, 1) is the straight line: nothing to test
            tests[exposure] = {"statistic": None, "df": 0, "p_value": None,
                               "loglik_spline": ml.loglik, "loglik_linear": ml.loglik,
                               "method": ml.method}
            continue
        linear = refit(reml=False, splines={k: v for k, v in splines.items() if k != exposure})
        lrt = likelihood_ratio_test(linear, ml)
        tests[exposure] = {"statistic": lrt["statistic"], "df": lrt["df"],
                           "p_value": lrt["p_value"], "loglik_spline": ml.loglik,
                           "loglik_linear": linear.loglik, "method": ml.method}
    return {"spline_curves": curves, "nonlinearity": tests}


def spline_curve(result: ModelResult, exposure: str) -> pd.DataFrame:
    """The curve stored with a fit (``extra["spline_curves"]``) as a table."""
    stored = dict((result.extra.get("spline_curves") or {}).get(exposure) or {})
    if not stored:
        raise ModelSpecError(f"no stored curve for {exposure!r}", column=exposure)
    reference = stored.pop("reference")
    out = pd.DataFrame(stored)
    out.attrs["reference"] = reference
    return out


__all__ = [
    "CURVE_POINTS",
    "REFERENCE_RULE",
    "exposure_response",
    "nonlinearity_summaries",
    "spline_curve",
    "spline_knots",
    "spline_request_extra",
]
