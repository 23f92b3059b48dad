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
from collections.abc import Callable
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
from analysis.privacy import ID_SALT_ENV, PSEUDONYM_PREFIX, hide_folder, id_salt
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
    """Every folder part of ``names`` -> its pseudonym, by :func:`analysis.privacy.hide_folder`
    (the one folder-hiding rule: every folder, not only those named like a runner ID)."""
    folders = {part for name in names for part in name.split("/")[:-1]}
    return {f: hide_folder(f, salt=salt) for f in folders}


def _note_hider(folders: dict[str, str], ids: set[str], *, salt: str) -> Callable[[str], str]:
    """A function that leaves no runner name in a reader's note: every folder part of a
    path (at the start of a part, longest name first, so ``aron/`` is not read as ``ron/``)
    replaced by its pseudonym, and every quoted name that is a folder or a runner ID, in
    each form a note writes it (``repr``, plainly quoted), by the same pseudonym, found as a
    plain substring (review: matching quoted stretches left to right paired the apostrophe
    of a file name such as ``activities_Jan'25.csv`` with the name's opening quote). A
    single export directly in the raw folder belongs to a runner named after that folder,
    which is no folder part of any file name: the notes name it quoted. (A word that equals
    a folder or a runner ID is hidden even where it means something else, such as a cohort
    'all' or a ``GPX/`` folder: hiding too much costs a clearer note, too little a name.)"""
    names = {**{i: pseudonym_of(i, salt=salt) for i in ids}, **folders}
    quoted = {form: f"'{hidden}'" for name, hidden in names.items()
              for form in (repr(name), f"'{name}'", f'"{name}"')}
    longest_first = sorted(quoted, key=len, reverse=True)
    parts = (re.compile(r"(?<![^\s'\"(/])(" + "|".join(
        re.escape(f) for f in sorted(folders, key=len, reverse=True)) + ")/")
        if folders else None)

    def hide(note: str) -> str:
        if parts is not None:
            note = parts.sub(lambda m: f"{folders[m.group(1)]}/", note)
        present = [form for form in longest_first if form in note]
        if present:
            note = re.sub("|".join(map(re.escape, present)), lambda m: quoted[m.group(0)], note)
        return note

    return hide


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
    hide = _note_hider(folder_names, ids, salt=key)
    notes = [hide(note) for note in raw.notes]
    notes.append("pseudonymised: runner and shoe IDs are salted hashes, free text dropped")
    refs = raw.hr_references
    if refs is not None:
        refs = refs.assign(runner_id=pseudonym(refs["runner_id"], salt=key))
    return replace(raw, **tables, files=files, file_info=info, notes=notes, hr_references=refs)
