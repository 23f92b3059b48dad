"""Reader for the canonical dataset (docs/data-contract.md): runners, runs, pain, shoes.

Each table may be ``<table>.csv`` (any of UTF-8, UTF-8 with BOM, UTF-16, Latin-1; comma,
semicolon, tab or pipe delimited), ``<table>.xlsx`` (first sheet) or ``<table>.parquet``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from analysis.errors import InputFileError
from analysis.ingest._io import (
    SOURCE_ISSUE,
    FileInfo,
    decode_bytes,
    normalise_name,
    parse_csv_text,
    pick_delimiter,
    records_frame,
    stringify,
    typed_columns,
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
SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".parquet")
#: table -> (number columns, date columns) a reader types (``start_time`` stays text: it may
#: be a clock time, which only means something with the run's date).
TYPED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "runners": (("age",), ("follow_up_start", "follow_up_end")),
    "runs": (("distance_km", "duration_min", "rpe"), ("date",)),
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
    found = [raw_dir / f"{table}{s}" for s in SUFFIXES if (raw_dir / f"{table}{s}").is_file()]
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
    (:data:`TYPED`, :func:`~analysis.ingest._io.typed_columns`): a column whose every
    cell parses is emitted as float64 or datetime64, any other stays text for cleaning to
    quarantine its bad cells with the text as written. Extra ``x_`` columns are numbers.

    Raises
    ------
    InputFileError
        Empty, binary or HTML file; a required column missing (names it and lists the
        columns found).
    """
    name = path.name
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        frame, info = _read_typed(pd.read_excel(path, sheet_name=0, dtype=object), name, "xlsx")
    elif suffix == ".parquet":
        frame, info = _read_typed(pd.read_parquet(path), name, "parquet")
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(f"cannot read the file: {exc.strerror}", file=path) from exc
        text, encoding = decode_bytes(data, file=name)
        header_line = next((ln for ln in text.splitlines() if ln.strip()), "")
        delim = pick_delimiter(header_line, required=required)
        parsed = parse_csv_text(text, delimiter=delim, file=name)
        frame = records_frame(parsed, header=[normalise_name(h) for h in parsed.header],
                              file=name)
        info = FileInfo(name=name, encoding=encoding, delimiter=delim, lines=len(frame))
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
    if table is not None:
        numbers, dates = TYPED[table]
        frame = typed_columns(frame, numbers=[*numbers, *(c for c in frame if c.startswith("x_"))],
                              dates=dates, time_of_day="date" if table == "runs" else None)
    return frame, info


def _read_typed(raw: pd.DataFrame, name: str, kind: str) -> tuple[pd.DataFrame, FileInfo]:
    """Excel/Parquet frame -> strings; 'line' is the spreadsheet row (header = row 1)."""
    frame = stringify(raw).set_axis([normalise_name(str(c)) for c in raw.columns], axis=1)
    frame = frame.loc[:, ~frame.columns.duplicated()]
    frame[SOURCE_FILE] = name
    frame[SOURCE_LINE] = pd.array(range(2, len(frame) + 2), dtype="int64")
    frame = frame[frame.drop(columns=[SOURCE_FILE, SOURCE_LINE]).notna().any(axis=1)]
    frame = frame.astype({SOURCE_FILE: "str"}).reset_index(drop=True)
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
    for table, (required, optional, must_exist) in TABLES.items():
        if pain_reader is not None and table == "pain":
            tables[table], info = pain_reader(raw_dir)
            infos[info.name] = info
            continue
        path = find_table_file(raw_dir, table)
        if path is None:
            if must_exist:
                raise InputFileError(
                    f"missing file {table}.csv (also looked for {', '.join(SUFFIXES[1:])})",
                    file=raw_dir / f"{table}.csv",
                )
            tables[table] = empty_table(table)
            continue
        frame, info = read_table_file(path, required=required, optional=optional, table=table)
        tables[table] = frame
        infos[info.name] = info
    return tables, infos


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
