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

# %% tags=["parameters"]
dataset: str = "demo"  # processed dataset: a name under data/processed/ or a folder
cohort: str = "recreational"  # cohort name from runners.csv
outcome: str = "auto"  # "auto" (the dataset's declared outcome), "pain" (NRS) or "pain_any"
exposures: str = "auto"  # "auto" (defaults the data support) or comma-separated panel columns
random_slopes: str = ""  # comma-separated exposures with a random slope per runner
min_cohort_size: int = 5  # runners; smaller cohorts get no statistics (privacy)
seed: int = 0  # numpy seed set before any figure is drawn
summary_path: str = ""  # where kneeload report collects the index numbers (empty: none)
takeaways: bool = True  # write figures/ (SVG, 300 dpi PNG) and tables/ beside the report
splines: str = ""  # COLUMN:DF natural splines, e.g. "acwr_rolling:3" (empty: none)
dlnm: str = ""  # COLUMN:MAX_LAG distributed-lag model of a daily load, e.g. "distance_km:28"
sensitivity: bool = False  # sensitivity table of the headline exposure

# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, Markdown, display

from analysis import labels, plots, reports, tables
from analysis.models import conditional_modes
from analysis.reports import time_to_event

np.random.seed(seed)  # noqa: NPY002 - for libraries drawing from numpy's global RNG
plots.apply_theme()  # one seaborn theme, colour-blind palette, fonts >= 9 pt at page width
slope_list = reports.split_list(random_slopes)
reports.check_min_cohort_size(min_cohort_size)  # the privacy floor, also when run directly
view = reports.load_cohort(dataset, cohort, min_cohort_size=min_cohort_size)
label = reports.markdown_text(cohort)  # the label as literal text: no markup, tag or link
spec = reports.report_outcome(outcome, view.meta)  # label, unit, column, default model
choice = reports.choose_exposures(view, exposures)  # "auto": what the data support
exposure_list = choice.chosen
# figures/ and tables/ next to the report (the folder kneeload report collects it in)
take = reports.TakeAways(reports.takeaway_folder(summary_path) if takeaways else None)
event = (f"Pain is present at **NRS >= {view.pain_threshold:g}** (the threshold the panel "
         "was built with). " if spec.key in ("nrs", "pain_any") else "")
display(HTML(reports.whole_tables()))  # every table cell in full: long cells wrap, no "..."
display(Markdown(
    f"# {spec.title}: cohort **{label}**\n\n"
    f"Outcome: **{spec.label}**: {spec.description} "
    f"Exposures are measured **{view.meta.get('exposure_lag_days')} days** before each "
    "report (the reference day), so that an outcome which cuts training is not regressed on "
    f"the training it cut. {event}{view.id_statement}"
    + "\n\n" + "\n".join(f"- {reports.markdown_text(line)}"
                           for line in choice.sentences(human=True))
))

# %% [markdown]
# ## Participants
# Table 1 describes the runners with at least one pain report (median and interquartile
# range, or n and %). The participant flow diagram, after the model, follows them from
# enrolment to the model.

# %%
table_one = reports.cohort_table_one(view, outcome=spec)
display(Markdown("**Table 1.** Characteristics of the cohort. "
                 + take.table(table_one, "table1", caption="Cohort characteristics")))
table_one

# %% [markdown]
# ## Data quality
# This cohort's rows after cleaning, then per input file its rows kept, merged (a duplicate
# of a kept record) and quarantined, with reasons. Only this cohort's rows are counted, so
# no other cohort can be read off these tables; the whole dataset's audit is
# `cleaning_report.json` of the build.

# %%
display(reports.cohort_audit(view).set_index("count"))
reports.cohort_file_audit(view).set_index("file")

# %% [markdown]
# ## Cohort summary

# %%
reports.cohort_summary(view, exposures=exposure_list, outcome=spec).set_index("measure")

# %% [markdown]
# ## Training and the outcome over time

# %%
fig, axes = plots.panel_grid(2)
plots.weekly_mileage(view.daily, ax=axes[0])
if view.panel.empty:
    axes[1].set_axis_off()
    display(Markdown("No reports in this cohort."))
