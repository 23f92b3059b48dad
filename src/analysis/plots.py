"""Seaborn figures. Each takes its data first and ``ax=None``, and returns the Axes.

Figures use fixed sizes and no randomness, so that notebooks re-render identically. Figures
of the outcome take ``outcome=`` (an :class:`analysis.outcomes.OutcomeSpec`; default NRS
knee pain) for the column, its range and its labels. Axis labels, tick labels and term
names come from :mod:`analysis.labels` (no raw column name on a figure); captions, which
say what each band and whisker is, from :func:`analysis.labels.caption`.

One look for every figure (:func:`apply_theme`): seaborn's ``ticks`` style, the
colour-blind-safe ``colorblind`` palette (Okabe-Ito-like; Wong 2011, Nat Methods 8:441) and
fonts of at least :data:`MIN_FONT_PT` at print size, for figures :data:`PAGE_WIDTH_IN` wide
(a journal's text width). :func:`save_figure` writes SVG and PNG at 300 dpi.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import FuncFormatter, Locator
from scipy import stats

from analysis import labels
from analysis.defaults import POWER_TARGET  # the reference line of power_curve_plot
from analysis.effects import null_effect, step_value_columns
from analysis.outcomes import FALLBACK_OUTCOME, OUTCOME_SPECS, OutcomeSpec
from analysis.outputs import temporary_name
from analysis.raster import svg_to_png, text_fonts

#: Text width of a journal page (inches; A4 with 2.5 cm margins is 6.3, US letter with 1 in
#: margins 6.5): figures are drawn at this width, so their fonts are the printed size.
PAGE_WIDTH_IN = 6.5
#: Smallest font on any figure at print size (points; most journals ask for >= 8-9 pt).
MIN_FONT_PT = 9.0
#: Figure panels per row in multi-panel figures (two keep 9 pt text legible at page width).
PANELS_PER_ROW = 2
#: Height of one panel row (inches).
PANEL_HEIGHT_IN = 2.8
#: Resolution of saved raster figures (dots per inch; the usual journal minimum for line art
#: with text is 300).
SAVE_DPI = 300
#: Salt of the ids in saved SVGs (matplotlib draws them from uuid4 when unset, so the same
#: figure would give different files and reports).
SVG_HASH_SALT = "kneeload"
#: seaborn palette: colour-blind safe (seaborn's "colorblind", after Wong 2011).
PALETTE = "colorblind"
FIGSIZE = (PAGE_WIDTH_IN, 3.2)  # inches: one panel at page width
NIELSEN_ORDER = ("<10%", "10-30%", ">30%")  # jump_category levels (Nielsen et al. 2014)
#: Plain labels on a log axis, each with its reciprocal (0.8 and 1.25, 0.67 and 1.5 ...).
ODDS_TICKS = (0.05, 0.1, 0.2, 0.25, 0.33, 0.5, 0.67, 0.8, 0.9, 1, 1.11, 1.25, 1.5, 2, 3, 4,
              5, 10, 20)


#: The outcome of figures called without one (every figure drew NRS knee pain before).
NRS = OUTCOME_SPECS[FALLBACK_OUTCOME]

#: Matplotlib settings of :func:`apply_theme` (every text size >= MIN_FONT_PT).
#: Tick labels as plain numbers: no "1e-5" offset or multiplier above an axis (a nearly
#: constant cohort's residuals got one), positional from 1e-7 to 1e9.
PLAIN_TICKS_RC = {"axes.formatter.useoffset": False, "axes.formatter.limits": (-7, 9)}
THEME_RC = {
    "font.size": MIN_FONT_PT, "axes.titlesize": MIN_FONT_PT + 1,
    "axes.labelsize": MIN_FONT_PT, "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT, "figure.titlesize": MIN_FONT_PT + 1,
    "figure.dpi": 100, "savefig.dpi": SAVE_DPI, "svg.fonttype": "none",
    "axes.spines.top": False, "axes.spines.right": False, **PLAIN_TICKS_RC,
}


def apply_theme() -> None:
    """Set the one theme of kneeload's figures (seaborn ``ticks``, colour-blind palette,
    fonts >= :data:`MIN_FONT_PT`). Call once before drawing (the report notebook does)."""
    sns.set_theme(context="paper", style="ticks", palette=PALETTE, rc=THEME_RC)


def colour(k: int) -> Any:
    """The k-th colour of the theme's colour-blind-safe palette."""
    return sns.color_palette(PALETTE)[k % 10]


