"""What the report notebook calls: one cohort's view of a processed folder, its tables, its
model and the numbers the index reads (``summary.json``).

Values are read, not recomputed: ``pain_any`` and its threshold are the panel's
(``panel_meta.json`` ``pain_threshold``, written by :func:`analysis.exposures.build_panel`);
reading units come from :mod:`analysis.reports.effects`; conditional modes from
:func:`analysis.models.conditional_modes`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import paths
from analysis.errors import ModelSpecError, ReportError
from analysis.outcomes import (
    AUTO,
    OutcomeSpec,
    columns_with_data,
    default_exposures,
    outcome_spec,
    report_outcome,
    unfittable_reason,
)
from analysis.privacy import (
    PSEUDONYM_HEX_CHARS,
    PSEUDONYM_PREFIX,
    hide_folders,
    id_salt,
    pseudonymise,
)
from analysis.reports.effects import (
    NRS_STEP_VALUES,
    ODDS_STEP_VALUES,
    TABLE_STYLE,
    add_reading_units,
    markdown_text,
)
from analysis.reports.parameters import DEFAULT_MIN_COHORT_SIZE, split_list
from analysis.tables import cohort_sizes  # the one count of the privacy floor; re-exported

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
    ``cleaning`` is the whole dataset's audit (for the data owner's own use: a report shows
    :func:`cohort_file_audit`, which counts only this cohort's rows); ``file_rows`` is this
    cohort's clean rows per table and source file (``table``, ``file``, ``kept``);
    ``n_runners`` the cohort's size as every output states it: runners with data
    (:func:`cohort_sizes`), not rows of runners.csv. ``runs`` is the cohort's clean runs
    (``runner_id``, ``date``, ``distance_km``; for the participant flow). ``calendar`` is the
    cohort's whole daily calendar (lead-in days included) and ``episodes`` its rows of the
    build's ``episodes.parquet`` (None for an older build), for the time-to-event section.
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
    file_rows: pd.DataFrame | None = None
    runs: pd.DataFrame | None = None
    calendar: pd.DataFrame | None = None
    episodes: pd.DataFrame | None = None

    def processed(self) -> dict[str, Any]:
        """This cohort as :func:`analysis.models.fit_survival` takes a processed folder:
        ``daily`` is the whole calendar (lead-in days too, whose exposures a reference day
        in the lead-in reads), ``episodes`` the build's (when it wrote them)."""
        out: dict[str, Any] = {"daily": self.calendar if self.calendar is not None
                               else self.daily, "panel": self.panel, "panel_meta": self.meta}
        if self.episodes is not None:
            out["episodes"] = self.episodes
        return out

    @property
    def n_runners(self) -> int:
        """Runners with data (:func:`cohort_sizes`): the size every output states."""
        return int(cohort_sizes(self.runners, self.panel).get(self.cohort, 0))

    @property
    def pain_threshold(self) -> float | None:
        """The threshold ``pain_any`` was built with (``pain >= it``, NRS 0-10), from
        ``panel_meta.json``; None for a processed folder that does not record it."""
        value = self.meta.get(PAIN_THRESHOLD_KEY)
        return None if value is None else float(value)

    @property
    def id_statement(self) -> str:
        """What the report says of its runner identifiers (one sentence)."""
        if self.pseudonymised:
            return "Runner identifiers are keyed-hash pseudonyms."
        return ("Runner identifiers are shown as given in the runners table (not hashed: set "
                "KNEELOAD_ID_SALT, or build with --pseudonymise, for keyed-hash pseudonyms).")

    @property
    def outcome(self) -> OutcomeSpec:
        """The outcome the dataset declares (``panel_meta.json`` ``outcome``;
        :func:`analysis.outcomes.outcome_spec`, ``nrs`` for older builds)."""
        return outcome_spec(self.meta)


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
        Refuse (ReportError) cohorts with fewer runners with data (privacy;
        :func:`cohort_sizes`: rows of runners.csv without a pain report do not count).
    pain_threshold
        The threshold the caller expects ``pain_any`` to have been built with (NRS 0-10);
        None accepts the build's. ``pain_any`` is never recomputed here: it is the panel's,
        built with ``panel_meta.json`` ``pain_threshold``.
    salt
        Pseudonymisation key; default ``KNEELOAD_ID_SALT`` (:func:`analysis.privacy.id_salt`).
    """
    processed = paths.processed_dir(str(dataset))
    data = _processed_tables(processed)
    runners = data["runners"]
    if cohort not in set(runners["cohort"]):
        raise ReportError(f"no cohort {cohort!r}; the data has "
                          f"{sorted(runners['cohort'].unique())}", file=processed)
    members = runners[runners["cohort"] == cohort]
    size = int(cohort_sizes(members, data["panel"]).get(cohort, 0))
    if size < min_cohort_size:
        raise ReportError(f"cohort {cohort!r} has fewer runners than min_cohort_size="
                          f"{min_cohort_size}; suppressed", file=processed)
    ids = set(members["runner_id"])
    salt = (id_salt() if salt is None else salt) or None  # an empty key hashes nothing
    # built with --pseudonymise (panel_meta says so): keep the processed IDs so they can be
    # looked up. IDs that merely look like pseudonyms are not taken for them (review: a
    # study's own "r-000000000001" codes were then called keyed-hash pseudonyms and, with a
    # salt set, not hashed)
    already = data["panel_meta"].get("pseudonymised") is True
    if already:
        salt = None
    panel = data["panel"][data["panel"]["runner_id"].isin(ids)].reset_index(drop=True)
    daily = data["daily"]  # lead-in rows (in_follow_up False) only feed exposure windows
    daily = daily[daily["runner_id"].isin(ids) & daily.get("in_follow_up", True)]
    _check_threshold(data["panel_meta"], pain_threshold, processed=processed)
    quarantine = data["quarantine"]
    quarantine = (quarantine[quarantine["runner_id"].isin(ids)]
                  if "runner_id" in quarantine.columns else quarantine.iloc[:0])
    quarantine = quarantine.drop(columns=["value", "runner_id"], errors="ignore")
    hidden = (lambda name: hide_folders(name, salt=salt)) if salt is not None else str

    def hide(table: pd.DataFrame) -> pd.DataFrame:
        return table.assign(**{c: pseudonymise(table[c], salt=salt)
                               for c in ID_COLUMNS if c in table.columns})

    return CohortView(
        cohort=cohort,
        panel=hide(panel),
        daily=hide(daily.reset_index(drop=True)),
        runners=hide(members[[c for c in SAFE_RUNNER_COLUMNS if c in members.columns]]
                     .reset_index(drop=True)),
        cleaning=_hide_folders(data["cleaning_report"], salt=salt),
        counts=data["counts"].get("cohorts", {}).get(cohort, {}),
        meta=data["panel_meta"],
        quarantine=(quarantine.assign(file=quarantine["file"].astype(str).map(hidden))
                    if "file" in quarantine.columns else quarantine).reset_index(drop=True),
        pseudonymised=already or salt is not None,
        file_rows=_file_rows(data, ids, hidden),
        runs=hide(data["runs"].loc[data["runs"]["runner_id"].isin(ids),
                                   [c for c in RUN_COLUMNS if c in data["runs"].columns]]
                  .reset_index(drop=True)),
        calendar=hide(data["daily"].loc[data["daily"]["runner_id"].isin(ids)]
                      .reset_index(drop=True)),
        episodes=_cohort_episodes(data.get("episodes"), ids, hide),
    )


def _cohort_episodes(table: pd.DataFrame | None, ids: set[str], hide: Any
                     ) -> pd.DataFrame | None:
    """The cohort's rows of the build's ``episodes.parquet`` (None when there is none)."""
    if table is None:
        return None
    return hide(table.loc[table["runner_id"].isin(ids)].reset_index(drop=True))


#: The last processed folder read by :func:`_processed_tables`: (folder, stamp, tables).
_LAST_READ: list[tuple[Path, tuple[Any, ...], dict[str, Any]]] = []


def _folder_stamp(folder: Path) -> tuple[Any, ...]:
    """What changes when a build rewrites ``folder``: every file's name, inode, size and
    modification time (a build swaps in a new folder, so its files are new inodes)."""
    stamps = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            info = path.stat()
            stamps.append((path.name, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(stamps)


def _processed_tables(folder: Path) -> dict[str, Any]:
    """:func:`analysis.pipeline.load_processed` (plus ``episodes``), read once per process for
    an unchanged folder: a report worker's kept kernel renders cohort after cohort of one
    folder, and re-reading every table cost 0.45-0.7 s per report (docs/reports.md). Callers
    get the cached frames (filtered copies are made before anything is changed) and deep
    copies of the JSON parts, so no report can change what the next one reads."""
    from analysis.pipeline import load_processed

    stamp = _folder_stamp(folder) if folder.is_dir() else ()
    if not (_LAST_READ and _LAST_READ[0][0] == folder and _LAST_READ[0][1] == stamp):
        data = load_processed(folder)
        path = folder / "episodes.parquet"
        data["episodes"] = pd.read_parquet(path) if path.is_file() else None
        _LAST_READ[:] = [(folder, stamp, data)]
    data = dict(_LAST_READ[0][2])
    for name in ("cleaning_report", "panel_meta", "counts", "audit"):
        data[name] = copy.deepcopy(data[name])
    return data


#: Columns of the clean runs a view keeps (no free text, no device data).
RUN_COLUMNS = ("runner_id", "date", "distance_km")
#: Clean tables whose rows carry their input file (``source_file``) and runner.
SOURCE_TABLES = ("runners", "runs", "pain", "shoes")


def _file_rows(data: Mapping[str, Any], ids: set[str], hidden: Any) -> pd.DataFrame:
    """This cohort's clean rows per table and input file (``table``, ``file``, ``kept``)."""
    parts = []
    for table in SOURCE_TABLES:
        frame = data.get(table)
        if frame is None or not {"runner_id", "source_file"} <= set(frame.columns):
            continue
        mine = frame.loc[frame["runner_id"].isin(ids), "source_file"].astype(str)
        counts = mine.value_counts().rename("kept").rename_axis("file").reset_index()
        parts.append(counts.assign(table=table))
    if not parts:
        return pd.DataFrame({"table": [], "file": [], "kept": []})
    rows = pd.concat(parts, ignore_index=True)
    return rows.assign(file=rows["file"].map(hidden))[["table", "file", "kept"]]


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


