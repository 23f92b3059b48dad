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

from dataclasses import dataclass, field
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
#: Where a Strava bulk export keeps its activity files, inside the runner's folder.
STRAVA_FILES_FOLDER = "activities"
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

    def add(self, read: ActivityRead) -> None:
        """Count one :class:`~analysis.ingest.activity.ActivityRead`."""
        self.parsed += read.n_parsed
        self.cached += read.n_cached
        self.files += read.n_parsed + read.n_cached
        self.sessions += len(read.sessions)
        self.hr_samples.append(read.hr_samples.assign(
            session_id=read.hr_samples["session_id"].astype("str")))

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


def _issue_records(read: ActivityRead, runner_id: str, *, skip: set[str]) -> pd.DataFrame:
    """One record per unreadable activity file (``skip``: quarantine rows that are no
    activity file, e.g. an ``activities.csv`` line naming a missing file)."""
    q = read.quarantine[~read.quarantine["source_file"].isin(skip)]
    return pd.DataFrame({
        "runner_id": pd.Series([runner_id] * len(q), dtype="str"),
        ACTIVITY_ISSUE: q["reason"].astype("str").to_numpy(),
        SOURCE_FILE: q["source_file"].astype("str").to_numpy(),
        SOURCE_LINE: pd.Series([1] * len(q), dtype="int64"),
    })


