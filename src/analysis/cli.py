"""The ``kneeload`` command: thin typer wrappers over the package functions.

Errors a user can fix (:class:`analysis.errors.KneeloadError`) print one red line and exit
with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from analysis.defaults import (
    DEFAULT_EXPOSURE_LAG_DAYS,
    DEFAULT_EXPOSURES,
    DEFAULT_PAIN_THRESHOLD,
    DEFAULT_SEED,
    INPUT_FORMATS,
)
from analysis.errors import EXIT_USER_ERROR, KneeloadError

#: Columns of ``--help`` when stdout is not a terminal (a pipe, a file, CI): rich would
#: otherwise assume 80 and cut option names ("--exposure-lag…"). Wide enough for every
#: option name and type of every command, whole. A terminal keeps its own width, and
#: ``TERMINAL_WIDTH`` or ``COLUMNS`` set by the user win.
HELP_WIDTH_NOT_A_TTY = 160


@contextlib.contextmanager
def _help_width() -> Iterator[None]:
    """Render help at :data:`HELP_WIDTH_NOT_A_TTY` columns when stdout is not a terminal."""
    if sys.stdout.isatty() or os.environ.get("TERMINAL_WIDTH") or os.environ.get("COLUMNS"):
        yield
        return
    from typer import rich_utils

    before = rich_utils.MAX_WIDTH
    rich_utils.MAX_WIDTH = HELP_WIDTH_NOT_A_TTY
    try:
        yield
    finally:
        rich_utils.MAX_WIDTH = before


class _WideHelpGroup(TyperGroup):
    """The command group, its help whole when piped (:func:`_help_width`)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _help_width():
            super().format_help(ctx, formatter)


