"""Raw folder -> processed folder: ingest, clean, build the exposure panel, write Parquet.

The processed folder is replaced atomically: everything is written into a temporary sibling
folder and swapped into place only when complete, so a crash never leaves half a dataset.
Raw inputs are only ever read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import __version__, schemas
from analysis.clean import CleanResult, clean_tables
from analysis.csvsafe import read_csv as _read_safe_csv
from analysis.csvsafe import write_csv as _write_safe_csv
from analysis.defaults import DEFAULT_EXPOSURE_LAG_DAYS, DEFAULT_PAIN_THRESHOLD
from analysis.episodes import REPORT_COLUMNS as EPISODE_REQUIRED
from analysis.episodes import episodes
from analysis.errors import InputFileError
from analysis.exposures import PanelBuild, build_panel
from analysis.ingest import read_dataset
from analysis.keys import positions
from analysis.memory import heap_for_large_tables
from analysis.outcomes import panel_defaults
from analysis.outputs import OutputFolderError, check_output_folder, process_alive
from analysis.privacy import hide_folder, hide_folders, sha256_file

TABLES = ("runners", "runs", "pain", "shoes")
PROCESSED_MARKER = "panel_meta.json"  # a folder holding it was written by build()
#: Hidden folder of the processed folder that survives rebuilds (parse caches); the activity
#: files' content-keyed parses live in ``<out>/.cache/activity``.
CACHE_FOLDER = ".cache"
ACTIVITY_CACHE = "activity"
#: File written first into a staging folder: it says the folder is a build in progress of
#: kneeload's (a later build removes such a folder once its process is gone).
STAGING_MARKER = ".kneeload-building"
#: ``.<out>.building-<pid>-<random>`` (staging) and ``.<out>.old-<pid>`` (the previous
#: folder during the swap): kneeload's names beside the processed folder.
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>building|old)-(?P<pid>\d+)(?:-[^/]*)?$")
#: Pain-report columns :func:`analysis.episodes.episodes` reads (its docstring), besides
#: the OSTRC columns (names starting with :data:`OSTRC_PREFIX`).
EPISODE_REPORT_COLUMNS = (*EPISODE_REQUIRED, "cohort", "pain")
OSTRC_PREFIX = "ostrc_"
#: Quarantine reasons named when a build keeps no runs or no pain reports.
TOP_REASONS = 3
#: Parquet codec of the processed tables' text columns (dictionary-encoded, then snappy: a
#: free-text column whose dictionary outgrows :data:`PARQUET_DICTIONARY_PAGE_BYTES` is still
#: compressed).
PARQUET_TEXT_COMPRESSION = "snappy"
#: ... and of every other column: none. Each of them is dictionary-encoded until its
#: dictionary outgrows :data:`PARQUET_DICTIONARY_PAGE_BYTES`, then plain: counts, km and
#: minutes (a few thousand distinct values) stay small without a codec, and the window
#: ratios and EWMAs (one distinct value per row, which snappy leaves 1.0-1.7:1) are written
#: as they are. Against snappy on every column and a dictionary on text only (``perf``: 9 %
#: of the 2,000 x 365 build's CPU time in snappy), one write of the 2,000 x 365 daily table
#: took 0.244 s instead of 0.307 s and the panel 0.196 s instead of 0.234 s (median of
#: five), 13 % bigger files (99 and 84 MiB); at 9,000 x 365 (``--big``) 2.33 s instead of
#: 2.88 s and 1.84 s instead of 2.21 s, 18 % and 15 % bigger (797 and 627 MiB). Snappy on
#: every column had been chosen over writing the float columns uncompressed without a
#: dictionary, which wrote 330 MB more at 9,000 x 365 (system time 2.7 -> 3.8 s); lz4 and
#: zstd level 1 measured 1.3x and 1.9x slower than snappy.
PARQUET_COMPRESSION = "none"
#: Largest dictionary page of a column chunk (pyarrow ``dictionary_pagesize_limit``): 4,096
#: distinct float64 values, or about 3,000 runner IDs. A column with more distinct values
#: falls back to plain pages soon, where pyarrow's default (1 MiB) built a dictionary of
#: 131,072 values first (the 2,000 x 365 daily table took 0.39 s to write with it).
PARQUET_DICTIONARY_PAGE_BYTES = 32 << 10
#: Rows per Parquet row group: one group per table up to a million rows (one write per
#: table; the 2,000 x 365 daily table of 730,000 rows is one group).
PARQUET_ROW_GROUP = 1 << 20
#: Tables written at once (pyarrow encodes and compresses without holding the GIL).
WRITE_THREADS = 2


@dataclass
class BuildSummary:
    """What :func:`build` wrote and counted."""

    out_dir: Path
    format: str
    counts: dict[str, Any]
    cleaning: dict[str, Any]
    meta: dict[str, Any]


def build(
    raw_dir: str | Path,
    out_dir: str | Path,
    *,
    format: str = "auto",
    exposure_lag_days: int = DEFAULT_EXPOSURE_LAG_DAYS,
    pain_threshold: float = DEFAULT_PAIN_THRESHOLD,
    lags: Sequence[int] = (),
    unlogged_gaps: str = "rest",
    today: date | None = None,
    pseudonymise: bool = False,
    timezone: str = "UTC",
    distance_unit: str = "km",
    dayfirst: bool | None = None,
    date_format: str | None = None,
) -> BuildSummary:
    """Build the processed folder for one dataset.

    Parameters
    ----------
    raw_dir
        Folder of raw files (see ``docs/data-contract.md``); never written to.
    out_dir
        Processed folder to (re)create: Parquet tables, ``panel.parquet``, audit JSON.
    format
        Input format for :func:`analysis.ingest.read_dataset` (``auto`` detects it).
    exposure_lag_days
        Days between a pain report and the reference day of its exposures (default 7).
    pain_threshold
        ``pain_any`` is ``pain >= pain_threshold`` (NRS 0-10).
    lags, unlogged_gaps
        Passed to :func:`analysis.exposures.build_panel`.
    today
        Reports dated after this day are quarantined as future dates (default: today).
    pseudonymise
        Replace runner and shoe IDs with a keyed hash (``KNEELOAD_ID_SALT``) and drop free
        text at ingest, so nothing identifying reaches the processed folder.
    timezone, distance_unit
        For exports that do not say (Strava dates are UTC; Garmin distances may be miles).
    dayfirst, date_format
        How numeric dates of Strava/Garmin exports are read (``--dayfirst``,
        ``--date-format``); None: detected.

    Activity files are parsed through a content-keyed cache in ``<out>/.cache/activity``,
    kept when the folder is replaced, so a rebuild parses only files that changed.

    Raises
    ------
    KneeloadError
        Bad options or input (see :func:`analysis.ingest.read_dataset`), or a build that keeps
        no runs or no pain reports of a non-empty input (names the top quarantine reasons).
    """
    raw = Path(raw_dir).resolve()
    out = Path(out_dir).resolve()
    if not raw.is_dir():
        raise InputFileError("raw data folder does not exist", file=raw)
    _check_links(raw)
    recover_leftovers(out)
    _check_output_folder(raw, out)

    with heap_for_large_tables(), _Staging(out) as stage:
        # the input fingerprints are hashed while the files are read (hashlib and the
        # Parquet writer release the GIL); each table is written as soon as it is final
        hashes = stage.submit(input_hashes, raw)
        cleaned, read = _read_and_clean(raw, format=format, pseudonymise=pseudonymise,
                                        timezone=timezone, distance_unit=distance_unit,
                                        today=today, dayfirst=dayfirst,
                                        date_format=date_format,
                                        cache_dir=out / CACHE_FOLDER / ACTIVITY_CACHE)
        detected = read.format
        # the clean tables were checked by clean_tables: written while the panel is built
        stage.parquet({name: getattr(cleaned, name) for name in TABLES})
        stage.submit(_write_safe_csv, cleaned.quarantine, stage.folder / "quarantine.csv")

        def write_daily(daily: pd.DataFrame) -> None:
            # its contract at the boundary, then written while the panel's columns are
            # looked up in it
            schemas.check_table(daily, schemas.DAILY_CONTRACT)
            stage.parquet({"daily": daily})

        built = build_panel(
            cleaned.runs,
            cleaned.runners,
            cleaned.pain,
            cleaned.shoes,
            exposure_lag_days=exposure_lag_days,
            pain_threshold=pain_threshold,
            lags=tuple(lags),
            unlogged_gaps=unlogged_gaps,
            pain_cleaned=True,
            on_daily=write_daily,
        )
        # contracts at the boundary before these tables are written, once per table; the
        # vectorised checker, so the build imports no pandera (a breach removes the staging
        # folder with whatever it holds: nothing is swapped in)
        schemas.check_table(built.panel, schemas.PANEL_CONTRACT)
        stage.parquet({"panel": built.panel})
        meta = _build_meta(built, raw, format=detected, pseudonymise=pseudonymise,
                           hashes=hashes.result())
        meta |= _read_meta(read, cleaned)
        meta |= panel_defaults(built.panel, meta, outcome=_panel_outcome(read.outcome,
                                                                          built.panel))
        stage.parquet({"episodes": episodes(_episode_reports(built.panel), built.daily,
                                            threshold=meta["pain_threshold"])})
        counts = _counts(cleaned, built)
        stage.finish({"cleaning_report": cleaned.report, "counts": counts,
                      "audit": built.audit}, meta=meta)
    return BuildSummary(out_dir=out, format=detected, counts=counts,
                        cleaning=cleaned.report, meta=meta)


@dataclass(frozen=True)
class _ReadFacts:
    """What the build keeps of the raw tables once they are freed."""

    format: str
    outcome: str
    hr_references: pd.DataFrame | None
    activity_files: dict[str, Any]
    trimp_methods: dict[str, int]
    records: dict[str, int]
    files: dict[str, set[str]]


def _read_and_clean(raw: Path, *, format: str, pseudonymise: bool, timezone: str,
                    distance_unit: str, today: date | None, dayfirst: bool | None,
                    date_format: str | None, cache_dir: Path
                    ) -> tuple[CleanResult, _ReadFacts]:
    """The clean tables and what the read said; the raw tables are freed on return (they
    are a third of the build's memory and nothing after cleaning reads them).

    Raises
    ------
    KneeloadError
        Runs or pain records were read but none was kept (:func:`_check_kept`).
    """
    tables = read_dataset(raw, format=format, pseudonymise=pseudonymise, timezone=timezone,
                          distance_unit=distance_unit, dayfirst=dayfirst,
                          date_format=date_format, cache_dir=cache_dir)
    cleaned = clean_tables(tables, today=today)
    facts = _ReadFacts(format=tables.format, outcome=tables.outcome,
                       hr_references=tables.hr_references,
                       activity_files=tables.activity_files,
                       trimp_methods=tables.trimp_methods,
                       records={"runs": len(tables.runs), "pain": len(tables.pain)},
                       files={t: set(getattr(tables, t)[schemas.SOURCE_FILE].astype(str)
                                     .unique()) for t in ("runs", "pain")})
    _check_kept(cleaned, facts, raw=raw)
    return cleaned, facts


def _check_kept(cleaned: CleanResult, read: _ReadFacts, *, raw: Path) -> None:
    """A :class:`KneeloadError` when runs or pain records were read and none was kept,
    naming the :data:`TOP_REASONS` most frequent quarantine reasons of that table's files."""
    from analysis.errors import KneeloadError

    for table, label in (("runs", "runs"), ("pain", "pain reports")):
        if not read.records[table] or len(getattr(cleaned, table)):
            continue
        q = cleaned.quarantine
        reasons = q.loc[q["file"].isin(read.files[table]), "reason"].value_counts()
        top = ", ".join(f"{reason} ({n:,})" for reason, n in
                        reasons.head(TOP_REASONS).items())
        raise KneeloadError(f"no {label} kept from {read.records[table]:,} {table} records "
                            f"read; top reasons: {top or 'none'} (quarantine reasons: "
                            "docs/cleaning.md)", file=raw)


def _episode_reports(panel: pd.DataFrame) -> pd.DataFrame:
    """The panel's columns that :func:`analysis.episodes.episodes` reads of its pain reports
    (:data:`EPISODE_REPORT_COLUMNS` and the OSTRC answers), without copying them.

    ``episodes`` takes its member reports' rows of the whole table it is given (for the
    OSTRC columns); given the panel with its ~25 exposure columns, that took 0.3-0.7 s and
    ~150 MiB of the 2,000 x 365 build. ``test_pipeline`` checks the build's episodes equal
    ``episodes`` of the whole panel.
    """
    keep = [c for c in panel.columns
            if c in EPISODE_REPORT_COLUMNS or c.startswith(OSTRC_PREFIX)]
    return panel[keep]


def _panel_outcome(outcome: str, panel: pd.DataFrame) -> str:
    """The reader's outcome, except ``ostrc`` on a panel without OSTRC severity values
    (answers all quarantined or incomplete), which is modelled as NRS pain."""
    from analysis.outcomes import FALLBACK_OUTCOME, OUTCOME_SPECS

    column = OUTCOME_SPECS["ostrc"].column
    if outcome == "ostrc" and (column not in panel or not panel[column].notna().any()):
        return FALLBACK_OUTCOME
    return outcome


def _read_meta(read: _ReadFacts, cleaned: CleanResult) -> dict[str, Any]:
    """``panel_meta.json`` keys from the read: activity files (counts), runs per TRIMP method
    and the heart-rate references of the runners kept (values and sources)."""
    meta: dict[str, Any] = {}
    if read.activity_files:
        meta["activity_files"] = read.activity_files
    if read.trimp_methods:
        meta["trimp_method"] = read.trimp_methods
    refs = read.hr_references
    if refs is not None:
        kept = refs[refs["runner_id"].isin(set(cleaned.runners["runner_id"]))]
        meta["hr_references"] = {
            "runners": _json_records(kept),
            "hr_rest_source": {str(k): int(v) for k, v in
                               kept["hr_rest_source"].value_counts().items()},
            "hr_max_source": {str(k): int(v) for k, v in
                              kept["hr_max_source"].value_counts().items()},
        }
    return meta


def _build_meta(built: PanelBuild, raw: Path, *, format: str, pseudonymise: bool,
                hashes: dict[str, str]) -> dict[str, Any]:
    """``panel_meta.json``: the panel's options, provenance and the input fingerprints
    (``hashes``, :func:`input_hashes` of ``raw``)."""
    meta = {
        **built.meta,
        # the raw folder's name: a participant's, when it holds their export alone
        "dataset": _pseudonymised_name(raw.name) if pseudonymise else raw.name,
        "format": format,
        "pseudonymised": pseudonymise,
        "package_version": __version__,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # Export folders are often named after participants: hash them like the IDs.
        "input_sha256": _pseudonymised_keys(hashes) if pseudonymise else hashes,
    }
    if not pseudonymise:
        meta["raw_dir"] = str(raw)
    return meta


def input_hashes(raw_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``raw_dir`` (:func:`analysis.privacy.sha256_file`, the one
    file fingerprint), keyed by path relative to it."""
    return {path.relative_to(raw_dir).as_posix(): sha256_file(path)
            for path in sorted(p for p in raw_dir.rglob("*") if p.is_file())}


def _check_output_folder(raw: Path, out: Path) -> None:
    """Refuse an output folder that would overwrite raw data, a file or an unrelated folder
    (:func:`analysis.outputs.check_output_folder`, the guard ``report`` uses too).

    The build replaces ``out`` as a whole, so it must be neither the raw folder, nor inside
    it, nor above it, nor an existing file, and an existing ``out`` must be a processed
    folder, empty, or hold only the parse cache a failed build leaves.
    """
    check_output_folder(out, marker=PROCESSED_MARKER, raw=raw, what="output folder",
                        legacy=_only_cache)


def _only_cache(folder: Path) -> bool:
    """True for a folder holding nothing but :data:`CACHE_FOLDER` (a failed build's)."""
    return all(p.name == CACHE_FOLDER for p in folder.iterdir())


def _check_links(raw: Path) -> None:
    """Refuse a raw folder holding a symbolic link that leads outside it.

    Such a link would make the build read (and fingerprint) a file that is not part of the
    dataset; links that stay inside the raw folder are read like the files they name.

    Raises
    ------
    InputFileError
        Naming the first such link and where it points, or the first link of a loop.
    """
    for folder, dirs, files in os.walk(raw):
        for name in sorted([*dirs, *files]):
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            try:
                target = path.resolve()
            except (RuntimeError, OSError) as error:  # a loop of links (3.13: OSError)
                raise InputFileError("symbolic link that leads back to itself (a loop of "
                                     "links); remove the link",
                                     file=path.relative_to(raw).as_posix()) from error
            if target != raw and raw not in target.parents:
                raise InputFileError(f"symbolic link to {target}, outside the raw data "
                                     "folder; copy the file in or remove the link",
                                     file=path.relative_to(raw).as_posix())


def recover_leftovers(out: Path) -> list[Path]:
    """Clean up after builds of ``out`` that were killed; return the folders removed.

    Only kneeload's own names beside ``out`` are touched (:data:`_LEFTOVER`), only when
    the process that made them is gone, and only when they carry kneeload's marker
    (:data:`STAGING_MARKER` in a staging folder, :data:`PROCESSED_MARKER` in a previous
    processed folder). A kill between the two renames of the swap leaves ``out`` missing
    and the previous folder as ``.<out>.old-<pid>``: it is renamed back to ``out`` first.
    """
    parent = out.parent
    if not parent.is_dir():
        return []
    mine = []
    for path in parent.iterdir():
        match = _LEFTOVER.match(path.name)
        if (match and match["name"] == out.name and path.is_dir() and not path.is_symlink()
                and not process_alive(int(match["pid"]))):
            mine.append((match["kind"], path))
    removed = []
    olds = sorted((p for kind, p in mine if kind == "old" and (p / PROCESSED_MARKER).is_file()),
                  key=lambda p: (p / PROCESSED_MARKER).stat().st_mtime)
    if olds and not out.exists():
        olds.pop().rename(out)  # the newest previous folder is the processed folder again
    for kind, path in mine:
        marker = STAGING_MARKER if kind == "building" else PROCESSED_MARKER
        if path.is_dir() and (path / marker).is_file():
            _remove_marked(path, marker=marker)
            removed.append(path)
    return removed


def _remove_marked(folder: Path, *, marker: str) -> None:
    """Delete ``folder`` with its marker last, so a kill half-way leaves it recognisable."""
    for path in folder.iterdir():
        if path.name == marker:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    (folder / marker).unlink(missing_ok=True)
    folder.rmdir()


def _pseudonymised_keys(hashes: dict[str, str]) -> dict[str, str]:
    """Every folder name in the keys replaced by its keyed hash, file names kept
    (:func:`analysis.privacy.hide_folders`, the one folder-hiding rule)."""
    from analysis.ingest.pseudonymise import resolve_salt

    salt = resolve_salt()
    return {hide_folders(key, salt=salt): digest for key, digest in hashes.items()}


def _pseudonymised_name(folder: str) -> str:
    """A folder's name replaced by its keyed hash (:func:`analysis.privacy.hide_folder`)."""
    from analysis.ingest.pseudonymise import resolve_salt

    return hide_folder(folder, salt=resolve_salt())


def _counts(cleaned: CleanResult, built: PanelBuild) -> dict[str, Any]:
    """Records per table, overall and per cohort (``counts.json``)."""
    panel = built.panel
    runners = cleaned.runners
    ids = pd.Index(runners["runner_id"].astype(str))  # unique (the runners contract)
    cohort_code, cohorts = pd.factorize(runners["cohort"].astype(str), sort=True)
    k = len(cohorts)

    def per_cohort(runner_id: pd.Series) -> np.ndarray:
        """Rows of each cohort: each row's runner looked up once per distinct ID."""
        runner = positions(runner_id, ids)
        return np.bincount(cohort_code[runner[runner >= 0]], minlength=k)

    panel_runner = positions(panel["runner_id"], ids)
    # the runners with a panel row: a count per runner, not a sort of every row (np.unique)
    reporting = np.flatnonzero(np.bincount(panel_runner[panel_runner >= 0], minlength=len(ids)))
    columns = {
        "runners": np.bincount(cohort_code, minlength=k),
        "runs": per_cohort(cleaned.runs["runner_id"]),
        "pain_reports": per_cohort(cleaned.pain["runner_id"]),
        "panel_rows": np.bincount(cohort_code[panel_runner[panel_runner >= 0]], minlength=k),
        "runners_with_reports": np.bincount(cohort_code[reporting], minlength=k),
    }
    return {
        "runners": len(runners),
        "runs": len(cleaned.runs),
        "pain_reports": len(cleaned.pain),
        "shoes": len(cleaned.shoes),
        "panel_rows": len(panel),
        "quarantined": sum(f["quarantined"] for f in cleaned.report["files"].values()),
        "merged": sum(f["merged"] for f in cleaned.report["files"].values()),
        "cohorts": {str(name): {col: int(values[j]) for col, values in columns.items()}
                    for j, name in enumerate(cohorts)},
    }


class _Staging:
    """The marked staging folder beside ``out`` that a build writes into while it runs,
    swapped into place by :meth:`finish` (a context manager: on any error the pending
    writes are cancelled or awaited and the folder is removed; the previous ``out`` is as
    it was).

    Writes run on :data:`WRITE_THREADS` threads while the build goes on (:meth:`submit`,
    :meth:`parquet`); an ``OSError`` of a write (read-only folder, full disk, permissions)
    becomes one :class:`~analysis.outputs.OutputFolderError` line, when it is raised and
    when :meth:`finish` collects it.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.folder = Path()
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: list[Future[Any]] = []
        #: folders above ``out`` this build creates (deepest first): removed again, when
        #: empty, if the build fails
        self._made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]

    def __enter__(self) -> _Staging:
        try:
            with self._output_errors():
                self.out.parent.mkdir(parents=True, exist_ok=True)
                self.folder = Path(tempfile.mkdtemp(
                    prefix=f".{self.out.name}.building-{os.getpid()}-", dir=self.out.parent))
                (self.folder / STAGING_MARKER).write_text(
                    f"kneeload build of {self.out.name} in progress\n")
        except BaseException as error:  # no __exit__ for a failed __enter__: clean up here
            self.__exit__(type(error), error, None)
            raise
        self._pool = ThreadPoolExecutor(max_workers=WRITE_THREADS)
        return self

    def __exit__(self, kind: Any, error: BaseException | None, trace: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=error is not None)
        if error is None:
            return
        if self.folder != Path() and self.folder.is_dir():
            _remove_staging(self.folder)
        for folder in self._made:
            try:
                folder.rmdir()
            except OSError:  # not empty (or not ours to remove): leave it and those above
                break

    @contextmanager
    def _output_errors(self) -> Iterator[None]:
        """An ``OSError`` inside is the processed folder's: one line naming it."""
        try:
            yield
        except OSError as error:
            raise OutputFolderError(f"cannot write the processed folder: "
                                    f"{error.strerror or error}", file=self.out) from None

    def submit(self, job: Any, *args: Any) -> Future[Any]:
        """Run ``job(*args)`` on a writer thread; its result (or error) at :meth:`finish`."""
        if self._pool is None:
            raise RuntimeError("bug: _Staging used outside its with block")
        future = self._pool.submit(job, *args)
        self._jobs.append(future)
        return future

    def parquet(self, tables: Mapping[str, pd.DataFrame]) -> None:
        """``<name>.parquet`` of every table (:func:`_write_parquet`), largest first."""
        for name in sorted(tables, key=lambda name: -len(tables[name])):
            self.submit(_write_parquet, tables[name], self.folder / f"{name}.parquet")

    def finish(self, reports: Mapping[str, Any], *, meta: dict[str, Any]) -> None:
        """Wait for every write, write the JSON reports and ``meta`` (last: a complete
        folder has :data:`PROCESSED_MARKER`), keep the parse cache and swap into place."""
        with self._output_errors():
            for job in self._jobs:
                job.result()  # re-raises the first failure
            for name, payload in reports.items():
                _write_json(self.folder / f"{name}.json", payload)
            _write_json(self.folder / PROCESSED_MARKER, meta)
            _keep_cache(self.out, self.folder)
            (self.folder / STAGING_MARKER).unlink()
            _swap_into_place(self.folder, self.out)


def _remove_staging(staging: Path) -> None:
    """Remove a staging folder (and nothing else); errors ignored (a full or read-only
    disk: the next build removes it by its marker)."""
    shutil.rmtree(staging, ignore_errors=True)


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    """One Parquet write per table: every column dictionary-encoded up to
    :data:`PARQUET_DICTIONARY_PAGE_BYTES`, text compressed with
    :data:`PARQUET_TEXT_COMPRESSION` and the other columns with :data:`PARQUET_COMPRESSION`.

    The columns that are not text get min/max statistics (on text they cost a fifth of the
    write time and prune nothing: one row group per table up to a million rows). The Arrow
    table shares the float and integer buffers of the pandas columns (only validity bitmaps
    are new), so the write adds little memory.
    """
    import pyarrow.parquet as pq

    text = [c for c in table.columns
            if pd.api.types.is_string_dtype(table[c]) or table[c].dtype == object
            or isinstance(table[c].dtype, pd.CategoricalDtype)]
    other = [c for c in table.columns if c not in text]
    codec = {c: PARQUET_TEXT_COMPRESSION if c in text else PARQUET_COMPRESSION
             for c in table.columns}
    pq.write_table(_arrow_table(table), path,
                   compression=codec or PARQUET_COMPRESSION, use_dictionary=True,
                   dictionary_pagesize_limit=PARQUET_DICTIONARY_PAGE_BYTES,
                   write_statistics=other or False, row_group_size=PARQUET_ROW_GROUP)


def _arrow_table(table: pd.DataFrame) -> Any:
    """``pyarrow.Table.from_pandas(table, preserve_index=False)``, the same table and schema
    (pandas metadata included), with each float64 column's validity computed by numpy
    (``isnan``, ``packbits``) instead of pyarrow's per-value null check: 0.100 -> 0.071 s
    for the 2,000 x 365 bench's daily table and panel (``perf``: 2.3 % of the build's CPU
    time in that check). ``tests/test_pipeline.py`` compares the two on every dtype."""
    import pyarrow as pa

    try:
        schema = pa.Schema.from_pandas(table, preserve_index=False)
        arrays = []
        for name, field in zip(table.columns, schema, strict=True):
            column = table[name]
            if column.dtype == np.float64:
                arrays.append(_float_array(np.ascontiguousarray(column.to_numpy())))
            else:
                arrays.append(pa.array(column, type=field.type, from_pandas=True))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # a column Arrow cannot take: from_pandas raises its own error, naming the column
        return pa.Table.from_pandas(table, preserve_index=False)
    return pa.Table.from_arrays(arrays, schema=schema)


def _float_array(values: np.ndarray) -> Any:
    """A float64 Arrow array sharing ``values``' buffer, NaN as null (pandas' missing)."""
    import pyarrow as pa

    missing = np.isnan(values)
    nulls = int(np.count_nonzero(missing))
    validity = (pa.py_buffer(np.packbits(~missing, bitorder="little")) if nulls else None)
    return pa.Array.from_buffers(pa.float64(), len(values), [validity, pa.py_buffer(values)],
                                 null_count=nulls)


def _keep_cache(out: Path, staging: Path) -> None:
    """Move ``out``'s :data:`CACHE_FOLDER` into ``staging`` (a rename: same parent folder), so
    the parse cache outlives the swap."""
    cache = out / CACHE_FOLDER
    if cache.is_dir():
        cache.rename(staging / CACHE_FOLDER)


def _swap_into_place(staging: Path, out: Path) -> None:
    """Replace ``out`` with ``staging``; the old folder survives until the new one is in place."""
    if out.exists():
        retired = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(retired)  # a kill from here to the next rename: recover_leftovers
        staging.rename(out)
        _remove_marked(retired, marker=PROCESSED_MARKER)
    else:
        staging.rename(out)


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, pd.DataFrame):
        return _json_records(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``frame.to_dict(orient="records")`` (the same JSON), from each column's ``tolist``:
    Python values, so neither pandas' per-value boxing nor :func:`_json_default` runs per
    cell (9,000 heart-rate references: 0.5 s of the ``--big`` build's main thread)."""
    if not frame.columns.is_unique:  # pandas keeps the last of equal names: its way
        return frame.to_dict(orient="records")
    columns = list(frame.columns)
    if not columns:
        return [{} for _ in range(len(frame))]
    return [dict(zip(columns, row, strict=True))
            for row in zip(*(_json_values(frame[c]) for c in columns), strict=True)]


def _json_values(column: pd.Series) -> list[Any]:
    """A column's Python values, ``pd.NA`` (nullable and Arrow dtypes) as None: ``null``,
    as ``to_dict`` writes it."""
    values = column.tolist()
    if isinstance(column.dtype, np.dtype):
        return values
    return [None if value is pd.NA else value for value in values]


def load_processed(processed_dir: str | Path) -> dict[str, Any]:
    """Read a processed folder back: tables as DataFrames, JSON files as dicts."""
    folder = Path(processed_dir)
    if not (folder / "panel.parquet").is_file():
        raise InputFileError(
            "not a processed folder (no panel.parquet); run 'kneeload build' first", file=folder
        )
    loaded: dict[str, Any] = {
        name: pd.read_parquet(folder / f"{name}.parquet")
        for name in (*TABLES, "daily", "panel")
    }
    for name in ("cleaning_report", "panel_meta", "counts", "audit"):
        path = folder / f"{name}.json"
        loaded[name] = json.loads(path.read_text()) if path.is_file() else {}
    quarantine = folder / "quarantine.csv"
    # formula text was defused on writing (analysis.csvsafe): read back as it was read
    loaded["quarantine"] = (_read_safe_csv(quarantine, text=("value", "runner_id", "column"))
                            if quarantine.is_file() else pd.DataFrame())
    return loaded


#: Build settings :func:`rebuild_panel` may change (the rest are read from ``panel_meta``).
REBUILD_SETTINGS = ("exposure_lag_days", "pain_threshold", "lags", "unlogged_gaps")


def rebuild_panel(processed: Mapping[str, Any], **changes: Any) -> pd.DataFrame:
    """A processed folder's panel rebuilt from its clean tables with build settings changed.

    For sensitivity analyses that need a second build (e.g. ``unlogged_gaps="missing"``
    against the build's rest days): the clean ``runs``/``runners``/``pain``/``shoes`` tables of
    :func:`load_processed` go through the same :func:`~analysis.exposures.build_panel` the
    build ran, with every setting in :data:`REBUILD_SETTINGS` taken from ``panel_meta`` unless
    given in ``changes``. With no changes it returns the stored panel's rows exactly
    (``tests/test_pipeline.py``).
    """
    unknown = sorted(set(changes) - set(REBUILD_SETTINGS))
    if unknown:
        raise InputFileError(f"rebuild_panel cannot change {', '.join(unknown)}; it changes "
                             f"{', '.join(REBUILD_SETTINGS)}")
    meta = processed.get("panel_meta") or {}
    settings = {
        "exposure_lag_days": meta.get("exposure_lag_days", DEFAULT_EXPOSURE_LAG_DAYS),
        "pain_threshold": meta.get("pain_threshold", DEFAULT_PAIN_THRESHOLD),
        "lags": tuple(meta.get("lags") or ()),
        "unlogged_gaps": meta.get("unlogged_gaps", "rest"),
    } | changes
    settings["lags"] = tuple(settings["lags"])
    built = build_panel(processed["runs"], processed["runners"], processed["pain"],
                        processed.get("shoes"), pain_cleaned=True, **settings)
    return built.panel
