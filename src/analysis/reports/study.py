"""The study-wide view of the index: each headline effect across cohorts and a pooled model.

The pooled model pools the cohorts the index shows with a model (never a suppressed one:
those cohorts' rows are not read at all), with cohort as a fixed effect, and tests the
exposure x cohort interaction by a likelihood-ratio test of two ML fits
(:func:`analysis.models.likelihood_ratio_test`): the restricted model has the exposures and
the cohort dummies, the full model adds one product column per exposure and non-reference
cohort. It runs once per report run, in the parent process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.effects import add_reading_units, null_effect, step_value_columns
from analysis.errors import KneeloadError
from analysis.labels import (
    format_number,
    format_p,
    humanize,
    interval_texts,
    step_label,
    term_label,
)
from analysis.outcomes import FALLBACK_OUTCOME, OUTCOME_SPECS
from analysis.reports.effects import step_values

#: Per-unit values of each headline effect the index reads from ``summary.json``.
HEADLINE_PER_UNIT = ("term", "estimate", "ci_low", "ci_high")
#: Unit of a linear model's headline effects in a summary written before ``outcome_unit``
#: was recorded (every such model was of NRS knee pain).
FALLBACK_UNIT = OUTCOME_SPECS[FALLBACK_OUTCOME].unit
#: Smallest number of cohorts a pooled model and an interaction test need.
MIN_POOLED_COHORTS = 2
#: Most cohorts the interaction test is run for: its full model has (cohorts - 1) x
#: exposures extra terms, and the LMM engine's cost grows with the cube of the fixed
#: effects (20 cohorts, 3 exposures: 57 extra terms, ~6 s; 100 cohorts: ~400 terms, minutes).
MAX_INTERACTION_COHORTS = 20
#: Column of the pooled panel holding the cohort code (``k000``, ``k001``, ...): codes,
#: not labels, enter the design, so no user-supplied text becomes a term name.
COHORT_CODE = "cohort_code"
#: Folder under the reports folder with the index's figure files. The dot keeps it apart
#: from every cohort folder (:func:`analysis.reports.manifest.safe_name` never makes one).
FIGURES_DIR = "index.figures"
#: File stem of the forest plot across cohorts (``.svg`` and ``.png`` are written).
FOREST_STEM = "effects_across_cohorts"
#: Statuses whose summary the study view reads (a report on disk with its model).
SHOWN_STATUSES = ("ok", "skipped")
#: Folder under the reports folder with the index's table files (Table 1 over the cohorts
#: shown), apart from every cohort folder as :data:`FIGURES_DIR` is.
TABLES_DIR = "index.tables"
#: File stem of the index's Table 1 (``.csv``, ``.md`` and ``.tex`` are written).
TABLE_ONE_STEM = "table1"
#: Formats of the index's Table 1 files (:func:`analysis.tables.write_table`).
TABLE_FORMATS = ("csv", "md", "tex")
#: Most cohort columns of Table 1 the index page shows; with more cohorts the page shows the
#: overall column only (a 100-column table does not fit a page) and the files keep them all.
MAX_TABLE_ONE_COLUMNS = 8


@dataclass
class PooledModel:
    """A pooled fit over cohorts and its interaction test (or why there is none).

    ``effects`` has one row per exposure: ``term``, ``label`` (human, with the reading step),
    ``estimate``, ``ci_low``, ``ci_high`` (reading units; odds ratios for a flag) and ``p``
    (formatted). ``interaction`` holds the likelihood-ratio test (``statistic``, ``df``,
    ``p_value``, ``p_text``) or None with ``interaction_note`` saying why.
    """

    cohorts: list[str]
    outcome_label: str = ""
    scale: str = "nrs"
    n_obs: int = 0
    n_runners: int = 0
    converged: bool | None = None
    problems: list[str] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    interaction: dict[str, Any] | None = None
    interaction_note: str | None = None
    note: str | None = None

    @property
    def fitted(self) -> bool:
        """Whether a pooled model was fitted."""
        return bool(self.effects)


def headline_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Headline effects of a summary in reading units (:func:`analysis.reports.effects.
    step_values`, recomputed from the per-unit values, so summaries written before the step
    columns read the same)."""
    headline = summary.get("headline") or []
    if not headline:
        return []
    table = pd.DataFrame.from_records(headline)[list(HEADLINE_PER_UNIT)]
    values = step_values(table, odds=summary.get("scale", "nrs") == "odds")
    unit = summary.get("outcome_unit") or FALLBACK_UNIT
    return [{"term": row["term"], "phrase": row["step_label"], "scale": row["scale"],
             "unit": unit, "estimate": float(row["estimate"]), "ci_low": float(row["ci_low"]),
             "ci_high": float(row["ci_high"])} for row in values.to_dict(orient="records")]


