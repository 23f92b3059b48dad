"""Download public datasets from their DOI, verify checksums, fail in one line when offline.

``fetch_dataset("lovdal2021", dest)`` asks DataverseNL for the file list of
doi:10.34894/UWU9PV, downloads the original CSV files, verifies each against the checksum
DataverseNL publishes for it (and against a pinned sha256 when one is known, or the
``SHA256SUMS`` a previous fetch wrote into ``dest``), and only then moves it into place.
``SHA256SUMS`` (``sha256sum -c`` format) is written next to the files.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from analysis.errors import KneeloadError
from analysis.privacy import file_digest, sha256_file

#: Bytes of a download read (and written) at a time.
DOWNLOAD_CHUNK_BYTES = 1 << 20
SUMS_FILE = "SHA256SUMS"
DATAVERSE_NL = "https://dataverse.nl"
USER_AGENT = "kneeload (https://doi.org/10.34894/UWU9PV fetch)"


@dataclass(frozen=True)
class PublicDataset:
    """A public dataset that :func:`fetch_dataset` knows how to download."""

    doi: str
    base_url: str
    #: file name -> pinned sha256 (None: not pinned; the repository checksum is verified)
    files: dict[str, str | None] = field(default_factory=dict)
    citation: str = ""
    licence: str = ""


DATASETS: dict[str, PublicDataset] = {
    "lovdal2021": PublicDataset(
        doi="10.34894/UWU9PV",
        base_url=DATAVERSE_NL,
        files={"day_approach_maskedID_timeseries.csv": None,
               "week_approach_maskedID_timeseries.csv": None},
        citation="Lövdal S.S., Den Hartigh R.J.R., Azzopardi G. (2021). Injury Prediction in "
                 "Competitive Runners With Machine Learning. IJSPP 16(10):1522-1531",
        licence="CC0 1.0 (check the DOI landing page)",
    ),
}
_ALGORITHMS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}


class FetchError(KneeloadError):
    """A download failed (offline, server error) or a file failed its checksum."""


def verify_sha256(path: str | Path, expected: str) -> str:
    """Check ``path`` against an expected sha256; returns the digest.

    Raises
    ------
    FetchError
        The digest differs (the message shows both).
    """
    got = sha256_file(Path(path))
    if got.lower() != expected.strip().lower():
        raise FetchError(f"sha256 mismatch: expected {expected.strip().lower()}, got {got}",
                         file=Path(path).name)
    return got


def read_sums(folder: Path) -> dict[str, str]:
    """``SHA256SUMS`` in ``folder`` as {file name: sha256} (empty when absent)."""
    path = folder / SUMS_FILE
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def _open(url: str, *, timeout_s: float, what: str, doi: str, dest: Path):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        host = urllib.parse.urlsplit(url).netloc
        raise FetchError(
            f"cannot download {what} from {host} ({reason}); offline? Download the files "
            f"from https://doi.org/{doi} by hand into {dest}") from exc


def fetch_dataset(
    name: str,
    dest: str | Path,
    *,
    base_url: str | None = None,
    timeout_s: float = 60.0,
) -> list[Path]:
    """Download a public dataset into ``dest`` and verify every file.

    Parameters
    ----------
    name
        Key of :data:`DATASETS` (``"lovdal2021"``).
    dest
        Folder to write into (created); becomes a raw folder for ``kneeload build``.
    base_url
        Repository URL (default the dataset's; tests point it at a closed local port).
    timeout_s
        Network timeout per request, seconds.

    Returns
    -------
    list of Path
        The verified files, plus ``SHA256SUMS``.

    Raises
    ------
    FetchError
        Offline or server error (one line, says where to download by hand), or a checksum
        mismatch (the bad download is deleted).
    """
    if name not in DATASETS:
        raise KneeloadError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    dest = Path(dest)
    base = (base_url or spec.base_url).rstrip("/")
    query = urllib.parse.urlencode({"persistentId": f"doi:{spec.doi}"})
    with _open(f"{base}/api/datasets/:persistentId/?{query}", timeout_s=timeout_s,
               what=f"the {name} file list", doi=spec.doi, dest=dest) as response:
        try:
            entries = json.load(response)["data"]["latestVersion"]["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise FetchError(f"unexpected answer from {base} (not a Dataverse file list)",
                             file=f"doi:{spec.doi}") from exc
    listed = {}
    for entry in entries:
        data_file = entry["dataFile"]
        original = data_file.get("originalFileName") or data_file.get("filename", "")
        if original in spec.files:
            listed[original] = data_file
    missing = sorted(set(spec.files) - set(listed))
    if missing:
        raise FetchError(f"the repository no longer lists {', '.join(missing)}",
                         file=f"doi:{spec.doi}")
    dest.mkdir(parents=True, exist_ok=True)
    previous = read_sums(dest)
    sums: dict[str, str] = {}
    written = []
    for file_name, data_file in sorted(listed.items()):
        url = f"{base}/api/access/datafile/{data_file['id']}?format=original"
        fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{file_name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, _open(url, timeout_s=timeout_s, what=file_name,
                                                   doi=spec.doi, dest=dest) as response:
                for chunk in iter(lambda r=response: r.read(DOWNLOAD_CHUNK_BYTES), b""):
                    out.write(chunk)
            checksum = data_file.get("checksum") or {}
            algorithm = _ALGORITHMS.get(str(checksum.get("type", "")).upper())
            if algorithm and checksum.get("value"):
                got = file_digest(tmp, algorithm=algorithm)
                if got != checksum["value"].lower():
                    raise FetchError(f"{checksum['type']} mismatch with the repository: "
                                     f"expected {checksum['value']}, got {got}", file=file_name)
            pinned = spec.files[file_name] or previous.get(file_name)
            sums[file_name] = verify_sha256(tmp, pinned) if pinned else sha256_file(tmp)
            tmp.replace(dest / file_name)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(dest / file_name)
    sums_path = dest / SUMS_FILE
    sums_path.write_text("".join(f"{d}  {n}\n" for n, d in sorted((previous | sums).items())),
                         encoding="utf-8")
    return [*written, sums_path]
