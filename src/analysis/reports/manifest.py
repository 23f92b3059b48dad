"""The reports folder's record: per-cohort outcomes, input fingerprints, atomic writes.

Layout of a reports folder (``docs/reports.md``)::

    REPORTS_DIR/index.html                  every cohort: status, size, headline estimates, link
    REPORTS_DIR/manifest.json               per cohort: input hashes, parameters, template hash,
                                            package version, start, end, status, error, outputs
    REPORTS_DIR/<cohort>/report.ipynb       the executed notebook
    REPORTS_DIR/<cohort>/report.html        the same without code cells
    REPORTS_DIR/<cohort>/summary.json       what the notebook measured (for the index)
    REPORTS_DIR/<cohort>/report.failed.ipynb  the executed notebook of the last failed run

Imports nothing of :mod:`analysis.reports` (the bottom layer of the package, with
:mod:`analysis.reports.parameters`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis import __version__
from analysis.outputs import atomic_write_text, remove_temporaries
from analysis.privacy import sha256_file

MANIFEST_NAME = "manifest.json"
SUMMARY_NAME = "summary.json"
REPORT_FILES = ("report.ipynb", "report.html", SUMMARY_NAME)
FAILED_NOTEBOOK = "report.failed.ipynb"
#: Sub-folders of a cohort folder holding its take-away files, and their file suffixes.
TAKEAWAY_DIRS = ("figures", "tables")
TAKEAWAY_SUFFIXES = (".svg", ".png", ".csv", ".md", ".tex")


def is_takeaway_name(name: str) -> bool:
    """True for an ``outputs_sha256`` key naming a take-away file (``figures/forest.svg``):
    one of :data:`TAKEAWAY_DIRS`, then a file name."""
    folder, _, file = name.partition("/")
    return folder in TAKEAWAY_DIRS and bool(file) and "/" not in file
#: Processed tables whose rows for a cohort determine its report (hashed per cohort): the
#: panel and daily calendar it models and plots, the runners it lists and the clean runs,
#: pain reports and shoes whose source files its data-quality table counts.
COHORT_TABLES = ("runners", "runs", "pain", "shoes", "panel", "daily")
#: Processed files a report reads whole (hashed whole; volatile keys removed).
SHARED_INPUTS = ("cleaning_report.json", "panel_meta.json")
#: Processed files a report reads only its cohort's part of: the quarantined rows of its
#: runners and its entry of ``counts.json`` (hashed per cohort).
QUARANTINE_NAME = "quarantine.csv"
COUNTS_NAME = "counts.json"
#: panel_meta.json keys that say where and when data was built, not what it is; each
#: cohort's content is hashed separately, so these must not re-run every cohort.
VOLATILE_META_KEYS = ("built_at", "raw_dir", "input_sha256", "dataset", "package_version")
#: Manifest parameter recording which salt made the pseudonyms (None: no salt), so that
#: --changed-only re-runs every cohort when the salt changes. It is the pseudonym of a
#: fixed string, which reveals nothing the pseudonyms in the reports do not.
PSEUDONYM_CHECK = "id_pseudonym_check"
#: Hex digits of sha256 appended to a cohort folder name that had characters replaced.
SAFE_NAME_HASH_CHARS = 8
#: Characters of a cohort label kept in its folder name; a longer label is cut and gets the
#: hash (file systems allow 255 bytes per name; a 300-character label must not fail).
SAFE_NAME_MAX_CHARS = 64

Status = str  # "ok" | "failed" | "suppressed" | "skipped" | "interrupted" | "not run"
#: What the index and the run summary show for a rendered report whose model has problems
#: (``summary.json`` ``status: "warning"``); the manifest keeps the run status ``ok``.
WARNING_STATUS = "warning"


@dataclass
class CohortOutcome:
    """The result of one cohort's report run (one manifest entry)."""

    cohort: str
    status: Status
    runners: int | None
    parameters: dict[str, Any]
    input_sha256: dict[str, str]
    template_sha256: str
    package_version: str = __version__
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    outputs_sha256: dict[str, str] = field(default_factory=dict)
    last_ok: str | None = None

    @property
    def problems(self) -> list[str]:
        """The model's problems from this cohort's summary (empty when it has none)."""
        return list((self.summary or {}).get("problems") or [])

    @property
    def shown_status(self) -> str:
        """The status the index and the run summary show: ``warning`` for a report whose
        model has problems, ``skipped (warning)`` for a kept one, else :attr:`status`."""
        if self.problems and self.status == "ok":
            return WARNING_STATUS
        if self.problems and self.status == "skipped":
            return f"skipped ({WARNING_STATUS})"
        return self.status

    @property
    def fingerprint(self) -> str:
        """Hash of everything that determines the report (for ``--changed-only``)."""
        payload = json.dumps(
            [self.parameters, self.input_sha256, self.template_sha256, self.package_version],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> CohortOutcome:
        """Rebuild an outcome from its manifest entry."""
        return cls(**{k: entry[k] for k in cls.__dataclass_fields__ if k in entry})


# --- input fingerprints ----------------------------------------------------------------------


def cohort_input_hashes(processed_dir: str | Path, cohorts: Sequence[str]
                        ) -> dict[str, dict[str, str]]:
    """sha256 per cohort of every input its report reads.

    That is its rows in each of :data:`COHORT_TABLES`, its quarantined rows
    (``quarantine.csv``, rows of its runners), its entry of ``counts.json``, and the whole
    :data:`SHARED_INPUTS`. A change to one cohort's data changes only that cohort's hashes,
    so ``--changed-only`` re-runs only it. Row hashes are ``pandas.util.hash_pandas_object``
    over all columns, in file order, with the column names and dtypes in the digest.
    """
    import pandas as pd

    processed = Path(processed_dir)
    runners = pd.read_parquet(processed / "runners.parquet")
    cohort_of = runners.set_index("runner_id")["cohort"]
    tables = {f"{name}.parquet": pd.read_parquet(processed / f"{name}.parquet")
              for name in COHORT_TABLES if (processed / f"{name}.parquet").is_file()}
    quarantine = processed / QUARANTINE_NAME
    if quarantine.is_file():
        from analysis.csvsafe import restore_formulas  # runner IDs as read, not as defused

        rows = restore_formulas(pd.read_csv(quarantine, dtype=str, keep_default_na=False))
        if "runner_id" in rows.columns:
            tables[QUARANTINE_NAME] = rows
    shared = {name: _json_digest(processed / name) for name in SHARED_INPUTS
              if (processed / name).is_file()}
    counts = json.loads((processed / COUNTS_NAME).read_text()).get("cohorts", {}) \
        if (processed / COUNTS_NAME).is_file() else {}
    out: dict[str, dict[str, str]] = {c: dict(shared) for c in cohorts}
    for cohort in cohorts:
        out[cohort][f"{COUNTS_NAME}[{cohort}]"] = hashlib.sha256(
            json.dumps(counts.get(cohort), sort_keys=True).encode()).hexdigest()
    for name, table in tables.items():
        row_hash = pd.util.hash_pandas_object(table, index=False).to_numpy()
        owner = table["runner_id"].map(cohort_of).to_numpy(dtype=object)
        schema = json.dumps([[str(c), str(t)] for c, t in table.dtypes.items()]).encode()
        for cohort in cohorts:
            digest = hashlib.sha256(schema)
            digest.update(row_hash[owner == cohort].tobytes())
            out[cohort][f"{name}[{cohort}]"] = digest.hexdigest()
    return out


def _json_digest(path: Path) -> str:
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in VOLATILE_META_KEYS}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# --- the manifest ----------------------------------------------------------------------------


