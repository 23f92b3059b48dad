"""Conditional modes (BLUPs) of a fitted linear mixed model, and its conditional residuals.

Takes a model result and the panel it was fitted to (never a report's cohort view: models
does not import reports).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.design import design_of
from analysis.models.result import ModelResult

#: Name of the residual row in ``ModelResult.variance_components`` (lme4's ``VarCorr``).
RESIDUAL_GROUP = "Residual"


@dataclass
class RandomEffects:
    """Conditional modes (BLUPs) of a linear mixed model and its residuals."""

    per_runner: pd.DataFrame  # runner_id, one column per random effect, <name>_se
    per_report: pd.DataFrame  # runner_id, fitted (conditional), residual, fitted_marginal


def _random_effect_covariance(result: ModelResult, z_names: list[str]
                              ) -> tuple[np.ndarray, float]:
    """G (q x q, in ``z_names`` order) and the residual variance sigma^2 from the result."""
    vc = result.variance_components
    q = len(z_names)
    G = np.zeros((q, q))
    index = {name: i for i, name in enumerate(z_names)}
    for row in vc[vc["group"] != RESIDUAL_GROUP].itertuples(index=False):
        i = index[row.var1]
        j = i if row.var2 is None or pd.isna(row.var2) else index[row.var2]
        G[i, j] = G[j, i] = row.vcov
    sigma2 = float(vc.loc[vc["group"] == RESIDUAL_GROUP, "vcov"].iloc[0])
    return G, sigma2


def conditional_modes(panel: pd.DataFrame, result: ModelResult) -> RandomEffects:
    """Per-runner random effects and per-report conditional residuals of an LMM fit.

    ``b_i = G (Z_i'Z_i G + sigma^2 I)^-1 Z_i'(y_i - X_i beta)`` and conditional variance
    ``G - G (Z_i'Z_i G + sigma^2 I)^-1 Z_i'Z_i G`` (Henderson's BLUP; the push-through form
    also holds when G is singular). Vectorised over runners.

    Parameters
    ----------
    panel : the rows ``result`` was fitted to (one row per pain report); the design is
        rebuilt with :func:`analysis.models.design_of`, so centering is honoured.
    result : a linear mixed model (``model="lmm"``) with independent residuals.

    Returns
    -------
    RandomEffects: ``per_runner`` (``runner_id``, one column per random effect and its
    conditional SD ``<name>_se``, NRS points) and ``per_report`` (``runner_id``, ``fitted``
    conditional on the runner's effects, ``residual``, ``fitted_marginal``), rows sorted by
    runner as in the design.

    Raises
    ------
    ModelSpecError
        Not a linear mixed model, or one with AR(1) residuals (whose BLUP needs the residual
        correlation, not ``sigma^2 I``).
    """
    if result.model != "lmm":
        raise ModelSpecError(f"conditional modes are computed for linear mixed models "
                             f"('lmm'), not {result.model!r}")
    if result.extra.get("correlation"):
        raise ModelSpecError("conditional modes with correlated (AR(1)) residuals are not "
                             "implemented; the formula here assumes sigma^2 I")
    design = design_of(result, panel)
    beta = result.table.set_index("term").loc[design.x_names, "estimate"].to_numpy(float)
    q = len(design.z_names)
    G, sigma2 = _random_effect_covariance(result, design.z_names)

    fixed = design.X @ beta
    resid_marginal = design.y - fixed
    Z = design.Z
    ztz = np.add.reduceat(Z[:, :, None] * Z[:, None, :], design.starts, axis=0)  # (m, q, q)
    ztr = np.add.reduceat(Z * resid_marginal[:, None], design.starts, axis=0)  # (m, q)
    inner = ztz @ G + sigma2 * np.eye(q)  # (m, q, q)
    solved = np.linalg.solve(inner, ztr[:, :, None])[:, :, 0]
    modes = solved @ G.T  # G is symmetric: b_i = G solved_i
    cond_var = G - G @ np.linalg.solve(inner, ztz @ G)
    se = np.sqrt(np.clip(np.diagonal(cond_var, axis1=1, axis2=2), 0, None))
    labels = pd.Series(design.group_labels, name="runner_id")
    per_runner = pd.concat(
        [labels, pd.DataFrame(modes, columns=design.z_names),
         pd.DataFrame(se, columns=[f"{n}_se" for n in design.z_names])], axis=1)
    fitted = fixed + np.einsum("nq,nq->n", Z, modes[design.groups])
    per_report = pd.DataFrame({
        "runner_id": design.group_labels[design.groups],
        "fitted": fitted,
        "residual": design.y - fitted,
        "fitted_marginal": fixed,
    })
    return RandomEffects(per_runner=per_runner, per_report=per_report)


__all__ = ["RESIDUAL_GROUP", "RandomEffects", "conditional_modes"]
