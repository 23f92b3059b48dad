"""CSV files researchers open in a spreadsheet: text that would run as a formula is defused.

OWASP "CSV Injection" guidance: a cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is read by Excel, LibreOffice and Google Sheets as a formula
(``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``, ``@SUM(...)``); prefixing a single quote makes
the spreadsheet show it as text. kneeload writes every such cell as ``'`` + the cell, and
also prefixes a cell that already begins with ``'``, so the rule is reversible without
guessing: **a cell that begins with ``'`` had one ``'`` added; remove it to get the value as
read** (:func:`restore_formulas`, which :func:`analysis.pipeline.load_processed` applies).

Imports nothing of :mod:`analysis` (a bottom-layer module).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

#: First characters that make a spreadsheet treat a cell as a formula (OWASP CSV Injection,
#: https://owasp.org/www-community/attacks/CSV_Injection), plus the quote itself (so that
#: :func:`restore_formulas` is exact).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")
#: What a defused cell starts with.
FORMULA_GUARD = "'"


def _text_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns
            if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Every text cell starting with one of :data:`FORMULA_TRIGGERS` prefixed with ``'``.

    Numbers and dates are left as they are (a negative number is not text here).
    """
    out = {}
    for col in _text_columns(frame):
        text = frame[col].astype("str")
        risky = text.str.startswith(FORMULA_TRIGGERS).fillna(False).astype(bool)
        if risky.any():
            out[col] = text.mask(risky, FORMULA_GUARD + text)
    return frame.assign(**out) if out else frame


def restore_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """The inverse of :func:`neutralise_formulas`: one leading ``'`` removed from text cells."""
    out = {}
    for col in _text_columns(frame):
        text = frame[col].astype("str")
        guarded = text.str.startswith(FORMULA_GUARD).fillna(False).astype(bool)
        if guarded.any():
            out[col] = text.mask(guarded, text.str[len(FORMULA_GUARD):])
    return frame.assign(**out) if out else frame


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as CSV (UTF-8, no index) with formula text defused."""
    neutralise_formulas(frame).to_csv(path, index=False)


#: Text that is only formatted numbers: digits, signs, ``.``, ``,``, ``%``, brackets,
#: spaces and the word "to" ("-0.14", "-0.20 to -0.09", "+12 %", "3 (2 to 4)"). A
#: spreadsheet runs no function from it, so a display table keeps its leading minus sign.
NUMBER_TEXT = re.compile(r"(?=.*\d)(?:[-+\u2212\d.,%() ]|to)+")


def defuse_display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A table of text for people (Table 1, the model table) with every header and cell
    that would run as a formula prefixed with ``'`` (:data:`FORMULA_TRIGGERS`), except
    formatted numbers (:data:`NUMBER_TEXT`): a cohort label such as ``=cmd|' /C calc'!A0``
    reaches a header (``"<label> (n = 20)"``) as well as cells."""
    def safe(value: object) -> object:
        if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS) \
                and not NUMBER_TEXT.fullmatch(value):
            return FORMULA_GUARD + value
        return value

    out = frame.map(safe)
    out.columns = [safe(str(c)) for c in frame.columns]
    return out


def write_display_csv(frame: pd.DataFrame, path: Path) -> None:
    """A display table as CSV (UTF-8, no index), headers and cells defused
    (:func:`defuse_display_table`)."""
    defuse_display_table(frame).to_csv(path, index=False)


def read_csv(path: Path, *, text: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV :func:`write_csv` wrote, text cells as they were before defusing.

    ``text``: columns read as text whatever they hold (a quarantined ``value`` column mixes
    numbers and words); an empty cell is missing.
    """
    frame = pd.read_csv(path, dtype=dict.fromkeys(text, "str"))
    return restore_formulas(frame)


__all__ = ["FORMULA_GUARD", "FORMULA_TRIGGERS", "NUMBER_TEXT", "defuse_display_table",
           "neutralise_formulas", "read_csv", "restore_formulas", "write_csv",
           "write_display_csv"]
