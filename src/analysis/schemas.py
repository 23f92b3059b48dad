"""Table contracts at module boundaries: one declarative definition, two checkers.

Column names here are the public interface: notebooks, reports and users' code rely on them.
Raw tables (straight from :mod:`analysis.ingest`) carry the canonical names with values as
read, plus provenance columns; clean tables (after :mod:`analysis.clean`) are typed and
checked against the contracts below.

Each contract is written once, as a :class:`TableContract`. :func:`check_table` checks a
table against it with a few vectorised numpy passes (the build uses it: no pandera import,
whose first validation costs about half a second per process); the pandera schemas
``RUNNERS``, ``RUNS``, ``PAIN``, ``SHOES``, ``PANEL`` and ``DAILY`` are built from the same
contracts on first access, so ``import analysis.schemas`` does not import pandera.
``tests/test_schemas.py`` shows that both checkers accept and reject the same tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis import keys
from analysis.defaults import PAIN_MAX, PAIN_MIN  # NRS 0-10, defined once there
from analysis.errors import DataContractError

# --- canonical raw data contract (docs/data-contract.md) -----------------------------------
RUNNERS_REQUIRED = ("runner_id", "cohort")
RUNNERS_OPTIONAL = ("sex", "age", "follow_up_start", "follow_up_end", "hr_rest", "hr_max")
RUNS_REQUIRED = ("runner_id", "date", "distance_km")
#: ``avg_hr_bpm`` / ``max_hr_bpm``: a session's mean / maximum heart rate as the export
#: summarises it (bpm; the maximum may raise a runner's observed HRmax, a mean never does);
#: ``trimp_banister_au`` / ``trimp_edwards_au``: the run's heart-rate load (arbitrary units,
#: :func:`analysis.hrload.session_loads`), from the activity file's samples or the mean HR.
RUNS_OPTIONAL = ("duration_min", "shoe_id", "activity_type", "rpe", "start_time",
                 "avg_hr_bpm", "max_hr_bpm", "trimp_banister_au", "trimp_edwards_au")
PAIN_REQUIRED = ("runner_id", "date", "pain")
OSTRC_ITEMS = ("ostrc_q1", "ostrc_q2", "ostrc_q3", "ostrc_q4")
PAIN_OPTIONAL = OSTRC_ITEMS
SHOES_REQUIRED = ("shoe_id", "runner_id")
SHOES_OPTIONAL = ("start_date", "start_km")

#: Provenance columns every raw table carries: input file name and 1-based line number
#: in that file (the header is line 1, so the first data row is line 2).
SOURCE_FILE = "source_file"
SOURCE_LINE = "source_line"
PROVENANCE = (SOURCE_FILE, SOURCE_LINE)

# --- value ranges -----------------------------------------------------------------------
MAX_DAILY_KM = 100.0  # more than this in one day is treated as impossible (docs/cleaning.md)
#: Plausible heart rates (bpm) of a runners.csv ``hr_rest``/``hr_max`` and a run's mean HR:
#: outside [25, 250] bpm a value is a typing error, not a physiology (kneeload's plausibility
#: bounds, well outside adult resting and maximal rates; not a published threshold).
HR_MIN_BPM = 25.0
HR_MAX_BPM = 250.0

#: Column kinds of a contract and the dtypes each accepts. Dates are calendar days at any
#: datetime64 resolution (pandas 3 parses to microseconds, older pandas to nanoseconds).
KINDS = ("str", "float", "int", "bool", "boolean", "datetime")


@dataclass(frozen=True)
class ColumnContract:
    """What one column of a table must hold.

    Attributes
    ----------
    kind
        One of :data:`KINDS`: ``str`` (text), ``float`` (float64), ``int`` (int64),
        ``bool`` (numpy bool), ``boolean`` (pandas nullable boolean), ``datetime``
        (any datetime64).
    nullable
        Missing values (NA, NaN, NaT) allowed.
    required
        The column must be present.
    lo, hi
        Bounds of the non-missing values (None: unbounded); ``lo_closed``/``hi_closed``
        say whether the bound itself is allowed.
    unique
        No value may repeat.
    """

    kind: str
    nullable: bool = False
    required: bool = True
    lo: float | None = None
    hi: float | None = None
    lo_closed: bool = True
    hi_closed: bool = True
    unique: bool = False


@dataclass(frozen=True)
class TableContract:
    """A table's columns (others may be present) and the column sets that are keys."""

    name: str
    columns: dict[str, ColumnContract]
    unique: tuple[str, ...] = field(default=())


_C = ColumnContract