class _WideHelpCommand(TyperCommand):
    """A command, its help whole when piped (:func:`_help_width`)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _help_width():
            super().format_help(ctx, formatter)


app = typer.Typer(
    name="kneeload",
    help="Running training load and knee pain: simulate, build, fit and report.",
    cls=_WideHelpGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)  # one line per message, even under cron


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a KneeloadError into one red line on stderr and exit code 2."""
    try:
        yield
    except KneeloadError as error:
        console.print(f"[bold red]error:[/] {escape(error.one_line())}", highlight=False,
                      soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None


def _split(values: str | None) -> list[str]:
    return [v.strip() for v in (values or "").split(",") if v.strip()]


def _parse_ints(values: str | None, *, option: str) -> list[int]:
    """Comma-separated whole numbers, or a one-line user error naming the option."""
    try:
        return [int(v) for v in _split(values)]
    except ValueError:
        raise KneeloadError(f"{option} takes comma-separated whole numbers, got {values!r}") \
            from None


@app.command(cls=_WideHelpCommand)
def simulate(
    out: Annotated[Path, typer.Option(help="Folder to write the canonical CSVs and truth.json.")],
    runners_per_cohort: Annotated[int, typer.Option(min=1)] = 20,
    weeks: Annotated[int, typer.Option(min=3, help="Weeks of follow-up.")] = 26,
    cohorts: Annotated[int, typer.Option(min=1, max=5)] = 3,
    seed: int = DEFAULT_SEED,
    outcome: Annotated[str, typer.Option(
        help="'nrs' (linear), 'binary' (logistic) or 'hazard' (pain-episode onsets with "
             "known hazard ratios).")] = "nrs",
    messy: Annotated[bool, typer.Option(
        help="Also write realistic defects (listed in truth.json) for the cleaning step.")]
        = False,
) -> None:
    """Write a deterministic synthetic dataset with known true effects."""
    from analysis.simulate import simulate_dataset, write_dataset

    with user_errors():
        dataset = simulate_dataset(runners_per_cohort=runners_per_cohort, weeks=weeks,
                                   cohorts=cohorts, seed=seed, outcome=outcome)
        write_dataset(dataset, out, messy=messy)
    counts = dataset.truth["counts"]
    console.print(f"wrote {out}: {counts['runners']} runners, {counts['runs']} runs, "
                  f"{counts['pain_reports']} pain reports, truth.json", markup=False)


@app.command(cls=_WideHelpCommand)
def build(
    raw: Annotated[Path, typer.Argument(help="Raw data folder (never written to).")],
    out: Annotated[Path, typer.Option(help="Processed folder to (re)create.")],
    format: Annotated[str, typer.Option(
        help=" | ".join((*INPUT_FORMATS, "auto (detect by file names and headers)")))] = "auto",
    exposure_lag_days: Annotated[int, typer.Option(
        min=0, help="Days between a pain report and its exposures' reference day.")]
        = DEFAULT_EXPOSURE_LAG_DAYS,
    pain_threshold: Annotated[float, typer.Option(help="pain_any = pain >= this (NRS).")]
        = DEFAULT_PAIN_THRESHOLD,
    lags: Annotated[str, typer.Option(help="Weekly lags of every feature, e.g. '1,2'.")] = "",
    unlogged_gaps: Annotated[str, typer.Option(
        help="21+ day gaps without runs: 'rest' or 'missing'.")] = "rest",
    pseudonymise: Annotated[bool, typer.Option(
        help="Replace runner/shoe IDs by a keyed hash (needs KNEELOAD_ID_SALT) and drop "
             "free text.")] = False,
    timezone: Annotated[str, typer.Option(
        help="Local time zone for exports that write UTC (Strava), e.g. Europe/Oslo.")] = "UTC",
    distance_unit: Annotated[str, typer.Option(
        help="km or mi, for exports that do not say (Garmin).")] = "km",
    dayfirst: Annotated[bool | None, typer.Option(
        "--dayfirst/--no-dayfirst",
        help="Numeric dates are day-first (31/01/2024) or month-first (01/31/2024); "
             "default: from the file's language, asking when a file is ambiguous.")] = None,
    date_format: Annotated[str | None, typer.Option(
        help="strptime format of every date, e.g. '%d/%m/%Y %H:%M:%S' (replaces "
             "detection).")] = None,
) -> None:
    """Validate and clean raw files, build the exposure panel, write Parquet."""
    from analysis.memory import prepare_build_process

    # before numpy and pandas are imported: their import time faults in the build's heap
    # (already started by the console script when RAW came first: analysis.__main__)
    warmed = prepare_build_process(raw)
    from analysis.pipeline import build as build_dataset

    warmed()

    with user_errors():
        summary = build_dataset(raw, out, format=format, exposure_lag_days=exposure_lag_days,
                                pain_threshold=pain_threshold,
                                lags=_parse_ints(lags, option="--lags"),
                                unlogged_gaps=unlogged_gaps, pseudonymise=pseudonymise,
                                timezone=timezone, distance_unit=distance_unit,
                                **date_options(build_dataset, dayfirst=dayfirst,
                                               date_format=date_format))
    counts = summary.counts
    console.print(
        f"built {summary.out_dir} from {raw} (format: {summary.format}): "
        f"{counts['runners']} runners, {counts['runs']} runs, {counts['pain_reports']} "
        f"pain reports -> {counts['panel_rows']} panel rows; {counts['merged']} duplicates "
        f"merged, {counts['quarantined']} rows quarantined (quarantine.csv)"
    )
    for note in summary.cleaning.get("notes", []):
        console.print(f"  {note}", highlight=False, markup=False)


def date_options(build_function: Any, *, dayfirst: bool | None, date_format: str | None
                 ) -> dict[str, Any]:
    """``dayfirst=`` / ``date_format=`` for the build, only those the user gave.

    Raises
    ------
    KneeloadError
        An option given to a build that does not take it yet (names the option).
    """
    import inspect

    given = {k: v for k, v in (("dayfirst", dayfirst), ("date_format", date_format))
             if v is not None}
    accepted = inspect.signature(build_function).parameters
    for keyword in given:
        if keyword not in accepted:
            option = "--dayfirst/--no-dayfirst" if keyword == "dayfirst" else "--date-format"
            raise KneeloadError(f"{option} is not supported by this build yet "
                                f"(analysis.pipeline.build takes no {keyword}=)")
    return given


datasets_app = typer.Typer(help="Public datasets kneeload can read.", cls=_WideHelpGroup,
                           no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("fetch", cls=_WideHelpCommand)
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. lovdal2021.")],
    out: Annotated[Path, typer.Option(help="Folder to download into (a raw folder).")],
) -> None:
    """Download a public dataset from its DOI and verify its checksums (needs internet)."""
    from analysis.ingest.fetch import fetch_dataset

    with user_errors():
        files = fetch_dataset(name, out)
    console.print(f"fetched {name} into {out}: {len(files)} files verified", highlight=False,
                  markup=False)


#: ``kneeload fit`` options -> (keyword of the Python fitter, {option value: keyword value}).
#: Values are matched case-insensitively. Only options the user sets are passed on, so each
#: fitter's own defaults apply otherwise.
FIT_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "--method": ("reml", {"reml": True, "ml": False}),
    "--df": ("ddf", {"wald": "wald", "satterthwaite": "satterthwaite"}),
    "--se": ("vcov", {"model": "model", "robust": "robust", "CR0": "CR0", "CR1": "CR1"}),
    "--correlation": ("correlation", {"none": None, "ar1": "ar1"}),
}

