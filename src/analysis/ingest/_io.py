"""Low-level readers shared by the format modules: bytes -> table with provenance.

Every reader returns the cells with the provenance columns ``source_file`` and
``source_line`` (1-based physical line; the header is line 1). Number and date columns whose
every cell parses are typed where they enter (:func:`typed_arrow_frame`,
:func:`typed_columns`); other cells stay text as read (trimmed, missing as ``<NA>``) for
:mod:`analysis.clean` to fix or quarantine with the text as written.

CSV goes through pyarrow (:func:`split_csv_bytes`) whenever each record is provably one
physical line, so the line map comes from the newline offsets; quoted newlines and broken
files take the :mod:`csv`-module path (:func:`careful_split`).
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
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
#: Column of a runs record standing for an activity file that could not be read (empty,
#: truncated, corrupt, not an activity): clean quarantines it with this text as the value.
ACTIVITY_ISSUE = "activity_issue"
#: Column of a runs record naming its activity file (path relative to the study folder, the
#: session id of its heart-rate samples); read by the heart-rate load step, never cleaned.
ACTIVITY_FILE = "activity_file"

#: Cell texts that mean "no value" in exports (Garmin writes ``--``).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "--", "-", "#n/a"})
#: Characters of the longest missing token: a cell longer than this is never one.
_LONGEST_TOKEN = max(map(len, MISSING_TOKENS))

#: Delimiters tried, in order, when a header does not split into the required columns.
DELIMITERS = (",", ";", "\t", "|")

#: Encodings tried, in order; the one used is recorded in :class:`FileInfo`.
ENCODING_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "utf-16": "UTF-16",
                  "cp1252": "Windows-1252", "latin-1": "Latin-1"}
#: Bytes 0x80-0x9F are C1 control characters in Latin-1 but letters and punctuation (the
#: euro sign, curly quotes, dashes, S/Z/OE with caron or ligature) in Windows-1252, the
#: encoding Excel on Windows writes; a non-UTF-8 file holding any of them is read as
#: Windows-1252 (the WHATWG Encoding Standard decodes "latin1" labels as windows-1252 for the
#: same reason).
C1_BYTES = re.compile(rb"[\x80-\x9f]")
#: Prefix of the issue text of a line whose quote is never closed on it (clean quarantines
#: it as ``unterminated_quote``; the lines after it are read again on their own).
UNTERMINATED_QUOTE = "unterminated quote"

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
    if not data or data.isspace():
        raise InputFileError("file is empty", file=file)
    if data.startswith(b"\xef\xbb\xbf"):
        text, enc = data.decode("utf-8-sig", errors="replace"), "utf-8-sig"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text, enc = data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:  # e.g. an odd number of bytes
            raise InputFileError(f"the file starts with a UTF-16 byte-order mark but is not "
                                 f"UTF-16 text ({exc.reason} at byte {exc.start})",
                                 file=file) from None
    else:
        for magic, what in _MAGIC:
            if data.startswith(magic):
                raise InputFileError(f"this is {what}, not a CSV text file", file=file)
        if b"\x00" in data[:8192]:
            raise InputFileError("this is a binary file, not a CSV text file", file=file)
        try:
            text, enc = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, enc = _single_byte(data)
    head = text.lstrip()[:1024].lower()
    if head.startswith(("<!doctype", "<html", "<?xml", "<head", "<body")) or "<html" in head:
        raise InputFileError(
            "this is an HTML/XML page, not a CSV file (saved a web page or a login page?)",
            file=file,
        )
    if not text or text.isspace():
        raise InputFileError("file is empty", file=file)
    return text, ENCODING_NAMES[enc]


#: A character of ASCII text that is not whitespace in Python's sense (``str.isspace``, which
#: also counts the separators 0x1C-0x1F), so a byte search finds what ``str.lstrip`` keeps.
_ASCII_CONTENT = re.compile(
    b"[^" + re.escape(bytes(c for c in range(128) if chr(c).isspace())) + b"]")


def sniff_text(data: bytes, *, file: str | Path) -> tuple[str | None, str, str]:
    """:func:`decode_bytes` and the :func:`first_line` of its text, without decoding a file
    that is plain ASCII: its bytes are its UTF-8 text (the text is None then).

    The same checks in the same order as :func:`decode_bytes` (empty, binary, HTML), on the
    file's start; decoding the whole file only to validate it took 0.8 s of the 191 MB
    ``bench_build --big`` runs file and a copy of it in memory.

    Returns
    -------
    text, encoding, first line
        ``text`` None for an ASCII file; the encoding's human name.
    """
    if (not data.isascii() or data.isspace() or b"\x00" in data[:8192]
            or any(data.startswith(magic) for magic, _ in _MAGIC)):
        text, encoding = decode_bytes(data, file=file)
        return text, encoding, _first_line(text)
    found = _ASCII_CONTENT.search(data)
    if found is None:
        raise InputFileError("file is empty", file=file)
    start = found.start()
    head = data[start:start + 1024].decode("ascii").lower()
    if head.startswith(("<!doctype", "<html", "<?xml", "<head", "<body")) or "<html" in head:
        raise InputFileError(
            "this is an HTML/XML page, not a CSV file (saved a web page or a login page?)",
            file=file,
        )
    # every byte before ``start`` is whitespace: the first line with more ends at the next
    # line feed
    end = data.find(b"\n", start)
    return None, ENCODING_NAMES["utf-8"], _first_line(
        data[:len(data) if end < 0 else end].decode("ascii"))


def _single_byte(data: bytes) -> tuple[str, str]:
    """Windows-1252 when a byte 0x80-0x9F appears and every byte is defined there
    (:data:`C1_BYTES`); else Latin-1 (every byte is a character)."""
    if C1_BYTES.search(data):
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D are undefined in cp1252
            pass
    return data.decode("latin-1"), "latin-1"


def _first_line(text: str) -> str:
    """The first line of ``text`` holding more than whitespace (without its line break)."""
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = text[pos:end]
        for part in line.splitlines() or [""]:  # a lone CR or other break inside
            if part.strip():
                return part
        pos = end + 1
    return ""


def first_line(text: str) -> str:
    """Public name of :func:`_first_line` (the header line of a text table)."""
    return _first_line(text)


def normalise_name(name: str) -> str:
    """Header cell -> canonical spelling: trimmed, lower case, spaces as underscores."""
    return "_".join(name.strip().lower().split())


def pick_delimiter(header_line: str, *, required: Sequence[str]) -> str:
    """The delimiter under which ``header_line`` holds all ``required`` columns (header
    cells compared by :func:`normalise_name`).

    Falls back to the delimiter giving the most fields (the caller then reports the
    missing columns).
    """
    best, best_n = ",", 0
    for delim in DELIMITERS:
        cells = next(csv.reader([header_line], delimiter=delim))
        names = {normalise_name(c) for c in cells}
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


@dataclass(frozen=True)
class ArrowCells:
    """A CSV split by pyarrow: trimmed text per column (empty cells null) and line numbers."""

    header: list[str]  # header cells, trimmed
    columns: list[pa.ChunkedArray]  # text per header cell; "" and whitespace -> null
    # (float64 for the columns split_csv_bytes was told are numbers and could parse)
    lines: np.ndarray  # int64: physical line (1-based) of each record


def _line_bounds(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and lengths (without a trailing CR) of the physical lines of ``raw``."""
    newline = np.flatnonzero(raw == ord("\n"))
    starts = np.r_[0, newline + 1]
    ends = np.r_[newline, len(raw)]
    length = ends - starts
    ok = length > 0
    has_cr = np.zeros(len(starts), dtype=bool)
    has_cr[ok] = raw[ends[ok] - 1] == ord("\r")
    return starts, length - has_cr


