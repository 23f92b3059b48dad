"""Per-cohort reports: papermill runs ``notebooks/cohort_report.ipynb`` once per cohort.

Layout of a reports folder (``docs/reports.md``)::

    REPORTS_DIR/index.html                  every cohort: status, size, headline estimates, link
    REPORTS_DIR/manifest.json               per cohort: input hashes, parameters, template hash,
                                            package version, start, end, status, error, outputs
    REPORTS_DIR/<cohort>/report.ipynb       the executed notebook
    REPORTS_DIR/<cohort>/report.html        the same without code cells
    REPORTS_DIR/<cohort>/summary.json       what the notebook measured (for the index)
    REPORTS_DIR/<cohort>/report.failed.ipynb  the executed notebook of the last failed run

Guarantees (each has a test in ``tests/test_reports.py``): one cohort failing never stops
the others; a report is written under a temporary name and moved into place only when
complete (an interrupted run leaves the previous good report, and the manifest lists only
outputs that are in place); a lock file keeps two runs off one folder; cohorts smaller than
``min_cohort_size`` runners get no statistics at all (privacy); runner identifiers are
replaced by keyed-hash pseudonyms when ``KNEELOAD_ID_SALT`` is set (:mod:`analysis.privacy`).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from analysis import __version__, paths
from analysis.effects import add_reading_units
from analysis.errors import InputFileError, ModelSpecError, ReportError
from analysis.privacy import (
    PSEUDONYM_HEX_CHARS,
    PSEUDONYM_PREFIX,
    id_salt,
    pseudonym,
    pseudonymise,
)

KERNEL_NAME = "kneeload"
TEMPLATE_NAME = "cohort_report.ipynb"
#: Fewest runners a cohort needs for any statistic to be shown. Five is the usual floor for
#: small-cell suppression in health statistics (e.g. NHS Digital / ONS disclosure control
#: uses 5; "rule of five"); raising it is allowed, lowering it is not.
DEFAULT_MIN_COHORT_SIZE = 5
LOCK_NAME = ".kneeload-report.lock"
MANIFEST_NAME = "manifest.json"
SUMMARY_NAME = "summary.json"
REPORT_FILES = ("report.ipynb", "report.html", SUMMARY_NAME)
FAILED_NOTEBOOK = "report.failed.ipynb"
#: Outcomes the template can model: NRS score (linear) or pain present (logistic).
OUTCOMES = {"pain": "lmm", "pain_any": "glmm"}
#: Parameters the runner sets itself; ``--param`` may not override them.
RESERVED_PARAMETERS = ("dataset", "cohort", "summary_path")
#: Parameters the template must declare; checked against papermill's inspection before running.
DEFAULT_PARAMETERS: dict[str, Any] = {
    "outcome": "pain",
    "pain_threshold": 3.0,
    "exposures": "mileage_jump,shoe_km,rest_days_7d",
    "random_slopes": "",
    "min_cohort_size": DEFAULT_MIN_COHORT_SIZE,
    "seed": 0,
}
#: Processed tables whose rows for a cohort determine its report (hashed per cohort).
COHORT_TABLES = ("runners", "panel", "daily")
#: Processed JSON files shown in every report (hashed whole; volatile keys removed).
SHARED_INPUTS = ("cleaning_report.json", "panel_meta.json")
#: panel_meta.json keys that say where and when data was built, not what it is; each
#: cohort's content is hashed separately, so these must not re-run every cohort.
VOLATILE_META_KEYS = ("built_at", "raw_dir", "input_sha256", "dataset", "package_version")
#: Manifest parameter recording which salt made the pseudonyms (None: no salt), so that
#: --changed-only re-runs every cohort when the salt changes. It is the pseudonym of a
#: fixed string, which reveals nothing the pseudonyms in the reports do not.
PSEUDONYM_CHECK = "id_pseudonym_check"
#: Seconds to wait for a Dask scheduler before giving up.
DASK_CONNECT_TIMEOUT_S = 10

Status = str  # "ok" | "failed" | "suppressed" | "skipped" | "interrupted" | "not run"
#: What the index and the run summary show for a rendered report whose model has problems
#: (``summary.json`` ``status: "warning"``); the manifest keeps the run status ``ok``.
WARNING_STATUS = "warning"


@dataclass
class CohortOutcome:
    """The result of one cohort's report run (one manifest entry)."""

    cohort: str
    status: Status
    runners: int | None
    parameters: dict[str, Any]
    input_sha256: dict[str, str]
    template_sha256: str
    package_version: str = __version__
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    outputs_sha256: dict[str, str] = field(default_factory=dict)
    last_ok: str | None = None

    @property
    def problems(self) -> list[str]:
        """The model's problems from this cohort's summary (empty when it has none)."""
        return list((self.summary or {}).get("problems") or [])

    @property
    def shown_status(self) -> str:
        """The status the index and the run summary show: ``warning`` for a report whose
        model has problems, ``skipped (warning)`` for a kept one, else :attr:`status`."""
        if self.problems and self.status == "ok":
            return WARNING_STATUS
        if self.problems and self.status == "skipped":
            return f"skipped ({WARNING_STATUS})"
        return self.status

    @property
    def fingerprint(self) -> str:
        """Hash of everything that determines the report (for ``--changed-only``)."""
        payload = json.dumps(
            [self.parameters, self.input_sha256, self.template_sha256, self.package_version],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> CohortOutcome:
        """Rebuild an outcome from its manifest entry."""
        return cls(**{k: entry[k] for k in cls.__dataclass_fields__ if k in entry})


@dataclass
class ReportRun:
    """All cohorts of one ``kneeload report`` call."""

    out_dir: Path
    outcomes: list[CohortOutcome]

    @property
    def failed(self) -> list[CohortOutcome]:
        """Cohorts whose notebook raised in this run."""
        return [o for o in self.outcomes if o.status == "failed"]

    def one_line(self) -> str:
        """``3 cohorts: 1 failed, 1 ok, 1 warning; failed: x; warning: y`` (logs, the CLI)."""
        by_status: dict[str, int] = {}
        for outcome in self.outcomes:
            by_status[outcome.shown_status] = by_status.get(outcome.shown_status, 0) + 1
        parts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        failed = "; failed: " + ", ".join(o.cohort for o in self.failed) if self.failed else ""
        warned = [o.cohort for o in self.outcomes if o.shown_status == WARNING_STATUS]
        warning = f"; {WARNING_STATUS}: " + ", ".join(warned) if warned else ""
        return f"{len(self.outcomes)} cohorts: {parts}{failed}{warning}"


@dataclass
class CohortJob:
    """Everything one cohort's notebook run needs (picklable, for Dask)."""

    cohort: str
    processed_dir: str
    out_dir: str
    template: str
    kernel_name: str
    outcome: CohortOutcome
    id_salt: str | None = None


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


# --- parameters ------------------------------------------------------------------------------


def parse_param_items(items: Sequence[str], *, template: str | Path | None = None
                      ) -> dict[str, Any]:
    """Turn ``--param KEY=VALUE`` strings into typed template parameters.

    Each value is converted to the type the template declares for it (``int``, ``float``,
    ``str``, ``bool``) as papermill infers it from the parameters cell.

    Raises
    ------
    ReportError
        Malformed item, unknown or reserved key, or a value of the wrong type.
    """
    declared = _declared_parameters(Path(template) if template else template_path())
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ReportError(f"--param needs KEY=VALUE, got {item!r}")
        if key in RESERVED_PARAMETERS:
            raise ReportError(f"--param {key} is set by 'kneeload report' itself (use the "
                              "PROCESSED_DIR argument and --cohort)")
        if key not in declared:
            raise ReportError(f"unknown report parameter {key!r}; the template declares "
                              f"{sorted(set(declared) - set(RESERVED_PARAMETERS))}")
        params[key] = _coerce(key, value.strip(), declared[key])
    return params


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


def validate_parameters(parameters: Mapping[str, Any], *, panel_columns: Iterable[str] = ()
                        ) -> None:
    """Check parameter values before any notebook runs (one clear error, not N failed reports).

    Raises
    ------
    ReportError
        Unknown outcome, threshold outside NRS 0-10, ``min_cohort_size`` below 1 (the data
        owner may lower it below the default 5; the index then says so), no exposures, a
        random slope that is not an exposure, or a column the panel lacks.
    """
    if parameters["outcome"] not in OUTCOMES:
        raise ReportError(f"outcome must be one of {sorted(OUTCOMES)}, got "
                          f"{parameters['outcome']!r}")
    if not 0 <= float(parameters["pain_threshold"]) <= 10:
        raise ReportError("pain_threshold is on the NRS 0-10 scale, got "
                          f"{parameters['pain_threshold']}")
    if int(parameters["min_cohort_size"]) < 1:
        raise ReportError("min_cohort_size is a number of runners, at least 1 (default "
                          f"{DEFAULT_MIN_COHORT_SIZE}); got {parameters['min_cohort_size']}")
    exposures = split_list(parameters["exposures"])
    if not exposures:
        raise ReportError("exposures: at least one panel column is needed")
    slopes = split_list(parameters["random_slopes"])
    if not set(slopes) <= set(exposures):
        raise ReportError(f"random_slopes {slopes} must be among the exposures {exposures}")
    columns = set(panel_columns)
    missing = [c for c in exposures if columns and c not in columns]
    if missing:
        raise ReportError(f"exposure(s) {missing} are not panel columns")


def split_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (comma-separated template parameters)."""
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _declared_parameters(template: Path) -> dict[str, str]:
    import papermill

    if not template.is_file():
        raise ReportError("report template not found", file=template)
    return {name: info["inferred_type_name"]
            for name, info in papermill.inspect_notebook(str(template)).items()}


# --- running ---------------------------------------------------------------------------------


def run_reports(
    processed_dir: str | Path,
    out_dir: str | Path,
    *,
    cohorts: Sequence[str] | None = None,
    workers: int = 1,
    dask_scheduler: str | None = None,
    changed_only: bool = False,
    params: Mapping[str, Any] | None = None,
    template: str | Path | None = None,
    kernel_name: str = KERNEL_NAME,
    on_start: Callable[[list[str]], None] | None = None,
    on_done: Callable[[CohortOutcome], None] | None = None,
    submit: Callable[[list[CohortJob]], Iterable[CohortOutcome]] | None = None,
) -> ReportRun:
    """Render one report per cohort, then the index page.

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
    dask_scheduler
        ``tcp://HOST:PORT`` of a running Dask scheduler: each cohort becomes one task
        (workers need the package installed and the folders visible at the same paths).
    changed_only
        Skip cohorts whose inputs, parameters, template and package version are unchanged
        since their last successful run and whose outputs are still those it wrote.
    params
        Template parameters overriding :data:`DEFAULT_PARAMETERS`.
    on_start, on_done
        Called with the cohort names before running, and with each finished cohort.
    submit
        Alternative executor: called as ``submit(jobs)`` with a list of :class:`CohortJob`,
        returns their outcomes as they finish.

    Raises
    ------
    ReportError
        Bad parameter, unknown cohort, missing template, or another run holds the lock.
    """
    processed = Path(processed_dir).resolve()
    out = Path(out_dir).resolve()
    template_file = Path(template).resolve() if template else template_path()
    if not template_file.is_file():
        raise ReportError("report template not found", file=template_file)
    parameters = {**DEFAULT_PARAMETERS, **(params or {})}
    _check_parameters(template_file, parameters)
    available = list_cohorts(processed)
    validate_parameters(parameters, panel_columns=_panel_columns(processed))
    wanted = list(available["cohort"]) if not cohorts else list(dict.fromkeys(cohorts))
    unknown = sorted(set(wanted) - set(available["cohort"]))
    if unknown:
        raise ReportError(f"unknown cohort(s) {unknown}; the processed data has "
                          f"{list(available['cohort'])}", file=processed)
    if dask_scheduler and submit is None:
        submit = dask_submitter(dask_scheduler)

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
                           on_start=on_start, on_done=on_done, submit=submit)
    finally:
        lock.release()


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
    on_start: Callable[[list[str]], None] | None,
    on_done: Callable[[CohortOutcome], None] | None,
    submit: Callable[[list[CohortJob]], Iterable[CohortOutcome]] | None,
) -> ReportRun:
    _remove_stale_temporaries(out)
    manifest = _read_manifest(out)
    input_sha = cohort_input_hashes(processed, wanted)
    template_sha = _sha256(template_file)
    size = dict(zip(available["cohort"], available["runners"], strict=True))
    min_size = int(parameters["min_cohort_size"])
    salt = id_salt()
    if on_start:
        on_start(wanted)

    finished: dict[str, CohortOutcome] = {}
    jobs: list[CohortJob] = []
    for cohort in wanted:
        planned = CohortOutcome(
            cohort=cohort, status="pending", runners=int(size[cohort]),
            parameters={"cohort": cohort, **parameters, PSEUDONYM_CHECK: _salt_check(salt)},
            input_sha256=input_sha[cohort], template_sha256=template_sha,
        )
        previous = manifest["cohorts"].get(cohort)
        if planned.runners < min_size:
            planned.status = "suppressed"
            planned.runners = None  # the size itself is not shown either
            planned.input_sha256 = {}
            _remove_cohort_outputs(out / safe_name(cohort))
            finished[cohort] = planned
        elif changed_only and _unchanged(out, previous, planned):
            kept = CohortOutcome.from_entry(previous)
            kept.status = "skipped"
            finished[cohort] = kept
        else:
            jobs.append(CohortJob(cohort=cohort, processed_dir=str(processed),
                                  out_dir=str(out), template=str(template_file),
                                  kernel_name=kernel_name, outcome=planned, id_salt=salt))
    for outcome in finished.values():
        _update_manifest(out, manifest, outcome)  # suppressed ones; skipped ones are unchanged
        if on_done:
            on_done(outcome)

    everyone = list(available["cohort"])  # the index lists every cohort, run now or before
    runner = submit or (lambda js: _run_local(js, workers=workers))
    try:
        for outcome in runner(jobs):
            finished[outcome.cohort] = outcome
            _update_manifest(out, manifest, outcome)
            write_index(out, _index_outcomes(everyone, finished, manifest, running=wanted),
                        processed=processed)
            if on_done:
                on_done(outcome)
    except KeyboardInterrupt:
        _kill_live_processes()
        write_index(out, _index_outcomes(everyone, finished, manifest, running=wanted,
                                         interrupted=True), processed=processed)
        raise
    write_index(out, _index_outcomes(everyone, finished, manifest, running=wanted),
                processed=processed)
    return ReportRun(out_dir=out, outcomes=[finished[c] for c in wanted])


def _unchanged(out: Path, previous: Mapping[str, Any] | None, planned: CohortOutcome) -> bool:
    """True when the last successful run had the same fingerprint and its files are intact."""
    if not previous or previous.get("status") != "ok":
        return False
    if previous.get("fingerprint") != planned.fingerprint:
        return False
    folder = out / safe_name(planned.cohort)
    recorded = previous.get("outputs_sha256") or {}
    return set(recorded) == set(REPORT_FILES) and all(
        (folder / name).is_file() and _sha256(folder / name) == digest
        for name, digest in recorded.items()
    )


def _index_outcomes(cohorts: list[str], finished: Mapping[str, CohortOutcome],
                    manifest: Mapping[str, Any], *, running: Sequence[str],
                    interrupted: bool = False) -> list[CohortOutcome]:
    """What the index shows: cohorts finished in this run, else what is on disk from an
    earlier run (its manifest entry), else "not run"."""
    rows = []
    for cohort in cohorts:
        if cohort in finished:
            rows.append(finished[cohort])
            continue
        entry = manifest["cohorts"].get(cohort)
        row = CohortOutcome.from_entry(entry) if entry else CohortOutcome(
            cohort=cohort, status="not run", runners=None, parameters={}, input_sha256={},
            template_sha256="")
        if interrupted and cohort in running:
            row.error = "this run was interrupted before the cohort finished; " + (
                "the report shown is the previous one" if row.status == "ok" else "no report")
            row.status = "interrupted" if row.status != "ok" else "ok"
        rows.append(row)
    return rows


def _run_local(jobs: list[CohortJob], *, workers: int) -> Iterator[CohortOutcome]:
    if workers <= 1:
        for job in jobs:
            yield run_cohort(job)
        return
    pool = ThreadPoolExecutor(max_workers=workers)  # each job is its own process
    try:
        futures = [pool.submit(run_cohort, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()
    finally:
        # on Ctrl-C: do not wait for queued cohorts; running ones are killed by the caller
        pool.shutdown(wait=False, cancel_futures=True)


def dask_submitter(address: str) -> Callable[[list[CohortJob]], Iterator[CohortOutcome]]:
    """An executor for :func:`run_reports` that runs each cohort as a task on a Dask cluster.

    Parameters
    ----------
    address
        Scheduler address, e.g. ``tcp://10.0.0.5:8786``.
    """

    def submit(jobs: list[CohortJob]) -> Iterator[CohortOutcome]:
        if not jobs:
            return
        from distributed import Client
        from distributed import as_completed as dask_completed

        try:
            client = Client(address, timeout=DASK_CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise ReportError(f"cannot reach the Dask scheduler at {address}: "
                              f"{type(error).__name__}: {error}") from None
        with client:
            futures = {
                client.submit(run_cohort, job, pure=False,
                              key=f"kneeload-report-{safe_name(job.cohort)}-{uuid.uuid4().hex}"):
                job for job in jobs
            }
            try:
                for future in dask_completed(futures, loop=client.loop):
                    job = futures[future]
                    try:
                        yield future.result()
                    except Exception as error:  # the task died outside the notebook
                        yield _failed_outcome(job, f"Dask task failed: {type(error).__name__}: "
                                              f"{error}")
            finally:
                client.cancel(list(futures))

    return submit


def _salt_check(salt: str | None) -> str | None:
    return None if salt is None else pseudonym("kneeload-salt-check", salt=salt)


def _failed_outcome(job: CohortJob, error: str) -> CohortOutcome:
    outcome = job.outcome
    outcome.status = "failed"
    outcome.error = error
    outcome.finished = _now()
    return outcome


#: ``python -m papermill`` minus 1.2-1.5 s of import: jsonschema (via nbformat) imports the
#: optional ``rfc3987_syntax``, which builds a grammar at import time, only to check the
#: "iri" string format that no notebook schema uses. Blocking it makes the import fail,
#: which jsonschema handles (it then skips that format). Measured: bench/bench_reports.py.
PAPERMILL_BOOTSTRAP = (
    "import sys; sys.modules.setdefault('rfc3987_syntax', None); "
    "from papermill.cli import papermill; papermill(prog_name='papermill')"
)

# papermill children of this process, killed on Ctrl-C (and by the kernel if we are SIGKILLed).
_LIVE: set[subprocess.Popen[str]] = set()
_LIVE_LOCK = threading.Lock()


#: libc, loaded in the parent: the child may only make the one prctl call after fork.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: have the kernel SIGKILL this child when its parent thread dies (PDEATHSIG)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_live_processes() -> None:
    with _LIVE_LOCK:
        for proc in list(_LIVE):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


def run_cohort(job: CohortJob) -> CohortOutcome:
    """Execute the template for one cohort and render its HTML, atomically.

    Runs papermill in a subprocess (in-process kernels are known to hang on ports when run
    concurrently). Never raises for a failing notebook: the outcome says ``failed`` and the
    executed notebook is kept as ``report.failed.ipynb``.
    """
    outcome = job.outcome
    folder = Path(job.out_dir) / safe_name(job.cohort)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f".report.{os.getpid()}.{uuid.uuid4().hex[:12]}"
    tmp_nb = folder / f"{stem}.ipynb"
    tmp_html = folder / f"{stem}.html"
    tmp_summary = folder / f"{stem}.summary.json"
    params = {**{k: v for k, v in outcome.parameters.items() if k != PSEUDONYM_CHECK},
              "dataset": job.processed_dir, "summary_path": str(tmp_summary)}
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("KNEELOAD_ID_SALT", None)
    if job.id_salt:
        env["KNEELOAD_ID_SALT"] = job.id_salt
    outcome.started = _now()
    start = time.perf_counter()
    command = [
        sys.executable, "-c", PAPERMILL_BOOTSTRAP, job.template, str(tmp_nb),
        "--kernel", job.kernel_name, "--cwd", str(Path(job.template).parent),
        "--no-progress-bar", "--log-level", "ERROR",
        "--parameters_yaml", json.dumps(params),
    ]
    try:
        stderr = _run_child(command, env=env)
        if not tmp_nb.is_file() or _notebook_error(tmp_nb) or stderr is not None:
            outcome.status = "failed"
            outcome.error = _notebook_error(tmp_nb) or _last_line(stderr or "")
            if tmp_nb.is_file():
                tmp_nb.replace(folder / FAILED_NOTEBOOK)
        else:
            tmp_html.write_text(render_html(tmp_nb), encoding="utf-8")
            outcome.summary = json.loads(tmp_summary.read_text()) \
                if tmp_summary.is_file() else {}
            # move into place; the manifest (written by the caller) records these hashes
            outcome.outputs_sha256 = {"report.ipynb": _sha256(tmp_nb),
                                      "report.html": _sha256(tmp_html),
                                      SUMMARY_NAME: _sha256(tmp_summary)
                                      if tmp_summary.is_file() else ""}
            if not tmp_summary.is_file():
                tmp_summary.write_text("{}\n")
                outcome.outputs_sha256[SUMMARY_NAME] = _sha256(tmp_summary)
            tmp_nb.replace(folder / "report.ipynb")
            tmp_summary.replace(folder / SUMMARY_NAME)
            tmp_html.replace(folder / "report.html")
            (folder / FAILED_NOTEBOOK).unlink(missing_ok=True)
            outcome.status = "ok"
            outcome.error = None
    except Exception as error:  # a bug in rendering must not stop the other cohorts
        outcome.status = "failed"
        outcome.error = f"{type(error).__name__}: {error}"
    finally:
        for leftover in (tmp_nb, tmp_html, tmp_summary):
            leftover.unlink(missing_ok=True)
    outcome.finished = _now()
    outcome.duration_s = round(time.perf_counter() - start, 2)
    return outcome


def _run_child(command: list[str], *, env: Mapping[str, str]) -> str | None:
    """Run papermill; None on success, else its stderr."""
    preexec = _die_with_parent if _LIBC is not None else None
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=dict(env), preexec_fn=preexec)
    with _LIVE_LOCK:
        _LIVE.add(proc)
    try:
        _, stderr = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    return None if proc.returncode == 0 else stderr


def render_html(notebook_path: str | Path) -> str:
    """HTML of an executed notebook without code cells (``nbconvert --no-input``)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook_path), as_version=4))
    return body


