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
spline: str = "acwr_rolling:3"  # COLUMN:DF natural spline for the non-linear section
dlnm: str = "distance_km:28"  # COLUMN:MAX_LAG daily load and lag (days) for the DLNM section

# %%
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from analysis import labels, paths, plots, plots_nonlinear, reports
from analysis.errors import KneeloadError
from analysis.models import (
    ModelResult,
    conditional_modes,
    crossbasis,
    crosspred,
    exposure_response,
    fit_gee,
    fit_glmm,
    fit_lmm,
    likelihood_ratio_test,
    sensitivity,
)
from analysis.pipeline import load_processed, rebuild_panel
from analysis.reports.parameters import parse_dlnm_param, parse_splines_param

pd.options.display.float_format = "{:.4g}".format  # 4 significant digits in every table

exposure_list = [e.strip() for e in exposures.split(",") if e.strip()]
covariate_list = [c.strip() for c in covariates.split(",") if c.strip()]
data = load_processed(paths.processed_dir(dataset))
panel, meta, daily = data["panel"], data["panel_meta"], data["daily"]
if cohort:
    panel = panel[panel["cohort"] == cohort].reset_index(drop=True)
    daily = daily[daily["runner_id"].isin(set(panel["runner_id"]))].reset_index(drop=True)
spline_request = parse_splines_param(spline)  # {column: df}
dlnm_request = parse_dlnm_param(dlnm)  # (column, max_lag) or None
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


# %% [markdown]
# ## Non-linear load: a spline for the acute:chronic ratio
# The training-load literature claims a "sweet spot" of the acute:chronic ratio, which a
# straight line cannot show. A natural cubic spline (knots placed as R's `splines::ns`) lets
# the data draw the curve; it is read relative to the median ratio, with a pointwise 95 %
# band from the full covariance of the spline coefficients, and tested against the straight
# line by a likelihood-ratio test of the two ML fits. Ratios are undefined after 0-km
# chronic weeks, so those reports are dropped and counted (`docs/models.md`, "Non-linear and
# lagged load").

# %%
spline_fits = {column: attempt(fit_lmm, exposures=[column], splines={column: df})
               for column, df in spline_request.items()}
for column, fit in spline_fits.items():
    if fit is None:
        continue
    test = fit.extra["nonlinearity"][column]
    display(Markdown(
        f"**{labels.label(column)}**, ns(df {spline_request[column]}), {fit.n_obs} reports: "
        f"likelihood-ratio test of non-linearity chi-square {test['statistic']:.3g} on "
        f"{test['df']} df, p = {labels.format_p(test['p_value'])} (ML fits, spline vs linear)."
    ))
    for warning in fit.warnings:
        display(Markdown(f"*Note:* {labels.humanize(warning)}"))
    curve = exposure_response(fit, exposure=column)
    used = panel.dropna(subset=["pain", column])[column]
    ax = plots_nonlinear.exposure_response_plot(
        curve, values=used, xlabel=labels.axis_label(column),
        ylabel="pain (NRS points) vs the median")
    ax.set_title(f"{labels.label(column)}: spline with 95 % band, data as a rug");

# %% [markdown]
# ## Lagged load: a distributed-lag model of daily distance
# Risk may build over the weeks after a spike. A distributed-lag non-linear model (DLNM;
# Gasparrini et al. 2010) lets the effect of one day's distance depend both on its size (a
# spline of km) and on how many days before the reference day it was run (a spline of the
# lag, 0 to `max_lag` days). Three readings, all relative to a rest day (0 km): the
# lag-response of one day at a high load, the cumulative effect of that load on every day of
# the window, and the whole exposure-lag surface.

# %%
if dlnm_request is None:
    display(Markdown("No DLNM requested (`dlnm` is empty)."))
else:
    load, max_lag = dlnm_request
    cb = crossbasis(daily, panel, column=load, max_lag=max_lag)

    def fit_dlnm(rows: pd.DataFrame, **kwargs: Any) -> ModelResult:
        """The LMM with the cross-basis columns as its exposures."""
        return fit_lmm(rows.join(cb.frame), **kwargs)

    dlnm_fit = attempt(fit_dlnm, exposures=cb.names)
if dlnm_request is not None and dlnm_fit is not None:
    loads = daily[load].to_numpy(float)
    running = loads[np.isfinite(loads) & (loads > 0)]
    at = float(np.round(np.quantile(running, 0.9), 1))  # the 90th percentile of running days
    grid = np.linspace(0.0, float(np.quantile(running, 0.95)), 21)
    pred = crosspred(cb, dlnm_fit, at=[*grid, at])
    cum = pred["cumulative"].set_index("x")
    display(Markdown(
        f"{dlnm_fit.n_obs} reports; cross-basis {cb.n_var} x {cb.n_lag} columns. "
        f"{at:g} {labels.unit(load)} on every day of lags 0-{max_lag} vs rest days: "
        f"cumulative effect {cum.loc[at, 'estimate']:.3g} NRS points (95 % CI "
        f"{cum.loc[at, 'ci_low']:.3g} to {cum.loc[at, 'ci_high']:.3g})."
    ))
    surface = pred["surface"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), layout="constrained")
    plots_nonlinear.lag_response_plot(surface, at=at, ylabel="pain (NRS) vs rest",
                                      ax=axes[0])
    cumulative = pred["cumulative"].loc[lambda t: t["x"].isin(grid)].reset_index(drop=True)
    cumulative.attrs["reference"] = 0.0
    plots_nonlinear.exposure_response_plot(
        cumulative, xlabel=f"{labels.axis_label(load)} on each day",
        ylabel="cumulative pain (NRS) vs rest", ax=axes[1])
    plots_nonlinear.exposure_lag_contour(surface.loc[surface["x"].isin(grid)],
                                         xlabel=labels.axis_label(load),
                                         label="pain (NRS) vs rest", ax=axes[2])
    fig.suptitle(f"Distributed-lag model of {labels.label(load).lower()}, lags 0-{max_lag} "
                 "days");

# %% [markdown]
# ## Sensitivity analyses of the ratio
# Reviewers ask whether the headline effect of the ratio survives other reasonable choices:
# exposures at the report date (lag 0) instead of the week before, acute and chronic load as
# separate terms (ratio coupling; Lolli et al. 2019) with their interaction, and a spline in
# place of the straight line, and unlogged gaps of 21+ days read as missing instead of rest
# (the panel rebuilt from the clean tables with that one setting changed). Each row is its own
# fit on the rows it can use.

# %%
headline = next(iter(spline_request), "acwr_rolling")
try:
    sens = sensitivity(panel, exposure=headline, daily=daily,
                       spline_df=spline_request.get(headline, 3),
                       exposure_lag_days=int(meta["exposure_lag_days"]),
                       missing_panel=rebuild_panel(data, unlogged_gaps="missing"))
except KneeloadError as error:
    display(Markdown(f"**Not done:** {error.one_line()}"))
else:
    with pd.option_context("display.max_colwidth", None):
        display(reports.sensitivity_display(sens).set_index("Analysis"))