def _record_lines(data: bytes) -> np.ndarray:
    """0-based indices of the non-empty physical lines of ``data`` (``\n`` or ``\r\n``)."""
    _, length = _line_bounds(np.frombuffer(data, dtype=np.uint8))
    return np.flatnonzero(length > 0)


#: Bytes of a CSV scanned at once for quotes and line breaks (:func:`_one_line_records`):
#: the scan's temporaries are this size, not the file's (a 191 MB file made two 191 MB
#: masks: the 9,000 x 365 build's resident memory after reading 1,528 -> 1,411 MiB).
SCAN_BLOCK_BYTES = 1 << 24


def _one_line_records(data: bytes, raw: np.ndarray) -> bool:
    """True when no record of ``data`` can span physical lines: no lone CR, and every line
    holds an even number of quote characters (a quoted newline leaves an odd count on the
    record's first line).

    Every line has an even count exactly when an even number of quotes precedes each line
    break and the whole text holds an even number; counted block by block
    (:data:`SCAN_BLOCK_BYTES`).
    """
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return False
    if b'"' not in data:
        return True
    quotes = 0  # quote characters before the block
    for start in range(0, len(raw), SCAN_BLOCK_BYTES):
        block = raw[start:start + SCAN_BLOCK_BYTES]
        at = np.flatnonzero(block == ord('"'))
        breaks = np.flatnonzero(block == ord("\n"))
        if ((quotes + np.searchsorted(at, breaks)) % 2).any():
            return False
        quotes += len(at)
    return quotes % 2 == 0


