"""Per-cohort reports: papermill runs ``notebooks/cohort_report.ipynb`` once per cohort.

Layout of a reports folder::

    REPORTS_DIR/index.html            every cohort: status, size, headline estimates, link
    REPORTS_DIR/manifest.json         per cohort: input hashes, parameters, template hash, ...
    REPORTS_DIR/<cohort>/report.ipynb the executed notebook
    REPORTS_DIR/<cohort>/report.html  the same without code cells
    REPORTS_DIR/<cohort>/summary.json what the notebook measured (for the index)

Guarantees: one cohort failing never stops the others; a report is written under a
temporary name and moved into place only when complete (an interrupted run leaves the
previous good report); a lock file keeps two runs off one folder; cohorts smaller than
``min_cohort_size`` runners get no statistics at all (privacy).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
from filelock import FileLock, Timeout

from analysis import __version__, paths
from analysis.errors import InputFileError, ReportError

KERNEL_NAME = "kneeload"
TEMPLATE_NAME = "cohort_report.ipynb"
DEFAULT_MIN_COHORT_SIZE = 5  # runners; smaller cohorts are suppressed (privacy)
LOCK_NAME = ".kneeload-report.lock"
MANIFEST_NAME = "manifest.json"
SUMMARY_NAME = "summary.json"
#: Parameters the template must declare; checked against papermill's inspection before running.
DEFAULT_PARAMETERS: dict[str, Any] = {
    "outcome": "pain",
    "pain_threshold": 3.0,
    "exposures": "mileage_jump,shoe_km,rest_days_7d",
    "random_slopes": "",
    "min_cohort_size": DEFAULT_MIN_COHORT_SIZE,
    "seed": 0,
}
#: Inputs of a cohort report: a change in any of them makes --changed-only re-run it.
PROCESSED_INPUTS = ("panel.parquet", "daily.parquet", "runners.parquet", "cleaning_report.json",
                    "panel_meta.json")

Status = str  # "ok" | "failed" | "suppressed" | "skipped"


@dataclass
class CohortOutcome:
    """The result of one cohort's report run (one manifest entry)."""

    cohort: str
    status: Status
    runners: int
    parameters: dict[str, Any]
    input_sha256: dict[str, str]
    template_sha256: str
    package_version: str = __version__
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Hash of everything that determines the report (for --changed-only)."""
        payload = json.dumps(
            [self.parameters, self.input_sha256, self.template_sha256, self.package_version],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class ReportRun:
    """All cohorts of one ``kneeload report`` call."""

    out_dir: Path
    outcomes: list[CohortOutcome]

    @property
    def failed(self) -> list[CohortOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def one_line(self) -> str:
        by_status: dict[str, int] = {}
        for outcome in self.outcomes:
            by_status[outcome.status] = by_status.get(outcome.status, 0) + 1
        parts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        failed = "; failed: " + ", ".join(o.cohort for o in self.failed) if self.failed else ""
        return f"{len(self.outcomes)} cohorts: {parts}{failed}"


def template_path() -> Path:
    """The papermill template, ``notebooks/cohort_report.ipynb``."""
    return paths.notebooks_dir() / TEMPLATE_NAME


def list_cohorts(processed_dir: str | Path) -> pd.DataFrame:
    """Cohorts in a processed folder with their number of runners (``cohort``, ``runners``)."""
    runners_file = Path(processed_dir) / "runners.parquet"
    if not runners_file.is_file():
        raise InputFileError("not a processed folder (no runners.parquet); run 'kneeload "
                             "build' first", file=Path(processed_dir))
    runners = pd.read_parquet(runners_file, columns=["runner_id", "cohort"])
    return (
        runners.groupby("cohort", sort=True)["runner_id"].nunique()
        .rename("runners").reset_index()
    )


def run_reports(
    processed_dir: str | Path,
    out_dir: str | Path,
    *,
    cohorts: Sequence[str] | None = None,
    workers: int = 1,
    changed_only: bool = False,
    params: Mapping[str, Any] | None = None,
    template: str | Path | None = None,
    kernel_name: str = KERNEL_NAME,
    on_done: Callable[[CohortOutcome], None] | None = None,
    submit: Callable[..., Iterable[CohortOutcome]] | None = None,
) -> ReportRun:
    """Render one report per cohort and the index page.

    Parameters
    ----------
    processed_dir
        Output of ``kneeload build``.
    out_dir
        Reports folder (created). Holds ``index.html`` and ``manifest.json``.
    cohorts
        Cohort names to run (default: all).
    workers
        Notebooks executed at once on this machine (each in its own papermill process).
    changed_only
        Skip cohorts whose inputs, parameters, template and package version are unchanged
        since their last successful run.
    params
        Template parameters overriding :data:`DEFAULT_PARAMETERS`.
    on_done
        Called with each finished cohort (progress display).
    submit
        Alternative executor (e.g. Dask): called as ``submit(jobs)`` with a list of
        :class:`CohortJob` and returns their outcomes as they finish.
    """
    processed = Path(processed_dir).resolve()
    out = Path(out_dir).resolve()
    template_file = Path(template) if template else template_path()
    if not template_file.is_file():
        raise ReportError("report template not found", file=template_file)
    parameters = {**DEFAULT_PARAMETERS, **(params or {})}
    _check_parameters(template_file, parameters)
    available = list_cohorts(processed)
    wanted = list(available["cohort"]) if not cohorts else list(cohorts)
    unknown = sorted(set(wanted) - set(available["cohort"]))
    if unknown:
        raise ReportError(f"unknown cohort(s) {unknown}; the processed data has "
                          f"{list(available['cohort'])}", file=processed)

    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ReportError("another 'kneeload report' is already writing this folder "
                          f"(lock file {LOCK_NAME}); try again when it has finished",
                          file=out) from None
    try:
        return _run_locked(processed, out, template_file, available, wanted, parameters,
                           workers=workers, changed_only=changed_only, kernel_name=kernel_name,
                           on_done=on_done, submit=submit)
    finally:
        lock.release()


@dataclass
class CohortJob:
    """Everything one cohort's notebook run needs (picklable, for Dask)."""

    cohort: str
    processed_dir: str
    out_dir: str
    template: str
    kernel_name: str
    outcome: CohortOutcome