def panel_grid(n_panels: int, *, per_row: int = PANELS_PER_ROW,
               height: float = PANEL_HEIGHT_IN) -> tuple[Figure, list[Axes]]:
    """A page-wide figure with ``n_panels`` axes, ``per_row`` per row (unused cells hidden).

    Returns the Figure and its first ``n_panels`` Axes in reading order.
    """
    rows = max(1, math.ceil(n_panels / per_row))
    cols = min(per_row, max(1, n_panels))
    fig, grid = plt.subplots(rows, cols, figsize=(PAGE_WIDTH_IN, height * rows),
                             layout="constrained", squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n_panels:]:
        ax.set_axis_off()
    return fig, axes[:n_panels]


#: How :func:`save_figure` makes the PNG: ``svg`` rasterises the SVG just written, ``agg``
#: draws the figure again with matplotlib's Agg.
RASTERS = ("svg", "agg")


def save_figure(fig: Figure, folder: str | Path, name: str, *, raster: str = "svg",
                salt: str = SVG_HASH_SALT) -> dict[str, Path]:
    """Write ``fig`` (the Figure that is displayed: it is not drawn again from data) as
    ``<folder>/<name>.svg`` (text kept as text) and ``<name>.png`` at :data:`SAVE_DPI`;
    returns the paths by format. The folder is created; each file is written under a
    temporary name and renamed into place, so a reader never sees half a figure.

    ``raster``: ``"svg"`` rasterises the SVG just written (:func:`analysis.raster.svg_to_png`;
    Agg where libvips is missing), ``"agg"`` draws the PNG with matplotlib's Agg. ``salt``:
    the SVG's id salt (the same figure gives the same bytes).
    """
    if raster not in RASTERS:
        raise ValueError(f"raster must be one of {RASTERS}, not {raster!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {fmt: folder / f"{name}.{fmt}" for fmt in ("svg", "png")}
    tmp = {fmt: path.with_name(temporary_name(path.name)) for fmt, path in out.items()}
    try:
        with plt.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
            fig.savefig(tmp["svg"], format="svg", dpi=SAVE_DPI, metadata={"Date": None})
            # the PNG is the SVG rasterised (analysis.raster: about 0.04 s instead of 0.15 s
            # a figure) where libvips can; else Agg draws it
            if not (raster == "svg" and svg_to_png(tmp["svg"], tmp["png"], dpi=SAVE_DPI,
                                                   fonts=text_fonts(fig))):
                _draw_png(fig, tmp["png"])
        for fmt, path in out.items():
            tmp[fmt].replace(path)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    return out


def _draw_png(fig: Figure, path: Path) -> None:
    """The PNG drawn by Agg at :data:`SAVE_DPI`, at the positions the SVG's draw laid out.

    The layout engine (constrained layout) runs at every savefig and is about half of a
    draw; it is switched off for the PNG and restored after (0.58 -> 0.23 s per figure on
    the time-to-event curve, load 4 on 2 cores; bench/bench_time_to_event_report.py).
    """
    engine = fig.get_layout_engine()
    try:
        if engine is not None:
            fig.set_layout_engine("none")
        # no "Software" entry: an unchanged figure gives the same bytes on any matplotlib
        fig.savefig(path, format="png", dpi=SAVE_DPI, metadata={"Software": None})
    finally:
        if engine is not None:
            fig.set_layout_engine(engine)


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


def _date_axis(ax: Axes) -> None:
    """Concise month ticks on a date axis (no rotated ISO dates running into each other)."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


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
                 errorbar=("pi", 50), ax=ax, color=colour(0))
    ax.set(xlabel="Week", ylabel=labels.axis_label("weekly_km"),
           title="Weekly distance (median, IQR)")
    _date_axis(ax)
    return ax


def pain_over_time(panel: pd.DataFrame, *, outcome: OutcomeSpec = NRS,
                   ax: Axes | None = None) -> Axes:
    """Mean outcome per report week with a 95 % confidence band: knee pain (NRS 0-10) by
    default, the share of reports with the flag for a 0/1 outcome."""
    ax = _axes(ax)
    data = _outcome_values(panel, outcome)
    weekly = data.assign(week=data["date"].dt.to_period("W-SUN").dt.start_time)
    sns.lineplot(data=weekly, x="week", y="_y", errorbar=("ci", 95), n_boot=200, seed=0,
                 ax=ax, color=colour(3))
    ax.set(xlabel="Week", ylabel=labels.sentence(outcome.mean_label),
           title=f"{outcome.label} over time (mean, 95 % CI)",
           ylim=(outcome.low, outcome.high))
    _date_axis(ax)
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
                      ax=ax, color=colour(4), linestyle="none")
    else:
        binned, order = quantile_bins(data[exposure], bins=bins,
                                      scale=labels.display_scale(exposure))
        sns.pointplot(data=data.assign(bin=binned), x="bin", y="_y", order=order,
                      errorbar=("ci", 95), n_boot=200, seed=0, ax=ax, color=colour(4),
                      linestyle="none")
        ax.tick_params(axis="x", labelrotation=30)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    ax.set(xlabel=labels.axis_label(exposure), ylabel=labels.sentence(outcome.mean_label),
           title=f"By {labels.label(exposure).lower()}")
    return ax


def quantile_bins(values: pd.Series, *, bins: int = 6, scale: float = 1.0
                  ) -> tuple[pd.Series, list[str]]:
    """Quantile bins of ``values`` labelled in display units (``values x scale``), with
    :func:`analysis.labels.format_number` (no scientific notation) and the observed range of
    each bin (``"120 to 220"``; the lowest bin starts at the smallest value, not at pandas'
    widened edge).

    Returns
    -------
    The bin label of each value (a string Series, same index) and the labels in order.
    """
    binned = pd.qcut(values, q=bins, duplicates="drop")
    low = values.groupby(binned, observed=False).min()
    high = values.groupby(binned, observed=False).max()
    def name(lo: float, hi: float) -> str:
        a, b = labels.format_number(lo * scale), labels.format_number(hi * scale)
        return a if a == b else f"{a} to {b}"

    names = {cat: name(lo, hi)
             for cat, lo, hi in zip(binned.cat.categories, low, high, strict=True)}
    order = list(dict.fromkeys(names[c] for c in binned.cat.categories))
    return binned.map(names).astype(str), order


def jump_bands_vs_pain(panel: pd.DataFrame, *, outcome: OutcomeSpec = NRS,
                       ax: Axes | None = None) -> Axes:
    """Mean outcome (pain by default, or the share with the flag) in the Nielsen
    week-over-week mileage-change bands (<10 %, 10-30 %, >30 %)."""
    ax = _axes(ax)
    data = _outcome_values(panel.dropna(subset=["jump_category"]), outcome)
    data = data.assign(jump_category=data["jump_category"].astype(str))
    order = [band for band in NIELSEN_ORDER if band in set(data["jump_category"])]
    sns.pointplot(data=data, x="jump_category", y="_y", order=order, errorbar=("ci", 95),
                  n_boot=200, seed=0, ax=ax, color=colour(1), linestyle="none")
    counts = data["jump_category"].value_counts()
    ax.set_xticks(range(len(order)), [f"{b.replace('%', ' %')}\n(n = {counts.get(b, 0)})"
                                      for b in order])
    ax.set(xlabel="Week-over-week mileage change band",
           ylabel=labels.sentence(outcome.mean_label),
           title="By mileage-change band (Nielsen 2014)")
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
            ax.axvline(day, color=colour(5), linestyle="--", linewidth=1)
            ax.annotate(str(shoe), (day, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                        va="top", ha="right", fontsize=MIN_FONT_PT, color=colour(5))
    ax.bar(days["date"], days["distance_km"].fillna(0.0), width=1.0, color="0.5", alpha=0.6,
           label="daily km")
    ax.plot(days["date"], days["distance_km"].rolling(7, min_periods=7).sum() / 7,
            color=colour(0), label="7-day mean km/day")
    right = ax.twinx()
    right.plot(reports["date"], reports[outcome.column].astype(float), "o-", color=colour(3),
               label=outcome.axis_label)
    right.set(ylim=(outcome.low, outcome.high), ylabel=outcome.axis_label)
    ax.set(xlabel="date", ylabel="km", title=f"Runner {runner_id}")
    ax.tick_params(axis="x", labelrotation=30)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize=MIN_FONT_PT)
    return ax


def share_missing(panel: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Share of panel rows (0-1) with a missing value, per column."""
    return panel[columns].isna().mean().rename("share_missing")


# --- model figures ---


def forest_figure_size(n_terms: int) -> tuple[float, float]:
    """Page-wide size of a forest plot of ``n_terms`` effects (inches)."""
    return (PAGE_WIDTH_IN, 0.9 + 0.55 * max(1, n_terms))


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
        names = step_value_columns(odds)
        rows = rows.assign(estimate=rows[names[0]], ci_low=rows[names[1]],
                           ci_high=rows[names[2]])
        null = null_effect(odds) if null is None else null
    elif "odds_ratio" in rows.columns:  # a table of odds ratios per unit
        rows = rows.assign(estimate=rows["odds_ratio"], ci_low=rows["or_ci_low"],
                           ci_high=rows["or_ci_high"])
        null = null_effect(odds=True) if null is None else null
    null = null_effect(odds=False) if null is None else null
    ratio = null == null_effect(odds=True)
    rows = rows.assign(
        label=[f"{labels.term_label(t)}\n({labels.step_text(t)})" for t in rows["term"]],
        model=rows["model"] if "model" in rows else "",
    )
    ylabels = list(dict.fromkeys(rows["label"]))
    models = list(dict.fromkeys(rows["model"]))
    for k, (model, group) in enumerate(rows.groupby("model", sort=False)):
        dodge = 0.15 * (k - (len(models) - 1) / 2)
        y = np.array([ylabels.index(label) for label in group["label"]]) + dodge
        ax.errorbar(group["estimate"], y, xerr=[group["estimate"] - group["ci_low"],
                                                group["ci_high"] - group["estimate"]],
                    fmt="o", capsize=3, label=model or None,
                    color=colour(k) if len(models) > 1 else "black",
                    ecolor=colour(k) if len(models) > 1 else colour(0))
    ax.axvline(null, color="0.5", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(ylabels)), ylabels)
    ax.invert_yaxis()
    if ratio:  # ratios are symmetric on a log axis; keep plain tick labels
        ratio_axis(ax)
    if len(models) > 1:
        ax.legend()
    default = outcome.effect_label if outcome is not None else (
        "odds ratio (95 % CI)" if ratio else "change in pain (NRS points, 95 % CI)")
    ax.set(xlabel=labels.sentence(xlabel or default), title="Fixed effects (95 % CI)")
    return ax


