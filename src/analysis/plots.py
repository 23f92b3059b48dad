"""Seaborn figures. Each takes its data first and ``ax=None``, and returns the Axes.

Figures use fixed sizes and no randomness, so that notebooks re-render identically. Figures
of the outcome take ``outcome=`` (an :class:`analysis.outcomes.OutcomeSpec`; default NRS
knee pain) for the column, its range and its labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from scipy import stats

from analysis.effects import ODDS_STEP_COLUMNS
from analysis.outcomes import FALLBACK_OUTCOME, OUTCOME_SPECS, OutcomeSpec

FIGSIZE = (7.0, 3.5)  # inches
NIELSEN_ORDER = ("<10%", "10-30%", ">30%")  # jump_category levels (Nielsen et al. 2014)
ODDS_TICKS = (0.25, 0.5, 0.67, 0.8, 1, 1.25, 1.5, 2, 3, 5, 10)  # plain labels on a log axis
#: Power a study is usually designed for, drawn as a reference line: 80 % (Cohen 1988,
#: Statistical Power Analysis for the Behavioral Sciences, 2nd ed., section 2.4).
POWER_TARGET = 0.8


#: The outcome of figures called without one (every figure drew NRS knee pain before).
NRS = OUTCOME_SPECS[FALLBACK_OUTCOME]


def _outcome_values(panel: pd.DataFrame, spec: OutcomeSpec) -> pd.DataFrame:
    """The panel with ``_y``: the outcome column as float (a flag as 0/1), rows without it
    dropped."""
    data = panel.dropna(subset=[spec.column])
    return data.assign(_y=data[spec.column].astype(float))


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    _, new_ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    return new_ax


def weekly_km(daily: pd.DataFrame) -> pd.DataFrame:
    """Weekly running distance per runner (km, weeks starting Monday) from the daily calendar
    (column ``distance_km``: km run that day, 0 on rest days)."""
    weeks = daily.assign(week=daily["date"].dt.to_period("W-SUN").dt.start_time)
    return (
        weeks.groupby(["runner_id", "week"], sort=True)["distance_km"].sum(min_count=1)
        .rename("weekly_km").reset_index()
    )


def weekly_mileage(daily: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Distribution of weekly km across runners over calendar weeks (median and IQR band)."""
    ax = _axes(ax)
    weekly = weekly_km(daily)
    sns.lineplot(data=weekly, x="week", y="weekly_km", estimator="median",
                 errorbar=("pi", 50), ax=ax, color="tab:blue")
    ax.set(xlabel="week", ylabel="km per week", title="Weekly mileage (median, IQR)")
    ax.tick_params(axis="x", labelrotation=30)
    return ax


def pain_over_time(panel: pd.DataFrame, *, outcome: OutcomeSpec = NRS,
                   ax: Axes | None = None) -> Axes:
    """Mean outcome per report week with a 95 % confidence band: knee pain (NRS 0-10) by
    default, the share of reports with the flag for a 0/1 outcome."""
    ax = _axes(ax)
    data = _outcome_values(panel, outcome)
    weekly = data.assign(week=data["date"].dt.to_period("W-SUN").dt.start_time)
    sns.lineplot(data=weekly, x="week", y="_y", errorbar=("ci", 95), n_boot=200, seed=0,
                 ax=ax, color="tab:red")
    ax.set(xlabel="week", ylabel=outcome.mean_label, title=f"{outcome.label} over time",
           ylim=(outcome.low, outcome.high))
    ax.tick_params(axis="x", labelrotation=30)
    return ax


def exposure_vs_pain(
    panel: pd.DataFrame, exposure: str, *, bins: int = 6, outcome: OutcomeSpec = NRS,
    ax: Axes | None = None
) -> Axes:
    """Mean outcome (95 % CI) in quantile bins of one exposure, or by category: pain (NRS
    0-10) by default, the share with the flag for a 0/1 outcome."""
    ax = _axes(ax)
    data = _outcome_values(panel.dropna(subset=[exposure]), outcome)
    if isinstance(data[exposure].dtype, pd.CategoricalDtype) or data[exposure].dtype == bool:
        sns.pointplot(data=data, x=exposure, y="_y", errorbar=("ci", 95), n_boot=200, seed=0,
                      ax=ax, color="tab:purple", linestyle="none")
    else:
        binned = pd.qcut(data[exposure], q=bins, duplicates="drop")
        data = data.assign(bin=binned.map(lambda i: f"{i.left:.2g} to {i.right:.2g}")
                           .astype(str))
        order = [f"{i.left:.2g} to {i.right:.2g}" for i in binned.cat.categories]
        sns.pointplot(data=data, x="bin", y="_y", order=order, errorbar=("ci", 95),
                      n_boot=200, seed=0, ax=ax, color="tab:purple", linestyle="none")
        ax.tick_params(axis="x", labelrotation=30)
    ax.set(xlabel=exposure, ylabel=outcome.mean_label,
           title=f"{outcome.label} by {exposure} (mean, 95 % CI)")
    return ax


