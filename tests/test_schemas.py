"""Table contracts: the fast checker and the pandera schema accept and reject the same tables."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import pandas as pd
import pandera.errors
import pytest

from analysis import schemas
from analysis.errors import DataContractError
from analysis.schemas import CONTRACTS, check_table, pandera_schema


def _day(values: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(values), dtype="datetime64[us]")


def _str(values: list) -> pd.Series:
    return pd.Series(values, dtype="str")


VALID: dict[str, pd.DataFrame] = {
    "runners": pd.DataFrame({"runner_id": _str(["R1", "R2"]), "cohort": _str(["A", "B"]),
                             "sex": _str(["F", None]), "age": [30.0, np.nan],
                             "follow_up_start": _day(["2024-01-01", "2024-01-02"]),
                             "follow_up_end": _day(["2024-06-01", None])}),
    "runs": pd.DataFrame({"runner_id": _str(["R1", "R1"]),
                          "date": _day(["2024-01-01", "2024-01-01"]),
                          "distance_km": [100.0, 0.01], "duration_min": [600.0, np.nan],
                          "shoe_id": _str(["S", None]), "rpe": [0.0, 10.0]}),
    "pain": pd.DataFrame({"runner_id": _str(["R1", "R2"]),
                          "date": _day(["2024-01-01", "2024-01-01"]), "pain": [0.0, 10.0]}),
    "shoes": pd.DataFrame({"shoe_id": _str(["S", "S"]), "runner_id": _str(["R1", "R2"]),
                           "start_date": _day(["2024-01-01", None]), "start_km": [0.0, np.nan]}),
    "panel": pd.DataFrame({"runner_id": _str(["R1", "R1"]), "cohort": _str(["A", "A"]),
                           "date": _day(["2024-01-01", "2024-01-02"]),
                           "reference_date": _day(["2023-12-25", "2023-12-26"]),
                           "pain": [3.0, 0.0], "pain_any": [True, False]}),
    "daily": pd.DataFrame({"runner_id": _str(["R1", "R1"]),
                           "date": _day(["2024-01-01", "2024-01-02"]), "day_index": [0, 1],
                           "distance_km": [0.0, np.nan], "n_runs": [0, 0],
                           "rest_day": pd.array([True, None], dtype="boolean"),
                           "unlogged_gap": [False, True]}),
}

Mutation = Callable[[pd.DataFrame], pd.DataFrame]


def _set(col: str, value: object, row: int = 1) -> Mutation:
    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        values = out[col].astype(object).to_list()
        values[row] = value
        out[col] = pd.Series(values, index=out.index).astype(out[col].dtype)
        return out
    return mutate


#: (table, what, mutation, still valid?) -- breaches and near-breaches at every bound
CASES: list[tuple[str, str, Mutation, bool]] = [
    ("runners", "duplicate id", _set("runner_id", "R1"), False),
    ("runners", "missing cohort", _set("cohort", None), False),
    ("runners", "age 120", _set("age", 120.0), True),
    ("runners", "age 120.5", _set("age", 120.5), False),
    ("runners", "age -1", _set("age", -1.0), False),
    ("runners", "no optional columns", lambda d: d[["runner_id", "cohort"]], True),
    ("runners", "dates as text", lambda d: d.assign(follow_up_end=_str(["2024", None])), False),
    ("runners", "id as numbers", lambda d: d.assign(runner_id=[1, 2]), False),
    ("runners", "object strings", lambda d: d.assign(cohort=d["cohort"].astype(object)), True),
    ("runs", "distance 0", _set("distance_km", 0.0), False),
    ("runs", "distance 100.01", _set("distance_km", 100.01), False),
    ("runs", "distance missing", _set("distance_km", np.nan), False),
    ("runs", "duration 0", _set("duration_min", 0.0, 0), False),
    ("runs", "rpe 10.5", _set("rpe", 10.5), False),
    ("runs", "date missing", _set("date", pd.NaT), False),
    ("runs", "no date column", lambda d: d.drop(columns="date"), False),
    ("runs", "distance as int", lambda d: d.assign(distance_km=[5, 6]), False),
    ("pain", "pain 10.5", _set("pain", 10.5), False),
    ("pain", "pain -0.5", _set("pain", -0.5), False),
    ("pain", "runner missing", _set("runner_id", None), False),
    ("pain", "extra column", lambda d: d.assign(anything=["x", 1]), True),
    ("shoes", "same runner, same shoe", _set("runner_id", "R1"), False),
    ("shoes", "start_km -1", _set("start_km", -1.0), False),
    ("shoes", "shoe id missing", _set("shoe_id", None, 0), False),
    ("panel", "same runner and day", _set("date", pd.Timestamp("2024-01-01")), False),
    ("panel", "pain_any as object", lambda d: d.assign(pain_any=d["pain_any"].astype(object)),
     False),
    ("daily", "negative day index (a lead-in day)", _set("day_index", -1), True),
    ("daily", "in_follow_up as object",
     lambda d: d.assign(in_follow_up=pd.Series([True, False], dtype=object)), False),
    ("daily", "negative distance", _set("distance_km", -0.5, 0), False),
    ("daily", "rest_day as bool", lambda d: d.assign(rest_day=[True, False]), False),
    ("daily", "n_runs as float", lambda d: d.assign(n_runs=[0.0, 1.0]), False),
]


def _pandera_accepts(table: str, frame: pd.DataFrame) -> bool:
    try:
        pandera_schema(table).validate(frame)
    except pandera.errors.SchemaError:
        return False
    return True


def _fast_accepts(table: str, frame: pd.DataFrame) -> bool:
    try:
        check_table(frame, table)
    except DataContractError:
        return False
    return True


@pytest.mark.parametrize("table", list(VALID))
def test_valid_tables_pass_both_checkers(table: str) -> None:
    assert _fast_accepts(table, VALID[table])
    assert _pandera_accepts(table, VALID[table])
    assert check_table(VALID[table], table) is VALID[table]


@pytest.mark.parametrize(("table", "what", "mutate", "valid"), CASES,
                         ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_fast_check_agrees_with_pandera(table: str, what: str, mutate: Mutation,
                                        valid: bool) -> None:
    frame = mutate(VALID[table])
    assert _pandera_accepts(table, frame) is valid, f"pandera on {what}"
    assert _fast_accepts(table, frame) is valid, f"fast check on {what}"


def test_a_breach_names_table_column_and_row() -> None:
    frame = _set("distance_km", 150.0)(VALID["runs"])
    with pytest.raises(DataContractError, match=r"runs table: column 'distance_km' value "
                                                 r"150\.0 \(row 1\) is outside \(0, 100\]"):
        check_table(frame, "runs")


def test_every_contract_has_its_pandera_schema() -> None:
    assert set(CONTRACTS) == {"runners", "runs", "pain", "shoes", "panel", "daily"}
    assert schemas.RUNS is pandera_schema("runs")  # built once, from the one contract
    assert schemas.DAILY.name == "daily"
    with pytest.raises(AttributeError):
        _ = schemas.NOT_A_SCHEMA


def test_importing_schemas_and_cleaning_imports_no_pandera() -> None:
    code = ("import sys, analysis.schemas, analysis.clean, analysis.ingest.canonical; "
            "print('pandera' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_a_sorted_key_is_shown_unique_without_hashing_and_repeats_are_still_found() -> None:
    """check_table's key check (schemas._strictly_increasing, then DataFrame.duplicated when
    the rows are not in strictly increasing key order) raises exactly when the key repeats,
    in any row order, with missing values, for text, number and datetime keys."""
    rng = np.random.default_rng(11)
    contract = schemas.TableContract("keys", {}, unique=("runner_id", "date"))
    ids = ["R1", "R10", "R2", "é", None]
    days = [*pd.to_datetime(["2024-01-01", "2024-01-02", "2024-02-01"]), pd.NaT]
    shown = 0
    for _ in range(400):
        n = int(rng.integers(0, 7))
        frame = pd.DataFrame({
            "runner_id": _str([ids[i] for i in rng.integers(0, len(ids), n)]),
            "date": pd.Series([days[i] for i in rng.integers(0, len(days), n)],
                              dtype="datetime64[us]")})
        if rng.random() < 0.5:
            frame = frame.sort_values(["runner_id", "date"], ignore_index=True)
        if rng.random() < 0.3:
            frame["date"] = rng.integers(0, 3, n).astype("int64")  # a number key
        repeats = bool(frame.duplicated(["runner_id", "date"], keep=False).any())
        if schemas._strictly_increasing(frame, contract.unique):
            shown += 1
            assert not repeats
        with (pytest.raises(DataContractError, match="repeats") if repeats
              else nullcontext()):
            check_table(frame, contract)
    assert shown > 20  # the fast path was taken

