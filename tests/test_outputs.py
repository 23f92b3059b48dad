"""analysis.outputs: the per-process temporary folders a killed process leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from analysis.outputs import pid_temporary_folder, process_alive, remove_orphaned_folders
from analysis.reports.execute import KERNEL_RUNTIME_PREFIX

PREFIX = KERNEL_RUNTIME_PREFIX


def _ended_pid() -> int:
    """The pid of a real process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not process_alive(proc.pid)
    return proc.pid


def test_only_this_users_folders_of_ended_processes_are_removed(tmp_path: Path) -> None:
    dead = _ended_pid()
    orphan = tmp_path / f"{PREFIX}{dead}-abc123"
    orphan.mkdir()
    (orphan / "k.json").write_text("{}")
    (orphan / "sub").mkdir()
    live = tmp_path / f"{PREFIX}{os.getpid()}-def456"  # this process: alive
    live.mkdir()
    parent = tmp_path / f"{PREFIX}{os.getppid()}-ghi789"
    parent.mkdir()
    a_file = tmp_path / f"{PREFIX}{dead}-file"
    a_file.write_text("not a folder")
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("kept")
    link = tmp_path / f"{PREFIX}{dead}-link"
    link.symlink_to(target, target_is_directory=True)
    old_style = tmp_path / f"{PREFIX}6y9qqdbg"  # before the pid was in the name
    old_style.mkdir()
    other = tmp_path / f"other-{dead}-abc"
    other.mkdir()
    not_a_pid = tmp_path / f"{PREFIX}12x-abc"
    not_a_pid.mkdir()

    assert remove_orphaned_folders(tmp_path, prefix=PREFIX) == [orphan]
    assert not orphan.exists()
    for kept in (live, parent, a_file, link, old_style, other, not_a_pid, target):
        assert kept.exists(), kept
    assert (target / "keep.txt").read_text() == "kept"
    assert remove_orphaned_folders(tmp_path, prefix=PREFIX) == []


def test_a_folder_of_a_process_killed_with_sigkill_is_removed_by_the_next_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from analysis.outputs import pid_temporary_folder\n"
         f"print(pid_temporary_folder({PREFIX!r}), flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        assert child.stdout is not None
        left = Path(child.stdout.readline().strip())
        assert left.parent == tmp_path and left.name.startswith(f"{PREFIX}{child.pid}-")
        assert left.is_dir()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert left.is_dir()  # SIGKILL: the child could not remove it

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = pid_temporary_folder(PREFIX)
    assert not left.exists()
    assert mine.is_dir() and mine.parent == tmp_path
    assert mine.name.startswith(f"{PREFIX}{os.getpid()}-")
    assert oct(mine.stat().st_mode & 0o777) == oct(0o700)  # private (mkdtemp)
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name]