#: Output formats of ``kneeload fit`` (``--format``, or the suffix of ``--out``).
FIT_FORMATS = ("json", "csv")

#: Columns of the ``kneeload fit`` CSV that say whether the fit can be trusted (the same on
#: every row; the JSON has them as top-level keys): ``status`` ("ok" or "warning"),
#: ``problems`` (joined with "; ", empty when ok) and ``converged``.
FIT_STATUS_COLUMNS = ("status", "problems", "converged")


def _keyword_values(model: str) -> dict[str, tuple[Any, ...]]:
    """Values a fitter's keyword takes where a model accepts fewer than the CLI offers."""
    from analysis.models.glmm import GLMM_VCOV_TYPES

    return {"vcov": GLMM_VCOV_TYPES} if model == "glmm" else {}


def fit_keywords(model: str, options: dict[str, str | None]) -> dict[str, Any]:
    """Map ``kneeload fit`` options onto the fitter's keywords (1:1; unset options omitted).

    Raises
    ------
    KneeloadError
        A value outside the option's choices, or an option (or value) the model's fitter
        does not take (``--method ml`` or ``--se CR0`` with ``--model glmm``); the message
        names the option.
    """
    import inspect

    from analysis.models.fit import FITTERS

    if model not in FITTERS:
        raise KneeloadError(f"--model must be one of {', '.join(FITTERS)}; got {model!r}")
    accepted = inspect.signature(FITTERS[model]).parameters
    restricted = _keyword_values(model)
    kwargs: dict[str, Any] = {}
    for option, value in options.items():
        if value is None:
            continue
        keyword, choices = FIT_OPTIONS[option]
        by_lower = {choice.lower(): mapped for choice, mapped in choices.items()}
        if value.lower() not in by_lower:
            raise KneeloadError(f"{option} must be one of {', '.join(choices)}; got {value!r}")
        if keyword not in accepted:
            raise KneeloadError(f"{option} does not apply to --model {model} (its fitter has "
                                f"no {keyword!r} option)")
        mapped = by_lower[value.lower()]
        if keyword in restricted and mapped not in restricted[keyword]:
            raise KneeloadError(f"{option} {value} does not apply to --model {model} (its "
                                f"fitter takes {keyword}= one of "
                                f"{', '.join(map(str, restricted[keyword]))})")
        kwargs[keyword] = mapped
    return kwargs


def _spline_specs(specs: list[str] | None) -> dict[str, int]:
    """``--spline`` items -> ``{column: df}``, refusing a column given more than once (a
    dict would keep the last of ``mileage_jump:3 --spline mileage_jump:2`` silently)."""
    from analysis.models.design import parse_spline_spec

    splines: dict[str, int] = {}
    given: dict[str, str] = {}
    for item in specs or ():
        column, df = parse_spline_spec(item)
        if column in splines:
            raise KneeloadError(f"--spline {column} given more than once ({given[column]}, "
                                f"{item}): give each column one COLUMN:DF")
        splines[column], given[column] = df, str(item)
    return splines


def _spline_keyword(model: str, specs: list[str]) -> dict[str, int]:
    """``--spline acwr_rolling:3`` items -> ``{"acwr_rolling": 3}`` for a fitter that takes
    ``splines`` (lmm, glmm)."""
    import inspect

    from analysis.models.fit import FITTERS

    if "splines" not in inspect.signature(FITTERS[model]).parameters:
        raise KneeloadError(f"--spline does not apply to --model {model} (lmm and glmm take "
                            "it)")
    return _spline_specs(specs)


def fit_format(out: Path, format: str | None) -> str:
    """The output format of ``kneeload fit``: ``--format``, else the suffix of ``--out``.

    Raises
    ------
    KneeloadError
        ``--format`` other than json or csv, or no ``--format`` and an ``--out`` that ends
        in neither ``.json`` nor ``.csv`` (nothing is written in another format silently).
    """
    if format is not None:
        if format.lower() not in FIT_FORMATS:
            raise KneeloadError(f"--format must be one of {', '.join(FIT_FORMATS)}; got "
                                f"{format!r}")
        return format.lower()
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in FIT_FORMATS:
        raise KneeloadError(f"--out {out} must end in .json or .csv, or give --format json "
                            "or --format csv")
    return suffix


def fit_csv_table(result: Any) -> Any:
    """The effects table of a fit with its :data:`FIT_STATUS_COLUMNS` on every row."""
    return result.table.assign(status=result.status, problems="; ".join(result.problems),
                               converged=bool(result.converged))


