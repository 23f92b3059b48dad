"""``format="auto"``: pick the reader from file names and header lines, and say why."""

from __future__ import annotations

from pathlib import Path

from analysis.errors import InputFileError
from analysis.ingest import lovdal, strava
from analysis.ingest._io import find_exports
from analysis.ingest.canonical import find_table_file
from analysis.ingest.diary import find_diary

#: Headers that identify an export (all must be present in the header line).
STRAVA_HEADERS = ("Activity ID", "Activity Date", "Activity Type", "Distance")
GARMIN_HEADERS = ("Activity Type", "Date", "Title", "Distance")
HEAD_BYTES = 65536


def header_cells(path: Path) -> list[str]:
    """Header cells of a CSV (best effort: UTF-8/Latin-1, comma separated, quotes removed)."""
    import csv

    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    text = head.decode("utf-8-sig", errors="replace")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    try:
        return [c.strip() for c in next(csv.reader([first]))]
    except (csv.Error, StopIteration):
        return []


def detect_format(raw_dir: Path) -> tuple[str, str]:
    """Which reader fits ``raw_dir``: returns (format, reason).

    Order: canonical tables (``runners`` + ``runs`` files), a Lövdal day file, Strava and
    Garmin exports (by header), runner folders of activity files (FIT/GPX/TCX); a wide
    diary alone is not a dataset.

    Raises
    ------
    InputFileError
        Nothing recognisable; the message lists the files seen.
    """
    has = {t: find_table_file(raw_dir, t) for t in ("runners", "runs", "pain")}
    if has["runners"] and has["runs"]:
        diary = find_diary(raw_dir)
        if has["pain"] is None and diary is not None:
            return "diary", f"found runners, runs and a wide pain diary ({diary.name})"
        return "canonical", "found runners and runs tables"
    for path in sorted(raw_dir.glob("*.csv")):
        if lovdal.is_day_file(header_cells(path)):
            return "lovdal", f"{path.name} has the Lövdal day-approach header"
    for runner, path in find_exports(raw_dir, strava.EXPORT_PATTERNS):
        cells = header_cells(path)
        rel = path.relative_to(raw_dir).as_posix()
        if (language := strava.header_language(cells)) is not None:
            return "strava", (f"{rel} has the Strava activities header"
                              f"{'' if language == 'en' else f' ({language})'} "
                              f"(runner {runner!r})")
        if all(h in cells for h in GARMIN_HEADERS) or (
                "Activity Type" in cells and "Date" in cells
                and any(c.startswith("Distance") for c in cells)):
            return "garmin", f"{rel} has the Garmin Connect activities header (runner {runner!r})"
    from analysis.ingest.watch import runner_activity_folders

    if folders := runner_activity_folders(raw_dir):
        runner, folder = folders[0]
        return "activity", (f"{len(folders)} runner folder(s) hold FIT/GPX/TCX activity files "
                            f"(first: {runner!r})" if folder != raw_dir
                            else "the folder holds FIT/GPX/TCX activity files (one runner)")
    seen = sorted(p.relative_to(raw_dir).as_posix() for p in raw_dir.rglob("*") if p.is_file())
    listing = ", ".join(seen[:10]) + (", ..." if len(seen) > 10 else "") if seen else "no files"
    raise InputFileError(
        "cannot tell the format: expected runners.csv + runs.csv (canonical), a Lövdal day "
        f"file, Strava/Garmin activities exports or activity files; found {listing}", file=raw_dir)
