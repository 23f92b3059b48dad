"""Watch activity files (FIT, GPX, TCX, plain or .gz): one file, or a runner's export folder.

* :func:`read_activity_file` reads one file into a :class:`Session` (rules for distance,
  moving time, elevation and heart rate: :mod:`analysis.ingest.activity_formats`).
* :func:`read_activity_folder` reads a Strava bulk-export folder (``activities.csv`` plus
  ``activities/*.fit.gz|*.gpx.gz|*.tcx.gz``, linked by the CSV's ``Filename`` column) or a
  folder of Garmin FIT files into an :class:`ActivityRead`: a sessions table, a heart-rate
  samples table and a quarantine of the files that could not be read, with the reason.
  With ``cache_dir`` each file's parse is stored under the sha256 of its bytes (plus
  :data:`PARSER_VERSION`) and reused, so a re-read parses only files whose content changed.
  Many files are parsed on :data:`MAX_WORKERS` processes.

Layering: ``activity_formats`` (bytes -> sessions) <- ``activity`` (files, folders, cache).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from analysis.errors import InputFileError
from analysis.filenames import is_activity_file
from analysis.ingest.activity_formats import (
    ActivityFileError,
    Session,
    parse_activity_bytes,
)
from analysis.privacy import sha256_file

__all__ = [
    "HR_COLUMNS",
    "QUARANTINE_COLUMNS",
    "SESSION_COLUMNS",
    "ActivityFileError",
    "ActivityRead",
    "Session",
    "read_activity_file",
    "read_activity_folder",
    "read_activity_sessions",
]

#: Bump when a parse rule changes: cached parses of an older version are not reused.
PARSER_VERSION = 1

#: Processes for parsing many files (the study machines have 2 cores).
MAX_WORKERS = 2
#: Fewer files than this are parsed in this process (a pool costs ~0.5 s to start).
PARALLEL_MIN_FILES = 24
#: Files handed to a worker at a time (amortises inter-process traffic).
CHUNK_FILES = 8

#: Name of a Strava bulk export's activity table and its link column.
STRAVA_CSV = "activities.csv"
STRAVA_FILENAME_COLUMN = "Filename"
STRAVA_TYPE_COLUMN = "Activity Type"

#: Strava ``Activity Type`` values mapped to the FIT SDK's sport names (used only when the
#: file itself names no sport; any other type is kept, lower-cased).
STRAVA_SPORTS = {"run": "running", "trail run": "running", "virtual run": "running",
                 "ride": "cycling", "virtual ride": "cycling", "walk": "walking",
                 "hike": "hiking", "swim": "swimming"}

#: Columns of :attr:`ActivityRead.sessions`, in order.
SESSION_COLUMNS = ("runner_id", "session_id", "start_time", "date", "start_local", "date_basis",
                   "distance_km", "moving_s", "elapsed_s", "elevation_gain_m", "sport",
                   "n_hr_samples", "file_format", "source_file", "source_line")
#: Columns of :attr:`ActivityRead.hr_samples` (the input of the heart-rate load functions).
HR_COLUMNS = ("session_id", "elapsed_s", "hr_bpm")
#: Columns of :attr:`ActivityRead.quarantine`.
QUARANTINE_COLUMNS = ("source_file", "reason")


@dataclass(frozen=True)
class ActivityRead:
    """What :func:`read_activity_folder` read.

    Attributes
    ----------
    sessions
        One row per session (:data:`SESSION_COLUMNS`):

        ``runner_id`` (str); ``session_id`` (str, stable: the file's path relative to the
        study root, POSIX slashes, ``#k`` appended for the k-th session, k >= 2, of a
        multi-session FIT file); ``start_time`` (datetime64, tz-aware UTC); ``date``
        (datetime64 at midnight, no zone: the local calendar day of the start, see
        ``date_basis``); ``start_local`` (datetime64, no zone: the start's local wall-clock
        time on the same basis); ``date_basis`` (``"timezone"``: in the zone passed as
        ``timezone=``; ``"device_offset"``: the FIT file's own local-time offset;
        ``"utc"``: the UTC date, when neither is known); ``distance_km``, ``moving_s``,
        ``elapsed_s``, ``elevation_gain_m`` (float, NaN when absent); ``sport`` (str,
        lower-case, FIT SDK names such as ``"running"``, missing when unknown: non-run
        sports are kept, the caller filters); ``n_hr_samples`` (int); ``file_format``
        (``"fit"``, ``"gpx"``, ``"tcx"``); ``source_file`` (the path relative to the study
        root); ``source_line`` (int, 1 for a file's first session, k for its k-th).
    hr_samples
        One row per heart-rate sample (:data:`HR_COLUMNS`): ``session_id`` (categorical),
        ``elapsed_s`` (float, seconds since the session's ``start_time``), ``hr_bpm``
        (float, beats per minute, > 0).
    quarantine
        One row per file not read (:data:`QUARANTINE_COLUMNS`): ``source_file`` and
        ``reason`` (empty, truncated, corrupt, not an activity file, or named by
        ``activities.csv`` but missing).
    n_parsed, n_cached
        Files parsed in this call, and files whose parse came from the cache.
    layout
        ``"strava"`` (an ``activities.csv`` export) or ``"files"`` (a folder of files).
    """

    sessions: pd.DataFrame
    hr_samples: pd.DataFrame
    quarantine: pd.DataFrame
    n_parsed: int
    n_cached: int
    layout: str


# --- one file ------------------------------------------------------------------------------

def read_activity_sessions(path: str | Path) -> list[Session]:
    """Every session of one FIT, GPX or TCX file, plain or gzipped.

    The format is detected from the content (gzip magic ``1f 8b``; ``.FIT`` at byte 8; the
    XML root element), the suffix only tells a ``.gz`` that is not gzip and names the
    expected format in the error.

    Raises
    ------
    ActivityFileError
        The file is empty, truncated, corrupt or not an activity file (``file`` is set).
    """
    path = Path(path)
    try:
        return parse_activity_bytes(path.read_bytes(), name=path.name)
    except ActivityFileError as exc:
        raise ActivityFileError(exc.message, file=path) from None


def read_activity_file(path: str | Path) -> Session:
    """The one session of an activity file (see :func:`read_activity_sessions`).

    Raises
    ------
    ActivityFileError
        As :func:`read_activity_sessions`, or the file holds several sessions (a multisport
        FIT file: read it with :func:`read_activity_sessions`).
    """
    sessions = read_activity_sessions(path)
    if len(sessions) != 1:
        raise ActivityFileError(f"holds {len(sessions)} sessions; use "
                                "read_activity_sessions for multi-session files", file=path)
    return sessions[0]


# --- content-keyed cache -----------------------------------------------------------------------

def _cache_path(cache_dir: Path, digest: str) -> Path:
    return cache_dir / digest[:2] / f"{digest}-p{PARSER_VERSION}.npz"


def _encode(sessions: list[Session] | None, reason: str | None) -> dict[str, np.ndarray]:
    if sessions is None:
        return {"reason": np.array(reason or "")}
    return {
        "start_ns": np.array([s.start_time.value for s in sessions], dtype=np.int64),
        "num": np.array([[s.distance_km, s.moving_s, s.elapsed_s, s.elevation_gain_m,
                          np.nan if s.utc_offset_s is None else s.utc_offset_s]
                         for s in sessions], dtype=np.float64).reshape(len(sessions), 5),
        "sport": np.array(["" if s.sport is None else s.sport for s in sessions], dtype=str),
        "has_sport": np.array([s.sport is not None for s in sessions]),
        "file_format": np.array([s.file_format for s in sessions], dtype=str),
        "hr_n": np.array([s.n_hr_samples for s in sessions], dtype=np.int64),
        "hr_t": np.concatenate([s.hr_elapsed_s for s in sessions] or [np.empty(0)]),
        "hr_bpm": np.concatenate([s.hr_bpm for s in sessions] or [np.empty(0)]),
    }


def _decode(z: dict[str, np.ndarray]) -> tuple[list[Session] | None, str | None]:
    if "reason" in z:
        return None, str(z["reason"])
    bounds = np.concatenate([[0], np.cumsum(z["hr_n"])])
    out = []
    for i, start in enumerate(z["start_ns"]):
        dist, moving, elapsed, gain, offset = z["num"][i]
        out.append(Session(
            start_time=pd.Timestamp(int(start), unit="ns", tz="UTC"),
            distance_km=float(dist), moving_s=float(moving), elapsed_s=float(elapsed),
            elevation_gain_m=float(gain),
            sport=str(z["sport"][i]) if z["has_sport"][i] else None,
            file_format=str(z["file_format"][i]),
            hr_elapsed_s=z["hr_t"][bounds[i]:bounds[i + 1]].copy(),
            hr_bpm=z["hr_bpm"][bounds[i]:bounds[i + 1]].copy(),
            utc_offset_s=None if np.isnan(offset) else float(offset)))
    return out, None


def _cache_load(path: Path) -> tuple[list[Session] | None, str | None] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return _decode({k: npz[k] for k in npz.files})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile):
        return None  # a damaged entry is a miss: the file is parsed again and re-stored


def _cache_store(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    # Written next to its final name and renamed: a reader never sees half an entry.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _Outcome:
    sessions: list[Session] | None
    reason: str | None
    parsed: bool
    cached: bool = False


def _read_one(path: str, cache_dir: str | None) -> _Outcome:
    """Parse one file, through the cache when one is given (runs in worker processes)."""
    p = Path(path)
    entry = None
    try:
        if cache_dir is not None:  # the one file fingerprint, analysis.privacy.sha256_file
            entry = _cache_path(Path(cache_dir), sha256_file(p))
            hit = _cache_load(entry)
            if hit is not None:
                return _Outcome(*hit, parsed=False, cached=True)
        raw = p.read_bytes()
    except OSError as exc:
        return _Outcome(None, f"cannot be read ({exc.strerror or exc})", parsed=False)
    try:
        sessions, reason = parse_activity_bytes(raw, name=p.name), None
    except ActivityFileError as exc:
        sessions, reason = None, exc.message
    if entry is not None:
        _cache_store(entry, _encode(sessions, reason))
    return _Outcome(sessions, reason, parsed=True)


def _read_chunk(paths: Sequence[str], cache_dir: str | None) -> list[_Outcome]:
    return [_read_one(p, cache_dir) for p in paths]


def _cached(path: Path, cache_dir: Path) -> _Outcome | None:
    """The cached parse of a file, or None (a miss, or the file cannot be read)."""
    try:
        digest = sha256_file(path)
    except OSError:
        return None
    hit = _cache_load(_cache_path(cache_dir, digest))
    return None if hit is None else _Outcome(*hit, parsed=False, cached=True)


def _read_many(paths: list[Path], cache_dir: Path | None, *, workers: int) -> list[_Outcome]:
    """Outcomes in the order of ``paths``: cache hits looked up here (about 2 ms a file),
    the misses parsed here or, when there are many, on ``workers`` processes."""
    found: list[_Outcome | None] = [None] * len(paths)
    if cache_dir is not None:
        found = [_cached(p, cache_dir) for p in paths]
    misses = [i for i, hit in enumerate(found) if hit is None]
    names = [str(paths[i]) for i in misses]
    cache = None if cache_dir is None else str(cache_dir)
    if workers <= 1 or len(names) < PARALLEL_MIN_FILES:
        parsed = _read_chunk(names, cache)
    else:
        chunks = [names[i:i + CHUNK_FILES] for i in range(0, len(names), CHUNK_FILES)]
        # spawn: no fork of a process that may hold threads (pyarrow, BLAS).
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            done = pool.map(_read_chunk, chunks, [cache] * len(chunks))
            parsed = [outcome for chunk in done for outcome in chunk]
    for i, outcome in zip(misses, parsed, strict=True):
        found[i] = outcome
    return [o for o in found if o is not None]


# --- folders -------------------------------------------------------------------------------

def activity_files(folder: Path) -> list[Path]:
    """Activity files under ``folder`` (recursive; ``.fit``/``.gpx``/``.tcx``, each also
    ``.gz``, any case), sorted; none when ``folder`` does not exist."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_activity_file(p.name))


def _strava_links(csv_path: Path, folder: Path, rel: str
                  ) -> tuple[dict[Path, str | None], list[tuple[str, str]]]:
    """{file: Strava activity type} linked by ``activities.csv``, and quarantine rows for
    links whose file is missing."""
    links: dict[Path, str | None] = {}
    missing: list[tuple[str, str]] = []
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if STRAVA_FILENAME_COLUMN not in header:
            return links, missing
        i_file = header.index(STRAVA_FILENAME_COLUMN)
        i_type = header.index(STRAVA_TYPE_COLUMN) if STRAVA_TYPE_COLUMN in header else None
        for row in reader:
            name = row[i_file].strip() if i_file < len(row) else ""
            if not name:
                continue  # a manual entry: no file, the CSV reader has its row
            kind = row[i_type].strip() if i_type is not None and i_type < len(row) else ""
            target = folder / name
            if target.is_file():
                links[target] = kind or None
            else:
                missing.append((rel, f"line {reader.line_num}: names {name}, which is not "
                                     "in the export"))
    return links, missing


def _strava_sport(kind: str | None) -> str | None:
    if not kind:
        return None
    return STRAVA_SPORTS.get(kind.lower(), kind.lower())


def _local_starts(start: pd.Series, offsets: pd.Series, timezone: str | None
                  ) -> tuple[pd.Series, pd.Series]:
    """Local wall-clock starts (naive) and their basis."""
    if timezone is not None:
        local = start.dt.tz_convert(timezone).dt.tz_localize(None)
        return local, pd.Series("timezone", index=start.index, dtype="str")
    naive = start.dt.tz_localize(None)
    known = offsets.notna()
    shifted = naive + pd.to_timedelta(offsets.fillna(0.0), unit="s")
    basis = pd.Series(np.where(known, "device_offset", "utc"), index=start.index, dtype="str")
    return shifted.where(known, naive), basis


def _tables(rows: list[tuple[str, str, int, Session, str | None]], runner_id: str,
            timezone: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [r[1] for r in rows]
    sessions = pd.DataFrame({
        "runner_id": pd.Series([runner_id] * len(rows), dtype="str"),
        "session_id": pd.Series(ids, dtype="str"),
        "start_time": pd.Series(pd.DatetimeIndex([r[3].start_time for r in rows],
                                                 dtype="datetime64[ns, UTC]")),
        "distance_km": [r[3].distance_km for r in rows],
        "moving_s": [r[3].moving_s for r in rows],
        "elapsed_s": [r[3].elapsed_s for r in rows],
        "elevation_gain_m": [r[3].elevation_gain_m for r in rows],
        "sport": pd.Series([r[3].sport or r[4] for r in rows], dtype="str"),
        "n_hr_samples": pd.Series([r[3].n_hr_samples for r in rows], dtype="int64"),
        "file_format": pd.Series([r[3].file_format for r in rows], dtype="str"),
        "source_file": pd.Series([r[0] for r in rows], dtype="str"),
        "source_line": pd.Series([r[2] for r in rows], dtype="int64"),
    }).astype({"distance_km": "float64", "moving_s": "float64", "elapsed_s": "float64",
               "elevation_gain_m": "float64"})
    offsets = pd.Series([r[3].utc_offset_s for r in rows], dtype="float64")
    local, basis = _local_starts(sessions["start_time"], offsets, timezone)
    sessions = sessions.assign(date=local.dt.normalize(), start_local=local,
                               date_basis=basis).loc[:, list(SESSION_COLUMNS)]
    counts = [r[3].n_hr_samples for r in rows]
    hr = pd.DataFrame({
        "session_id": pd.Categorical.from_codes(
            np.repeat(np.arange(len(rows)), counts), categories=pd.Index(ids, dtype="str"))
        if rows else pd.Categorical([], categories=pd.Index([], dtype="str")),
        "elapsed_s": np.concatenate([r[3].hr_elapsed_s for r in rows] or [np.empty(0)]),
        "hr_bpm": np.concatenate([r[3].hr_bpm for r in rows] or [np.empty(0)]),
    })
    return sessions, hr


def _check_timezone(timezone: str | None) -> None:
    if timezone is None:
        return
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputFileError(f"--timezone {timezone!r} is not an IANA time zone (e.g. "
                             "'America/Toronto')") from None


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def read_activity_folder(
    folder: str | Path,
    *,
    runner_id: str | None = None,
    cache_dir: str | Path | None = None,
    study_root: str | Path | None = None,
    timezone: str | None = None,
    workers: int = MAX_WORKERS,
) -> ActivityRead:
    """Read one runner's activity files: a Strava bulk export or a folder of FIT files.

    A folder holding ``activities.csv`` is a Strava bulk export: the files its ``Filename``
    column names are read (a named file that is missing is quarantined, a row without a
    file is a manual entry and skipped), plus any other activity file under
    ``activities/``; the CSV's ``Activity Type`` gives the sport when the file names none.
    Any other folder is searched recursively for ``*.fit``, ``*.gpx``, ``*.tcx`` (each also
    ``.gz``, any case), e.g. a Garmin export.

    Parameters
    ----------
    folder
        The runner's export folder.
    runner_id
        The runner; default the folder's name.
    cache_dir
        Folder for the content-keyed parse cache (created; nothing is written elsewhere).
        None: no cache.
    study_root
        Session ids and ``source_file`` are paths relative to this; default the parent of
        ``folder`` (so they start with the runner's folder name).
    timezone
        IANA zone of the runner, for the ``date`` column; None: the FIT device's offset
        where the file records it, else the UTC date (``date_basis`` says which).
    workers
        Processes used when there are at least :data:`PARALLEL_MIN_FILES` files.

    Returns
    -------
    ActivityRead
        Sessions, heart-rate samples and quarantine (column contracts in its docstring).

    Raises
    ------
    InputFileError
        The folder does not exist or holds no activity file, or ``timezone`` is unknown.
    """
    folder = Path(folder)
    _check_timezone(timezone)
    if not folder.is_dir():
        raise InputFileError("activity folder does not exist", file=folder)
    root = folder.parent if study_root is None else Path(study_root)
    runner = folder.name if runner_id is None else runner_id
    quarantine: list[tuple[str, str]] = []
    csv_path = folder / STRAVA_CSV
    strava_type: dict[Path, str | None] = {}
    if csv_path.is_file():
        layout = "strava"
        strava_type, quarantine = _strava_links(csv_path, folder, _rel(csv_path, root))
        extra = activity_files(folder / "activities")
        files = sorted(set(strava_type) | set(extra))
    else:
        layout = "files"
        files = activity_files(folder)
    if not files and not quarantine:
        raise InputFileError("no activity files (*.fit, *.gpx, *.tcx, each also .gz) found",
                             file=folder)
    cache = None if cache_dir is None else Path(cache_dir)
    outcomes = _read_many(files, cache, workers=workers)
    rows: list[tuple[str, str, int, Session, str | None]] = []
    for path, outcome in zip(files, outcomes, strict=True):
        rel = _rel(path, root)
        if outcome.sessions is None:
            quarantine.append((rel, outcome.reason or "unreadable"))
            continue
        fallback = _strava_sport(strava_type.get(path))
        for k, session in enumerate(outcome.sessions, start=1):
            rows.append((rel, rel if k == 1 else f"{rel}#{k}", k, session, fallback))
    sessions, hr = _tables(rows, runner, timezone)
    return ActivityRead(
        sessions=sessions, hr_samples=hr,
        quarantine=pd.DataFrame(quarantine, columns=list(QUARANTINE_COLUMNS)).astype("str"),
        n_parsed=sum(o.parsed for o in outcomes),
        n_cached=sum(o.cached for o in outcomes),
        layout=layout)