@app.command(cls=_WideHelpCommand)
def fit(
    panel: Annotated[Path, typer.Argument(help="panel.parquet or a processed folder.")],
    out: Annotated[Path, typer.Option(help="Where to write the result (.json or .csv).")],
    model: Annotated[str | None, typer.Option(
        help="lmm | glmm | gee, or a time-to-event model of pain-episode onset: cox (first "
             "episode) | andersen-gill | pwp (needs the processed folder). Default: the "
             "dataset's outcome's (panel_meta.json outcome: lmm for NRS pain or OSTRC "
             "severity, glmm for an injury flag).")] = None,
    exposures: Annotated[str, typer.Option(
        help="Comma-separated panel columns, or 'auto': the defaults "
             f"({','.join(DEFAULT_EXPOSURES)}) less those the panel has no values of.")]
        = "auto",
    outcome: Annotated[str | None, typer.Option(
        help="Response column. Default: the dataset's outcome column when --model is not "
             "given, else the fitter's (pain for lmm, pain_any for glmm/gee).")] = None,
    covariates: Annotated[str, typer.Option(help="Comma-separated, e.g. 'age,sex'.")] = "",
    random_slope: Annotated[str, typer.Option(help="Exposure(s) with a random slope.")] = "",
    spline: Annotated[list[str] | None, typer.Option(
        help="COLUMN:DF, repeatable (lmm, glmm, cox, andersen-gill, pwp): that exposure "
             "as a natural cubic spline ns(COLUMN, DF) (R's splines::ns knots); the JSON "
             "carries its curve vs the median and the likelihood-ratio test of "
             "non-linearity (ML; partial likelihood for the time-to-event models).")] = None,
    center: Annotated[str | None, typer.Option(help="'within-between' to split every "
                                               "exposure into runner mean and deviation.")]
        = None,
    method: Annotated[str | None, typer.Option(
        help="reml | ml (lmm; fit_lmm(reml=...); ML for likelihood-ratio tests of fixed "
             "effects). Default: the fitter's (REML).")] = None,
    df: Annotated[str | None, typer.Option(
        "--df", help="wald | satterthwaite (lmm; fit_lmm(ddf=...)): degrees of freedom of "
                     "tests and intervals. Default: the fitter's.")] = None,
    se: Annotated[str | None, typer.Option(
        help="model | robust | CR0 | CR1 (vcov=...): model-based or cluster-robust "
             "(sandwich, by runner) standard errors; robust is CR1 (lmm, glmm), CR0 and "
             "CR1 name the small-sample factor (lmm only). Default: the fitter's.")] = None,
    correlation: Annotated[str | None, typer.Option(
        help="none | ar1 (lmm; fit_lmm(correlation=...)): AR(1) residuals within a runner. "
             "Default: none.")] = None,
    cohort: Annotated[str | None, typer.Option(help="Fit one cohort only.")] = None,
    format: Annotated[str | None, typer.Option(
        help="json | csv (default: from the suffix of --out)")] = None,
    design_out: Annotated[Path | None, typer.Option(
        help="cox | andersen-gill | pwp: also write the counting-process rows fitted "
             "(CSV: runner_id, start, stop, event, stratum, exposures).")] = None,
    unit: Annotated[str | None, typer.Option(
        help="cox | andersen-gill | pwp: day (one row per runner-day at risk, default) or "
             "session (one row per session; exposures spike_band, spike_ratio).")] = None,
) -> None:
    """Fit a mixed model of pain on exposures and write a tidy table.

    The same code path as the Python API: ``analysis.models.fit_model(panel, model=...,
    **keywords)`` with only the options given here. The table has each effect per unit of
    its column (``estimate``) and per reading step (``estimate_step``, ``step_label``, e.g.
    per +10 % week-over-week mileage; a categorical dummy vs the reference level), as the
    reports print it. The JSON has ``status``, ``problems`` and ``converged`` as keys, the
    CSV as columns on every row.
    """
    import pandas as pd

    from analysis.errors import InputFileError, ModelSpecError
    from analysis.models import fit_model
    from analysis.outcomes import (
        AUTO,
        columns_with_data,
        default_exposures,
        outcome_spec,
        unfittable_reason,
    )

    with user_errors():
        if model in SURVIVAL_MODEL_NAMES:
            _fit_survival(panel, out, model=model, exposures=exposures, format=format,
                          design_out=design_out, unit=unit, cohort=cohort,
                          spline=list(spline or ()),
                          others={"--outcome": outcome, "--covariates": covariates or None,
                                  "--random-slope": random_slope or None,
                                  "--center": center, "--method": method, "--df": df,
                                  "--se": se, "--correlation": correlation})
            return
        for option, value in (("--design-out", design_out), ("--unit", unit)):
            if value is not None:
                raise KneeloadError(f"{option} applies to the time-to-event models "
                                    f"({', '.join(SURVIVAL_MODEL_NAMES)}) only")
        source = panel / "panel.parquet" if panel.is_dir() else panel
        meta = _panel_meta_beside(source)
        spec = outcome_spec(meta)
        if model is None:
            model = spec.default_model
            outcome = spec.column if outcome is None else outcome
        kwargs: dict[str, Any] = fit_keywords(model, {"--method": method, "--df": df,
                                                      "--se": se,
                                                      "--correlation": correlation})
        out_format = fit_format(out, format)
        if not source.is_file():
            raise InputFileError("panel file not found", file=source)
        data = pd.read_parquet(source)
        if cohort is not None:
            if cohort not in set(data["cohort"]):
                raise InputFileError(f"no cohort {cohort!r}; the panel has "
                                     f"{sorted(data['cohort'].unique())}", file=source,
                                     column="cohort")
            data = data[data["cohort"] == cohort]
        chosen = _split(exposures)
        if exposures.strip() == AUTO:
            chosen, left_out = default_exposures(columns_with_data(data), meta)
            for reason in left_out.values():
                console.print(f"[yellow]note:[/] {escape(reason)} (choose others with "
                              "--exposures)", highlight=False)
        kwargs.update(exposures=chosen, covariates=_split(covariates))
        if outcome is not None:
            kwargs["outcome"] = outcome
        problem = unfittable_reason(data, outcome=outcome or FIT_DEFAULT_OUTCOME[model],
                                    exposures=chosen, option="--exposures ")
        if problem is not None:
            raise ModelSpecError(f"no model can be fitted: {problem}", file=source)
        if random_slope:
            kwargs["random_slopes"] = _split(random_slope)
        if center:
            kwargs["center"] = center
        if spline:
            kwargs["splines"] = _spline_keyword(model, spline)
        result = fit_model(data, model=model, **kwargs)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out_format == "csv":
            fit_csv_table(result).to_csv(out, index=False)
        else:
            out.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    converged = "converged" if result.converged else "did NOT converge"
    console.print(f"{result.model} ({result.method}): {result.n_obs} reports from "
                  f"{result.n_runners} runners, {converged}, status {result.status}; "
                  f"wrote {out}", highlight=False, markup=False)
    unit = spec.unit if result.outcome == spec.column else "points"
    for line in _effect_lines(result.table, unit=unit):
        console.print(f"  {line}", highlight=False, markup=False)
    for problem in result.problems:
        console.print(f"[bold yellow]problem:[/] {escape(problem)}", highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]note:[/] {escape(warning)}", highlight=False)


