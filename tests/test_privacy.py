"""analysis.privacy: the keyed-hash pseudonym, its vectorised form, the one file fingerprint
and the one folder-name-hiding rule (reports and the build's input hashes use the same one).

References: ``hmac``/``hashlib`` of the standard library, written out here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from analysis import privacy, reports
from analysis.pipeline import build
from analysis.privacy import (
    HASH_CHUNK_BYTES,
    hide_folders,
    id_salt,
    pseudonym,
    pseudonymise,
    sha256_file,
)
from analysis.reports import manifest

SALT = "test-salt"
STRAVA_EXPORT = Path(__file__).parent / "fixtures" / "ingest" / "strava_export"


def _reference(value: str, salt: str) -> str:
    return "r-" + hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()[:12]


def test_pseudonym_is_hmac_sha256_cut_to_12_hex_digits() -> None:
    assert pseudonym("NOV001", salt="k") == _reference("NOV001", "k")
    assert re.fullmatch(reports.PSEUDONYM_PATTERN, pseudonym("NOV001", salt="k"))
    assert pseudonym("NOV001", salt="k2") != pseudonym("NOV001", salt="k")


def test_pseudonymise_hashes_each_id_and_keeps_missing_values() -> None:
    ids = pd.Series(["NOV001", None, "NOV002", "NOV001"], dtype="str", name="runner_id")
    hashed = pseudonymise(ids, salt="k")
    reference = _reference("NOV001", "k")
    assert hashed.iloc[0] == hashed.iloc[3] == reference
    assert hashed.iloc[2] == _reference("NOV002", "k")
    assert pd.isna(hashed.iloc[1])
    assert hashed.name == "runner_id" and hashed.index.equals(ids.index)
    assert pseudonymise(ids, salt="other").iloc[0] != reference  # another salt unlinks
    assert pseudonymise(ids, salt=None) is ids


def test_id_salt_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(privacy.ID_SALT_ENV, "")
    assert id_salt() is None
    monkeypatch.setenv(privacy.ID_SALT_ENV, SALT)
    assert id_salt() == SALT


def test_sha256_file_is_hashlib_on_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    data = bytes(range(256)) * (HASH_CHUNK_BYTES // 128 + 3)  # more than one chunk
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert manifest.sha256_file is sha256_file  # the one fingerprint, re-exported
    # the download checksums hash with the same function (review: fetch had its own copy)
    from analysis.ingest import fetch

    assert fetch.sha256_file is sha256_file and fetch.file_digest is privacy.file_digest
    assert not hasattr(fetch, "HASH_CHUNK_BYTES")
    assert privacy.file_digest(path, algorithm="md5") == hashlib.md5(data).hexdigest()


def test_hide_folders_hashes_every_folder_and_keeps_the_file_name() -> None:
    assert hide_folders("runs.csv", salt=SALT) == "runs.csv"
    assert hide_folders("alice/activities.csv", salt=SALT) == (
        _reference("alice", SALT) + "/activities.csv")
    # every folder, not only those that are runner IDs; trimmed like an ID at ingest
    assert hide_folders("garmin/ bob /x.csv", salt=SALT) == (
        f"{_reference('garmin', SALT)}/{_reference('bob', SALT)}/x.csv")


def test_a_report_hides_the_export_folders_of_its_audit(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A build without --pseudonymise, a report with a salt: the cleaning table shows the
    export folders (named after the runners) as the runners' pseudonyms."""
    build(STRAVA_EXPORT, tmp_path / "p", format="strava", today=date(2026, 1, 1))
    view = reports.load_cohort(tmp_path / "p", "club", min_cohort_size=1, salt=SALT)
    files = set(view.cleaning["files"])
    assert _reference("alice", SALT) + "/activities.csv" in files
    assert not any(name.startswith(("alice/", "bob/")) for name in files)
    assert view.cleaning["notes"] == []
    monkeypatch.delenv(privacy.ID_SALT_ENV, raising=False)
    plain = reports.load_cohort(tmp_path / "p", "club", min_cohort_size=1)
    assert "alice/activities.csv" in plain.cleaning["files"]