def reported_cohorts(outcomes: Sequence[Any]) -> list[Any]:
    """The cohorts whose report the index shows (``ok`` or ``skipped``, with or without a
    model); suppressed, failed and not-run cohorts are not among them."""
    return [o for o in outcomes if o.status in SHOWN_STATUSES]


def study_cohorts(outcomes: Sequence[Any]) -> list[Any]:
    """The cohorts the study view shows: a report on disk (``ok`` or ``skipped``) whose
    summary has a fitted model; suppressed, failed and not-run cohorts never appear."""
    return [o for o in outcomes if o.status in SHOWN_STATUSES
            and (o.summary or {}).get("headline")]


def pooled_request(outcomes: Sequence[Any]) -> tuple[str, list[str], str | None]:
    """Outcome key and exposures every shown cohort was modelled with (their intersection,
    in the first cohort's order), or a reason when they cannot be pooled."""
    summaries = [o.summary for o in study_cohorts(outcomes)]
    if len(summaries) < MIN_POOLED_COHORTS:
        return "", [], (f"a pooled model needs at least {MIN_POOLED_COHORTS} cohorts with a "
                        f"model; this run shows {len(summaries)}")
    keys = {s.get("outcome") for s in summaries}
    if len(keys) != 1 or None in keys:
        return "", [], "the cohorts modelled different outcomes; no pooled model"
    common = [x for x in summaries[0].get("exposures") or []
              if all(x in (s.get("exposures") or []) for s in summaries)]
    if not common:
        return "", [], "the cohorts share no modelled exposure; no pooled model"
    return next(iter(keys)), common, None


def pooled_panel(panel: pd.DataFrame, cohorts: Sequence[str]) -> pd.DataFrame:
    """The rows of ``cohorts`` only, with :data:`COHORT_CODE` (``k000`` ... in the given
    order; the first is the reference level)."""
    codes = {cohort: f"k{number:03d}" for number, cohort in enumerate(cohorts)}
    rows = panel[panel["cohort"].isin(codes)]
    return rows.assign(**{COHORT_CODE: rows["cohort"].map(codes)})


def interaction_columns(panel: pd.DataFrame, exposures: Sequence[str]) -> pd.DataFrame:
    """One product column ``<exposure>__x__<code>`` per exposure and non-reference cohort
    (exposure where the row is in that cohort, else 0), the exposure x cohort interaction."""
    codes = sorted(panel[COHORT_CODE].unique())[1:]
    columns = pd.DataFrame({f"{x}__x__{code}": panel[x].where(panel[COHORT_CODE] == code, 0.0)
                            for x in exposures for code in codes}, index=panel.index)
    return pd.concat([panel, columns], axis=1)


