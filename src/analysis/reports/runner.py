"""Per-cohort report runs: papermill executes ``notebooks/cohort_report.ipynb`` once per cohort.

Process control lives here: one papermill child process per cohort (threads or a Dask
cluster), the lock that keeps two runs off one folder, kill-on-interrupt. The record of a
run is :mod:`analysis.reports.manifest`, the page :mod:`analysis.reports.index`.

Guarantees (each has a test in ``tests/test_reports_run.py``): one cohort failing never stops
the others; a report is written under a temporary name and moved into place only when
complete (an interrupted run leaves the previous good report, and the manifest lists only
outputs that are in place); a lock file keeps two runs off one folder; cohorts with fewer
than ``min_cohort_size`` runners with data (a pain report) get no statistics at all (privacy);
runner identifiers are replaced by keyed-hash pseudonyms when ``KNEELOAD_ID_SALT`` is set
(:mod:`analysis.privacy`).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from analysis.errors import InputFileError, ReportError
from analysis.outputs import (
    REPORTS_MARKER,
    atomic_write_text,
    check_output_folder,
    mark_output_folder,
    temporary_name,
)
from analysis.privacy import id_salt, pseudonym
from analysis.reports.cohort import cohort_sizes
from analysis.reports.execute import NBFORMAT_VERSION, render_html, strip_machine_paths
from analysis.reports.index import write_index
from analysis.reports.manifest import (
    FAILED_NOTEBOOK,
    MANIFEST_NAME,
    PSEUDONYM_CHECK,
    SUMMARY_NAME,
    TAKEAWAY_DIRS,
    TAKEAWAY_SUFFIXES,
    WARNING_STATUS,
    CohortOutcome,
    cohort_input_hashes,
    is_takeaway_name,
    load_manifest,
    now,
    remove_cohort_outputs,
    remove_stale_temporaries,
    safe_name,
    sha256_file,
    unchanged,
    update_manifest,
)
from analysis.reports.parameters import (
    DEFAULT_PARAMETERS,
    KERNEL_NAME,
    check_template_parameters,
    template_path,
    validate_parameters,
)
from analysis.reports.study import remove_study_files, remove_table_files

LOCK_NAME = ".kneeload-report.lock"
#: Seconds to wait for a Dask scheduler before giving up.
DASK_CONNECT_TIMEOUT_S = 10
#: Seconds the cluster may have no worker at all while cohorts are pending before those
#: cohorts are marked failed (a worker that died and was not replaced; ``--dask-timeout``).
DASK_NO_WORKER_TIMEOUT_S = 60.0
#: Seconds between checks of a Dask cluster's workers while waiting for cohorts.
DASK_POLL_S = 0.5
#: What ``--dask-scheduler`` accepts: ``tcp://HOST:PORT`` (or tls, ws, wss, ucx, inproc).
DASK_ADDRESS = re.compile(r"^(tcp|tls|ws|wss|ucx|inproc)://\[?[\w.:-]+\]?(:\d{1,5})?(/\S*)?$")
#: Fixed string whose pseudonym records which salt made a run's pseudonyms (manifest).
SALT_CHECK_TEXT = "kneeload-salt-check"
#: Seconds a report worker gets to shut its kernel down before it is killed.
WORKER_CLOSE_TIMEOUT_S = 10
#: Sub-folders of a cohort's report folder with its take-away files, and the suffixes of
#: the files kneeload writes there (:mod:`analysis.reports.cohort`): removed when the
#: cohort becomes suppressed, so that its folder (named after it) goes too.
#: Largest share of a run's wall time the index written while it goes on (its progress
#: view) may take: after a write of ``w`` seconds the next waits ``w / LIVE_INDEX_SHARE``
#: seconds. Each write reads every cohort's summary (0.4 s at 100 cohorts, on the parent's
#: core share, growing with the cohorts: 80 s of a 100-cohort run when written after each
#: cohort); the index at the end of the run and on Ctrl-C is always written.
LIVE_INDEX_SHARE = 0.05
#: Seconds a file's modification time may lag ``time.time()`` (the kernel's coarse clock).
TAKEAWAY_CLOCK_SLACK_S = 0.05


@dataclass
class ReportRun:
    """All cohorts of one ``kneeload report`` call."""

    out_dir: Path
    outcomes: list[CohortOutcome]
    write_errors: list[str] = dataclasses.field(default_factory=list)

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
        written = "; not written: " + "; ".join(self.write_errors) if self.write_errors else ""
        return f"{len(self.outcomes)} cohorts: {parts}{failed}{warning}{written}"


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


def list_cohorts(processed_dir: str | Path) -> pd.DataFrame:
    """Cohorts in a processed folder with their number of runners with data (``cohort``,
    ``runners``; :func:`analysis.reports.cohort.cohort_sizes`: a runners.csv row without a
    pain report is not counted, so it cannot lift a cohort over ``min_cohort_size``)."""
    folder = Path(processed_dir)
    for name in ("runners.parquet", "panel.parquet"):
        if not (folder / name).is_file():
            raise InputFileError(f"not a processed folder (no {name}); run 'kneeload "
                                 "build' first", file=folder)
    runners = pd.read_parquet(folder / "runners.parquet", columns=["runner_id", "cohort"])
    panel = pd.read_parquet(folder / "panel.parquet", columns=["runner_id"])
    return cohort_sizes(runners, panel).reset_index()


# --- running ---------------------------------------------------------------------------------


def run_reports(
    processed_dir: str | Path,
    out_dir: str | Path,
    *,
    cohorts: Sequence[str] | None = None,
    workers: int = 1,
    dask_scheduler: str | None = None,
    dask_timeout_s: float = DASK_NO_WORKER_TIMEOUT_S,
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
    dask_timeout_s
        Seconds the cluster may have no worker while cohorts are pending; then those cohorts
        fail (:data:`DASK_NO_WORKER_TIMEOUT_S`).
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
        Bad parameter, unknown cohort, missing template, a malformed Dask address, or
        another run holds the lock.
    OutputFolderError
        ``out_dir`` may not be written (:func:`analysis.outputs.check_output_folder`: raw or
        processed data, a file, a folder that is not a reports folder, read-only or full).
    """
    if dask_scheduler is not None:
        check_dask_address(dask_scheduler)
    processed = Path(processed_dir).resolve()
    template_file = Path(template).resolve() if template else template_path()
    if not template_file.is_file():
        raise ReportError("report template not found", file=template_file)
    parameters = {**DEFAULT_PARAMETERS, **(params or {})}
    check_template_parameters(template_file, parameters)
    available = list_cohorts(processed)
    validate_parameters(parameters, panel_columns=_panel_columns(processed),
                        daily_columns=_daily_columns(processed), meta=_panel_meta(processed))
    wanted = list(available["cohort"]) if not cohorts else list(dict.fromkeys(cohorts))
    unknown = sorted(set(wanted) - set(available["cohort"]))
    if unknown:
        raise ReportError(f"unknown cohort(s) {unknown}; the processed data has "
                          f"{list(available['cohort'])}", file=processed)
    if dask_scheduler and submit is None:
        submit = dask_submitter(dask_scheduler, no_worker_timeout_s=dask_timeout_s)

    out = check_output_folder(out_dir, marker=REPORTS_MARKER, raw=_raw_dir(processed),
                              processed=processed, legacy=_is_legacy_reports_folder,
                              what="reports folder (--out)")
    mark_output_folder(out)
    lock = FileLock(str(out / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ReportError("another 'kneeload report' is already writing this folder "
                          f"(lock file {LOCK_NAME}); try again when it has finished",
                          file=out) from None
    except OSError as error:
        raise ReportError(f"cannot create the lock file {LOCK_NAME}: "
                          f"{error.strerror or error}", file=out) from None
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
    remove_stale_temporaries(out)
    remove_study_files(out)  # drawn again at the end of this run, from this run's cohorts
    remove_table_files(out)
    manifest = load_manifest(out)
    for cohort, entry in list(manifest["cohorts"].items()):  # recorded by an older version
        if entry.get("status") == "suppressed":
            with contextlib.suppress(OSError):  # a full disk: the index leaves it out anyway
                forget_cohort(out, manifest, cohort)
    input_sha = cohort_input_hashes(processed, wanted)
    template_sha = sha256_file(template_file)
    size = dict(zip(available["cohort"], available["runners"], strict=True))
    min_size = int(parameters["min_cohort_size"])
    salt = id_salt()
    # a cohort this run does not report (a --cohort subset) but whose size is below this
    # run's floor is hidden too: its earlier report, take-away files and manifest entry go
    # (the index leaves it out; statistics left on disk beside it would not be)
    for cohort in available["cohort"]:
        if cohort not in wanted and int(size[cohort]) < min_size:
            remove_suppressed_folder(out / safe_name(cohort), manifest["cohorts"].get(cohort))
            with contextlib.suppress(OSError):  # a full disk: the index leaves it out anyway
                forget_cohort(out, manifest, cohort)
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
            remove_suppressed_folder(out / safe_name(cohort), previous)
            finished[cohort] = planned
        elif changed_only and unchanged(out, previous, planned):
            kept = CohortOutcome.from_entry(previous)
            kept.status = "skipped"
            finished[cohort] = kept
        else:
            jobs.append(CohortJob(cohort=cohort, processed_dir=str(processed),
                                  out_dir=str(out), template=str(template_file),
                                  kernel_name=kernel_name, outcome=planned, id_salt=salt))
    errors: dict[str, str] = {}

    def record(outcome: CohortOutcome) -> None:
        """Rewrite the manifest; a write that fails (full disk) leaves the previous one.
        A suppressed cohort is not recorded and its earlier entry is dropped (the manifest
        is in the reports folder: it must neither name nor count it)."""
        try:
            if outcome.status == "suppressed":
                forget_cohort(out, manifest, outcome.cohort)
                return
            if outcome.status == "ok":  # an earlier run's take-away files stay kneeload's
                _keep_recorded_takeaways(out / safe_name(outcome.cohort), outcome,
                                         manifest["cohorts"].get(outcome.cohort))
            update_manifest(out, manifest, outcome)
            errors.pop(MANIFEST_NAME, None)
        except OSError as error:
            errors[MANIFEST_NAME] = f"{MANIFEST_NAME}: {error.strerror or error}"

    next_live_index = 0.0  # time.monotonic() before which a progress write is skipped

    def index(*, interrupted: bool = False, study: bool = False, live: bool = False) -> None:
        nonlocal next_live_index
        began = time.monotonic()
        if live and began < next_live_index:
            return
        try:
            write_index(out, _index_outcomes(everyone, finished, manifest, running=wanted,
                                             interrupted=interrupted), processed=processed,
                        study=study)
            errors.pop("index.html", None)
        except OSError as error:
            errors["index.html"] = f"index.html: {error.strerror or error}"
        next_live_index = began + (time.monotonic() - began) / LIVE_INDEX_SHARE

    for outcome in finished.values():
        record(outcome)  # suppressed ones; skipped ones are unchanged
        if on_done:
            on_done(outcome)

    # the index lists every cohort, run now or before, except those too small to be shown
    everyone = [c for c in available["cohort"] if size[c] >= min_size]
    runner = submit or (lambda js: _run_local(js, workers=workers))
    try:
        for outcome in runner(jobs):
            finished[outcome.cohort] = outcome
            record(outcome)
            index(live=True)
            if on_done:
                on_done(outcome)
    except KeyboardInterrupt:
        _kill_live_processes()
        index(interrupted=True)
        raise
    index(study=True)  # the forest plot across cohorts and the pooled model: once per run
    return ReportRun(out_dir=out, outcomes=[finished[c] for c in wanted],
                     write_errors=list(errors.values()))


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
        if entry and entry.get("status") == "suppressed":  # a manifest of an older version
            continue
        row = CohortOutcome.from_entry(entry) if entry else CohortOutcome(
            cohort=cohort, status="not run", runners=None, parameters={}, input_sha256={},
            template_sha256="")
        if interrupted and cohort in running:
            row.error = "this run was interrupted before the cohort finished; " + (
                "the report shown is the previous one" if row.status == "ok" else "no report")
            row.status = "interrupted" if row.status != "ok" else "ok"
        rows.append(row)
    return rows


def forget_cohort(out: Path, manifest: dict[str, Any], cohort: str) -> None:
    """Drop ``cohort``'s manifest entry (a cohort that is now suppressed, or an entry of an
    older version that recorded one) and rewrite the manifest when it had one."""
    if manifest["cohorts"].pop(cohort, None) is None:
        return
    manifest["updated"] = now()
    atomic_write_text(out / MANIFEST_NAME,
                      json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def remove_suppressed_folder(folder: Path, entry: Mapping[str, Any] | None = None) -> None:
    """Remove what kneeload wrote for a cohort that is now suppressed: its report files
    (:func:`analysis.reports.manifest.remove_cohort_outputs`), its take-away figures and
    tables, then the folders themselves when empty: the folder's name is the cohort's.

    The take-away files removed are those the cohort's manifest ``entry`` records
    (``outputs_sha256`` keys under :data:`TAKEAWAY_DIRS`, :func:`takeaway_hashes`), so a
    file a user put there stays, and so does its folder; an entry of an older version
    without them: every file ending in :data:`TAKEAWAY_SUFFIXES` there. A symbolic link
    is never followed: a cohort folder that is a link is unlinked (its target, which may
    be outside the reports folder, is left as it is), a linked sub-folder is left."""
    if folder.is_symlink():
        folder.unlink()
        return
    if not folder.is_dir():
        return
    remove_cohort_outputs(folder)
    recorded = [name for name in (entry or {}).get("outputs_sha256") or {}
                if is_takeaway_name(name)]
    for name in TAKEAWAY_DIRS:
        sub = folder / name
        if not sub.is_dir() or sub.is_symlink():
            continue
        for path in sub.iterdir():
            ours = (f"{name}/{path.name}" in recorded if recorded
                    else path.suffix in TAKEAWAY_SUFFIXES)
            if ours and (path.is_symlink() or path.is_file()):
                path.unlink(missing_ok=True)  # a link itself, never its target
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _keep_recorded_takeaways(folder: Path, outcome: CohortOutcome,
                             previous: Mapping[str, Any] | None) -> None:
    """Add to ``outcome.outputs_sha256`` the take-away files an earlier run recorded that are
    still there but this run did not write (a section switched off: its old figure stays on
    disk, and a later suppression must still find it to remove it)."""
    for name in (previous or {}).get("outputs_sha256") or {}:
        path = folder / name
        if is_takeaway_name(name) and name not in outcome.outputs_sha256 \
                and path.is_file() and not path.is_symlink():
            outcome.outputs_sha256[name] = sha256_file(path)


def takeaway_hashes(folder: Path, *, since: float) -> dict[str, str]:
    """``{"figures/forest.svg": sha256, ...}`` of the take-away files a report wrote in
    ``folder`` (modified at or after ``since``, a ``time.time()``; regular files only), for
    the manifest: what :func:`remove_suppressed_folder` may remove later."""
    out = {}
    for name in TAKEAWAY_DIRS:
        sub = folder / name
        if not sub.is_dir() or sub.is_symlink():
            continue
        for path in sorted(sub.iterdir()):
            if path.suffix in TAKEAWAY_SUFFIXES and path.is_file() and not path.is_symlink() \
                    and path.stat().st_mtime >= since:
                out[f"{name}/{path.name}"] = sha256_file(path)
    return out


def _run_local(jobs: list[CohortJob], *, workers: int) -> Iterator[CohortOutcome]:
    """Run the jobs on ``workers`` report worker processes, each keeping its kernel across
    the cohorts it runs (:class:`ReportWorker`); a thread per worker only waits for it."""
    if not jobs:
        return
    # spawned from this thread: PDEATHSIG fires when the thread that started a child ends
    spare: queue.SimpleQueue[ReportWorker] = queue.SimpleQueue()
    pool_size = max(1, min(workers, len(jobs)))
    started = [ReportWorker.for_job(jobs[0]) for _ in range(pool_size)]
    for worker in started:
        spare.put(worker)

    def run(job: CohortJob) -> CohortOutcome:
        worker = spare.get()
        try:
            return run_cohort(job, worker=worker if worker.fits(job) else None)
        finally:
            spare.put(worker)

    try:
        if pool_size == 1:
            for job in jobs:
                yield run(job)
            return
        pool = ThreadPoolExecutor(max_workers=pool_size)
        try:
            futures = [pool.submit(run, job) for job in jobs]
            for future in as_completed(futures):
                yield future.result()
        finally:
            # on Ctrl-C: do not wait for queued cohorts; running ones are killed by the caller
            pool.shutdown(wait=False, cancel_futures=True)
    finally:
        for worker in started:
            worker.close()


def check_dask_address(address: str) -> str:
    """Refuse a ``--dask-scheduler`` value that is not a scheduler address, at once.

    Raises
    ------
    ReportError
        Not of the form ``tcp://HOST:PORT`` (or ``tls://``, ``ws://``, ``wss://``, ``ucx://``,
        ``inproc://``).
    """
    if not DASK_ADDRESS.match(address.strip()):
        raise ReportError(f"--dask-scheduler {address!r} is not a Dask scheduler address; "
                          "expected tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786")
    return address.strip()


def dask_submitter(address: str, *, no_worker_timeout_s: float = DASK_NO_WORKER_TIMEOUT_S
                   ) -> Callable[[list[CohortJob]], Iterator[CohortOutcome]]:
    """An executor for :func:`run_reports` that runs each cohort as a task on a Dask cluster.

    A cohort whose worker dies is retried by Dask on another worker; when the cluster has no
    worker at all for ``no_worker_timeout_s`` seconds (the only worker was killed and none
    replaced it), every pending cohort is marked failed and the run ends, so the lock is
    released; a task Dask gives up on (``KilledWorker``) fails its cohort at once.

    Parameters
    ----------
    address
        Scheduler address, e.g. ``tcp://10.0.0.5:8786``.
    no_worker_timeout_s
        Seconds without any worker before pending cohorts fail.
    """
    address = check_dask_address(address)

    def submit(jobs: list[CohortJob]) -> Iterator[CohortOutcome]:
        if not jobs:
            return
        from distributed import Client

        try:
            client = Client(address, timeout=DASK_CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            raise ReportError(f"cannot reach the Dask scheduler at {address}: "
                              f"{type(error).__name__}: {error}") from None
        with client:
            futures = {
                client.submit(run_cohort, job, pure=False,
                              key=f"kneeload-report-{safe_name(job.cohort)}-{uuid.uuid4().hex}"):
                job for job in jobs
            }
            pending = set(futures)
            workerless_since: float | None = None
            try:
                while pending:
                    done = {f for f in pending if f.done()}
                    pending -= done
                    if not done:
                        time.sleep(DASK_POLL_S)
                    for future in done:
                        yield _dask_outcome(future, futures[future])
                    if not pending:
                        break
                    workerless_since = _workerless_since(client, workerless_since)
                    if workerless_since is not None and \
                            time.monotonic() - workerless_since > no_worker_timeout_s:
                        for future in pending:
                            yield _failed_outcome(
                                futures[future], f"Dask cluster had no worker for "
                                f"{no_worker_timeout_s:g} s (the worker died?); not run")
                        pending = set()
            finally:
                with contextlib.suppress(Exception):
                    client.cancel(list(futures))

    return submit


def _dask_outcome(future: Any, job: CohortJob) -> CohortOutcome:
    try:
        return future.result()
    except Exception as error:  # the task died outside the notebook (KilledWorker, ...)
        return _failed_outcome(job, f"Dask task failed: {type(error).__name__}: {error}")


def _workerless_since(client: Any, since: float | None) -> float | None:
    """When the cluster was first seen without workers (None while it has some). A scheduler
    that cannot be asked counts as having none."""
    try:
        workers = len(client.nthreads())
    except Exception:  # the scheduler is gone: no worker will come back either
        workers = 0
    if workers:
        return None
    return time.monotonic() if since is None else since


def _salt_check(salt: str | None) -> str | None:
    return None if salt is None else pseudonym(SALT_CHECK_TEXT, salt=salt)


def _failed_outcome(job: CohortJob, error: str) -> CohortOutcome:
    outcome = job.outcome
    outcome.status = "failed"
    outcome.error = error
    outcome.finished = now()
    return outcome


# report worker processes of this process, killed on Ctrl-C (and by the kernel if we are
# SIGKILLed); their kernels exit when they do (ipykernel's parent poller).
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


class ReportWorker:
    """A report worker process (``python -m analysis.reports.execute``) and its kept kernel.

    Started with the run's environment (``PYTHONHASHSEED=0``, the ID salt), dies with this
    process (``PR_SET_PDEATHSIG``), killed on Ctrl-C; its stderr (kernel messages) goes to a
    temporary file whose tail explains a worker that died.
    """

    def __init__(self, *, kernel_name: str, cwd: str, salt: str | None) -> None:
        self.kernel_name, self.cwd, self.salt = kernel_name, cwd, salt
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        env.pop("KNEELOAD_ID_SALT", None)
        if salt:
            env["KNEELOAD_ID_SALT"] = salt
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        preexec = _die_with_parent if _LIBC is not None else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "analysis.reports.execute", kernel_name, cwd],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env=env, cwd=cwd, preexec_fn=preexec)
        with _LIVE_LOCK:
            _LIVE.add(self.proc)

    @classmethod
    def for_job(cls, job: CohortJob) -> ReportWorker:
        """A worker for jobs like ``job`` (its kernel, template folder and salt)."""
        return cls(kernel_name=job.kernel_name, cwd=str(Path(job.template).parent),
                   salt=job.id_salt)

    def fits(self, job: CohortJob) -> bool:
        """Whether this worker can run ``job`` (same kernel, template folder and salt) and
        is still alive."""
        return self.proc.poll() is None and (self.kernel_name, self.cwd, self.salt) == (
            job.kernel_name, str(Path(job.template).parent), job.id_salt)

    def run(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send one job, wait for its answer (``ok``, ``error``)."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        line = ""
        if stdin is not None and stdout is not None:
            try:
                stdin.write(json.dumps(payload) + "\n")
                stdin.flush()
                line = stdout.readline()
            except (OSError, ValueError):  # the worker is gone (broken pipe)
                line = ""
        if line:
            return json.loads(line)
        self.proc.wait()
        return {"ok": False, "error": f"report worker died (exit {self.proc.returncode}): "
                + _last_line(self.stderr_text())}

    def stderr_text(self) -> str:
        """What the worker and its kernels wrote to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read()

    def close(self) -> None:
        """End the worker (it shuts its kernel down); kill it if it does not end."""
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=WORKER_CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(self.proc)
            self._stderr.close()


def run_cohort(job: CohortJob, *, worker: ReportWorker | None = None) -> CohortOutcome:
    """Execute the template for one cohort and render its HTML, atomically.

    The notebook runs in a report worker process (:mod:`analysis.reports.execute`: papermill
    on a kernel the worker keeps, reset between cohorts): ``worker`` when given (local runs
    keep one per ``--workers`` slot), else a new one for this cohort alone (Dask tasks). Never
    raises for a failing notebook or a full disk: the outcome says ``failed`` and the
    executed notebook, when it is complete, is kept as ``report.failed.ipynb``. The saved
    notebooks hold no absolute path of this machine (:func:`strip_machine_paths`).
    Temporary files (:func:`analysis.outputs.temporary_name`) are removed whatever happens.
    """
    outcome = job.outcome
    folder = Path(job.out_dir) / safe_name(job.cohort)
    tmp_nb = folder / temporary_name("report.ipynb")
    tmp_html = folder / temporary_name("report.html")
    tmp_summary = folder / temporary_name(SUMMARY_NAME)
    params = {**{k: v for k, v in outcome.parameters.items() if k != PSEUDONYM_CHECK},
              "dataset": job.processed_dir, "summary_path": str(tmp_summary)}
    outcome.started = now()
    start = time.perf_counter()
    # take-away files modified from here on are this report's (the clock of file times can
    # lag time.time() by a tick: TAKEAWAY_CLOCK_SLACK_S)
    since = time.time() - TAKEAWAY_CLOCK_SLACK_S
    machine_paths = {
        str(tmp_nb): "report.ipynb", str(tmp_summary): SUMMARY_NAME,
        job.template: Path(job.template).name,
        str(Path(job.template).parent): Path(job.template).parent.name,
        job.processed_dir: os.path.relpath(job.processed_dir, folder),
        str(folder): ".", job.out_dir: "..", sys.prefix: "<python>",
    }
    payload = {"template": job.template, "output": str(tmp_nb), "parameters": params,
               "html": str(tmp_html), "replacements": machine_paths}
    own = worker is None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if worker is None:
            worker = ReportWorker.for_job(job)
        answer = worker.run(payload)
        notebook = _notebook_json(tmp_nb)
        error = _first_error(notebook)
        if not tmp_nb.is_file() or error or not answer.get("ok") or not tmp_html.is_file():
            outcome.status = "failed"
            outcome.error = error or answer.get("error") or "the report was not rendered"
            if notebook is not None:  # a truncated one (full disk, kill) is not kept
                strip_machine_paths(tmp_nb, machine_paths)
                tmp_nb.replace(folder / FAILED_NOTEBOOK)
        else:
            if not tmp_summary.is_file():
                tmp_summary.write_text("{}\n")
            outcome.summary = json.loads(tmp_summary.read_text())
            # move into place; the manifest (written by the caller) records these hashes
            outcome.outputs_sha256 = {"report.ipynb": sha256_file(tmp_nb),
                                      "report.html": sha256_file(tmp_html),
                                      SUMMARY_NAME: sha256_file(tmp_summary),
                                      **takeaway_hashes(folder, since=since)}
            tmp_nb.replace(folder / "report.ipynb")
            tmp_summary.replace(folder / SUMMARY_NAME)
            tmp_html.replace(folder / "report.html")
            (folder / FAILED_NOTEBOOK).unlink(missing_ok=True)
            outcome.status = "ok"
            outcome.error = None
    except Exception as error:  # a full disk or a bug in rendering must not stop the others
        outcome.status = "failed"
        outcome.error = f"{type(error).__name__}: {error}"
        outcome.outputs_sha256 = {}
    finally:
        if own and worker is not None:
            worker.close()
        for leftover in (tmp_nb, tmp_html, tmp_summary):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
    outcome.finished = now()
    outcome.duration_s = round(time.perf_counter() - start, 2)
    return outcome


def _notebook_json(path: Path) -> dict[str, Any] | None:
    """The saved notebook as JSON; None when it is missing, truncated (a full disk, a killed
    papermill) or not an nbformat 4 notebook. Read with ``json``, not nbformat: a Dask
    worker, which kneeload does not start, would import jsonschema's IRI grammar with it
    (:data:`analysis.reports.execute.UNUSED_SLOW_MODULES`, 1.1 s)."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(notebook, dict) or notebook.get("nbformat") != NBFORMAT_VERSION or \
            not isinstance(notebook.get("cells"), list):
        return None
    return notebook


def _first_error(notebook: dict[str, Any] | None) -> str | None:
    """'cell N: ErrorName: message' for the first code cell of a saved notebook
    (:func:`_notebook_json`) that raised, if any."""
    if notebook is None:
        return None
    code_cells = [c for c in notebook["cells"]
                  if isinstance(c, dict) and c.get("cell_type") == "code"]
    for number, cell in enumerate(code_cells, start=1):
        for output in cell.get("outputs") or []:
            if isinstance(output, dict) and output.get("output_type") == "error":
                message = " ".join(str(output.get("evalue", "")).split())
                return f"cell {number}: {output.get('ename')}: {message}"
    return None


def _panel_columns(processed: Path) -> list[str]:
    import pyarrow.parquet as pq

    panel = processed / "panel.parquet"
    if not panel.is_file():
        raise InputFileError("not a processed folder (no panel.parquet); run 'kneeload "
                             "build' first", file=processed)
    return list(pq.read_schema(panel).names)


def _daily_columns(processed: Path) -> list[str]:
    """The daily calendar's columns (the ``dlnm`` parameter's load); none when absent."""
    import pyarrow.parquet as pq

    daily = processed / "daily.parquet"
    return list(pq.read_schema(daily).names) if daily.is_file() else []


def _raw_dir(processed: Path) -> Path | None:
    """The raw folder the processed folder was built from (``panel_meta.json`` ``raw_dir``),
    so that ``--out`` can never point into raw data; None when not recorded."""
    raw = _panel_meta(processed).get("raw_dir")
    return Path(raw) if isinstance(raw, str) and Path(raw).is_absolute() else None


def _is_legacy_reports_folder(folder: Path) -> bool:
    """A reports folder an earlier kneeload wrote before the marker existed: it holds a
    kneeload manifest (``cohorts`` and ``package_version``)."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and isinstance(manifest.get("cohorts"), dict) and \
        "package_version" in manifest


def _panel_meta(processed: Path) -> dict[str, Any]:
    """``panel_meta.json`` of a processed folder ({} when absent: an older build)."""
    path = processed / "panel_meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "papermill failed without a message"


__all__ = [
    "DASK_CONNECT_TIMEOUT_S",
    "DASK_NO_WORKER_TIMEOUT_S",
    "LIVE_INDEX_SHARE",
    "LOCK_NAME",
    "WORKER_CLOSE_TIMEOUT_S",
    "CohortJob",
    "ReportRun",
    "ReportWorker",
    "check_dask_address",
    "dask_submitter",
    "list_cohorts",
    "render_html",
    "run_cohort",
    "run_reports",
    "strip_machine_paths",
]