def _run_locked(
    processed: Path,
    out: Path,
    template_file: Path,
    available: pd.DataFrame,
    wanted: list[str],
    parameters: dict[str, Any],
    *,
    workers: int,
    changed_only: bool,
    kernel_name: str,
    on_done: Callable[[CohortOutcome], None] | None,
    submit: Callable[..., Iterable[CohortOutcome]] | None,
) -> ReportRun:
    manifest = _read_manifest(out)
    input_sha = {name: _sha256(processed / name) for name in PROCESSED_INPUTS
                 if (processed / name).is_file()}
    template_sha = _sha256(template_file)
    size = dict(zip(available["cohort"], available["runners"], strict=True))
    min_size = int(parameters["min_cohort_size"])

    results: list[CohortOutcome] = []
    jobs: list[CohortJob] = []
    for cohort in wanted:
        planned = CohortOutcome(
            cohort=cohort, status="pending", runners=int(size[cohort]),
            parameters={"cohort": cohort, **parameters}, input_sha256=input_sha,
            template_sha256=template_sha,
        )
        previous = manifest.get("cohorts", {}).get(cohort)
        if planned.runners < min_size:
            planned.status = "suppressed"
            _remove_cohort_outputs(out / _safe_name(cohort))
            results.append(planned)
        elif changed_only and previous and previous.get("status") == "ok" and \
                previous.get("fingerprint") == planned.fingerprint and \
                (out / _safe_name(cohort) / "report.html").is_file():
            kept = CohortOutcome(**{k: previous[k] for k in CohortOutcome.__dataclass_fields__
                                    if k in previous})
            kept.status = "skipped"
            results.append(kept)
        else:
            jobs.append(CohortJob(cohort=cohort, processed_dir=str(processed),
                                  out_dir=str(out), template=str(template_file),
                                  kernel_name=kernel_name, outcome=planned))
    for outcome in results:
        _update_manifest(out, manifest, outcome)  # suppressed ones; skipped ones are unchanged
        if on_done:
            on_done(outcome)

    runner = submit or (lambda js: _run_local(js, workers=workers))
    for outcome in runner(jobs):
        results.append(outcome)
        _update_manifest(out, manifest, outcome)
        if on_done:
            on_done(outcome)

    order = {cohort: i for i, cohort in enumerate(wanted)}
    results.sort(key=lambda o: order[o.cohort])
    write_index(out, results, processed=processed)
    return ReportRun(out_dir=out, outcomes=results)


