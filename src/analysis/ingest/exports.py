"""Per-runner watch exports and the canonical tables next to them (Strava, Garmin folders).

Layering: ``_io`` <- ``canonical`` <- ``diary`` <- ``exports`` <- ``strava``, ``garmin``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from analysis.errors import InputFileError
from analysis.ingest._io import FileInfo, find_exports
from analysis.ingest.canonical import (
    TABLES,
    derived_runners,
    empty_table,
    find_table_file,
    read_table_file,
)
from analysis.ingest.diary import find_diary, read_diary


def read_export_folder(
    raw_dir: Path,
    *,
    patterns: Sequence[str],
    export_name: str,
    read_one: Callable[[Path, str, str], tuple[pd.DataFrame, FileInfo, list[str]]],
    cohort: str,
) -> tuple[dict[str, pd.DataFrame], dict[str, FileInfo], list[str]]:
    """Read per-runner watch exports (``<runner>/<file>`` or one file) plus companion tables.

    Parameters
    ----------
    patterns
        File-name patterns of one runner's export (e.g. ``activities*.csv``).
    export_name
        What the export is called in the error when none is found, e.g. "Strava activities.csv".
    read_one
        ``read_one(path, name, runner_id) -> (runs records, file info, notes)`` for one file.
    cohort
        Cohort of runners derived from folder names when there is no runners file.
    """
    exports = find_exports(raw_dir, patterns)
    if not exports:
        file_name = export_name.split()[-1]
        raise InputFileError(f"no {export_name} found (looked for <runner>/{file_name} and "
                             f"{file_name.removesuffix('.csv')}*.csv)", file=raw_dir)
    runs, infos, notes = [], {}, []
    for runner_id, path in exports:
        name = path.relative_to(raw_dir).as_posix()
        frame, info, more = read_one(path, name, runner_id)
        runs.append(frame)
        infos[name] = info
        notes.extend(more)
    tables, extra_infos, extra_notes = read_companions(
        raw_dir, runner_ids=[r for r, _ in exports], cohort=cohort)
    tables["runs"] = pd.concat(runs, ignore_index=True)
    return tables, infos | extra_infos, notes + extra_notes


def read_companions(
    raw_dir: Path, *, runner_ids: list[str], cohort: str
) -> tuple[dict[str, pd.DataFrame], dict[str, FileInfo], list[str]]:
    """Optional canonical ``runners``, ``pain`` (or a wide pain diary) and ``shoes`` files
    next to an export; runners are derived from ``runner_ids`` when there is no runners file.

    Returns the three tables, the file infos and notes.
    """
    tables: dict[str, pd.DataFrame] = {}
    infos: dict[str, FileInfo] = {}
    notes: list[str] = []
    for table in ("runners", "pain", "shoes"):
        required, optional, _ = TABLES[table]
        path = find_table_file(raw_dir, table)
        if path is not None:
            frame, info = read_table_file(path, required=required, optional=optional,
                                          table=table)
            tables[table], infos[info.name] = frame, info
        elif table == "runners":
            tables[table] = derived_runners(runner_ids, cohort=cohort)
            notes.append(f"no runners file: {len(set(runner_ids))} runner(s) derived from the "
                         f"export folder names, cohort {cohort!r}")
        elif table == "pain" and (diary := find_diary(raw_dir)) is not None:
            tables[table], info = read_diary(diary)
            infos[info.name] = info
        else:
            tables[table] = empty_table(table)
            if table == "pain":
                notes.append("no pain file: the dataset has no pain reports")
    return tables, infos, notes
