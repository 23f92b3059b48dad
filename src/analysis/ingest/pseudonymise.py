"""Pseudonymisation at ingest: keyed hashes for IDs, no free text.

Runner IDs are replaced by :func:`analysis.privacy.pseudonymise` (``r-`` + 12 hex digits of
HMAC-SHA256 with the secret salt ``KNEELOAD_ID_SALT``), the same function the reports use.
Shoe IDs, which in exports are gear names such as "Anna's Pegasus", get the same hash with
an ``s-`` prefix. The same salt gives the same pseudonym in every table and build; without
the salt the mapping cannot be recomputed from guessed names. Runner folder names in
``source_file`` and the readers' notes are replaced the same way, and so is a runner named
after the raw folder itself (one export directly in it; the build hashes that folder's name
in ``panel_meta.json`` too). Every column that is not part of the data
contract (free text such as activity names, descriptions, notes) is dropped; measured
``x_`` columns are kept.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd

from analysis.errors import KneeloadError
from analysis.ingest._io import (
    ACTIVITY_ISSUE,
    DATE_AS_WRITTEN,
    HAS_TIME,
    MISSING_TOKENS,
    SOURCE_ISSUE,
    FileInfo,
)
from analysis.ingest.diary import SOURCE_COLUMN
from analysis.privacy import ID_SALT_ENV, PSEUDONYM_PREFIX, hide_folders, id_salt
from analysis.privacy import pseudonym as pseudonym_of
from analysis.privacy import pseudonymise as _hash_ids
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

SHOE_PREFIX = "s-"
CONTRACT = {
    "runners": (*RUNNERS_REQUIRED, *RUNNERS_OPTIONAL),
    "runs": (*RUNS_REQUIRED, *RUNS_OPTIONAL, "distance_unit"),
    "pain": (*PAIN_REQUIRED, *PAIN_OPTIONAL),
    "shoes": (*SHOES_REQUIRED, *SHOES_OPTIONAL),
}
KEEP_ALWAYS = (*PROVENANCE, SOURCE_ISSUE, ACTIVITY_ISSUE, SOURCE_COLUMN, HAS_TIME,
               DATE_AS_WRITTEN)


def resolve_salt(salt: str | None = None) -> str:
    """``salt`` or ``$KNEELOAD_ID_SALT``; raises a one-line error when neither is set."""
    value = salt or id_salt()
    if not value:
        raise KneeloadError(f"pseudonymisation needs a secret salt: set {ID_SALT_ENV} "
                            "and keep it private")
    return value


def pseudonym(values: pd.Series, *, salt: str, prefix: str = PSEUDONYM_PREFIX) -> pd.Series:
    """Keyed hash of each trimmed value (missing stays missing), e.g. ``r-3f9a0c1b2d4e``."""
    text = values.astype("str").str.strip()
    text = text.mask(text.str.lower().isin(MISSING_TOKENS))  # clean must still see them
    hashed = _hash_ids(text, salt=salt)
    if prefix != PSEUDONYM_PREFIX:
        hashed = prefix + hashed.str.removeprefix(PSEUDONYM_PREFIX)
    return hashed.astype("str")


def _folder_names(names: list[str], *, salt: str) -> dict[str, str]:
    """Every folder part of ``names`` -> its pseudonym, by :func:`analysis.privacy.hide_folders`
    (the one folder-hiding rule: every folder, not only those named like a runner ID)."""
    folders = {part for name in names for part in name.split("/")[:-1]}
    return {f: hide_folders(f"{f}/x", salt=salt).removesuffix("/x") for f in folders}


#: A quoted name in a reader's note (``'alice'`` or ``"o'neil"``, as ``repr`` writes it).
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def _hidden_note(note: str, folders: dict[str, str], ids: set[str], *, salt: str) -> str:
    """A reader's note with no runner name left: every folder of a path replaced by its
    pseudonym, and every quoted name that is a folder or a runner ID by the same pseudonym
    (a single export directly in the raw folder belongs to a runner named after that
    folder, which is no folder part of any file name: the note names it quoted)."""
    for folder, hashed in folders.items():
        note = note.replace(f"{folder}/", f"{hashed}/")

    def hide(match: re.Match[str]) -> str:
        name = match.group(1) if match.group(1) is not None else match.group(2)
        if name in folders:
            return f"'{folders[name]}'"
        if name.strip() in ids:
            return f"'{pseudonym_of(name.strip(), salt=salt)}'"
        return match.group(0)

    return _QUOTED.sub(hide, note)


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
        Secret key; default ``$KNEELOAD_ID_SALT``.
    """
    key = resolve_salt(salt)
    tables = {}
    sources = {str(f) for t in raw.tables().values() if len(t) and SOURCE_FILE in t
               for f in t[SOURCE_FILE].dropna().unique()}
    folder_names = _folder_names(sorted(sources | set(raw.files) | set(raw.file_info)),
                                 salt=key)
    for name, frame in raw.tables().items():
        keep = [c for c in frame.columns
                if c in CONTRACT[name] or c in KEEP_ALWAYS or c.startswith("x_")]
        out = frame[keep].copy()
        if "runner_id" in out:
            out["runner_id"] = pseudonym(out["runner_id"], salt=key)
        if "shoe_id" in out:
            out["shoe_id"] = pseudonym(out["shoe_id"], salt=key, prefix=SHOE_PREFIX)
        if len(out):
            out[SOURCE_FILE] = out[SOURCE_FILE].map(
                lambda f: _rename_path(f, folder_names)).astype("str")
        tables[name] = out
    files = {_rename_path(k, folder_names): v for k, v in raw.files.items()}
    info = {_rename_path(k, folder_names): FileInfo(_rename_path(k, folder_names), i.encoding,
                                                    i.delimiter, i.lines)
            for k, i in raw.file_info.items()}
    ids = {str(v).strip() for t in (raw.runners, raw.runs, raw.pain) if "runner_id" in t
           for v in t["runner_id"].dropna().unique()}
    notes = [_hidden_note(note, folder_names, ids, salt=key) for note in raw.notes]
    notes.append("pseudonymised: runner and shoe IDs are salted hashes, free text dropped")
    refs = raw.hr_references
    if refs is not None:
        refs = refs.assign(runner_id=pseudonym(refs["runner_id"], salt=key))
    return replace(raw, **tables, files=files, file_info=info, notes=notes, hr_references=refs)
