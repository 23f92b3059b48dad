"""Faults during ``kneeload build`` (issue 13): kill -9 at random moments, a kill between the
two renames of the folder swap, a full disk, a read-only output folder. The previous
processed folder always survives, the next build recovers it and removes kneeload's own
leftovers (``.<out>.building-<pid>-*`` with :data:`~analysis.pipeline.STAGING_MARKER`,
``.<out>.old-<pid>`` with ``panel_meta.json``) and nothing else.

Every build is the real ``kneeload`` command in a subprocess. The tmpfs cases need root on
Linux and are skipped with the reason otherwise. A longer soak: ``bench/soak_build.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults import tmpfs

from analysis.outputs import process_alive
from analysis.pipeline import PROCESSED_MARKER, STAGING_MARKER, recover_leftovers

FIXTURE = Path(__file__).parent / "fixtures" / "exposures"
TABLE_FILES = ("runners.csv", "runs.csv", "pain.csv", "shoes.csv")
CLI_TIMEOUT_S = 120
#: Kill moments (s after start) are drawn from this range: the fixture build takes about
#: 1.2-2 s here, most of it imports, so the kills land in imports, reading, writing and the
#: swap.
KILL_WINDOW_S = (0.2, 2.0)
KILLS = 5
SEED = 13


def make_raw(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in TABLE_FILES:
        shutil.copy(FIXTURE / name, folder / name)
    return folder


def command(raw: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "analysis.cli", "build", str(raw), "--out", str(out)]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "KNEELOAD_ID_SALT"}


def kneeload_build(raw: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(raw, out), env=env(), capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, check=False)


def tables_hash(out: Path) -> dict[str, str]:
    """sha256 of the processed tables (not panel_meta.json, which holds the build time)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.iterdir()) if p.is_file() and p.name != PROCESSED_MARKER}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir()
                  if p.name.startswith((f".{out.name}.building-", f".{out.name}.old-")))


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_kill_9_at_random_moments_never_loses_the_processed_folder(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert kneeload_build(raw, out).returncode == 0
    expected = tables_hash(out)
    rng = random.Random(SEED)
    for _ in range(KILLS):
        proc = subprocess.Popen(command(raw, out), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(*KILL_WINDOW_S))
        proc.kill()
        proc.wait()
        # a processed folder is in place, or (killed between the renames) kept as .old-PID
        # for the next build to put back
        olds = [tmp_path / n for n in leftovers(out) if ".old-" in n]
        assert tables_hash(out if out.is_dir() else olds[-1]) == expected
    done = kneeload_build(raw, out)
    assert done.returncode == 0, done.stderr
    assert tables_hash(out) == expected
    assert leftovers(out) == []


def test_recover_leftovers_puts_the_previous_folder_back(tmp_path: Path) -> None:
    previous = tmp_path / f".out.old-{dead_pid()}"
    previous.mkdir()
    (previous / PROCESSED_MARKER).write_text("{}")
    assert recover_leftovers(tmp_path / "out") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / PROCESSED_MARKER).read_text() == "{}"


def test_a_kill_between_the_two_renames_is_recovered_by_the_next_build(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert kneeload_build(raw, out).returncode == 0
    expected = tables_hash(out)
    pid = dead_pid()
    # the state a kill leaves after `out -> .out.old-PID` and before `staging -> out`
    out.rename(tmp_path / f".out.old-{pid}")
    staging = tmp_path / f".out.building-{pid}-abc123"
    staging.mkdir()
    (staging / STAGING_MARKER).write_text("x")
    (staging / "runs.parquet").write_bytes(b"half")
    # the next build fails (bad input) and still puts the previous folder back
    (raw / "pain.csv").write_text("runner_id,date,pain,pain\n")
    failed = kneeload_build(raw, out)
    assert failed.returncode == 2
    assert tables_hash(out) == expected
    assert leftovers(out) == []


def test_only_kneeloads_own_leftovers_of_dead_builds_are_removed(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert kneeload_build(raw, out).returncode == 0
    pid = dead_pid()
    keep = {
        f".out.old-{pid}": None,  # no panel_meta.json: not a processed folder of kneeload's
        f".out.building-{pid}-mine": None,  # no staging marker
        f".out.building-{os.getpid()}-live": STAGING_MARKER,  # its process is alive
        f".other.building-{pid}-x": STAGING_MARKER,  # another output folder's
        ".out.backup": STAGING_MARKER,
    }
    gone = {f".out.building-{pid}-dead": STAGING_MARKER, f".out.old-{pid}1": PROCESSED_MARKER}
    for name, marker in {**keep, **gone}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.txt").write_text("user data")
        if marker:
            (tmp_path / name / marker).write_text("{}")
    if process_alive(int(f"{pid}1")):
        pytest.skip("the made-up dead pid is alive")
    assert kneeload_build(raw, out).returncode == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert set(keep) <= names
    assert not set(gone) & names


def test_a_full_disk_fails_in_one_line_and_keeps_the_previous_folder(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    with tmpfs(tmp_path / "disk", size="1m") as disk:
        out = disk / "out"
        assert kneeload_build(raw, out).returncode == 0
        expected = tables_hash(out)
        filler = disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as handle:
            while True:  # fill the disk but for a few blocks
                handle.write(b"\0" * 4096)
        done = kneeload_build(raw, out)
        assert done.returncode == 2, done.stderr
        line = done.stderr.strip()
        assert "\n" not in line and "No space left on device" in line, line
        assert tables_hash(out) == expected
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "out"]
        filler.unlink()
        assert kneeload_build(raw, out).returncode == 0
        assert tables_hash(out) == expected


def test_a_read_only_output_folder_fails_in_one_line(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    with tmpfs(tmp_path / "ro", size="1m", read_only=True) as folder:
        done = kneeload_build(raw, folder / "out")
        assert done.returncode == 2, done.stderr
        line = done.stderr.strip()
        assert "\n" not in line and "Read-only file system" in line, line
        assert list(folder.iterdir()) == []


def test_the_processed_folder_records_no_staging_marker(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    out = tmp_path / "out"
    assert kneeload_build(raw, out).returncode == 0
    assert not (out / STAGING_MARKER).exists()
    assert json.loads((out / PROCESSED_MARKER).read_text())["dataset"] == "raw"