def _notebook_error(notebook_path: Path) -> str | None:
    """'cell N: ErrorName: message' for the first code cell that raised, if any."""
    import nbformat

    if not notebook_path.is_file():
        return None
    try:
        notebook = nbformat.read(str(notebook_path), as_version=4)
    except Exception:  # a half-written notebook from a killed papermill
        return None
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                message = " ".join(str(output.get("evalue", "")).split())
                return f"cell {number}: {output.get('ename')}: {message}"
    return None


def _check_parameters(template: Path, parameters: Mapping[str, Any]) -> None:
    declared = set(_declared_parameters(template))
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise ReportError(f"unknown report parameter(s) {unknown}; the template declares "
                          f"{sorted(declared)}", file=template)
    missing = sorted(set(RESERVED_PARAMETERS) - declared)
    if missing:
        raise ReportError(f"the template does not declare {missing}", file=template)


def _panel_columns(processed: Path) -> list[str]:
    import pyarrow.parquet as pq

    panel = processed / "panel.parquet"
    if not panel.is_file():
        raise InputFileError("not a processed folder (no panel.parquet); run 'kneeload "
                             "build' first", file=processed)
    return list(pq.read_schema(panel).names)


# --- input fingerprints ----------------------------------------------------------------------


def cohort_input_hashes(processed_dir: str | Path, cohorts: Sequence[str]
                        ) -> dict[str, dict[str, str]]:
    """sha256 per cohort of its rows in each processed table, plus the shared audit files.

    A change to one cohort's data changes only that cohort's hashes, so ``--changed-only``
    re-runs only it. Row hashes are ``pandas.util.hash_pandas_object`` over all columns,
    in file order, with the column names and dtypes in the digest.
    """
    processed = Path(processed_dir)
    runners = pd.read_parquet(processed / "runners.parquet")
    cohort_of = runners.set_index("runner_id")["cohort"]
    tables = {name: pd.read_parquet(processed / f"{name}.parquet") for name in COHORT_TABLES}
    shared = {name: _json_digest(processed / name) for name in SHARED_INPUTS
              if (processed / name).is_file()}
    out: dict[str, dict[str, str]] = {c: dict(shared) for c in cohorts}
    for name, table in tables.items():
        row_hash = pd.util.hash_pandas_object(table, index=False).to_numpy()
        owner = table["runner_id"].map(cohort_of).to_numpy(dtype=object)
        schema = json.dumps([[str(c), str(t)] for c, t in table.dtypes.items()]).encode()
        for cohort in cohorts:
            digest = hashlib.sha256(schema)
            digest.update(row_hash[owner == cohort].tobytes())
            out[cohort][f"{name}.parquet[{cohort}]"] = digest.hexdigest()
    return out