#: Width of a digit or point of a tick label, as a share of the font size (DejaVu Sans
#: digits are 0.636 em wide; rounded up).
CHAR_EM = 0.65
#: Space kept between two tick labels (points).
TICK_PAD_PT = 6.0


def odds_ticks(low: float, high: float, *, width_pt: float, font_pt: float = MIN_FONT_PT,
               candidates: Sequence[float] = ODDS_TICKS) -> list[float]:
    """Plain odds-ratio ticks inside ``[low, high]`` whose labels do not overlap on a log
    axis ``width_pt`` points wide.

    1 (no effect) is kept when inside; the others are added nearest-to-1 first, and kept
    only when the gap to every kept tick holds half of both labels
    (:func:`analysis.labels.format_number`, :data:`CHAR_EM` per character) plus
    :data:`TICK_PAD_PT`.
    """
    inside = [t for t in candidates if low <= t <= high]
    if not inside or high <= low:
        return inside
    per_log = width_pt / math.log(high / low)

    def half(t: float) -> float:
        return len(labels.format_number(t)) * CHAR_EM * font_pt / 2

    kept: list[float] = []
    for t in sorted(inside, key=lambda v: abs(math.log(v))):
        if all(abs(math.log(t / k)) * per_log >= half(t) + half(k) + TICK_PAD_PT
               for k in kept):
            kept.append(t)
    return sorted(kept)


