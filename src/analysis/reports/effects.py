"""Effects as the reports print them: in reading units, in sentences, with the model's status.

The reading units themselves (the step of each exposure, the scaling) are defined once, in
:mod:`analysis.effects`, and re-exported here; this module only chooses which of its columns
an output shows (:func:`step_values`, used by the notebook table, the sentences and the index
alike). It knows nothing of cohorts or manifests.
"""

from __future__ import annotations

import dataclasses
import html
import string
from typing import Any

import numpy as np
import pandas as pd

from analysis.effects import (
    INTERCEPT,
    NULL_EFFECT,
    ODDS_STEP_COLUMNS,
    READING_UNITS,
    STEP_COLUMNS,
    ReadingUnit,
    add_reading_units,
    per_unit_effects,
    reading_unit,
    step_effects,
    step_value_columns,
)
from analysis.outcomes import OutcomeSpec, outcome_by_name

#: Reading-unit columns shown for linear models (NRS points per step) and for binomial
#: models (odds ratios per step): :func:`analysis.effects.step_value_columns`.
NRS_STEP_VALUES = step_value_columns(odds=False)
ODDS_STEP_VALUES = step_value_columns(odds=True)

#: Characters that HTML-escaping replaces by entities (``html.escape(quote=True)``); every
#: other ASCII punctuation character is backslash-escaped in Markdown text (CommonMark 0.31,
#: 2.4 "Backslash escapes": any ASCII punctuation character may be backslash-escaped).
_HTML_SPECIAL = "&<>\"'"
_MARKDOWN_ESCAPES = str.maketrans({ch: "\\" + ch for ch in string.punctuation
                                   if ch not in _HTML_SPECIAL})


def escape_html(value: Any) -> str:
    """``value`` as HTML text: ``& < > " '`` become entities. The one HTML escaping of the
    reports: the index template applies it to every value it prints (Jinja ``finalize``), the
    model banner to every problem, :func:`markdown_text` to everything it passes on."""
    return html.escape(str(value), quote=True)


def markdown_text(value: Any) -> str:
    """``value`` as literal text inside Markdown (a cohort label, a message): no tag, link,
    emphasis, heading or list can come out of it.

    Line breaks and other control characters become spaces (a label cannot start a new
    Markdown block), ASCII punctuation is backslash-escaped and ``& < > " '`` are
    HTML-escaped (:func:`escape_html`), so ``<script>``, ``[x](javascript:...)``,
    ``<img onerror=...>`` and ``**`` are shown as the characters they are.
    """
    text = "".join(" " if not ch.isprintable() else ch for ch in str(value))
    return escape_html(" ".join(text.split()).translate(_MARKDOWN_ESCAPES))


#: Style the report adds once for its tables: long cells (reasons, labels) wrap inside a
#: bounded column instead of running off the page or being cut off.
TABLE_STYLE = ("<style>.jp-RenderedHTMLCommon table td, .jp-RenderedHTMLCommon table th, "
               ".rendered_html table td, .rendered_html table th, table.dataframe td, "
               "table.dataframe th {white-space: normal !important; "
               "overflow-wrap: anywhere; max-width: 36em; text-align: left;}</style>")

#: CSS class of the report's model-warning banner (tests and stylesheets look for it).
BANNER_CLASS = "kneeload-model-warning"
_BANNER_STYLE = ("border: 2px solid #9a5b00; background: #fff4e5; padding: 0.6em 1em; "
                 "margin: 0.5em 0;")


def step_values(table: pd.DataFrame, *, odds: bool | None = None) -> pd.DataFrame:
    """The exposure effects of a tidy table in reading units (intercept dropped).

    Parameters
    ----------
    table : ``term``, ``estimate``, ``ci_low``, ``ci_high`` per unit of each column (NRS
        points, or log-odds for binomial models); reading-unit columns are (re)computed by
        :func:`analysis.effects.add_reading_units`.
    odds : show odds ratios per step; default: when the table has an ``odds_ratio`` column.

    Returns
    -------
    ``term``, ``step_label``, ``scale`` (``nrs`` | ``odds``) and ``estimate``, ``ci_low``,
    ``ci_high`` per step: NRS points, or odds ratios.
    """
    odds = "odds_ratio" in table.columns if odds is None else odds
    rows = add_reading_units(table, odds=odds)
    rows = rows[rows["term"].astype(str) != INTERCEPT]
    names = step_value_columns(odds)
    return pd.DataFrame({
        "term": rows["term"].astype(str), "step_label": rows["step_label"],
        "scale": "odds" if odds else "nrs",
        "estimate": rows[names[0]], "ci_low": rows[names[1]], "ci_high": rows[names[2]],
    }).reset_index(drop=True)