def _json_digest(path: Path) -> str:
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in VOLATILE_META_KEYS}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# --- manifest and index ----------------------------------------------------------------------


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest of a reports folder (``{"cohorts": {}}`` when there is none yet)."""
    return _read_manifest(Path(out_dir))


def _read_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return {"cohorts": {}}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:  # cannot happen with atomic writes; start afresh if it does
        return {"cohorts": {}}
    manifest.setdefault("cohorts", {})
    return manifest


def _update_manifest(out: Path, manifest: dict[str, Any], outcome: CohortOutcome) -> None:
    """Record one cohort and rewrite the manifest atomically (consistent after any kill)."""
    if outcome.status == "skipped":
        return
    previous = manifest["cohorts"].get(outcome.cohort)
    if outcome.status == "failed" and previous and previous.get("status") in {"ok", "failed"}:
        # the previous good report is still in place: keep pointing at it
        outcome.last_ok = previous.get("finished") if previous.get("status") == "ok" \
            else previous.get("last_ok")
        outcome.outputs_sha256 = previous.get("outputs_sha256") or {}
        outcome.summary = previous.get("summary") or {}
    entry = asdict(outcome)
    entry["fingerprint"] = outcome.fingerprint
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
        rows=[_index_row(o, out) for o in outcomes],
        min_cohort_size=min((int(o.parameters.get("min_cohort_size", DEFAULT_MIN_COHORT_SIZE))
                             for o in outcomes), default=DEFAULT_MIN_COHORT_SIZE),
        default_min_cohort_size=DEFAULT_MIN_COHORT_SIZE,
    )
    path = out / "index.html"
    _atomic_write_text(path, page)
    return path


def headline_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Headline effects of a summary in reading units (:func:`analysis.effects.add_reading_units`;
    recomputed from the per-unit values, so summaries written before the step columns read
    the same)."""
    headline = summary.get("headline") or []
    if not headline:
        return []
    scale = summary.get("scale", "nrs")
    odds = scale == "odds"
    table = add_reading_units(pd.DataFrame.from_records(headline)[
        ["term", "estimate", "ci_low", "ci_high"]], odds=odds)
    names = (("odds_ratio_step", "or_ci_low_step", "or_ci_high_step") if odds
             else ("estimate_step", "ci_low_step", "ci_high_step"))
    return [{"term": row["term"], "phrase": row["step_label"], "scale": scale,
             "estimate": float(row[names[0]]), "ci_low": float(row[names[1]]),
             "ci_high": float(row[names[2]])} for row in table.to_dict(orient="records")]


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
        "model_note": summary.get("model_note"),
        "link": f"{folder}/report.html" if has_report and outcome.status != "suppressed"
        else None,
        "failed_link": f"{folder}/{FAILED_NOTEBOOK}" if outcome.status == "failed" else None,
        "last_ok": outcome.last_ok,
        "duration_s": outcome.duration_s,
        "finished": outcome.finished,
        "error": outcome.error,
    }


