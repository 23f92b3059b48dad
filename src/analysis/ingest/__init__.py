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

import pandas as pd

from analysis.errors import InputFileError, KneeloadError
from analysis.ingest._io import FileInfo
from analysis.schemas import SOURCE_FILE

__all__ = ["FORMATS", "FileInfo", "RawTables", "read_dataset"]

#: Formats :func:`read_dataset` understands; "auto" picks one by file names and headers.
FORMATS = ("canonical", "strava", "garmin", "lovdal", "diary")


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

    def tables(self) -> dict[str, pd.DataFrame]:
        """The four tables by name."""
        return {"runners": self.runners, "runs": self.runs, "pain": self.pain,
                "shoes": self.shoes}


def count_files(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Records per source file over all tables (the conservation denominators)."""
    counts: dict[str, int] = {}
    for frame in tables.values():
        if len(frame):
            for name, n in frame[SOURCE_FILE].value_counts(sort=False).items():
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
        Strava only: IANA time zone of the runners (Strava writes UTC).
    distance_unit
        Garmin only: "km" or "mi", the account's unit when the header does not say.
    cohort
        Strava/Garmin only: cohort of runners derived from folder names when the folder has
        no runners file.

    Raises
    ------
    InputFileError
        Missing folder or file, empty/binary/HTML file, missing required column.
    KneeloadError
        Unknown format, or ``pseudonymise`` without a salt.
    """
    raw_dir = Path(raw_dir)
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
    tables, infos, more = _read(raw_dir, format, timezone=timezone,
                                distance_unit=distance_unit, cohort=cohort)
    notes.extend(more)
    for info in infos.values():
        if info.encoding == "Latin-1":
            notes.append(f"{info.name}: not valid UTF-8, read as Latin-1")
    files = {name: 0 for name in infos} | count_files(tables)
    raw = RawTables(**tables, format=format, raw_dir=raw_dir, files=dict(sorted(files.items())),
                    file_info=infos, notes=notes)
    if pseudonymise:
        from analysis.ingest.pseudonymise import pseudonymise as _pseudonymise

        raw = _pseudonymise(raw, salt=salt)
    return raw


def _read(raw_dir: Path, format: str, *, timezone: str, distance_unit: str,
          cohort: str) -> tuple[dict[str, pd.DataFrame], dict[str, FileInfo], list[str]]:
    if format in ("canonical", "diary"):
        from analysis.ingest.canonical import read_canonical
        from analysis.ingest.diary import read_diary_folder

        tables, infos = read_canonical(
            raw_dir, pain_reader=read_diary_folder if format == "diary" else None)
        return tables, infos, []
    if format == "strava":
        from analysis.ingest.strava import read_strava

        return read_strava(raw_dir, timezone=timezone, cohort=cohort)
    if format == "garmin":
        from analysis.ingest.garmin import read_garmin

        return read_garmin(raw_dir, distance_unit=distance_unit, cohort=cohort)
    from analysis.ingest.lovdal import read_lovdal

    return read_lovdal(raw_dir)
