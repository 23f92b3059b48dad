"""The cohort report's section on non-linear and lagged load (issue 16; docs/models.md,
"Non-linear and lagged load").

:func:`nonlinear_section` takes one cohort (:class:`analysis.reports.CohortView`) and the
report parameters ``splines`` (``"acwr_rolling:3"``), ``dlnm`` (``"distance_km:28"``) and
``sensitivity`` (:data:`analysis.reports.parameters.NONLINEAR_PARAMETERS`) and fits, on the
cohort's own rows:

* per spline exposure, the report's model with that exposure as a natural cubic spline: its
  exposure-response curve vs the median (pointwise 95 % band, rug of the data) and the ML
  likelihood-ratio test of non-linearity (:func:`analysis.models.nonlinearity_summaries`);
* for ``dlnm``, a distributed-lag non-linear model of the daily load (cross-basis ns(load, 3)
  x ns(lag, 4 with intercept), :func:`analysis.models.crossbasis`): lag-response at the 90th
  percentile of running days' loads, the cumulative effect over lags 0..L and the
  exposure-lag contour, all vs a rest day (0);
* for ``sensitivity``, :func:`analysis.models.sensitivity` of the headline exposure, its
  rows labelled for reading (:func:`sensitivity_display`).

Figures are saved with :func:`analysis.plots.save_figure` into ``<folder>/figures`` (SVG
and 300 dpi PNG) when a folder is given. A fit that cannot be done is a line in
``problems`` (never an exception from a model): the rest of the report still runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.effects import step_value_columns
from analysis.errors import KneeloadError, ReportError
from analysis.outcomes import AUTO, report_outcome
from analysis.reports.cohort import FIGURES_DIR, CohortView
from analysis.reports.effects import markdown_text
from analysis.reports.parameters import parse_dlnm_param, parse_splines_param

#: The DLNM of a report: var basis ns(load, 3), lag basis ns(lag, 4) with intercept (the
#: defaults of :func:`analysis.models.crossbasis`; Gasparrini 2014 uses similar df).
DLNM_VAR_DF = 3
DLNM_LAG_DF = 4
#: The lag-response is drawn at this quantile of the running days' loads (load > 0).
DLNM_AT_QUANTILE = 0.90
#: The surface and cumulative curve span 0 to this quantile of the running days' loads.
DLNM_GRID_QUANTILE = 0.95
DLNM_GRID_POINTS = 21
#: The headline exposure of the sensitivity table when no spline is requested and the panel
#: has it (the ratio reviewers question: Impellizzeri et al. 2020).
SENSITIVITY_EXPOSURE = "acwr_rolling"
#: Curve points written to summary.json per spline (the curve over the data range).
SUMMARY_CURVE_POINTS = 25
#: The spline row of :func:`analysis.models.sensitivity`: ``natural spline ns(<x>, <df>)``.
_SPLINE_ANALYSIS = re.compile(r"^natural spline ns\((?P<column>[^,]+), (?P<df>\d+)\)$")
#: Significance level the sentence on the test of non-linearity reads p against.
ALPHA = 0.05


@dataclass
class NonlinearSection:
    """What the section shows: figures (Figure objects, by file stem), their captions and
    saved files, the labelled sensitivity table, Markdown text, problems and the
    summary.json block (:meth:`summary`)."""

    splines: dict[str, int]
    dlnm: tuple[str, int] | None
    figures: dict[str, Any] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict[str, Path]] = field(default_factory=dict)
    sensitivity: pd.DataFrame | None = None
    text: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)
    lag: dict[str, Any] = field(default_factory=dict)
    sensitivity_raw: pd.DataFrame | None = None

    @property
    def requested(self) -> bool:
        """Whether any of splines, dlnm or sensitivity was asked for."""
        return bool(self.splines or self.dlnm or self.sensitivity_raw is not None
                    or self.problems)

    def summary(self) -> dict[str, Any]:
        """The block for summary.json (:func:`nonlinear_summary`)."""
        return nonlinear_summary(self)

    def show(self) -> None:
        """Display the section in a notebook: text, figures with captions, the table."""
        import matplotlib.pyplot as plt
        from IPython.display import SVG, Markdown, display

        if not self.requested:
            return
        display(Markdown("## Non-linear and lagged load\n\n" + "\n\n".join(self.text)))
        for name, fig in self.figures.items():
            svg = self.files.get(name, {}).get("svg")
            display(SVG(filename=str(svg)) if svg is not None else fig)
            display(Markdown(f"*Figure: {markdown_text(self.captions[name])}*"))
            plt.close(fig)
        if self.sensitivity is not None:
            display(Markdown("**Sensitivity analyses** of the headline effect."))
            display(self.sensitivity.set_index("Analysis"))  # no bare 0..n row numbers
        for problem in self.problems:
            display(Markdown(f"*Note:* {markdown_text(problem)}"))


def _fmt(x: float) -> str:
    from analysis.labels import format_number

    return format_number(x)


def sensitivity_display(table: pd.DataFrame) -> pd.DataFrame:
    """The :func:`analysis.models.sensitivity` table for reading: human term labels, the
    effect with its 95 % interval in one column (odds ratios for a binomial model), journal
    p-values, rows used.

    Returns
    -------
    Columns ``Analysis``, ``Term``, ``Effect (95 % CI)``, ``p``, ``Reports``, ``Note``.
    """
    from analysis import labels

    odds = "odds_ratio_step" in table.columns
    cols = step_value_columns(odds)

    def analysis(text: str) -> str:
        match = _SPLINE_ANALYSIS.match(text)
        if match:  # "natural spline ns(acwr_rolling, 3)" -> "natural spline, df 3"
            return f"natural spline, df {match['df']}"
        return labels.humanize(text)

    def term(row: pd.Series) -> str:
        if not isinstance(row["term"], str):
            return ""
        if row["step_label"] == "curve difference":  # "acwr_rolling at P90 (1.36) vs ..."
            column, _, rest = row["term"].partition(" ")
            return f"{labels.label(column)} {rest}"
        parts = row["term"].split(":")
        name = " x ".join(labels.term_label(p) for p in parts)
        return f"{name} ({row['step_label']})" if row["step_label"] else name

    def effect(row: pd.Series) -> str:
        est, low, high = (row[c] for c in cols)
        if not np.isfinite(est):
            return ""
        return labels.interval_text(est, low, high, ratio=odds)

    def note(text: str) -> str:  # "p_value: ..." names the API table's column: "p: ..."
        return labels.humanize(re.sub(r"^p_value:", "p:", text))

    return pd.DataFrame({
        "Analysis": [analysis(str(a)) for a in table["analysis"]],
        "Term": table.apply(term, axis=1),
        "Effect (95 % CI)": table.apply(effect, axis=1),
        "p": [labels.format_p(p) if np.isfinite(p) else "" for p in table["p_value"]],
        "Reports": [int(n) for n in table["n_obs"]],
        "Note": [note(str(n)) for n in table["note"]],
    })


def nonlinear_section(view: CohortView, *, splines: str = "", dlnm: str = "",
                      sensitivity: bool = False, outcome: str = AUTO,
                      exposures: list[str] | tuple[str, ...] = (),
                      folder: str | Path | None = None) -> NonlinearSection:
    """Fit and draw the requested non-linear and lagged load analyses of one cohort.

    Parameters
    ----------
    view : the cohort (:func:`analysis.reports.load_cohort`).
    splines : ``"COLUMN:DF,..."`` (:func:`analysis.reports.parameters.parse_splines_param`).
    dlnm : ``"COLUMN:MAX_LAG"``, a daily-calendar load (km per day, min, AU) and days.
    sensitivity : draw the sensitivity table of the headline exposure (the first spline
        exposure, else ``acwr_rolling``, else the first exposure).
    outcome : the report's outcome parameter (its default model: LMM for a score, GLMM for
        a flag).
    exposures : the report's modelled exposures; a spline model keeps the others linear.
    folder : the report's take-away folder (figures saved under ``figures/``); None: none.

    Returns
    -------
    :class:`NonlinearSection` (empty when nothing is requested).

    Raises
    ------
    ReportError
        A malformed parameter (one line); a failed fit is a problem line instead.
    """
    spline_request = parse_splines_param(splines)
    lag_request = parse_dlnm_param(dlnm)
    section = NonlinearSection(splines=spline_request, dlnm=lag_request)
    if not (spline_request or lag_request or sensitivity):
        return section
    spec = report_outcome(outcome, view.meta)
    model = spec.default_model if spec.default_model in ("lmm", "glmm") else "lmm"
    base = {"model": model, "outcome": spec.column}
    figures = Path(folder) / FIGURES_DIR if folder is not None else None
    for column, df in spline_request.items():
        _spline_part(section, view, column=column, df=df, base=base, unit=spec.unit,
                     exposures=list(exposures), figures=figures)
    if lag_request is not None:
        _dlnm_part(section, view, column=lag_request[0], max_lag=lag_request[1], base=base,
                   unit=spec.unit, figures=figures)
    if sensitivity:
        _sensitivity_part(section, view, base=base, exposures=list(exposures))
    return section


def _save(section: NonlinearSection, fig: Any, name: str, caption: str,
          figures: Path | None) -> None:
    from analysis.plots import save_figure

    section.figures[name] = fig
    section.captions[name] = caption
    if figures is not None:
        section.files[name] = save_figure(fig, figures, name)


def _spline_part(section: NonlinearSection, view: CohortView, *, column: str, df: int,
                 base: dict[str, Any], unit: str, exposures: list[str], figures: Path | None
                 ) -> None:
    from analysis import labels
    from analysis.models import exposure_response, fit_model
    from analysis.plots_nonlinear import exposure_response_plot

    if column not in view.panel.columns:
        raise ReportError(f"splines: {column!r} is not a panel column")
    fit_exposures = [column, *(e for e in exposures if e != column)]
    try:
        result = fit_model(view.panel, exposures=fit_exposures, splines={column: df}, **base)
    except KneeloadError as error:
        section.problems.append(f"spline on {column}: not fitted: {error.one_line()}")
        return
    curve = exposure_response(result, exposure=column)
    test = result.extra["nonlinearity"][column]
    name = labels.label(column)
    scale = "odds ratio" if "odds_ratio" in curve.columns else unit
    values = view.panel.dropna(subset=[base["outcome"], column])[column]
    fig = exposure_response_plot(curve, values=values, xlabel=labels.axis_label(column),
                                 ylabel=f"{scale} vs reference").figure
    _save(section, fig, f"spline_{column}", labels.caption(
        "exposure_response", exposure=name, df=df,
        reference=_fmt(curve.attrs["reference"])), figures)
    if test["p_value"] is None:
        reading = "ns(x, 1) is a straight line: nothing to test."
    else:
        verdict = ("evidence against a straight line" if test["p_value"] < ALPHA
                   else "no evidence against a straight line")
        reading = (f"Likelihood-ratio test of non-linearity (ML, spline vs linear term): "
                   f"chi-square {_fmt(test['statistic'])} on {test['df']} df, "
                   f"p {labels.format_p(test['p_value'])}: {verdict} at {ALPHA:g}.")
    others = [labels.label(e).lower() for e in fit_exposures[1:]]
    adjusted = f", adjusted for {', '.join(others)}" if others else ""
    section.text.append(
        f"**{markdown_text(name)}** as a natural cubic spline (df {df}; "
        f"{result.n_obs} reports{markdown_text(adjusted)}): {reading}")
    section.problems += [f"spline on {column}: {p}" for p in result.problems]
    keep = np.linspace(0, len(curve) - 1, SUMMARY_CURVE_POINTS).round().astype(int)
    section.curves[column] = {
        "df": df, "model": result.model, "n_obs": result.n_obs,
        "reference": float(curve.attrs["reference"]),
        "curve": {c: [float(v) for v in curve[c].to_numpy()[keep]]
                  for c in ("x", "estimate", "ci_low", "ci_high")},
        "lr_test": {k: (None if test[k] is None else float(test[k]))
                    for k in ("statistic", "p_value", "loglik_spline", "loglik_linear")}
        | {"df": int(test["df"]), "method": str(test["method"])},
    }


def _dlnm_part(section: NonlinearSection, view: CohortView, *, column: str, max_lag: int,
               base: dict[str, Any], unit: str, figures: Path | None) -> None:
    from analysis import labels
    from analysis.models import crossbasis, crosspred, fit_model
    from analysis.plots_nonlinear import (
        exposure_lag_contour,
        exposure_response_plot,
        lag_response_plot,
    )

    if column not in view.daily.columns:
        raise ReportError(f"dlnm: {column!r} is not a column of the daily table "
                          "(e.g. distance_km, duration_min, srpe_au)")
    try:
        cb = crossbasis(view.daily, view.panel, column=column, max_lag=max_lag,
                        var_df=DLNM_VAR_DF, lag_df=DLNM_LAG_DF)
        result = fit_model(pd.concat([view.panel, cb.frame], axis=1), exposures=cb.names,
                           **base)
    except KneeloadError as error:
        section.problems.append(f"DLNM of {column}: not fitted: {error.one_line()}")
        return
    loads = pd.to_numeric(view.daily[column], errors="coerce").to_numpy(float)
    running = loads[np.isfinite(loads) & (loads > 0)]
    at = float(np.round(np.quantile(running, DLNM_AT_QUANTILE), 1))
    grid = np.linspace(0.0, float(np.quantile(running, DLNM_GRID_QUANTILE)), DLNM_GRID_POINTS)
    pred = crosspred(cb, result, at=[*grid, at])
    surface, cumulative = pred["surface"], pred["cumulative"]
    lag_rows = surface.loc[np.isclose(surface["x"], at)]
    on_grid = surface.loc[np.isin(surface["x"], grid)]
    cum_grid = cumulative.loc[np.isin(cumulative["x"], grid)].reset_index(drop=True)
    cum_grid.attrs["reference"] = 0.0
    name, axis = labels.label(column), labels.axis_label(column)
    load_unit = labels.unit(column)
    scale = "odds ratio" if "odds_ratio" in surface.columns else unit
    fields = {"load": name, "unit": load_unit, "at": _fmt(at), "max_lag": max_lag}
    fig = lag_response_plot(lag_rows, ylabel=f"{scale} vs a rest day").figure
    _save(section, fig, f"dlnm_{column}_lag", labels.caption("lag_response", **fields),
          figures)
    fig = exposure_response_plot(cum_grid, xlabel=f"{axis} on each of lags 0-{max_lag}",
                                 ylabel=f"cumulative {scale} vs rest").figure
    _save(section, fig, f"dlnm_{column}_cumulative",
          labels.caption("lag_cumulative", **fields), figures)
    fig = exposure_lag_contour(on_grid, xlabel=axis, label=scale).figure
    _save(section, fig, f"dlnm_{column}_surface", labels.caption("lag_surface", **fields),
          figures)
    at_row = cumulative.loc[np.isclose(cumulative["x"], at)].iloc[0]
    est_cols = (("odds_ratio", "or_ci_low", "or_ci_high") if "odds_ratio" in at_row
                else ("estimate", "ci_low", "ci_high"))
    effect = labels.interval_texts(*(at_row[c] for c in est_cols),
                                   ratio="odds_ratio" in at_row)
    section.text.append(
        f"**Distributed-lag model** of {markdown_text(name.lower())} over lags 0-{max_lag} "
        f"days ({result.n_obs} reports; cross-basis ns(load, {DLNM_VAR_DF}) x ns(lag, "
        f"{DLNM_LAG_DF})): {_fmt(at)} {load_unit} on every day of the window vs rest days, "
        f"cumulative effect {effect['text']} {scale} (95 % CI {effect['low_text']} to "
        f"{effect['high_text']}).")
    section.problems += [f"DLNM of {column}: {p}" for p in result.problems]
    section.lag = {
        "column": column, "max_lag": max_lag, "var_df": DLNM_VAR_DF, "lag_df": DLNM_LAG_DF,
        "model": result.model, "n_obs": result.n_obs, "reference": 0.0, "at": at,
        "lag_response": {c: [float(v) for v in lag_rows[c]]
                         for c in ("lag", "estimate", "ci_low", "ci_high")},
        "cumulative": {c: [float(v) for v in cum_grid[c]]
                       for c in ("x", "estimate", "ci_low", "ci_high")},
        "cumulative_at": {c: float(at_row[c]) for c in ("estimate", "ci_low", "ci_high")},
    }


def _sensitivity_part(section: NonlinearSection, view: CohortView, *, base: dict[str, Any],
                      exposures: list[str]) -> None:
    from analysis.models import sensitivity

    spline_first = list(section.splines)
    exposure = (spline_first[0] if spline_first
                else SENSITIVITY_EXPOSURE if SENSITIVITY_EXPOSURE in view.panel.columns
                else exposures[0] if exposures else None)
    if exposure is None:
        section.problems.append("sensitivity: no exposure to analyse")
        return
    try:
        table = sensitivity(view.panel, exposure=exposure, daily=view.daily,
                            spline_df=section.splines.get(exposure, 3),
                            exposure_lag_days=int(view.meta.get("exposure_lag_days", 7)),
                            **base)
    except KneeloadError as error:
        section.problems.append(f"sensitivity of {exposure}: not done: {error.one_line()}")
        return
    section.sensitivity_raw = table
    section.sensitivity = sensitivity_display(table)


def nonlinear_summary(section: NonlinearSection) -> dict[str, Any]:
    """The summary.json block of the section: aggregate numbers only, no identifiers.

    Returns
    -------
    ``{"nonlinear": {"splines": {exposure: {df, model, n_obs, reference, curve: {x,
    estimate, ci_low, ci_high}, lr_test: {statistic, df, p_value, loglik_spline,
    loglik_linear, method}}}, "dlnm": {column, max_lag, var_df, lag_df, model, n_obs,
    reference, at, lag_response: {lag, estimate, ci_low, ci_high}, cumulative: {x, ...},
    cumulative_at: {estimate, ci_low, ci_high}} or None, "sensitivity": [rows of
    :data:`analysis.models.SENSITIVITY_COLUMNS`] or None, "problems": [str]}}``; an empty
    dict when nothing was requested. Estimates are on the model's scale (NRS points, or
    log-odds for a binomial model).
    """
    if not section.requested:
        return {}
    rows = None
    if section.sensitivity_raw is not None:
        rows = [{k: (None if isinstance(v, float) and not np.isfinite(v) else
                     v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
                for row in section.sensitivity_raw.to_dict(orient="records")]
    return {"nonlinear": {"splines": section.curves, "dlnm": section.lag or None,
                          "sensitivity": rows, "problems": list(section.problems)}}


__all__ = [
    "DLNM_AT_QUANTILE",
    "DLNM_LAG_DF",
    "DLNM_VAR_DF",
    "NonlinearSection",
    "nonlinear_section",
    "nonlinear_summary",
    "sensitivity_display",
]
