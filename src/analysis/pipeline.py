"""Raw folder -> processed folder: ingest, clean, build the exposure panel, write Parquet.

The processed folder is replaced atomically: everything is written into a temporary sibling
folder and swapped into place only when complete, so a crash never leaves half a dataset.
Raw inputs are only ever read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import __version__, schemas
from analysis.clean import CleanResult, clean_tables
from analysis.defaults import DEFAULT_EXPOSURE_LAG_DAYS, DEFAULT_PAIN_THRESHOLD
from analysis.errors import InputFileError
from analysis.exposures import PanelBuild, build_panel
from analysis.ingest import read_dataset

TABLES = ("runners", "runs", "pain", "shoes")
PROCESSED_MARKER = "panel_meta.json"  # a folder holding it was written by build()
HASH_CHUNK_BYTES = 1 << 20
#: Parquet codec of the processed tables (snappy: the fastest writer here; lz4 and zstd
#: level 1 measured 1.3x and 1.9x slower on the 2,000 x 365 panel, bench/bench_build.py).
PARQUET_COMPRESSION = "snappy"
PARQUET_ROW_GROUP = 131_072


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
    """
    raw = Path(raw_dir).resolve()
    out = Path(out_dir).resolve()
    if not raw.is_dir():
        raise InputFileError("raw data folder does not exist", file=raw)
    _check_output_folder(raw, out)

    tables = read_dataset(raw, format=format, pseudonymise=pseudonymise, timezone=timezone,
                          distance_unit=distance_unit)
    cleaned = clean_tables(tables, today=today)
    built = build_panel(
        cleaned.runs,
        cleaned.runners,
        cleaned.pain,
        cleaned.shoes,
        exposure_lag_days=exposure_lag_days,
        pain_threshold=pain_threshold,
        lags=tuple(lags),
        unlogged_gaps=unlogged_gaps,
    )
    # contracts at the boundary before anything is written, once per table
    check_contract(schemas.DAILY, built.daily)
    check_contract(schemas.PANEL, built.panel)
    hashes = input_hashes(raw)
    meta = {
        **built.meta,
        "dataset": raw.name,
        "format": tables.format,
        "pseudonymised": pseudonymise,
        "package_version": __version__,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # Export folders are often named after participants: hash them like the IDs.
        "input_sha256": _pseudonymised_keys(hashes) if pseudonymise else hashes,
    }
    if not pseudonymise:
        meta["raw_dir"] = str(raw)
    counts = _counts(cleaned, built)
    _write_atomically(out, cleaned, built, meta, counts)
    return BuildSummary(out_dir=out, format=tables.format, counts=counts,
                        cleaning=cleaned.report, meta=meta)


def check_contract(schema: Any, table: pd.DataFrame) -> None:
    """Validate the columns ``schema`` names (its checks only look at those: the schemas are
    not strict), so pandera does not copy the whole wide table."""
    named = [c for c in schema.columns if c in table.columns]
    schema.validate(table[named])