#: ``kneeload fit --model`` names of the time-to-event models
#: (``analysis.models.survival.SURVIVAL_MODELS``; tests/test_survival.py checks they agree;
#: written out here so that ``kneeload --help`` imports no numpy).
SURVIVAL_MODEL_NAMES = ("cox", "andersen-gill", "pwp")


def _fit_survival(source: Path, out: Path, *, model: str, exposures: str, format: str | None,
                  design_out: Path | None, unit: str | None, cohort: str | None,
                  others: dict[str, str | None], spline: list[str] | None = None) -> None:
    """``kneeload fit --model cox|andersen-gill|pwp``: fit_survival on the processed folder."""
    from analysis.errors import InputFileError
    from analysis.models.survival import fit_counting_process, survival_design
    from analysis.pipeline import load_processed

    for option, value in others.items():
        if value is not None:
            raise KneeloadError(f"{option} does not apply to --model {model} (a time-to-event "
                                "model takes --exposures, --spline, --unit, --cohort, "
                                "--design-out)")
    out_format = fit_format(out, format)
    folder = source if source.is_dir() else source.parent
    processed = load_processed(folder)
    if "episodes" not in processed and (folder / "episodes.parquet").is_file():
        import pandas as pd

        processed["episodes"] = pd.read_parquet(folder / "episodes.parquet")  # the build's
    if cohort is not None:
        panel = processed["panel"]
        if cohort not in set(panel["cohort"]):
            raise InputFileError(f"no cohort {cohort!r}; the panel has "
                                 f"{sorted(panel['cohort'].unique())}",
                                 file=folder / "panel.parquet", column="cohort")
        keep = set(panel.loc[panel["cohort"] == cohort, "runner_id"])
        processed = {**processed, **{name: processed[name].loc[
            processed[name]["runner_id"].isin(keep)] for name in ("panel", "daily")
            if name in processed}}
        if isinstance(processed.get("episodes"), type(panel)):
            eps = processed["episodes"]
            processed["episodes"] = eps.loc[eps["runner_id"].isin(keep)]
    chosen = (["mileage_jump"] if exposures.strip() == "auto" else _split(exposures))
    splines = _spline_specs(spline)
    rows = survival_design(processed, model=model, exposures=chosen, unit=unit or "day")
    result = fit_counting_process(rows, exposures=chosen, model=model, splines=splines)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out_format == "csv":
        fit_csv_table(result).to_csv(out, index=False)
    else:
        out.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    if design_out is not None:  # the rows fitted: those with every exposure
        design_out.parent.mkdir(parents=True, exist_ok=True)
        rows.loc[rows[chosen].notna().all(axis=1)].to_csv(design_out, index=False)
    converged = "converged" if result.converged else "did NOT converge"
    console.print(f"{model}: {result.extra['n_events']} episodes in {result.n_obs} rows at "
                  f"risk from {result.n_runners} runners, {converged}, status "
                  f"{result.status}; wrote {out}", highlight=False, markup=False)
    for line in _hazard_lines(result):
        console.print(f"  {line}", highlight=False, markup=False)
    for problem in result.problems:
        console.print(f"[bold yellow]problem:[/] {escape(problem)}", highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]note:[/] {escape(warning)}", highlight=False)