def load_manifest(out: Path) -> dict[str, Any]:
    """The manifest of a reports folder (``{"cohorts": {}}`` when there is none yet)."""
    path = out / MANIFEST_NAME
    if not path.is_file():
        return {"cohorts": {}}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:  # cannot happen with atomic writes; start afresh if it does
        return {"cohorts": {}}
    manifest.setdefault("cohorts", {})
    return manifest


def update_manifest(out: Path, manifest: dict[str, Any], outcome: CohortOutcome) -> None:
    """Record one cohort and rewrite the manifest atomically (consistent after any kill)."""
    if outcome.status == "skipped":
        return
    previous = manifest["cohorts"].get(outcome.cohort)
    if outcome.status == "failed" and previous and previous.get("status") in {"ok", "failed"}:
        # the previous good report is still in place: keep pointing at it
        outcome.last_ok = previous.get("finished") if previous.get("status") == "ok" \
            else previous.get("last_ok")
        outcome.outputs_sha256 = previous.get("outputs_sha256") or {}
        outcome.summary = previous.get("summary") or {}
    entry = asdict(outcome)
    entry["fingerprint"] = outcome.fingerprint
    manifest["cohorts"][outcome.cohort] = entry
    manifest["package_version"] = __version__
    manifest["updated"] = now()
    atomic_write_text(out / MANIFEST_NAME,
                      json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def unchanged(out: Path, previous: Mapping[str, Any] | None, planned: CohortOutcome) -> bool:
    """True when the last successful run had the same fingerprint and its files are intact:
    the report files and the take-away files it recorded (:data:`TAKEAWAY_DIRS`)."""
    if not previous or previous.get("status") != "ok":
        return False
    if previous.get("fingerprint") != planned.fingerprint:
        return False
    folder = out / safe_name(planned.cohort)
    recorded = previous.get("outputs_sha256") or {}
    known = all(name in REPORT_FILES or is_takeaway_name(name) for name in recorded)
    return known and set(REPORT_FILES) <= set(recorded) and all(
        (folder / name).is_file() and not (folder / name).is_symlink()
        and sha256_file(folder / name) == digest
        for name, digest in recorded.items()
    )


# --- files of the folder ---------------------------------------------------------------------


def safe_name(cohort: str) -> str:
    """A folder name for a cohort: letters, digits, dash, underscore, plus a short hash when
    anything had to be replaced (so "a b" and "a_b" never share a folder)."""
    text = str(cohort)
    cleaned = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in text)
    if cleaned == text and cleaned and len(cleaned) <= SAFE_NAME_MAX_CHARS:
        return cleaned
    digest = hashlib.sha256(text.encode()).hexdigest()[:SAFE_NAME_HASH_CHARS]
    return f"{cleaned[:SAFE_NAME_MAX_CHARS]}-{digest}"


