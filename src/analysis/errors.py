"""One exception family. The CLI prints these as one line and exits with code 2.

Anything that is not a :class:`KneeloadError` is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

#: Exit code for bad input or an impossible request (anything a user can fix).
EXIT_USER_ERROR = 2


class KneeloadError(Exception):
    """Base class for errors a user can act on (bad input, impossible request)."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = None if file is None else str(file)
        self.row = row
        self.column = column

    def one_line(self) -> str:
        """The error as a single line: ``file, row N, column 'c': message``."""
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        text = " ".join(self.message.split())
        return f"{', '.join(where)}: {text}" if where else text

    def __str__(self) -> str:
        return self.one_line()


class InputFileError(KneeloadError):
    """A raw input file is missing, empty, unreadable or lacks a required column."""


class DataContractError(KneeloadError):
    """A table does not meet its column contract (see :mod:`analysis.schemas`)."""


class ModelSpecError(KneeloadError):
    """A model request cannot be identified (constant exposure, too few runners, ...)."""


class ReportError(KneeloadError):
    """A report run could not start (bad parameter, lock held, missing template)."""