else:
    plots.pain_over_time(view.panel, outcome=spec, ax=axes[1])
take.show(fig, "over_time", labels.caption("weekly_mileage") + " "
          + labels.caption("pain_over_time", outcome=spec.label));

# %% [markdown]
# ## Exposures and the outcome
# Raw associations, before adjusting for anything.

# %%
if not exposure_list or view.panel.dropna(subset=exposure_list).empty:
    display(Markdown("No report has all exposures known; nothing to plot."))
else:
    fig, axes = plots.panel_grid(1 + len(exposure_list))
    plots.jump_bands_vs_pain(view.panel, outcome=spec, ax=axes[0])
    for ax, exposure in zip(axes[1:], exposure_list, strict=True):
        plots.exposure_vs_pain(view.panel, exposure, outcome=spec, ax=ax)
    take.show(fig, "exposures", labels.caption("exposure_bins", outcome=spec.label));

# %% [markdown]
# ## Mixed model
# The outcome on the exposures with a random intercept per runner: a linear mixed model for
# a score (REML; standard errors in lme4's GLS form), or a logistic one for a flag (pain
# present, any injury), as the outcome's kind says. Effects are shown per step a clinician
# reads (e.g. per +10 % mileage jump); the same steps are used in `summary.json`, the index
# page and `kneeload power --effect`.

# %%
attempt = reports.fit_cohort_model(view, outcome=outcome, exposures=exposure_list,
                                   random_slopes=slope_list)
display(Markdown(f"Outcome modelled: **{spec.label}** "
                 f"({'logistic' if spec.binary else 'linear'} mixed model)."))
result = attempt.result
if result is None:
    display(Markdown(f"**No model for this cohort.** {reports.markdown_text(attempt.reason)}"))
else:
    banner = reports.model_banner(result, human=True)
    if banner is not None:
        display(HTML(banner))
    display(Markdown(f"{result.n_obs} reports from {result.n_runners} runners; "
                     f"{reports.fit_status_line(result)}."))
    if result.warnings:
        display(Markdown("Fit notes:\n" + "\n".join(
            f"- {reports.markdown_text(labels.humanize(w))}" for w in result.warnings)))
    model_table = tables.model_table(result, outcome=spec)
    display(Markdown("**Table 2.** Fixed effects per reading step (95 % CI). "
                     + take.table(model_table, "model", caption="Fixed effects")))
    display(model_table.set_index("Term"))
    display(Markdown("\n".join(f"- {reports.markdown_text(s)}" for s in reports.plain_language(
        result.table, outcome=spec, human=True))))

# %% [markdown]
# ## Participant flow

# %%
flow = reports.cohort_flow(view, result)
ax = plots.flow_diagram(flow)
take.show(ax.figure, "flow", labels.caption("flow"));

# %%
if result is not None:
    display(Markdown("The forest plot shows the effects in the reading units of the table "
                     "above; the panels after it the model's prediction along each "
                     "exposure. Predictions are clipped to the outcome's range; a note on "
                     "the panel says when the linear model's prediction ran outside it."))
    effects = reports.effects_table(result.table)
    odds = "odds_ratio" in result.table.columns
    fig, ax = plt.subplots(figsize=plots.forest_figure_size(len(effects)),
                           layout="constrained")
    plots.forest_plot(effects, null=1.0 if odds else 0.0, outcome=spec, ax=ax)
    take.show(fig, "forest", labels.caption(
        "forest", null="odds ratio 1" if odds else "0"))
    fig, axes = plots.panel_grid(len(exposure_list))
    for ax, exposure in zip(axes, exposure_list, strict=True):
        plots.predicted_pain(result, view.panel, exposure=exposure, outcome=spec, ax=ax)
    take.show(fig, "predicted", labels.caption("predicted", outcome=spec.noun));

# %% [markdown]
# ## Random-effect spread and diagnostics
# How much runners differ beyond the exposures (variance components, ICC), each runner's
# conditional mode with its 95 % interval, and the residual checks of the linear model.