def remove_cohort_outputs(folder: Path) -> None:
    """A cohort that became suppressed must not keep an old report with its statistics."""
    for name in (*REPORT_FILES, FAILED_NOTEBOOK):
        (folder / name).unlink(missing_ok=True)


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Temporary files of killed runs in the reports folder, its cohort folders and their
    sub-folders (a report's ``figures/`` and ``tables/``, the index's; the caller holds the
    lock, so nobody else writes). Only kneeload's own temporary names
    (:func:`analysis.outputs.is_temporary_name`) are removed: a user's ``.budget.tmp`` or
    ``docs/.report.docx`` stays."""
    def folders_in(folder: Path) -> list[Path]:
        return [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]

    if not out.is_dir():
        return []
    cohorts = folders_in(out)
    return remove_temporaries([out, *cohorts, *(s for c in cohorts for s in folders_in(c))])


def now() -> str:
    """The current UTC time, ISO 8601 to the second (manifest and index timestamps)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__ = [
    "COHORT_TABLES",
    "COUNTS_NAME",
    "FAILED_NOTEBOOK",
    "MANIFEST_NAME",
    "PSEUDONYM_CHECK",
    "QUARANTINE_NAME",
    "REPORT_FILES",
    "SAFE_NAME_MAX_CHARS",
    "SHARED_INPUTS",
    "SUMMARY_NAME",
    "TAKEAWAY_DIRS",
    "TAKEAWAY_SUFFIXES",
    "VOLATILE_META_KEYS",
    "WARNING_STATUS",
    "CohortOutcome",
    "atomic_write_text",
    "cohort_input_hashes",
    "is_takeaway_name",
    "load_manifest",
    "now",
    "remove_cohort_outputs",
    "remove_stale_temporaries",
    "safe_name",
    "sha256_file",
    "unchanged",
    "update_manifest",
]