def read_activity_study(
    raw_dir: Path, *, timezone: str | None, cache_dir: Path | None,
    workers: int = MAX_WORKERS,
) -> tuple[pd.DataFrame, dict[str, FileInfo], list[str], ActivitySummary]:
    """Runs records of every activity file under ``raw_dir`` (see the module docstring).

    Parameters
    ----------
    raw_dir
        The study folder (:func:`runner_activity_folders` finds the runners).
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
    summary = ActivitySummary()
    parts = []
    for runner_id, folder in runner_activity_folders(raw_dir):
        read = read_activity_folder(folder, runner_id=runner_id, study_root=raw_dir,
                                    cache_dir=cache_dir, timezone=timezone, workers=workers)
        summary.add(read)
        issues = _issue_records(read, runner_id, skip=set())
        summary.unreadable += len(issues)
        parts += [_session_records(read), issues]
    runs = pd.concat([p for p in parts if len(p)] or [_session_records_empty()],
                     ignore_index=True)
    basis = "the FIT files' own UTC offsets (else the UTC day)" if timezone is None \
        else f"the time zone {timezone}"
    notes = [f"activity files: {summary.files} read ({summary.parsed} parsed, "
             f"{summary.cached} from the cache), {summary.sessions} sessions, "
             f"{summary.unreadable} unreadable; local days from {basis}"]
    return runs, {}, notes, summary


def _session_records_empty() -> pd.DataFrame:
    return pd.DataFrame({"runner_id": pd.Series(dtype="str"),
                         "date": pd.Series(dtype="datetime64[us]"),
                         "distance_km": pd.Series(dtype="float64"),
                         SOURCE_FILE: pd.Series(dtype="str"),
                         SOURCE_LINE: pd.Series(dtype="int64")})


def link_strava_files(
    raw_dir: Path, runs: pd.DataFrame, *, timezone: str, cache_dir: Path | None,
    workers: int = MAX_WORKERS,
) -> tuple[pd.DataFrame, list[str], ActivitySummary]:
    """A Strava study's runs with the bulk export's activity files linked in.

    ``runs`` are the ``activities.csv`` records (:func:`analysis.ingest.strava.read_strava`,
    with :data:`~analysis.ingest._io.ACTIVITY_FILE` naming each row's file relative to
    ``raw_dir``). Runner folders without an ``activities/`` folder of files are left as they
    are. Returns the runs (a row's missing ``duration_min`` filled from its file's moving
    time; files no row names and unreadable named files appended as records), notes and the
    summary (its samples are keyed by the file path, as ``ACTIVITY_FILE``).
    """
    summary = ActivitySummary()
    notes: list[str] = []
    extra = []
    n_unnamed = 0
    if ACTIVITY_FILE not in runs:
        return runs, notes, summary
    for runner_id, folder in sorted({(str(r), raw_dir / Path(str(f)).parent)
                                     for r, f in zip(runs["runner_id"], runs[SOURCE_FILE],
                                                     strict=True)}):
        if not activity_files(folder / STRAVA_FILES_FOLDER):
            continue
        read = read_activity_folder(folder, runner_id=runner_id, study_root=raw_dir,
                                    cache_dir=cache_dir, timezone=timezone, workers=workers)
        summary.add(read)
        csv_name = (Path(folder.relative_to(raw_dir)) / STRAVA_CSV).as_posix()
        missing = read.quarantine[read.quarantine["source_file"] == csv_name]
        if len(missing):
            notes.append(f"{csv_name}: {len(missing)} named activity file(s) missing from "
                         f"the export, e.g. {missing['reason'].iloc[0]}; their rows keep no "
                         "heart-rate samples")
        issues = _issue_records(read, runner_id, skip={csv_name})
        summary.unreadable += len(issues)
        named = set(runs.loc[runs[SOURCE_FILE] == csv_name, ACTIVITY_FILE].dropna())
        unnamed = ~read.sessions["source_file"].isin(named)
        n_unnamed += int(unnamed.sum())
        extra += [_session_records(read, keep=unnamed), issues]
        moving = read.sessions.set_index("session_id")["moving_s"]
        fill = runs[ACTIVITY_FILE].map(moving / SECONDS_PER_MINUTE)
        if "duration_min" in runs and runs["duration_min"].dtype == np.float64:
            runs = runs.assign(duration_min=runs["duration_min"].fillna(fill))
    if summary.files or summary.unreadable:
        notes.insert(0, f"Strava activity files: {summary.files} read ({summary.parsed} "
                        f"parsed, {summary.cached} from the cache), {summary.unreadable} "
                        f"unreadable, {n_unnamed} session(s) not named by "
                        "activities.csv (kept as runs of their own)")
    extra = [e for e in extra if len(e)]
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

    row_key = pd.Series([_ROW_KEY.format(file=f, line=n) for f, n in
                         zip(runs[SOURCE_FILE], runs[SOURCE_LINE], strict=True)],
                        index=runs.index, dtype="str")
    key = runs[ACTIVITY_FILE].astype("str").fillna(row_key) if ACTIVITY_FILE in runs \
        else row_key
    minutes = (pd.to_numeric(runs["duration_min"], errors="coerce") if "duration_min" in runs
               else pd.Series(np.nan, index=runs.index))
    sessions = pd.DataFrame({
        "session_id": key.to_numpy(),
        "runner_id": runs["runner_id"].astype("str").str.strip().to_numpy(),
        "moving_s": (minutes * SECONDS_PER_MINUTE).to_numpy(dtype=float),
        "elapsed_s": np.nan,
        "avg_hr_bpm": (pd.to_numeric(runs["avg_hr_bpm"], errors="coerce").to_numpy(dtype=float)
                       if "avg_hr_bpm" in runs else np.nan),
    }).astype({"session_id": "str", "runner_id": "str"})
    valid = sessions["runner_id"].notna()
    people = runners.assign(runner_id=runners["runner_id"].astype("str").str.strip())
    loads, refs = session_loads(hr_samples[hr_samples["session_id"].isin(set(key))],
                                sessions[valid], people)
    # a key repeats only for a file's rows read twice (a duplicate line): same load
    by_key = loads.drop_duplicates("session_id").set_index("session_id")
    out = runs.assign(
        trimp_banister_au=key.map(by_key["trimp_banister"]).astype("float64").to_numpy(),
        trimp_edwards_au=key.map(by_key["trimp_edwards"]).astype("float64").to_numpy())
    methods = {str(k): int(v) for k, v in loads["trimp_method"].value_counts().items()}
    refs = refs[refs["runner_id"].isin(set(sessions.loc[valid, "runner_id"]))]
    return out, refs.reset_index(drop=True), methods