def _run_local(jobs: list[CohortJob], *, workers: int) -> Iterable[CohortOutcome]:
    if workers <= 1:
        for job in jobs:
            yield run_cohort(job)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:  # each job is its own process
        futures = [pool.submit(run_cohort, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def run_cohort(job: CohortJob) -> CohortOutcome:
    """Execute the template for one cohort and render its HTML, atomically.

    Runs papermill in a subprocess (in-process kernels are known to hang on ports when run
    concurrently). Never raises for a failing notebook: the outcome says ``failed``.
    """
    outcome = job.outcome
    folder = Path(job.out_dir) / _safe_name(job.cohort)
    folder.mkdir(parents=True, exist_ok=True)
    tmp_nb = folder / f".report.{os.getpid()}.{time.monotonic_ns()}.ipynb"
    tmp_summary = folder / f".summary.{tmp_nb.stem}.json"
    params = {**outcome.parameters, "dataset": job.processed_dir,
              "summary_path": str(tmp_summary)}
    outcome.started = _now()
    start = time.perf_counter()
    command = [
        sys.executable, "-m", "papermill", job.template, str(tmp_nb),
        "--kernel", job.kernel_name, "--cwd", str(Path(job.template).parent),
        "--no-progress-bar", "--log-level", "ERROR",
        "--parameters_yaml", json.dumps(params),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        if proc.returncode != 0:
            outcome.status = "failed"
            outcome.error = _notebook_error(tmp_nb) or _last_line(proc.stderr)
            if tmp_nb.is_file():
                os.replace(tmp_nb, folder / "report.failed.ipynb")
        else:
            tmp_html = folder / f"{tmp_nb.stem}.html"
            tmp_html.write_text(render_html(tmp_nb), encoding="utf-8")
            os.replace(tmp_nb, folder / "report.ipynb")
            os.replace(tmp_html, folder / "report.html")
            if tmp_summary.is_file():
                outcome.summary = json.loads(tmp_summary.read_text())
                os.replace(tmp_summary, folder / SUMMARY_NAME)
            (folder / "report.failed.ipynb").unlink(missing_ok=True)
            outcome.status = "ok"
    finally:
        for leftover in (tmp_nb, tmp_summary):
            leftover.unlink(missing_ok=True)
    outcome.finished = _now()
    outcome.duration_s = round(time.perf_counter() - start, 2)
    return outcome


def render_html(notebook_path: str | Path) -> str:
    """HTML of an executed notebook without code cells (``nbconvert --no-input``)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook_path), as_version=4))
    return body


def _notebook_error(notebook_path: Path) -> str | None:
    """'cell N: ErrorName: message' for the first cell that raised, if any."""
    if not notebook_path.is_file():
        return None
    notebook = nbformat.read(str(notebook_path), as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                message = " ".join(str(output.get("evalue", "")).split())
                return f"cell {number}: {output.get('ename')}: {message}"
    return None


def _check_parameters(template: Path, parameters: Mapping[str, Any]) -> None:
    import papermill

    declared = set(papermill.inspect_notebook(str(template)))
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise ReportError(f"unknown report parameter(s) {unknown}; the template declares "
                          f"{sorted(declared)}", file=template)


# --- manifest and index ----------------------------------------------------------------------


def _read_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return {"cohorts": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"cohorts": {}}


def _update_manifest(out: Path, manifest: dict[str, Any], outcome: CohortOutcome) -> None:
    """Record one cohort and rewrite the manifest atomically (consistent after any kill)."""
    if outcome.status == "skipped":
        return
    entry = asdict(outcome)
    entry["fingerprint"] = outcome.fingerprint
    previous = manifest.setdefault("cohorts", {}).get(outcome.cohort)
    if outcome.status == "failed" and previous and previous.get("status") == "ok":
        entry["last_ok"] = previous.get("finished")  # the old report is still in place
    manifest["cohorts"][outcome.cohort] = entry
    manifest["package_version"] = __version__
    manifest["updated"] = _now()
    _atomic_write_text(out / MANIFEST_NAME,
                       json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def write_index(out: Path, outcomes: Sequence[CohortOutcome], *, processed: Path) -> Path:
    """Write ``index.html``: one row per cohort with status, size, estimates and link."""
    from jinja2 import Environment, select_autoescape

    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    page = env.from_string(INDEX_TEMPLATE).render(
        title=f"kneeload reports: {processed.name}",
        generated=_now(),
        version=__version__,
        rows=[_index_row(o) for o in outcomes],
    )
    path = out / "index.html"
    _atomic_write_text(path, page)
    return path


def _index_row(outcome: CohortOutcome) -> dict[str, Any]:
    summary = outcome.summary or {}
    return {
        "cohort": outcome.cohort,
        "status": outcome.status,
        "runners": outcome.runners if outcome.status != "suppressed" else None,
        "reports": summary.get("n_reports"),
        "estimates": summary.get("headline", []),
        "link": f"{_safe_name(outcome.cohort)}/report.html"
        if outcome.status in {"ok", "skipped"} else None,
        "duration_s": outcome.duration_s,
        "error": outcome.error,
    }


INDEX_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; } td, th { padding: .35rem .7rem; border-bottom: 1px solid #ddd;
text-align: left; vertical-align: top; } .ok { color: #17663a; } .failed { color: #b00020; }
.suppressed, .skipped { color: #666; } small { color: #666; }
</style></head><body>
<h1>{{ title }}</h1>
<p><small>Generated {{ generated }} by kneeload {{ version }}.
Estimates: linear mixed model of knee pain (NRS 0-10), random intercept per runner;
95 % confidence intervals.</small></p>
<table>
<thead><tr><th>Cohort</th><th>Status</th><th>Runners</th><th>Reports</th>
<th>Headline estimates (95 % CI)</th><th>Duration</th><th>Report</th></tr></thead>
<tbody>
{% for row in rows %}<tr>
<td>{{ row.cohort }}</td>
<td class="{{ row.status }}">{{ row.status }}</td>
{% if row.status == "suppressed" %}
<td colspan="5">suppressed: fewer runners than the minimum cohort size; no statistics shown</td>
{% else %}
<td>{{ row.runners }}</td><td>{{ row.reports if row.reports is not none else "" }}</td>
<td>{% for e in row.estimates %}{{ e.term }}: {{ "%.3f"|format(e.estimate) }}
({{ "%.3f"|format(e.ci_low) }} to {{ "%.3f"|format(e.ci_high) }})<br>{% endfor %}
{% if row.error %}<span class="failed">{{ row.error }}</span>{% endif %}</td>
<td>{{ "%.1f s"|format(row.duration_s) if row.duration_s is not none else "" }}</td>
<td>{% if row.link %}<a href="{{ row.link }}">report</a>{% endif %}</td>
{% endif %}
</tr>{% endfor %}
</tbody></table></body></html>
"""


# --- small helpers ---------------------------------------------------------------------------


def _safe_name(cohort: str) -> str:
    """A folder name for a cohort (letters, digits, dash, underscore)."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(cohort))
    return cleaned or "_"


def _remove_cohort_outputs(folder: Path) -> None:
    """A cohort that became suppressed must not keep an old report with its statistics."""
    for name in ("report.ipynb", "report.html", SUMMARY_NAME, "report.failed.ipynb"):
        (folder / name).unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "papermill failed without a message"


# --- what the report notebook calls ----------------------------------------------------------

#: Plain-language units for reading effects: (step, phrase). Effects are multiplied by step.
EFFECT_STEPS: dict[str, tuple[float, str]] = {
    "mileage_jump": (0.10, "per +10 % week-over-week mileage"),
    "shoe_km": (100.0, "per +100 km on the shoe"),
    "shoe_age_days": (30.0, "per +30 days of shoe age"),
    "rest_days_7d": (1.0, "per extra rest day in the week"),
    "km_7d": (10.0, "per +10 km in the week"),
    "acwr_rolling": (0.1, "per +0.1 acute:chronic ratio"),
    "acwr_ewma": (0.1, "per +0.1 acute:chronic ratio (EWMA)"),
}


@dataclass
class CohortView:
    """One cohort's slice of a processed folder, as the report notebook uses it."""

    cohort: str
    panel: pd.DataFrame
    daily: pd.DataFrame
    runners: pd.DataFrame
    cleaning: dict[str, Any]
    meta: dict[str, Any]
    quarantine: pd.DataFrame


def load_cohort(
    dataset: str | Path, cohort: str, *, min_cohort_size: int = DEFAULT_MIN_COHORT_SIZE
) -> CohortView:
    """Load one cohort; refuse (ReportError) when it has fewer than ``min_cohort_size`` runners."""
    from analysis.pipeline import load_processed

    processed = paths.processed_dir(str(dataset))
    data = load_processed(processed)
    runners = data["runners"]
    if cohort not in set(runners["cohort"]):
        raise ReportError(f"no cohort {cohort!r}; the data has "
                          f"{sorted(runners['cohort'].unique())}", file=processed)
    members = runners[runners["cohort"] == cohort]
    if len(members) < min_cohort_size:
        raise ReportError(f"cohort {cohort!r} has {len(members)} runners, fewer than "
                          f"min_cohort_size={min_cohort_size}; suppressed", file=processed)
    ids = set(members["runner_id"])
    quarantine = data["quarantine"]
    if "runner_id" in quarantine.columns:
        quarantine = quarantine[quarantine["runner_id"].isin(ids)]
    return CohortView(
        cohort=cohort,
        panel=data["panel"][data["panel"]["runner_id"].isin(ids)].reset_index(drop=True),
        daily=data["daily"][data["daily"]["runner_id"].isin(ids)].reset_index(drop=True),
        runners=members.reset_index(drop=True),
        cleaning=data["cleaning_report"],
        meta=data["panel_meta"],
        quarantine=quarantine,
    )


def cohort_summary(view: CohortView, *, exposures: Sequence[str] = ()) -> pd.DataFrame:
    """Headline description of a cohort: runners, weeks followed, reports, missing data."""
    daily, panel = view.daily, view.panel
    weeks = daily.groupby("runner_id")["date"].agg(lambda d: (d.max() - d.min()).days + 1) / 7
    usable = panel.dropna(subset=list(exposures)) if exposures else panel
    rows = [
        ("runners", len(view.runners)),
        ("runners with pain reports", panel["runner_id"].nunique()),
        ("weeks followed per runner (median)", round(float(weeks.median()), 1)),
        ("pain reports", len(panel)),
        ("reports with pain >= threshold", int(panel["pain_any"].sum())),
        ("reports usable for the model (all exposures known)", len(usable)),
        ("share of reports with a missing exposure",
         round(1 - len(usable) / len(panel), 3) if len(panel) else float("nan")),
        ("exposure lag (days)", view.meta.get("exposure_lag_days")),
    ]
    return pd.DataFrame(rows, columns=["measure", "value"])


def cleaning_counts(cleaning: Mapping[str, Any]) -> pd.DataFrame:
    """The cleaning audit as a table: one row per input file (read, kept, merged, ...)."""
    files = cleaning.get("files", {})
    rows = [{"file": name, **{k: v for k, v in counts.items() if k != "by_reason"},
             "reasons": ", ".join(f"{r}: {n}" for r, n in sorted(counts.get("by_reason",
                                                                             {}).items()))}
            for name, counts in sorted(files.items())]
    return pd.DataFrame(rows)


def plain_language(table: pd.DataFrame, *, outcome: str = "pain") -> list[str]:
    """One sentence per exposure effect, in steps a clinician reads (e.g. per +10 % jump)."""
    sentences = []
    for row in table.itertuples(index=False):
        base = str(row.term).removesuffix("_within").removesuffix("_between")
        if base not in EFFECT_STEPS:
            continue
        step, phrase = EFFECT_STEPS[base]
        est, low, high = (row.estimate * step, row.ci_low * step, row.ci_high * step)
        if "odds_ratio" in table.columns and not pd.isna(getattr(row, "odds_ratio", None)):
            import math

            sentences.append(
                f"{row.term}: odds of pain x{math.exp(est):.2f} {phrase} "
                f"(95 % CI x{math.exp(low):.2f} to x{math.exp(high):.2f})."
            )
            continue
        direction = "higher" if est > 0 else "lower"
        clear = "the interval excludes no effect" if low > 0 or high < 0 else \
            "the interval includes no effect"
        sentences.append(
            f"{row.term}: {abs(est):.2f} NRS points {direction} {outcome} {phrase} "
            f"(95 % CI {low:.2f} to {high:.2f}; {clear})."
        )
    return sentences


def write_summary(path: str | Path | None, view: CohortView, result: Any | None) -> None:
    """Write the numbers the index page shows (only pseudonymous, aggregate values)."""
    if not path:
        return
    headline = []
    if result is not None:
        table = result.table
        headline = [
            {k: float(v) if k != "term" else str(v) for k, v in row.items()}
            for row in table[table["term"] != "Intercept"][
                ["term", "estimate", "ci_low", "ci_high"]].to_dict(orient="records")
        ]
    summary = {
        "cohort": view.cohort,
        "n_runners": len(view.runners),
        "n_reports": len(view.panel),
        "n_obs_model": getattr(result, "n_obs", None),
        "converged": getattr(result, "converged", None),
        "headline": headline,
    }
    Path(path).write_text(json.dumps(summary, indent=2) + "\n")