def fit_pooled(panel: pd.DataFrame, cohorts: Sequence[str], *, outcome: str,
               exposures: Sequence[str]) -> PooledModel:
    """Pooled mixed model over ``cohorts`` with cohort as a fixed effect, and the
    likelihood-ratio test (ML) of the exposure x cohort interaction.

    Parameters
    ----------
    panel
        Processed panel (one row per pain report) with a ``cohort`` column.
    cohorts
        Cohort labels to pool (the first is the reference level of the cohort effect).
    outcome
        Outcome key of :data:`analysis.outcomes.OUTCOME_SPECS` (``nrs``, ``pain_any``, ...).
    exposures
        Exposure columns; estimates are printed in their reading units.

    Returns
    -------
    PooledModel; a model that cannot be fitted gives one whose ``note`` says why.
    """
    from analysis.models import fit_model, likelihood_ratio_test

    spec = OUTCOME_SPECS[outcome]
    kind = "glmm" if spec.binary else "lmm"
    pooled = PooledModel(cohorts=list(cohorts), outcome_label=spec.label,
                         scale="odds" if spec.binary else "nrs")
    data = pooled_panel(panel, cohorts)
    request: dict[str, Any] = {"model": kind, "outcome": spec.column,
                               "exposures": list(exposures),
                               "covariates": [f"C({COHORT_CODE})"]}
    if not spec.binary:  # normal (Wald) intervals: thousands of reports, Satterthwaite's
        request["ddf"] = "wald"  # df would cost most of the fit with ~100 cohort terms
    try:
        main = fit_model(data, **request)
    except KneeloadError as error:
        pooled.note = f"no pooled model: {error}"
        return pooled
    table = add_reading_units(main.table)
    table = table[table["term"].isin(exposures)]
    odds = "odds_ratio_step" in table.columns
    values = step_value_columns(odds)
    pooled.n_obs, pooled.n_runners = int(main.n_obs), int(main.n_runners)
    pooled.converged = bool(main.converged)
    pooled.problems = [humanize(p) for p in main.problems]  # shown on the index page
    pooled.effects = []
    for row in table.to_dict(orient="records"):
        estimate, low, high = (float(row[v]) for v in values)
        pooled.effects.append({
            "term": row["term"], "label": step_label(row["term"]),
            "short": term_label(row["term"]), "estimate": estimate, "ci_low": low,
            "ci_high": high, "p": format_p(row.get("p_value")),
            **interval_texts(estimate, low, high, ratio=odds, signed=not odds)})
    if len(cohorts) > MAX_INTERACTION_COHORTS:
        pooled.interaction_note = (
            f"no interaction test: {len(cohorts)} cohorts would give the full model "
            f"{(len(cohorts) - 1) * len(exposures)} interaction terms; it is run for at most "
            f"{MAX_INTERACTION_COHORTS} cohorts")
        return pooled
    products = interaction_columns(data, exposures)
    extra = [c for c in products.columns if "__x__" in c]
    ml = {} if spec.binary else {"reml": False}
    try:
        restricted = fit_model(products, **request, **ml)
        full = fit_model(products, **{**request, "covariates": [*request["covariates"],
                                                                *extra]}, **ml)
        test = likelihood_ratio_test(restricted, full)
    except KneeloadError as error:
        pooled.interaction_note = f"no interaction test: {error}"
        return pooled
    pooled.interaction = {**test, "p_text": format_p(test["p_value"]),
                          "statistic_text": format_number(test["statistic"]),
                          "converged": bool(restricted.converged and full.converged)}
    return pooled