RUNNERS_CONTRACT = TableContract("runners", {
    "runner_id": _C("str", unique=True),
    "cohort": _C("str"),
    "sex": _C("str", nullable=True, required=False),
    "age": _C("float", nullable=True, required=False, lo=0, hi=120),
    "follow_up_start": _C("datetime", nullable=True, required=False),
    "follow_up_end": _C("datetime", nullable=True, required=False),
    "hr_rest": _C("float", nullable=True, required=False, lo=HR_MIN_BPM, hi=HR_MAX_BPM),
    "hr_max": _C("float", nullable=True, required=False, lo=HR_MIN_BPM, hi=HR_MAX_BPM),
})
RUNS_CONTRACT = TableContract("runs", {
    "runner_id": _C("str"),
    "date": _C("datetime"),
    "distance_km": _C("float", lo=0, hi=MAX_DAILY_KM, lo_closed=False),
    "duration_min": _C("float", nullable=True, required=False, lo=0, lo_closed=False),
    "shoe_id": _C("str", nullable=True, required=False),
    "rpe": _C("float", nullable=True, required=False, lo=0, hi=10),
    "avg_hr_bpm": _C("float", nullable=True, required=False, lo=HR_MIN_BPM, hi=HR_MAX_BPM),
    "max_hr_bpm": _C("float", nullable=True, required=False, lo=HR_MIN_BPM, hi=HR_MAX_BPM),
    "trimp_banister_au": _C("float", nullable=True, required=False, lo=0),
    "trimp_edwards_au": _C("float", nullable=True, required=False, lo=0),
})
PAIN_CONTRACT = TableContract("pain", {
    "runner_id": _C("str"),
    "date": _C("datetime"),
    "pain": _C("float", lo=PAIN_MIN, hi=PAIN_MAX),
})
SHOES_CONTRACT = TableContract("shoes", {
    "shoe_id": _C("str"),
    "runner_id": _C("str"),
    "start_date": _C("datetime", nullable=True, required=False),
    "start_km": _C("float", nullable=True, required=False, lo=0),
}, unique=("runner_id", "shoe_id"))  # Strava's shoe_id is the gear name: shared by runners
#: Minimum columns of the exposure panel (one row per pain report); the exposures module
#: documents every other column in docs/exposures.md.
PANEL_CONTRACT = TableContract("panel", {
    "runner_id": _C("str"),
    "cohort": _C("str"),
    "date": _C("datetime"),
    "reference_date": _C("datetime"),
    "pain": _C("float", lo=PAIN_MIN, hi=PAIN_MAX),
    "pain_any": _C("bool"),
}, unique=("runner_id", "date"))
#: The daily calendar (one row per runner and calendar day of follow-up and of the lead-in
#: before it: ``in_follow_up`` False, ``day_index`` < 0); distance_km is NaN only on days
#: treated as missing (``unlogged_gaps="missing"``, docs/exposures.md).
DAILY_CONTRACT = TableContract("daily", {
    "runner_id": _C("str"),
    "date": _C("datetime"),
    "day_index": _C("int"),
    "in_follow_up": _C("bool", required=False),
    "distance_km": _C("float", nullable=True, lo=0),
    "n_runs": _C("int", lo=0),
    "rest_day": _C("boolean", nullable=True),
    "unlogged_gap": _C("bool"),
}, unique=("runner_id", "date"))

#: Every contract by table name.
CONTRACTS: dict[str, TableContract] = {c.name: c for c in (
    RUNNERS_CONTRACT, RUNS_CONTRACT, PAIN_CONTRACT, SHOES_CONTRACT, PANEL_CONTRACT,
    DAILY_CONTRACT)}


# --- the fast checker ------------------------------------------------------------------
def _kind_ok(series: pd.Series, kind: str) -> bool:
    dtype = series.dtype
    if kind == "str":
        if isinstance(dtype, pd.StringDtype):
            return True
        if dtype != np.dtype(object):
            return False
        # object column: every present cell a str (as pandera checks it)
        return pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")
    if kind == "float":
        return dtype == np.float64
    if kind == "int":
        return dtype == np.int64
    if kind == "bool":
        return dtype == np.bool_
    if kind == "boolean":
        return isinstance(dtype, pd.BooleanDtype)
    if kind == "datetime":
        return pd.api.types.is_datetime64_any_dtype(dtype)
    raise KeyError(f"bug: unknown contract kind {kind!r}")


def _first(mask: np.ndarray, index: pd.Index) -> object:
    return index[int(np.flatnonzero(mask)[0])]


