"""The activity-file parse cache is keyed by the one file fingerprint,
:func:`analysis.privacy.sha256_file` (chunked reads), and a cache hit does not read the file
into memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from analysis import privacy
from analysis.ingest import activity


def test_the_cache_key_is_privacy_sha256_file(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "broken.fit"
    file.write_bytes(b"not a FIT file" * 1000)
    cache = tmp_path / "cache"
    calls: list[Path] = []

    def counted(path: Path) -> str:
        calls.append(Path(path))
        return privacy.sha256_file(path)

    monkeypatch.setattr(activity, "sha256_file", counted)  # fails if activity has no such name
    first = activity._read_one(str(file), str(cache))
    assert first.parsed and not first.cached and first.reason  # unreadable: cached with reason
    digest = hashlib.sha256(file.read_bytes()).hexdigest()  # independent reference
    assert privacy.sha256_file(file) == digest
    assert activity._cache_path(cache, digest).is_file()
    assert calls == [file]

    def no_whole_read(self: Path) -> bytes:
        raise AssertionError(f"{self} read whole")

    monkeypatch.setattr(Path, "read_bytes", no_whole_read)
    again = activity._read_one(str(file), str(cache))
    hit = activity._cached(file, cache)
    assert again.cached and hit is not None and hit.cached and hit.reason == first.reason
    assert calls == [file, file, file]