def _hazard_lines(result: Any) -> list[str]:
    """``mileage_jump: HR 1.15 per +10 % week-over-week mileage (95 % CI 1.04 to 1.27)``
    per term, per reading step as the report reads it; a term with an infinite estimate
    (its SE is 0, so no interval) reads ``not estimable``, as in the report's table."""
    import numpy as np

    from analysis.effects import add_reading_units
    from analysis.labels import interval_texts
    from analysis.models.survival import term_notes

    notes = term_notes(result)
    lines = []
    for row in add_reading_units(result.table).to_dict(orient="records"):
        if "infinite estimate" in notes.get(str(row["term"]), []):
            lines.append(f"{row['term']}: HR not estimable (infinite estimate)")
            continue
        t = interval_texts(*(float(np.exp(row[f"{c}_step"]))
                             for c in ("estimate", "ci_low", "ci_high")), ratio=True)
        lines.append(f"{row['term']}: HR {t['text']} {row['step_label']} (95 % CI "
                     f"{t['low_text']} to {t['high_text']})")
    return lines


#: The response column each fitter models when ``--outcome`` is not given.
FIT_DEFAULT_OUTCOME = {"lmm": "pain", "glmm": "pain_any", "gee": "pain_any"}


def _panel_meta_beside(panel_file: Path) -> dict[str, Any]:
    """``panel_meta.json`` next to a panel file ({} when there is none: a bare Parquet)."""
    path = panel_file.parent / "panel_meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _effect_lines(table: Any, *, unit: str = "NRS points") -> list[str]:
    """``mileage_jump: +0.09 NRS points per +10 % week-over-week mileage (95 % CI ...)``.

    A categorical dummy reads ``C(sex)[T.M]: OR 0.8 vs the reference level (...)`` (its
    ``step_label``, :data:`analysis.effects.CATEGORICAL`).
    """
    from analysis.effects import INTERCEPT, step_value_columns
    from analysis.labels import interval_texts

    odds = "odds_ratio_step" in table.columns
    names = step_value_columns(odds)
    lines = []
    for row in table[table["term"] != INTERCEPT].to_dict(orient="records"):
        t = interval_texts(*(row[c] for c in names), ratio=odds, signed=not odds)
        value = f"OR {t['text']}" if odds else f"{t['text']} {unit}"
        lines.append(f"{row['term']}: {value} {row['step_label']} "
                     f"(95 % CI {t['low_text']} to {t['high_text']})")
    return lines


