"""The build process's memory and thread settings (``analysis.memory``): the warm-up of the
heap a ``kneeload build`` process does while it imports, the BLAS threads, and the settings
a build enters and restores (the builds that check them are in ``test_pipeline``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from analysis import memory


def test_warm_bytes_is_a_multiple_of_the_input_files_capped(tmp_path):
    """WARM_BYTES_PER_INPUT_BYTE x the bytes of every file below the folder (subfolders
    included, a symbolic link not followed), at most WARM_MAX_BYTES; 0 for a folder that
    does not exist."""
    (tmp_path / "runs.csv").write_bytes(b"x" * 1000)
    (tmp_path / "activities").mkdir()
    (tmp_path / "activities" / "a.gpx").write_bytes(b"y" * 500)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "big.csv").write_bytes(b"z" * 100_000)
    (tmp_path / "linked").symlink_to(outside, target_is_directory=True)
    (tmp_path / "linked.csv").symlink_to(outside / "big.csv")
    assert memory.warm_bytes(tmp_path) == 1500 * memory.WARM_BYTES_PER_INPUT_BYTE
    assert memory.warm_bytes(tmp_path / "missing") == 0
    (tmp_path / "huge.bin").write_bytes(b"")
    os.truncate(tmp_path / "huge.bin", memory.WARM_MAX_BYTES)  # sparse: no disk used
    assert memory.warm_bytes(tmp_path) == memory.WARM_MAX_BYTES


_PROCESS = textwrap.dedent("""
    import json, os, resource, sys
    from analysis import memory

    wait = memory.prepare_build_process(sys.argv[1])
    blas = os.environ.get("OPENBLAS_NUM_THREADS")
    import numpy as np
    wait()
    np._core.multiarray._set_madvise_hugepage(False)
    threads = len(os.listdir("/proc/self/task"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(int(sys.argv[2]) // 8)  # written whole: every page touched
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    os.environ.pop("OPENBLAS_NUM_THREADS", None)
    memory.prepare_build_process(sys.argv[1])  # numpy imported: nothing to do
    print(json.dumps({"blas": blas, "threads": threads, "faults": faults,
                      "threads_again": len(os.listdir("/proc/self/task")),
                      "blas_again": os.environ.get("OPENBLAS_NUM_THREADS")}))
""")


def _fresh_process(raw: Path, size: int, **env: str) -> dict:
    """Run :data:`_PROCESS` in a new interpreter (numpy not yet imported) and read its
    report."""
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | env
    done = subprocess.run([sys.executable, "-c", _PROCESS, str(raw), str(size)],
                          capture_output=True, text=True, env=environ, timeout=120,
                          check=True)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(memory._glibc() is None or not Path("/proc/self/task").is_dir(),
                    reason="the heap warm-up needs glibc's malloc (and /proc to count threads)")
def test_a_build_process_finds_its_heap_faulted_in_and_no_blas_worker(tmp_path):
    """In a fresh process, prepare_build_process faults in the heap for the raw folder while
    numpy imports: a numpy array of 100 MiB allocated afterwards takes (almost) no page
    faults, where a process without warm-up takes one per 4 KiB page. numpy's OpenBLAS starts
    no worker thread (BUILD_BLAS_THREADS), unless the environment set its own count."""
    size = 100 << 20
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "runs.csv").write_bytes(b"")
    os.truncate(raw / "runs.csv", memory.WARM_MAX_BYTES // memory.WARM_BYTES_PER_INPUT_BYTE)
    warmed = _fresh_process(raw, size)
    assert warmed["blas"] == str(memory.BUILD_BLAS_THREADS)
    assert warmed["threads"] == 1  # the warm-up thread has ended; no OpenBLAS worker
    # a second call, numpy imported: no thread started, the environment left alone
    assert warmed["threads_again"] == 1 and warmed["blas_again"] is None
    pages = size // 4096
    assert warmed["faults"] < 0.1 * pages, warmed
    empty = tmp_path / "empty"
    empty.mkdir()
    cold = _fresh_process(empty, size)  # below WARM_MIN_BYTES: no warm-up
    assert cold["faults"] > 0.5 * pages, cold
    own = _fresh_process(empty, size, OPENBLAS_NUM_THREADS="2")
    assert own["blas"] == "2" and own["threads"] == 2  # the user's count is kept


def test_a_failed_restore_keeps_the_builds_own_error(monkeypatch):
    """When restoring the settings fails after a build raised, the build's error is the
    context of the restore's (found by review: it vanished from the traceback)."""
    from contextlib import contextmanager

    from analysis import memory

    @contextmanager
    def failing_restore(enabled):
        try:
            yield
        finally:
            raise RuntimeError("restore failed")

    monkeypatch.setattr(memory, "_numpy_hugepages", failing_restore)
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    settings = memory._BuildSettings()
    with pytest.raises(RuntimeError, match="restore failed") as raised:
        with settings():
            raise ValueError("the build's error")
    assert isinstance(raised.value.__context__, ValueError)
    assert settings._running == 0 and settings._restore is None


@pytest.mark.parametrize(("argv", "folder"), [
    (["build", "data/raw/demo", "--out", "x"], "data/raw/demo"),
    (["build", "my raw", "--format", "strava"], "my raw"),
    (["build", "--out", "x", "data/raw/demo"], None),  # an option first: the command warms
    (["build", "--help"], None),
    (["build"], None),
    (["report", "data/processed/demo"], None),
    ([], None),
])
def test_the_console_script_finds_the_raw_folder_only_where_click_would(argv, folder):
    from analysis.__main__ import build_folder

    assert build_folder(argv) == folder


_CONSOLE = textwrap.dedent("""
    import json, sys, threading
    from analysis import memory

    calls, real = [], memory.prepare_build_process

    def record(raw):
        wait = real(raw)
        calls.append({"raw": str(raw), "typer": "typer" in sys.modules,
                      "numpy": "numpy" in sys.modules, "wait": id(wait),
                      "warming": any(t.name == "kneeload-warm-heap"
                                     for t in threading.enumerate())})
        return wait

    memory.prepare_build_process = record
    sys.argv = ["kneeload", "build", sys.argv[1], "--out", sys.argv[2]]
    from analysis.__main__ import main
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code
    print(json.dumps({"calls": calls, "code": code}))
""")


@pytest.mark.skipif(memory._glibc() is None, reason="the heap warm-up needs glibc's malloc")
def test_the_console_script_starts_the_warm_up_before_the_cli_loads(tmp_path):
    """``kneeload build RAW`` starts the warm-up before typer (or numpy) is imported; the
    build command's own call returns that same wait and starts no second thread."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "padding.bin").write_bytes(b"")  # sparse: the warm-up's full size, no disk used
    os.truncate(raw / "padding.bin", memory.WARM_MAX_BYTES // memory.WARM_BYTES_PER_INPUT_BYTE)
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", _CONSOLE, str(raw), str(tmp_path / "out")],
                          capture_output=True, text=True, env=environ, timeout=120,
                          check=True)
    report = json.loads(done.stdout.splitlines()[-1])
    first, again = report["calls"]
    assert first == {"raw": str(raw), "typer": False, "numpy": False, "wait": first["wait"],
                     "warming": True}
    assert again["typer"] and again["wait"] == first["wait"]
    assert report["code"] == 2  # the folder holds no dataset: the build's one-line error
    assert not (tmp_path / "out").exists()
