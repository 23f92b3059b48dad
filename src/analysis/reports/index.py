"""The reports folder's ``index.html``: one row per cohort, rendered from a Jinja template file.

The template is package data, ``analysis/reports/templates/index.html.j2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from analysis import __version__
from analysis.labels import humanize, interval_texts, sentence, step_label
from analysis.outputs import atomic_write_text
from analysis.reports.effects import escape_html
from analysis.reports.manifest import (
    FAILED_NOTEBOOK,
    WARNING_STATUS,
    CohortOutcome,
    now,
    safe_name,
)
from analysis.reports.parameters import DEFAULT_MIN_COHORT_SIZE
from analysis.reports.study import (
    HEADLINE_PER_UNIT,
    headline_rows,
    study_view,
    table_one_view,
)

INDEX_NAME = "index.html"
#: The index page's Jinja template, relative to this package.
INDEX_TEMPLATE_FILE = "templates/index.html.j2"


def index_template() -> str:
    """The Jinja source of ``index.html`` (package data)."""
    return resources.files(__package__).joinpath(INDEX_TEMPLATE_FILE).read_text(
        encoding="utf-8")


def write_index(out: Path, outcomes: Sequence[CohortOutcome], *, processed: Path,
                study: bool = True) -> Path:
    """Write ``index.html``: the study-wide view (forest plot of each headline effect across
    cohorts, pooled model with its exposure x cohort test: :func:`analysis.reports.study.
    study_view`), Table 1 over the cohorts with a report (:func:`analysis.reports.study.
    table_one_view`, also written as ``index.tables/table1.{csv,md,tex}``) and one row per
    cohort with status, model status, size, estimates and link.

    Every value the template prints goes through :func:`analysis.reports.effects.escape_html`
    (Jinja ``finalize``), the same escaping the report's own text gets. Suppressed cohorts
    are left out of everything: no row, no count, not in the figure, Table 1 or the pooled
    model (issue 14: they stay invisible everywhere). ``study=False`` leaves the study-wide
    view and Table 1 out (the index written after each cohort while a run is still going:
    they are made once, at the end of the run).
    """
    from jinja2 import Environment

    shown = [o for o in outcomes if o.status != "suppressed"]
    minimum = max((int(o.parameters.get("min_cohort_size", DEFAULT_MIN_COHORT_SIZE))
                   for o in outcomes if o.parameters), default=DEFAULT_MIN_COHORT_SIZE)
    env = Environment(autoescape=False, finalize=escape_html)  # finalize escapes every value
    page = env.from_string(index_template()).render(
        title=f"kneeload reports: {processed.name}",
        generated=now(),
        version=__version__,
        rows=[_index_row(o, out) for o in shown],
        study=study_view(out, shown, processed=processed) if study else None,
        table_one=table_one_view(out, shown, processed=processed, min_cohort_size=minimum)
        if study else None,
        min_cohort_size=minimum,
        floor=DEFAULT_MIN_COHORT_SIZE,
    )
    path = out / INDEX_NAME
    atomic_write_text(path, page)
    return path


def _index_row(outcome: CohortOutcome, out: Path) -> dict[str, Any]:
    summary = outcome.summary or {}
    folder = safe_name(outcome.cohort)
    has_report = (out / folder / "report.html").is_file()
    return {
        "cohort": outcome.cohort,
        "status": outcome.shown_status,
        "status_class": WARNING_STATUS if outcome.problems and outcome.status in {"ok", "skipped"}
        else outcome.status,
        "problems": [humanize(p) for p in outcome.problems]
        if outcome.status in {"ok", "skipped"} else [],
        "runners": outcome.runners,
        "reports": summary.get("n_reports"),
        "estimates": [_with_text(e) | {"label": step_label(e["term"])}
                      for e in headline_rows(summary)],
        "model_status": _model_status(outcome),
        "outcome_label": summary.get("outcome_label"),
        "left_out": [sentence(humanize(r))
                     for r in (summary.get("exposures_left_out") or {}).values()],
        "model_note": humanize(summary["model_note"]) if summary.get("model_note") else None,
        "link": f"{folder}/report.html" if has_report else None,
        "failed_link": f"{folder}/{FAILED_NOTEBOOK}" if outcome.status == "failed" else None,
        "last_ok": outcome.last_ok,
        "duration_s": outcome.duration_s,
        "finished": outcome.finished,
        "error": outcome.error,
    }


def _with_text(effect: dict[str, Any]) -> dict[str, Any]:
    """An effect row (``estimate``, ``ci_low``, ``ci_high``, ``scale``) with the three as
    text (``text``, ``low_text``, ``high_text``: :func:`analysis.labels.interval_texts`,
    signed for a difference, as the pooled model's rows)."""
    odds = effect.get("scale") == "odds"
    return effect | interval_texts(effect["estimate"], effect["ci_low"], effect["ci_high"],
                                   ratio=odds, signed=not odds)


def _model_status(outcome: CohortOutcome) -> str:
    """The index's model column: converged, not converged, or no model."""
    summary = outcome.summary or {}
    if outcome.status not in {"ok", "skipped"} or not summary:
        return ""
    if not summary.get("headline"):
        return "no model"
    return "not converged" if summary.get("converged") is False else "converged"


__all__ = ["HEADLINE_PER_UNIT", "INDEX_NAME", "INDEX_TEMPLATE_FILE", "headline_rows",
           "index_template", "write_index"]
