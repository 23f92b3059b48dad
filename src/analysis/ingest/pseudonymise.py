"""Pseudonymisation at ingest: salted hashes for IDs, no free text.

Runner IDs (and shoe IDs, which in exports are gear names such as "Anna's Pegasus") are
replaced by ``HMAC-SHA256(salt, id)`` truncated to :data:`PSEUDONYM_HEX` hex digits, so the
same salt gives the same pseudonym in every table and every build, and without the salt
the mapping cannot be recomputed from a list of guessed names. Path components of
``source_file`` that are runner folder names are replaced the same way. Every column that is
not part of the data contract (free text such as activity names, descriptions, notes) is
dropped; measured ``x_`` columns are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd

from analysis.errors import KneeloadError
from analysis.ingest._io import SOURCE_ISSUE, FileInfo
from analysis.ingest.diary import SOURCE_COLUMN
from analysis.schemas import (
    PAIN_OPTIONAL,
    PAIN_REQUIRED,
    PROVENANCE,
    RUNNERS_OPTIONAL,
    RUNNERS_REQUIRED,
    RUNS_OPTIONAL,
    RUNS_REQUIRED,
    SHOES_OPTIONAL,
    SHOES_REQUIRED,
    SOURCE_FILE,
)

if TYPE_CHECKING:
    from analysis.ingest import RawTables

SALT_ENV = "KNEELOAD_ID_SALT"
PSEUDONYM_HEX = 16  # 64 bits: collisions negligible for study sizes (< 1e-9 for 1e5 IDs)
PSEUDONYM_PREFIX = "p"
#: Salts shorter than this are refused (a short salt can be brute-forced with the IDs).
MIN_SALT_CHARS = 16
CONTRACT = {
    "runners": (*RUNNERS_REQUIRED, *RUNNERS_OPTIONAL),
    "runs": (*RUNS_REQUIRED, *RUNS_OPTIONAL, "distance_unit"),
    "pain": (*PAIN_REQUIRED, *PAIN_OPTIONAL),
    "shoes": (*SHOES_REQUIRED, *SHOES_OPTIONAL),
}
KEEP_ALWAYS = (*PROVENANCE, SOURCE_ISSUE, SOURCE_COLUMN)


def resolve_salt(salt: str | None = None) -> str:
    """``salt`` or ``$KNEELOAD_ID_SALT``; raises a one-line error when neither is usable."""
    value = salt if salt is not None else os.environ.get(SALT_ENV)
    if not value:
        raise KneeloadError(f"pseudonymisation needs a secret salt: set {SALT_ENV} "
                            f"(at least {MIN_SALT_CHARS} characters) and keep it private")
    if len(value) < MIN_SALT_CHARS:
        raise KneeloadError(f"the pseudonymisation salt is too short ({len(value)} "
                            f"characters; use at least {MIN_SALT_CHARS})")
    return value


def pseudonym(values: pd.Series, *, salt: str) -> pd.Series:
    """Salted hash of each value (missing stays missing), e.g. ``p3f9a0c...``."""
    key = salt.encode("utf-8")
    uniques = values.dropna().unique()
    mapping = {
        v: PSEUDONYM_PREFIX + hmac.new(key, str(v).strip().encode("utf-8"),
                                       hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
        for v in uniques
    }
    return values.map(mapping).astype("str")


def _rename_path(name: str, folders: dict[str, str]) -> str:
    parts = name.split("/")
    return "/".join([folders.get(p, p) for p in parts[:-1]] + parts[-1:])


def pseudonymise(raw: RawTables, *, salt: str | None = None) -> RawTables:
    """Replace runner and shoe IDs by salted hashes and drop free-text columns.

    Parameters
    ----------
    raw
        Tables as read.
    salt
        Secret salt; default ``$KNEELOAD_ID_SALT``.
    """
    key = resolve_salt(salt)
    tables = {}
    ids = pd.concat([t["runner_id"] for t in raw.tables().values() if "runner_id" in t])
    folder_names = {str(v): str(p) for v, p in
                    zip(ids.dropna().unique(), pseudonym(pd.Series(ids.dropna().unique(),
                                                                   dtype="str"), salt=key),
                        strict=True)}
    for name, frame in raw.tables().items():
        keep = [c for c in frame.columns
                if c in CONTRACT[name] or c in KEEP_ALWAYS or c.startswith("x_")]
        out = frame[keep].copy()
        for col in ("runner_id", "shoe_id"):
            if col in out:
                out[col] = pseudonym(out[col].astype("str").str.strip(), salt=key)
        if len(out):
            out[SOURCE_FILE] = out[SOURCE_FILE].map(
                lambda f: _rename_path(f, folder_names)).astype("str")
        tables[name] = out
    files = {_rename_path(k, folder_names): v for k, v in raw.files.items()}
    info = {_rename_path(k, folder_names): FileInfo(_rename_path(k, folder_names), i.encoding,
                                                    i.delimiter, i.lines)
            for k, i in raw.file_info.items()}
    notes = []
    for note in raw.notes:
        for folder, hashed in folder_names.items():
            note = note.replace(f"{folder}/", f"{hashed}/")
        notes.append(note)
    notes.append("pseudonymised: runner and shoe IDs are salted hashes, free text dropped")
    return replace(raw, **tables, files=files, file_info=info, notes=notes)
