"""Low-level readers shared by the format modules: bytes -> table of strings with provenance.

Every reader returns values *as read* (strings, missing cells as ``<NA>``) plus the
provenance columns ``source_file`` and ``source_line`` (1-based physical line; the header is
line 1). Typing and validation happen in :mod:`analysis.clean`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from analysis.errors import InputFileError
from analysis.schemas import SOURCE_FILE, SOURCE_LINE

#: Column set by a reader when a line cannot be mapped to the header (e.g. too many fields);
#: clean quarantines such rows with this text as the reason detail.
SOURCE_ISSUE = "source_issue"

#: Cell texts that mean "no value" in exports (Garmin writes ``--``).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "--", "-", "#n/a"})

#: Delimiters tried, in order, when a header does not split into the required columns.
DELIMITERS = (",", ";", "\t", "|")

#: Encodings tried, in order; the one used is recorded in :class:`FileInfo`.
ENCODING_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "utf-16": "UTF-16",
                  "latin-1": "Latin-1"}

#: Leading bytes of binary formats people rename to .csv, with a human name.
_MAGIC = (
    (b"PK\x03\x04", "a zip archive (an .xlsx workbook or a zipped export?)"),
    (b"PAR1", "a Parquet file"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\x1f\x8b", "a gzip archive (unzip it first)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls workbook"),
    (b"SQLite format 3", "an SQLite database"),
)


@dataclass(frozen=True)
class FileInfo:
    """How one input file was read."""

    name: str
    encoding: str  # human name from ENCODING_NAMES
    delimiter: str
    lines: int  # data lines (records in the file, not counting header and blank lines)


def decode_bytes(data: bytes, *, file: str | Path) -> tuple[str, str]:
    """Decode ``data`` trying UTF-8 with BOM, UTF-16 (BOM), UTF-8, then Latin-1.

    Returns the text and the human name of the encoding used. Raises
    :class:`InputFileError` for empty, binary and HTML/XML content.
    """
    if not data.strip():
        raise InputFileError("file is empty", file=file)
    if data.startswith(b"\xef\xbb\xbf"):
        text, enc = data.decode("utf-8-sig", errors="replace"), "utf-8-sig"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text, enc = data.decode("utf-16"), "utf-16"
    else:
        for magic, what in _MAGIC:
            if data.startswith(magic):
                raise InputFileError(f"this is {what}, not a CSV text file", file=file)
        if b"\x00" in data[:8192]:
            raise InputFileError("this is a binary file, not a CSV text file", file=file)
        try:
            text, enc = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, enc = data.decode("latin-1"), "latin-1"
    head = text.lstrip()[:1024].lower()
    if head.startswith(("<!doctype", "<html", "<?xml", "<head", "<body")) or "<html" in head:
        raise InputFileError(
            "this is an HTML/XML page, not a CSV file (saved a web page or a login page?)",
            file=file,
        )
    if not text.strip():
        raise InputFileError("file is empty", file=file)
    return text, ENCODING_NAMES[enc]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def normalise_name(name: str) -> str:
    """Header cell -> canonical spelling: trimmed, lower case, spaces as underscores."""
    return "_".join(name.strip().lower().split())


def pick_delimiter(header_line: str, *, required: Sequence[str], normalise: bool = True) -> str:
    """The delimiter under which ``header_line`` holds all ``required`` columns.

    Falls back to the delimiter giving the most fields (the caller then reports the
    missing columns).
    """
    best, best_n = ",", 0
    for delim in DELIMITERS:
        cells = next(csv.reader([header_line], delimiter=delim))
        names = {normalise_name(c) if normalise else c for c in cells}
        if set(required) <= names:
            return delim
        if len(cells) > best_n:
            best, best_n = delim, len(cells)
    return best


def parse_csv_text(
    text: str, *, delimiter: str, file: str
) -> tuple[list[str], list[list[str]], list[int]]:
    """Split CSV text into header, records and each record's first physical line (1-based).

    Blank lines are skipped (they are not data rows).
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    records: list[list[str]] = []
    lines: list[int] = []
    prev = 0
    try:
        for row in reader:
            start, prev = prev + 1, reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = row
                continue
            records.append(row)
            lines.append(start)
    except csv.Error as exc:  # e.g. NUL byte or unterminated quote at the end
        raise InputFileError(f"not a readable CSV: {exc}", file=file, row=prev + 1) from exc
    if header is None:
        raise InputFileError("file is empty", file=file)
    return header, records, lines


