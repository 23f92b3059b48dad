"""Seaborn figures. Each takes its data first and ``ax=None``, and returns the Axes.

Figures use fixed sizes and no randomness, so that notebooks re-render identically.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

FIGSIZE = (7.0, 3.5)  # inches
NIELSEN_ORDER = ("<10%", "10-30%", ">30%")  # jump_category levels (Nielsen et al. 2014)


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


def pain_over_time(panel: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Mean knee pain (NRS 0-10) per report week with a 95 % confidence band."""
    ax = _axes(ax)
    weekly = panel.assign(week=panel["date"].dt.to_period("W-SUN").dt.start_time)
    sns.lineplot(data=weekly, x="week", y="pain", errorbar=("ci", 95), n_boot=200, seed=0,
                 ax=ax, color="tab:red")
    ax.set(xlabel="week", ylabel="knee pain (NRS 0-10)", title="Pain reports over time",
           ylim=(0, 10))
    ax.tick_params(axis="x", labelrotation=30)
    return ax


def exposure_vs_pain(
    panel: pd.DataFrame, exposure: str, *, bins: int = 6, ax: Axes | None = None
) -> Axes:
    """Mean pain (NRS 0-10, 95 % CI) in quantile bins of one exposure, or by category."""
    ax = _axes(ax)
    data = panel.dropna(subset=[exposure, "pain"])
    if isinstance(data[exposure].dtype, pd.CategoricalDtype) or data[exposure].dtype == bool:
        sns.pointplot(data=data, x=exposure, y="pain", errorbar=("ci", 95), n_boot=200, seed=0,
                      ax=ax, color="tab:purple", linestyle="none")
    else:
        binned = pd.qcut(data[exposure], q=bins, duplicates="drop")
        data = data.assign(bin=binned.map(lambda i: f"{i.left:.2g} to {i.right:.2g}")
                           .astype(str))
        order = [f"{i.left:.2g} to {i.right:.2g}" for i in binned.cat.categories]
        sns.pointplot(data=data, x="bin", y="pain", order=order, errorbar=("ci", 95),
                      n_boot=200, seed=0, ax=ax, color="tab:purple", linestyle="none")
        ax.tick_params(axis="x", labelrotation=30)
    ax.set(xlabel=exposure, ylabel="knee pain (NRS 0-10)",
           title=f"Pain by {exposure} (mean, 95 % CI)")
    return ax


def jump_bands_vs_pain(panel: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Mean pain in the Nielsen week-over-week mileage-change bands (<10 %, 10-30 %, >30 %)."""
    ax = _axes(ax)
    data = panel.dropna(subset=["jump_category", "pain"])
    data = data.assign(jump_category=data["jump_category"].astype(str))
    order = [band for band in NIELSEN_ORDER if band in set(data["jump_category"])]
    sns.pointplot(data=data, x="jump_category", y="pain", order=order, errorbar=("ci", 95),
                  n_boot=200, seed=0, ax=ax, color="tab:orange", linestyle="none")
    counts = data["jump_category"].value_counts()
    ax.set_xticks(range(len(order)), [f"{b}\n(n={counts.get(b, 0)})" for b in order])
    ax.set(xlabel="week-over-week mileage change (Nielsen et al. 2014)",
           ylabel="knee pain (NRS 0-10)", title="Pain by mileage-jump band")
    return ax


def runner_timeline(
    daily: pd.DataFrame, panel: pd.DataFrame, runner_id: str, *, ax: Axes | None = None
) -> Axes:
    """One runner: daily km (bars), rolling 7-day km (line) and pain reports (right axis)."""
    ax = _axes(ax)
    days = daily[daily["runner_id"] == runner_id].sort_values("date")
    reports = panel[panel["runner_id"] == runner_id].sort_values("date")
    ax.bar(days["date"], days["distance_km"].fillna(0.0), width=1.0, color="tab:gray", alpha=0.6,
           label="daily km")
    ax.plot(days["date"], days["distance_km"].rolling(7, min_periods=7).sum() / 7, color="tab:blue",
            label="7-day mean km/day")
    right = ax.twinx()
    right.plot(reports["date"], reports["pain"], "o-", color="tab:red", label="pain (NRS)")
    right.set(ylim=(0, 10), ylabel="knee pain (NRS 0-10)")
    ax.set(xlabel="date", ylabel="km", title=f"Runner {runner_id}")
    ax.tick_params(axis="x", labelrotation=30)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize="small")
    return ax


def share_missing(panel: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Share of panel rows (0-1) with a missing value, per column."""
    return panel[columns].isna().mean().rename("share_missing")


# --- model figures ---
