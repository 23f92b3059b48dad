"""Watch activity files of a study -> canonical runs records, and every run's heart-rate load.

Two jobs, both run by :func:`analysis.ingest.read_dataset` before pseudonymising:

* :func:`read_activity_study` (format ``"activity"``): a folder of runner folders holding FIT,
  GPX or TCX files (e.g. Garmin exports), or such files directly in the study folder for one
  runner. Every session of every file is one runs record (``source_file`` the file's path
  relative to the study folder, ``source_line`` k for the file's k-th session); a file that
  cannot be read is one record carrying :data:`~analysis.ingest._io.ACTIVITY_ISSUE`, which
  cleaning quarantines as ``unreadable_activity_file`` with the reason. Non-running sports
  are records too (cleaning quarantines them as ``non_running_activity``).
* :func:`link_strava_files`: a Strava bulk export (``<runner>/activities.csv`` plus
  ``<runner>/activities/*.fit.gz|gpx.gz|tcx.gz``). The CSV rows stay the runs records (they
  carry gear, RPE and the moving time); the file a row names gives its heart-rate samples
  (and the moving time when the row has none). A file no row names is a runs record of its
  own, a named file that cannot be read is a record quarantined with its reason.
* :func:`add_heart_rate_load`: ``trimp_banister_au`` and ``trimp_edwards_au`` of every run
  (:func:`analysis.hrload.session_loads`): from the samples when the run has a file with
  heart rate, else from the export's mean heart rate (``avg_hr_bpm``), else missing.

Parses go through the content-keyed cache of :mod:`analysis.ingest.activity` when a
``cache_dir`` is given (the build passes ``<out>/.cache/activity``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.ingest._io import ACTIVITY_FILE, ACTIVITY_ISSUE, HAS_TIME, FileInfo
from analysis.ingest.activity import (
    MAX_WORKERS,
    STRAVA_CSV,
    ActivityRead,
    activity_files,
    read_activity_folder,
)
from analysis.schemas import SOURCE_FILE, SOURCE_LINE

__all__ = ["ActivitySummary", "add_heart_rate_load", "link_strava_files",
           "read_activity_study", "runner_activity_folders"]

SECONDS_PER_MINUTE = 60.0
#: Session key of a runs record without an activity file (its file and line).
_ROW_KEY = "{file}:{line}"


@dataclass
class ActivitySummary:
    """What the activity files of one read came to (``panel_meta.json`` ``activity_files``).

    Attributes
    ----------
    files, parsed, cached
        Activity files found; parsed in this read; taken from the parse cache.
    sessions, unreadable
        Sessions read; files that could not be read (quarantined).
    hr_samples
        Heart-rate samples of every session (``session_id``, ``elapsed_s``, ``hr_bpm``).
    """

    files: int = 0
    parsed: int = 0
    cached: int = 0
    sessions: int = 0
    unreadable: int = 0
    hr_samples: list[pd.DataFrame] = field(default_factory=list)

    def samples(self) -> pd.DataFrame:
        """All heart-rate samples in one table."""
        if not self.hr_samples:
            return pd.DataFrame({"session_id": pd.Series(dtype="str"),
                                 "elapsed_s": pd.Series(dtype="float64"),
                                 "hr_bpm": pd.Series(dtype="float64")})
        return pd.concat(self.hr_samples, ignore_index=True)

    def counts(self) -> dict[str, int]:
        """The counts as a dict (JSON)."""
        return {"files": self.files, "parsed": self.parsed, "cached": self.cached,
                "sessions": self.sessions, "unreadable": self.unreadable}


def runner_activity_folders(raw_dir: Path) -> list[tuple[str, Path]]:
    """(runner_id, folder) of every runner folder holding activity files: each visible
    sub-folder of ``raw_dir`` with at least one (recursively), or ``raw_dir`` itself for one
    runner named after it when its activity files lie directly in it."""
    found = [(sub.name, sub) for sub in sorted(raw_dir.iterdir())
             if sub.is_dir() and not sub.name.startswith(".") and activity_files(sub)]
    if found:
        return found
    top = [p for p in activity_files(raw_dir) if p.parent == raw_dir]
    return [(raw_dir.name, raw_dir)] if top else []


def _read_study(raw_dir: Path, runner_of: dict[str, str], *, timezone: str | None,
                cache_dir: Path | None, workers: int) -> ActivityRead:
    """Every activity file under ``raw_dir`` in one read (one cache pass, one process pool),
    each session and quarantine row given the runner of its top folder (``runner_of``:
    folder name -> runner, ``"."`` for files outside any runner folder); files in hidden
    folders are left out."""
    read = read_activity_folder(raw_dir, runner_id="", study_root=raw_dir,
                                cache_dir=cache_dir, timezone=timezone, workers=workers)

    def runner(source: pd.Series) -> pd.Series:
        top = source.str.split("/").str[0].where(source.str.contains("/", regex=False), ".")
        return top.map(lambda t: runner_of.get(t, runner_of.get(".", ""))).astype("str")

    def visible(source: pd.Series) -> pd.Series:
        return ~source.str.contains(r"(?:^|/)\.", regex=True)

    sessions = read.sessions[visible(read.sessions["source_file"])]
    quarantine = read.quarantine[visible(read.quarantine["source_file"])]
    return replace(read, sessions=sessions.assign(runner_id=runner(sessions["source_file"])),
                   quarantine=quarantine.assign(runner_id=runner(quarantine["source_file"])))


def _session_records(read: ActivityRead, *, keep: pd.Series | None = None) -> pd.DataFrame:
    """Sessions (those under ``keep``) as raw runs records, typed."""
    s = read.sessions if keep is None else read.sessions[keep]
    moving = s["moving_s"].where(s["moving_s"] > 0, s["elapsed_s"])
    return pd.DataFrame({
        "runner_id": s["runner_id"].astype("str"),
        "date": s["start_local"].astype("datetime64[us]"),
        HAS_TIME: pd.Series(True, index=s.index),
        "start_time": s["start_local"].astype("datetime64[us]"),
        "distance_km": s["distance_km"].astype("float64"),
        "duration_min": (moving / SECONDS_PER_MINUTE).astype("float64"),
        "activity_type": s["sport"].astype("str"),
        ACTIVITY_FILE: s["session_id"].astype("str"),
        SOURCE_FILE: s["source_file"].astype("str"),
        SOURCE_LINE: s["source_line"].astype("int64"),
    }).reset_index(drop=True)


def _issue_records(quarantine: pd.DataFrame) -> pd.DataFrame:
    """One runs record per unreadable activity file (quarantine rows of activity files)."""
    return pd.DataFrame({
        "runner_id": quarantine["runner_id"].astype("str").to_numpy(),
        ACTIVITY_ISSUE: quarantine["reason"].astype("str").to_numpy(),
        SOURCE_FILE: quarantine["source_file"].astype("str").to_numpy(),
        SOURCE_LINE: np.ones(len(quarantine), dtype=np.int64),
    })


def _summary(read: ActivityRead, n_issues: int) -> ActivitySummary:
    summary = ActivitySummary(files=read.n_parsed + read.n_cached, parsed=read.n_parsed,
                              cached=read.n_cached, sessions=len(read.sessions),
                              unreadable=n_issues)
    summary.hr_samples.append(read.hr_samples.assign(
        session_id=read.hr_samples["session_id"].astype("str")))
    return summary


def read_activity_study(
    raw_dir: Path, *, timezone: str | None, cache_dir: Path | None,
    workers: int = MAX_WORKERS,
) -> tuple[pd.DataFrame, dict[str, FileInfo], list[str], ActivitySummary]:
    """Runs records of every activity file under ``raw_dir`` (see the module docstring).

    Parameters
    ----------
    raw_dir
        The study folder (:func:`runner_activity_folders` names the runners: a file belongs
        to the runner folder it lies in, files directly in ``raw_dir`` to a runner named
        after ``raw_dir``).
    timezone
        IANA zone of the runners; None: each FIT file's own UTC offset, else the UTC day.
    cache_dir
        Parse cache folder, or None.
    workers
        Processes for many files (:func:`analysis.ingest.activity.read_activity_folder`).

    Returns
    -------
    runs, file infos (none: activity files have no lines), notes, summary
    """
    runner_of = {folder.name if folder != raw_dir else ".": runner
                 for runner, folder in runner_activity_folders(raw_dir)}
    runner_of.setdefault(".", raw_dir.name)
    read = _read_study(raw_dir, runner_of, timezone=timezone, cache_dir=cache_dir,
                       workers=workers)
    issues = _issue_records(read.quarantine)
    summary = _summary(read, len(issues))
    runs = pd.concat([p for p in (_session_records(read), issues) if len(p)]
                     or [_session_records(read)], ignore_index=True)
    basis = "the FIT files' own UTC offsets (else the UTC day)" if timezone is None \
        else f"the time zone {timezone}"
    notes = [f"activity files: {summary.files} read ({summary.parsed} parsed, "
             f"{summary.cached} from the cache), {summary.sessions} sessions, "
             f"{summary.unreadable} unreadable; local days from {basis}"]
    return runs, {}, notes, summary


def link_strava_files(
    raw_dir: Path, runs: pd.DataFrame, *, timezone: str, cache_dir: Path | None,
    workers: int = MAX_WORKERS,
) -> tuple[pd.DataFrame, list[str], ActivitySummary]:
    """A Strava study's runs with the bulk export's activity files linked in.

    ``runs`` are the ``activities.csv`` records (:func:`analysis.ingest.strava.read_strava`,
    with :data:`~analysis.ingest._io.ACTIVITY_FILE` naming each row's file relative to
    ``raw_dir``). Every activity file under a runner's export folder is read (one read of
    the study, :func:`_read_study`). Returns the runs (a row's missing ``duration_min``
    filled from its file's moving time; files no row names, one record per session, and
    unreadable files, one record each, appended), notes and the summary (its samples are
    keyed by the file path, as ``ACTIVITY_FILE``).
    """
    if ACTIVITY_FILE not in runs or not len(runs) or not activity_files(raw_dir):
        return runs, [], ActivitySummary()
    folders = runs[SOURCE_FILE].astype("str").map(lambda f: Path(f).parent.as_posix())
    runner_of = dict(zip(folders, runs["runner_id"].astype("str"), strict=True))
    runner_of.setdefault(".", raw_dir.name)
    read = _read_study(raw_dir, runner_of, timezone=timezone, cache_dir=cache_dir,
                       workers=workers)
    named = set(runs[ACTIVITY_FILE].dropna())
    missing = sorted(named - set(read.sessions["source_file"]) - set(read.quarantine[
        "source_file"]))
    issues = _issue_records(read.quarantine[read.quarantine["source_file"].isin(
        set(read.quarantine["source_file"]) - {f"{d}/{STRAVA_CSV}".removeprefix("./")
                                              for d in runner_of})])
    summary = _summary(read, len(issues))
    unnamed = ~read.sessions["source_file"].isin(named)
    moving = read.sessions.drop_duplicates("session_id").set_index("session_id")["moving_s"]
    if "duration_min" in runs and runs["duration_min"].dtype == np.float64:
        runs = runs.assign(duration_min=runs["duration_min"].fillna(
            runs[ACTIVITY_FILE].map(moving / SECONDS_PER_MINUTE)))
    notes = [f"Strava activity files: {summary.files} read ({summary.parsed} parsed, "
             f"{summary.cached} from the cache), {summary.unreadable} unreadable, "
             f"{int(unnamed.sum())} session(s) not named by activities.csv (kept as runs of "
             "their own)"]
    if missing:
        notes.append(f"{len(missing)} activity file(s) named by activities.csv are not in "
                     f"the export (e.g. {missing[0]}); their rows keep no heart-rate samples")
    extra = [p for p in (_session_records(read, keep=unnamed), issues) if len(p)]
    if extra:
        runs = pd.concat([runs, *extra], ignore_index=True)
    return runs, notes, summary


def add_heart_rate_load(
    runs: pd.DataFrame, runners: pd.DataFrame, hr_samples: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, int]]:
    """``trimp_banister_au`` and ``trimp_edwards_au`` of every runs record.

    Parameters
    ----------
    runs
        Raw runs records; ``ACTIVITY_FILE`` (a session id of ``hr_samples``) where the run
        has a file, optional ``duration_min`` (min) and ``avg_hr_bpm`` (bpm).
    runners
        Raw runners (optional ``hr_rest``, ``hr_max``, ``sex``, ``age``).
    hr_samples
        ``session_id``, ``elapsed_s`` (s), ``hr_bpm`` (bpm).

    Returns
    -------
    runs, references, methods
        The runs with the two TRIMP columns (AU; missing where the run has neither samples
        nor a mean heart rate), :func:`analysis.hrload.runner_references` per runner (None
        and the runs unchanged when no run has heart rate), and runs per TRIMP method.
    """
    has_mean = "avg_hr_bpm" in runs and pd.to_numeric(runs["avg_hr_bpm"],
                                                      errors="coerce").notna().any()
    if not len(runs) or (not len(hr_samples) and not has_mean):
        return runs, None, {}
    from analysis.hrload import session_loads

    row_key = _row_keys(runs)
    key = runs[ACTIVITY_FILE].astype("str").fillna(row_key) if ACTIVITY_FILE in runs \
        else row_key
    minutes = (pd.to_numeric(runs["duration_min"], errors="coerce") if "duration_min" in runs
               else pd.Series(np.nan, index=runs.index))
    sessions = pd.DataFrame({
        "session_id": key.astype("str").array,  # text stays arrow text (no object copy)
        "runner_id": runs["runner_id"].astype("str").str.strip().array,
        "moving_s": (minutes * SECONDS_PER_MINUTE).to_numpy(dtype=float),
        "elapsed_s": np.nan,
        **{c: (pd.to_numeric(runs[c], errors="coerce").to_numpy(dtype=float) if c in runs
               else np.nan) for c in ("avg_hr_bpm", "max_hr_bpm")},
    }).astype({"session_id": "str", "runner_id": "str"})
    valid = sessions["runner_id"].notna()
    people = runners.assign(runner_id=runners["runner_id"].astype("str").str.strip())
    if len(hr_samples):
        hr_samples = hr_samples[_members(hr_samples["session_id"], key)]
    codes = _key_codes(runs, key)
    loads, refs = session_loads(hr_samples, sessions[valid], people,
                                session_codes=codes[valid.to_numpy()])
    # a key repeats only for a file's rows read twice (a duplicate line): same load; each
    # row takes the load of its key's first session (loads row j is the j-th valid row), as
    # Series.map over the loads deduplicated by session_id did
    at = _first_valid_row(codes, valid.to_numpy())

    def per_row(column: str) -> np.ndarray:
        values = loads[column].to_numpy(dtype="float64")
        return np.where(at >= 0, values[np.maximum(at, 0)] if len(values) else np.nan,
                        np.nan)

    out = runs.assign(trimp_banister_au=per_row("trimp_banister"),
                      trimp_edwards_au=per_row("trimp_edwards"))
    methods = {str(k): int(v) for k, v in loads["trimp_method"].value_counts().items()}
    refs = refs[_members(refs["runner_id"], sessions.loc[valid, "runner_id"])]
    return out, refs.reset_index(drop=True), methods


#: Largest (file, line) pair code :func:`_key_codes` makes (int64 with room to spare).
_MAX_PAIR_CODE = 2**62


def _key_codes(runs: pd.DataFrame, key: pd.Series) -> np.ndarray:
    """Integer codes of each runs record's session ``key`` (equal keys, equal codes; -1:
    missing). Without activity files every key is the record's ``<source_file>:
    <source_line>``, one-to-one with the pair (the line is the text after the last colon),
    so the pair is coded as one integer instead of hashing millions of key strings."""
    if ACTIVITY_FILE in runs or not len(runs):
        return pd.factorize(key)[0]
    files = pd.factorize(runs[SOURCE_FILE].astype("str"))[0].astype(np.int64)
    line = runs[SOURCE_LINE].to_numpy(dtype=np.int64)
    span = int(line.max()) - int(line.min()) + 1
    if (int(files.max()) + 1) * span >= _MAX_PAIR_CODE:  # would overflow int64
        return pd.factorize(key)[0]
    return np.where(files >= 0, files * span + (line - line.min()), -1)


def _first_valid_row(codes: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """For each row, the rank among ``valid`` rows of the first valid row with its key code
    (:func:`_key_codes`; -1: no valid row has it)."""
    from analysis.hrload import dense_codes

    code = dense_codes(codes)
    rank = np.cumsum(valid) - 1
    first = np.full(int(code.max()) + 1 if len(code) else 0, -1, dtype=np.int64)
    rows = np.flatnonzero(valid & (code >= 0))[::-1]
    first[code[rows]] = rank[rows]  # the last write per key is its first valid row
    return np.where(code >= 0, first[np.maximum(code, 0)] if len(first) else -1, -1)


def _row_keys(runs: pd.DataFrame) -> pd.Series:
    """``<source_file>:<source_line>`` of every runs record (:data:`_ROW_KEY`), as one
    vectorised string concatenation (a Python format per row took 4 s on 2 million runs)."""
    return (runs[SOURCE_FILE].astype("str") + ":"
            + runs[SOURCE_LINE].astype("int64").astype("str")).astype("str")


def _members(values: pd.Series, pool: pd.Series) -> np.ndarray:
    """``values.isin(set(pool))`` as a hash lookup: each distinct value of ``pool`` once
    (pandas' ``isin`` on arrow strings walks a Python list of the set: 13 s for two calls
    on 2 million runs)."""
    distinct = pd.Index(pd.unique(pool.astype("str").dropna()))
    return distinct.get_indexer(values.astype("str")) >= 0
