"""Report template parameters: defaults, ``--param KEY=VALUE`` parsing, checks before a run.

Imports nothing of :mod:`analysis.reports` (the bottom layer of the package).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from analysis import paths
from analysis.defaults import DEFAULT_EXPOSURES
from analysis.errors import ReportError
from analysis.outcomes import AUTO, COLUMN_OUTCOMES, OUTCOME_SPECS, report_outcome

KERNEL_NAME = "kneeload"
TEMPLATE_NAME = "cohort_report.ipynb"
#: Fewest runners a cohort needs for any statistic to be shown. Five is the usual floor for
#: small-cell suppression in health statistics (e.g. NHS Digital / ONS disclosure control
#: uses 5; "rule of five"); raising it is allowed, lowering it is not.
DEFAULT_MIN_COHORT_SIZE = 5
#: Outcome columns the template can model and their model: NRS score and OSTRC severity
#: (linear), pain present or an injury flag (logistic). The ``outcome`` parameter also takes
#: ``auto`` (the dataset's declared outcome, :func:`analysis.outcomes.outcome_spec`) and the
#: keys of :data:`analysis.outcomes.OUTCOME_SPECS`.
OUTCOMES = {column: OUTCOME_SPECS[key].default_model for column, key in COLUMN_OUTCOMES.items()}
#: Every value the ``outcome`` parameter takes.
OUTCOME_CHOICES = (AUTO, *OUTCOME_SPECS, *COLUMN_OUTCOMES)
#: Parameters the runner sets itself; ``--param`` may not override them.
RESERVED_PARAMETERS = ("dataset", "cohort", "summary_path")
#: Options of the build, not of a report: ``pain_any`` is the panel's, built with the threshold
#: recorded in ``panel_meta.json`` (one definition; ``kneeload build --pain-threshold``).
BUILD_OPTIONS = {"pain_threshold": "--pain-threshold"}
#: Parameters of the non-linear and lagged load section (:mod:`analysis.reports.nonlinear`,
#: docs/models.md "Non-linear and lagged load"): ``splines`` ``"COLUMN:DF,..."`` (natural
#: spline terms, e.g. ``"acwr_rolling:3"``), ``dlnm`` ``"COLUMN:MAX_LAG"`` (a distributed-lag
#: model of a daily load, e.g. ``"distance_km:28"``), ``sensitivity`` (the sensitivity table
#: of the headline exposure). Empty / false: the section is not drawn.
NONLINEAR_PARAMETERS: dict[str, Any] = {"splines": "", "dlnm": "", "sensitivity": False}
#: Parameters the template must declare; checked against papermill's inspection before running.
DEFAULT_PARAMETERS: dict[str, Any] = {
    "outcome": AUTO,
    "exposures": AUTO,
    "random_slopes": "",
    "min_cohort_size": DEFAULT_MIN_COHORT_SIZE,
    "seed": 0,
    **NONLINEAR_PARAMETERS,
}
#: Largest natural-spline df a report fits (beyond 10 a curve is noise on cohort-sized data).
MAX_SPLINE_DF = 10
#: Longest DLNM lag a report fits, days (a quarter of a year; the default of
#: :data:`analysis.models.DEFAULT_MAX_LAG` is 28).
MAX_DLNM_LAG_DAYS = 90


def parse_splines_param(value: str) -> dict[str, int]:
    """``"acwr_rolling:3, km_7d:4"`` -> ``{"acwr_rolling": 3, "km_7d": 4}`` (empty: none).

    Raises
    ------
    ReportError
        An item that is not ``COLUMN:DF`` with a whole df in 1..:data:`MAX_SPLINE_DF`, or a
        column given twice.
    """
    out: dict[str, int] = {}
    for item in split_list(value):
        column, sep, df = item.rpartition(":")
        column = column.strip()
        if not sep or not column or not df.strip().isdigit() \
                or not 1 <= int(df) <= MAX_SPLINE_DF:
            raise ReportError(f"splines: each item is COLUMN:DF with DF 1..{MAX_SPLINE_DF} "
                              f"(e.g. acwr_rolling:3), got {item!r}")
        if column in out:
            raise ReportError(f"splines: {column!r} is given twice")
        out[column] = int(df)
    return out


def parse_dlnm_param(value: str) -> tuple[str, int] | None:
    """``"distance_km:28"`` -> ``("distance_km", 28)``; empty -> None.

    Raises
    ------
    ReportError
        Not ``COLUMN:MAX_LAG`` with a whole number of days in 1..:data:`MAX_DLNM_LAG_DAYS`.
    """
    text = str(value).strip()
    if not text:
        return None
    column, sep, lag = text.rpartition(":")
    column = column.strip()
    if not sep or not column or "," in text or not lag.strip().isdigit() \
            or not 1 <= int(lag) <= MAX_DLNM_LAG_DAYS:
        raise ReportError(f"dlnm: one daily load as COLUMN:MAX_LAG with MAX_LAG 1.."
                          f"{MAX_DLNM_LAG_DAYS} days (e.g. distance_km:28), got {text!r}")
    return column, int(lag)


def validate_nonlinear_parameters(parameters: Mapping[str, Any], *,
                                  panel_columns: Iterable[str] = (),
                                  daily_columns: Iterable[str] = ()) -> None:
    """Check the ``splines``, ``dlnm`` and ``sensitivity`` parameters that are given.

    ``splines`` columns must be panel columns and ``dlnm``'s a daily-calendar column
    (``daily.parquet``) when those column lists are given (empty: syntax only).

    Raises
    ------
    ReportError
        Bad syntax (:func:`parse_splines_param`, :func:`parse_dlnm_param`), a column the
        panel or the daily table lacks, or a ``sensitivity`` that is not a bool.
    """
    panel = set(panel_columns)
    for column in parse_splines_param(parameters.get("splines", "")):
        if panel and column not in panel:
            raise ReportError(f"splines: {column!r} is not a panel column (e.g. "
                              "acwr_rolling, km_7d, mileage_jump)")
    dlnm = parse_dlnm_param(parameters.get("dlnm", ""))
    daily = set(daily_columns)
    if dlnm is not None and daily and dlnm[0] not in daily:
        raise ReportError(f"dlnm: {dlnm[0]!r} is not a column of the daily table "
                          "(daily.parquet; e.g. distance_km, duration_min, srpe_au)")
    if not isinstance(parameters.get("sensitivity", False), bool):
        raise ReportError(f"sensitivity must be true or false, got "
                          f"{parameters.get('sensitivity')!r}")


def template_path() -> Path:
    """The papermill template, ``notebooks/cohort_report.ipynb``."""
    return paths.notebooks_dir() / TEMPLATE_NAME


def split_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (comma-separated template parameters)."""
    return [v.strip() for v in str(value).split(",") if v.strip()]


