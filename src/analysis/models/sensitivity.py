"""Sensitivity analyses of a headline load effect as one call (docs/models.md, "Non-linear
and lagged load").

:func:`sensitivity` refits one model under each alternative a reviewer asks for and returns
one table: the default exposure lag against lag 0, the ratio against acute and chronic load
as separate terms (with and without their interaction), the linear term against a natural
spline (its curve at the 90th percentile vs the median and the likelihood-ratio test of
non-linearity), and rest days against missing days for long unlogged gaps when a panel built
with ``unlogged_gaps="missing"`` is given. Nothing is recomputed here that the build defines:
lag-0 exposures are the daily calendar's own features looked up at the report date
(``daily.parquet`` carries every daily feature), the chronic load is the panel's ``km_28d``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.defaults import DEFAULT_EXPOSURE_LAG_DAYS
from analysis.effects import step_value_columns
from analysis.errors import KneeloadError, ModelSpecError
from analysis.models.fit import fit_model
from analysis.models.nonlinear import exposure_response
from analysis.models.result import ModelResult

#: Columns of the :func:`sensitivity` table.
SENSITIVITY_COLUMNS = ("analysis", "term", "step_label", *step_value_columns(odds=False),
                       "p_value", "n_obs", "note")
#: The spline row reads the curve at this quantile of the exposure against its median.
SPLINE_READ_QUANTILE = 0.90
#: Acute and chronic load as separate terms: the panel's 7-day and 28-day km
#: (``analysis.exposures``: acwr_rolling = km_7d / (km_28d / 4)).
ACUTE_COLUMN = "km_7d"
CHRONIC_COLUMN = "km_28d"


def lag0_panel(panel: pd.DataFrame, daily: pd.DataFrame, *, columns: Sequence[str],
               group: str = "runner_id") -> pd.DataFrame:
    """The panel with ``columns`` taken at the report date instead of the reference day
    (an exposure lag of 0 days), from the daily calendar's features.

    Parameters
    ----------
    panel : one row per pain report (``runner_id``, ``date``).
    daily : ``daily.parquet`` (``runner_id``, ``date`` and every daily feature).
    columns : exposure columns to replace (e.g. ``acwr_rolling``, ``km_7d``).
    """
    missing = [c for c in (group, "date", *columns) if c not in daily.columns]
    if missing:
        raise ModelSpecError(f"daily table has no column {missing[0]!r} (lag 0 needs the "
                             "daily features of daily.parquet)", column=missing[0])
    keys = [group, "date"]
    day = daily[[*keys, *columns]].assign(**{group: daily[group].astype(str),
                                            "date": pd.to_datetime(daily["date"])})
    left = panel.assign(**{group: panel[group].astype(str),
                           "date": pd.to_datetime(panel["date"])})
    merged = left.drop(columns=list(columns)).merge(day, on=keys, how="left",
                                                    validate="many_to_one")
    merged.index = panel.index
    return merged[list(panel.columns)]


def _rows(result: ModelResult, analysis: str, terms: Sequence[str], note: str = ""
          ) -> list[dict[str, Any]]:
    table = result.table.set_index("term")
    return [{"analysis": analysis, "term": term, "step_label": table.loc[term, "step_label"],
             "estimate_step": table.loc[term, "estimate_step"],
             "ci_low_step": table.loc[term, "ci_low_step"],
             "ci_high_step": table.loc[term, "ci_high_step"],
             "p_value": table.loc[term, "p_value"], "n_obs": result.n_obs,
             "note": "; ".join(x for x in [note, *result.problems] if x)} for term in terms]


def _not_done(analysis: str, why: str) -> dict[str, Any]:
    return {"analysis": analysis, "term": None, "step_label": None,
            "estimate_step": np.nan, "ci_low_step": np.nan, "ci_high_step": np.nan,
            "p_value": np.nan, "n_obs": 0, "note": f"not done: {why}"}


def sensitivity(panel: pd.DataFrame, *, exposure: str = "acwr_rolling",
                outcome: str | None = None, model: str = "lmm",
                covariates: Sequence[str] = (), daily: pd.DataFrame | None = None,
                missing_panel: pd.DataFrame | None = None, spline_df: int = 3,
                exposure_lag_days: int = DEFAULT_EXPOSURE_LAG_DAYS,
                acute: str = ACUTE_COLUMN, chronic: str = CHRONIC_COLUMN) -> pd.DataFrame:
    """The headline effect of ``exposure`` under each sensitivity analysis, one table.

    Parameters
    ----------
    panel : the panel as built (exposures at the reference day, ``exposure_lag_days``
        before the report).
    exposure : the headline exposure (default the acute:chronic ratio ``acwr_rolling``).
    outcome : response (default the model's: ``pain`` for lmm, ``pain_any`` for glmm).
    model : ``"lmm"`` or ``"glmm"``.
    covariates : adjustment columns, kept in every analysis.
    daily : ``daily.parquet`` of the same build, for the lag-0 analysis (skipped without).
    missing_panel : the panel built with ``unlogged_gaps="missing"`` (21+ day gaps without a
        run are unknown, not rest), for the rest-vs-missing analysis (skipped without).
    spline_df : df of the natural spline (``ns(exposure, spline_df)``).
    exposure_lag_days : the build's lag (``panel_meta.json``), for the row label only.
    acute, chronic : the separate-terms alternative to a ratio (7-day and 28-day km).

    Returns
    -------
    One row per analysis and term (:data:`SENSITIVITY_COLUMNS`): effects per reading step
    (NRS points for an LMM, log-odds for a GLMM, with ``odds_ratio_step`` columns), 95 %
    intervals, ``p_value``, the rows used (``n_obs``) and a ``note`` (problems of the fit,
    or why an analysis was not done). The spline row is the curve at the 90th percentile
    vs the median, its ``p_value`` the ML likelihood-ratio test of non-linearity.
    """
    if model not in ("lmm", "glmm"):
        raise ModelSpecError(f"sensitivity analyses take model 'lmm' or 'glmm', got {model!r}")
    base: dict[str, Any] = {"model": model, "covariates": list(covariates)}
    if outcome is not None:
        base["outcome"] = outcome
    rows: list[dict[str, Any]] = []
    main = fit_model(panel, exposures=[exposure], **base)
    rows += _rows(main, f"main: lag {exposure_lag_days} days, linear", [exposure])

    if daily is None:
        rows.append(_not_done("lag 0 days", "needs the daily table (daily.parquet)"))
    else:
        lag0 = lag0_panel(panel, daily, columns=[exposure])
        rows += _rows(fit_model(lag0, exposures=[exposure], **base), "lag 0 days", [exposure])

    if exposure in (acute, chronic):
        rows.append(_not_done("acute + chronic terms", f"{exposure} is itself one of them"))
    else:
        for analysis, interactions in (("acute + chronic terms", ()),
                                       ("acute x chronic interaction",
                                        (f"{acute}:{chronic}",))):
            try:
                fit = fit_model(panel, exposures=[acute, chronic], interactions=interactions,
                                **base)
            except KneeloadError as error:
                rows.append(_not_done(analysis, str(error)))
                continue
            terms = [acute, chronic, *interactions]
            rows += _rows(fit, analysis, terms, note="not on the ratio's scale: per term")

    spline = fit_model(panel, exposures=[exposure], splines={exposure: spline_df}, **base)
    frame_x = spline.extra["spline_reference"][exposure]
    x_read = float(np.quantile(_used_values(panel, spline, exposure), SPLINE_READ_QUANTILE))
    curve = exposure_response(spline, exposure=exposure, x=[x_read])
    lrt = spline.extra["nonlinearity"][exposure]
    rows.append({"analysis": f"natural spline ns({exposure}, {spline_df})",
                 "term": f"{exposure} at P90 ({x_read:.3g}) vs median ({frame_x:.3g})",
                 "step_label": "curve difference", "estimate_step": curve["estimate"].iloc[0],
                 "ci_low_step": curve["ci_low"].iloc[0], "ci_high_step": curve["ci_high"].iloc[0],
                 "p_value": lrt["p_value"], "n_obs": spline.n_obs,
                 "note": "; ".join(["p_value: ML likelihood-ratio test of non-linearity "
                                    f"(df {lrt['df']})", *spline.problems])})

    if missing_panel is None:
        rows.append(_not_done("unlogged gaps as missing",
                              "needs a panel built with unlogged_gaps='missing' "
                              "(kneeload build --unlogged-gaps missing)"))
    else:
        rows += _rows(fit_model(missing_panel, exposures=[exposure], **base),
                      "unlogged gaps as missing", [exposure])
    table = pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))
    if model == "glmm":
        # the per-step log-odds as odds ratios, in the columns every table shows them in
        table = table.assign(**{odds: np.exp(table[log_odds]) for odds, log_odds in zip(
            step_value_columns(odds=True), step_value_columns(odds=False), strict=True)})
    return table


def _used_values(panel: pd.DataFrame, result: ModelResult, exposure: str) -> np.ndarray:
    """The exposure over the rows a fit used (complete on its outcome, exposure, covariates)."""
    columns = [result.outcome, exposure, *(c[2:-1] if c.startswith("C(") else c
                                           for c in result.covariates)]
    return panel.dropna(subset=columns)[exposure].to_numpy(dtype=float)


__all__ = ["SENSITIVITY_COLUMNS", "SPLINE_READ_QUANTILE", "lag0_panel", "sensitivity"]