def jump_bands_vs_pain(panel: pd.DataFrame, *, outcome: OutcomeSpec = NRS,
                       ax: Axes | None = None) -> Axes:
    """Mean outcome (pain by default, or the share with the flag) in the Nielsen
    week-over-week mileage-change bands (<10 %, 10-30 %, >30 %)."""
    ax = _axes(ax)
    data = _outcome_values(panel.dropna(subset=["jump_category"]), outcome)
    data = data.assign(jump_category=data["jump_category"].astype(str))
    order = [band for band in NIELSEN_ORDER if band in set(data["jump_category"])]
    sns.pointplot(data=data, x="jump_category", y="_y", order=order, errorbar=("ci", 95),
                  n_boot=200, seed=0, ax=ax, color="tab:orange", linestyle="none")
    counts = data["jump_category"].value_counts()
    ax.set_xticks(range(len(order)), [f"{b}\n(n={counts.get(b, 0)})" for b in order])
    ax.set(xlabel="week-over-week mileage change (Nielsen et al. 2014)",
           ylabel=outcome.mean_label, title=f"{outcome.label} by mileage-jump band")
    return ax


def runner_timeline(
    daily: pd.DataFrame, panel: pd.DataFrame, runner_id: str, *, outcome: OutcomeSpec = NRS,
    ax: Axes | None = None
) -> Axes:
    """One runner: daily km (bars), rolling 7-day km (line), outcome reports (right axis:
    pain by default), and dashed lines on the days a new shoe first appears in the log (when
    ``shoe_id`` is known).
    """
    ax = _axes(ax)
    days = daily[daily["runner_id"] == runner_id].sort_values("date")
    reports = panel[panel["runner_id"] == runner_id].sort_values("date")
    if "shoe_id" in days:
        first_use = days.dropna(subset=["shoe_id"]).groupby("shoe_id")["date"].min()
        for shoe, day in first_use.sort_values().iloc[1:].items():  # the first is no change
            ax.axvline(day, color="tab:brown", linestyle="--", linewidth=1)
            ax.annotate(str(shoe), (day, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                        va="top", ha="right", fontsize="x-small", color="tab:brown")
    ax.bar(days["date"], days["distance_km"].fillna(0.0), width=1.0, color="tab:gray", alpha=0.6,
           label="daily km")
    ax.plot(days["date"], days["distance_km"].rolling(7, min_periods=7).sum() / 7,
            color="tab:blue", label="7-day mean km/day")
    right = ax.twinx()
    right.plot(reports["date"], reports[outcome.column].astype(float), "o-", color="tab:red",
               label=outcome.axis_label)
    right.set(ylim=(outcome.low, outcome.high), ylabel=outcome.axis_label)
    ax.set(xlabel="date", ylabel="km", title=f"Runner {runner_id}")
    ax.tick_params(axis="x", labelrotation=30)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize="small")
    return ax