def parse_param_items(items: Sequence[str], *, template: str | Path | None = None
                      ) -> dict[str, Any]:
    """Turn ``--param KEY=VALUE`` strings into typed template parameters.

    Each value is converted to the type the template declares for it (``int``, ``float``,
    ``str``, ``bool``) as papermill infers it from the parameters cell.

    Raises
    ------
    ReportError
        Malformed item, unknown or reserved key, a build option (``pain_threshold``), or a
        value of the wrong type.
    """
    declared = declared_parameters(Path(template) if template else template_path())
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ReportError(f"--param needs KEY=VALUE, got {item!r}")
        if key in RESERVED_PARAMETERS:
            raise ReportError(f"--param {key} is set by 'kneeload report' itself (use the "
                              "PROCESSED_DIR argument and --cohort)")
        _refuse_build_option(key)
        if key not in declared:
            raise ReportError(f"unknown report parameter {key!r}; the template declares "
                              f"{sorted(set(declared) - set(RESERVED_PARAMETERS))}")
        params[key] = _coerce(key, value.strip(), declared[key])
    return params


def _refuse_build_option(key: str) -> None:
    if key in BUILD_OPTIONS:
        raise ReportError(f"{key} is an option of the build, not of a report: the panel's "
                          f"pain_any was built with the threshold in panel_meta.json; rebuild "
                          f"with 'kneeload build {BUILD_OPTIONS[key]} VALUE' to change it")


def _coerce(key: str, value: str, type_name: str) -> Any:
    try:
        if type_name == "int":
            return int(value)
        if type_name == "float":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if type_name == "bool":
            lowered = value.lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(value)
            return lowered in {"true", "1", "yes"}
    except ValueError:
        raise ReportError(f"--param {key}={value!r}: expected {type_name}") from None
    return value


