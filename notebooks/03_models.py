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
# # 3. Models: how much does training load move knee pain?
#
# Each runner reports pain many times, so reports from one runner are not independent: a
# mixed model gives every runner their own baseline (a random intercept) and, where asked, their
# own sensitivity to an exposure (a random slope). Two outcomes are modelled: the pain score
# (NRS 0-10, linear mixed model) and pain present (NRS at or above the threshold, binomial mixed
# model, with a population-averaged GEE as the sensitivity analysis). How these fits were
# checked against R's lme4 and against simulated truth is in `docs/models.md`.

# %% tags=["parameters"]
dataset: str = "demo"  # processed dataset: a name under data/processed/ or a folder path
cohort: str = ""  # cohort name from runners.csv; empty for every cohort
exposures: str = "mileage_jump,shoe_km,rest_days_7d"  # comma-separated panel columns
covariates: str = ""  # comma-separated adjustment columns; C(col) for a categorical one
slope: str = "mileage_jump"  # exposure given a random slope per runner; empty to skip

# %%
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from analysis import paths, plots, reports
from analysis.errors import KneeloadError
from analysis.models import (
    ModelResult,
    conditional_modes,
    fit_gee,
    fit_glmm,
    fit_lmm,
    likelihood_ratio_test,
)
from analysis.pipeline import load_processed

pd.options.display.float_format = "{:.4g}".format  # 4 significant digits in every table

exposure_list = [e.strip() for e in exposures.split(",") if e.strip()]
covariate_list = [c.strip() for c in covariates.split(",") if c.strip()]
data = load_processed(paths.processed_dir(dataset))
panel, meta = data["panel"], data["panel_meta"]
if cohort:
    panel = panel[panel["cohort"] == cohort].reset_index(drop=True)
truth_file = Path(meta.get("raw_dir", "")) / "truth.json"
truth = json.loads(truth_file.read_text()) if truth_file.is_file() else None
spec = {"exposures": exposure_list, "covariates": covariate_list}


def tidy(table: pd.DataFrame) -> pd.DataFrame:
    """Model table for reading, p-values to 2 significant digits."""
    return (table.set_index("term")
            .assign(p_value=table.set_index("term")["p_value"].map(lambda p: f"{p:.2g}")))


def attempt(fitter: Callable[..., ModelResult], **kwargs: Any) -> ModelResult | None:
    """Fit, or say in one line why this dataset cannot support the model (returns None)."""
    try:
        return fitter(panel, **kwargs)
    except KneeloadError as error:
        display(Markdown(f"**Not fitted ({fitter.__name__}):** {error.one_line()}"))
        return None


display(Markdown(
    f"{len(panel)} pain reports from {panel['runner_id'].nunique()} runners; "
    f"{int(panel['pain_any'].sum())} with pain present (NRS >= {meta['pain_threshold']:g}). "
    f"Exposures ({', '.join(f'`{e}`' for e in exposure_list)}) are measured "
    f"{meta['exposure_lag_days']} days before each report."
))

# %% [markdown]
# ## Pain score: linear mixed model with a random intercept
# Each estimate is the change in pain (NRS points) per unit of the exposure, holding the
# others fixed: `mileage_jump` is a fraction (1 = +100 % week over week), `shoe_km` is km and
# `rest_days_7d` is days. REML fit; standard errors as lme4 reports them; Wald 95 % intervals.
# Reports with a missing exposure are dropped, and the count is shown.

# %%
lmm = attempt(fit_lmm, **spec)
if lmm is not None:
    display(Markdown(
        f"{lmm.n_obs} reports from {lmm.n_runners} runners; "
        f"{'converged' if lmm.converged else '**did not converge**'}; "
        f"ICC {lmm.icc:.3f} (share of pain variance between runners)."
    ))
    for warning in lmm.warnings:
        display(Markdown(f"*Note:* {warning}"))
    display(tidy(lmm.table))

# %% [markdown]
# When the dataset is a simulation, `truth.json` beside the raw files holds the effects the
# data were drawn from. The simulator rounds and clips pain to the 0-10 scale, so the fitted
# effects are a little attenuated; every true value should still lie inside its interval.

# %%
if truth is None:
    display(Markdown("No `truth.json`: this is not a simulated dataset."))
elif lmm is not None:
    true_effects = pd.Series(truth["fixed_effects"], name="truth")
    display(lmm.table.set_index("term")[["estimate", "ci_low", "ci_high"]]
            .join(true_effects, how="inner")
            .assign(inside=lambda t: (t["ci_low"] < t["truth"]) & (t["truth"] < t["ci_high"])))

# %% [markdown]
# ## Do runners differ in how much a mileage jump hurts?
# A random slope lets the effect of one exposure vary between runners. The likelihood-ratio
# test compares the two fits on the same reports. Its null hypothesis puts a variance at zero,
# on the edge of what is possible, so the plain chi-square p-value is conservative; the
# boundary-corrected p-value uses a 50:50 mixture of chi-square distributions (Self & Liang
# 1987; Stram & Lee 1994).