def ratio_axis(ax: Axes) -> None:
    """A log x axis for odds or hazard ratios: ticks from :class:`OddsRatioLocator` (spaced
    for the axis's width), plain numbers (:func:`analysis.labels.format_number`), no minor
    ticks (their "6x10^-1" labels overlapped)."""
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.xaxis.set_major_locator(OddsRatioLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: labels.format_number(v)))


class OddsRatioLocator(Locator):
    """Tick locator of an odds-ratio log axis: :func:`odds_ticks` for the axis's width at
    draw time (after the layout has sized it), so labels never overlap."""

    def __call__(self) -> list[float]:
        low, high = self.axis.get_view_interval()
        return self.tick_values(low, high)

    def tick_values(self, vmin: float, vmax: float) -> list[float]:
        ax = self.axis.axes
        width_pt = ax.bbox.width * 72.0 / ax.figure.dpi
        # the tick label size of the theme (asking the axis for its ticks would recurse)
        font = FontProperties(size=plt.rcParams["xtick.labelsize"]).get_size_in_points()
        low, high = sorted((float(vmin), float(vmax)))
        return odds_ticks(low, high, width_pt=width_pt, font_pt=font)


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
                  else f"predicted probability of {outcome.noun}")
    else:
        ylabel = "predicted pain (NRS 0-10)" if res.model == "lmm" else \
            f"predicted probability of {labels.label(res.outcome).lower()}"
    if bounds is not None:
        low, high = bounds
        if eta.min() < low or eta.max() > high:
            ax.annotate(f"prediction {eta.min():.1f} to {eta.max():.1f} runs outside "
                        f"{low:g}-{high:g}: clipped", (0.02, 0.04), xycoords="axes fraction",
                        fontsize=MIN_FONT_PT, color=colour(3))
        elif lo.min() < low or hi.max() > high:
            ax.annotate(f"95 % band clipped at {low:g}-{high:g}", (0.02, 0.04),
                        xycoords="axes fraction", fontsize=MIN_FONT_PT, color="0.4")
        eta, lo, hi = (np.clip(v, low, high) for v in (eta, lo, hi))
    shown = grid * labels.display_scale(exposure)  # the reading unit's scale: % for a jump
    ax.plot(shown, eta, color=colour(0))
    ax.fill_between(shown, lo, hi, color=colour(0), alpha=0.25, linewidth=0)
    ax.set(xlabel=labels.axis_label(exposure), ylabel=labels.sentence(ylabel),
           title=f"By {labels.label(exposure).lower()}")
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
                markersize=3, color=colour(4), ecolor=colour(4), alpha=0.8)
    ax.axhline(0, color="0.5", linestyle="--", linewidth=1)
    ax.set_xticks([])
    what = "intercept" if term == "Intercept" else f"slope: {labels.term_label(term)}"
    ax.set(xlabel=f"Runners (sorted, n = {len(data)})",
           ylabel=f"Runner {what}", title="Per-runner effects (95 % intervals)")
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
        _, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, PANEL_HEIGHT_IN),
                               layout="constrained")
    fitted = per_report["fitted"].to_numpy(float)
    resid = per_report["residual"].to_numpy(float)
    a, b, c = axes[0], axes[1], axes[2]
    a.scatter(fitted, resid, s=6, alpha=0.4, color=colour(0))
    edges = np.unique(np.quantile(fitted, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, fitted, side="right") - 1, 0, len(edges) - 2)
    means = pd.Series(resid).groupby(which).mean()
    mids = (edges[:-1] + edges[1:]) / 2
    a.plot(mids[means.index], means.to_numpy(), color=colour(3), marker="o", markersize=3)
    a.axhline(0, color="0.5", linestyle="--", linewidth=1)
    a.set(xlabel=f"Fitted {outcome.noun} ({unit})", ylabel=f"Residual ({unit})",
          title="Residuals vs fitted")
    ordered = np.sort(resid)
    n = len(ordered)
    theory = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    b.scatter(theory, ordered, s=6, alpha=0.4, color=colour(0))
    if n > 1:
        b.plot(theory, theory * ordered.std(ddof=1) + ordered.mean(), color=colour(3))
    b.set(xlabel="Normal quantile", ylabel=f"Residual ({unit})", title="Normal Q-Q")
    sns.histplot(resid, ax=c, bins=30, color=colour(0))
    c.set(xlabel=f"Residual ({unit})", ylabel="Reports", title="Residuals")
    return axes


