"""Reader for the canonical dataset (docs/data-contract.md): runners, runs, pain, shoes.

Each table may be ``<table>.csv`` (any of UTF-8, UTF-8 with BOM, UTF-16, Latin-1; comma,
semicolon, tab or pipe delimited), ``<table>.xlsx`` (first sheet) or ``<table>.parquet``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.errors import InputFileError
from analysis.filenames import TABLE_SUFFIXES
from analysis.ingest._io import (
    HAS_TIME,
    SOURCE_ISSUE,
    FileInfo,
    decode_bytes,
    normalise_name,
    parse_csv_text,
    pick_delimiter,
    records_frame,
    sniff_text,
    split_csv_bytes,
    stringify,
    typed_arrow_frame,
    typed_columns,
    typed_date,
    typed_number,
)
from analysis.schemas import (
    OSTRC_ITEMS,
    PAIN_OPTIONAL,
    PAIN_REQUIRED,
    RUNNERS_OPTIONAL,
    RUNNERS_REQUIRED,
    RUNS_OPTIONAL,
    RUNS_REQUIRED,
    SHOES_OPTIONAL,
    SHOES_REQUIRED,
    SOURCE_FILE,
    SOURCE_LINE,
)

#: table -> (required columns, optional columns, file must exist)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "runners": (RUNNERS_REQUIRED, RUNNERS_OPTIONAL, True),
    "runs": (RUNS_REQUIRED, (*RUNS_OPTIONAL, "distance_unit"), True),
    "pain": (PAIN_REQUIRED, PAIN_OPTIONAL, True),
    "shoes": (SHOES_REQUIRED, SHOES_OPTIONAL, False),
}
#: Suffixes read through pandas' Excel/Parquet readers (not on the reading threads).
BINARY_SUFFIXES = (".xlsx", ".parquet")
#: Text table files read at once (runs and pain, the two large ones, on two cores): the
#: canonical 2,000 x 365 read 0.25 s -> 0.15-0.20 s (three runs each, 2-core VM).
READ_THREADS = 2
#: table -> (number columns, date columns) a reader types (``start_time`` stays text: it may
#: be a clock time, which only means something with the run's date).
TYPED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "runners": (("age", "hr_rest", "hr_max"), ("follow_up_start", "follow_up_end")),
    "runs": (("distance_km", "duration_min", "rpe", "avg_hr_bpm", "max_hr_bpm",
              "trimp_banister_au", "trimp_edwards_au"), ("date",)),
    "pain": (("pain", *OSTRC_ITEMS), ("date",)),
    "shoes": (("start_km",), ("start_date",)),
}


def empty_table(table: str) -> pd.DataFrame:
    """A zero-row raw table with the canonical columns of ``table`` and provenance."""
    required, _, _ = TABLES[table]
    cols = {c: pd.Series(dtype="str") for c in required}
    cols[SOURCE_FILE] = pd.Series(dtype="str")
    cols[SOURCE_LINE] = pd.Series(dtype="int64")
    return pd.DataFrame(cols)


def find_table_file(raw_dir: Path, table: str) -> Path | None:
    """The one file holding ``table`` in ``raw_dir`` (any supported suffix), or None."""
    found = [raw_dir / f"{table}{s}" for s in TABLE_SUFFIXES
             if (raw_dir / f"{table}{s}").is_file()]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise InputFileError(f"more than one file for table {table!r}: {names}; keep one",
                             file=raw_dir)
    return found[0] if found else None


def read_table_file(
    path: Path,
    *,
    required: Sequence[str],
    optional: Sequence[str] = (),
    table: str | None = None,
) -> tuple[pd.DataFrame, FileInfo]:
    """Read one canonical table file (CSV, Excel or Parquet) with provenance.

    ``table`` (a key of :data:`TABLES`) types its number and date columns
    (:data:`TYPED`): a column whose every cell parses is emitted as float64 or datetime64,
    any other stays text for cleaning to quarantine its bad cells with the text as written.
    Extra ``x_`` columns are numbers. CSV is typed in arrow
    (:func:`~analysis.ingest._io.typed_arrow_frame`); Excel and Parquet keep the types the
    file stores (:func:`_typed_cells`).

    Raises
    ------
    InputFileError
        Empty, binary or HTML file; a required column missing (names it and lists the
        columns found).
    """
    name = path.name
    suffix = path.suffix.lower()
    numbers, dates = TYPED[table] if table is not None else ((), ())
    time_of_day = "date" if table == "runs" else None
    if suffix in BINARY_SUFFIXES:
        # openpyxl's cells keep their types: numbers, datetimes, text
        frame, info = _read_typed(_binary_table(path, name, suffix), name, suffix[1:],
                                  numbers=numbers, dates=dates, time_of_day=time_of_day)
    else:
        frame, info = _read_csv(path, name, required=required, typed=table is not None,
                                numbers=numbers, dates=dates, time_of_day=time_of_day)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        found = [c for c in frame.columns if c not in (SOURCE_FILE, SOURCE_LINE, SOURCE_ISSUE)]
        hint = ""
        if len(found) == 1 and len(required) > 1:
            hint = (" (the header is one column: separate columns with commas; "
                    "semicolon, tab and | are also recognised)")
        raise InputFileError(
            f"missing required column {missing[0]!r}"
            + (f" (also {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else "")
            + f"; found columns: {', '.join(found) if found else 'none'}{hint}",
            file=name,
            column=missing[0],
        )
    return frame, info


def _binary_table(path: Path, name: str, suffix: str) -> pd.DataFrame:
    """The first sheet of an ``.xlsx`` workbook or a Parquet file as pandas reads it, with
    every header cell as written (a duplicated name is an error, not renamed ``pain.1``).

    Raises
    ------
    InputFileError
        Not a workbook / Parquet file, corrupt or unreadable (any reader error), or two
        columns with the same name.
    """
    what = "Excel .xlsx workbook" if suffix == ".xlsx" else "Parquet file"
    try:
        if suffix == ".xlsx":
            # the header row alone first: pandas renames a repeated name (pain -> pain.1)
            top = pd.read_excel(path, sheet_name=0, header=None, nrows=1, engine="openpyxl")
            header = [_header_text(v) for v in (top.iloc[0] if len(top) else [])]
            frame = pd.read_excel(path, sheet_name=0, engine="openpyxl")
        else:
            frame = pd.read_parquet(path)
            header = [str(c) for c in frame.columns]
    except Exception as exc:  # any reader failure of a raw file is the file's, one line
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise InputFileError(f"not a readable {what} ({reason})", file=name) from None
    check_unique_columns([normalise_name(h) for h in header], file=name)
    return frame


def _header_text(value: object) -> str:
    """A header cell of a sheet as text (an empty cell is "")."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def check_unique_columns(names: Sequence[str], *, file: str) -> None:
    """An error naming the first column name (normalised) that appears twice.

    Raises
    ------
    InputFileError
        Two columns share a name: which one holds the values is not knowable (pandas would
        read the first and drop the other silently).
    """
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name and name in seen:
            raise InputFileError(f"two columns are named {name!r} (column {i + 1} repeats an "
                                 "earlier one); rename or remove one", file=file, column=name)
        seen.add(name)


