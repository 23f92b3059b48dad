"""The names of the files the readers parse: table suffixes and watch activity formats
(gzipped or not).

Standard library only, so that a ``kneeload build`` process can size its heap warm-up by
them before pandas loads (:func:`analysis.memory.warm_bytes`); the readers
(:mod:`analysis.ingest.canonical`, :mod:`analysis.ingest.diary`,
:mod:`analysis.ingest.activity`) use the same names.
"""

from __future__ import annotations

#: Suffixes of the table files the readers parse (CSV and other delimited text, Excel,
#: Parquet); the canonical reader looks for ``<table><suffix>`` in this order.
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".parquet")
#: Watch activity file formats the readers parse, by suffix, each also gzipped
#: (``1.fit.gz``).
ACTIVITY_FORMATS = ("fit", "gpx", "tcx")


def split_suffix(name: str) -> tuple[str | None, bool]:
    """(activity format from the file name, gzipped?) e.g. ``"1.fit.gz" -> ("fit", True)``;
    the format is None for any other name."""
    lower = name.lower()
    gz = lower.endswith(".gz")
    if gz:
        lower = lower[:-3]
    fmt = lower.rpartition(".")[2]
    return (fmt if fmt in ACTIVITY_FORMATS and "." in lower else None), gz


def is_activity_file(name: str) -> bool:
    """Whether a file of this name is a watch activity file (:func:`split_suffix`)."""
    return split_suffix(name)[0] is not None


def is_parsed_file(name: str) -> bool:
    """Whether a file of this name is one the readers parse: a table
    (:data:`TABLE_SUFFIXES`, not gzipped) or a watch activity file."""
    return name.lower().endswith(TABLE_SUFFIXES) or is_activity_file(name)
