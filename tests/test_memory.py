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
    (tmp_path / "huge.csv").write_bytes(b"")
    os.truncate(tmp_path / "huge.csv", memory.WARM_MAX_BYTES)  # sparse: no disk used
    assert memory.warm_bytes(tmp_path) == memory.WARM_MAX_BYTES


_PROCESS = textwrap.dedent("""
    import json, os, resource, sys, time
    from analysis import memory

    wait = memory.prepare_build_process(sys.argv[1])
    blas = os.environ.get("OPENBLAS_NUM_THREADS")
    import numpy as np
    wait()
    np._core.multiarray._set_madvise_hugepage(False)
    # a joined thread's task can outlive the join by a moment (the pthread is still exiting)
    for _ in range(100):
        threads = len(os.listdir("/proc/self/task"))
        if threads == 1:
            break
        time.sleep(0.01)
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
    (["build", "data/raw/demo", "--help"], None),  # help only: nothing to warm for
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
    (raw / "runs.csv").write_bytes(b"")  # sparse: the warm-up's full size, no disk used
    os.truncate(raw / "runs.csv", memory.WARM_MAX_BYTES // memory.WARM_BYTES_PER_INPUT_BYTE)
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", _CONSOLE, str(raw), str(tmp_path / "out")],
                          capture_output=True, text=True, env=environ, timeout=120,
                          check=True)
    report = json.loads(done.stdout.splitlines()[-1])
    first, again = report["calls"]
    assert first == {"raw": str(raw), "typer": False, "numpy": False, "wait": first["wait"],
                     "warming": True}
    assert again["typer"] and again["wait"] == first["wait"]
    assert report["code"] == 2  # runs.csv is NUL bytes: the build's one-line error
    assert not (tmp_path / "out").exists()


def test_only_the_files_the_readers_parse_size_the_warm_up(tmp_path):
    """Found by review: a 40 MB archive in a hidden folder of a small dataset warmed 640 MiB
    (peak 176 -> 822 MB). Tables and activity files count (any case; activity files gzipped
    too); hidden files and folders, archives, documents and gzipped tables do not; a path
    with a NUL gives 0."""
    (tmp_path / "runs.CSV").write_bytes(b"x" * 100)
    (tmp_path / "activities").mkdir()
    (tmp_path / "activities" / "1.fit.gz").write_bytes(b"y" * 10)
    (tmp_path / "activities" / "2.GPX").write_bytes(b"y" * 1)
    (tmp_path / "export.zip").write_bytes(b"z" * 1000)
    (tmp_path / "runs.csv.gz").write_bytes(b"z" * 1000)  # tables are read unzipped only
    (tmp_path / "protocol.pdf").write_bytes(b"z" * 1000)
    (tmp_path / ".hidden.csv").write_bytes(b"z" * 1000)
    (tmp_path / ".archive").mkdir()
    (tmp_path / ".archive" / "old.csv").write_bytes(b"z" * 1000)
    assert memory.warm_bytes(tmp_path) == 111 * memory.WARM_BYTES_PER_INPUT_BYTE
    assert memory.warm_bytes(str(tmp_path) + "\x00x") == 0


@pytest.mark.skipif(memory._glibc() is None, reason="the heap warm-up needs glibc's malloc")
def test_no_warm_up_under_an_address_space_limit(tmp_path):
    """Found by review: under ``ulimit -v`` the heap the warm-up keeps left no room for the
    build's thread stacks; a limited process warms nothing (and keeps numpy's BLAS count)."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "runs.csv").write_bytes(b"")
    os.truncate(raw / "runs.csv", memory.WARM_MAX_BYTES // memory.WARM_BYTES_PER_INPUT_BYTE)
    script = textwrap.dedent("""
        import resource, sys, threading
        limit = int(sys.argv[2])
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from analysis import memory
        memory.prepare_build_process(sys.argv[1])
        print(sum(t.name == "kneeload-warm-heap" for t in threading.enumerate()))
    """)
    for limit, threads in ((0, "1"), (8 << 30, "0")):  # 0: no limit, the warm-up runs
        done = subprocess.run([sys.executable, "-c", script, str(raw), str(limit)],
                              capture_output=True, text=True, timeout=120, check=True)
        assert done.stdout.split() == [threads]
    assert memory._address_space_limited() is False  # this test process has no limit


class _RecordingLibc:
    """A stand-in C library recording mallopt calls."""

    def __init__(self):
        self.calls = []

    def mallopt(self, option, value):
        self.calls.append((option, value))
        return 1

    def malloc_trim(self, pad):
        return 0


@pytest.mark.parametrize(("env", "mmap", "trim"), [
    ({}, 128 * 1024, 128 * 1024),
    ({"MALLOC_MMAP_THRESHOLD_": "65536"}, 65536, 128 * 1024),
    ({"MALLOC_TRIM_THRESHOLD_": "1048576",
      "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=262144:glibc.malloc.arena_max=2"},
     262144, 1048576),
    ({"MALLOC_MMAP_THRESHOLD_": "65536",
      "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=262144"}, 262144, 128 * 1024),
    ({"MALLOC_MMAP_THRESHOLD_": "lots"}, 128 * 1024, 128 * 1024),
])
def test_a_build_gives_back_the_processs_own_malloc_thresholds(monkeypatch, env, mmap, trim):
    """Found by review: the thresholds were put back to 128 KiB whatever the process had set
    (glibc's variables, GLIBC_TUNABLES: the tunable wins, as in glibc)."""
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    libc = _RecordingLibc()
    with memory._malloc_for_large_tables(libc):
        assert (memory._M_MMAP_THRESHOLD, memory.HEAP_KEEP_BYTES) in libc.calls
        libc.calls.clear()
    assert libc.calls == [(memory._M_MMAP_THRESHOLD, mmap), (memory._M_TRIM_THRESHOLD, trim)]