def records_frame(
    header: Sequence[str],
    records: Sequence[Sequence[str]],
    lines: Sequence[int],
    *,
    file: str,
    columns: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Records -> string DataFrame with provenance; ragged rows are padded or flagged.

    Parameters
    ----------
    header
        Column names (already normalised by the caller).
    columns
        Keep only these columns (by name, first occurrence); None keeps all.
    """
    width = len(header)
    fixed: list[list[str]] = []
    issues: list[str | None] = []
    for row in records:
        issue = None
        if len(row) > width:
            extra = row[width:]
            if any(cell.strip() for cell in extra):
                issue = f"{len(row)} fields where the header has {width}"
            row = row[:width]
        elif len(row) < width:
            row = [*row, *([""] * (width - len(row)))]
        fixed.append(list(row))
        issues.append(issue)
    frame = pd.DataFrame(fixed, columns=range(width), dtype="str")
    keep: dict[str, int] = {}
    for i, name in enumerate(header):
        keep.setdefault(name, i)  # first occurrence wins for duplicated names
    if columns is not None:
        wanted = set(columns)
        keep = {k: v for k, v in keep.items() if k in wanted}
    out = frame[list(keep.values())].set_axis(list(keep), axis=1)
    out = out.apply(lambda s: s.str.strip()).replace("", pd.NA)
    out[SOURCE_FILE] = file
    out[SOURCE_LINE] = pd.array(lines, dtype="int64")
    out[SOURCE_ISSUE] = pd.array(issues, dtype="str")
    return out.astype({SOURCE_FILE: "str"})


def _cell_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, datetime | date):
        text = value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
        return text.removesuffix(" 00:00:00")
    return str(value).strip() or None


def stringify(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed cells (from Excel/Parquet) -> strings as a CSV would hold them; missing -> NA."""
    return frame.apply(lambda col: col.astype(object).map(_cell_text).astype("str"))


def read_text_table(path: Path, *, name: str) -> tuple[list[str], list[list[str]], list[int],
                                                       FileInfo]:
    """Read a comma-separated export keeping every header cell as written (duplicates too)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read the file: {exc.strerror}", file=name) from exc
    text, encoding = decode_bytes(data, file=name)
    header, records, lines = parse_csv_text(text, delimiter=",", file=name)
    header = [h.strip() for h in header]
    return header, records, lines, FileInfo(name=name, encoding=encoding, delimiter=",",
                                            lines=len(records))


def column_of(header: Sequence[str], records: Sequence[Sequence[str]], index: int) -> list[str]:
    """Cells of column ``index`` (empty string where a short row lacks it)."""
    return [row[index].strip() if index < len(row) else "" for row in records]


def find_exports(raw_dir: Path, patterns: Sequence[str]) -> list[tuple[str, Path]]:
    """Per-runner export files: ``raw_dir/<runner>/<pattern>`` or ``raw_dir/<pattern>``.

    Returns (runner_id, path) pairs sorted by path; a file directly in ``raw_dir`` belongs to
    a runner named after ``raw_dir``. Matching is case-insensitive on the file name.
    """
    found: list[tuple[str, Path]] = []
    lowered = [p.lower() for p in patterns]

    def matches(path: Path) -> bool:
        return path.is_file() and any(Path(path.name.lower()).match(p) for p in lowered)

    for path in sorted(raw_dir.iterdir()):
        if matches(path):
            found.append((raw_dir.name, path))
        elif path.is_dir() and not path.name.startswith("."):
            found.extend((path.name, sub) for sub in sorted(path.iterdir()) if matches(sub))
    return found
