"""Faults injected into real ``kneeload report`` processes (issue 13): a disk that fills
mid-run, a read-only output folder, kill -9 at random moments, a Dask worker that dies.

Every run is the ``kneeload`` command in a subprocess, with real papermill and kernels. The
tmpfs and read-only cases mount a small tmpfs (root on Linux) and skip with the reason
otherwise. Bounded: about a minute in all; the longer soak is ``bench/soak_report.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from faults import tmpfs
from filelock import FileLock
from report_study import Study, make_study

from analysis import reports
from analysis.outputs import is_temporary_name

CLI_TIMEOUT_S = 240
#: Seeded kill moments (seconds after start) of the kill -9 test: early (before any
#: notebook), during papermill, around the moves into place and the manifest rewrite.
KILL_SEED = 13
KILL_MOMENTS = 3
#: --dask-timeout of the worker-death test (seconds without a worker before failing).
DASK_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return make_study(tmp_path_factory.mktemp("faults"))


def _command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "analysis.cli", *map(str, args)]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "KNEELOAD_ID_SALT"}


def kneeload(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(*args), env=_env(), capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, check=False)


def _leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if is_temporary_name(p.name)]


def assert_intact(out: Path) -> dict:
    """The manifest parses, each recorded report's files are in place with its hashes, and
    no temporary file remains."""
    manifest = json.loads((out / reports.MANIFEST_NAME).read_text())
    for cohort, entry in manifest["cohorts"].items():
        folder = out / reports.safe_name(cohort)
        for name, digest in (entry.get("outputs_sha256") or {}).items():
            assert reports.manifest.sha256_file(folder / name) == digest, (cohort, name)
    assert _leftovers(out) == []
    return manifest


# --- a disk that fills -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_fails_one_cohort_and_the_others_still_run(study: Study,
                                                               tmp_path: Path) -> None:
    """The disk is full when the run starts (even the manifest cannot be written); space comes
    back after the first cohort failed. That cohort is marked failed, the next one runs,
    the manifest ends intact and no truncated temporary file remains."""
    with tmpfs(tmp_path / "disk", size="3m") as disk:
        out = disk / "reports"
        ballast = disk / "ballast"
        proc = subprocess.Popen(_command("report", study.processed, "--out", out),
                                env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        lines: list[str] = []

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if f"[2/3] {study.normal}:" in line:
                    ballast.unlink(missing_ok=True)  # space comes back after the failure

        # fill the disk once the marker and lock exist (a full disk before that is exit 2)
        assert _wait(lambda: (out / reports.LOCK_NAME).exists(), timeout_s=60)
        with contextlib.suppress(OSError), ballast.open("wb") as fill:
            while True:
                fill.write(b"\0" * 4096)
        reader = threading.Thread(target=read)
        reader.start()
        try:
            proc.wait(timeout=CLI_TIMEOUT_S)
        finally:
            proc.kill()
            reader.join(timeout=10)
        stderr = "".join(lines)
        assert proc.returncode == 1, stderr
        assert "Traceback" not in stderr
        manifest = assert_intact(out)["cohorts"]
        assert {c: e["status"] for c, e in manifest.items()} == {
            study.normal: "failed", study.painless: "ok"}  # suppressed: not recorded
        assert "space" in manifest[study.normal]["error"].lower() or \
            "errno 28" in manifest[study.normal]["error"].lower(), manifest[study.normal]
        assert (out / "index.html").is_file()
        assert not (out / reports.safe_name(study.normal) / "report.html").exists()


@pytest.mark.slow
def test_a_read_only_output_folder_is_a_one_line_error(study: Study, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", size="1m", read_only=True) as folder:
        done = kneeload("report", study.processed, "--out", folder, "--cohort", study.small)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write the output folder" in lines[0], done.stderr


# --- kill -9 at random moments ---------------------------------------------------------------


def _wait(predicate, *, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_kill_9_at_random_moments_keeps_the_previous_reports_and_recovers(
        study: Study, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    first = kneeload("report", study.processed, "--out", out, "--cohort", study.normal)
    assert first.returncode == 0, first.stderr
    html = out / reports.safe_name(study.normal) / "report.html"
    previous = reports.manifest.sha256_file(html)
    moments = sorted(random.Random(KILL_SEED).uniform(0.2, 6.0) for _ in range(KILL_MOMENTS))
    for moment in moments:
        proc = subprocess.Popen(_command("report", study.processed, "--out", out, "--cohort",
                                         study.normal, "--param", "seed=1"),
                                env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(moment)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        manifest = json.loads((out / reports.MANIFEST_NAME).read_text())["cohorts"]
        entry = manifest[study.normal]
        digest = reports.manifest.sha256_file(html)
        # the previous report, or a complete new one the manifest records
        assert digest == previous or (entry["parameters"]["seed"] == 1 and
                                      entry["outputs_sha256"]["report.html"] == digest), moment
        with FileLock(str(out / reports.LOCK_NAME), timeout=0):
            pass  # the lock died with the process
    time.sleep(1)  # papermill children die with the command (PDEATHSIG)
    recover = kneeload("report", study.processed, "--out", out, "--cohort", study.small)
    assert recover.returncode == 0, recover.stderr
    assert_intact(out)  # the next run removed the killed runs' temporary files


# --- a Dask worker that dies -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dask", path=str(Path(sys.executable).parent)) is None,
                    reason="the dask command is not installed")
def test_a_killed_dask_worker_fails_its_cohort_within_the_timeout(study: Study,
                                                                  tmp_path: Path) -> None:
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = tmp_path / "scheduler.json"
    out = tmp_path / "reports"
    # their scratch folders in tmp_path, not the system's /tmp
    scratch = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(tmp_path)}
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                                 env=scratch, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    worker = None
    report = None
    try:
        assert _wait(scheduler_file.is_file, timeout_s=60)
        time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        worker = subprocess.Popen([dask, "worker", "--no-nanny", "--nthreads", "1",
                                   "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                                  env=scratch, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        report = subprocess.Popen(_command("report", study.processed, "--out", out,
                                           "--cohort", study.normal, "--dask-scheduler",
                                           address, "--dask-timeout", str(DASK_TIMEOUT_S)),
                                  env=_env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        folder = out / reports.safe_name(study.normal)
        # the task is running on the worker: papermill has started writing its notebook
        assert _wait(lambda: folder.is_dir() and any(is_temporary_name(p.name)
                                                     for p in folder.iterdir()),
                     timeout_s=120)
        killed = time.monotonic()
        worker.send_signal(signal.SIGKILL)
        _, stderr = report.communicate(timeout=CLI_TIMEOUT_S)
        took = time.monotonic() - killed
    finally:
        for proc in (report, worker, scheduler):
            if proc is not None:
                proc.kill()
                proc.wait(timeout=30)
    assert report.returncode == 1, stderr
    assert took < DASK_TIMEOUT_S + 15, took  # the timeout plus polling and shutdown
    entry = json.loads((out / reports.MANIFEST_NAME).read_text())["cohorts"][study.normal]
    assert entry["status"] == "failed" and "no worker" in entry["error"], entry
    with FileLock(str(out / reports.LOCK_NAME), timeout=0):
        pass  # released: the next scheduled run is not refused
    time.sleep(1)
    again = kneeload("report", study.processed, "--out", out, "--cohort", study.small)
    assert again.returncode == 0, again.stderr
    assert _leftovers(out) == []
