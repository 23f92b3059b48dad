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
# # 1. Data quality: what came in, what was kept, and what is missing
#
# Before any exposure or model, a reader needs to know what the numbers rest on: which files
# were read, which rows the cleaning rules fixed or set aside (and why), how long each runner
# was followed, and where their training log is silent. Everything here comes from the
# processed folder that `kneeload build` wrote; nothing is recomputed from the raw files.

# %% tags=["parameters"]
dataset: str = "demo"  # processed dataset: a name under data/processed/ or a folder path
cohort: str = ""  # cohort name from runners.csv; empty for every cohort

# %%
import itertools

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from analysis import paths, reports
from analysis.pipeline import load_processed

processed = paths.processed_dir(dataset)
data = load_processed(processed)
runners, daily, panel = data["runners"], data["daily"], data["panel"]
daily = daily[daily["in_follow_up"]]  # the lead-in before follow-up only feeds exposures
if cohort:
    keep = set(runners.loc[runners["cohort"] == cohort, "runner_id"])
    runners = runners[runners["runner_id"].isin(keep)]
    daily = daily[daily["runner_id"].isin(keep)]
    panel = panel[panel["runner_id"].isin(keep)]
cleaning, audit, meta = data["cleaning_report"], data["audit"], data["panel_meta"]
display(Markdown(
    f"Dataset **{meta.get('dataset', dataset)}** (input format: {cleaning.get('format', '?')}), "
    f"{'cohort **' + cohort + '**' if cohort else 'all cohorts'}: "
    f"{len(runners)} runners, {len(daily)} runner-days inside follow-up, "
    f"{len(panel)} pain reports."
))

# %% [markdown]
# ## What was ingested
# One row per input file: how it was decoded and how many data rows it held. The counts
# per cohort are those of the built panel (`counts.json`).

# %%
pd.DataFrame(
    [{"file": name, "encoding": info.get("encoding"), "rows read": info["read"]}
     for name, info in sorted(cleaning.get("files", {}).items())]
)

# %%
pd.DataFrame(data["counts"].get("cohorts", {})).T.rename_axis("cohort")

# %% [markdown]
# ## The cleaning audit
# For every input file, rows read = kept + merged (duplicates folded into a kept row) +
# quarantined, and the build stops if that does not add up. *Fixed* rows were kept after a
# recorded repair (a decimal comma, miles to km, ...). The rules and their reason codes are in
# `docs/cleaning.md`.

# %%
reports.cleaning_counts(cleaning).drop(columns=["reasons", "fixes", "lines"], errors="ignore")

# %% [markdown]
# The same audit by reason: what each rule did, file by file. Every quarantined row is listed
# with its file, line, column and value in `quarantine.csv` in the processed folder.

# %%
by_reason = pd.DataFrame(
    [{"file": name, "action": action, "reason": reason, "rows": n}
     for name, info in sorted(cleaning.get("files", {}).items())
     for action, key in (("set aside", "by_reason"), ("fixed", "fixes"))
     for reason, n in sorted(info.get(key, {}).items())],
    columns=["file", "action", "reason", "rows"],
)
if by_reason.empty:
    display(Markdown("No rule fired: every row of every file was kept as read."))
by_reason

# %%
quarantine = data["quarantine"]
display(Markdown(f"`quarantine.csv` holds **{len(quarantine)}** rows; the first ten:"))
quarantine.head(10)

# %% [markdown]
# ## Follow-up and reporting coverage per runner
# A runner's follow-up is the window in `runners.csv` (else first to last logged day). Inside
# it a day without a run counts as a rest day with 0 km; outside it nothing is known. Pain is
# reported weekly, so *report coverage* is the share of followed weeks with a pain report.

# %%
coverage = reports.follow_up_coverage(daily, panel, runners)
(coverage.groupby("cohort")
 [["days_followed", "run_days", "km", "pain_reports", "report_coverage"]]
 .median().round(2).rename_axis("cohort (median per runner)"))

# %%
display(Markdown("The five runners with the lowest report coverage:"))
(coverage.sort_values(["report_coverage", "pain_reports"]).head(5)
 [["cohort", "days_followed", "run_days", "pain_reports", "report_coverage"]].round(2))

# %% [markdown]
# Each row below is a runner (grouped by cohort), each column a calendar week: the colour is the
# km run that week (white: no run at all) and a dot marks a week with a pain report. Grey is
# outside follow-up, where nothing is known.

# %%
weeks = daily.assign(week=daily["date"].dt.to_period("W-SUN").dt.start_time)
order = coverage.sort_values(["cohort"]).index  # runner_id is already sorted within a cohort
km_grid = weeks.pivot_table(index="runner_id", columns="week", values="distance_km",
                            aggfunc="sum").reindex(order)
reported = (panel.assign(week=panel["date"].dt.to_period("W-SUN").dt.start_time)
            .pivot_table(index="runner_id", columns="week", values="pain", aggfunc="size")
            .reindex(index=order, columns=km_grid.columns))
fig, ax = plt.subplots(figsize=(10, 6), layout="constrained")
ax.set_facecolor("lightgrey")
sns.heatmap(km_grid, ax=ax, cmap="Blues", cbar_kws={"label": "km per week"},
            xticklabels=4, yticklabels=False)
rows, cols = reported.notna().to_numpy().nonzero()
ax.scatter(cols + 0.5, rows + 0.5, s=4, color="tab:red", label="pain report")
cohort_rows = coverage.loc[order, "cohort"].reset_index(drop=True)
edges = [*cohort_rows.index[cohort_rows.ne(cohort_rows.shift())], len(order)]
ax.hlines(edges[1:-1], 0, km_grid.shape[1], color="black", linewidth=1)
ax.set_yticks([(a + b) / 2 for a, b in itertools.pairwise(edges)],
              cohort_rows.iloc[edges[:-1]].tolist())
ax.set(xlabel="week", ylabel=f"{len(order)} runners",
       title="Weekly km and pain reports per runner")
ax.set_xticklabels([t.get_text()[:10] for t in ax.get_xticklabels()], rotation=30)
ax.legend(loc="upper right", fontsize="small");

# %% [markdown]
# ## Possibly unlogged gaps
# A stretch of 21 or more days without a run inside follow-up is more often a watch left at
# home than three weeks of rest. The build flags these stretches; by default they still count
# as rest, and `kneeload build --unlogged-gaps missing` treats them as unknown instead.

# %%
gaps = pd.DataFrame(audit.get("unlogged_gaps", {}).get("rows", []),
                    columns=["runner_id", "first_day", "last_day", "days"])
display(Markdown(
    f"Unlogged-gap policy for this build: **{meta.get('unlogged_gaps', '?')}** "
    f"(threshold {meta.get('unlogged_gap_min_days', '?')} days). "
    + (f"{len(gaps)} stretches covering {int(gaps['days'].sum())} runner-days were flagged."
       if len(gaps) else "No runner has such a stretch.")
))
gaps

# %% [markdown]
# Other things the build counted but did not drop: duplicate pain reports on one day (the
# highest score is kept) and pain reports from runners not in `runners.csv`.

# %%
pd.DataFrame(
    [{"check": name.replace("_", " "), "count": audit[name].get("count", 0)}
     for name in ("duplicate_pain_reports", "pain_unknown_runner") if name in audit]
)