#: Box style of the flow diagram.
_BOX = {"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "0.3"}
_EXCLUDED_BOX = {"boxstyle": "round,pad=0.4", "facecolor": "0.95", "edgecolor": "0.5"}


def _records_text(flow: Any) -> str:
    """One block per input file: read, kept, merged and quarantined with reasons."""
    lines = []
    for row in flow.record_table().to_dict(orient="records"):
        lines.append(f"{row['File']}: {row['Read']:,} read, {row['Kept']:,} kept")
        for status in ("Merged", "Quarantined"):
            if row[status]:
                for item in row[f"{status} by reason"].split("; "):
                    reason, _, n = item.partition(": ")
                    lines.append(f"- {status.lower()}: {reason.replace('_', ' ')} {n}")
    return "\n".join(lines) or "no input files"


def flow_diagram(flow: Any, *, ax: Axes | None = None) -> Axes:
    """STROBE-style flow diagram of an :class:`analysis.tables.Flow`: runner stages top to
    bottom with the runners excluded at each step to the side, the model's reports (dropped
    by reason) below them, and the records of each input file (kept / merged / quarantined
    by reason) on the right. Boxes and arrows are matplotlib annotations (no graphviz)."""
    import textwrap

    stages = list(flow.runners)
    n_rows = len(stages) + 2
    if ax is None:
        _, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 0.7 * n_rows + 1.0),
                             layout="constrained")
    ax.set_axis_off()
    ax.set(xlim=(0, 1), ylim=(0, 1))
    step = 1.0 / n_rows
    ys = [1 - step * (k + 0.5) for k in range(len(stages))]
    x, side = 0.16, 0.33
    for k, ((stage, n), y) in enumerate(zip(stages, ys, strict=True)):
        note = flow.notes.get(stage)
        ax.annotate(f"{stage}\nn = {n:,}" + (f"\n({note})" if note else ""), (x, y),
                    ha="center", va="center", fontsize=MIN_FONT_PT, bbox=_BOX)
        if k:
            middle = (y + ys[k - 1]) / 2
            ax.annotate("", (x, y + 0.2 * step), (x, ys[k - 1] - 0.2 * step),
                        arrowprops={"arrowstyle": "->", "color": "0.3"})
            ax.annotate(f"Excluded: {stages[k - 1][1] - n:,}", (side, middle), ha="left",
                        va="center", fontsize=MIN_FONT_PT, bbox=_EXCLUDED_BOX)
            ax.annotate("", (side - 0.01, middle), (x, middle),
                        arrowprops={"arrowstyle": "->", "color": "0.5"})
    report_lines = [textwrap.fill(f"{what}: {n:,}", 44, subsequent_indent="   ")
                    for what, n in flow.reports]
    ax.annotate("Pain reports\n" + "\n".join(report_lines), (0.0, 1.1 * step), ha="left",
                va="center", fontsize=MIN_FONT_PT, bbox=_BOX, multialignment="left")
    ax.annotate("Records per input file\n" + _records_text(flow), (0.56, 1 - 0.1 * step),
                ha="left", va="top", fontsize=MIN_FONT_PT, bbox=_BOX, multialignment="left")
    ax.set_title("Participant and record flow")
    return ax


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
    ax.axhline(POWER_TARGET, color="0.5", linestyle="--", linewidth=1)
    ax.set(xlabel="runners", ylabel="power", ylim=(0, 1.02),
           title="Simulation-based power (95 % intervals)")
    ax.legend(frameon=False)
    return ax


