"""Figures of non-linear and lagged load: exposure-response curve, lag-response, exposure-lag
surface (docs/models.md, "Non-linear and lagged load").

Each takes the table of :func:`analysis.models.exposure_response` or
:func:`analysis.models.crosspred` first and ``ax=None``, and returns the Axes; fixed sizes,
no randomness. The band is the pointwise 95 % interval (delta method on the full covariance
of the basis coefficients); binomial fits are drawn as odds ratios on a log axis when the
table carries ``odds_ratio`` columns. Labels are passed in (the caller's wording, e.g. from
``analysis.labels``); nothing here reads a column name onto a figure except as a fallback.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from analysis.effects import null_effect

#: One panel at a journal's text width (inches), as analysis.plots draws.
FIGSIZE = (6.5, 3.2)
#: Diverging colour map for the surface, centred on no effect (colour-blind safe).
SURFACE_CMAP = "RdBu_r"
#: Filled contour levels of the surface.
SURFACE_LEVELS = 15


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    return ax


def _columns(table: pd.DataFrame, odds: bool | None) -> tuple[list[str], float, bool]:
    """The estimate and band columns to draw, the no-effect value and whether on odds."""
    odds = "odds_ratio" in table.columns if odds is None else odds
    if odds:
        return ["odds_ratio", "or_ci_low", "or_ci_high"], null_effect(odds=True), True
    return ["estimate", "ci_low", "ci_high"], null_effect(odds=False), False


def exposure_response_plot(curve: pd.DataFrame, *, values: Sequence[float] | None = None,
                           xlabel: str = "exposure", ylabel: str | None = None,
                           odds: bool | None = None, ax: Axes | None = None) -> Axes:
    """The spline's effect along the exposure vs the reference value, band and rug.

    Parameters
    ----------
    curve : :func:`analysis.models.exposure_response` (``x``, ``estimate``, ``ci_low``,
        ``ci_high``; ``odds_ratio`` columns for a GLMM; ``attrs["reference"]``).
    values : the exposure in the modelling rows, drawn as a rug (where the data are).
    xlabel, ylabel : axis labels (unit included, e.g. "acute:chronic ratio").
    """
    ax = _axes(ax)
    (est, low, high), null, on_odds = _columns(curve, odds)
    ax.fill_between(curve["x"], curve[low], curve[high], alpha=0.25, linewidth=0,
                    label="95 % pointwise interval")
    ax.plot(curve["x"], curve[est], linewidth=2, label="estimate")
    ax.axhline(null, color="0.4", linewidth=0.8, linestyle="--")
    reference = curve.attrs.get("reference")
    if reference is not None:
        ax.axvline(reference, color="0.4", linewidth=0.8, linestyle=":",
                   label=f"reference {reference:.3g}")
    if values is not None:
        x = np.asarray(values, dtype=float)
        x = x[np.isfinite(x)]
        ax.plot(x, np.zeros_like(x), "|", color="0.2", markersize=8, alpha=0.4,
                transform=ax.get_xaxis_transform(), label="data")
    if on_odds:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or ("odds ratio vs reference" if on_odds
                             else "difference vs reference"))
    ax.legend(frameon=False, loc="best")
    return ax


def lag_response_plot(surface: pd.DataFrame, *, at: float | None = None,
                      ylabel: str | None = None, odds: bool | None = None,
                      ax: Axes | None = None) -> Axes:
    """Effect of a day's load by lag (days before the reference day), with its band.

    ``surface`` is :func:`analysis.models.crosspred` ``["surface"]`` (or
    :func:`analysis.models.lag_response`); with several loads, ``at`` picks one.
    """
    ax = _axes(ax)
    rows = surface if at is None else surface.loc[np.isclose(surface["x"], at)]
    loads = rows["x"].unique()
    if loads.size != 1:
        raise ValueError(f"the surface has loads {sorted(loads)}: pick one with at=")
    (est, low, high), null, on_odds = _columns(rows, odds)
    ax.fill_between(rows["lag"], rows[low], rows[high], alpha=0.25, linewidth=0,
                    step=None, label="95 % pointwise interval")
    ax.plot(rows["lag"], rows[est], marker="o", markersize=3, linewidth=1.5,
            label=f"load {rows['x'].iloc[0]:g} vs {surface.attrs.get('reference', 0):g}")
    ax.axhline(null, color="0.4", linewidth=0.8, linestyle="--")
    if on_odds:
        ax.set_yscale("log")
    ax.set_xlabel("lag (days before the reference day)")
    ax.set_ylabel(ylabel or ("odds ratio" if on_odds else "effect"))
    ax.legend(frameon=False, loc="best")
    return ax


def exposure_lag_contour(surface: pd.DataFrame, *, xlabel: str = "daily load",
                         label: str | None = None, odds: bool | None = None,
                         ax: Axes | None = None) -> Axes:
    """Filled contour of the exposure-lag-response surface (load x lag), centred on no
    effect; ``surface`` is :func:`analysis.models.crosspred` ``["surface"]`` over several
    loads."""
    ax = _axes(ax)
    (est, _, _), _, on_odds = _columns(surface, odds)
    grid = surface.pivot_table(index="lag", columns="x", values=est)
    values = np.log(grid.to_numpy()) if on_odds else grid.to_numpy()
    bound = float(np.nanmax(np.abs(values))) or 1.0
    levels = np.linspace(-bound, bound, SURFACE_LEVELS)
    filled = ax.contourf(grid.columns, grid.index, values, levels=levels, cmap=SURFACE_CMAP)
    bar = ax.figure.colorbar(filled, ax=ax)
    bar.set_label(label or ("log odds ratio" if on_odds else "effect"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("lag (days)")
    return ax


__all__ = ["exposure_lag_contour", "exposure_response_plot", "lag_response_plot"]