def share_missing(panel: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Share of panel rows (0-1) with a missing value, per column."""
    return panel[columns].isna().mean().rename("share_missing")


# --- model figures ---


def forest_plot(effects: pd.DataFrame, *, null: float | None = None, xlabel: str | None = None,
                outcome: OutcomeSpec | None = None, ax: Axes | None = None) -> Axes:
    """Forest plot: one row per effect with its 95 % interval, one colour per model.

    Parameters
    ----------
    effects
        ``term``, ``estimate``, ``ci_low``, ``ci_high``; optional ``step_label`` (reading
        unit, e.g. "per +10 % week-over-week mileage", as :func:`analysis.reports.effects_table`
        gives) and ``model`` (several models side by side). A raw
        :class:`analysis.models.ModelResult` ``.table`` works too: its reading-unit columns
        (``estimate_step`` ..., odds ratios per step for binomial models) are drawn, and the
        intercept is left out.
    null
        The no-effect line: 0 for NRS differences, 1 for odds ratios (then a log axis).
        Default: 1 when the table holds odds ratios, else 0.
    xlabel
        Axis label; default from ``outcome`` (:attr:`analysis.outcomes.OutcomeSpec.
        effect_label`), or generic odds ratios / NRS points without one.
    """
    ax = _axes(ax)
    rows = effects[effects["term"] != "Intercept"]
    if "estimate_step" in rows.columns:  # a ModelResult table: read per step, as labelled
        odds = "odds_ratio_step" in rows.columns
        names = ODDS_STEP_COLUMNS if odds else ("estimate_step", "ci_low_step", "ci_high_step")
        rows = rows.assign(estimate=rows[names[0]], ci_low=rows[names[1]],
                           ci_high=rows[names[2]])
        null = (1.0 if odds else 0.0) if null is None else null
    elif "odds_ratio" in rows.columns:  # a table of odds ratios per unit
        rows = rows.assign(estimate=rows["odds_ratio"], ci_low=rows["or_ci_low"],
                           ci_high=rows["or_ci_high"])
        null = 1.0 if null is None else null
    null = 0.0 if null is None else null
    rows = rows.assign(
        label=rows["term"].astype(str) + ("\n" + rows["step_label"].fillna("per unit")
                                          if "step_label" in rows else ""),
        model=rows["model"] if "model" in rows else "",
    )
    labels = list(dict.fromkeys(rows["label"]))
    models = list(dict.fromkeys(rows["model"]))
    for k, (model, group) in enumerate(rows.groupby("model", sort=False)):
        dodge = 0.15 * (k - (len(models) - 1) / 2)
        y = np.array([labels.index(label) for label in group["label"]]) + dodge
        ax.errorbar(group["estimate"], y, xerr=[group["estimate"] - group["ci_low"],
                                                group["ci_high"] - group["estimate"]],
                    fmt="o", capsize=3, label=model or None,
                    color=None if len(models) > 1 else "black",
                    ecolor=None if len(models) > 1 else "tab:blue")
    ax.axvline(null, color="tab:gray", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    ax.invert_yaxis()
    if null == 1.0:  # ratios are symmetric on a log axis; keep plain tick labels
        ax.set_xscale("log")
        low, high = ax.get_xlim()
        ticks = [t for t in ODDS_TICKS if low <= t <= high]
        ax.minorticks_off()
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    if len(models) > 1:
        ax.legend(fontsize="small")
    default = outcome.effect_label if outcome is not None else (
        "odds ratio (95 % CI)" if null == 1.0 else "change in pain (NRS points, 95 % CI)")
    ax.set(xlabel=xlabel or default,
           title="Fixed effects (95 % CI)")
    return ax


def predicted_pain(result: object, panel: pd.DataFrame, *, exposure: str,
                   n_points: int = 50, outcome: OutcomeSpec | None = None,
                   ax: Axes | None = None) -> Axes:
    """Predicted pain (NRS, or probability of pain for binomial models) against one exposure.

    The curve is :func:`analysis.models.predict.predicted_curve`: the other fixed-effect
    columns at their means in the modelling rows (for dummies: the sample shares), the band
    the pointwise Wald 95 % interval from the fixed-effect covariance, the x range the
    exposure's 2.5-97.5 % quantiles; with within-between centering the within-runner effect.
    A linear model can predict outside the outcome's range (pain below 0 or above 10): line
    and band are then clipped to the range, and a note on the figure gives the unclipped
    predictions (the report also lists them among the model's problems,
    :func:`analysis.models.predict.prediction_problems`).
    """
    from analysis.models.predict import outcome_range, predicted_curve

    ax = _axes(ax)
    res: Any = result
    curve = predicted_curve(res, panel, exposure=exposure, n_points=n_points)
    bounds = outcome_range(res)
    grid = curve["x"].to_numpy()
    eta, lo, hi = (curve[c].to_numpy() for c in ("predicted", "ci_low", "ci_high"))
    if outcome is not None:
        ylabel = (f"predicted {outcome.axis_label}" if res.model == "lmm"
                  else f"predicted P({outcome.noun})")
    else:
        ylabel = "predicted pain (NRS 0-10)" if res.model == "lmm" else \
            f"predicted P({res.outcome})"
    if bounds is not None:
        low, high = bounds
        if eta.min() < low or eta.max() > high:
            ax.annotate(f"prediction {eta.min():.1f} to {eta.max():.1f} runs outside "
                        f"{low:g}-{high:g}: clipped", (0.02, 0.04), xycoords="axes fraction",
                        fontsize="small", color="tab:red")
        elif lo.min() < low or hi.max() > high:
            ax.annotate(f"95 % band clipped at {low:g}-{high:g}", (0.02, 0.04),
                        xycoords="axes fraction", fontsize="small", color="tab:gray")
        eta, lo, hi = (np.clip(v, low, high) for v in (eta, lo, hi))
    ax.plot(grid, eta, color="tab:blue")
    ax.fill_between(grid, lo, hi, color="tab:blue", alpha=0.2, linewidth=0)
    ax.set(xlabel=exposure, ylabel=ylabel,
           title=f"{res.model.upper()}: prediction with 95 % CI (others at their means)")
    return ax


def caterpillar(per_runner: pd.DataFrame, *, term: str = "Intercept",
                ax: Axes | None = None) -> Axes:
    """Caterpillar plot of one random effect per runner with 95 % intervals.

    ``per_runner`` has ``term`` and ``<term>_se`` columns (conditional modes and their
    conditional SDs, e.g. :func:`analysis.models.conditional_modes`); runners are sorted.
    """
    from analysis.models.result import Z_95

    ax = _axes(ax)
    data = per_runner.sort_values(term, ignore_index=True)
    ax.errorbar(np.arange(len(data)), data[term], yerr=Z_95 * data[f"{term}_se"], fmt="o",
                markersize=3, color="tab:purple", ecolor="tab:purple", alpha=0.7)
    ax.axhline(0, color="tab:gray", linestyle="--", linewidth=1)
    ax.set_xticks([])
    ax.set(xlabel=f"runners (sorted, n = {len(data)})",
           ylabel=f"random effect: {term}", title="Per-runner random effects (95 % intervals)")
    return ax


def residual_diagnostics(per_report: pd.DataFrame, *, bins: int = 20,
                         outcome: OutcomeSpec = NRS,
                         axes: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """Three residual checks of an LMM: vs fitted (with binned means), Q-Q, histogram.

    ``per_report`` has ``fitted`` and ``residual`` (in the outcome's unit, NRS points by
    default, conditional on the runner's random effects).
    """
    unit = outcome.unit
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(2 * FIGSIZE[0], FIGSIZE[1]), layout="constrained")
    fitted = per_report["fitted"].to_numpy(float)
    resid = per_report["residual"].to_numpy(float)
    a, b, c = axes[0], axes[1], axes[2]
    a.scatter(fitted, resid, s=6, alpha=0.4, color="tab:blue")
    edges = np.unique(np.quantile(fitted, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, fitted, side="right") - 1, 0, len(edges) - 2)
    means = pd.Series(resid).groupby(which).mean()
    mids = (edges[:-1] + edges[1:]) / 2
    a.plot(mids[means.index], means.to_numpy(), color="tab:red", marker="o", markersize=3)
    a.axhline(0, color="tab:gray", linestyle="--", linewidth=1)
    a.set(xlabel=f"fitted {outcome.noun} ({unit})", ylabel=f"residual ({unit})",
          title="Residuals vs fitted (red: binned means)")
    ordered = np.sort(resid)
    n = len(ordered)
    theory = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    b.scatter(theory, ordered, s=6, alpha=0.4, color="tab:blue")
    if n > 1:
        b.plot(theory, theory * ordered.std(ddof=1) + ordered.mean(), color="tab:red")
    b.set(xlabel="normal quantile", ylabel=f"residual ({unit})", title="Normal Q-Q")
    sns.histplot(resid, ax=c, bins=30, color="tab:blue")
    c.set(xlabel=f"residual ({unit})", title="Residual distribution")
    return axes


def power_curve_plot(power: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Power (with Wilson 95 % intervals) against runners, one line per follow-up length.

    ``power`` is the output of :func:`analysis.power.power_curve` (one term).
    """
    ax = _axes(ax)
    for (term, weeks), part in power.groupby(["term", "weeks"], sort=True):
        part = part.sort_values("runners")
        line = ax.plot(part["runners"], part["power"], marker="o",
                       label=f"{term}, {weeks} weeks")[0]
        ax.fill_between(part["runners"], part["power_ci_low"], part["power_ci_high"],
                        color=line.get_color(), alpha=0.15, linewidth=0)
    ax.axhline(POWER_TARGET, color="tab:gray", linestyle="--", linewidth=1)
    ax.set(xlabel="runners", ylabel="power", ylim=(0, 1.02),
           title="Simulation-based power (95 % intervals)")
    ax.legend(frameon=False)
    return ax