def _read_csv(path: Path, name: str, *, required: Sequence[str], typed: bool,
              numbers: Sequence[str], dates: Sequence[str],
              time_of_day: str | None) -> tuple[pd.DataFrame, FileInfo]:
    """A CSV table file: pyarrow, typed in arrow, when every record is one line; else the
    careful :mod:`csv` path, typed in pandas. Both give the same frame."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read the file: {exc.strerror}", file=path) from exc
    text, encoding, header_line = sniff_text(data, file=name)
    delim = pick_delimiter(header_line, required=required)
    if encoding in ("UTF-8", "UTF-8 with BOM"):
        utf8 = data if encoding == "UTF-8" else data[3:]
        text = None  # the bytes are the text: hold one copy while pyarrow reads
    else:
        utf8 = text.encode("utf-8") if text is not None else data
    number_names = set(numbers)

    def number(cell: str) -> bool:
        name = normalise_name(cell)
        return name in number_names or name.startswith("x_")  # x_: extra numbers

    split = split_csv_bytes(utf8, delimiter=delim, number=number if typed else None)
    if split is not None:
        header = [normalise_name(h) for h in split.header]
        check_unique_columns(header, file=name)
        extra = [c for c in header if c.startswith("x_")] if typed else []
        frame = typed_arrow_frame(split, header=header, file=name,
                                  numbers=[*numbers, *extra], dates=dates,
                                  time_of_day=time_of_day)
    else:
        if text is None:
            text, _ = decode_bytes(data, file=name)
        parsed = parse_csv_text(text, delimiter=delim, file=name)
        header = [normalise_name(h) for h in parsed.header]
        check_unique_columns(header, file=name)
        frame = records_frame(parsed, header=header, file=name)
        if typed:
            frame = typed_columns(
                frame, numbers=[*numbers, *(c for c in frame if c.startswith("x_"))],
                dates=dates, time_of_day=time_of_day)
    return frame, FileInfo(name=name, encoding=encoding, delimiter=delim, lines=len(frame))


def _typed_cells(col: pd.Series, *, number: bool, date: bool
                 ) -> tuple[pd.Series, pd.Series, pd.Series | None]:
    """One Excel/Parquet column as the reader emits it, keeping the file's own types.

    A number column of a numeric dtype becomes float64 and a date column of a (zone-free)
    datetime dtype ``datetime64[us]`` directly; a column holding only text is trimmed; any
    other column (mixed cells, numbers in a date column, ...) is written as a CSV would
    hold it (:func:`~analysis.ingest._io.stringify`) and typed like CSV text, so each file
    gives the values its CSV twin gives.

    Returns
    -------
    values, present, has_time
        The cells, a mask of cells holding a value as written (a blank row has none) and,
        for a typed date column, which cells had a time of day (else None).
    """
    dtype = col.dtype
    if number and pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(
            dtype):
        values = col.astype("float64")
        return values, values.notna(), None
    if date and pd.api.types.is_datetime64_dtype(dtype):
        dt = col.astype("datetime64[us]")
        return dt, dt.notna(), (dt.notna() & (dt != dt.dt.normalize())).astype(bool)
    if not number and not date and pd.api.types.infer_dtype(col, skipna=True) in (
            "string", "empty"):
        text = col.astype("str").str.strip()
        text = text.mask(text == "")
        return text, text.notna(), None
    text = stringify(col.to_frame())[col.name]
    if number:
        return typed_number(text), text.notna(), None
    if date:
        dt, has_time = typed_date(text)
        return dt, text.notna(), has_time
    return text, text.notna(), None


def _read_typed(raw: pd.DataFrame, name: str, kind: str, *, numbers: Sequence[str] = (),
                dates: Sequence[str] = (), time_of_day: str | None = None,
                ) -> tuple[pd.DataFrame, FileInfo]:
    """Excel/Parquet frame -> reader table keeping its types (:func:`_typed_cells`);
    'line' is the spreadsheet row (header = row 1); rows with no cell are blank."""
    raw = raw.set_axis([normalise_name(str(c)) for c in raw.columns], axis=1)
    raw = raw.loc[:, ~raw.columns.duplicated()].reset_index(drop=True)
    typed_numbers = {*numbers, *(c for c in raw.columns if c.startswith("x_"))} if (
        numbers or dates) else set()
    cols: dict[str, pd.Series] = {}
    filled = pd.Series(False, index=raw.index)
    has_time = None
    for col in raw.columns:
        values, present, times = _typed_cells(raw[col], number=col in typed_numbers,
                                              date=col in dates)
        cols[col] = values
        filled |= present
        if col == time_of_day and times is not None:
            has_time = times
    frame = pd.DataFrame(cols, index=raw.index)
    frame[SOURCE_FILE] = name
    frame[SOURCE_LINE] = pd.array(range(2, len(frame) + 2), dtype="int64")
    if has_time is not None:
        frame[HAS_TIME] = has_time
    frame = frame[filled].astype({SOURCE_FILE: "str"}).reset_index(drop=True)
    return frame, FileInfo(name=name, encoding=kind, delimiter="", lines=len(frame))


def read_canonical(
    raw_dir: Path, *,
    pain_reader: Callable[[Path], tuple[pd.DataFrame, FileInfo]] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, FileInfo]]:
    """Read the canonical tables in ``raw_dir``.

    ``pain_reader``, when given, reads the pain table from the folder instead of
    ``pain.csv`` (``ingest.diary.read_diary_folder`` for a wide pain diary), so that this
    module needs to know no other format.

    Returns
    -------
    tables, infos
        ``{"runners": df, "runs": df, "pain": df, "shoes": df}`` (shoes empty when there is
        no shoes file) and ``{file name: FileInfo}``.
    """
    tables: dict[str, pd.DataFrame] = {}
    infos: dict[str, FileInfo] = {}
    # text files are read on READ_THREADS threads (pyarrow's reader and the arrow kernels
    # that type the columns release the GIL); every result, and the first error, is taken
    # in table order, as a read one file after the other gives them. Excel, Parquet and the
    # diary reader (lazy imports of their libraries) run on this thread, in turn.
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        jobs = {table: _table_job(raw_dir, table, pool, pain_reader=pain_reader)
                for table in TABLES}
        try:
            for table, job in jobs.items():
                result = job.result() if isinstance(job, Future) else job()
                if result is None:
                    tables[table] = empty_table(table)
                    continue
                tables[table], info = result
                infos[info.name] = info
        finally:
            for job in jobs.values():
                if isinstance(job, Future):
                    job.cancel()
    return tables, infos


def _table_job(raw_dir: Path, table: str, pool: ThreadPoolExecutor, *,
               pain_reader: Callable[[Path], tuple[pd.DataFrame, FileInfo]] | None,
               ) -> Future[Any] | Callable[[], Any]:
    """How :func:`read_canonical` gets ``table``: a text file's read submitted to ``pool``,
    or a call to make in turn (the pain reader, an Excel or Parquet file, a missing file:
    None or its error)."""
    required, optional, must_exist = TABLES[table]
    if pain_reader is not None and table == "pain":
        return lambda: pain_reader(raw_dir)
    try:
        path = find_table_file(raw_dir, table)
    except InputFileError as error:
        return partial(_raise, error)
    if path is None:
        if not must_exist:
            return lambda: None
        return partial(_raise, InputFileError(
            f"missing file {table}.csv (also looked for {', '.join(TABLE_SUFFIXES[1:])})",
            file=raw_dir / f"{table}.csv"))
    read = partial(read_table_file, path, required=required, optional=optional, table=table)
    if path.suffix.lower() in BINARY_SUFFIXES:
        return read
    return pool.submit(read)


def _raise(error: Exception) -> None:
    raise error


#: ``source_file`` of runners rows made up by a reader (export formats have no runners file).
DERIVED_RUNNERS = "(derived runners)"


def derived_runners(runner_ids: list[str], *, cohort: str) -> pd.DataFrame:
    """One runners row per id, all in ``cohort`` (line numbers count from 1 in that list)."""
    ids = list(dict.fromkeys(runner_ids))
    return pd.DataFrame({
        "runner_id": pd.array(ids, dtype="str"),
        "cohort": pd.array([cohort] * len(ids), dtype="str"),
        SOURCE_FILE: pd.array([DERIVED_RUNNERS] * len(ids), dtype="str"),
        SOURCE_LINE: pd.array(range(1, len(ids) + 1), dtype="int64"),
    })
