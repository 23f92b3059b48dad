"""Low-level readers shared by the format modules: bytes -> table of strings with provenance.

Every reader returns values *as read* (strings, missing cells as ``<NA>``) plus the
provenance columns ``source_file`` and ``source_line`` (1-based physical line; the header is
line 1). Typing and validation happen in :mod:`analysis.clean`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

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


def _record_lines(data: bytes) -> np.ndarray:
    """0-based indices of the non-empty physical lines of ``data`` (``\n`` or ``\r\n``)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    newline = np.flatnonzero(raw == ord("\n"))
    starts = np.r_[0, newline + 1]
    ends = np.r_[newline, len(raw)]
    length = ends - starts
    has_cr = np.zeros(len(starts), dtype=bool)
    ok = length > 0
    has_cr[ok] = raw[ends[ok] - 1] == ord("\r")
    return np.flatnonzero(length - has_cr > 0)


def _fast_split(text: str, *, delimiter: str) -> CsvCells | None:
    """pyarrow's CSV reader, when every record is provably one physical line; else None.

    A record spans lines only through a quoted newline, which leaves an odd number of
    quote characters on its first line; with every line even (and no lone CR) the physical
    line of record i is the i-th non-empty line, found from the newline offsets. Ragged
    rows (pyarrow refuses them) and whitespace-only lines go to the careful path.
    """
    if "\r" in text and "\r" in text.replace("\r\n", ""):
        return None
    if '"' in text and any(line.count('"') % 2 for line in text.split("\n")):
        return None
    data = text.encode("utf-8")
    lines = _record_lines(data)
    if len(lines) < 1:
        return None
    header_line = text.split("\n", int(lines[0]) + 1)[int(lines[0])].removesuffix("\r")
    width = len(next(csv.reader([header_line], delimiter=delimiter)))
    try:
        table = pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(autogenerate_column_names=True,
                                            use_threads=False),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, ignore_empty_lines=True,
                                              newlines_in_values=False),
            convert_options=pa_csv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(width)},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, ValueError):
        return None  # ragged or otherwise unusual: the careful path decides
    if table.num_rows != len(lines) or table.num_columns == 0:
        return None
    columns = [pc.utf8_trim_whitespace(col.combine_chunks()) for col in table.columns]
    filled = np.zeros(table.num_rows, dtype=bool)  # rows of only empty cells are blank
    for col in columns:
        filled |= pc.not_equal(col, "").to_numpy(zero_copy_only=False)
    if not filled.any():
        return None
    rows = lines[filled]
    keep = pa.array(filled)
    columns = [col.filter(keep) for col in columns]
    header = [col[0].as_py() for col in columns]
    body = pd.DataFrame({
        i: pd.Series(pc.if_else(pc.equal(col[1:], ""), pa.scalar(None, pa.string()),
                                col[1:]), dtype="str")
        for i, col in enumerate(columns)}, copy=False)
    return CsvCells(header=header, cells=body, lines=rows[1:] + 1,
                    issues=pd.Series(pd.NA, index=body.index, dtype="str"))


def parse_csv_text(text: str, *, delimiter: str, file: str) -> CsvCells:
    """Split CSV text into header, records and each record's first physical line (1-based).

    Blank lines (whose cells are all empty or whitespace) are skipped: they are not data
    rows. Records with more non-empty fields than the header get an issue text; missing
    trailing fields are empty. Uses pyarrow's CSV reader when line numbers are unambiguous and
    the :mod:`csv` module otherwise (quoted newlines, ragged rows, whitespace-only lines);
    both give the same result
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


# --- typed values: a cell is parsed once, where it enters ---------------------------------
#: Column a reader adds next to a typed ``date`` when the cells were written with a time of
#: day (``YYYY-MM-DD HH:MM``): the two-device rule needs "had a time", which a midnight
#: datetime alone cannot tell from a bare date.
HAS_TIME = "date_has_time"

_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_TZ_SUFFIX = re.compile(r"(?<=\d)(Z|[+-]\d{2}:?\d{2})$")
_DATE_UNIT = "datetime64[us]"


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series)


def text_cells(series: pd.Series) -> pd.Series:
    """Values as trimmed strings with NA for missing tokens (:data:`MISSING_TOKENS`)."""
    s = series.astype("str").str.strip()
    return s.mask(s.str.lower().isin(MISSING_TOKENS))


def to_number(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Cells -> float; returns the values (NaN where not a finite number) and a
    decimal-comma mask. A column a reader already typed is only checked for finiteness."""
    if not _is_text(series):
        values = series.astype("float64")
        return values.where(np.isfinite(values)), pd.Series(False, index=series.index)
    s = text_cells(series)
    values = pd.to_numeric(s, errors="coerce").astype("float64")
    comma = values.isna() & s.notna() & s.str.match(_DECIMAL_COMMA).fillna(False).astype(bool)
    if comma.any():
        values = values.mask(comma, pd.to_numeric(s[comma].str.replace(",", ".")))
    values = values.where(np.isfinite(values))
    return values, comma


