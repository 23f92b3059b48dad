"""What the report notebook calls: one cohort's view of a processed folder, its tables, its
model and the numbers the index reads (``summary.json``).

Values are read, not recomputed: ``pain_any`` and its threshold are the panel's
(``panel_meta.json`` ``pain_threshold``, written by :func:`analysis.exposures.build_panel`);
reading units come from :mod:`analysis.reports.effects`; conditional modes from
:func:`analysis.models.conditional_modes`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import paths
from analysis.errors import ModelSpecError, ReportError
from analysis.privacy import (
    PSEUDONYM_HEX_CHARS,
    PSEUDONYM_PREFIX,
    hide_folders,
    id_salt,
    pseudonymise,
)
from analysis.reports.effects import NRS_STEP_VALUES, ODDS_STEP_VALUES, add_reading_units
from analysis.reports.parameters import DEFAULT_MIN_COHORT_SIZE, OUTCOMES

#: Key of ``panel_meta.json`` holding the threshold ``pain_any`` was built with (NRS 0-10).
PAIN_THRESHOLD_KEY = "pain_threshold"


#: Runner columns a report may show; anything else in runners.csv (names, notes) never is.
SAFE_RUNNER_COLUMNS = ("runner_id", "cohort", "sex", "age", "follow_up_start", "follow_up_end")
#: What :func:`analysis.privacy.pseudonym` produces: IDs of this form are not hashed again.
PSEUDONYM_PATTERN = rf"{PSEUDONYM_PREFIX}[0-9a-f]{{{PSEUDONYM_HEX_CHARS}}}"
#: Identifier columns replaced by pseudonyms (shoe IDs often embed the runner ID).
ID_COLUMNS = ("runner_id", "shoe_id")


@dataclass
class CohortView:
    """One cohort's slice of a processed folder, as the report notebook uses it.

    Runner and shoe identifiers are pseudonyms when ``KNEELOAD_ID_SALT`` is set; runners
    carry only :data:`SAFE_RUNNER_COLUMNS`; quarantined rows carry no raw values.
    """

    cohort: str
    panel: pd.DataFrame
    daily: pd.DataFrame
    runners: pd.DataFrame
    cleaning: dict[str, Any]
    counts: dict[str, Any]
    meta: dict[str, Any]
    quarantine: pd.DataFrame
    pseudonymised: bool = False

    @property
    def pain_threshold(self) -> float | None:
        """The threshold ``pain_any`` was built with (``pain >= it``, NRS 0-10), from
        ``panel_meta.json``; None for a processed folder that does not record it."""
        value = self.meta.get(PAIN_THRESHOLD_KEY)
        return None if value is None else float(value)


def load_cohort(
    dataset: str | Path,
    cohort: str,
    *,
    min_cohort_size: int = DEFAULT_MIN_COHORT_SIZE,
    pain_threshold: float | None = None,
    salt: str | None = None,
) -> CohortView:
    """Load one cohort of a processed folder.

    Parameters
    ----------
    dataset
        Processed folder, or a dataset name under ``data/processed/``.
    cohort
        Cohort label from ``runners.csv``.
    min_cohort_size
        Refuse (ReportError) cohorts with fewer runners (privacy).
    pain_threshold
        The threshold the caller expects ``pain_any`` to have been built with (NRS 0-10);
        None accepts the build's. ``pain_any`` is never recomputed here: it is the panel's,
        built with ``panel_meta.json`` ``pain_threshold``.
    salt
        Pseudonymisation key; default ``KNEELOAD_ID_SALT`` (:func:`analysis.privacy.id_salt`).
    """
    from analysis.pipeline import load_processed

    processed = paths.processed_dir(str(dataset))
    data = load_processed(processed)
    runners = data["runners"]
    if cohort not in set(runners["cohort"]):
        raise ReportError(f"no cohort {cohort!r}; the data has "
                          f"{sorted(runners['cohort'].unique())}", file=processed)
    members = runners[runners["cohort"] == cohort]
    if len(members) < min_cohort_size:
        raise ReportError(f"cohort {cohort!r} has fewer runners than min_cohort_size="
                          f"{min_cohort_size}; suppressed", file=processed)
    ids = set(members["runner_id"])
    salt = id_salt() if salt is None else salt
    already = data["panel_meta"].get("pseudonymised") is True or bool(
        runners["runner_id"].astype("str").str.fullmatch(PSEUDONYM_PATTERN).all())
    if already:  # built with --pseudonymise: keep the processed IDs so they can be looked up
        salt = None
    panel = data["panel"][data["panel"]["runner_id"].isin(ids)].reset_index(drop=True)
    _check_threshold(data["panel_meta"], pain_threshold, processed=processed)
    quarantine = data["quarantine"]
    quarantine = (quarantine[quarantine["runner_id"].isin(ids)]
                  if "runner_id" in quarantine.columns else quarantine.iloc[:0])
    quarantine = quarantine.drop(columns=["value", "runner_id"], errors="ignore")

    def hide(table: pd.DataFrame) -> pd.DataFrame:
        return table.assign(**{c: pseudonymise(table[c], salt=salt)
                               for c in ID_COLUMNS if c in table.columns})

    return CohortView(
        cohort=cohort,
        panel=hide(panel),
        daily=hide(data["daily"][data["daily"]["runner_id"].isin(ids)].reset_index(drop=True)),
        runners=hide(members[[c for c in SAFE_RUNNER_COLUMNS if c in members.columns]]
                     .reset_index(drop=True)),
        cleaning=_hide_folders(data["cleaning_report"], salt=salt),
        counts=data["counts"].get("cohorts", {}).get(cohort, {}),
        meta=data["panel_meta"],
        quarantine=quarantine.reset_index(drop=True),
        pseudonymised=already or salt is not None,
    )


def _check_threshold(meta: Mapping[str, Any], expected: float | None, *, processed: Path
                     ) -> None:
    """Refuse a threshold that is not the one the panel's ``pain_any`` was built with."""
    built = meta.get(PAIN_THRESHOLD_KEY)
    if expected is None or (built is not None and float(built) == float(expected)):
        return
    raise ReportError(f"pain_any in this panel was built with pain >= {built} "
                      f"(panel_meta.json {PAIN_THRESHOLD_KEY}), not {expected:g}; rebuild with "
                      f"'kneeload build --pain-threshold {expected:g}'", file=processed)