def input_hashes(raw_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``raw_dir``, keyed by path relative to it."""
    hashes = {}
    for path in sorted(p for p in raw_dir.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
                digest.update(chunk)
        hashes[path.relative_to(raw_dir).as_posix()] = digest.hexdigest()
    return hashes


def _check_output_folder(raw: Path, out: Path) -> None:
    """Refuse an output folder that would overwrite raw data or an unrelated folder.

    The build replaces ``out`` as a whole, so it must be neither the raw folder, nor inside
    it, nor above it, and an existing ``out`` must be a processed folder (or empty).
    """
    if out == raw or raw in out.parents:
        raise InputFileError("the output folder must not be inside the raw data folder", file=out)
    if out in raw.parents:
        raise InputFileError("the output folder must not contain the raw data folder (the build "
                             "replaces the output folder as a whole)", file=out)
    if out.is_dir() and any(out.iterdir()) and not (out / PROCESSED_MARKER).is_file():
        raise InputFileError(f"the output folder exists and is not a processed folder (no "
                             f"{PROCESSED_MARKER}); choose a new or empty folder", file=out)


def _pseudonymised_keys(hashes: dict[str, str]) -> dict[str, str]:
    """Replace every folder name in the keys by its keyed hash (file names are kept)."""
    from analysis.ingest.pseudonymise import pseudonym, resolve_salt

    salt = resolve_salt()
    renamed = {}
    for key, digest in hashes.items():
        *folders, name = key.split("/")
        hashed = list(pseudonym(pd.Series(folders, dtype="str"), salt=salt)) if folders else []
        renamed["/".join([*hashed, name])] = digest
    return renamed


def _counts(cleaned: CleanResult, built: PanelBuild) -> dict[str, Any]:
    panel = built.panel
    runners = cleaned.runners
    per_cohort = {}
    for cohort, group in runners.groupby("cohort", sort=True):
        ids = set(group["runner_id"])
        cohort_panel = panel[panel["runner_id"].isin(ids)]
        per_cohort[str(cohort)] = {
            "runners": len(ids),
            "runs": int(cleaned.runs["runner_id"].isin(ids).sum()),
            "pain_reports": int(cleaned.pain["runner_id"].isin(ids).sum()),
            "panel_rows": len(cohort_panel),
            "runners_with_reports": int(cohort_panel["runner_id"].nunique()),
        }
    return {
        "runners": len(runners),
        "runs": len(cleaned.runs),
        "pain_reports": len(cleaned.pain),
        "shoes": len(cleaned.shoes),
        "panel_rows": len(panel),
        "quarantined": sum(f["quarantined"] for f in cleaned.report["files"].values()),
        "merged": sum(f["merged"] for f in cleaned.report["files"].values()),
        "cohorts": per_cohort,
    }


def _write_atomically(
    out: Path,
    cleaned: CleanResult,
    built: PanelBuild,
    meta: dict[str, Any],
    counts: dict[str, Any],
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        for name in TABLES:
            _write_parquet(getattr(cleaned, name), staging / f"{name}.parquet")
        _write_parquet(built.daily, staging / "daily.parquet")
        _write_parquet(built.panel, staging / "panel.parquet")
        cleaned.quarantine.to_csv(staging / "quarantine.csv", index=False)
        _write_json(staging / "cleaning_report.json", cleaned.report)
        _write_json(staging / "panel_meta.json", meta)
        _write_json(staging / "counts.json", counts)
        _write_json(staging / "audit.json", built.audit)
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    """Parquet in row groups of :data:`PARQUET_ROW_GROUP` rows, converted one group at a time
    (the whole wide panel as one Arrow table doubled the build's peak memory), with
    dictionary encoding for text columns only (on the panel's float columns it cost half
    the write time and saved no space)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = [c for c in table.columns
            if pd.api.types.is_string_dtype(table[c]) or table[c].dtype == object
            or isinstance(table[c].dtype, pd.CategoricalDtype)]
    first = pa.Table.from_pandas(table.iloc[:PARQUET_ROW_GROUP], preserve_index=False)
    with pq.ParquetWriter(path, first.schema, compression=PARQUET_COMPRESSION,
                          use_dictionary=text or False) as writer:
        writer.write_table(first)
        for start in range(PARQUET_ROW_GROUP, len(table), PARQUET_ROW_GROUP):
            chunk = table.iloc[start:start + PARQUET_ROW_GROUP]
            writer.write_table(pa.Table.from_pandas(chunk, schema=first.schema,
                                                    preserve_index=False))


def _swap_into_place(staging: Path, out: Path) -> None:
    """Replace ``out`` with ``staging``; the old folder survives until the new one is in place."""
    if out.exists():
        retired = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired, ignore_errors=True)
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
        return value.to_dict(orient="records")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


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
    loaded["quarantine"] = pd.read_csv(quarantine) if quarantine.is_file() else pd.DataFrame()
    return loaded