def to_datetime(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """ISO 8601 cells -> local wall-clock datetime64 (a zone suffix is dropped as written).

    Returns the datetimes (NaT where unparseable) and a mask of values that carried a time
    of day or zone. A column a reader already typed passes through (time of day: not
    midnight; a reader that knows better adds :data:`HAS_TIME`).
    """
    if pd.api.types.is_datetime64_any_dtype(series):
        dt = series.dt.tz_localize(None) if series.dt.tz is not None else series
        return dt.astype(_DATE_UNIT), dt.notna() & (dt != dt.dt.normalize())
    s = text_cells(series)
    long = s.str.len() > 19  # "YYYY-MM-DD HH:MM:SS" is 19: only longer ones can carry a zone
    tail = s.str[-1:]
    zoned = (long | (tail == "Z")).fillna(False).astype(bool)
    stripped = s.where(~zoned, s[zoned].str.replace(_TZ_SUFFIX, "", regex=True))
    dt = pd.to_datetime(stripped, format="ISO8601", errors="coerce")
    has_time = s.notna() & (s.str.len() > 10)
    return dt.astype(_DATE_UNIT), has_time.fillna(False).astype(bool)


def typed_number(series: pd.Series) -> pd.Series:
    """Text cells -> float64 when every non-missing cell is a plain number; else unchanged.

    A column with one cell that is not a number (``"abc"``, a decimal comma) stays text, so
    that cleaning quarantines or fixes that cell with its text as written.
    """
    if not _is_text(series) or len(series) == 0:
        return series
    cells = text_cells(series)
    try:
        values = pc.cast(pa.array(cells, type=pa.string(), from_pandas=True), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return series
    return pd.Series(values.to_numpy(zero_copy_only=False), index=series.index,
                     dtype="float64")


def typed_date(series: pd.Series) -> tuple[pd.Series, pd.Series | None]:
    """Text cells -> datetime64 when every non-missing cell is an ISO 8601 date; else
    unchanged. Also returns the has-a-time-of-day mask (None when the column stays text)."""
    if not _is_text(series) or len(series) == 0:
        return series, None
    dt, has_time = to_datetime(series)
    if (dt.isna() & text_cells(series).notna()).any():
        return series, None
    return dt, has_time


def typed_columns(frame: pd.DataFrame, *, numbers: Iterable[str] = (),
                  dates: Iterable[str] = (), time_of_day: str | None = None) -> pd.DataFrame:
    """Type the named columns of a reader's table (:func:`typed_number`, :func:`typed_date`).

    ``time_of_day``: the date column whose has-a-time mask is kept as :data:`HAS_TIME`.
    """
    out = {}
    for col in numbers:
        if col in frame:
            out[col] = typed_number(frame[col])
    for col in dates:
        if col in frame:
            out[col], has_time = typed_date(frame[col])
            if col == time_of_day and has_time is not None:
                out[HAS_TIME] = has_time
    return frame.assign(**out) if out else frame


def shown_values(values: pd.Series) -> pd.Series:
    """Cells as the audit shows them: text as written; typed numbers in their shortest
    form (``12``, ``2.5``); dates as ISO 8601 (``2024-01-07``, ``2024-01-07 06:30:00``)."""
    if _is_text(values):
        return values.astype("str")
    return values.astype(object).map(_cell_text).astype("str")


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
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
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