def _hide_folders(cleaning: dict[str, Any], *, salt: str | None) -> dict[str, Any]:
    """The audit with every folder name in its input file names hidden
    (:func:`analysis.privacy.hide_folders`) and its notes, which may quote them, dropped."""
    if salt is None:
        return cleaning
    files = {hide_folders(name, salt=salt): counts
             for name, counts in cleaning.get("files", {}).items()}
    return {**cleaning, "files": files, "notes": []}


def cohort_summary(view: CohortView, *, exposures: Sequence[str] = ()) -> pd.DataFrame:
    """Headline description of a cohort: runners, weeks followed, reports, missing data."""
    daily, panel = view.daily, view.panel
    weeks = daily.groupby("runner_id")["date"].agg(lambda d: (d.max() - d.min()).days + 1) / 7
    usable = panel.dropna(subset=list(exposures)) if exposures else panel
    rows = [
        ("runners", len(view.runners)),
        ("runners with pain reports", panel["runner_id"].nunique()),
        ("weeks followed per runner (median)",
         round(float(weeks.median()), 1) if len(weeks) else float("nan")),
        ("pain reports", len(panel)),
        (f"reports with pain >= {_threshold_text(view)} (pain present)",
         int(panel["pain_any"].sum())),
        ("reports usable for the model (all exposures known)", len(usable)),
        ("share of reports with a missing exposure",
         round(1 - len(usable) / len(panel), 3) if len(panel) else float("nan")),
        ("exposure lag (days)", view.meta.get("exposure_lag_days")),
    ]
    return pd.DataFrame(rows, columns=["measure", "value"], dtype=object)


def _threshold_text(view: CohortView) -> str:
    threshold = view.pain_threshold
    return "the build's threshold" if threshold is None else f"{threshold:g} NRS"