INDEX_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; } td, th { padding: .35rem .7rem; border-bottom: 1px solid #ddd;
text-align: left; vertical-align: top; } .ok { color: #17663a; } .failed { color: #b00020; }
.warning { color: #9a5b00; font-weight: bold; }
.suppressed, .skipped, .interrupted { color: #666; } small { color: #666; }
</style></head><body>
<h1>{{ title }}</h1>
<p><small>Generated {{ generated }} by kneeload {{ version }}.
Estimates: mixed model of knee pain with a random intercept per runner, in reading units
(NRS 0-10 points, or odds ratios for pain present); 95 % confidence intervals.
"skipped" means unchanged since the last successful run (that report is shown);
"warning" means the report was rendered but its model has problems (listed in the row:
not converged, singular or boundary fit, predictions outside the outcome's range), so its
estimates should not be read as a clean fit.
Cohorts with fewer than {{ min_cohort_size }} runners are suppressed (no statistics){% if
min_cohort_size < default_min_cohort_size %}: <strong>this minimum was lowered below the
default of {{ default_min_cohort_size }} by whoever ran this report</strong>{% endif
%}.</small></p>
<table>
<thead><tr><th>Cohort</th><th>Status</th><th>Runners</th><th>Reports</th>
<th>Headline estimates (95 % CI)</th><th>Duration</th><th>Report</th></tr></thead>
<tbody>
{% for row in rows %}<tr>
<td>{{ row.cohort }}</td>
<td class="{{ row.status_class }}">{{ row.status }}</td>
{% if row.status == "suppressed" %}
<td colspan="5">suppressed: fewer runners than the minimum cohort size; no statistics shown</td>
{% else %}
<td>{{ row.runners if row.runners is not none else "" }}</td>
<td>{{ row.reports if row.reports is not none else "" }}</td>
<td>{% if row.problems %}<span class="warning">warning: {{ row.problems|join("; ")
}}</span><br>{% endif %}{% for e in row.estimates %}{{ e.term }} {{ e.phrase }}:
{% if e.scale == "odds" %}OR {{ "%.2f"|format(e.estimate) }}
({{ "%.2f"|format(e.ci_low) }} to {{ "%.2f"|format(e.ci_high) }})
{% else %}{{ "%+.2f"|format(e.estimate) }} NRS
({{ "%+.2f"|format(e.ci_low) }} to {{ "%+.2f"|format(e.ci_high) }}){% endif %}<br>
{% endfor %}
{% if row.model_note %}<em>{{ row.model_note }}</em><br>{% endif %}
{% if row.error %}<span class="failed">{{ row.error }}</span>{% endif %}</td>
<td>{{ "%.1f s"|format(row.duration_s) if row.duration_s is not none else "" }}</td>
<td>{% if row.link %}<a href="{{ row.link }}">report</a>{% endif %}
{% if row.failed_link %}<br><a href="{{ row.failed_link }}">failed notebook</a>
{% if row.last_ok %}<br><small>report shown: {{ row.last_ok }}</small>{% endif %}{% endif %}</td>
{% endif %}
</tr>{% endfor %}
</tbody></table></body></html>
"""


# --- small helpers ---------------------------------------------------------------------------


def safe_name(cohort: str) -> str:
    """A folder name for a cohort: letters, digits, dash, underscore, plus a short hash when
    anything had to be replaced (so "a b" and "a_b" never share a folder)."""
    text = str(cohort)
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in text)
    if cleaned == text and cleaned:
        return cleaned
    return f"{cleaned}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _remove_cohort_outputs(folder: Path) -> None:
    """A cohort that became suppressed must not keep an old report with its statistics."""
    for name in (*REPORT_FILES, FAILED_NOTEBOOK):
        (folder / name).unlink(missing_ok=True)


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of killed runs (we hold the lock, so nobody else is writing)."""
    for pattern in ("*/.report.*", ".*.tmp"):
        for path in out.glob(pattern):
            path.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "papermill failed without a message"


# --- what the report notebook calls ----------------------------------------------------------

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
        Recompute ``pain_any = pain >= pain_threshold`` (NRS 0-10); None keeps the build's.
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
    if pain_threshold is not None:
        panel = panel.assign(pain_any=panel["pain"] >= pain_threshold)
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
        cleaning=_hide_folders(data["cleaning_report"], runners["runner_id"], salt=salt),
        counts=data["counts"].get("cohorts", {}).get(cohort, {}),
        meta=data["panel_meta"],
        quarantine=quarantine.reset_index(drop=True),
        pseudonymised=already or salt is not None,
    )


def _hide_folders(cleaning: dict[str, Any], runner_ids: pd.Series, *, salt: str | None
                  ) -> dict[str, Any]:
    """Input file names in the audit with per-runner folder names replaced by pseudonyms
    (exports often come as one folder per runner, named after the runner)."""
    if salt is None:
        return cleaning
    ids = runner_ids.dropna().astype("str").unique()
    hidden = dict(zip(ids, pseudonymise(pd.Series(ids, dtype="str"), salt=salt), strict=True))
    files = {"/".join([hidden.get(part, part) for part in name.split("/")[:-1]]
                      + name.split("/")[-1:]): counts
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
        ("reports with pain >= threshold", int(panel["pain_any"].sum())),
        ("reports usable for the model (all exposures known)", len(usable)),
        ("share of reports with a missing exposure",
         round(1 - len(usable) / len(panel), 3) if len(panel) else float("nan")),
        ("exposure lag (days)", view.meta.get("exposure_lag_days")),
    ]
    return pd.DataFrame(rows, columns=["measure", "value"], dtype=object)


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


@dataclass
class RandomEffects:
    """Conditional modes (BLUPs) of a linear mixed model and its residuals."""

    per_runner: pd.DataFrame  # runner_id, one column per random effect, <name>_se
    per_report: pd.DataFrame  # runner_id, fitted (conditional), residual, fitted_marginal


def conditional_modes(panel: pd.DataFrame, result: Any) -> RandomEffects:
    """Per-runner random effects and per-report conditional residuals of an LMM fit.

    ``b_i = G (Z_i'Z_i G + sigma^2 I)^-1 Z_i'(y_i - X_i beta)`` and conditional variance
    ``G - G (Z_i'Z_i G + sigma^2 I)^-1 Z_i'Z_i G`` (Henderson's BLUP; the push-through form
    also holds when G is singular). Vectorised over runners.
    """
    from analysis.models import build_design

    design = build_design(panel, outcome=result.outcome, exposures=result.exposures,
                          covariates=result.covariates, random_slopes=result.random_slopes)
    beta = result.table.set_index("term").loc[design.x_names, "estimate"].to_numpy(float)
    vc = result.variance_components
    q = len(design.z_names)
    grouped = vc[vc["group"] != "Residual"]
    G = np.zeros((q, q))
    index = {name: i for i, name in enumerate(design.z_names)}
    for row in grouped.itertuples(index=False):
        i = index[row.var1]
        j = i if row.var2 is None or pd.isna(row.var2) else index[row.var2]
        G[i, j] = G[j, i] = row.vcov
    sigma2 = float(vc.loc[vc["group"] == "Residual", "vcov"].iloc[0])

    fixed = design.X @ beta
    resid_marginal = design.y - fixed
    Z = design.Z
    ztz = np.add.reduceat(Z[:, :, None] * Z[:, None, :], design.starts, axis=0)  # (m, q, q)
    ztr = np.add.reduceat(Z * resid_marginal[:, None], design.starts, axis=0)  # (m, q)
    inner = ztz @ G + sigma2 * np.eye(q)  # (m, q, q)
    solved = np.linalg.solve(inner, ztr[:, :, None])[:, :, 0]
    modes = solved @ G.T  # G is symmetric: b_i = G solved_i
    cond_var = G - G @ np.linalg.solve(inner, ztz @ G)
    se = np.sqrt(np.clip(np.diagonal(cond_var, axis1=1, axis2=2), 0, None))
    labels = pd.Series(design.group_labels, name="runner_id")
    per_runner = pd.concat(
        [labels, pd.DataFrame(modes, columns=design.z_names),
         pd.DataFrame(se, columns=[f"{n}_se" for n in design.z_names])], axis=1)
    fitted = fixed + np.einsum("nq,nq->n", Z, modes[design.groups])
    per_report = pd.DataFrame({
        "runner_id": design.group_labels[design.groups],
        "fitted": fitted,
        "residual": design.y - fitted,
        "fitted_marginal": fixed,
    })
    return RandomEffects(per_runner=per_runner, per_report=per_report)


def runner_table(view: CohortView, modes: RandomEffects | None = None) -> pd.DataFrame:
    """One row per runner (pseudonymous ID): weeks followed, km per week, reports, mean pain
    (NRS 0-10) and, with a model, the runner's random intercept (NRS points)."""
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


def effects_table(table: pd.DataFrame) -> pd.DataFrame:
    """Fixed effects in reading units: estimate and 95 % CI per step (e.g. per +10 % jump).

    ``step_label`` names the step; ``estimate``, ``ci_low``, ``ci_high`` are NRS points per
    step, or odds ratios per step when the table has odds ratios. The values come from
    :func:`analysis.effects.add_reading_units` (a ``ModelResult.table`` already has them).
    """
    odds = "odds_ratio" in table.columns
    rows = add_reading_units(table)
    rows = rows[rows["term"] != "Intercept"]
    names = (("odds_ratio_step", "or_ci_low_step", "or_ci_high_step") if odds
             else ("estimate_step", "ci_low_step", "ci_high_step"))
    p_value = rows["p_value"] if "p_value" in rows.columns else np.nan
    return pd.DataFrame({
        "term": rows["term"], "step_label": rows["step_label"],
        "estimate": rows[names[0]], "ci_low": rows[names[1]], "ci_high": rows[names[2]],
        "p_value": p_value,
    }).reset_index(drop=True)


#: CSS class of the report's model-warning banner (tests and stylesheets look for it).
BANNER_CLASS = "kneeload-model-warning"
_BANNER_STYLE = ("border: 2px solid #9a5b00; background: #fff4e5; padding: 0.6em 1em; "
                 "margin: 0.5em 0;")


def model_banner(result: Any) -> str | None:
    """HTML banner for the top of the report's model section when the result's status is
    ``warning`` (None when it is ``ok``): the problems, and what they mean for reading it."""
    import html

    if getattr(result, "status", "ok") == "ok":
        return None
    items = "".join(f"<li>{html.escape(p)}</li>" for p in result.problems)
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


def plain_language(table: pd.DataFrame, *, outcome: str = "pain") -> list[str]:
    """One sentence per exposure effect, in steps a clinician reads (e.g. per +10 % jump)."""
    sentences = []
    for row in effects_table(table).itertuples(index=False):
        clear = (row.ci_low > (1 if "odds_ratio" in table.columns else 0)
                 or row.ci_high < (1 if "odds_ratio" in table.columns else 0))
        verdict = ("the interval excludes no effect" if clear
                   else "the interval includes no effect, so the data are compatible with none")
        if "odds_ratio" in table.columns:
            sentences.append(
                f"{row.term}: the odds of pain change by a factor of {row.estimate:.2f} "
                f"{row.step_label} (95 % CI {row.ci_low:.2f} to {row.ci_high:.2f}; "
                f"{verdict}).")
            continue
        direction = "higher" if row.estimate > 0 else "lower"
        sentences.append(
            f"{row.term}: {abs(row.estimate):.2f} NRS points {direction} {outcome} "
            f"{row.step_label} "
            f"(95 % CI {row.ci_low:.2f} to {row.ci_high:.2f}; {verdict}).")
    return sentences


#: Per headline effect in ``summary.json``: the per-unit values and the reading-unit ones.
HEADLINE_COLUMNS = ("term", "estimate", "ci_low", "ci_high", "step", "step_label",
                    "estimate_step", "ci_low_step", "ci_high_step")
HEADLINE_ODDS_COLUMNS = ("odds_ratio_step", "or_ci_low_step", "or_ci_high_step")


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
    "BANNER_CLASS",
    "DEFAULT_MIN_COHORT_SIZE",
    "DEFAULT_PARAMETERS",
    "HEADLINE_COLUMNS",
    "KERNEL_NAME",
    "WARNING_STATUS",
    "CohortJob",
    "CohortOutcome",
    "CohortView",
    "ModelAttempt",
    "RandomEffects",
    "ReportRun",
    "cleaning_counts",
    "cohort_audit",
    "cohort_input_hashes",
    "cohort_summary",
    "conditional_modes",
    "dask_submitter",
    "effects_table",
    "fit_cohort_model",
    "fit_status_line",
    "follow_up_coverage",
    "headline_rows",
    "list_cohorts",
    "load_cohort",
    "model_banner",
    "parse_param_items",
    "plain_language",
    "read_manifest",
    "render_html",
    "run_cohort",
    "run_reports",
    "runner_table",
    "safe_name",
    "split_list",
    "template_path",
    "validate_parameters",
    "write_index",
    "write_summary",
]
