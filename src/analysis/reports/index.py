"""The reports folder's ``index.html``: one row per cohort, rendered from a Jinja template file.

The template is package data, ``analysis/reports/templates/index.html.j2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import __version__
from analysis.outcomes import FALLBACK_OUTCOME, OUTCOME_SPECS
from analysis.outputs import atomic_write_text
from analysis.reports.effects import escape_html, step_values
from analysis.reports.manifest import (
    FAILED_NOTEBOOK,
    WARNING_STATUS,
    CohortOutcome,
    now,
    safe_name,
)
from analysis.reports.parameters import DEFAULT_MIN_COHORT_SIZE

INDEX_NAME = "index.html"
#: The index page's Jinja template, relative to this package.
INDEX_TEMPLATE_FILE = "templates/index.html.j2"
#: Per-unit values of each headline effect the index reads from ``summary.json``.
HEADLINE_PER_UNIT = ("term", "estimate", "ci_low", "ci_high")
#: Unit of a linear model's headline effects in a summary written before ``outcome_unit``
#: was recorded (every such model was of NRS knee pain).
FALLBACK_UNIT = OUTCOME_SPECS[FALLBACK_OUTCOME].unit


def index_template() -> str:
    """The Jinja source of ``index.html`` (package data)."""
    return resources.files(__package__).joinpath(INDEX_TEMPLATE_FILE).read_text(
        encoding="utf-8")


def write_index(out: Path, outcomes: Sequence[CohortOutcome], *, processed: Path) -> Path:
    """Write ``index.html``: one row per cohort with status, size, estimates and link.

    Every value the template prints goes through :func:`analysis.reports.effects.escape_html`
    (Jinja ``finalize``), the same escaping the report's own text gets.
    """
    from jinja2 import Environment

    env = Environment(autoescape=False, finalize=escape_html)  # finalize escapes every value
    page = env.from_string(index_template()).render(
        title=f"kneeload reports: {processed.name}",
        generated=now(),
        version=__version__,
        rows=[_index_row(o, out) for o in outcomes],
        min_cohort_size=min((int(o.parameters.get("min_cohort_size", DEFAULT_MIN_COHORT_SIZE))
                             for o in outcomes), default=DEFAULT_MIN_COHORT_SIZE),
        floor=DEFAULT_MIN_COHORT_SIZE,
    )
    path = out / INDEX_NAME
    atomic_write_text(path, page)
    return path


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


def _index_row(outcome: CohortOutcome, out: Path) -> dict[str, Any]:
    summary = outcome.summary or {}
    folder = safe_name(outcome.cohort)
    has_report = (out / folder / "report.html").is_file()
    return {
        "cohort": outcome.cohort,
        "status": outcome.shown_status,
        "status_class": WARNING_STATUS if outcome.problems and outcome.status in {"ok", "skipped"}
        else outcome.status,
        "problems": outcome.problems if outcome.status in {"ok", "skipped"} else [],
        "runners": outcome.runners if outcome.status != "suppressed" else None,
        "reports": summary.get("n_reports"),
        "estimates": headline_rows(summary),
        "outcome_label": summary.get("outcome_label"),
        "left_out": list((summary.get("exposures_left_out") or {}).values()),
        "model_note": summary.get("model_note"),
        "link": f"{folder}/report.html" if has_report and outcome.status != "suppressed"
        else None,
        "failed_link": f"{folder}/{FAILED_NOTEBOOK}" if outcome.status == "failed" else None,
        "last_ok": outcome.last_ok,
        "duration_s": outcome.duration_s,
        "finished": outcome.finished,
        "error": outcome.error,
    }


__all__ = ["INDEX_NAME", "INDEX_TEMPLATE_FILE", "headline_rows", "index_template",
           "write_index"]
