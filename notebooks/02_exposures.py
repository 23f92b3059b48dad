# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python (kneeload)
#     language: python
#     name: kneeload
# ---

# %% [markdown]
# # 2. Exposures: how much, how fast, in which shoes
#
# Every pain report is paired with the training before it. The exposures are computed at the
# *reference day*, a fixed lag before the report, so that pain which cuts training is not
# regressed on the training it cut. Definitions, units and references for every column are in
# `docs/exposures.md`; this notebook shows what they look like in one dataset.

# %% tags=["parameters"]
dataset: str = "demo"  # processed dataset: a name under data/processed/ or a folder path
cohort: str = ""  # cohort name from runners.csv; empty for every cohort
runner: str = ""  # runner_id for the timeline; empty picks the runner with most pain reports

# %%
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from analysis import paths, plots
from analysis.exposures import ACUTE_DAYS, CHRONIC_DAYS, NIELSEN_BANDS
from analysis.models import within_between_spread
from analysis.pipeline import load_processed

data = load_processed(paths.processed_dir(dataset))
daily, panel, meta = data["daily"], data["panel"], data["panel_meta"]
daily = daily[daily["in_follow_up"]]  # the lead-in before follow-up only feeds exposures
if cohort:
    keep = set(data["runners"].loc[data["runners"]["cohort"] == cohort, "runner_id"])
    daily = daily[daily["runner_id"].isin(keep)]
    panel = panel[panel["runner_id"].isin(keep)]
lag = meta["exposure_lag_days"]
# exposures on the reference day of each pain report; without reports, on every runner-day
rows, unit = (panel, "pain reports") if len(panel) else (daily, "runner-days")
# the numeric exposures: each daily feature on the reference day, and its weekly lags
exposures = [c for c in panel.columns if pd.api.types.is_float_dtype(panel[c])
             and re.sub(r"_lag\d+w$", "", c) in daily.columns]
display(Markdown(
    f"{len(panel)} pain reports from {panel['runner_id'].nunique()} runners. Exposures are "
    f"measured on the reference day **{lag} days before each report**; pain present means "
    f"NRS >= {meta['pain_threshold']:g}."
    + ("" if len(panel) else " Without pain reports, the distributions below are over "
       f"all {len(daily)} runner-days instead.")
))

# %% [markdown]
# ## Every exposure at a glance
# One row per numeric exposure over the pain reports: how often it is known, and its spread.
# A value is missing when its window reaches before the runner's follow-up started, when a
# ratio's denominator is zero, or when the input did not carry what it needs (for example
# session RPE).

# %%
summary = (
    rows[exposures].describe(percentiles=[0.25, 0.5, 0.75]).T
    .assign(share_missing=plots.share_missing(rows, exposures))
    [["count", "share_missing", "min", "25%", "50%", "75%", "max"]]
    .round(3).add(0.0)  # adding 0.0 turns -0.0 into 0.0
    .astype({"count": int})
)
summary

# %%
shown = [c for c in exposures if rows[c].notna().any()]
empty = [c for c in exposures if c not in shown]
if empty:
    display(Markdown(f"Not available in this dataset: {', '.join(f'`{c}`' for c in empty)}."))
