"""Tables a researcher pastes into a paper: Table 1, participant flow, the model tables.

Pure functions on the processed tables (``runners``, ``daily``, ``runs``, ``panel``,
``cleaning_report.json``) and on a :class:`analysis.models.ModelResult`; labels, p-values
and numbers come from :mod:`analysis.labels`. :func:`write_table` writes CSV, Markdown and
LaTeX, with every cell escaped for the format.

Privacy: :func:`table_one` shows no column for a cohort below ``min_cohort_size`` runners
with data (:func:`cohort_sizes`, the one count of the privacy floor), and its overall
column counts only the cohorts it shows, so a suppressed cohort cannot be read off by
subtraction.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.csvsafe import write_display_csv
from analysis.errors import KneeloadError
from analysis.labels import (
    format_number,
    format_p,
    interval_texts,
    label,
    step_text,
    term_label,
    variance_label,
    variance_value_label,
)

#: Table 1's row of runners whose sex is not recorded.
SEX_NOT_RECORDED = "Sex: not recorded, n (%)"
#: Header of the overall column of Table 1.
OVERALL = "Overall"
#: Days in a week (weekly rates from follow-up days).
DAYS_PER_WEEK = 7.0
#: Words for the usual sex codes of runners.csv (others are shown as recorded).
SEX_WORDS = {"F": "female", "M": "male"}
#: Record outcomes of the cleaning audit, in flow order.
RECORD_STATUSES = ("kept", "merged", "quarantined")


def cohort_sizes(runners: pd.DataFrame, panel: pd.DataFrame) -> pd.Series:
    """Runners per cohort that have data: at least one pain report in the panel.

    The one count the privacy floor (``min_cohort_size``), the index's runners column,
    Table 1 and ``summary.json`` ``n_runners`` use. A runners.csv row with no pain report (no
    run, no report: a "ghost") adds nothing to a model, so it must not lift a cohort over the
    floor; it is not counted anywhere a size is shown.

    Parameters
    ----------
    runners
        Clean runners table (``runner_id``, ``cohort``).
    panel
        The panel (``runner_id``): one row per pain report in follow-up.

    Returns
    -------
    pandas.Series
        Runners with data per cohort (index ``cohort``, sorted; name ``runners``), 0 for a
        cohort none of whose runners has a report.
    """
    with_data = runners["runner_id"].isin(set(panel["runner_id"]))
    counted = runners.loc[with_data].groupby("cohort", sort=True)["runner_id"].nunique()
    cohorts = sorted(runners["cohort"].unique())
    return counted.reindex(cohorts, fill_value=0).astype("int64").rename("runners") \
        .rename_axis("cohort")


# --- Table 1 --------------------------------------------------------------------------------


def _median_iqr(values: pd.Series, *, decimals: int = 1) -> str:
    """``median (Q1 to Q3)`` with the same decimals throughout (quartiles: pandas' linear
    interpolation, R's type 7)."""
    values = values.dropna().astype(float)
    if values.empty:
        return ""
    q1, med, q3 = values.quantile([0.25, 0.5, 0.75]).to_numpy()
    return f"{med:.{decimals}f} ({q1:.{decimals}f} to {q3:.{decimals}f})"


def _n_pct(n: int, total: int) -> str:
    """``n (p %)``, the per cent rounded half up (12.5 -> 13, as people round; Python's
    format rounds half to even)."""
    return f"{n} ({math.floor(100.0 * n / total + 0.5)} %)" if total else "0"


def report_events(panel: pd.DataFrame, *, event_column: str | None = "pain_any"
                  ) -> pd.Series:
    """Which reports have the event Table 1 counts: the panel's 0/1 column
    ``event_column`` (default ``pain_any``, built as ``pain >= pain_threshold`` by
    :func:`analysis.exposures.build_panel`: read, never recomputed here). Missing values
    are no event; None or an absent column gives no events."""
    if event_column is None or event_column not in panel.columns:
        return pd.Series(False, index=panel.index)
    return panel[event_column].astype("boolean").fillna(False).astype(bool)


def per_runner(runners: pd.DataFrame, daily: pd.DataFrame, panel: pd.DataFrame, *,
               event_column: str | None = "pain_any") -> pd.DataFrame:
    """The per-runner values Table 1 summarises, for runners with at least one report.

    Parameters
    ----------
    runners
        ``runner_id``, ``cohort``, ``sex``, ``age`` (years).
    daily
        The daily calendar of follow-up days (``runner_id``, ``date``, ``distance_km``,
        ``n_runs``; rows with ``in_follow_up`` False, the exposure lead-in, are left out).
    panel
        ``runner_id``, ``pain`` (NRS 0-10).
    event_column
        The 0/1 panel column counted (:func:`report_events`; ``pain_any`` by default).

    Returns
    -------
    One row per runner with data: ``runner_id``, ``cohort``, ``sex``, ``age``,
    ``follow_up_days``, ``weekly_km`` (km per followed week), ``runs_per_week``,
    ``reports``, ``reports_with_pain`` (reports with the event).
    """
    if "in_follow_up" in daily.columns:
        daily = daily[daily["in_follow_up"].astype(bool)]
    days = daily.groupby("runner_id").agg(follow_up_days=("date", "size"),
                                          km=("distance_km", "sum"), runs=("n_runs", "sum"))
    weeks = days["follow_up_days"] / DAYS_PER_WEEK
    events = report_events(panel, event_column=event_column)
    reports = panel.assign(_event=events).groupby("runner_id") \
        .agg(reports=("_event", "size"), reports_with_pain=("_event", "sum"))
    columns = [c for c in ("runner_id", "cohort", "sex", "age") if c in runners.columns]
    out = runners[columns].drop_duplicates("runner_id").set_index("runner_id") \
        .join(reports, how="inner") \
        .join(days.assign(weekly_km=days["km"] / weeks, runs_per_week=days["runs"] / weeks)
              [["follow_up_days", "weekly_km", "runs_per_week"]], how="left")
    return out.reset_index()


def _column(rows: pd.DataFrame, panel_rows: int, panel_events: int, *, event: str | None,
            sexes: Sequence[str], sex_rows: bool = False) -> dict[str, str]:
    n = len(rows)
    sex = rows["sex"].astype("string") if "sex" in rows.columns else pd.Series(dtype="string")
    out = {"Runners, n": str(n)}
    for level in sexes:
        out[f"Sex: {SEX_WORDS.get(level, level)}, n (%)"] = _n_pct(int((sex == level).sum()), n)
    missing_sex = int(sex.isna().sum()) + (n - len(sex))
    if missing_sex or sex_rows:  # every column has the row when one has it ("0 (0 %)")
        out[SEX_NOT_RECORDED] = _n_pct(missing_sex, n)
    out |= {
        "Age, years, median (IQR)": _median_iqr(rows.get("age", pd.Series(dtype=float)),
                                                decimals=0),
        "Distance per week, km, median (IQR)": _median_iqr(rows["weekly_km"]),
        "Runs per week, median (IQR)": _median_iqr(rows["runs_per_week"]),
        "Follow-up, days, median (IQR)": _median_iqr(rows["follow_up_days"], decimals=0),
        "Pain reports per runner, median (IQR)": _median_iqr(rows["reports"], decimals=0),
        "Pain reports, n": str(panel_rows),
    }
    if event is not None:
        out[f"Runners with any report of {event}, n (% of runners)"] = \
            _n_pct(int((rows["reports_with_pain"] > 0).sum()), n)
        out[f"Reports of {event}, n (% of reports)"] = _n_pct(panel_events, panel_rows)
    return out


def table_one(runners: pd.DataFrame, daily: pd.DataFrame, panel: pd.DataFrame, *,
              threshold: float | None, event_column: str | None = "pain_any",
              event_label: str | None = None, min_cohort_size: int = 1,
              overall: bool = True) -> pd.DataFrame:
    """Table 1: cohort characteristics, one column per cohort and one overall.

    Counts are n (%), continuous values median (IQR, 25th to 75th percentile) over runners
    with at least one pain report (:func:`cohort_sizes`). Weekly distance and runs per week
    are each runner's totals over follow-up days divided by followed weeks.

    Parameters
    ----------
    runners, daily, panel
        As for :func:`per_runner` (any number of cohorts; ``runners`` has ``cohort``).
    threshold
        The build's ``pain_threshold`` (``panel_meta.json``; NRS 0-10), which the panel's
        ``pain_any`` was built with: stated in the rows ("Reports of pain >= 3 NRS"). The
        events are read from ``event_column``, not recomputed from ``pain``.
    event_column, event_label
        The 0/1 panel column counted (default ``pain_any``; None: no event rows) and, for
        a flag that is not pain at a threshold (a Lovdal injury flag), its name in the rows
        ("injury"; ``threshold`` is then not used).
    min_cohort_size
        Cohorts with fewer runners with data get no column and do not count overall
        (privacy; the report's ``min_cohort_size``).
    overall
        Add the overall column (left out when only one cohort is shown).

    Returns
    -------
    Index ``Characteristic``; one string column per cohort shown (header ``<cohort> (n =
    N)``) and ``Overall (n = N)``.
    """
    sizes = cohort_sizes(runners, panel)
    shown = [c for c, n in sizes.items() if n >= min_cohort_size and n > 0]
    values = per_runner(runners, daily, panel, event_column=event_column)
    if event_column is None:
        event = None
    elif event_label is not None:
        event = event_label
    elif threshold is not None:
        event = f"pain >= {format_number(threshold)} NRS"
    else:
        event = label(event_column).lower()
    values = values[values["cohort"].isin(shown)]
    cohort_of = runners.drop_duplicates("runner_id").set_index("runner_id")["cohort"]
    reports = panel.assign(cohort=panel["runner_id"].map(cohort_of))
    reports = reports[reports["cohort"].isin(shown)]
    events = report_events(reports, event_column=event_column)
    sexes = sorted(values["sex"].dropna().astype(str).unique()) if "sex" in values else []
    sex_rows = "sex" not in values or bool(values["sex"].isna().any())
    columns: dict[str, dict[str, str]] = {}
    for cohort in shown:
        mine = reports["cohort"] == cohort
        rows = values[values["cohort"] == cohort]
        columns[f"{cohort} (n = {len(rows)})"] = _column(
            rows, int(mine.sum()), int(events[mine].sum()), event=event, sexes=sexes,
            sex_rows=sex_rows)
    if overall and len(shown) > 1:
        columns[f"{OVERALL} (n = {len(values)})"] = _column(
            values, len(reports), int(events.sum()), event=event, sexes=sexes,
            sex_rows=sex_rows)
    table = pd.DataFrame(columns).fillna("")
    # a characteristic no runner shown has (no age column, or every age missing) is no row
    # of empty cells
    table = table.loc[(table != "").any(axis=1)] if len(table.columns) else table
    return table.rename_axis("Characteristic")


# --- participant and record flow (STROBE) ---------------------------------------------------

#: The runner stages of :func:`participant_flow`, in order.
STAGE_ENROLLED, STAGE_WITH_REPORTS, STAGE_IN_MODEL = (
    "Runners enrolled", "With pain reports", "In the model")
#: Note of the "With pain reports" stage when some of its runners logged no usable run.
NO_RUN_NOTE = "of whom {n:,} logged no usable run"


@dataclass
class Flow:
    """Participant and record flow, every count from the audit or the model.

    Attributes
    ----------
    runners : stages from enrolment to the model, ``(stage, n)`` in order: enrolled, with
        pain reports, in the model (absent without a model); each a subset of the one before.
    reports : pain reports in the panel, dropped by the model by reason, in the model.
    records : one row per input file and status: ``file``, ``status`` (kept | merged |
        quarantined), ``reason`` (empty for kept), ``n``.
    read : records read per file.
    notes : a line of text per stage that needs one (e.g. how many of its runners logged no
        usable run), shown under the stage in the table and the diagram.
    """

    runners: list[tuple[str, int]]
    reports: list[tuple[str, int]]
    records: pd.DataFrame
    read: dict[str, int] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def runner_table(self) -> pd.DataFrame:
        """The runner stages with the number excluded at each step (and a ``Note`` column
        when a stage has a note)."""
        rows, before = [], None
        for stage, n in self.runners:
            row = {"Stage": stage, "Runners": n,
                   "Excluded": "" if before is None else str(before - n)}
            if self.notes:
                row["Note"] = self.notes.get(stage, "")
            rows.append(row)
            before = n
        return pd.DataFrame(rows)

    def record_table(self) -> pd.DataFrame:
        """Per file: read, kept, merged and quarantined, each with its reasons."""
        out = []
        for name in sorted(self.read):
            part = self.records[self.records["file"] == name]
            row: dict[str, Any] = {"File": name, "Read": self.read[name]}
            for status in RECORD_STATUSES:
                mine = part[part["status"] == status]
                row[status.capitalize()] = int(mine["n"].sum())
                if status != "kept":
                    row[f"{status.capitalize()} by reason"] = "; ".join(
                        f"{r}: {n}" for r, n in zip(mine["reason"], mine["n"], strict=True))
            out.append(row)
        return pd.DataFrame(out)

    def check(self) -> None:
        """Raise KneeloadError unless read = kept + merged + quarantined for every file and
        every runner stage is no larger than the one before."""
        for name, n in self.read.items():
            total = int(self.records.loc[self.records["file"] == name, "n"].sum())
            if total != n:
                raise KneeloadError(f"record flow of {name}: read {n} != kept + merged + "
                                    f"quarantined {total}", file=name)
        counts = [n for _, n in self.runners]
        if any(b > a for a, b in itertools.pairwise(counts)):
            raise KneeloadError(f"runner flow is not nested: {self.runners}")
        if len(self.reports) >= 2:
            start, *drops, end = (n for _, n in self.reports)
            if start - sum(drops) != end:
                raise KneeloadError(f"report flow: {start} reports - dropped {sum(drops)} "
                                    f"!= {end} in the model")


def record_flow(cleaning_report: Mapping[str, Any], *, merge_reasons: Iterable[str] | None
                = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Records per input file and status from ``cleaning_report.json`` (whole dataset).

    ``by_reason`` of the audit lists merged and quarantined records together; a reason of
    :data:`analysis.clean.MERGE_REASONS` (exact duplicates, two-device duplicates,
    superseded same-day reports) is a merge, never a quarantine.

    Returns
    -------
    records, read
        ``file``, ``status``, ``reason``, ``n`` rows and the records read per file.
    """
    if merge_reasons is None:
        from analysis.clean import MERGE_REASONS
        merge_reasons = MERGE_REASONS
    merges = set(merge_reasons)
    rows, read = [], {}
    for name, counts in sorted(cleaning_report.get("files", {}).items()):
        read[name] = int(counts.get("read", 0))
        rows.append({"file": name, "status": "kept", "reason": "",
                     "n": int(counts.get("kept", 0))})
        for reason, n in sorted(counts.get("by_reason", {}).items()):
            status = "merged" if reason in merges else "quarantined"
            rows.append({"file": name, "status": status, "reason": reason, "n": int(n)})
        for status in ("merged", "quarantined"):  # the audit's totals, against its reasons
            listed = sum(r["n"] for r in rows if r["file"] == name and r["status"] == status)
            if listed != int(counts.get(status, 0)):
                raise KneeloadError(f"cleaning_report.json {name}: {status} "
                                    f"{counts.get(status)} but its reasons add up to {listed}",
                                    file=name)
    return pd.DataFrame(rows, columns=["file", "status", "reason", "n"]), read


def cohort_record_flow(file_rows: pd.DataFrame, quarantine: pd.DataFrame, *,
                       merge_reasons: Iterable[str] | None = None
                       ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Records per input file and status for one cohort's rows only.

    ``file_rows`` is the cohort's clean rows per file (``file``, ``kept``;
    :class:`analysis.reports.CohortView` ``file_rows``), ``quarantine`` the cohort's rows of
    ``quarantine.csv`` (``file``, ``reason``; merged duplicates included). A cohort's "read"
    is its kept + merged + quarantined rows: rows that name no runner of the cohort (a
    malformed line) are counted in the dataset's flow only.
    """
    if merge_reasons is None:
        from analysis.clean import MERGE_REASONS
        merge_reasons = MERGE_REASONS
    merges = set(merge_reasons)
    kept = file_rows.groupby("file")["kept"].sum() if len(file_rows) else pd.Series(dtype=int)
    rows = [{"file": str(f), "status": "kept", "reason": "", "n": int(n)}
            for f, n in kept.items()]
    if {"file", "reason"} <= set(quarantine.columns) and len(quarantine):
        for (name, reason), n in quarantine.groupby(["file", "reason"]).size().items():
            rows.append({"file": str(name),
                         "status": "merged" if reason in merges else "quarantined",
                         "reason": str(reason), "n": int(n)})
    records = pd.DataFrame(rows, columns=["file", "status", "reason", "n"])
    read = {str(k): int(v) for k, v in records.groupby("file")["n"].sum().items()}
    return records, read


def dropped_reason(reason: str) -> str:
    """A model's dropped-row reason in words: ``missing mileage_jump`` -> ``missing
    week-over-week mileage change``."""
    text = str(reason)
    if text.startswith("missing "):
        return f"missing {term_label(text.removeprefix('missing ')).lower()}"
    return text.replace("_", " ")


def participant_flow(cleaning_report: Mapping[str, Any] | None, *, runners: pd.DataFrame,
                     runs: pd.DataFrame, panel: pd.DataFrame, model: Any | None = None,
                     records: tuple[pd.DataFrame, dict[str, int]] | None = None) -> Flow:
    """STROBE participant and record flow.

    Runners: enrolled (rows of the clean runners table) -> with pain reports (at least one
    report in the panel) -> in the model (``model.n_runners``), each stage a subset of the
    one before. A usable run is no stage: a runner who logged none but reported pain is in
    the panel (the calendar's days are rest days unless ``unlogged_gaps="missing"``) and may
    be in the model, so the number of such runners is a note of "With pain reports"
    (:data:`NO_RUN_NOTE`). Reports: in the panel -> dropped by the model, by reason
    (``model.dropped``) -> in the model (``model.n_obs``). Records: per input file, read ->
    kept / merged / quarantined by reason (:func:`record_flow`).

    Parameters
    ----------
    cleaning_report
        ``cleaning_report.json``; used when ``records`` is None.
    runners, runs, panel
        The clean tables the flow is about (one cohort's, or the whole dataset's).
    model
        A :class:`analysis.models.ModelResult` (``n_runners``, ``n_obs``, ``dropped``), or
        None when no model was fitted.
    records
        Precomputed ``(records, read)``, e.g. :func:`cohort_record_flow` for one cohort.
    """
    enrolled = set(runners["runner_id"])
    with_reports = enrolled & set(panel["runner_id"])
    stages = [(STAGE_ENROLLED, len(enrolled)), (STAGE_WITH_REPORTS, len(with_reports))]
    without_run = len(with_reports - set(runs["runner_id"]))
    notes = {STAGE_WITH_REPORTS: NO_RUN_NOTE.format(n=without_run)} if without_run else {}
    reports = [("In the panel", len(panel))]
    if model is not None:
        stages.append((STAGE_IN_MODEL, int(model.n_runners)))
        reports += [(f"Dropped: {dropped_reason(reason)}", int(n))
                    for reason, n in sorted((model.dropped or {}).items()) if int(n)]
        reports.append(("In the model", int(model.n_obs)))
    if records is None:
        records = record_flow(cleaning_report or {})
    table, read = records
    return Flow(stages, reports, table, read, notes)


# --- model tables ---------------------------------------------------------------------------


def model_table(result: Any, *, outcome: Any | None = None) -> pd.DataFrame:
    """Fixed effects for a paper: human term, reading step, estimate, 95 % CI, p.

    Effects are per reading step (:func:`analysis.effects.add_reading_units`, the one
    scaling: NRS points, or odds ratios for a binomial model), the estimate and its interval
    with the same decimals (:func:`analysis.labels.format_interval`: the estimate's
    significant digits, no more than its interval supports) and p as journals print it
    (:func:`analysis.labels.format_p`). The intercept is left out.
    """
    from analysis.effects import INTERCEPT, add_reading_units, step_value_columns

    table = result.table
    odds = "odds_ratio" in table.columns
    rows = add_reading_units(table, odds=odds)
    rows = rows[rows["term"].astype(str) != INTERCEPT]
    names = step_value_columns(odds)
    unit = getattr(outcome, "unit", "NRS points")
    header = "Odds ratio" if odds else f"Difference ({unit})"
    # estimate and interval alike, with the decimals the interval supports
    texts = [interval_texts(e, a, b, ratio=odds) for e, a, b in
             zip(rows[names[0]], rows[names[1]], rows[names[2]], strict=True)]
    return pd.DataFrame({
        "Term": [term_label(t) for t in rows["term"]],
        "Step": [step_text(t) for t in rows["term"]],
        header: [t["text"] for t in texts],
        "95 % CI": [f"{t['low_text']} to {t['high_text']}" for t in texts],
        "p": [format_p(p) for p in rows["p_value"]] if "p_value" in rows else "",
    }).reset_index(drop=True)


def variance_table(result: Any) -> pd.DataFrame:
    """Variance components in words: "Between-runner SD of the intercept", "Residual SD",
    with their values (SD or correlation), and the intraclass correlation when known.
    Rows with no value are left out (no None or NaN is printed)."""
    vc = result.variance_components
    rows = []
    for row in vc.to_dict(orient="records"):
        value = row.get("sdcor")
        text = format_number(value, trim=False)
        if not text:
            continue
        group, var1, var2 = row.get("group"), row.get("var1"), row.get("var2")
        rows.append({"Component": variance_label(group, var1, var2),
                     "Kind": variance_value_label(group, var1, var2), "Value": text})
    icc = getattr(result, "icc", None)
    if icc is not None and format_number(icc):
        rows.append({"Component": "Intraclass correlation (between-runner share of "
                     "variance)", "Kind": "proportion", "Value": format_number(icc, 2)})
    return pd.DataFrame(rows, columns=["Component", "Kind", "Value"])


# --- writers --------------------------------------------------------------------------------


#: Characters that make markup inside a Markdown table cell (CommonMark 0.31 / GFM tables:
#: emphasis, code, links, strikethrough, the cell separator, escapes); each is
#: backslash-escaped. A ``<`` that could open a tag or an autolink (followed by a letter,
#: ``/``, ``!`` or ``?``) and an ``&`` that could start an entity become entities, so no tag
#: can come out of a cell while ``< 0.001`` and ``>= 3`` stay readable in the file.
_MARKDOWN_CELL = str.maketrans({ch: "\\" + ch for ch in "\\`*_[]|~#!$"})
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_ENTITY_START = re.compile(r"&(?=[A-Za-z#])")


def markdown_cell(value: Any) -> str:
    """One cell as literal Markdown text: control characters and line breaks become spaces,
    markup characters are escaped (a cohort name cannot make a link, tag or emphasis)."""
    text = "".join(" " if not ch.isprintable() else ch for ch in str(value))
    text = _ENTITY_START.sub("&amp;", " ".join(text.split()))
    return _TAG_START.sub("&lt;", text).translate(_MARKDOWN_CELL)


def markdown_table(table: pd.DataFrame, *, index: bool = True) -> str:
    """A GitHub-flavoured Markdown pipe table, every header and cell literal text
    (:func:`markdown_cell`)."""
    frame = table.reset_index() if index and table.index.name is not None else table
    head = [markdown_cell(c) for c in frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for values in frame.itertuples(index=False):
        lines.append("| " + " | ".join(markdown_cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


#: How each character with a meaning in LaTeX, or one that pdflatex's default OT1 font
#: encoding prints as another glyph, is written so that it prints as itself. OT1 has no
#: ``<``, ``>`` or ``|`` in its text fonts: typed, they come out as the glyphs in those
#: slots (``<`` as "¡", ``>`` as "¿", ``|`` as an em dash; the LaTeX Project's "LaTeX font
#: encodings", encguide, OT1 table), so they go through the text commands that take them
#: from a math font in any encoding (``\textless``, ``\textgreater``, ``\textbar``,
#: ``\textbackslash``, LaTeX2e kernel defaults). ``>=`` and ``<=`` (and their Unicode
#: forms, which pdflatex's utf8 input cannot set) become the math relations; ``-`` before
#: another ``-`` gets ``{}`` so ``--`` is not the en-dash ligature.
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    ">=": r"$\geq$", "<=": r"$\leq$", "\u2265": r"$\geq$", "\u2264": r"$\leq$",
    "\u00b1": r"$\pm$", "\u00d7": r"$\times$", "\u00b7": r"$\cdot$", "\u2212": r"$-$",
    "-": "-{}",  # matched only before another "-"
    "`": r"\textasciigrave{}",  # OT1 prints a left quote, and !` ?` as the ligatures ¡ ¿
}
_LATEX_TOKEN = re.compile(r">=|<=|-(?=-)|[\\&%$#_{}~^<>|`\u2265\u2264\u00b1\u00d7\u00b7\u2212]")
_LABEL = re.compile(r"[A-Za-z0-9:._-]+")


def latex_text(value: Any) -> str:
    """One cell, header or caption as literal LaTeX text that pdflatex prints as written
    in its default (OT1) and T1 encodings: control characters and line breaks become
    spaces, every character in :data:`_LATEX_SPECIAL` is replaced; a missing value is an
    empty cell."""
    if not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value):
        return ""
    text = "".join(" " if not ch.isprintable() else ch for ch in str(value))
    return _LATEX_TOKEN.sub(lambda m: _LATEX_SPECIAL[m.group()], " ".join(text.split()))


def latex_table(table: pd.DataFrame, *, caption: str | None = None, label: str | None = None,
                index: bool = True) -> str:
    """A LaTeX ``tabular`` (booktabs) of the table: every header, cell and the caption
    through :func:`latex_text`; ``label`` must be a plain key (letters, digits, ``:._-``)."""
    if label is not None and not _LABEL.fullmatch(label):
        raise KneeloadError(f"LaTeX label must be letters, digits and :._- only; got "
                            f"{label!r}")
    frame = table.reset_index() if index and table.index.name is not None else table
    cells = frame.map(latex_text)
    cells.columns = [latex_text(c) for c in frame.columns]
    return cells.to_latex(index=False, escape=False,
                          caption=None if caption is None else latex_text(caption),
                          label=label, column_format="l" * frame.shape[1])


def write_table(table: pd.DataFrame, folder: str | Path, name: str, *,
                formats: Sequence[str] = ("csv", "md", "tex"), caption: str | None = None
                ) -> dict[str, Path]:
    """Write ``table`` as ``<folder>/<name>.csv`` (and ``.md``, ``.tex``); returns the paths
    by format. The folder is created."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame = table.reset_index() if table.index.name is not None else table
    out = {}
    for fmt in formats:
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":  # a cohort label or term that reads as a formula is defused
            write_display_csv(frame, path)
        elif fmt == "md":
            path.write_text(markdown_table(frame, index=False), encoding="utf-8")
        elif fmt == "tex":
            path.write_text(latex_table(frame, caption=caption, index=False), encoding="utf-8")
        else:
            raise KneeloadError(f"table format must be csv, md or tex; got {fmt!r}")
        out[fmt] = path
    return out


__all__ = [
    "OVERALL",
    "RECORD_STATUSES",
    "Flow",
    "cohort_record_flow",
    "cohort_sizes",
    "dropped_reason",
    "latex_table",
    "latex_text",
    "markdown_cell",
    "markdown_table",
    "model_table",
    "participant_flow",
    "per_runner",
    "record_flow",
    "report_events",
    "table_one",
    "variance_table",
    "write_table",
]
