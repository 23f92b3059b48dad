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

import numpy as np
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


@dataclass(frozen=True)
class CsvCells:
    """A parsed CSV: header cells as written and the records as positional string columns."""

    header: list[str]
    cells: pd.DataFrame  # columns 0..width-1, "str" dtype, trimmed, "" -> NA
    lines: np.ndarray  # int64: first physical line (1-based) of each record
    issues: pd.Series  # "str": why a record does not fit the header, else NA


def _fast_split(text: str, *, delimiter: str) -> CsvCells | None:
    """pandas' C parser, when every record is provably one physical line; else None.

    A record spans lines only through a quoted newline, which leaves an odd number of
    quote characters on its first line; with every line even (and no lone CR) the line
    of record i is known without a Python loop over cells.
    """
    if "\r" in text.replace("\r\n", ""):
        return None
    physical = text.replace("\r\n", "\n").split("\n")
    if any(line.count('"') % 2 for line in physical):
        return None
    keep = [i for i, line in enumerate(physical) if line.strip()]
    if not keep:
        return None
    try:
        frame = pd.read_csv(io.StringIO("\n".join(physical[i] for i in keep)), sep=delimiter,
                            header=None, dtype=str, na_filter=False, engine="c",
                            skip_blank_lines=False, index_col=False)
    except (pd.errors.ParserError, ValueError):
        return None  # ragged or otherwise unusual: the careful path decides
    if len(frame) != len(keep):
        return None
    frame = frame.fillna("").apply(lambda col: col.astype("str").str.strip())
    filled = (frame != "").any(axis=1).to_numpy()  # rows of only empty cells are blank
    if not filled.any():
        return None
    frame = frame[filled]
    rows = np.asarray(keep, dtype="int64")[filled]
    header = [str(h) for h in frame.iloc[0].tolist()]
    width = len(header)
    header_fields = next(csv.reader([physical[rows[0]]], delimiter=delimiter))
    if len(header_fields) != width:
        return None  # some line is wider than the header: ragged, the careful path flags it
    body = frame.iloc[1:].reset_index(drop=True).replace("", pd.NA)
    body.columns = range(width)
    return CsvCells(header=header, cells=body,
                    lines=rows[1:] + 1,
                    issues=pd.Series(pd.NA, index=body.index, dtype="str"))


def parse_csv_text(text: str, *, delimiter: str, file: str) -> CsvCells:
    """Split CSV text into header, records and each record's first physical line (1-based).

    Blank lines (whose cells are all empty or whitespace) are skipped: they are not data
    rows. Records with more non-empty fields than the header get an issue text; missing
    trailing fields are empty. Uses pandas' C parser when line numbers are unambiguous and
    the :mod:`csv` module otherwise; both give the same result
    (``tests/test_ingest.py::test_fast_and_careful_csv_paths_agree``).
    """
    fast = _fast_split(text, delimiter=delimiter)
    if fast is not None:
        return fast
    return careful_split(text, delimiter=delimiter, file=file)


def careful_split(text: str, *, delimiter: str, file: str) -> CsvCells:
    """The :mod:`csv`-module path of :func:`parse_csv_text` (any quoting, ragged rows)."""
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
                header = [cell.strip() for cell in row]
                continue
            records.append(row)
            lines.append(start)
    except csv.Error as exc:  # e.g. NUL byte or unterminated quote at the end
        raise InputFileError(f"not a readable CSV: {exc}", file=file, row=prev + 1) from exc
    if header is None:
        raise InputFileError("file is empty", file=file)
    width = len(header)
    issues: list[str | None] = [None] * len(records)
    for i in (i for i, row in enumerate(records) if len(row) != width):  # ragged rows only
        row = records[i]
        if len(row) > width:
            if any(cell.strip() for cell in row[width:]):
                issues[i] = f"{len(row)} fields where the header has {width}"
            records[i] = row[:width]
        else:
            records[i] = [*row, *([""] * (width - len(row)))]
    cells = pd.DataFrame(records, columns=range(width), dtype="str")
    cells = cells.apply(lambda col: col.str.strip()).replace("", pd.NA)
    return CsvCells(header=header, cells=cells, lines=np.asarray(lines, dtype="int64"),
                    issues=pd.Series(issues, dtype="str"))


def records_frame(
    parsed: CsvCells,
    *,
    header: Sequence[str],
    file: str,
    columns: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Parsed cells -> string DataFrame named by ``header``, with provenance columns.

    Parameters
    ----------
    header
        Column names (normalised by the caller), one per parsed column.
    columns
        Keep only these columns (by name, first occurrence); None keeps all.
    """
    keep: dict[str, int] = {}
    for i, name in enumerate(header):
        keep.setdefault(name, i)  # first occurrence wins for duplicated names
    if columns is not None:
        wanted = set(columns)
        keep = {k: v for k, v in keep.items() if k in wanted}
    out = parsed.cells[list(keep.values())].set_axis(list(keep), axis=1)
    out[SOURCE_FILE] = file
    out[SOURCE_LINE] = pd.array(parsed.lines, dtype="int64")
    out[SOURCE_ISSUE] = parsed.issues.to_numpy()
    return out.astype({SOURCE_FILE: "str", SOURCE_ISSUE: "str"})


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


def read_text_table(path: Path, *, name: str) -> tuple[CsvCells, FileInfo]:
    """Read a comma-separated export keeping every header cell as written (duplicates too)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read the file: {exc.strerror}", file=name) from exc
    text, encoding = decode_bytes(data, file=name)
    parsed = parse_csv_text(text, delimiter=",", file=name)
    parsed = CsvCells(header=[h.strip() for h in parsed.header], cells=parsed.cells,
                      lines=parsed.lines, issues=parsed.issues)
    return parsed, FileInfo(name=name, encoding=encoding, delimiter=",",
                            lines=len(parsed.cells))


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