# %%
lmm_slope = attempt(fit_lmm, **spec, random_slopes=[slope]) if slope and lmm is not None else None
if lmm_slope is not None:
    lrt = likelihood_ratio_test(lmm, lmm_slope)
    vc = lmm_slope.variance_components
    slope_sd = vc.loc[(vc["var1"] == slope) & vc["var2"].isna(), "sdcor"].iloc[0]
    display(Markdown(
        f"Random slope on `{slope}`: SD between runners {slope_sd:.3f} NRS points per unit. "
        f"{lrt['caveat'].capitalize()}."
    ))
    display(pd.DataFrame(
        {"log-likelihood": [lmm.loglik, lmm_slope.loglik], "AIC": [lmm.aic, lmm_slope.aic],
         "BIC": [lmm.bic, lmm_slope.bic]},
        index=["random intercept", f"+ random slope on {slope}"]).map(lambda v: f"{v:.2f}"))
    display(pd.Series({k: lrt[k] for k in ("statistic", "df", "p_value", "p_value_boundary")},
                      name="likelihood-ratio test").map(lambda v: f"{v:.3g}").to_frame())
    display(tidy(lmm_slope.table))

# %% [markdown]
# ## Within or between runners?
# An exposure can differ *between* runners (some always jump more) and *within* a runner over
# time (this week's jump against their usual). Splitting each exposure into the runner's mean
# and the deviation from it separates the two. The within-runner estimate answers "what
# happens when this runner jumps more than usual"; the between-runner estimate is open to
# confounding by anything stable about the runner, and the two need not agree (Hamaker &
# Grasman 2015, Front Psychol 5:1492).

# %%
lmm_wb = attempt(fit_lmm, **spec, center="within-between") if lmm is not None else None
if lmm_wb is not None:
    display(tidy(lmm_wb.table))

# %% [markdown]
# ## Pain present: binomial mixed model and GEE
# The binomial mixed model (maximum likelihood, Laplace approximation) gives runner-specific
# odds ratios; the GEE (exchangeable working correlation, robust standard errors) gives
# population-averaged ones, which are closer to 1 when runners differ a lot (Zeger, Liang &
# Albert 1988). Both should point the same way.

# %%
glmm = attempt(fit_glmm, **spec)
gee = attempt(fit_gee, **spec) if glmm is not None else None
if gee is not None:
    display(Markdown(
        f"GLMM: {glmm.n_obs} reports, "
        f"{'converged' if glmm.converged else '**did not converge**'}, runner SD on the "
        f"log-odds scale {glmm.variance_components['sdcor'].iloc[0]:.3f}, latent ICC "
        f"{glmm.icc:.3f}. GEE working correlation "
        f"{gee.variance_components['vcov'].iloc[0]:.3f}."
    ))
    display(pd.concat(
        {name: fit.table.set_index("term").drop(index="Intercept")[
            ["step_label", "odds_ratio_step", "or_ci_low_step", "or_ci_high_step"]]
         for name, fit in (("GLMM", glmm), ("GEE", gee))},
        axis=1,
    ))

# %% [markdown]
# ## All effects on one page
# Effects per step a clinician can picture (per +10 % mileage jump, per +100 km on the shoe,
# per extra rest day), with 95 % intervals.

# %%
def effects_of(fits: dict) -> pd.DataFrame:
    """Effects of several fits in reading units, one ``model`` label each (within only)."""
    tables = {name: reports.effects_table(fit.table) for name, fit in fits.items() if fit}
    tables = {name: t[~t["term"].str.endswith("_between")] for name, t in tables.items()}
    return pd.concat(tables, names=["model"]).reset_index(0) if tables else pd.DataFrame()


panels = [(effects_of({"random intercept": lmm, "within runner": lmm_wb}), 0.0),
          (effects_of({"GLMM": glmm, "GEE": gee}), 1.0)]
panels = [panel_ for panel_ in panels if not panel_[0].empty]
if not panels:
    display(Markdown("No model was fitted, so there are no effects to plot."))
else:
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.8), layout="constrained",
                             squeeze=False)
    for ax, (effects, null) in zip(axes.flat, panels, strict=False):
        plots.forest_plot(effects, null=null, ax=ax)
    fig.suptitle("Effects per clinical step, 95 % intervals");

# %% [markdown]
# ## Diagnostics
# The linear mixed model assumes residuals and runner intercepts that are roughly normal with
# constant spread. Pain is a bounded, rounded 0-10 score, so the residuals show stripes and
# some compression near 0 and 10; that is expected, and the fixed effects stay close to the
# truth in simulations with that same rounding (`docs/models.md`).

# %%
if lmm is None:
    display(Markdown("No linear mixed model was fitted, so there is nothing to diagnose."))
else:
    modes = conditional_modes(panel, lmm)
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8), layout="constrained")
    plots.residual_diagnostics(modes.per_report, axes=axes[:3])
    plots.caterpillar(modes.per_runner, term="Intercept", ax=axes[3]);

# %% [markdown]
# ## In plain words
# The same estimates, written per clinical step.

# %%
for title, fit in (("Pain score (linear mixed model)", lmm),
                   ("Pain present (binomial mixed model)", glmm)):
    sentences = reports.plain_language(fit.table) if fit is not None else ["not fitted"]
    display(Markdown(f"**{title}**\n\n" + "\n".join(f"- {s}" for s in sentences)))
