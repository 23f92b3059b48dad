"""Per-cohort reports: papermill runs ``notebooks/cohort_report.ipynb`` once per cohort.

The package is split along its jobs (``docs/architecture.md``, "The reports package"):

- :mod:`analysis.reports.parameters` template parameters, their parsing and checks,
- :mod:`analysis.reports.manifest` per-cohort outcomes, input fingerprints, atomic writes,
- :mod:`analysis.reports.effects` effects in reading units, sentences, the model banner,
- :mod:`analysis.reports.index` the ``index.html`` page (a Jinja template file),
- :mod:`analysis.reports.cohort` what the report notebook calls,
- :mod:`analysis.reports.runner` run, child processes, lock, Dask.

Every public name is re-exported here, so ``from analysis import reports`` and
``reports.<name>`` keep working. No module of the package imports this file.
``conditional_modes`` and ``RandomEffects`` now live in :mod:`analysis.models.modes`; they
are re-exported lazily, so that ``kneeload report`` does not import the model stack.
"""

from typing import Any

from analysis.outcomes import OutcomeSpec, outcome_spec, report_outcome
from analysis.reports.cohort import (
    FIGURES_DIR,
    HEADLINE_COLUMNS,
    HEADLINE_ODDS_COLUMNS,
    ID_COLUMNS,
    PAIN_THRESHOLD_KEY,
    PSEUDONYM_PATTERN,
    SAFE_RUNNER_COLUMNS,
    TABLES_DIR,
    WHOLE_TABLE_OPTIONS,
    CohortView,
    ExposureChoice,
    ModelAttempt,
    TakeAways,
    choose_exposures,
    cleaning_counts,
    cohort_audit,
    cohort_file_audit,
    cohort_flow,
    cohort_summary,
    cohort_table_one,
    fit_cohort_model,
    follow_up_coverage,
    load_cohort,
    runner_table,
    runner_table_labels,
    takeaway_folder,
    whole_tables,
    write_summary,
)
from analysis.reports.effects import (
    BANNER_CLASS,
    TABLE_STYLE,
    effects_table,
    escape_html,
    fit_status_line,
    markdown_text,
    model_banner,
    plain_language,
    step_values,
)
from analysis.reports.index import headline_rows, write_index
from analysis.reports.manifest import (
    FAILED_NOTEBOOK,
    MANIFEST_NAME,
    REPORT_FILES,
    SUMMARY_NAME,
    WARNING_STATUS,
    CohortOutcome,
    cohort_input_hashes,
    safe_name,
)
from analysis.reports.nonlinear import (
    NonlinearSection,
    nonlinear_section,
    nonlinear_summary,
    sensitivity_display,
)
from analysis.reports.parameters import (
    DEFAULT_MIN_COHORT_SIZE,
    DEFAULT_PARAMETERS,
    KERNEL_NAME,
    NONLINEAR_PARAMETERS,
    OUTCOME_CHOICES,
    OUTCOMES,
    check_min_cohort_size,
    parse_param_items,
    split_list,
    template_path,
    validate_nonlinear_parameters,
    validate_parameters,
)
from analysis.reports.runner import (
    LOCK_NAME,
    CohortJob,
    ReportRun,
    dask_submitter,
    list_cohorts,
    render_html,
    run_cohort,
    run_reports,
)

__all__ = [
    "BANNER_CLASS",
    "DEFAULT_MIN_COHORT_SIZE",
    "DEFAULT_PARAMETERS",
    "FAILED_NOTEBOOK",
    "FIGURES_DIR",
    "HEADLINE_COLUMNS",
    "HEADLINE_ODDS_COLUMNS",
    "ID_COLUMNS",
    "KERNEL_NAME",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "NONLINEAR_PARAMETERS",
    "OUTCOMES",
    "OUTCOME_CHOICES",
    "PAIN_THRESHOLD_KEY",
    "PSEUDONYM_PATTERN",
    "REPORT_FILES",
    "SAFE_RUNNER_COLUMNS",
    "SUMMARY_NAME",
    "TABLES_DIR",
    "TABLE_STYLE",
    "WARNING_STATUS",
    "WHOLE_TABLE_OPTIONS",
    "CohortJob",
    "CohortOutcome",
    "CohortView",
    "ExposureChoice",
    "ModelAttempt",
    "NonlinearSection",
    "OutcomeSpec",
    "RandomEffects",
    "ReportRun",
    "TakeAways",
    "check_min_cohort_size",
    "choose_exposures",
    "cleaning_counts",
    "cohort_audit",
    "cohort_file_audit",
    "cohort_flow",
    "cohort_input_hashes",
    "cohort_summary",
    "cohort_table_one",
    "conditional_modes",
    "dask_submitter",
    "effects_table",
    "escape_html",
    "fit_cohort_model",
    "fit_status_line",
    "follow_up_coverage",
    "headline_rows",
    "list_cohorts",
    "load_cohort",
    "markdown_text",
    "model_banner",
    "nonlinear_section",
    "nonlinear_summary",
    "outcome_spec",
    "parse_param_items",
    "plain_language",
    "render_html",
    "report_outcome",
    "run_cohort",
    "run_reports",
    "runner_table",
    "runner_table_labels",
    "safe_name",
    "sensitivity_display",
    "split_list",
    "step_values",
    "takeaway_folder",
    "template_path",
    "validate_nonlinear_parameters",
    "validate_parameters",
    "whole_tables",
    "write_index",
    "write_summary",
]

#: Names re-exported from :mod:`analysis.models.modes` on first use (PEP 562).
_FROM_MODELS = ("RandomEffects", "conditional_modes")


def __getattr__(name: str) -> Any:
    if name in _FROM_MODELS:
        from analysis.models import modes

        return getattr(modes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