@app.command(cls=_WideHelpCommand)
def report(
    processed: Annotated[Path, typer.Argument(help="Processed folder from 'kneeload build'.")],
    out: Annotated[Path, typer.Option(help="Reports folder (index.html, one folder per "
                                      "cohort).")],
    cohort: Annotated[list[str] | None, typer.Option(help="Cohort(s) to run; default all.")]
        = None,
    workers: Annotated[int, typer.Option(min=1, help="Notebooks run at once.")] = 1,
    dask_scheduler: Annotated[str | None, typer.Option(
        help="Run each cohort as a task on this Dask scheduler, e.g. tcp://host:8786.")]
        = None,
    dask_timeout: Annotated[float, typer.Option(
        min=0, help="Seconds the Dask cluster may have no worker before the cohorts still "
        "pending fail.")] = 60.0,  # = reports.runner.DASK_NO_WORKER_TIMEOUT_S (test_cli)
    changed_only: Annotated[bool, typer.Option(
        help="Skip cohorts whose inputs, parameters and template are unchanged.")] = False,
    param: Annotated[list[str] | None, typer.Option(
        help="Template parameter KEY=VALUE (repeatable), e.g. outcome=pain_any.")] = None,
    template: Annotated[Path | None, typer.Option(
        help="Alternative report notebook (default notebooks/cohort_report.ipynb).")] = None,
) -> None:
    """Render one report per cohort with papermill, plus index.html and manifest.json.

    Exit codes: 0 all cohorts ok (or skipped/suppressed), 1 some cohort failed (or the
    manifest or index could not be written), 2 the run could not start (bad parameter,
    output folder refused, lock held), 130 interrupted.
    """
    from analysis.reports.execute import block_unused_slow_modules
    from analysis.reports.parameters import parse_param_items
    from analysis.reports.runner import run_reports

    block_unused_slow_modules()  # this process imports papermill (the template's parameters)
    with user_errors(), _progress() as progress:
        params = parse_param_items(param or [], template=template)
        try:
            run = run_reports(processed, out, cohorts=cohort or None, workers=workers,
                              dask_scheduler=dask_scheduler, dask_timeout_s=dask_timeout,
                              changed_only=changed_only,
                              params=params, template=template, on_start=progress.start,
                              on_done=progress.done)
        except KeyboardInterrupt:
            console.print("[bold red]interrupted:[/] finished cohorts are in place, the "
                          "others keep their previous report", highlight=False)
            raise typer.Exit(130) from None
    line = f"{run.one_line()}; open {run.out_dir / 'index.html'}"
    if run.failed or run.write_errors:
        console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(line, highlight=False, markup=False, soft_wrap=True)


def _problems(outcome: Any) -> str:
    """``": not converged; singular fit"`` for a cohort whose model has problems, else ""."""
    problems = getattr(outcome, "problems", [])
    return f": {'; '.join(problems)}" if problems and outcome.status in {"ok", "skipped"} \
        else ""


class _PlainProgress:
    """One timestamped line per cohort (reads the same in a cron mail or a CI log)."""

    def start(self, cohorts: list[str]) -> None:
        self.total, self.count = len(cohorts), 0
        console.print(f"{_stamp()} {self.total} cohort(s) to report", highlight=False)

    def done(self, outcome: Any) -> None:
        self.count += 1
        took = f" in {outcome.duration_s:.1f} s" if outcome.duration_s and \
            outcome.status not in {"skipped", "suppressed"} else ""
        error = f": {outcome.error}" if outcome.error else _problems(outcome)
        console.print(f"{_stamp()} [{self.count}/{self.total}] {outcome.cohort}: "
                      f"{outcome.shown_status}{took}{error}", highlight=False, soft_wrap=True,
                      markup=False)


