"""Output folders kneeload writes into: the one guard checked before anything is written, the
marker that says a folder is kneeload's, and the names of kneeload's temporary files.

``kneeload report`` calls :func:`check_output_folder` and then :func:`mark_output_folder`
before it takes its lock; ``kneeload build`` can call the same guard with its own marker
(``check_output_folder(out, raw=raw, marker=PROCESSED_MARKER)``). Cleanup of files left by a
killed run only ever removes names :func:`is_temporary_name` accepts, which only kneeload
writes (:func:`temporary_name`), and only inside a folder carrying kneeload's marker.

Imports nothing of :mod:`analysis` but :mod:`analysis.errors` (a bottom-layer module).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from analysis.errors import KneeloadError

#: Marker file of a reports folder, written by the first ``kneeload report`` into it.
REPORTS_MARKER = ".kneeload-reports"
#: What the reports marker holds (read back only to recognise the folder).
REPORTS_MARKER_TEXT = "kneeload reports folder: written by 'kneeload report'; do not remove\n"
#: Prefix of every temporary file kneeload writes (``.kneeload-tmp.<pid>.<12 hex>.<name>``).
TEMP_PREFIX = ".kneeload-tmp."
#: Hex digits of the random part of a temporary name.
TEMP_HEX_CHARS = 12
_TEMP_PATTERN = re.compile(rf"^{re.escape(TEMP_PREFIX)}\d+\.[0-9a-f]{{{TEMP_HEX_CHARS}}}\.\S+$")
#: Temporary names of kneeload 0.1 before this module (``.report.<pid>.<hex>.ipynb`` in a cohort
#: folder, ``.manifest.json.<pid>.<thread>.tmp`` beside the manifest); still cleaned up, and
#: only when they match exactly (a user's ``.report.docx`` or ``.budget.tmp`` never does).
_LEGACY_PATTERNS = (
    re.compile(r"^\.report\.\d+\.[0-9a-f]{12}\.(ipynb|html|summary\.json)$"),
    re.compile(r"^\.(manifest\.json|index\.html)\.\d+\.\d+\.tmp$"),
)


class OutputFolderError(KneeloadError):
    """An output folder kneeload must not write into (raw or processed data, a file, a
    folder that is not kneeload's), or one it cannot write (read-only, full)."""


def check_output_folder(
    out: str | Path,
    *,
    marker: str,
    raw: str | Path | None = None,
    processed: str | Path | None = None,
    legacy: Callable[[Path], bool] | None = None,
    what: str = "output folder",
) -> Path:
    """Refuse an output folder that would overwrite data or a folder kneeload did not make.

    The output folder may not be, contain or be inside the raw or the processed folder; may
    not be an existing file; and, when it exists and is not empty, must carry ``marker`` (or
    pass ``legacy``: a folder an older kneeload wrote before markers existed).

    Parameters
    ----------
    out
        The folder about to be written.
    marker
        File name whose presence says the folder is kneeload's (``REPORTS_MARKER`` for
        reports, ``panel_meta.json`` for a processed folder).
    raw, processed
        Folders that must stay untouched (None: not known, not checked).
    legacy
        ``legacy(folder) -> bool``: True for an unmarked folder an older kneeload wrote.
    what
        How the error names ``out`` ("--out", "reports folder").

    Returns
    -------
    Path
        ``out`` resolved (symbolic links followed).

    Raises
    ------
    OutputFolderError
        With the folder and the reason, one line.
    """
    target = Path(out).resolve()
    for name, protected in (("raw data", raw), ("processed data", processed)):
        if protected is None:
            continue
        folder = Path(protected).resolve()
        if target == folder:
            raise OutputFolderError(f"the {what} is the {name} folder; choose another folder",
                                    file=target)
        if folder in target.parents:
            raise OutputFolderError(f"the {what} must not be inside the {name} folder "
                                    f"{folder}", file=target)
        if target in folder.parents:
            raise OutputFolderError(f"the {what} must not contain the {name} folder "
                                    f"{folder}", file=target)
    if target.exists() and not target.is_dir():
        raise OutputFolderError(f"the {what} is an existing file, not a folder", file=target)
    if target.is_dir() and not (target / marker).is_file() and _has_entries(target) and not (
            legacy is not None and legacy(target)):
        raise OutputFolderError(f"the {what} exists, is not empty and is not kneeload's (no "
                                f"{marker}); choose a new or empty folder", file=target)
    return target


def mark_output_folder(out: Path, *, marker: str = REPORTS_MARKER,
                       text: str = REPORTS_MARKER_TEXT) -> None:
    """Create ``out`` (and parents) and write its marker if it has none.

    Raises
    ------
    OutputFolderError
        The folder cannot be created or written (read-only, full disk, permissions).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not (out / marker).is_file():
            atomic_write_text(out / marker, text)
        else:  # a folder made read-only since: fail here, not half-way through the run
            probe = out / temporary_name("write-check")
            probe.write_bytes(b"")
            probe.unlink()
    except OSError as error:
        raise OutputFolderError(f"cannot write the output folder: {error.strerror or error}",
                                file=out) from None


def _has_entries(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(True for _ in entries)


def temporary_name(name: str) -> str:
    """``.kneeload-tmp.<pid>.<12 hex>.<name>``: the name of a file kneeload is writing."""
    return f"{TEMP_PREFIX}{os.getpid()}.{uuid.uuid4().hex[:TEMP_HEX_CHARS]}.{name}"


def is_temporary_name(name: str) -> bool:
    """True only for names :func:`temporary_name` (or kneeload 0.1) made."""
    return bool(_TEMP_PATTERN.match(name)) or any(p.match(name) for p in _LEGACY_PATTERNS)


def remove_temporaries(folders: Iterable[Path]) -> list[Path]:
    """Delete kneeload's temporary files (:func:`is_temporary_name`) directly in ``folders``.

    The caller holds the folder's lock, so no live run is writing them. Nothing else is
    touched: not other hidden files, not sub-folders. Returns the files removed.
    """
    removed = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if is_temporary_name(path.name) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """True when process ``pid`` exists (this process counts as alive; so does another
    user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def pid_temporary_folder(prefix: str) -> Path:
    """A new private folder ``<prefix><pid>-<random>`` in the system's temporary folder.

    First removes this user's folders of that prefix whose process has ended: a process
    killed with SIGKILL cannot remove its own (:func:`remove_orphaned_folders`).
    """
    temp = Path(tempfile.gettempdir())
    remove_orphaned_folders(temp, prefix=prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=temp))


def remove_orphaned_folders(folder: Path, *, prefix: str) -> list[Path]:
    """Delete the folders ``<prefix><pid>-*`` directly in ``folder`` that this user owns and
    whose process ``pid`` has ended; returns them. Nothing else is touched: not links, not
    files, not another user's folders, not a live process's."""
    removed = []
    uid = os.getuid() if hasattr(os, "getuid") else None
    name = re.compile(rf"{re.escape(prefix)}(?P<pid>\d+)-.+")
    for path in folder.iterdir():
        match = name.fullmatch(path.name)
        if match is None:
            continue
        try:
            info = path.lstat()
        except OSError:
            continue
        if (not stat.S_ISDIR(info.st_mode)
                or (uid is not None and info.st_uid != uid)
                or process_alive(int(match["pid"]))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling and rename it over ``path`` (never half-written;
    on any error, the temporary file is removed and ``path`` is as it was)."""
    tmp = path.with_name(temporary_name(path.name))
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = [
    "REPORTS_MARKER",
    "REPORTS_MARKER_TEXT",
    "TEMP_PREFIX",
    "OutputFolderError",
    "atomic_write_text",
    "check_output_folder",
    "is_temporary_name",
    "mark_output_folder",
    "remove_temporaries",
    "temporary_name",
]