def forest_rows(outcomes: Sequence[Any]) -> pd.DataFrame:
    """One row per shown cohort and headline effect, in reading units: ``cohort``,
    ``term``, ``estimate``, ``ci_low``, ``ci_high``, ``flag`` ("" or the model's problems)."""
    records = []
    for outcome in study_cohorts(outcomes):
        summary = outcome.summary
        problems = list(summary.get("problems") or [])
        if summary.get("converged") is False and "not converged" not in problems:
            problems.insert(0, "not converged")
        for row in headline_rows(summary):
            records.append({"cohort": outcome.cohort, "term": row["term"],
                            "scale": row["scale"], "estimate": row["estimate"],
                            "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                            "flag": "; ".join(problems)})
    return pd.DataFrame.from_records(records, columns=["cohort", "term", "scale", "estimate",
                                                       "ci_low", "ci_high", "flag"])


#: Characters per line of a cohort label and of a panel title in the forest plot.
FOREST_LABEL_CHARS, FOREST_TITLE_CHARS = 28, 44
#: Forest plot: width of one exposure's panel, and of one character of a cohort label (in).
FOREST_PANEL_IN, FOREST_INCH_PER_CHAR = 3.6, 0.075


def _plain(text: str) -> str:
    """A label as literal text for matplotlib: a ``$`` would start mathtext, so it is
    escaped; outside mathtext a backslash is drawn as itself (doubling it drew two)."""
    return str(text).replace("$", r"\$")


def forest_across_cohorts(rows: pd.DataFrame, pooled: PooledModel | None, *,
                          outcome_unit: str = "") -> Any:
    """Forest plot of each headline effect across cohorts (one panel per exposure, one row
    per cohort, 95 % CI whiskers; a hollow marker and "(warning)" for a cohort whose model
    has problems; the pooled estimate as a diamond at the bottom).

    Returns the matplotlib Figure.
    """
    import textwrap

    import matplotlib.pyplot as plt

    from analysis.plots import PLAIN_TICKS_RC, ratio_axis

    terms = list(dict.fromkeys(rows["term"]))
    cohorts = list(dict.fromkeys(rows["cohort"]))
    # a long cohort label wraps onto lines of FOREST_LABEL_CHARS instead of squeezing the
    # panels (a 60-character label made the panel titles overlap)
    # (wrapped before "$" is escaped, so a line break never parts "\" from its "$")
    names = [_plain(textwrap.fill(str(c) + (" (warning)" if rows.loc[rows["cohort"] == c,
                                                                     "flag"].iloc[0] else ""),
                                  FOREST_LABEL_CHARS)) for c in cohorts]
    lines = sum(name.count("\n") + 1 for name in names)
    height = 1.2 + 0.32 * (len(cohorts) + 2) + 0.16 * (lines - len(cohorts))
    # the cohort labels get room of their own beside the panels (at 9 pt about
    # FOREST_INCH_PER_CHAR a character), so a panel keeps its width for its wrapped title
    longest = max((len(line) for name in [*names, "Pooled"] for line in name.split("\n")),
                  default=0)
    width = FOREST_PANEL_IN * len(terms) + FOREST_INCH_PER_CHAR * longest
    with plt.rc_context(PLAIN_TICKS_RC):  # the axes' formatters read it when made
        fig, axes = plt.subplots(1, len(terms), figsize=(width, height),
                                 squeeze=False, layout="constrained", sharey=True)
    pooled_by_term = {e["term"]: e for e in (pooled.effects if pooled else [])}
    odds = bool(len(rows)) and rows["scale"].iloc[0] == "odds"
    for ax, term in zip(axes[0], terms, strict=True):
        part = rows[rows["term"] == term].set_index("cohort").reindex(cohorts)
        for y, cohort in enumerate(cohorts):
            row = part.loc[cohort]
            if pd.isna(row["estimate"]):
                continue
            flagged = bool(row["flag"])
            ax.plot([row["ci_low"], row["ci_high"]], [y, y], color="#444", lw=1.4)
            ax.plot(row["estimate"], y, "o", ms=6, color="#0072B2",
                    markerfacecolor="white" if flagged else "#0072B2")
        effect = pooled_by_term.get(term)
        if effect is not None:
            y = len(cohorts) + 0.5
            ax.fill([effect["ci_low"], effect["estimate"], effect["ci_high"],
                     effect["estimate"]], [y, y - 0.3, y, y + 0.3], color="#D55E00")
        ax.axvline(null_effect(odds), color="#999", ls="--", lw=1)
        if odds:
            ratio_axis(ax)
        ax.set_title(textwrap.fill(_plain(step_label(term)), FOREST_TITLE_CHARS), fontsize=10)
        ax.set_xlabel("Odds ratio (95 % CI)" if odds else
                      f"Difference in {_plain(outcome_unit or 'outcome units')} (95 % CI)")
        ax.tick_params(labelsize=9)
        ax.grid(axis="x", color="#eee")
        ax.set_axisbelow(True)
    ticks = [*range(len(cohorts)), len(cohorts) + 0.5] if pooled_by_term else \
        list(range(len(cohorts)))
    axes[0][0].set_yticks(ticks, [*names, "Pooled"][:len(ticks)])
    axes[0][0].set_ylim(max(ticks) + 0.9, -0.9)
    return fig


def write_figure(fig: Any, folder: Path, stem: str) -> dict[str, str]:
    """Save ``fig`` as SVG and 300 dpi PNG under ``folder`` (:func:`analysis.plots.
    save_figure`, each file renamed into place); returns the file names by format. Closes
    the figure."""
    import matplotlib.pyplot as plt

    from analysis.plots import save_figure

    try:
        paths = save_figure(fig, folder, stem, salt=stem)
    finally:
        plt.close(fig)
    return {fmt: path.name for fmt, path in paths.items()}


def remove_study_files(out: Path) -> None:
    """Remove the index's figure files (a run starts so: a figure drawn before a cohort
    became suppressed must not stay readable while the new run goes on)."""
    for fmt in ("svg", "png"):
        (out / FIGURES_DIR / f"{FOREST_STEM}.{fmt}").unlink(missing_ok=True)


def study_table_one(processed: Path, cohorts: Sequence[str], *, min_cohort_size: int,
                    outcome: str | None = None) -> pd.DataFrame | None:
    """Table 1 over ``cohorts`` (:func:`analysis.tables.table_one`: a column per cohort and
    an overall one), from the processed folder's runners, daily calendar and panel.

    Only the rows of ``cohorts`` are read, and ``min_cohort_size`` is applied again, so a
    suppressed cohort has no column and adds nothing to the overall one (no subtraction
    reveals it). The event rows count the panel's ``pain_any`` at the build's
    ``pain_threshold`` (``panel_meta.json``), or the flag of ``outcome`` when every cohort
    modelled the same non-pain binary outcome (as :func:`analysis.reports.cohort.
    cohort_table_one`). None when no cohort is left or a table is missing.
    """
    import json

    from analysis.tables import table_one

    names = ("runners.parquet", "daily.parquet", "panel.parquet")
    if not cohorts or not all((processed / name).is_file() for name in names):
        return None
    runners = pd.read_parquet(processed / "runners.parquet")
    runners = runners[runners["cohort"].isin(list(cohorts))]
    ids = set(runners["runner_id"])
    panel = pd.read_parquet(processed / "panel.parquet")
    panel = panel[panel["runner_id"].isin(ids)]
    daily = pd.read_parquet(processed / "daily.parquet")
    daily = daily[daily["runner_id"].isin(ids)]
    meta_file = processed / "panel_meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    spec = OUTCOME_SPECS.get(outcome or "")
    flag = spec is not None and spec.binary and spec.key != "pain_any" \
        and spec.column in panel.columns
    table = table_one(runners, daily, panel,
                      threshold=None if flag else meta.get("pain_threshold"),
                      event_column=spec.column if flag and spec else "pain_any",
                      event_label=spec.noun if flag and spec else None,
                      min_cohort_size=min_cohort_size)
    return table if table.shape[1] else None


def remove_table_files(out: Path) -> None:
    """Remove the index's Table 1 files (at run start, like :func:`remove_study_files`)."""
    for fmt in TABLE_FORMATS:
        (out / TABLES_DIR / f"{TABLE_ONE_STEM}.{fmt}").unlink(missing_ok=True)


def table_one_view(out: Path, outcomes: Sequence[Any], *, processed: Path,
                   min_cohort_size: int) -> dict[str, Any] | None:
    """The index's Table 1 over the cohorts whose report it shows (:func:`reported_cohorts`),
    written as ``index.tables/table1.{csv,md,tex}`` (:func:`analysis.tables.write_table`);
    ``header``, ``rows`` (characteristic, cells) and ``files`` for the template, or None
    (and no files) when no cohort is shown. Above :data:`MAX_TABLE_ONE_COLUMNS` cohorts the
    page gets the overall column only (``cohorts_in_files_only``)."""
    from analysis.tables import write_table

    shown = reported_cohorts(outcomes)
    keys = {(o.summary or {}).get("outcome") for o in shown}
    table = study_table_one(processed, [o.cohort for o in shown],
                            min_cohort_size=min_cohort_size,
                            outcome=next(iter(keys)) if len(keys) == 1 else None)
    if table is None:
        remove_table_files(out)
        return None
    files = write_table(table, out / TABLES_DIR, TABLE_ONE_STEM, formats=TABLE_FORMATS,
                        caption="Characteristics of the cohorts shown")
    n_cohorts = table.shape[1] - (table.shape[1] > 1)
    if n_cohorts > MAX_TABLE_ONE_COLUMNS:
        table = table.iloc[:, -1:]  # the overall column; every cohort's is in the files
    return {"header": list(table.columns), "n_cohorts": n_cohorts,
            "cohorts_in_files_only": table.shape[1] == 1 and n_cohorts > 1,
            "rows": [(name, list(values)) for name, values in zip(
                table.index, table.to_numpy().tolist(), strict=True)],
            "files": {fmt: f"{TABLES_DIR}/{path.name}" for fmt, path in files.items()}}


def study_view(out: Path, outcomes: Sequence[Any], *, processed: Path
               ) -> dict[str, Any] | None:
    """Everything the index shows of the study: the forest plot's files (written under
    :data:`FIGURES_DIR`) and the pooled model; None when no cohort has a model."""
    rows = forest_rows(outcomes)
    if rows.empty:
        remove_study_files(out)
        return None
    model: PooledModel | None = None
    outcome, exposures, reason = pooled_request(outcomes)
    cohorts = [o.cohort for o in study_cohorts(outcomes)]
    if reason is None:
        panel = pd.read_parquet(processed / "panel.parquet")
        model = fit_pooled(panel, cohorts, outcome=outcome, exposures=exposures)
    shown = study_cohorts(outcomes)
    unit = (shown[0].summary or {}).get("outcome_unit") or ""
    fig = forest_across_cohorts(rows, model if model and model.fitted else None,
                                outcome_unit=unit)
    files = write_figure(fig, out / FIGURES_DIR, FOREST_STEM)
    return {"figures": {fmt: f"{FIGURES_DIR}/{name}" for fmt, name in files.items()},
            "pooled": model, "pooled_reason": reason or (model.note if model else None),
            "n_cohorts": len(cohorts), "flagged": sorted(set(rows.loc[rows["flag"] != "",
                                                                      "cohort"]))}


__all__ = [
    "FIGURES_DIR",
    "FOREST_STEM",
    "MAX_INTERACTION_COHORTS",
    "MAX_TABLE_ONE_COLUMNS",
    "MIN_POOLED_COHORTS",
    "TABLES_DIR",
    "TABLE_ONE_STEM",
    "PooledModel",
    "fit_pooled",
    "forest_across_cohorts",
    "forest_rows",
    "headline_rows",
    "interaction_columns",
    "pooled_panel",
    "pooled_request",
    "remove_study_files",
    "remove_table_files",
    "reported_cohorts",
    "study_cohorts",
    "study_table_one",
    "study_view",
    "table_one_view",
    "write_figure",
]
