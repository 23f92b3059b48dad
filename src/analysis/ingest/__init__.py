"""Ingest: the only code that parses foreign files. One small reader per input format.

Every reader ends in :class:`RawTables`: the canonical tables (``docs/data-contract.md``)
plus ``source_file`` and ``source_line`` for the audit. Values are typed where they enter:
a number or date column whose every cell parses is float64 / datetime64, any other column
stays text (:func:`analysis.ingest._io.typed_columns`). :func:`analysis.clean.clean_tables`
checks and cleans them, parsing only the columns that stayed text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.defaults import INPUT_FORMATS
from analysis.errors import InputFileError, KneeloadError
from analysis.ingest._io import FileInfo
from analysis.schemas import SOURCE_FILE

__all__ = ["FORMATS", "FileInfo", "RawTables", "read_dataset"]

#: Formats :func:`read_dataset` understands; "auto" picks one by file names and headers.
FORMATS = INPUT_FORMATS
#: Outcome kind each reader's pain column measures (``analysis.outcomes.OUTCOME_SPECS``);
#: a pain table with OSTRC answers declares ``ostrc`` instead (see :func:`read_dataset`).
READER_OUTCOMES = {"lovdal": "injury_flag"}
DEFAULT_OUTCOME = "nrs"


@dataclass
class RawTables:
    """Canonical tables as read, before cleaning.

    Attributes
    ----------
    runners, runs, pain, shoes
        Canonical column names (``analysis.schemas``), typed or text values (see the
        module docstring), plus ``source_file``
        and ``source_line`` (1-based line in that file; the header is line 1). ``shoes``
        may have no rows.
    format
        Reader used ("canonical", "strava", ...).
    raw_dir
        The folder read.
    files
        Input file name (relative to ``raw_dir``) -> records read from it; the unit of the
        conservation check in :func:`analysis.clean.clean_tables`.
    file_info
        Input file name -> how it was read (encoding, delimiter, data lines).
    notes
        Human-readable decisions the reader took (format chosen, encoding fallbacks, ...).
    outcome
        What the pain table measures, a key of ``analysis.outcomes.OUTCOME_SPECS``:
        ``injury_flag`` (Lövdal: pain = 10 x injury), ``ostrc`` (the pain table holds OSTRC
        answers), else ``nrs``.
    hr_references
        Resting and maximal heart rate per runner with their sources
        (:func:`analysis.hrload.runner_references`), when any run has heart rate; else None.
    activity_files
        Counts of the activity files read (files, parsed, cached, sessions, unreadable);
        empty when the study has none.
    trimp_methods
        Runs records per heart-rate load method ("samples", "mean HR", "none"); empty when
        no run has heart rate.
    """

    runners: pd.DataFrame
    runs: pd.DataFrame
    pain: pd.DataFrame
    shoes: pd.DataFrame
    format: str
    raw_dir: Path
    files: dict[str, int]
    file_info: dict[str, FileInfo] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    outcome: str = DEFAULT_OUTCOME
    hr_references: pd.DataFrame | None = None
    activity_files: dict[str, Any] = field(default_factory=dict)
    trimp_methods: dict[str, int] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The four tables by name."""
        return {"runners": self.runners, "runs": self.runs, "pain": self.pain,
                "shoes": self.shoes}