# %%
modes = None
if result is not None:
    variance = tables.variance_table(result)
    display(Markdown("**Table 3.** Variance components. "
                     + take.table(variance, "variance", formats=("csv",))))
    display(variance.set_index("Component"))
    if result.model == "lmm":
        modes = conditional_modes(view.panel, result)
        # the design's random-effect names (``<x>_within`` under within-between centering)
        terms = [c for c in modes.per_runner.columns
                 if c != "runner_id" and not c.endswith("_se")]
        fig, axes = plots.panel_grid(len(terms))
        for ax, term in zip(axes, terms, strict=True):
            plots.caterpillar(modes.per_runner, term=term, ax=ax)
        take.show(fig, "runner_effects", labels.caption("caterpillar"))
        axes = plots.residual_diagnostics(modes.per_report, outcome=spec)
        take.show(axes[0].figure, "residuals", labels.caption("residuals"));

# %% [markdown]
# ## Time to pain episode
# An episode starts at a report with pain at or above the threshold and is resolved by two
# consecutive reports below it (`docs/episodes.md`). A runner is at risk of a new episode
# on the days after the first report that are not inside an episode; incidence counts only
# those days (first episodes over the days before any episode, all episodes over every day
# at risk). Two intervals are shown: the exact Poisson one treats every episode as
# independent, the runner bootstrap resamples runners (episodes of one runner are alike).

# %%
tte = time_to_event.cohort_time_to_event(view, exposures=exposure_list, seed=seed)
episode_table = time_to_event.episodes_table(tte)
display(Markdown("**Table 4.** Pain episodes and time at risk. "
                 + take.table(episode_table, "episodes", caption="Episodes and time at risk")))
display(episode_table.set_index("Measure"))
if tte.curves is None:
    display(Markdown("No cumulative-incidence curve: "
                     f"{reports.markdown_text(tte.curve_reason)}."))
else:
    fig, ax = plt.subplots(figsize=plots.FIGSIZE, layout="constrained")
    plots.cumulative_incidence_plot(tte.curves, band=time_to_event.CURVE_BAND,
                                    ends=tte.curve_ends, overall=tte.overall, ax=ax)
    take.show(fig, "cumulative_incidence", labels.caption(
        "cumulative_incidence", band=labels.label(time_to_event.CURVE_BAND).lower()))
display(Markdown(time_to_event.section_text(tte)))
if tte.result is not None:
    hazards = time_to_event.hazard_table(tte)
    display(Markdown("**Table 5.** Hazard ratios of a new pain episode per reading step "
                     "(Andersen-Gill, runner-clustered robust 95 % CI). "
                     + take.table(hazards, "hazard_ratios", caption="Hazard ratios")))
    display(hazards.set_index("Term"))
if tte.result is not None and tte.forest_reason is not None:
    display(Markdown(f"No hazard-ratio figure: {tte.forest_reason}."))
elif tte.result is not None:
    fig, ax = plt.subplots(figsize=plots.forest_figure_size(len(hazards)),
                           layout="constrained")
    plots.hazard_ratio_forest(time_to_event.forest_rows(tte),
                              doubtful=time_to_event.doubtful_terms(tte), ax=ax)
    take.show(fig, "hazard_forest", labels.caption(
        "hazard_forest", model="Andersen-Gill model of every episode"));

# %%
# Non-linear and lagged load (splines, dlnm, sensitivity): nothing, not even a heading,
# unless one of them is asked for.
nonlinear = reports.nonlinear_section(view, splines=splines, dlnm=dlnm,
                                      sensitivity=sensitivity, outcome=outcome,
                                      exposures=exposure_list, folder=take.folder)
nonlinear.show()

# %% [markdown]
# ## Runners
# Identifiers as stated at the top of this report.

# %%
reports.runner_table(view, modes, outcome=spec).rename(
    columns=reports.runner_table_labels(spec)).set_index("Runner")

# %%
summary = reports.write_summary(summary_path, view, attempt, exposures=choice,
                                time_to_event=time_to_event.summary_block(tte),
                                nonlinear=reports.nonlinear_summary(nonlinear))
