# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python (kneeload)
#     language: python
#     name: kneeload
# ---

# %% tags=["parameters"]
dataset: str = "demo"  # processed dataset: a name under data/processed/ or a folder
cohort: str = "recreational"  # cohort name from runners.csv
outcome: str = "pain"  # model outcome: "pain" (NRS 0-10)
pain_threshold: float = 3.0  # NRS 0-10; a report counts as pain present at or above it
exposures: str = "mileage_jump,shoe_km,rest_days_7d"  # comma-separated panel columns
random_slopes: str = ""  # comma-separated exposures with a random slope per runner
min_cohort_size: int = 5  # runners; smaller cohorts get no statistics (privacy)
seed: int = 0  # seed for bootstrap intervals in figures
summary_path: str = ""  # where kneeload report collects the index numbers (empty: none)

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from analysis import plots, reports
from analysis.models import fit_model

exposure_list = [e.strip() for e in exposures.split(",") if e.strip()]
slope_list = [e.strip() for e in random_slopes.split(",") if e.strip()]
view = reports.load_cohort(dataset, cohort, min_cohort_size=min_cohort_size)
display(Markdown(f"# Knee pain and training load: cohort **{cohort}**\n\n"
                 f"Exposures are measured **{view.meta['exposure_lag_days']} days** before "
                 "each pain report (the reference day), so that pain which cuts training is "
                 "not regressed on the training it cut."))

# %% [markdown]
# ## Data quality
# Rows read, kept, merged and quarantined per input file (whole dataset), from the cleaning
# audit (`cleaning_report.json`).

# %%
reports.cleaning_counts(view.cleaning)

# %% [markdown]
# ## Cohort summary

# %%
reports.cohort_summary(view, exposures=exposure_list)

# %% [markdown]
# ## Training and pain over time

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), layout="constrained")
plots.weekly_mileage(view.daily, ax=axes[0])
plots.pain_over_time(view.panel, ax=axes[1]);

# %% [markdown]
# ## Exposures and pain
# Raw associations, before adjusting for anything: mean pain per band of week-over-week
# mileage change (Nielsen et al. 2014) and per quantile bin of each exposure.

# %%
fig, axes = plt.subplots(1, 1 + len(exposure_list), figsize=(5 * (1 + len(exposure_list)), 3.8),
                         layout="constrained")
plots.jump_bands_vs_pain(view.panel, ax=axes[0])
for ax, exposure in zip(axes[1:], exposure_list, strict=True):
    plots.exposure_vs_pain(view.panel, exposure, ax=ax);

# %% [markdown]
# ## Mixed model
# Linear mixed model of knee pain (NRS 0-10) with a random intercept per runner
# (statsmodels MixedLM, REML; standard errors in lme4's GLS form).

# %%
result = fit_model(view.panel, model="lmm", outcome=outcome, exposures=exposure_list,
                   random_slopes=slope_list)
display(Markdown(
    f"{result.n_obs} reports from {result.n_runners} runners; "
    f"{'converged' if result.converged else '**did not converge**'}"
    f" (optimizer: {result.optimizer}). "
    + (f"Rows dropped: {result.dropped}." if result.dropped else "No rows dropped.")
))
for warning in result.warnings:
    display(Markdown(f"**Warning:** {warning}"))
result.table.round(4)

# %%
display(Markdown("\n".join(f"- {s}" for s in reports.plain_language(result.table))))
result.variance_components.round(4)

# %%
reports.write_summary(summary_path, view, result)