def validate_parameters(parameters: Mapping[str, Any], *, panel_columns: Iterable[str] = (),
                        daily_columns: Iterable[str] = (),
                        meta: Mapping[str, Any] | None = None) -> None:
    """Check parameter values before any notebook runs (one clear error, not N failed reports).

    Parameters
    ----------
    parameters
        Template parameters (:data:`DEFAULT_PARAMETERS` updated by ``--param``).
    panel_columns
        The panel's columns (empty: not checked).
    daily_columns
        The daily calendar's columns, ``dlnm``'s load (empty: not checked).
    meta
        ``panel_meta.json``: the declared outcome ``outcome=auto`` resolves to.

    Raises
    ------
    ReportError
        Unknown outcome, a build option (``pain_threshold``), ``min_cohort_size`` below
        :data:`DEFAULT_MIN_COHORT_SIZE` (:func:`check_min_cohort_size`), no exposures, a
        random slope that is not an exposure, or a column the panel lacks
        (named, with the fix).
    """
    for key in parameters:
        _refuse_build_option(key)
    if parameters["outcome"] not in OUTCOME_CHOICES:
        raise ReportError(f"outcome must be one of {list(OUTCOME_CHOICES)}, got "
                          f"{parameters['outcome']!r}")
    check_min_cohort_size(parameters["min_cohort_size"])
    auto = str(parameters["exposures"]).strip() == AUTO
    exposures = list(DEFAULT_EXPOSURES) if auto else split_list(parameters["exposures"])
    if not exposures:
        raise ReportError("exposures: at least one panel column is needed (or "
                          f"exposures={AUTO}: the defaults the data support)")
    slopes = split_list(parameters["random_slopes"])
    if not set(slopes) <= set(exposures):
        raise ReportError(f"random_slopes {slopes} must be among the exposures {exposures}")
    columns = set(panel_columns)
    missing = [c for c in exposures if columns and c not in columns and not auto]
    if missing:
        keep = [c for c in exposures if c not in missing]
        fix = f"--param exposures={','.join(keep)}" if keep else f"--param exposures={AUTO}"
        raise ReportError(f"exposure(s) {missing} are not panel columns; leave them out "
                          f"({fix}) or name columns the panel has")
    if set(NONLINEAR_PARAMETERS) & set(parameters):
        validate_nonlinear_parameters(parameters, panel_columns=columns,
                                      daily_columns=daily_columns)
    spec = report_outcome(str(parameters["outcome"]), meta or {})
    if columns and parameters["outcome"] != AUTO and spec.column not in columns:
        raise ReportError(f"outcome {parameters['outcome']!r} models the column "
                          f"{spec.column!r}, which the panel does not have; use "
                          f"--param outcome={AUTO} (the dataset's declared outcome)")


def check_min_cohort_size(value: Any) -> int:
    """``min_cohort_size`` as an int, refused below the floor :data:`DEFAULT_MIN_COHORT_SIZE`.

    One rule for every report (``kneeload report`` checks it before running, the template
    checks it again when papermill runs it directly): the minimum may be raised, never
    lowered below 5 runners.

    Raises
    ------
    ReportError
        Not a whole number, or below the floor.
    """
    try:
        size = int(value)
        whole = not isinstance(value, bool) and float(value) == size
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise ReportError(f"min_cohort_size must be a whole number of runners, got {value!r}")
    if size < DEFAULT_MIN_COHORT_SIZE:
        raise ReportError(f"min_cohort_size={value!r} is below the privacy floor of "
                          f"{DEFAULT_MIN_COHORT_SIZE} runners; it may be raised, not lowered")
    return size


def declared_parameters(template: Path) -> dict[str, str]:
    """``{name: inferred type name}`` of a template's parameters cell (papermill's reading)."""
    import papermill

    if not template.is_file():
        raise ReportError("report template not found", file=template)
    return {name: info["inferred_type_name"]
            for name, info in papermill.inspect_notebook(str(template)).items()}


def check_template_parameters(template: Path, parameters: Mapping[str, Any]) -> None:
    """The template declares every parameter given and every reserved one.

    Raises
    ------
    ReportError
        A parameter the template does not declare, or a reserved one it lacks.
    """
    declared = set(declared_parameters(template))
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise ReportError(f"unknown report parameter(s) {unknown}; the template declares "
                          f"{sorted(declared)}", file=template)
    missing = sorted(set(RESERVED_PARAMETERS) - declared)
    if missing:
        raise ReportError(f"the template does not declare {missing}", file=template)


__all__ = [
    "BUILD_OPTIONS",
    "DEFAULT_MIN_COHORT_SIZE",
    "DEFAULT_PARAMETERS",
    "KERNEL_NAME",
    "MAX_DLNM_LAG_DAYS",
    "MAX_SPLINE_DF",
    "NONLINEAR_PARAMETERS",
    "OUTCOMES",
    "OUTCOME_CHOICES",
    "RESERVED_PARAMETERS",
    "TEMPLATE_NAME",
    "check_min_cohort_size",
    "check_template_parameters",
    "declared_parameters",
    "parse_dlnm_param",
    "parse_param_items",
    "parse_splines_param",
    "split_list",
    "template_path",
    "validate_nonlinear_parameters",
    "validate_parameters",
]