def check_table(table: pd.DataFrame, contract: TableContract | str) -> pd.DataFrame:
    """Check ``table`` against ``contract`` (or its name in :data:`CONTRACTS`).

    Vectorised, copies nothing, returns ``table`` unchanged. Checks what the pandera schema
    of the same contract checks: required columns present, dtype, no missing values unless
    nullable, bounds of the non-missing values, unique columns and key column sets.

    Raises
    ------
    DataContractError
        On the first breach, naming the table, column and the index label of a first
        offending row.
    """
    if isinstance(contract, str):
        contract = CONTRACTS[contract]
    name = contract.name
    for col, rule in contract.columns.items():
        if col not in table.columns:
            if rule.required:
                raise DataContractError(f"{name} table: required column {col!r} is missing",
                                        column=col)
            continue
        series = table[col]
        if isinstance(series, pd.DataFrame):
            raise DataContractError(f"{name} table: column {col!r} appears twice",
                                    column=col)
        if not _kind_ok(series, rule.kind):
            raise DataContractError(
                f"{name} table: column {col!r} has dtype {series.dtype}, the contract "
                f"wants {rule.kind}", column=col)
        missing = series.isna().to_numpy(dtype=bool)
        if not rule.nullable and missing.any():
            raise DataContractError(
                f"{name} table: column {col!r} has missing values (row "
                f"{_first(missing, table.index)!r})", column=col)
        if rule.lo is not None or rule.hi is not None:
            values = series.to_numpy(dtype="float64", na_value=np.nan)
            bad = np.zeros(len(values), dtype=bool)
            with np.errstate(invalid="ignore"):
                if rule.lo is not None:
                    bad |= (values < rule.lo) if rule.lo_closed else (values <= rule.lo)
                if rule.hi is not None:
                    bad |= (values > rule.hi) if rule.hi_closed else (values >= rule.hi)
            bad &= ~missing
            if bad.any():
                pos = int(np.flatnonzero(bad)[0])
                raise DataContractError(
                    f"{name} table: column {col!r} value {values[pos].item()!r} (row "
                    f"{table.index[pos]!r}) "
                    f"is outside {_bounds(rule)}", column=col)
        if rule.unique:
            dup = series.duplicated(keep=False).to_numpy(dtype=bool)
            if dup.any():
                raise DataContractError(
                    f"{name} table: column {col!r} repeats values (row "
                    f"{_first(dup, table.index)!r})", column=col)
    if contract.unique and all(c in table.columns for c in contract.unique) and not (
            _strictly_increasing(table, contract.unique)):
        dup = table.duplicated(list(contract.unique), keep=False).to_numpy(dtype=bool)
        if dup.any():
            raise DataContractError(
                f"{name} table: ({', '.join(contract.unique)}) repeats (row "
                f"{_first(dup, table.index)!r})")
    return table


def _strictly_increasing(table: pd.DataFrame, key: Sequence[str]) -> bool:
    """True when the rows are in strictly increasing order of ``key`` (lexicographic, no
    missing value): then no key repeats, which the build's sorted tables show without
    hashing every key (``DataFrame.duplicated``: 0.07 s of each 2,000 x 365 table). False
    means "not shown": the caller then looks for repeats."""
    if len(table) < 2:
        return False
    increasing: np.ndarray | None = None
    for col in reversed(list(key)):
        series = table[col]
        if isinstance(series, pd.DataFrame):
            return False
        adjacent = keys.adjacent(series)
        if adjacent is None:
            return False
        equal, less = adjacent
        increasing = less if increasing is None else less | (equal & increasing)
    return bool(increasing is not None and increasing.all())


def _bounds(rule: ColumnContract) -> str:
    lo = "" if rule.lo is None else f"{'[' if rule.lo_closed else '('}{rule.lo:g}"
    hi = "" if rule.hi is None else f"{rule.hi:g}{']' if rule.hi_closed else ')'}"
    if rule.lo is not None and rule.hi is not None:
        return f"{lo}, {hi}"
    return f">{'=' if rule.lo_closed else ''} {rule.lo:g}" if rule.lo is not None else \
        f"<{'=' if rule.hi_closed else ''} {rule.hi:g}"


# --- the same contracts as pandera schemas, built on first access ------------------------
_PANDERA_NAMES = {"RUNNERS": "runners", "RUNS": "runs", "PAIN": "pain", "SHOES": "shoes",
                  "PANEL": "panel", "DAILY": "daily"}
_built: dict[str, Any] = {}


def pandera_schema(contract: TableContract | str) -> Any:
    """The pandera ``DataFrameSchema`` of ``contract`` (imports pandera; cached)."""
    if isinstance(contract, str):
        contract = CONTRACTS[contract]
    if contract.name in _built:
        return _built[contract.name]
    import pandera.pandas as pa

    is_datetime = pa.Check(pd.api.types.is_datetime64_any_dtype, element_wise=False,
                           name="is_datetime64")
    dtypes = {"str": str, "float": float, "int": int, "bool": bool, "boolean": "boolean",
              "datetime": None}
    columns = {}
    for col, rule in contract.columns.items():
        checks = [is_datetime] if rule.kind == "datetime" else []
        if rule.lo is not None and rule.hi is not None:
            checks.append(pa.Check.in_range(rule.lo, rule.hi, include_min=rule.lo_closed,
                                            include_max=rule.hi_closed))
        elif rule.lo is not None:
            checks.append(pa.Check.ge(rule.lo) if rule.lo_closed else pa.Check.gt(rule.lo))
        elif rule.hi is not None:
            checks.append(pa.Check.le(rule.hi) if rule.hi_closed else pa.Check.lt(rule.hi))
        columns[col] = pa.Column(dtypes[rule.kind], checks, nullable=rule.nullable,
                                 required=rule.required, unique=rule.unique)
    schema = pa.DataFrameSchema(columns, name=contract.name, strict=False,
                                unique=list(contract.unique) or None)
    _built[contract.name] = schema
    return schema


def __getattr__(name: str) -> Any:
    """``schemas.RUNS`` etc.: the pandera schemas, built (and pandera imported) lazily."""
    if name in _PANDERA_NAMES:
        return pandera_schema(_PANDERA_NAMES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
