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
# # 5. Time to a pain episode
#
# The repeated-measures models of notebook 3 ask how pain on a report relates to the training
# before it. Injury epidemiology also asks *when* a new pain episode starts: a time-to-event
# analysis on the days at risk, with exposures that change every day (Nielsen et al. 2019).
# Episodes, days at risk and incidence are defined once in the package (`docs/episodes.md`);
# the models, their agreement with R's `survival::coxph` and their coverage are in
# `docs/models.md`, "Time-to-event".

# %% tags=["parameters"]
dataset: str = "demo"  # processed dataset: a name under data/processed/ or a folder path
cohort: str = ""  # cohort name from runners.csv; empty for every cohort
exposures: str = "mileage_jump,rest_days_7d"  # comma-separated daily columns, reference day
band: str = "jump_category"  # band of the cumulative-incidence curves (Nielsen et al. 2014)
n_boot: int = 2000  # runner-bootstrap replicates of the clustered incidence intervals
seed: int = 0  # seed of the runner bootstrap
design_out: str = ""  # CSV path for the Andersen-Gill rows fitted (empty writes nothing)

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from analysis import epi, labels, paths, plots
from analysis.episodes import at_risk
from analysis.models import SURVIVAL_MODELS, fit_survival, survival_design
from analysis.models.survival import SPIKE_BANDS, episodes_of
from analysis.pipeline import load_processed
from analysis.reports import time_to_event as tte

plots.apply_theme()
folder = paths.processed_dir(dataset)
processed = load_processed(folder)
if (folder / "episodes.parquet").is_file():  # the build's table (older builds: recomputed)
    processed["episodes"] = pd.read_parquet(folder / "episodes.parquet")
if cohort:
    keep = set(processed["runners"].loc[processed["runners"]["cohort"] == cohort, "runner_id"])
    for name in ("daily", "panel", "episodes"):
        if name in processed:
            processed[name] = processed[name][processed[name]["runner_id"].isin(keep)]
processed["episodes"] = episodes_of(processed)
exposure_list = [c.strip() for c in exposures.split(",") if c.strip()]
meta = processed["panel_meta"]
display(Markdown(
    f"{processed['panel']['runner_id'].nunique()} runners, {len(processed['panel'])} pain "
    f"reports. A report is painful at NRS >= {meta['pain_threshold']:g}; exposures are "
    f"taken on the reference day {meta['exposure_lag_days']} days before each day at risk."))

# %% [markdown]
# ## Episodes
# One row per episode in `episodes.parquet`. An episode present at a runner's first report is
# *prevalent* (its onset is unknown) and is not an event; incident episodes are.

# %%
tte.episode_counts(processed["episodes"])

# %% [markdown]
# ## Incidence: simple and clustered intervals
# Episodes per 1,000 running hours of time at risk. The exact Poisson interval treats every
# episode as independent; the runner bootstrap and the quasi-Poisson interval (Pearson
# dispersion over runners) allow episodes of one runner to be alike. The coverage of each
# with a known truth is in `docs/episodes.md`.

# %%
days = at_risk(processed["daily"], processed["episodes"], reports=processed["panel"])
incidence = epi.incidence_from_days(days, by=("cohort",), n_boot=n_boot, seed=seed)
shown = {"cohort": "cohort", "scope": "scope", "episodes": "episodes", "hours": "hours at risk",
         "rate_per_1000_h": "per 1,000 h", "ci_low_h": "Poisson low", "ci_high_h": "Poisson high",
         "boot_low_h": "bootstrap low", "boot_high_h": "bootstrap high",
         "qp_low_h": "quasi-Poisson low", "qp_high_h": "quasi-Poisson high",
         "dispersion_h": "dispersion"}
incidence[list(shown)].rename(columns=shown).round(2).set_index(["cohort", "scope"])

# %% [markdown]
# ## Cumulative incidence of the first episode by band
# Kaplan-Meier on the days at risk before any episode, with each day in the band of its
# reference day (a runner moves between curves as the band changes).

# %%
curves, overall, ends = tte.band_curves(processed, band=band)
fig, ax = plt.subplots(figsize=plots.FIGSIZE, layout="constrained")
plots.cumulative_incidence_plot(curves, band=band, ends=ends, overall=overall, ax=ax)
display(Markdown("*" + labels.caption("cumulative_incidence",
                                      band=labels.label(band).lower()) + "*"));

# %% [markdown]
# ## Cox, Andersen-Gill and PWP side by side
# Cox: the first episode, time since follow-up start. Andersen-Gill: every episode on the
# same clock. PWP: every episode, time since the previous one resolved, stratified by episode
# number. All with runner-clustered robust standard errors.

# %%
results = {name: fit_survival(processed, model=name, exposures=exposure_list)
           for name in SURVIVAL_MODELS}
tte.model_comparison(results)

# %% [markdown]
# ## Proportional hazards
# The score test of R's `cox.zph` (Kaplan-Meier time transform) per term and globally; a
# p below 0.05 is listed among the fit's problems.

# %%
tte.ph_table(results).set_index(["model", "term"])

# %% [markdown]
# ## Session-level spikes (Frandsen et al. 2025)
# One row per session: the hazard of a new episode in the days after a session by how far
# its longest run exceeded the longest run of the 30 days before (reference band: a
# regression or up to +10 %, the `run_spike` threshold). Frandsen et al. modelled the first
# injury; with a few runners there are too few first episodes, so every episode is used
# (Andersen-Gill). A band without episodes has no finite estimate, and says so.

# %%
spikes = fit_survival(processed, model="andersen-gill", exposures=["spike_band"],
                      unit="session")
display(Markdown(f"Bands: {', '.join(SPIKE_BANDS)}; {spikes.extra['n_events']} episodes in "
                 f"{spikes.n_obs:,} session rows from {spikes.n_runners} runners."))
tte.model_comparison({"andersen-gill": spikes})

# %% [markdown]
# ## The rows fitted
# The counting-process rows of the Andersen-Gill model, as `kneeload fit --design-out`
# writes them, so the fit can be repeated elsewhere (R: `coxph(Surv(start, stop, event) ~
# mileage_jump + rest_days_7d + cluster(runner_id))`).

# %%
rows = survival_design(processed, model="andersen-gill", exposures=exposure_list)
rows = rows.dropna(subset=exposure_list)
if design_out:
    rows.to_csv(design_out, index=False)
display(Markdown(f"{len(rows):,} rows, {int(rows['event'].sum())} events."))
rows.head()