def follow_up_coverage(daily: pd.DataFrame, panel: pd.DataFrame,
                       runners: pd.DataFrame) -> pd.DataFrame:
    """Per runner: days followed, run days, km, pain reports and report coverage (0-1).

    Report coverage is the share of followed weeks (days followed / 7) with a pain report,
    capped at 1 (reports are weekly).
    """
    return (
        daily.groupby("runner_id", observed=True)
        .agg(first_day=("date", "min"), last_day=("date", "max"),
             days_followed=("date", "size"), run_days=("n_runs", lambda n: int((n > 0).sum())),
             km=("distance_km", "sum"))
        .join(panel.groupby("runner_id").size().rename("pain_reports"))
        .fillna({"pain_reports": 0})
        .astype({"pain_reports": int})
        .join(runners.set_index("runner_id")["cohort"])
        .assign(weeks_followed=lambda d: d["days_followed"] / 7,
                report_coverage=lambda d: (d["pain_reports"] / d["weeks_followed"])
                .clip(upper=1))
    )


def cleaning_counts(cleaning: Mapping[str, Any]) -> pd.DataFrame:
    """The cleaning audit as a table: one row per input file (read, kept, merged, ...)."""
    files = cleaning.get("files", {})
    columns = ["file", "read", "kept", "merged", "quarantined", "fixed", "reasons"]
    rows = [{"file": name, **{k: counts.get(k, 0) for k in columns[1:-1]},
             "reasons": ", ".join(f"{r}: {n}" for r, n in
                                  sorted(counts.get("by_reason", {}).items()))}
            for name, counts in sorted(files.items())]
    return pd.DataFrame(rows, columns=columns)


def cohort_audit(view: CohortView) -> pd.DataFrame:
    """This cohort's rows kept after cleaning (from ``counts.json``) and, when the
    quarantine names runners, its quarantined rows per reason."""
    labels = {"runners": "runners", "runs": "runs kept", "pain_reports": "pain reports kept",
              "panel_rows": "panel rows (reports with exposures)",
              "runners_with_reports": "runners with at least one report"}
    rows = [(labels[k], view.counts[k]) for k in labels if k in view.counts]
    for reason, n in view.quarantine.get("reason", pd.Series(dtype="str")) \
            .value_counts().sort_index().items():
        rows.append((f"quarantined: {reason}", int(n)))
    return pd.DataFrame(rows, columns=["count", "value"])


@dataclass
class ModelAttempt:
    """A fitted model, or the plain reason no model could be fitted for this cohort."""

    result: Any | None
    reason: str | None = None


def fit_cohort_model(
    view: CohortView,
    *,
    outcome: str = "pain",
    exposures: Sequence[str],
    random_slopes: Sequence[str] = (),
) -> ModelAttempt:
    """Fit the report's model, or say why it cannot be fitted (never raises a model error).

    ``pain`` (NRS 0-10) gets a linear mixed model, ``pain_any`` a logistic one; both with a
    random intercept per runner. Predictions the report draws that leave the outcome's range
    (pain below 0 or above 10) are added to the result's problems
    (:func:`analysis.models.prediction_problems`).
    """
    from analysis.models import fit_model, prediction_problems

    panel = view.panel
    if panel.empty:
        return ModelAttempt(None, "This cohort has no pain reports, so there is nothing to "
                                  "model.")
    values = panel[outcome].dropna().unique() if outcome in panel.columns else []
    if len(values) < 2:
        what = "no pain events" if outcome == "pain_any" or (len(values) == 1 and
                                                             float(values[0]) == 0) \
            else "the same pain score in every report"
        return ModelAttempt(None, f"This cohort has {what} ({outcome} never varies), so no "
                                  "association with training load can be estimated.")
    try:
        result = fit_model(panel, model=OUTCOMES.get(outcome, "lmm"), outcome=outcome,
                           exposures=list(exposures), random_slopes=list(random_slopes))
    except ModelSpecError as error:
        return ModelAttempt(None, f"The model cannot be fitted for this cohort: "
                                  f"{error.one_line()}")
    return ModelAttempt(result.with_problems(prediction_problems(result, panel)))


