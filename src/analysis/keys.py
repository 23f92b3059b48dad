"""Integer keys of the package: the one day number of a date, and codes of IDs.

Every table the build joins is keyed by runner and day. These functions turn both into
integers once, in one way, wherever a module needs them: ``day_numbers`` (whole days since
1970-01-01; ``day_dates`` turns them back into dates), ``factorize`` (``pandas.factorize``,
without hashing a column whose equal values are already grouped together, as the build's
tables are), ``stable_order`` (a lexical sort that skips rows already in order) and
``positions`` (where each value sits in an index of IDs); ``adjacent`` compares each row
with the next (the build's sorted-key check, :func:`analysis.schemas.check_table`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Day number of a missing date (NaT): the int64 minimum, below every real day.
MISSING_DAY = np.iinfo(np.int64).min
#: Resolution of the dates :func:`day_dates` gives back (pandas 3's default).
DATE_UNIT = "datetime64[us]"
_US_PER_DAY = 86_400 * 1_000_000
_MAX_DAYS = np.iinfo(np.int64).max // _US_PER_DAY  # about 292,000 years either side of 1970


def day_numbers(dates: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Whole days since 1970-01-01 (int64) of dates of any datetime resolution (a time of
    day is dropped: the day it falls on; a time-zone-aware time counts on its own zone's
    calendar, the day its runner lived it); a missing date is :data:`MISSING_DAY`."""
    values = pd.to_datetime(dates)
    if getattr(values.dtype, "tz", None) is not None:
        values = values.dt.tz_localize(None) if isinstance(values, pd.Series) \
            else values.tz_localize(None)
    days = np.asarray(values).astype("datetime64[D]")
    return days.astype(np.int64)  # NaT is the int64 minimum, MISSING_DAY


def day_dates(days: np.ndarray) -> np.ndarray:
    """The inverse of :func:`day_numbers`: whole days since 1970-01-01 as midnight
    datetimes (:data:`DATE_UNIT`); :data:`MISSING_DAY` or NaN (float day numbers) -> NaT.
    Integer arithmetic on the days, no unit casts."""
    days = np.asarray(days)
    if days.dtype.kind == "f":
        known = np.isfinite(days) & (days != float(MISSING_DAY))
        size = np.abs(np.where(known, days, 0.0))  # checked before the cast can wrap
        whole = np.where(known & (size <= _MAX_DAYS), days, 0).astype(np.int64)
    else:
        whole = days.astype(np.int64, copy=False)
        known = whole != MISSING_DAY
        size = np.abs(np.where(known, whole, 0))
    if len(size) and size.max() > _MAX_DAYS:
        raise ValueError(f"day numbers beyond +/-{_MAX_DAYS:,} days (the range of "
                         f"{DATE_UNIT}) have no date")
    if known.all():
        return (whole * _US_PER_DAY).view(DATE_UNIT)
    out = (np.where(known, whole, 0) * _US_PER_DAY).view(DATE_UNIT)
    out[~known] = np.datetime64("NaT")
    return out


def factorize(values: pd.Series, *, sort: bool = False) -> tuple[np.ndarray, pd.Index]:
    """``pandas.factorize(values, sort=sort)``: the code of each row (-1 where missing) and
    the distinct values, the same codes and values.

    A text column whose equal values stand together, each value in one stretch (every
    table of the build is in runner order), is coded from the comparison of each row with
    the next: no hash of 2-3 million IDs (0.1 s of each such column at 9,000 runners).
    Any other column is ``pandas.factorize``'s.
    """
    grouped = _grouped_codes(values, sort=sort)
    if grouped is not None:
        return grouped
    codes, uniques = pd.factorize(values, sort=sort)
    return codes, pd.Index(uniques)


def stable_order(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """Row positions sorted by ``major`` then ``minor`` (integer arrays), ties in row order:
    ``np.lexsort((minor, major))``. Rows already in that order (the build's cleaned tables,
    runner then day) give ``arange(n)`` after one comparison of each row with the next,
    without the sort (30 ms of the 2,000 x 365 build's 660,000 pain reports)."""
    major, minor = np.asarray(major), np.asarray(minor)
    if major.ndim != 1 or minor.shape != major.shape:
        raise ValueError(f"stable_order takes two 1-d arrays of one length; got shapes "
                         f"{major.shape} and {minor.shape}")
    if len(major) < 2:
        return np.arange(len(major))
    same = major[1:] == major[:-1]
    if ((major[1:] > major[:-1]) | (same & (minor[1:] >= minor[:-1]))).all():
        return np.arange(len(major))
    return np.lexsort((minor, major))


def positions(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each value in ``index`` (-1 when absent or missing), each distinct value
    looked up once; values are compared as text."""
    codes, uniques = factorize(values if _is_text(values) else values.astype("str"))
    at = index.get_indexer(uniques.astype("str"))
    return np.where(codes >= 0, at[np.maximum(codes, 0)] if len(at) else -1, -1)


def adjacent(series: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """``(equal, less)`` of each row with the next (``row i`` vs ``row i + 1``, bool arrays
    of length n - 1, False where either is missing) for a text, number or datetime column;
    None for any other dtype."""
    cells = _arrow_text(series)
    if cells is not None:
        before, after = cells[:-1], cells[1:]
        return tuple(pc.fill_null(op(before, after), False).to_numpy(zero_copy_only=False)
                     for op in (pc.equal, pc.less))
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iufM":
        values = series.to_numpy()
        with np.errstate(invalid="ignore"):
            return values[:-1] == values[1:], values[:-1] < values[1:]  # NaN, NaT: False
    return None


def _is_text(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.StringDtype)


def _arrow_text(values: pd.Series) -> pa.ChunkedArray | None:
    """The Arrow cells of a pyarrow-backed text column (no copy); None for any other."""
    if not (_is_text(values) and values.dtype.storage == "pyarrow"):
        return None
    cells = values.array.__arrow_array__()
    return pa.chunked_array([cells]) if isinstance(cells, pa.Array) else cells


def _grouped_codes(values: pd.Series, *, sort: bool) -> tuple[np.ndarray, pd.Index] | None:
    """The codes of a pyarrow text column without missing values whose equal values each
    stand in one stretch (with ``sort``: stretches in increasing order); None otherwise."""
    cells = _arrow_text(values)
    n = len(values)
    if cells is None or n < 2 or cells.null_count:
        return None
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = pc.not_equal(cells[:-1], cells[1:]).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(new)
    heads = cells.take(pa.array(starts))
    if sort:
        if len(heads) > 1 and not pc.all(pc.less(heads[:-1], heads[1:])).as_py():
            return None
    elif not pd.Index(heads.to_pandas()).is_unique:
        return None
    uniques = pd.Index(pd.array(heads, dtype=values.dtype))
    return np.cumsum(new, dtype=np.intp) - 1, uniques
