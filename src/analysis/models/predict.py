"""Population-level predictions of a fitted model along one exposure, and their range check."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.defaults import PAIN_MAX, PAIN_MIN
from analysis.errors import ModelSpecError
from analysis.models.design import INTERACTION_SEP, design_of
from analysis.models.result import PROBLEM_PREDICTIONS, Z_95, ModelResult
from analysis.models.splines import spline_column_names

#: Range of each outcome a linear model may predict outside of: pain is NRS 0-10
#: (``analysis.defaults``). Binomial models predict probabilities, always inside 0-1.
OUTCOME_RANGES: dict[str, tuple[float, float]] = {"pain": (PAIN_MIN, PAIN_MAX)}
PROBABILITY_RANGE = (0.0, 1.0)
#: Share of an exposure's modelling rows the curve covers: its 2.5-97.5 % quantiles.
CURVE_QUANTILES = (0.025, 0.975)
CURVE_POINTS = 50


def outcome_range(result: ModelResult) -> tuple[float, float] | None:
    """The range the outcome can take: NRS 0-10, a probability 0-1, or None (unbounded)."""
    if result.model in ("glmm", "gee"):
        return PROBABILITY_RANGE
    return OUTCOME_RANGES.get(result.outcome)


def predicted_curve(result: ModelResult, panel: pd.DataFrame, *, exposure: str,
                    n_points: int = CURVE_POINTS) -> pd.DataFrame:
    """Predicted outcome along one exposure, the other fixed-effect columns at their means.

    Parameters
    ----------
    result : a fitted model; ``panel`` must be the rows it was fitted to.
    exposure : one of ``result.exposures``; with within-between centering the within-runner
        effect is drawn. A spline exposure (``splines={exposure: df}``) is drawn through its
        basis ``ns(exposure, df)1..df`` evaluated on the grid; an interaction ``a:b`` with the
        exposure moves with it (the other factor at its mean). For the curve relative to a
        reference value use :func:`analysis.models.exposure_response`.
    n_points : grid points over the exposure's 2.5-97.5 % quantiles in the modelling rows.

    Returns
    -------
    ``x`` (the exposure, its own unit), ``predicted``, ``ci_low``, ``ci_high`` (pointwise
    Wald 95 % from the fixed-effect covariance ``extra["vcov"]``, else the diagonal), on the
    outcome's scale: NRS points, or a probability for binomial models. Not clipped: see
    :func:`prediction_problems` and :func:`analysis.plots.predicted_pain`.
    """
    center = result.extra.get("center")
    design = design_of(result, panel)
    table = result.table.set_index("term")
    beta = table.loc[design.x_names, "estimate"].to_numpy(float)
    vcov: Any = result.extra.get("vcov")
    cov = (np.asarray(vcov, float) if vcov is not None
           else np.diag(table.loc[design.x_names, "std_error"].to_numpy(float) ** 2))
    if exposure not in result.exposures:
        raise ModelSpecError(f"{exposure!r} is not an exposure of this model (exposures: "
                             f"{list(result.exposures)})", column=exposure)
    raw = design.frame[exposure].to_numpy(float)
    grid = np.linspace(*np.quantile(raw, CURVE_QUANTILES), n_points)
    X = np.tile(design.X.mean(axis=0), (n_points, 1))
    basis = design.splines.get(exposure)
    if basis is not None:  # spline terms need center=None (build_design), so no shift
        idx = [design.x_names.index(n) for n in spline_column_names(exposure, basis.df)]
        X[:, idx] = basis.basis(grid)
    else:
        column = f"{exposure}_within" if center == "within-between" else exposure
        shift = raw.mean() if center in ("grand", "within-between") else 0.0
        j = design.x_names.index(column)
        X[:, j] = grid - shift
        for name in design.x_names:  # a:b moves with a, b held at its mean (design scale)
            parts = name.split(INTERACTION_SEP)
            if len(parts) == 2 and exposure in parts and all(p in design.x_names
                                                              for p in parts):
                other = parts[1] if parts[0] == exposure else parts[0]
                X[:, design.x_names.index(name)] = X[:, j] * X[0, design.x_names.index(other)]
    eta = X @ beta
    half = Z_95 * np.sqrt(np.einsum("ij,jk,ik->i", X, cov, X))
    values = [eta, eta - half, eta + half]
    if result.model in ("glmm", "gee"):
        values = [1 / (1 + np.exp(-v)) for v in values]
    return pd.DataFrame({"x": grid, "predicted": values[0], "ci_low": values[1],
                         "ci_high": values[2]})


def prediction_problems(result: ModelResult, panel: pd.DataFrame, *,
                        exposures: list[str] | None = None) -> list[str]:
    """One problem per exposure whose predicted curve (not only its band) leaves the range.

    A linear model of a bounded score can predict impossible values (pain below 0); the
    report clips its figures and lists such exposures among the result's problems, e.g.
    ``"predictions outside 0-10 (mileage_jump: -4.1 to 3.2)"``.
    """
    bounds = outcome_range(result)
    if bounds is None:
        return []
    low, high = bounds
    problems = []
    for exposure in exposures if exposures is not None else result.exposures:
        curve = predicted_curve(result, panel, exposure=exposure)
        lo, hi = float(curve["predicted"].min()), float(curve["predicted"].max())
        if lo < low or hi > high:
            problems.append(f"{PROBLEM_PREDICTIONS} {low:g}-{high:g} ({exposure}: "
                            f"{lo:.1f} to {hi:.1f})")
    return problems