def cohort_summary(view: CohortView, *, exposures: Sequence[str] = (),
                   outcome: OutcomeSpec | None = None) -> pd.DataFrame:
    """Headline description of a cohort: runners, weeks followed, reports, missing data.

    ``outcome`` (default: the dataset's, :attr:`CohortView.outcome`) names the row counting
    reports with the event: pain at or above the build's threshold, or the injury flag.
    """
    daily, panel = view.daily, view.panel
    spec = view.outcome if outcome is None else outcome
    event = (f"reports with pain >= {_threshold_text(view)} (pain present)"
             if spec.key in ("nrs", "pain_any") else f"reports with {spec.noun} (flag set)")
    weeks = daily.groupby("runner_id")["date"].agg(lambda d: (d.max() - d.min()).days + 1) / 7
    usable = panel.dropna(subset=list(exposures)) if exposures else panel
    rows = [
        ("runners (with at least one pain report)", view.n_runners),
        ("runners with pain reports", panel["runner_id"].nunique()),
        ("weeks followed per runner (median)",
         round(float(weeks.median()), 1) if len(weeks) else float("nan")),
        ("pain reports", len(panel)),
        (event, int(panel["pain_any"].sum())),
        ("reports usable for the model (all exposures known)", len(usable)),
        ("reports with a missing exposure (%)",
         round(100 * (1 - len(usable) / len(panel)), 1) if len(panel) else float("nan")),
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


def _reason_words(reason: str) -> str:
    return str(reason).replace("_", " ")


def cohort_file_audit(view: CohortView) -> pd.DataFrame:
    """Per input file, this cohort's rows only: kept after cleaning, merged (a duplicate of a
    kept record: :data:`analysis.clean.MERGE_REASONS`) and quarantined, each with its
    reasons. Files holding none of its rows are not listed, and no dataset total is shown,
    so no other cohort (a suppressed one included) can be read off, not even by subtraction.
    Values fixed are counted per file for the whole dataset only (``cleaning_report.json``).
    """
    from analysis.tables import cohort_record_flow

    columns = ["file", "kept", "merged", "merged by reason", "quarantined",
               "quarantined by reason"]
    file_rows = view.file_rows if view.file_rows is not None else \
        pd.DataFrame({"file": [], "kept": []})
    records, _ = cohort_record_flow(file_rows, view.quarantine)
    rows = []
    for name in sorted(set(records["file"])):
        part = records[records["file"] == name]
        row: dict[str, Any] = {"file": name}
        for status in ("kept", "merged", "quarantined"):
            mine = part[part["status"] == status]
            row[status] = int(mine["n"].sum())
            if status != "kept":
                row[f"{status} by reason"] = ", ".join(
                    f"{_reason_words(r)}: {n}" for r, n in zip(mine["reason"], mine["n"],
                                                               strict=True))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def cohort_audit(view: CohortView) -> pd.DataFrame:
    """This cohort's rows kept after cleaning (from ``counts.json``) and, when the
    quarantine names runners, its merged duplicates and quarantined rows per reason (a
    merged duplicate is never called quarantined: :data:`analysis.clean.MERGE_REASONS`)."""
    from analysis.clean import MERGE_REASONS

    labels = {"runners": "runners in runners.csv", "runs": "runs kept",
              "pain_reports": "pain reports kept",
              "panel_rows": "panel rows (reports with exposures)",
              "runners_with_reports": "runners with at least one report"}
    rows = [(labels[k], view.counts[k]) for k in labels if k in view.counts]
    for reason, n in view.quarantine.get("reason", pd.Series(dtype="str")) \
            .value_counts().sort_index().items():
        status = "merged (duplicate of a kept record)" if reason in MERGE_REASONS \
            else "quarantined"
        rows.append((f"{status}: {_reason_words(reason)}", int(n)))
    return pd.DataFrame(rows, columns=["count", "value"])


@dataclass
class ExposureChoice:
    """The exposures a report models and those it leaves out, with the reasons.

    ``requested`` is the ``exposures`` parameter as given (``auto`` or a comma list);
    ``left_out`` maps each default exposure the data cannot support to a sentence
    (:func:`analysis.outcomes.default_exposures`; empty for an explicit list).
    """

    requested: str
    chosen: list[str]
    left_out: dict[str, str]

    @property
    def automatic(self) -> bool:
        """True when the exposures were chosen from the data (``exposures=auto``)."""
        return self.requested.strip() == AUTO

    def sentences(self, *, human: bool = False) -> list[str]:
        """What the report says about the choice, one sentence per item.

        ``human=True`` names the exposures by their labels (:func:`analysis.labels.label`);
        a left-out one keeps its reason with the column name ``--param exposures=`` takes.
        """
        from analysis.labels import humanize, label, sentence

        def names(columns: Sequence[str]) -> str:
            return "; ".join(label(c) for c in columns) if human else ", ".join(columns)

        if not self.automatic:
            return [f"Exposures as requested: {names(self.chosen)}."]
        lines = [f"Default exposures the data support: {names(self.chosen) or 'none'}."]
        for reason in self.left_out.values():
            # human: the column named by its label ("Distance on the current shoe left out:
            # ..."); the column names --param exposures= takes are in docs/exposures.md
            text = humanize(reason) if human else reason
            lines.append(f"{sentence(text)} (choose others with --param "
                         "exposures=COLUMNS).")
        return lines


def choose_exposures(view: CohortView, exposures: str | Sequence[str] = AUTO
                     ) -> ExposureChoice:
    """The report's exposures: ``auto`` is the default set less what this cohort's panel
    cannot support (a column absent or missing in every report), else the list given.

    Parameters
    ----------
    view
        The cohort.
    exposures
        ``auto``, a comma-separated string, or a sequence of panel columns.
    """
    requested = exposures if isinstance(exposures, str) else ",".join(exposures)
    if requested.strip() != AUTO:
        return ExposureChoice(requested, split_list(requested), {})
    chosen, left_out = default_exposures(columns_with_data(view.panel), view.meta)
    return ExposureChoice(requested, chosen, left_out)


@dataclass
class ModelAttempt:
    """A fitted model, or the plain reason no model could be fitted for this cohort.

    ``outcome`` is the outcome kind that was (or would have been) modelled.
    """

    result: Any | None
    reason: str | None = None
    outcome: OutcomeSpec | None = None


def fit_cohort_model(
    view: CohortView,
    *,
    outcome: str = AUTO,
    exposures: Sequence[str] | str = AUTO,
    random_slopes: Sequence[str] = (),
) -> ModelAttempt:
    """Fit the report's model, or say why it cannot be fitted (never raises a model error).

    ``outcome`` is ``auto`` (the dataset's declared outcome, :attr:`CohortView.outcome`), a
    key of :data:`analysis.outcomes.OUTCOME_SPECS` or a column (``pain``, ``pain_any``,
    ``ostrc_severity``); its ``default_model`` is fitted (a linear mixed model for a score, a
    logistic one for a flag), with a random intercept per runner. ``exposures`` is ``auto``
    (:func:`choose_exposures`) or a list. When no model can be fitted, the reason names the
    column(s) and the ``--param`` that fixes it (:func:`analysis.outcomes.unfittable_reason`).
    Predictions the report draws that leave the outcome's range (pain below 0 or above 10)
    are added to the result's problems (:func:`analysis.models.prediction_problems`).
    """
    from analysis.models import fit_model, prediction_problems

    spec = report_outcome(outcome, view.meta)
    column = spec.column
    chosen = choose_exposures(view, exposures)
    panel = view.panel

    def cannot(reason: str) -> ModelAttempt:
        from analysis.labels import humanize

        return ModelAttempt(None, humanize(reason), spec)  # shown in the report and index

    if panel.empty:
        return cannot("This cohort has no pain reports, so there is nothing to model.")
    if not chosen.chosen:
        reasons = "; ".join(chosen.left_out.values())
        return cannot(f"No exposure can be modelled: {reasons}; name panel columns with "
                      "--param exposures=COLUMNS.")
    values = panel[column].dropna().unique() if column in panel.columns else []
    if column in panel.columns and len(values) < 2:
        events = "pain" if spec.column in ("pain", "pain_any") and spec.key != "injury_flag" \
            else spec.noun
        none = not len(values) or float(values[0]) == 0
        what = (f"no {events} events" if spec.binary or none
                else f"the same {spec.noun} score in every report")
        return cannot(f"This cohort has {what} ({column} never varies), so no association "
                      "with training load can be estimated.")
    problem = unfittable_reason(panel, outcome=column, exposures=chosen.chosen)
    if problem is not None:
        return cannot(f"The model cannot be fitted for this cohort: {problem}.")
    try:
        result = fit_model(panel, model=spec.default_model, outcome=column,
                           exposures=chosen.chosen, random_slopes=list(random_slopes))
    except ModelSpecError as error:
        return cannot(f"The model cannot be fitted for this cohort: {error.one_line()}")
    return ModelAttempt(result.with_problems(prediction_problems(result, panel)), None, spec)


def runner_table(view: CohortView, modes: Any | None = None, *,
                 outcome: OutcomeSpec | None = None) -> pd.DataFrame:
    """One row per runner (pseudonymous ID): weeks followed, km per week, reports, the mean
    of the outcome column (``mean_pain``: NRS 0-10; ``mean_pain_any``: the share of reports
    with the flag; ``mean_ostrc_severity``) and, with conditional modes
    (:func:`analysis.models.conditional_modes`), the runner's random intercept (in the
    model's unit: NRS points, or log-odds).

    ``outcome`` defaults to the dataset's (:attr:`CohortView.outcome`).
    """
    spec = view.outcome if outcome is None else outcome
    mean = f"mean_{spec.column}"
    daily = view.daily
    weeks = daily.groupby("runner_id")["date"].agg(lambda d: (d.max() - d.min()).days + 1) / 7
    km = daily.groupby("runner_id")["distance_km"].sum()
    values = view.panel.assign(_y=view.panel[spec.column].astype(float))
    pain = values.groupby("runner_id")["_y"].agg(["size", "mean"])
    table = pd.DataFrame({"weeks_followed": weeks.round(1), "km_per_week": (km / weeks).round(1)})
    table = table.join(pain.rename(columns={"size": "reports", "mean": mean}), how="left")
    table = table.assign(reports=table["reports"].fillna(0).astype(int),
                         **{mean: table[mean].round(2)})
    if modes is not None and "Intercept" in modes.per_runner.columns:
        intercept = modes.per_runner.set_index("runner_id")["Intercept"].round(2)
        table = table.join(intercept.rename("random_intercept"), how="left")
    return table.rename_axis("runner_id").reset_index().sort_values("runner_id",
                                                                    ignore_index=True)


# --- paper-ready tables and take-away files -----------------------------------------------

#: Sub-folders of a cohort's report folder holding its take-away files.
FIGURES_DIR, TABLES_DIR = "figures", "tables"


def cohort_table_one(view: CohortView, *, outcome: OutcomeSpec | None = None) -> pd.DataFrame:
    """Table 1 of this cohort (:func:`analysis.tables.table_one`, one column).

    The event rows count the panel's ``pain_any`` (pain at or above the build's threshold,
    ``panel_meta.json`` ``pain_threshold``, stated in the row) for an NRS outcome, or the
    outcome's own flag (e.g. the Lovdal injury flag) for another binary outcome.
    """
    from analysis.tables import table_one

    spec = view.outcome if outcome is None else outcome
    flag = spec.binary and spec.key != "pain_any"  # a declared flag, e.g. Lovdal injuries
    return table_one(view.runners, view.daily, view.panel,
                     threshold=None if flag else view.pain_threshold,
                     event_column=spec.column if flag else "pain_any",
                     event_label=spec.noun if flag else None, overall=False)


def cohort_flow(view: CohortView, result: Any | None = None) -> Any:
    """The cohort's STROBE flow (:func:`analysis.tables.participant_flow`): its runners from
    enrolment to the model and its own records per input file (kept / merged / quarantined
    by reason; no other cohort's rows). Checked to add up (:meth:`analysis.tables.Flow.
    check`)."""
    from analysis.tables import cohort_record_flow, participant_flow

    file_rows = view.file_rows if view.file_rows is not None else \
        pd.DataFrame({"file": [], "kept": []})
    runs = view.runs if view.runs is not None else pd.DataFrame({"runner_id": []})
    flow = participant_flow(None, runners=view.runners, runs=runs, panel=view.panel,
                            model=result,
                            records=cohort_record_flow(file_rows, view.quarantine))
    flow.check()
    return flow


def takeaway_folder(summary_path: str | Path | None) -> Path | None:
    """Where a report writes ``figures/`` and ``tables/``: the folder ``kneeload report``
    collects the cohort's outputs in (the folder of its ``summary_path``); None when the
    notebook runs on its own (no summary path): then nothing is written."""
    if not summary_path:
        return None
    return Path(summary_path).parent


@dataclass
class TakeAways:
    """Writes a report's figures (SVG + PNG, 300 dpi) and tables (CSV, Markdown, LaTeX)
    into ``folder/figures`` and ``folder/tables`` and returns Markdown links to them,
    relative to the report (``figures/model.svg``). With ``folder`` None nothing is
    written and the links are empty."""

    folder: Path | None
    written: list[str] = dataclasses.field(default_factory=list)

    def figure(self, fig: Any, name: str, caption: str) -> str:
        """Save the displayed Figure (not redrawn) and return its caption with links."""
        from analysis.plots import save_figure

        text = f"*Figure: {markdown_text(caption)}*"
        if self.folder is None:
            return text
        paths = save_figure(fig, self.folder / FIGURES_DIR, name)
        return text + " " + self._links(FIGURES_DIR, paths)

    def show(self, fig: Any, name: str, caption: str) -> None:
        """In the notebook: save ``fig`` (:meth:`figure`), display it once and its caption
        with the file links, and close it.

        With a folder, the SVG just written is what is displayed (the figure is rendered
        twice, SVG and PNG, and the display costs no third rendering); without one, the
        Figure itself.
        """
        import matplotlib.pyplot as plt
        from IPython.display import SVG, Markdown, display

        text = self.figure(fig, name, caption)
        svg = self.folder / FIGURES_DIR / f"{name}.svg" if self.folder is not None else None
        display(SVG(filename=str(svg)) if svg is not None and svg.is_file() else fig)
        display(Markdown(text))
        plt.close(fig)

    def table(self, table: pd.DataFrame, name: str, *, caption: str | None = None,
              formats: Sequence[str] = ("csv", "md", "tex")) -> str:
        """Write the table and return Markdown links to its files (empty without a folder)."""
        from analysis.tables import write_table

        if self.folder is None:
            return ""
        paths = write_table(table, self.folder / TABLES_DIR, name, formats=formats,
                            caption=caption)
        return "Download: " + self._links(TABLES_DIR, paths)

    def _links(self, sub: str, paths: Mapping[str, Path]) -> str:
        links = []
        for fmt, path in paths.items():
            relative = f"{sub}/{path.name}"
            self.written.append(relative)
            links.append(f"[{fmt.upper()}]({relative})")
        return " · ".join(links)


#: Headings of :func:`runner_table` as a report shows it (``mean_<outcome column>`` is
#: named by :func:`runner_table_labels`).
RUNNER_TABLE_LABELS = {"runner_id": "Runner", "weeks_followed": "Weeks followed",
                       "km_per_week": "Distance per week (km)", "reports": "Reports",
                       "random_intercept": "Random intercept"}


def runner_table_labels(outcome: OutcomeSpec) -> dict[str, str]:
    """Column headings of :func:`runner_table` for display, the mean column by outcome."""
    mean = (f"Share of reports with {outcome.noun}" if outcome.binary
            else f"Mean {outcome.axis_label}")
    unit = "log-odds" if outcome.binary else outcome.unit
    return {**RUNNER_TABLE_LABELS, f"mean_{outcome.column}": mean,
            "random_intercept": f"Random intercept ({unit})"}


#: Per headline effect in ``summary.json``: the per-unit values and the reading-unit ones.
HEADLINE_COLUMNS = ("term", "estimate", "ci_low", "ci_high", "step", "step_label",
                    *NRS_STEP_VALUES)
HEADLINE_ODDS_COLUMNS = ODDS_STEP_VALUES


#: pandas display options of the report's tables: every cell, row and column in full. pandas
#: cuts a cell past 50 characters by default ("non running activity: 2, pace too fast: 1,
#: unp..."), and rows past 60 and list items past 100 with "..."; a report's table is what
#: a reader takes as the data, so nothing is cut (long cells wrap: ``TABLE_STYLE``).
WHOLE_TABLE_OPTIONS: dict[str, Any] = {
    "display.max_colwidth": None,
    "display.max_rows": None,
    "display.max_columns": None,
    "display.max_seq_items": None,
}


def whole_tables() -> str:
    """Set :data:`WHOLE_TABLE_OPTIONS` for the kernel's session (the one place the report's
    tables get their display) and return the report's table stylesheet
    (:data:`analysis.reports.effects.TABLE_STYLE`) to display once."""
    for key, value in WHOLE_TABLE_OPTIONS.items():
        pd.set_option(key, value)
    return TABLE_STYLE


def write_summary(path: str | Path | None, view: CohortView, attempt: ModelAttempt | Any,
                  *, exposures: ExposureChoice | None = None,
                  time_to_event: Mapping[str, Any] | None = None,
                  nonlinear: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the numbers the index page shows (aggregate values only, no identifiers).

    ``outcome`` (key), ``outcome_label`` and ``outcome_unit`` are the modelled outcome kind
    (:mod:`analysis.outcomes`); ``exposures`` the modelled columns and
    ``exposures_left_out`` ({exposure: reason}) the defaults the data could not support.
    ``converged``, ``status`` (``ok`` | ``warning``) and ``problems`` are the model's
    (:class:`analysis.models.ModelResult`); each ``headline`` effect carries its per-unit
    ``estimate``, ``ci_low``, ``ci_high`` and the reading-unit ``step``, ``step_label``,
    ``estimate_step``, ``ci_low_step``, ``ci_high_step`` (and odds ratios per step for
    binomial models). ``time_to_event`` (when given) is stored as is under that key:
    :func:`analysis.reports.time_to_event.summary_block` (its model's own ``status`` and
    ``problems``; they do not change the mixed model's ``status``). ``nonlinear`` is
    :func:`analysis.reports.nonlinear.nonlinear_summary` as it returns: ``{}`` when no
    spline, DLNM or sensitivity analysis was requested (no key written), else its
    ``{"nonlinear": {...}}`` block, stored under ``nonlinear``.
    """
    if not isinstance(attempt, ModelAttempt):  # a bare ModelResult (or None)
        attempt = ModelAttempt(attempt, None if attempt is not None else "no model")
    result = attempt.result
    spec = attempt.outcome or view.outcome
    modelled = list(getattr(result, "exposures", None) or []) if exposures is None \
        else exposures.chosen
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
        "n_runners": view.n_runners,
        "n_reports": len(view.panel),
        "n_obs_model": getattr(result, "n_obs", None),
        "model": getattr(result, "model", None),
        "scale": "odds" if odds else "nrs",
        "outcome": spec.key,
        "outcome_label": spec.label,
        "outcome_noun": spec.noun,
        "outcome_unit": spec.unit,
        "exposures": modelled,
        "exposures_left_out": dict(exposures.left_out) if exposures is not None else {},
        "converged": getattr(result, "converged", None),
        "status": getattr(result, "status", None),
        "problems": list(getattr(result, "problems", []) or []),
        "model_note": attempt.reason,
        "warnings": list(getattr(result, "warnings", []) or []),
        "headline": headline,
    }
    if time_to_event is not None:
        summary["time_to_event"] = dict(time_to_event)
    if nonlinear:
        if set(nonlinear) != {"nonlinear"}:
            raise ReportError("write_summary: nonlinear takes nonlinear_summary()'s "
                              f"{{'nonlinear': ...}} block, got keys {sorted(nonlinear)}")
        summary["nonlinear"] = dict(nonlinear["nonlinear"])
    if path:
        Path(path).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


__all__ = [
    "FIGURES_DIR",
    "HEADLINE_COLUMNS",
    "HEADLINE_ODDS_COLUMNS",
    "ID_COLUMNS",
    "PAIN_THRESHOLD_KEY",
    "PSEUDONYM_PATTERN",
    "RUNNER_TABLE_LABELS",
    "RUN_COLUMNS",
    "SAFE_RUNNER_COLUMNS",
    "SOURCE_TABLES",
    "TABLES_DIR",
    "WHOLE_TABLE_OPTIONS",
    "CohortView",
    "ExposureChoice",
    "ModelAttempt",
    "TakeAways",
    "choose_exposures",
    "cleaning_counts",
    "cohort_audit",
    "cohort_file_audit",
    "cohort_flow",
    "cohort_sizes",
    "cohort_summary",
    "cohort_table_one",
    "fit_cohort_model",
    "follow_up_coverage",
    "load_cohort",
    "runner_table",
    "runner_table_labels",
    "takeaway_folder",
    "whole_tables",
    "write_summary",
]