ncols = 4
nrows = -(-len(shown) // ncols)
fig, axes = plt.subplots(nrows, ncols, figsize=(14, 2.4 * nrows), layout="constrained")
for ax, column in zip(axes.flat, shown, strict=False):
    sns.histplot(rows[column].dropna(), bins=30, ax=ax, color="tab:blue")
    ax.set(xlabel=column, ylabel="")
for ax in axes.flat[len(shown):]:
    ax.set_visible(False)
fig.suptitle(f"Exposures over {len(rows)} {unit}");

# %% [markdown]
# ## Between runners or within a runner?
# A model with `center="within-between"` splits each exposure into the runner's mean
# (`<x>_between`) and the deviation from it (`<x>_within`) over the rows it uses, with
# `analysis.models.within_between` (the function the model calls). Here, per exposure, the
# rows a one-exposure model of pain would use: the spread between and within runners and
# the share of the exposure's variance that lies within runners. An exposure that hardly
# varies within a runner says little about a within-runner effect.

# %%
spread = within_between_spread(panel, exposures).round(3)
spread

# %% [markdown]
# ## Week-over-week mileage jumps: the Nielsen bands
# `mileage_jump` = (km in the last 7 days - km in the 7 days before) / km in the 7 days before.
# Nielsen et al. (2014, JOSPT 44:739) grouped it as below 10 %, 10-30 % and above 30 %; a
# decrease falls in the first band. A jump is undefined (missing) after a week without running.

# %%
bands = (
    panel.dropna(subset=["jump_category"])
    .groupby("jump_category", observed=False)
    .agg(reports=("pain", "size"), mean_pain=("pain", "mean"),
         share_pain_present=("pain_any", "mean"))
    .round(3)
)
display(Markdown(f"Band edges: {NIELSEN_BANDS[0]:.0%} and {NIELSEN_BANDS[1]:.0%}; "
                 f"{int(panel['jump_category'].isna().sum())} reports have no jump."))
bands

# %%
if len(panel):
    plots.jump_bands_vs_pain(panel);

# %% [markdown]
# ## Acute:chronic workload ratios, side by side
# Three ways to compare the last week with the last month (all on daily km):
#
# * `acwr_rolling`: km in the last 7 days over the 28-day weekly mean, where the 28 days
#   *include* the acute week (coupled; Hulin et al. 2016);
# * `acwr_uncoupled`: the same, with the chronic mean over the 21 days before the acute week
#   (Lolli et al. 2019; Windt & Gabbett 2019);
# * `acwr_ewma`: exponentially weighted means with 7- and 28-day spans (Williams et al. 2017).
#
# **The coupling caveat.** With A the acute-week km and U the uncoupled ratio, the coupled
# ratio is 4A / (A + B) = 4U / (U + 3), where B is the km in the 21 days before: it is a
# compressed copy of the uncoupled ratio, capped at 4, and it correlates with the acute load
# by construction (Lolli et al. 2019, BJSM 53:921). Prefer the uncoupled or the EWMA ratio in
# a model, and never put two of them in the same one.

# %%
ratios = ["acwr_rolling", "acwr_uncoupled", "acwr_ewma"]
days = daily.dropna(subset=ratios)
coupling_gap = (days["acwr_rolling"]
                - 4 * days["acwr_uncoupled"] / (days["acwr_uncoupled"] + 3)).abs().max()
display(Markdown(
    f"{len(days)} runner-days with all three ratios (the first {CHRONIC_DAYS} days of each "
    f"runner's follow-up have none). Largest difference between `acwr_rolling` and "
    f"4U/(U+3): {'below 1e-9' if coupling_gap < 1e-9 else f'{coupling_gap:.3g}'}. "
    "Rank (Spearman) correlations between the ratios and with the acute "
    f"{ACUTE_DAYS}-day km; coupled and uncoupled rank runner-days identically:"
))
days[[*ratios, "km_7d"]].corr(method="spearman").round(3)

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
for column in ratios:
    sns.kdeplot(days[column], ax=axes[0], label=column, clip=(0, 4), cut=0)
axes[0].set(xlabel="ratio", title="Distribution (runner-days)", xlim=(0, 3))
axes[0].legend(fontsize="small")
sample = days.sample(n=min(len(days), 3000), random_state=0)
axes[1].scatter(sample["acwr_uncoupled"], sample["acwr_rolling"], s=4, alpha=0.4)
u = np.linspace(0, max(6.0, float(sample["acwr_uncoupled"].max())), 200)
axes[1].plot(u, 4 * u / (u + 3), color="black", linewidth=1, label="4U / (U + 3)")
axes[1].axhline(4, color="tab:red", linestyle=":", label="coupled cap = 4")
axes[1].set(xlabel="acwr_uncoupled (U)", ylabel="acwr_rolling (coupled)",
            title="Coupled vs uncoupled")
axes[1].legend(fontsize="small", loc="lower right")
axes[2].scatter(sample["acwr_rolling"], sample["acwr_ewma"], s=4, alpha=0.4, color="tab:green")
axes[2].axline((1, 1), slope=1, color="black", linewidth=1)
axes[2].set(xlabel="acwr_rolling", ylabel="acwr_ewma", title="Rolling vs EWMA");

# %% [markdown]
# ## One runner's season
# Daily km (bars), the 7-day mean (line), pain reports (right axis) and, as dashed lines, the
# days a new shoe first appears in the log.

# %%
if not runner:
    counts = (panel.groupby("runner_id").agg(n=("pain_any", "sum"), reports=("pain", "size"))
              if len(panel) else daily.groupby("runner_id").agg(n=("n_runs", "sum"),
                                                                reports=("n_runs", "size")))
    runner = counts.sort_values(["n", "reports"], ascending=False, kind="stable").index[0]
one_day = daily[daily["runner_id"] == runner]
ax = plots.runner_timeline(daily, panel, runner)
ax.figure.set_size_inches(12, 4)
display(Markdown(
    f"Runner **{runner}**: {int(one_day['n_runs'].sum())} runs, "
    f"{one_day['distance_km'].sum():.0f} km over {len(one_day)} days, "
    f"{one_day['shoe_id'].nunique()} shoe(s), "
    f"{int((panel['runner_id'] == runner).sum())} pain reports."
));