# --- time-to-event figures ---


def cumulative_incidence_plot(curves: pd.DataFrame, *, band: str = "jump_category",
                              order: Sequence[str] | None = None,
                              ends: dict[str, float] | None = None,
                              overall: pd.DataFrame | None = None,
                              ax: Axes | None = None) -> Axes:
    """Cumulative incidence (1 - Kaplan-Meier) of the first pain episode, one step line per
    band with its Greenwood 95 % band.

    Parameters
    ----------
    curves
        :func:`analysis.models.first_episode_curves` (or :func:`analysis.models.kaplan_meier`
        ``by=band``): ``band``, ``time`` (days of follow-up), ``cum_incidence``, ``ci_low``,
        ``ci_high`` (0-1), one row per event time.
    band
        The band column (``jump_category``: Nielsen et al. 2014; ``spike_band``: Frandsen
        et al. 2025).
    order
        Bands in legend order; default :data:`NIELSEN_ORDER` for ``jump_category``, else
        the order of the table.
    ends
        Per band, the last day (``stop``) any row of it was at risk: its curve is drawn flat
        to there (a Kaplan-Meier table stops at its last event).
    overall
        :func:`analysis.models.kaplan_meier` of every row (bands pooled), drawn in black.
    """
    ax = _axes(ax)
    present = list(dict.fromkeys(curves[band].astype(str)))
    default = NIELSEN_ORDER if band == "jump_category" else present
    bands = [b for b in (order or default) if b in present]
    pct = 100.0
    parts = [(name, curves[curves[band].astype(str) == name], colour(k), 0.15)
             for k, name in enumerate(bands)]
    if overall is not None and not overall.empty:
        parts.append(("all days", overall, "black", 0.0))
    ends = ends or {}
    for name, part, col, alpha in parts:
        part = part.sort_values("time")
        # each curve starts at 0 on day 0, steps at its event times, stays flat to its end
        t = np.r_[0.0, part["time"].to_numpy(float)]
        y = np.r_[0.0, part["cum_incidence"].to_numpy(float)] * pct
        lo = np.r_[0.0, part["ci_low"].to_numpy(float)] * pct
        hi = np.r_[0.0, part["ci_high"].to_numpy(float)] * pct
        end = float(ends.get(name, t[-1]))
        if end > t[-1]:
            t, y, lo, hi = np.r_[t, end], np.r_[y, y[-1]], np.r_[lo, lo[-1]], np.r_[hi, hi[-1]]
        ax.step(t, y, where="post", color=col, label=name,
                linewidth=1.2 if alpha == 0 else 1.5)
        if alpha:
            ax.fill_between(t, np.nan_to_num(lo), np.nan_to_num(hi, nan=pct), step="post",
                            color=col, alpha=alpha, linewidth=0)
    ax.set(xlabel="Days of follow-up", ylabel="Cumulative incidence (%)", ylim=(0, 100),
           title="First pain episode")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f} %"))
    title = labels.label(band) if labels.has_label(band) else band
    ax.legend(title=title, frameon=False, loc="upper left")
    return ax


