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
# # 4. Study design: how many runners, for how long?
#
# Power is the chance that a study of a given size detects an effect that is really there. For
# mixed models of weekly pain reports there is no formula that covers rest weeks, missing
# reports, shoe changes and runners who differ, so kneeload estimates it the general way:
# simulate many studies of the planned size with a known true effect, build each one's exposure
# panel exactly as real data would be built, fit the planned model and count how often the
# effect comes out significant (Arnold et al. 2011, BMC Med Res Methodol 11:94; the approach
# of R's simr). The same runs report whether the 95 % intervals cover the truth.

# %% tags=["parameters"]
dataset: str = "demo"  # pilot dataset for context: a name under data/processed/ or a folder
runners: str = "10,20,40"  # study sizes to compare (runners in total), comma-separated
weeks: str = "8,16"  # follow-up lengths in weeks (one pain report a week), comma-separated
exposure: str = "mileage_jump"  # exposure whose effect the study should detect
effect: float = 0.05  # per reading step, as reports print it: NRS points, or OR for glmm/gee
model: str = "lmm"  # planned analysis: lmm (pain score), glmm or gee (pain present)
n_sims: int = 12  # simulated studies per design; use 200 or more when planning for real
alpha: float = 0.05  # two-sided significance level of the Wald test
seed: int = 20261125  # master seed; every design cell is reproducible on its own

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from analysis import effects, paths, plots, power
from analysis.errors import KneeloadError
from analysis.models import Z_95, fit_model
from analysis.pipeline import load_processed

# str(): papermill -p turns a single number ("-p runners 50") into an int
runner_list = [int(r) for r in str(runners).split(",") if r.strip()]
week_list = [int(w) for w in str(weeks).split(",") if w.strip()]
pd.options.display.float_format = "{:.3g}".format  # 3 significant digits in every table
mc_se = np.sqrt(0.25 / n_sims)  # Monte Carlo SE of a power estimate, largest at power 0.5
step_label = effects.reading_unit(exposure).label
effect_text = f"OR {effect:g}" if model in ("glmm", "gee") else f"{effect:g} NRS points"
display(Markdown(
    f"Planned analysis: **{model}**, effect of `{exposure}` = {effect_text} {step_label} "
    "(the reading units of the reports and `summary.json`), "
    f"alpha {alpha:g}; {len(runner_list) * len(week_list)} designs x {n_sims} simulated "
    f"studies. With {n_sims} studies per design a power estimate is uncertain by up to "
    f"+/-{Z_95 * mc_se:.2f} (95 %), which the intervals below show."
))

# %% [markdown]
# ## The pilot, for context
# A planned effect should be one worth detecting and plausible given what is known. Here is
# what the pilot dataset says about the same exposure, fitted with the planned kind of model.

# %%
pilot = load_processed(paths.processed_dir(dataset))["panel"]
try:
    pilot_fit = fit_model(pilot, model=model, exposures=list(power.DEFAULT_EXPOSURES))
except KneeloadError as error:
    display(Markdown(f"The pilot cannot be modelled: {error.one_line()}"))
else:
    pilot_weeks = pilot.groupby("runner_id")["date"].agg(
        lambda d: (d.max() - d.min()).days / 7 + 1)
    display(Markdown(
        f"Pilot: {pilot_fit.n_runners} runners, about {pilot_weeks.median():.0f} weeks each, "
        f"{pilot_fit.n_obs} reports in the model."
    ))
    display(pilot_fit.table.set_index("term").loc[
        [exposure], ["step_label", "estimate_step", "ci_low_step", "ci_high_step",
                     "estimate", "std_error"]])

# %% [markdown]
# ## Power curves
# Each simulated study has the planned number of runners, split evenly over one cohort, with
# the simulator's defaults for everything not set here (training patterns, shoe changes, 10 %
# of weekly reports missing, runner-to-runner variation; `analysis.simulate`). Each study is
# analysed with the package's own model code, as a real one would be.

# %%
def show_progress(done: int, total: int) -> None:
    """One progress line, rewritten in place (carriage return) while power_curve runs."""
    print(f"\rSimulated {done} of {total} studies.", end="\n" if done == total else "",
          flush=True)


curve = power.power_curve(runners=runner_list, weeks=week_list, effects={exposure: effect},
                          n_sims=n_sims, alpha=alpha, seed=seed, model=model, progress=False,
                          on_progress=show_progress)
curve[["runners", "weeks", "effect", "truth", "power", "power_ci_low", "power_ci_high",
       "n_failed",
       "mean_estimate", "coverage", "not_estimable"]]

# %%
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
plots.power_curve_plot(curve, ax=ax)
ax.set(xticks=runner_list,
       title=f"Power to detect {exposure}: {effect_text} {step_label} ({model})");

# %% [markdown]
# ## Reading the curve
# Power rises with both the number of runners and the weeks each is followed, but not equally:
# more weeks add reports from the same runners, whose reports are correlated, so past a point
# extra runners buy more power than extra weeks. The smallest design that reaches the 80 % line
# (with its interval clear of it, once `n_sims` is large enough) is the one to plan for; add
# the expected drop-out on top. `mean_estimate` and `coverage` check that the analysis is
# unbiased and its intervals honest at each size; small studies are where both can fail.
# To plan for real, run this notebook with papermill on a wider grid and `n_sims` of 200 or
# more, or call `analysis.power.power_curve` directly.

# %%
reached = power.smallest_designs(curve)
target = f"{plots.POWER_TARGET * 100:.0f} %"  # the dashed line of the figure
display(Markdown(
    f"No design in this grid reaches {target} power: extend `runners` or `weeks`."
    if reached.empty else f"Smallest designs with estimated power of at least {target}: "
    + "; ".join(f"{r.runners} runners x {r.weeks} weeks ({r.power:.0%})"
                for r in reached.itertuples())
    + "."
))