def runner_table(view: CohortView, modes: Any | None = None) -> pd.DataFrame:
    """One row per runner (pseudonymous ID): weeks followed, km per week, reports, mean pain
    (NRS 0-10) and, with conditional modes (:func:`analysis.models.conditional_modes`), the
    runner's random intercept (NRS points)."""
    daily = view.daily
    weeks = daily.groupby("runner_id")["date"].agg(lambda d: (d.max() - d.min()).days + 1) / 7
    km = daily.groupby("runner_id")["distance_km"].sum()
    pain = view.panel.groupby("runner_id")["pain"].agg(["size", "mean"])
    table = pd.DataFrame({"weeks_followed": weeks.round(1), "km_per_week": (km / weeks).round(1)})
    table = table.join(pain.rename(columns={"size": "reports", "mean": "mean_pain"}), how="left")
    table = table.assign(reports=table["reports"].fillna(0).astype(int),
                         mean_pain=table["mean_pain"].round(2))
    if modes is not None and "Intercept" in modes.per_runner.columns:
        intercept = modes.per_runner.set_index("runner_id")["Intercept"].round(2)
        table = table.join(intercept.rename("random_intercept"), how="left")
    return table.rename_axis("runner_id").reset_index().sort_values("runner_id",
                                                                    ignore_index=True)


#: Per headline effect in ``summary.json``: the per-unit values and the reading-unit ones.
HEADLINE_COLUMNS = ("term", "estimate", "ci_low", "ci_high", "step", "step_label",
                    *NRS_STEP_VALUES)
HEADLINE_ODDS_COLUMNS = ODDS_STEP_VALUES


def write_summary(path: str | Path | None, view: CohortView, attempt: ModelAttempt | Any
                  ) -> dict[str, Any]:
    """Write the numbers the index page shows (aggregate values only, no identifiers).

    ``converged``, ``status`` (``ok`` | ``warning``) and ``problems`` are the model's
    (:class:`analysis.models.ModelResult`); each ``headline`` effect carries its per-unit
    ``estimate``, ``ci_low``, ``ci_high`` and the reading-unit ``step``, ``step_label``,
    ``estimate_step``, ``ci_low_step``, ``ci_high_step`` (and odds ratios per step for
    binomial models).
    """
    if not isinstance(attempt, ModelAttempt):  # a bare ModelResult (or None)
        attempt = ModelAttempt(attempt, None if attempt is not None else "no model")
    result = attempt.result
    headline = []
    odds = result is not None and "odds_ratio" in result.table.columns
    if result is not None:
        table = add_reading_units(result.table)
        columns = [*HEADLINE_COLUMNS, *(HEADLINE_ODDS_COLUMNS if odds else ())]
        headline = [
            {k: (None if v is None else str(v)) if k in ("term", "step_label") else float(v)
             for k, v in row.items()}
            for row in table[table["term"] != "Intercept"][columns].to_dict(orient="records")
        ]
    summary = {
        "cohort": view.cohort,
        "n_runners": len(view.runners),
        "n_reports": len(view.panel),
        "n_obs_model": getattr(result, "n_obs", None),
        "model": getattr(result, "model", None),
        "scale": "odds" if odds else "nrs",
        "converged": getattr(result, "converged", None),
        "status": getattr(result, "status", None),
        "problems": list(getattr(result, "problems", []) or []),
        "model_note": attempt.reason,
        "warnings": list(getattr(result, "warnings", []) or []),
        "headline": headline,
    }
    if path:
        Path(path).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


__all__ = [
    "HEADLINE_COLUMNS",
    "HEADLINE_ODDS_COLUMNS",
    "ID_COLUMNS",
    "PAIN_THRESHOLD_KEY",
    "PSEUDONYM_PATTERN",
    "SAFE_RUNNER_COLUMNS",
    "CohortView",
    "ModelAttempt",
    "cleaning_counts",
    "cohort_audit",
    "cohort_summary",
    "fit_cohort_model",
    "follow_up_coverage",
    "load_cohort",
    "runner_table",
    "write_summary",
]