def hazard_ratio_forest(table: pd.DataFrame, *, doubtful: Sequence[str] = (),
                        ax: Axes | None = None) -> Axes:
    """Forest plot of hazard ratios per unit of each exposure (log axis, 95 % CI).

    Parameters
    ----------
    table
        A time-to-event :class:`analysis.models.ModelResult` ``.table``: ``term``,
        ``hazard_ratio``, ``hr_ci_low``, ``hr_ci_high`` (per unit), or the same columns per
        reading step with its ``step_label``
        (:func:`analysis.reports.time_to_event.forest_rows`).
    doubtful
        Terms whose estimate has a problem (proportional hazards violated, infinite
        estimate): drawn hollow, and the label says so.
    """
    ax = _axes(ax)
    rows = table.reset_index(drop=True)
    flagged = set(doubtful)
    steps = (rows["step_label"] if "step_label" in rows.columns
             else [labels.step_text(t) for t in rows["term"]])
    names = [f"{labels.term_label(t)}{' (see note)' if t in flagged else ''}\n({step})"
             for t, step in zip(rows["term"], steps, strict=True)]
    y = np.arange(len(rows))
    hr = rows["hazard_ratio"].to_numpy(float)
    lo, hi = rows["hr_ci_low"].to_numpy(float), rows["hr_ci_high"].to_numpy(float)
    for i in range(len(rows)):
        hollow = rows["term"].iloc[i] in flagged
        ax.errorbar([hr[i]], [y[i]], xerr=[[hr[i] - lo[i]], [hi[i] - hr[i]]], fmt="o",
                    capsize=3, color="black", ecolor=colour(0),
                    markerfacecolor="white" if hollow else "black")
    ax.axvline(1.0, color="0.5", linestyle="--", linewidth=1)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ratio_axis(ax)
    per = "reading step" if "step_label" in rows.columns else "unit"
    ax.set(xlabel=f"Hazard ratio per {per} (95 % CI)", title="Hazard of a new pain episode")
    return ax
