"""Pseudonymous runner identifiers: one keyed hash used by ingest and reports alike.

When the environment variable ``KNEELOAD_ID_SALT`` is set, every runner identifier that
leaves the package (reports, index, figures) is replaced by ``r-`` plus the first
:data:`PSEUDONYM_HEX_CHARS` hex digits of HMAC-SHA256(salt, id). HMAC with a secret key
(rather than a bare hash) is what stops a reader from re-identifying runners by hashing
every plausible ID (NIST SP 800-107 rev. 1, section 5.3: keyed hashes for pseudonyms;
see also ICO "Pseudonymisation" guidance). The same salt gives the same pseudonym, so
reports of one study stay comparable across runs; a different salt unlinks them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import numpy as np
import pandas as pd

#: Environment variable holding the secret salt (key) of the pseudonymisation hash.
ID_SALT_ENV = "KNEELOAD_ID_SALT"
#: Prefix that marks an identifier as a pseudonym.
PSEUDONYM_PREFIX = "r-"
#: Hex digits kept from the HMAC (48 bits). Birthday bound: the chance of any collision
#: among n runners is about n^2 / 2^49, below 1e-6 for n < 16,000.
PSEUDONYM_HEX_CHARS = 12
#: Bytes read at a time by :func:`file_digest` (memory stays flat for any file size).
HASH_CHUNK_BYTES = 1 << 20
#: The file fingerprint's hash (:func:`sha256_file`).
FINGERPRINT_ALGORITHM = "sha256"


def file_digest(path: str | Path, *, algorithm: str = FINGERPRINT_ALGORITHM) -> str:
    """Hex digest of a file's bytes by ``algorithm`` (a :func:`hashlib.new` name), read in
    :data:`HASH_CHUNK_BYTES` chunks: the one file hashing, for :func:`sha256_file` and the
    checksums of downloaded datasets (:mod:`analysis.ingest.fetch`)."""
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (the one file fingerprint: raw inputs in
    ``panel_meta.json``, report outputs in the manifest, ``SHA256SUMS`` of a fetch)."""
    return file_digest(path)


def id_salt() -> str | None:
    """The pseudonymisation salt from ``KNEELOAD_ID_SALT``, or None when unset or empty."""
    salt = os.environ.get(ID_SALT_ENV, "")
    return salt or None


def pseudonym(runner_id: str, *, salt: str) -> str:
    """One runner's pseudonym: ``r-`` + 12 hex digits of HMAC-SHA256(salt, runner_id)."""
    digest = hmac.new(salt.encode("utf-8"), str(runner_id).encode("utf-8"), hashlib.sha256)
    return PSEUDONYM_PREFIX + digest.hexdigest()[:PSEUDONYM_HEX_CHARS]


def pseudonymise(ids: pd.Series, *, salt: str | None) -> pd.Series:
    """Replace runner identifiers by their keyed-hash pseudonyms (missing values stay missing).

    Parameters
    ----------
    ids
        Runner identifiers (any dtype; compared as strings).
    salt
        Secret key; ``None`` returns ``ids`` unchanged (the data contract requires
        identifiers to be pseudonymous codes already, ``docs/data-contract.md``).

    Returns
    -------
    pd.Series
        Same index and name, string dtype. Each distinct identifier is hashed once.
    """
    if salt is None:
        return ids
    codes, uniques = pd.factorize(ids.astype("str"), sort=False)
    hashed = np.array([pseudonym(u, salt=salt) for u in uniques] or [""], dtype=object)
    out = pd.Series(hashed[np.where(codes >= 0, codes, 0)], index=ids.index, name=ids.name,
                    dtype="str")
    return out.where(ids.notna())


#: Separator of the folder parts in the relative file names the audit and meta carry.
PATH_SEPARATOR = "/"


def hide_folder(folder: str, *, salt: str) -> str:
    """One folder's name as :func:`hide_folders` writes it: :func:`pseudonym` of the trimmed
    name (a folder named after a runner gets that runner's pseudonym)."""
    return pseudonym(folder.strip(), salt=salt)


def hide_folders(name: str, *, salt: str) -> str:
    """A relative file name with every folder name replaced by its pseudonym (the one
    folder-name-hiding rule: exports often come as one folder per runner, named after them).

    Each folder part (trimmed) becomes :func:`pseudonym` of it, so a folder that is a runner's
    ID gets that runner's pseudonym; the file name, the last part, is kept:
    ``"alice/activities.csv"`` -> ``"r-<12 hex>/activities.csv"``.

    Parameters
    ----------
    name
        Path relative to the raw folder, parts separated by ``/`` (``Path.as_posix()``).
    salt
        Secret key of the hash.

    Returns
    -------
    str
        The same path with hidden folder names; a name without folders is returned as is.
    """
    *folders, file_name = name.split(PATH_SEPARATOR)
    return PATH_SEPARATOR.join([*(hide_folder(f, salt=salt) for f in folders), file_name])