def count_files(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Records per source file over all tables (the conservation denominators; cleaning
    counts its kept records with the same function), sorted by file name. A record without
    a source file is not counted; a categorical column counts every category (0 for one
    without records), as ``value_counts`` does.

    The files are coded with :func:`analysis.keys.factorize` (a table read file by file
    holds each file's records together: coded without a hash) and counted with
    ``np.bincount``: ``value_counts`` hashed each of the 2,000 x 365 bench's 1.1 million
    file names (30 ms -> 17 ms for runs and pain).
    """
    from analysis.keys import factorize

    counts: dict[str, int] = {}
    for frame in tables.values():
        if not len(frame):
            continue
        if isinstance(frame[SOURCE_FILE].dtype, pd.CategoricalDtype):  # every category
            for name, n in frame[SOURCE_FILE].value_counts(sort=False).items():
                counts[str(name)] = counts.get(str(name), 0) + int(n)
        else:
            codes, names = factorize(frame[SOURCE_FILE])
            per_file = np.bincount(codes[codes >= 0], minlength=len(names))
            for name, n in zip(names, per_file, strict=True):
                counts[str(name)] = counts.get(str(name), 0) + int(n)
    return dict(sorted(counts.items()))


def read_dataset(
    raw_dir: str | Path,
    *,
    format: str = "auto",
    pseudonymise: bool = False,
    salt: str | None = None,
    timezone: str = "UTC",
    distance_unit: str = "km",
    cohort: str = "all",
    dayfirst: bool | None = None,
    date_format: str | None = None,
    cache_dir: str | Path | None = None,
) -> RawTables:
    """Read a raw dataset folder into canonical :class:`RawTables`.

    Parameters
    ----------
    raw_dir
        Folder with the input files (only ever read).
    format
        One of :data:`FORMATS` or "auto" (detect by file names and headers; the choice and
        its reason are the first entry of ``RawTables.notes``).
    pseudonymise
        Replace runner and shoe IDs by salted hashes and drop free-text columns
        (:mod:`analysis.ingest.pseudonymise`).
    salt
        Secret for ``pseudonymise``; default ``$KNEELOAD_ID_SALT``.
    timezone
        IANA time zone of the runners: Strava dates (written in UTC) and activity files are
        converted to local days with it. Activity files read with the default "UTC" use
        each FIT file's own UTC offset where it records one.
    distance_unit
        Garmin only: "km" or "mi", the account's unit when the header does not say.
    cohort
        Strava/Garmin/activity only: cohort of runners derived from folder names when the
        folder has no runners file.
    dayfirst, date_format
        Strava and Garmin: how numeric dates are read (``--dayfirst``, ``--date-format``);
        None: detected (:func:`analysis.ingest.strava.parse_activity_dates`).
    cache_dir
        Folder of the activity-file parse cache (content-keyed); None: no cache.

    Raises
    ------
    InputFileError
        Missing folder or file, empty/binary/HTML file, missing required column.
    KneeloadError
        Unknown format, ``pseudonymise`` without a salt, or a ``timezone`` /
        ``distance_unit`` that is not one (checked for every format, so a typo fails even
        where the reader would not use the option).
    """
    from analysis.ingest.garmin import check_distance_unit
    from analysis.ingest.strava import check_timezone

    raw_dir = Path(raw_dir)
    check_timezone(timezone, file=raw_dir)
    distance_unit = check_distance_unit(distance_unit, file=raw_dir)
    if not raw_dir.is_dir():
        raise InputFileError("raw data folder not found", file=raw_dir)
    notes: list[str] = []
    if format == "auto":
        from analysis.ingest.detect import detect_format

        format, why = detect_format(raw_dir)
        notes.append(f"format {format!r} chosen automatically: {why}")
    if format not in FORMATS:
        raise KneeloadError(f"unknown format {format!r}; choose one of "
                            f"{', '.join(FORMATS)} or auto")
    _check_date_options(format, dayfirst=dayfirst, date_format=date_format, raw_dir=raw_dir)
    cache = None if cache_dir is None else Path(cache_dir)
    tables, infos, more, summary = _read(raw_dir, format, timezone=timezone,
                                         distance_unit=distance_unit, cohort=cohort,
                                         dayfirst=dayfirst, date_format=date_format,
                                         cache_dir=cache)
    notes.extend(more)
    from analysis.ingest.watch import add_heart_rate_load

    runs, references, methods = add_heart_rate_load(tables["runs"], tables["runners"],
                                                    summary.samples())
    tables["runs"] = runs
    activity = summary.counts() if summary.files or summary.unreadable else {}
    if methods:
        notes.append("heart-rate load (TRIMP) per run: " + ", ".join(
            f"{n} {method}" for method, n in sorted(methods.items())))
    for info in infos.values():
        if info.encoding in ("Latin-1", "Windows-1252"):
            notes.append(f"{info.name}: not valid UTF-8, read as {info.encoding}")
    files = {name: 0 for name in infos} | count_files(tables)
    raw = RawTables(**tables, format=format, raw_dir=raw_dir, files=dict(sorted(files.items())),
                    file_info=infos, notes=notes, outcome=_outcome(format, tables["pain"]),
                    hr_references=references, activity_files=activity,
                    trimp_methods=methods)
    if pseudonymise:
        from analysis.ingest.pseudonymise import pseudonymise as _pseudonymise

        raw = _pseudonymise(raw, salt=salt)
    return raw


def _outcome(format: str, pain: pd.DataFrame) -> str:
    """The outcome the reader's pain table measures (:attr:`RawTables.outcome`)."""
    from analysis.schemas import OSTRC_ITEMS

    if format in READER_OUTCOMES:
        return READER_OUTCOMES[format]
    answered = [q for q in OSTRC_ITEMS if q in pain and pain[q].notna().any()]
    return "ostrc" if answered else DEFAULT_OUTCOME


#: Formats whose readers take ``--dayfirst`` / ``--date-format`` (the others read ISO 8601
#: dates, docs/data-contract.md): which of the two each one takes.
DATE_OPTION_FORMATS = {"strava": ("dayfirst", "date_format"), "garmin": ("date_format",)}


def _check_date_options(format: str, *, dayfirst: bool | None, date_format: str | None,
                        raw_dir: Path) -> None:
    """A one-line error for a date option the format's reader would ignore, and for a
    ``--date-format`` that is not a valid strptime format (e.g. ``%Q``)."""
    given = {"dayfirst": dayfirst is not None, "date_format": date_format is not None}
    allowed = DATE_OPTION_FORMATS.get(format, ())
    for option, flag in (("dayfirst", "--dayfirst/--no-dayfirst"),
                         ("date_format", "--date-format")):
        if given[option] and option not in allowed:
            readers = " and ".join(f for f, o in DATE_OPTION_FORMATS.items() if option in o)
            raise InputFileError(
                f"{flag} applies to {readers} exports only; {format!r} files need ISO 8601 "
                "dates (2024-03-05, docs/data-contract.md)", file=raw_dir)
    if date_format is not None:
        import datetime as dt

        sample = dt.datetime(2024, 3, 5, 7, 30)
        try:
            ok = dt.datetime.strptime(sample.strftime(date_format), date_format).date() \
                == sample.date()
        except ValueError as err:
            raise InputFileError(f"--date-format {date_format!r} is not a strptime format "
                                 f"({err}); e.g. '%d/%m/%Y'", file=raw_dir) from None
        if not ok:
            raise InputFileError(f"--date-format {date_format!r} does not name a day, month "
                                 "and year (e.g. '%d/%m/%Y')", file=raw_dir)


def _read(raw_dir: Path, format: str, *, timezone: str, distance_unit: str, cohort: str,
          dayfirst: bool | None, date_format: str | None, cache_dir: Path | None
          ) -> tuple[dict[str, pd.DataFrame], dict[str, FileInfo], list[str], Any]:
    """Tables, file infos, notes and the activity-file summary of one reader."""
    from analysis.ingest.watch import ActivitySummary

    none = ActivitySummary()
    if format in ("canonical", "diary"):
        from analysis.ingest.canonical import read_canonical
        from analysis.ingest.diary import read_diary_folder

        tables, infos = read_canonical(
            raw_dir, pain_reader=read_diary_folder if format == "diary" else None)
        return tables, infos, [], none
    if format == "strava":
        from analysis.ingest.strava import read_strava
        from analysis.ingest.watch import link_strava_files

        tables, infos, notes = read_strava(raw_dir, timezone=timezone, cohort=cohort,
                                           dayfirst=dayfirst, date_format=date_format)
        tables["runs"], more, summary = link_strava_files(
            raw_dir, tables["runs"], timezone=timezone, cache_dir=cache_dir)
        return tables, infos, notes + more, summary
    if format == "garmin":
        from analysis.ingest.garmin import read_garmin

        tables, infos, notes = read_garmin(raw_dir, distance_unit=distance_unit,
                                           cohort=cohort, date_format=date_format)
        return tables, infos, notes, none
    if format == "activity":
        from analysis.ingest.exports import read_companions
        from analysis.ingest.watch import read_activity_study, runner_activity_folders

        runs, infos, notes, summary = read_activity_study(
            raw_dir, timezone=None if timezone == "UTC" else timezone, cache_dir=cache_dir)
        tables, extra_infos, extra_notes = read_companions(
            raw_dir, runner_ids=[r for r, _ in runner_activity_folders(raw_dir)],
            cohort=cohort)
        tables["runs"] = runs
        return tables, infos | extra_infos, notes + extra_notes, summary
    from analysis.ingest.lovdal import read_lovdal

    tables, infos, notes = read_lovdal(raw_dir)
    return tables, infos, notes, none