class _BarProgress(_PlainProgress):
    """A rich progress bar over cohorts, with a line per finished cohort above it."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.task: Any = None

    def start(self, cohorts: list[str]) -> None:
        self.total, self.count = len(cohorts), 0
        self.task = self.bar.add_task("cohorts", total=len(cohorts))

    def done(self, outcome: Any) -> None:
        self.count += 1
        took = f" in {outcome.duration_s:.1f} s" if outcome.duration_s and \
            outcome.status not in {"skipped", "suppressed"} else ""
        error = f": {outcome.error}" if outcome.error else _problems(outcome)
        self.bar.console.print(f"  {outcome.cohort}: {outcome.shown_status}{took}{error}",
                               highlight=False, markup=False)
        self.bar.advance(self.task)


@contextlib.contextmanager
def _progress() -> Iterator[_PlainProgress]:
    """A progress bar on a terminal, plain log lines otherwise (cron, CI, pipes)."""
    if not console.is_terminal:
        yield _PlainProgress()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        yield _BarProgress(bar)


#: ``kneeload power`` default effects, in reading units: 0.08 NRS points per +10 % is the
#: former default of 0.8 per +100 %; OR 1.08 per +10 % is about the former 0.8 log-odds per
#: +100 % (exp(0.08) = 1.083).
DEFAULT_POWER_EFFECT = "mileage_jump=0.08"
DEFAULT_POWER_EFFECT_ODDS = "mileage_jump=1.08"


@app.command(cls=_WideHelpCommand)
def power(
    out: Annotated[Path, typer.Option(help="Where to write the power table (.csv or .json).")],
    runners: Annotated[str, typer.Option(help="Comma-separated numbers of runners.")] =
        "50,100,200",
    weeks: Annotated[str, typer.Option(help="Comma-separated follow-up lengths in weeks.")] =
        "12,26",
    effect: Annotated[list[str] | None, typer.Option(
        help="EXPOSURE=EFFECT in the reading units the reports print, repeatable: NRS "
             "points per step for lmm (mileage_jump=0.09: +0.09 NRS per +10 % "
             "week-over-week mileage), odds ratios per step for glmm/gee "
             "(mileage_jump=1.08). Default: mileage_jump=0.08 (lmm) or 1.08.")] = None,
    model: Annotated[str, typer.Option(help="lmm | glmm | gee")] = "lmm",
    n_sims: Annotated[int, typer.Option(help="Simulated studies per design.")] = 200,
    alpha: Annotated[float, typer.Option(help="Two-sided significance level.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Master seed (reproducible).")] = DEFAULT_SEED,
    figure: Annotated[Path | None, typer.Option(help="Also draw the power curve (.png).")] =
        None,
    jobs: Annotated[int, typer.Option(help="Worker processes (same result for any number).")]
        = 1,
) -> None:
    """Simulation-based power to detect exposure effects (analysis.power.power_curve)."""
    from analysis.power import power_curve

    with user_errors():
        default = DEFAULT_POWER_EFFECT_ODDS if model in ("glmm", "gee") \
            else DEFAULT_POWER_EFFECT
        effects = _parse_effects(effect or [default], default=default)
        if not 0.0 < alpha < 1.0:  # also NaN
            raise KneeloadError(f"--alpha must be between 0 and 1 (exclusive), got {alpha:g}")
        sizes = _parse_ints(runners, option="--runners")
        lengths = _parse_ints(weeks, option="--weeks")
        table = power_curve(runners=sizes, weeks=lengths, effects=effects, n_sims=n_sims,
                            alpha=alpha, seed=seed, model=model, n_jobs=jobs,
                            progress=console.is_terminal)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".json":
            out.write_text(table.to_json(orient="records", indent=2) + "\n")
        else:
            table.to_csv(out, index=False)
        if figure is not None:
            from analysis.plots import power_curve_plot

            ax = power_curve_plot(table)
            ax.figure.savefig(figure, dpi=120)
    for row in table.itertuples(index=False):
        design = f"{row.term}: {row.runners} runners x {row.weeks} weeks"
        if getattr(row, "not_estimable", None):
            console.print(f"{design}: not estimable ({row.not_estimable})", highlight=False,
                          markup=False)
            continue
        size = f"OR {row.effect:g}" if row.model in ("glmm", "gee") \
            else f"{row.effect:+g} NRS points"
        console.print(f"{design}, effect {size} {row.step_label}: power {row.power:.2f} "
                      f"({row.power_ci_low:.2f}-{row.power_ci_high:.2f})"
                      f"{_fit_counts(row)}", highlight=False, markup=False)
    console.print(f"wrote {out}", markup=False)


def _parse_effects(items: list[str], *, default: str) -> dict[str, float]:
    """``--effect EXPOSURE=EFFECT`` items -> ``{exposure: effect}`` (finite numbers only)."""
    effects: dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        try:
            value = float(text)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise KneeloadError(f"--effect must look like {default}, got {item!r}")
        if not math.isfinite(value):
            raise KneeloadError(f"--effect {item}: the effect must be a finite number")
        effects[name.strip()] = value
    return effects


def _fit_counts(row: Any) -> str:
    """``"; 3 of 200 fits doubtful (singular fit)"`` etc. for a power row, "" when all clean."""
    parts = []
    if getattr(row, "n_failed", 0):
        parts.append(f"{row.n_failed} of {row.n_sims} fits failed (counted as not detected)")
    if getattr(row, "n_doubtful", 0):
        problem = getattr(row, "first_problem", None)
        reason = f" (e.g. {problem})" if isinstance(problem, str) and problem else ""
        parts.append(f"{row.n_doubtful} of {row.n_sims} fits doubtful: not converged or "
                     f"with problems{reason}")
    return "".join(f"; {part}" for part in parts)


def _stamp() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    """The typer app, run by the ``kneeload`` console script (:mod:`analysis.__main__`) and
    ``python -m analysis.cli``.

    When the command is done, every object left is handed to the garbage collector's
    permanent generation (:func:`gc.freeze`), so the interpreter's exit does not trace the
    hundreds of thousands of objects pandas, pyarrow and typer leave: 0.1 s of every
    ``kneeload build`` process (``bench/bench_build.py``). The process ends right after,
    so nothing is kept longer than it would have lived; every file is closed by then.
    """
    try:
        app()
    finally:
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