def effects_table(table: pd.DataFrame) -> pd.DataFrame:
    """Fixed effects in reading units: estimate and 95 % CI per step (e.g. per +10 % jump).

    ``step_label`` names the step; ``estimate``, ``ci_low``, ``ci_high`` are NRS points per
    step, or odds ratios per step when the table has odds ratios (:func:`step_values`).
    """
    values = step_values(table)
    rows = table[table["term"].astype(str) != INTERCEPT]
    p_value = rows["p_value"].to_numpy() if "p_value" in rows.columns else np.nan
    return values.drop(columns="scale").assign(p_value=p_value)


def plain_language(table: pd.DataFrame, *, outcome: str | OutcomeSpec = "pain",
                   human: bool = False) -> list[str]:
    """One sentence per exposure effect, in steps a clinician reads (e.g. per +10 % jump).

    ``outcome`` is the modelled outcome kind (:class:`analysis.outcomes.OutcomeSpec`): its
    ``unit`` and ``noun`` make the sentence ("0.12 NRS points higher knee pain", "the odds
    of injury change by a factor of 1.10"). A name is resolved by
    :func:`analysis.outcomes.outcome_by_name` for the unit and keeps the former wording
    ("0.12 NRS points higher pain", "the odds of pain"), which stored notebook outputs hold.
    ``human=True`` names each term as :mod:`analysis.labels` does ("Week-over-week mileage
    change: ... per +10 % week-over-week mileage"); the default keeps the column names (the
    stored outputs of the analysis notebooks).
    """
    from analysis.labels import format_interval, term_label

    if isinstance(outcome, OutcomeSpec):
        spec = outcome
    else:
        spec = outcome_by_name(outcome)
        spec = dataclasses.replace(spec, noun="pain" if spec.column in ("pain", "pain_any")
                                   else spec.noun)
    sentences = []
    for row in step_values(table).itertuples(index=False):
        if human:  # the term in words; the step keeps the reading unit's own label
            row = row._replace(term=term_label(row.term))
        null = NULL_EFFECT[row.scale]
        clear = row.ci_low > null or row.ci_high < null
        verdict = ("the interval excludes no effect" if clear
                   else "the interval includes no effect, so the data are compatible with none")
        estimate, low, high = format_interval(row.estimate, row.ci_low, row.ci_high,
                                              null=null)
        if row.scale == "odds":
            sentences.append(
                f"{row.term}: the odds of {spec.noun} change by a factor of {estimate} "
                f"{row.step_label} (95 % CI {low} to {high}; {verdict}).")
            continue
        size = estimate.lstrip("-")
        direction = ("higher" if row.estimate > 0 else "lower") if size.strip("0.,") else \
            "difference in"  # rounds to 0 at the decimals its interval supports
        sentences.append(
            f"{row.term}: {size} {spec.unit} {direction} {spec.noun} {row.step_label} "
            f"(95 % CI {low} to {high}; {verdict}).")
    return sentences


def model_banner(result: Any, *, human: bool = False) -> str | None:
    """HTML banner for the top of the report's model section when the result's status is
    ``warning`` (None when it is ``ok``): the problems, and what they mean for reading it.
    ``human=True`` names columns by their labels (:func:`analysis.labels.humanize`)."""
    from analysis.labels import humanize

    if getattr(result, "status", "ok") == "ok":
        return None
    items = "".join(f"<li>{escape_html(humanize(p) if human else p)}</li>"
                    for p in result.problems)
    return (f'<div class="{BANNER_CLASS}" style="{_BANNER_STYLE}"><strong>Warning: this '
            "model has problems.</strong> Its estimates and intervals below should not be "
            f"read as a clean fit.<ul>{items}</ul></div>")


def fit_status_line(result: Any) -> str:
    """One honest line on how the fit ended: never "converged" next to a non-convergence.

    ``converged (REML, optimizer Powell)``; when an earlier optimizer stopped first, that is
    said too; a fit that did not converge says so in bold.
    """
    method = result.method
    if not result.converged:
        return (f"**did not converge** ({method}): the estimates are from the best point the "
                "optimizers found and should not be used")
    optimizer = f", optimizer {result.optimizer}" if result.optimizer else ""
    earlier = any("did not converge" in w for w in result.warnings)
    return (f"converged ({method}{optimizer}" +
            (", after an earlier optimizer stopped without converging; see the fit notes)"
             if earlier else ")"))


__all__ = [
    "BANNER_CLASS",
    "NULL_EFFECT",
    "ODDS_STEP_COLUMNS",
    "READING_UNITS",
    "STEP_COLUMNS",
    "TABLE_STYLE",
    "ReadingUnit",
    "add_reading_units",
    "effects_table",
    "escape_html",
    "fit_status_line",
    "markdown_text",
    "model_banner",
    "per_unit_effects",
    "plain_language",
    "reading_unit",
    "step_effects",
    "step_values",
]