_CONTENT = re.compile(rb"[^\r\n]")


def split_csv_bytes(data: bytes, *, delimiter: str,
                    number: Callable[[str], bool] | None = None) -> ArrowCells | None:
    """pyarrow's CSV reader on UTF-8 ``data`` when every record is provably one physical
    line; else None (the careful path decides).

    The physical line of record i is then the i-th non-empty line, found from the newline
    offsets. pyarrow splits the file into blocks knowing quotes (``newlines_in_values``),
    so a quoted line break is always inside its record and the records then number fewer
    than the non-empty lines, which sends the file to the careful path; without it, a
    quoted line break that fell just after pyarrow's 1 MiB block boundary behind a
    mid-field quote (``a"b,"c`` / ``d",e"f``: an even count of quotes on each line) split
    one record into two clean rows (``tests/test_ingest.py``). Ragged rows (pyarrow refuses
    them), invalid UTF-8 and whitespace-only lines (one field where the header has several)
    also give None. Cells are trimmed; empty ones become null; rows whose every cell is
    empty are blank lines and dropped.

    ``number`` (given a trimmed header cell: is it a number column?) lets pyarrow's reader
    parse those columns as float64 while it splits (:func:`_typed_body`): the same values
    as casting the trimmed text (:func:`typed_arrow_frame`), without the text.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    if not _one_line_records(data, raw):
        return None
    # the header is the first line with a byte other than the line break
    found = _CONTENT.search(data)
    lead = found.start() if found else len(data)
    first_end = data.find(b"\n", lead)
    header_line = data[lead:len(data) if first_end < 0 else first_end].removesuffix(b"\r")
    try:
        width = len(next(csv.reader([header_line.decode("utf-8")], delimiter=delimiter)))
        if number is not None and first_end >= 0:
            typed = _typed_body(data, lead=lead, body=first_end + 1, width=width,
                                delimiter=delimiter, number=number)
            if typed is not None:
                return typed
        table = _read_cells(data, delimiter=delimiter, width=width)
    except (pa.ArrowInvalid, ValueError, UnicodeDecodeError):
        return None  # ragged or otherwise unusual: the careful path decides
    lines = _row_lines(data, table.num_rows, first=0)
    if lines is None or table.num_columns == 0:
        return None
    kept = _kept_rows(table, lines)
    if kept is None:
        return None
    columns, rows = kept
    header = [col[0].as_py() or "" for col in columns]
    return ArrowCells(header=header, columns=[col[1:] for col in columns],
                      lines=rows[1:] + 1)


def _row_lines(data: bytes, rows: int, *, first: int) -> np.ndarray | None:
    """0-based physical line of each of ``rows`` rows pyarrow read from the lines of
    ``data`` from line ``first`` on (it skips empty lines); None when the count of
    non-empty lines differs (the careful path decides)."""
    n_physical = data.count(b"\n") + (not data.endswith(b"\n"))
    if rows == n_physical - first:  # no empty line: row i is on line first + i
        return np.arange(first, n_physical, dtype=np.int64)
    lines = _record_lines(data)
    lines = lines[lines >= first] if first else lines
    return lines if len(lines) == rows else None


def _read_cells(data: bytes | pa.Buffer, *, delimiter: str, width: int,
                types: Mapping[int, pa.DataType] | None = None) -> pa.Table:
    """pyarrow's CSV reader on ``data`` (bytes or an arrow buffer): ``width`` columns named
    ``f0, f1, ...``, text unless ``types`` says otherwise; empty cells null."""
    types = types or {}
    return pa_csv.read_csv(
        pa.BufferReader(data) if isinstance(data, pa.Buffer) else io.BytesIO(data),
        read_options=pa_csv.ReadOptions(autogenerate_column_names=True),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, ignore_empty_lines=True,
                                          newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={f"f{i}": types.get(i, pa.string()) for i in range(width)},
            null_values=[""], strings_can_be_null=True,
            quoted_strings_can_be_null=True),
    )


def _kept_rows(table: pa.Table, lines: np.ndarray
               ) -> tuple[list[pa.ChunkedArray], np.ndarray] | None:
    """The columns of ``table`` trimmed (text: empty cells null; other types as read) and
    the rows with a cell (the others are blank lines), with their ``lines``; None when no
    row has one."""
    columns = []
    filled = None  # rows with a non-empty cell (the others are blank lines)
    raw_columns = table.columns
    del table  # each untrimmed column is freed as soon as its trimmed copy exists
    for i in range(len(raw_columns)):
        col = raw_columns[i]
        raw_columns[i] = None
        if pa.types.is_string(col.type):
            col = pc.utf8_trim_whitespace(col)
            empty = pc.equal(col, "")
            if pc.any(empty).as_py():
                col = pc.if_else(empty, pa.scalar(None, pa.string()), col)
        valid = pc.is_valid(col)
        filled = valid if filled is None else pc.or_(filled, valid)
        columns.append(col)
    if filled is None or not pc.any(filled).as_py():
        return None
    rows = lines
    if not pc.all(filled).as_py():
        rows = lines[filled.to_numpy(zero_copy_only=False)]
        columns = [col.filter(filled) for col in columns]
    return columns, rows


#: Bytes of records (whole lines) that the typed read (:func:`_typed_body`) first parses on
#: their own, at the start, middle and end of the records (:data:`TYPED_PROBES`), to find
#: the number columns holding a cell pyarrow's float parser refuses (``NA``, ``--``,
#: whitespace), which are then read as text. A refusal that no probe meets costs a second
#: read of the whole file (review: a 40 MB file with one ``NA``, on its last line, split
#: and typed in 0.39 s when only the first MiB was probed, against 0.29 s as text; 0.26 s
#: with the end probed).
TYPED_PROBE_BYTES = 1 << 20
#: Probes of a file longer than the probe: first, middle and last stretch.
TYPED_PROBES = 3
_REFUSED_COLUMN = re.compile(r"CSV column #(\d+)")


def _probes(data: bytes, body: int) -> list[tuple[int, int]]:
    """Byte ranges [start, stop) of :data:`TYPED_PROBES` stretches of whole lines of the
    records (from ``body``), about :data:`TYPED_PROBE_BYTES` each, evenly spaced from the
    first to the last record; none when the records are no longer than one probe (the
    whole read is then the probe)."""
    size = len(data) - body
    if size <= TYPED_PROBE_BYTES:
        return []
    ranges: list[tuple[int, int]] = []
    step = (size - TYPED_PROBE_BYTES) / max(TYPED_PROBES - 1, 1)
    for k in range(TYPED_PROBES):
        at = body + int(k * step)
        # from the first line starting at or after ``at`` to the last line break in reach
        start = at if at == body or data[at - 1] == ord("\n") else data.find(b"\n", at) + 1
        end = min(start + TYPED_PROBE_BYTES, len(data))
        # the file's last record counts whether or not a line break ends it
        stop = len(data) if end == len(data) else data.rfind(b"\n", start, end) + 1
        if start <= 0 or stop <= start:
            continue
        if ranges and start < ranges[-1][1]:
            start = ranges[-1][1]
            if stop <= start:
                continue
        ranges.append((start, stop))
    return ranges


def _typed_body(data: bytes, *, lead: int, body: int, width: int, delimiter: str,
                number: Callable[[str], bool]) -> ArrowCells | None:
    """:func:`split_csv_bytes` with the ``number`` columns parsed as float64 by the reader:
    the header line (from ``lead``) read on its own as text, the records (from ``body``)
    typed. pyarrow's float parser is the one its cast uses, and its reader trims the cell
    first, so a column it parses holds the values the cast of the trimmed text gives.
    Columns with a refused cell in a probe (:func:`_probes`) are read as text, for
    :func:`typed_arrow_frame` to decide as before. None: no number column, a refused cell
    outside the probes, or anything unusual (the text read then decides)."""
    header_table = _read_cells(data[lead:body], delimiter=delimiter, width=width)
    if header_table.num_rows != 1 or header_table.num_columns != width:
        return None
    header = [pc.utf8_trim_whitespace(col)[0].as_py() or "" for col in header_table.columns]
    types = {i: pa.float64() for i, name in enumerate(header) if number(name)}
    records = pa.py_buffer(data).slice(body)
    for start, stop in _probes(data, body):
        probe = records.slice(start - body, stop - start)
        while types:
            try:
                _read_cells(probe, delimiter=delimiter, width=width, types=types)
                break
            except pa.ArrowInvalid as error:
                refused = _REFUSED_COLUMN.search(str(error))
                if refused is None or int(refused.group(1)) not in types:
                    return None
                del types[int(refused.group(1))]
    if not types:
        return None
    try:
        table = _read_cells(records, delimiter=delimiter, width=width, types=types)
    except pa.ArrowInvalid:
        return None
    if table.num_columns != width:
        return None
    lines = _row_lines(data, table.num_rows, first=data.count(b"\n", 0, lead) + 1)
    if lines is None:
        return None
    kept = _kept_rows(table, lines)
    if kept is None:
        return None
    columns, rows = kept
    return ArrowCells(header=header, columns=columns, lines=rows + 1)


def _fast_split(text: str, *, delimiter: str) -> CsvCells | None:
    """:func:`split_csv_bytes` on text, as string cells; None when the careful path must
    decide."""
    if "\r" in text and "\r" in text.replace("\r\n", ""):
        return None
    split = split_csv_bytes(text.encode("utf-8"), delimiter=delimiter)
    if split is None:
        return None
    body = pd.DataFrame({i: col.to_pandas() for i, col in enumerate(split.columns)},
                        copy=False)
    body = body.astype("str") if len(body.columns) else body
    return CsvCells(header=split.header, cells=body, lines=split.lines,
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


#: Characters of a record spanning lines that can still be one quoted note (the csv
#: module's default field limit, 128 KiB): a longer one with the header's width is taken as
#: rows swallowed by a stray quote when one of its later lines is a row of its own.
LONGEST_NOTE = 128 * 1024


def _allow_fields_of(size: int) -> None:
    """Let the csv module read a field of ``size`` characters (its default limit is 128 KiB).

    A quote opened by mistake swallows the lines up to the next quote into one field, which
    :func:`careful_split` must read whole to put the lines back; with the default limit a
    stray quote 128 KiB before the next one made the whole file unreadable ("field larger
    than field limit") instead of quarantining its line. The limit is process-wide and only
    ever raised here, never lowered again: the other reading thread may be in a careful read
    (the whole text is in memory already, so no field can be larger than it).
    """
    if csv.field_size_limit() < size:
        csv.field_size_limit(min(size, sys.maxsize))


def careful_split(text: str, *, delimiter: str, file: str) -> CsvCells:
    """The :mod:`csv`-module path of :func:`parse_csv_text` (any quoting, ragged rows).

    A quote left open on a line would make the csv module swallow the following lines into
    one field until the next quote character. A record spanning several physical lines is
    taken as such a swallow when one of its later lines, read alone, holds as many fields
    as the header (:func:`_swallows_rows`): its first line becomes a record with an
    :data:`UNTERMINATED_QUOTE` issue (quarantined) and the lines after it are read again on
    their own, so every physical line stays one record of its own and none is lost.
    """
    _allow_fields_of(len(text))
    physical = io.StringIO(text, newline="").readlines()  # the csv module's line breaks
    header: list[str] | None = None
    records: list[list[str]] = []
    lines: list[int] = []
    issues: list[str | None] = []
    done = 0  # physical lines consumed
    while True:
        reader = csv.reader(iter(physical[done:]), delimiter=delimiter)
        prev, restart = done, False
        try:
            for row in reader:
                start, prev = prev + 1, done + reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if header is None:
                    if prev > start:
                        raise InputFileError("the header line has an unterminated quote",
                                             file=file, row=start)
                    header = [cell.strip() for cell in row]
                    continue
                if prev > start and _swallows_rows(physical[start - 1:prev], len(row),
                                                   delimiter=delimiter, width=len(header)):
                    line = physical[start - 1].strip()
                    records.append(next(csv.reader([line], delimiter=delimiter), []))
                    lines.append(start)
                    issues.append(f"{UNTERMINATED_QUOTE} (a quote opened on this line is not "
                                  f"closed on it): {line[:200]}")
                    done, restart = start, True
                    break
                records.append(row)
                lines.append(start)
                issues.append(None)
        except csv.Error as exc:  # e.g. NUL byte
            raise InputFileError(f"not a readable CSV: {exc}", file=file, row=prev + 1) from exc
        if not restart:
            break
    if header is None:
        raise InputFileError("file is empty", file=file)
    width = len(header)
    for i in (i for i, row in enumerate(records) if len(row) != width):  # ragged rows only
        row = records[i]
        if len(row) > width:
            if issues[i] is None and any(cell.strip() for cell in row[width:]):
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
#: Column a reader adds beside a date it typed by a format of its own (``--date-format``,
#: Strava's date formats): the cell as written where the format refused it (``date`` is NaT
#: there), NA elsewhere. Cleaning quarantines those rows as ``unparseable_date`` showing this
#: text, and never reads them again as ISO 8601 (a refused Strava cell would be taken as
#: local time, skipping the UTC conversion).
DATE_AS_WRITTEN = "date_as_written"
#: strptime directives of a time of day: a format with one gives every date it parses a
#: time of day, midnight included (``00:00`` is a time, not a bare date).
_TIME_DIRECTIVE = re.compile(r"%[-#]?[HIMSfpXTRrc]")


def format_has_time(date_format: str) -> bool:
    """Whether dates parsed by the strptime ``date_format`` carry a time of day."""
    return bool(_TIME_DIRECTIVE.search(date_format.replace("%%", "")))


def refused_as_written(parsed: pd.Series, cells: pd.Series) -> pd.Series | None:
    """The cells a reader's format did not read (parsed NaT, the cell not blank), as
    written, NA elsewhere (:data:`DATE_AS_WRITTEN`): refused dates, and missing tokens such
    as ``null`` (cleaning counts those as missing, showing the token); None when there is
    no such cell."""
    text = cells.astype("str")
    refused = parsed.isna() & text.str.strip().ne("").fillna(False).astype(bool)
    if not refused.any():
        return None
    return text.where(refused)

_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
#: A zone suffix after a time of day: ``Z``, ``+01``, ``+0100``, ``+01:00`` (ISO 8601 allows
#: the hour alone); dropped as written, the clock time kept.
_TZ_SUFFIX = re.compile(
    r"(?<=[T ]\d{2}:\d{2})((?::\d{2}(?:[.,]\d+)?)?)\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$")
#: A date cell must start with a whole calendar date; ``2025-03`` or ``2025`` is no day
#: (pandas would read it as the 1st), :data:`PARTIAL_DATE` names them for the audit.
_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:$|[T ])")
#: Cells naming a month or a year but no day (quarantined as ``partial_date``).
PARTIAL_DATE = re.compile(r"^\d{4}(?:-\d{1,2})?$")
#: Characters of a whole ISO 8601 date (``YYYY-MM-DD``): a longer date cell carries a time
#: of day (or a zone); the one has-a-time rule of text and of pyarrow-typed dates.
ISO_DATE_CHARS = 10
_DATE_UNIT = "datetime64[us]"


def _swallows_rows(record: Sequence[str], fields: int, *, delimiter: str, width: int) -> bool:
    """True when a record of several physical lines (``record``, line breaks kept; parsed
    into ``fields`` fields) holds a row of the table swallowed by an unterminated quote, not
    a line break inside a quoted note.

    Either its quotes never close (an odd count: the file ended inside the quote), or the
    record does not have the header's ``width`` fields while a line after its first, read
    alone up to its first quote, has ``width`` fields or more (a row of its own). A quoted
    note spanning lines leaves the record with the header's width, so it is kept, unless it
    is longer than :data:`LONGEST_NOTE` characters: then the header's width is no sign of a
    note (a quote opened inside a field and closed by a quote 40,000 rows on also leaves it).
    """
    if sum(line.count('"') for line in record) % 2:
        return True
    if width < 2 or (fields == width and sum(map(len, record)) <= LONGEST_NOTE):
        return False
    for line in record[1:]:
        before_quote = line.rstrip("\r\n").split('"', 1)[0]
        if len(before_quote.split(delimiter)) >= width:
            return True
    return False


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series)


def text_cells(series: pd.Series) -> pd.Series:
    """Values as trimmed strings with NA for missing tokens (:data:`MISSING_TOKENS`).

    A printable-ASCII column (:func:`printable_ascii`) whose every cell is longer than the
    longest token and none begins or ends with a space (its only whitespace) comes back as
    it is: neither the strip nor the token lookup could change a cell (ID columns: 20 ->
    6 ms for the 2,000 x 365 bench's 660,000 runner IDs). The same values either way
    (``tests/test_ingest.py::test_text_cells_takes_the_short_path_with_the_same_values``).
    """
    s = series.astype("str")
    if printable_ascii(s):
        cells = s.array.__arrow_array__()
        cells = pa.chunked_array([cells]) if isinstance(cells, pa.Array) else cells
        shortest = pc.min(pc.binary_length(cells)).as_py()
        if shortest is not None and shortest > _LONGEST_TOKEN and not _edge_space(cells):
            return s
    s = s.str.strip()
    return s.mask(s.str.lower().isin(MISSING_TOKENS))


def _edge_space(cells: pa.ChunkedArray) -> bool:
    """Whether a cell of a string column begins or ends with a space (read from the
    offsets: its first and last byte; a missing cell's bytes count too, which only sends
    the column down the full path)."""
    for chunk in cells.chunks:
        if not len(chunk):
            continue
        _, offsets, data = chunk.buffers()
        if data is None:
            continue
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        at = np.frombuffer(offsets, dtype=width)[chunk.offset:chunk.offset + len(chunk) + 1]
        raw = np.frombuffer(data, dtype=np.uint8)
        start, stop = at[:-1], at[1:]
        full = stop > start
        if (raw[start[full]] == 0x20).any() or (raw[stop[full] - 1] == 0x20).any():
            return True
    return False


def printable_ascii(text: pd.Series) -> bool:
    """True when every byte of a pyarrow-backed text column's data is printable ASCII
    (0x20-0x7e): no cell can hold a control character (cleaning's ``CONTROL_CHARACTERS``,
    each a byte below 0x20, 0x7f, or in UTF-8 0xc2 then 0x80-0x9f), and the only whitespace
    is the space (:func:`text_cells`). False when a byte is not, or the column is not
    pyarrow-backed (then the regex decides). The minimum and maximum byte instead of a
    regex per cell: 26 ms -> 0.3 ms on the 660,000 runner IDs of the 2,000 x 365 bench
    build."""
    if not (isinstance(text.dtype, pd.StringDtype) and text.dtype.storage == "pyarrow"):
        return False
    cells = text.array.__arrow_array__()
    seen: set[tuple[int, int]] = set()  # the chunks of a column often share one buffer
    for chunk in (cells.chunks if isinstance(cells, pa.ChunkedArray) else [cells]):
        data = chunk.buffers()[-1]
        if data is None or (data.address, data.size) in seen:
            continue  # no characters at all (empty strings or nulls), or scanned already
        seen.add((data.address, data.size))
        raw = np.frombuffer(data, dtype=np.uint8)
        if len(raw) and (raw.min() < 0x20 or raw.max() > 0x7E):
            return False
    return True


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


def time_of_day(dt: pd.Series) -> pd.Series:
    """True where a naive datetime is not midnight (False where missing):
    ``dt.notna() & (dt != dt.dt.normalize())``, on numpy datetimes from the integer ticks
    (no normalised copy: 16 -> 2 ms for the bench's 1.1 million run and report dates)."""
    if not isinstance(dt.dtype, np.dtype):
        return dt.notna() & (dt != dt.dt.normalize())
    ticks = dt.to_numpy().view(np.int64)
    per_day = np.timedelta64(1, "D") // np.timedelta64(1, np.datetime_data(dt.dtype)[0])
    known = ticks != np.iinfo(np.int64).min  # NaT
    return pd.Series(known & (ticks % per_day != 0), index=dt.index, name=dt.name)


def to_datetime(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """ISO 8601 cells -> local wall-clock datetime64 (a zone suffix is dropped as written).

    Returns the datetimes (NaT where unparseable) and a mask of values that carried a time
    of day or zone. A column a reader already typed passes through (time of day: not
    midnight; a reader that knows better adds :data:`HAS_TIME`).
    """
    if pd.api.types.is_datetime64_any_dtype(series):
        dt = series.dt.tz_localize(None) if series.dt.tz is not None else series
        return dt.astype(_DATE_UNIT), time_of_day(dt)
    s = text_cells(series)
    full = s.str.match(_FULL_DATE).fillna(False).astype(bool)
    s = s.where(full)  # partial dates (2025-03) and other text: NaT, never the 1st
    timed = (s.str.len() > ISO_DATE_CHARS).fillna(False).astype(bool)  # (or a zone)
    stripped = s.where(~timed, s[timed].str.replace(_TZ_SUFFIX, r"\1", regex=True))
    try:
        dt = pd.to_datetime(stripped, format="ISO8601", errors="coerce")
    except ValueError:  # zones the strip missed, mixed with plain dates: cell by cell
        dt = stripped.map(_one_datetime).astype(_DATE_UNIT)
    if getattr(dt.dt, "tz", None) is not None:
        dt = dt.dt.tz_localize(None)
    has_time = timed
    return dt.astype(_DATE_UNIT), has_time.fillna(False).astype(bool)


def _one_datetime(cell: object) -> pd.Timestamp:
    """One ISO 8601 cell -> wall-clock Timestamp (its zone dropped as written), NaT if not."""
    if not isinstance(cell, str):
        return pd.NaT
    try:
        value = pd.Timestamp(cell)
    except (ValueError, OverflowError):
        return pd.NaT
    return value.tz_localize(None) if value.tzinfo is not None else value


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


_MISSING_ARROW = pa.array(sorted(MISSING_TOKENS - {""}), type=pa.string())


def _arrow_text_cells(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """:func:`text_cells` on trimmed arrow text: missing tokens (any case) -> null."""
    token = pc.is_in(pc.utf8_lower(col), value_set=_MISSING_ARROW)
    if not pc.any(token).as_py():
        return col
    return pc.if_else(token, pa.scalar(None, pa.string()), col)


def _arrow_cast(col: pa.ChunkedArray, to: pa.DataType) -> pa.ChunkedArray | None:
    """``col`` cast to ``to`` as :func:`typed_number` would (missing tokens are missing);
    None when a cell does not parse."""
    for attempt in (col, None):
        try:
            return pc.cast(attempt if attempt is not None else _arrow_text_cells(col), to)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


def typed_arrow_frame(cells: ArrowCells, *, header: Sequence[str], file: str,
                      numbers: Iterable[str] = (), dates: Iterable[str] = (),
                      time_of_day: str | None = None) -> pd.DataFrame:
    """:func:`records_frame` then :func:`typed_columns`, typed in arrow before pandas sees a
    cell: same columns, order, dtypes and values.

    A number column casts to float64 and a date column to ``datetime64[us]`` when every
    cell parses (pyarrow's ISO 8601 parser accepts a subset of what :func:`to_datetime`
    accepts, with the same values; ``tests/test_ingest.py`` checks this); any other goes
    through the pandas path of :func:`typed_number` / :func:`typed_date`, which leaves it
    text when a cell is not a number or date.
    """
    keep: dict[str, int] = {}
    for i, name in enumerate(header):
        keep.setdefault(name, i)  # first occurrence wins for duplicated names
    n = len(cells.lines)
    if n == 0:  # no cell to type: text columns, as typed_columns leaves them
        numbers, dates = set(), set()
    numbers, dates = set(numbers), set(dates)
    out: dict[str, object] = {}
    has_time = None
    for name, i in keep.items():
        col = cells.columns[i]
        if name in numbers:
            typed = _arrow_cast(col, pa.float64())
            out[name] = (typed.to_numpy(zero_copy_only=False) if typed is not None
                         else typed_number(col.to_pandas()))
        elif name in dates:
            typed = _arrow_cast(col, pa.timestamp("us"))
            if typed is not None:
                out[name] = typed.to_numpy(zero_copy_only=False)
                if name == time_of_day:  # missing tokens are shorter: never "long"
                    long = pc.greater(pc.utf8_length(col), ISO_DATE_CHARS)
                    has_time = pc.fill_null(long, False).to_numpy(zero_copy_only=False)
            else:
                out[name], mask = typed_date(col.to_pandas())
                if name == time_of_day and mask is not None:
                    has_time = mask.to_numpy(dtype=bool)
        else:
            out[name] = col.to_pandas()
    frame = pd.DataFrame(out, index=pd.RangeIndex(n), copy=False)
    frame[SOURCE_FILE] = pa.repeat(file, n).to_pandas() if n else pd.Series(dtype="str")
    frame[SOURCE_LINE] = cells.lines.astype("int64")
    frame[SOURCE_ISSUE] = pd.Series(pd.NA, index=frame.index, dtype="str")
    if has_time is not None:
        frame[HAS_TIME] = has_time
    return frame


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
