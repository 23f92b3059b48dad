"""Tests for analysis.exposures: hand-computed fixtures, properties, an independent reference."""

from __future__ import annotations

import ast
import math
import operator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.exposures import PanelBuild, build_panel, daily_calendar

FIXTURES = Path(__file__).parent / "fixtures" / "exposures"

D0 = pd.Timestamp("2025-03-03")  # a Monday: follow-up day 0


def _day(k: int) -> pd.Timestamp:
    return D0 + pd.Timedelta(days=k)


def _quick_tables() -> tuple[pd.DataFrame, ...]:
    """Runner A: 3 weeks of 30 km (Wed, Sun rest; two runs on Sat), a 39 km week 4.

    Runner B: 20 km in week 1, nothing in week 2, 5 km in week 3.
    Shoe A1 has start_km 100 and start_date 2025-02-01; A2 is not in the shoes table.
    """
    rows = []
    for week in range(4):
        base = 7 * week
        rows += [(base + 0, 5.0, "A1", "07:00"), (base + 1, 5.0, "A2", "07:00"),
                 (base + 3, 5.0, "A1", "07:00"), (base + 4, 5.0, "A2", "07:00"),
                 (base + 5, 4.0, "A1", "07:00"), (base + 5, 6.0, "A2", "18:00")]
    rows.append((27, 9.0, "A1", "07:00"))
    runs_a = pd.DataFrame(rows, columns=["k", "distance_km", "shoe_id", "start_time"])
    runs_a["runner_id"] = "A"
    runs_b = pd.DataFrame({"k": [0, 2, 15], "distance_km": [10.0, 10.0, 5.0],
                           "shoe_id": [None, None, None], "start_time": ["07:00"] * 3})
    runs_b["runner_id"] = "B"
    runs = pd.concat([runs_a, runs_b], ignore_index=True)
    runs["date"] = runs["k"].map(_day).astype("datetime64[us]")
    runs = runs.drop(columns="k")
    runners = pd.DataFrame({"runner_id": ["A", "B"], "cohort": ["c1", "c2"],
                            "sex": ["F", "M"], "age": [30.0, 41.0],
                            "follow_up_start": [D0, D0],
                            "follow_up_end": [_day(41), _day(41)]})
    pain = pd.DataFrame({"runner_id": ["A", "A", "A", "B", "B"],
                         "date": [_day(13), _day(27), _day(34), _day(27), _day(27)],
                         "pain": [1.0, 3.0, 2.0, 5.0, 2.0]})
    shoes = pd.DataFrame({"shoe_id": ["A1"], "runner_id": ["A"],
                          "start_date": [pd.Timestamp("2025-02-01")], "start_km": [100.0]})
    return runs, runners, pain, shoes


@pytest.fixture
def quick() -> PanelBuild:
    runs, runners, pain, shoes = _quick_tables()
    return build_panel(runs, runners, pain, shoes)


def _row(build: PanelBuild, runner: str, k: int) -> pd.Series:
    panel = build.panel
    hit = panel[(panel["runner_id"] == runner) & (panel["date"] == _day(k))]
    assert len(hit) == 1
    return hit.iloc[0]


def test_core_features_match_hand_computation(quick: PanelBuild) -> None:
    # A, report day 34 -> s = day 27 (Sunday of week 4)
    row = _row(quick, "A", 34)
    assert row["reference_date"] == _day(27)
    assert row["km_7d"] == 39.0  # 5+5+5+5+4+6+9
    assert row["km_prev7d"] == 30.0
    assert row["mileage_jump"] == pytest.approx(0.30)
    assert row["jump_category"] == "10-30%"  # 0.30 is inside the middle band
    assert row["rest_days_7d"] == 1.0  # only Wednesday
    assert row["acwr_rolling"] == pytest.approx(39.0 / (129.0 / 4))  # 28-day km = 3*30 + 39
    assert row["shoe_km"] == 165.0  # A1: start 100 + 4 weeks x 14 km + 9 km on day 27
    assert row["shoe_age_days"] == 57.0  # 2025-02-01 -> 2025-03-30
    assert (row["cohort"], row["sex"], row["age"]) == ("c1", "F", 30.0)
    assert not row["pain_any"]
    # A, report day 27 -> s = day 20 (Sunday, rest): latest run is Saturday 18:00 in A2
    row = _row(quick, "A", 27)
    assert (row["km_7d"], row["km_prev7d"], row["mileage_jump"]) == (30.0, 30.0, 0.0)
    assert row["jump_category"] == "<10%"
    assert row["rest_days_7d"] == 2.0
    assert np.isnan(row["acwr_rolling"])  # 28-day window reaches before follow-up
    assert row["shoe_km"] == 48.0  # A2: 3 weeks x (5 + 5 + 6), no start_km
    assert row["shoe_age_days"] == 19.0  # first use day 1
    assert row["pain_any"]  # pain 3 >= threshold 3
    # A, report day 13 -> s = day 6: previous week is before follow-up start
    row = _row(quick, "A", 13)
    assert row["km_7d"] == 30.0
    assert np.isnan(row["km_prev7d"]) and np.isnan(row["mileage_jump"])
    assert pd.isna(row["jump_category"])


def test_zero_km_previous_week_gives_nan_jump_not_inf(quick: PanelBuild) -> None:
    row = _row(quick, "B", 27)  # s = day 20
    assert (row["km_7d"], row["km_prev7d"]) == (5.0, 0.0)
    assert np.isnan(row["mileage_jump"]) and pd.isna(row["jump_category"])
    assert row["rest_days_7d"] == 6.0
    assert np.isnan(row["shoe_km"]) and np.isnan(row["shoe_age_days"])  # runs carry no shoe
    assert row["pain"] == 5.0  # duplicate reports on day 27: the highest is kept
    assert quick.audit["duplicate_pain_reports"]["count"] == 1
    assert len(quick.panel) == 4


def test_daily_calendar_sums_runs_and_marks_rest_days() -> None:
    runs, runners, _, _ = _quick_tables()
    daily = daily_calendar(runs, runners)
    assert len(daily) == 2 * 42
    sat = daily[(daily["runner_id"] == "A") & (daily["date"] == _day(5))].iloc[0]
    assert (sat["distance_km"], sat["n_runs"], sat["shoe_id"]) == (10.0, 2, "A2")
    wed = daily[(daily["runner_id"] == "A") & (daily["date"] == _day(2))].iloc[0]
    assert (wed["distance_km"], bool(wed["rest_day"])) == (0.0, True)


def test_row_order_does_not_matter() -> None:
    runs, runners, pain, shoes = _quick_tables()
    first = build_panel(runs, runners, pain, shoes).panel
    rng = np.random.default_rng(1)
    shuffled = build_panel(runs.sample(frac=1, random_state=rng), runners.iloc[::-1],
                           pain.sample(frac=1, random_state=rng), shoes).panel
    pd.testing.assert_frame_equal(first, shuffled)


def test_on_daily_gets_the_finished_daily_table_before_the_panel_is_built() -> None:
    """The build checks and writes the daily table while the panel is looked up in it: the
    table handed over is the one returned, already whole, and unchanged after."""
    import analysis.exposures as exposures

    runs, runners, pain, shoes = _quick_tables()
    seen: list[tuple[pd.DataFrame, pd.DataFrame]] = []
    order: list[str] = []
    lookup = exposures._exposure_columns

    def looked_up(*args: object, **kwargs: object) -> dict:
        order.append("panel")
        return lookup(*args, **kwargs)

    def handed_over(daily: pd.DataFrame) -> None:
        order.append("daily")
        seen.append((daily, daily.copy()))

    exposures._exposure_columns = looked_up
    try:
        built = build_panel(runs, runners, pain, shoes, on_daily=handed_over)
    finally:
        exposures._exposure_columns = lookup
    assert order == ["daily", "panel"]
    assert len(seen) == 1
    handed, at_the_time = seen[0]
    assert handed is built.daily
    pd.testing.assert_frame_equal(at_the_time, built.daily)
    pd.testing.assert_frame_equal(built.daily, build_panel(runs, runners, pain, shoes).daily)

    def refuse(daily: pd.DataFrame) -> None:
        raise RuntimeError("daily contract")

    with pytest.raises(RuntimeError, match="daily contract"):
        build_panel(runs, runners, pain, shoes, on_daily=refuse)


# --- the hand-computed fixture (tests/fixtures/exposures, README there) ----------------------


def _load_fixture() -> tuple[pd.DataFrame, ...]:
    def read(name: str, dates: list[str]) -> pd.DataFrame:
        table = pd.read_csv(FIXTURES / name, dtype={"runner_id": "str", "shoe_id": "str",
                                                    "start_time": "str", "sex": "str"})
        for col in dates:
            table[col] = pd.to_datetime(table[col])
        return table

    runs = read("runs.csv", ["date"])
    runners = read("runners.csv", ["follow_up_start", "follow_up_end"])
    runners["age"] = runners["age"].astype(float)
    pain = read("pain.csv", ["date"])
    shoes = read("shoes.csv", ["start_date"])
    return runs, runners, pain, shoes


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg}


def _arith(text: str) -> float:
    """Evaluate the hand-written arithmetic of an expected value (numbers, + - * / **, sqrt)."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.operand))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "sqrt" and len(node.args) == 1):
            return math.sqrt(walk(node.args[0]))
        raise ValueError(f"not plain arithmetic: {text!r}")

    return walk(ast.parse(text, mode="eval"))


@pytest.fixture(scope="module")
def fixture_builds() -> dict[str, PanelBuild]:
    runs, runners, pain, shoes = _load_fixture()
    return {mode: build_panel(runs, runners, pain, shoes, lags=(1,), unlogged_gaps=mode)
            for mode in ("rest", "missing")}


EXPECTED = pd.read_csv(FIXTURES / "expected_panel.csv", dtype=str, keep_default_na=False)


@pytest.mark.parametrize("mode", ["rest", "missing"])
def test_every_expected_value_of_the_hand_computed_fixture(
    fixture_builds: dict[str, PanelBuild], mode: str
) -> None:
    panel = fixture_builds[mode].panel
    rows = EXPECTED[EXPECTED["mode"].isin(["both", mode])]
    failures = []
    for exp in rows.itertuples():
        hit = panel[(panel["runner_id"] == exp.runner_id)
                    & (panel["date"] == pd.Timestamp(exp.date))]
        assert len(hit) == 1, (exp.runner_id, exp.date)
        got = hit.iloc[0][exp.column]
        want = exp.expected
        if want == "nan":
            ok = isinstance(got, float) and math.isnan(got)
        elif want == "NA":
            ok = got is pd.NA or (isinstance(got, float) and math.isnan(got))
        elif want in ("True", "False"):
            ok = got is not pd.NA and bool(got) == (want == "True")
        elif exp.column in ("reference_date",):
            ok = got == pd.Timestamp(want)
        elif exp.column in ("cohort", "sex", "jump_category"):
            ok = got == want
        else:
            ok = not pd.isna(got) and math.isclose(float(got), _arith(want), rel_tol=1e-12,
                                                   abs_tol=1e-12)
        if not ok:
            failures.append(f"{exp.runner_id} {exp.date} {exp.column}: got {got!r}, "
                            f"expected {want} ({exp.how})")
    assert not failures, "\n".join(failures)
    assert len(panel) == 19  # 22 reports - 2 same-day duplicates - 1 unknown runner


def test_fixture_audit_and_calendar(fixture_builds: dict[str, PanelBuild]) -> None:
    build = fixture_builds["rest"]
    assert build.audit["duplicate_pain_reports"]["count"] == 2
    assert sorted((r["runner_id"], r["date"], r["pain"])
                  for r in build.audit["duplicate_pain_reports"]["rows"]) == [
        ("R1", "2025-02-16", 4.0), ("R2", "2025-02-16", 1.0)]
    # R6 stops running on 03-09 and reports pain to 03-30: 21 days without a run are flagged
    # (rest days under "rest", missing under "missing")
    assert build.audit["unlogged_gaps"] == {
        "count": 2, "days": 25 + 21,
        "rows": [{"runner_id": "R2", "first_day": "2025-02-06", "last_day": "2025-03-02",
                  "days": 25},
                 {"runner_id": "R6", "first_day": "2025-03-10", "last_day": "2025-03-30",
                  "days": 21}]}
    assert build.audit["pain_unknown_runner"] == {"count": 1, "rows": ["R9"]}
    daily = build.daily
    follow_up = daily[daily["in_follow_up"]]
    assert follow_up.groupby("runner_id").size().to_dict() == {
        "R1": 49, "R2": 56, "R3": 3, "R4": 63, "R5": 10, "R6": 28, "R7": 42}
    # on purpose (issue 12): R2's run on 01-15, before follow-up start 01-20, opens a 5-day
    # lead-in 01-15..01-19 (day_index -5..-1), R5's runs from 02-25 a 6-day one
    lead_in = daily[~daily["in_follow_up"]]
    assert lead_in["runner_id"].tolist() == ["R2"] * 5 + ["R5"] * 6
    assert lead_in["day_index"].tolist() == [-5, -4, -3, -2, -1, -6, -5, -4, -3, -2, -1]
    assert lead_in["distance_km"].tolist() == [10.0, 0, 0, 0, 0, 8.0, 0, 6.0, 0, 10.0, 0]
    assert (daily["day_index"] >= 0).equals(daily["in_follow_up"])
    sat = daily[(daily["runner_id"] == "R1") & (daily["date"] == "2025-01-11")].iloc[0]
    # two runs: 6 km in S2 at 07:00, 4 km in S1 at 17:00 -> the latest run's shoe is S1
    assert (sat["distance_km"], sat["n_runs"], sat["longest_run_km"], sat["shoe_id"]) == (
        10.0, 2, 6.0, "S1")
    r2 = daily[daily["runner_id"] == "R2"].set_index("date")
    assert not r2.loc["2025-02-05", "unlogged_gap"]
    assert r2.loc["2025-02-06":"2025-03-02", "unlogged_gap"].all()
    assert r2["unlogged_gap"].sum() == 25
    missing = fixture_builds["missing"].daily
    gap_day = missing[(missing["runner_id"] == "R2") & (missing["date"] == "2025-02-20")].iloc[0]
    assert np.isnan(gap_day["distance_km"]) and gap_day["rest_day"] is pd.NA
    assert build.meta["exposure_lag_days"] == 7 and build.meta["pain_threshold"] == 3.0


# --- independent reference: the acwr package (PyPI) -----------------------------------------


def _one_runner_daily(km: np.ndarray, *, decay: str = "williams") -> pd.DataFrame:
    days = pd.date_range("2025-01-06", periods=len(km), freq="D").astype("datetime64[us]")
    ran = km > 0
    runs = pd.DataFrame({"runner_id": "A", "date": days[ran], "distance_km": km[ran]})
    runners = pd.DataFrame({"runner_id": ["A"], "cohort": ["c"], "follow_up_start": [days[0]],
                            "follow_up_end": [days[-1]]})
    pain = pd.DataFrame({"runner_id": ["A"], "date": [days[-1]], "pain": [0.0]})
    return build_panel(runs, runners, pain, decay=decay).daily.set_index("date")


@pytest.fixture(scope="module")
def load_series() -> pd.Series:
    rng = np.random.default_rng(20261125)
    km = np.round(rng.gamma(2.0, 4.0, 200) * (rng.random(200) > 0.35), 1)
    km[60:67] = 0.0  # a rest week, so ratios pass through low chronic loads
    return pd.Series(km, index=pd.date_range("2025-01-06", periods=200, freq="D"))


@pytest.mark.parametrize(("column", "method"), [("acwr_rolling", "rac"),
                                                ("acwr_uncoupled", "rau"),
                                                ("acwr_ewma", "ewma")])
def test_acwr_variants_agree_with_the_acwr_package(load_series: pd.Series, column: str,
                                                   method: str) -> None:
    acwr = pytest.importorskip("acwr")
    ours = _one_runner_daily(load_series.to_numpy())[column].to_numpy()
    theirs = acwr.acwr(load_series, method=method, decay="span").to_numpy()
    # conventions: the package gives inf where the chronic load is 0; we give NaN
    theirs = np.where(np.isinf(theirs), np.nan, theirs)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert np.isfinite(ours).sum() > 150


def test_monotony_agrees_with_the_acwr_package(load_series: pd.Series) -> None:
    acwr = pytest.importorskip("acwr")
    daily = _one_runner_daily(load_series.to_numpy())
    theirs = acwr.monotony(load_series, window=7, ddof=1).to_numpy()
    theirs = np.where(np.isinf(theirs), np.nan, theirs)  # sd 0 with load > 0: we give NaN
    np.testing.assert_allclose(daily["monotony"].to_numpy(), theirs, rtol=1e-12,
                               equal_nan=True)


@pytest.mark.parametrize(("decay", "alpha7", "alpha28"), [
    ("exp", 1 - math.exp(-1 / 7), 1 - math.exp(-1 / 28)),  # GoldenCheetah
    ("inverse", 1 / 7, 1 / 28),  # intervals.icu
])
def test_ewma_decay_conventions_match_pandas_ewm(load_series: pd.Series, decay: str,
                                                 alpha7: float, alpha28: float) -> None:
    daily = _one_runner_daily(load_series.to_numpy(), decay=decay)
    acute = load_series.ewm(alpha=alpha7, adjust=False).mean()
    chronic = load_series.ewm(alpha=alpha28, adjust=False).mean()
    expected = (acute / chronic).to_numpy(copy=True)
    expected[:27] = np.nan
    np.testing.assert_allclose(daily["acwr_ewma"].to_numpy(), expected, rtol=1e-10,
                               equal_nan=True)


def test_ctl_atl_tsb_closed_form_for_constant_load() -> None:
    # constant 10 km a day from follow-up start (no load before): ctl_k = 10 (1 - (1-a)^(k+1))
    daily = _one_runner_daily(np.full(60, 10.0), decay="inverse")
    k = np.arange(60)
    ctl = 10 * (1 - (1 - 1 / 42) ** (k + 1))
    atl = 10 * (1 - (1 - 1 / 7) ** (k + 1))
    ctl[:41], atl[:6] = np.nan, np.nan  # warm-up: NaN until one time constant is covered
    np.testing.assert_allclose(daily["ctl"].to_numpy(), ctl, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(daily["atl"].to_numpy(), atl, rtol=1e-12, equal_nan=True)
    # form on day s is yesterday's fitness minus yesterday's fatigue (TrainingPeaks and the
    # GoldenCheetah default)
    tsb = np.r_[np.nan, (ctl - atl)[:-1]]
    np.testing.assert_allclose(daily["tsb"].to_numpy(), tsb, rtol=1e-12, equal_nan=True)
    assert np.isnan(daily["tsb"].to_numpy()[:42]).all() and not np.isnan(tsb[42])


def test_ewma_restarts_after_an_unlogged_gap() -> None:
    km = np.r_[np.full(30, 5.0), np.zeros(25), np.full(40, 8.0)]
    days = pd.date_range("2025-01-06", periods=len(km), freq="D").astype("datetime64[us]")
    runs = pd.DataFrame({"runner_id": "A", "date": days[km > 0], "distance_km": km[km > 0]})
    runners = pd.DataFrame({"runner_id": ["A"], "cohort": ["c"]})
    pain = pd.DataFrame({"runner_id": ["A"], "date": [days[-1]], "pain": [0.0]})
    daily = build_panel(runs, runners, pain, unlogged_gaps="missing").daily
    after = daily["acwr_ewma"].to_numpy()[55:]
    # the known stretch restarts at 8 km/day: both EWMAs are 8, ratio 1 once 28 days are known
    assert np.isnan(after[:27]).all()
    np.testing.assert_allclose(after[27:], 1.0, rtol=1e-12)
    assert np.isnan(daily["acwr_ewma"].to_numpy()[30:55]).all()


# --- properties (hypothesis) ----------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_RUN = st.tuples(st.integers(0, 69), st.floats(0.5, 40.0, allow_nan=False),
                 st.sampled_from(["s1", "s2", "s3"]))


@st.composite
def _cohorts(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One to three runners, 70 days of follow-up each, 0-60 runs, weekly reports."""
    n_runners = draw(st.integers(1, 3))
    start = pd.Timestamp("2025-03-03")
    runs, runners, pain = [], [], []
    for r in range(n_runners):
        rid = f"r{r}"
        for day, km, shoe in draw(st.lists(_RUN, max_size=60)):
            runs.append((rid, start + pd.Timedelta(days=day), round(km, 2), f"{rid}-{shoe}"))
        runners.append((rid, "c", start, start + pd.Timedelta(days=69)))
        pain += [(rid, start + pd.Timedelta(days=d), 1.0) for d in range(6, 70, 7)]
    runs_df = pd.DataFrame(runs, columns=["runner_id", "date", "distance_km", "shoe_id"])
    runs_df = runs_df.astype({"runner_id": "str", "shoe_id": "str", "date": "datetime64[us]",
                              "distance_km": float})
    runners_df = pd.DataFrame(runners, columns=["runner_id", "cohort", "follow_up_start",
                                                "follow_up_end"])
    pain_df = pd.DataFrame(pain, columns=["runner_id", "date", "pain"])
    return runs_df, runners_df, pain_df


_PROPERTY = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(_cohorts(), st.sampled_from(["rest", "missing"]))
def test_week_sums_add_up_to_the_14_day_sum(tables: tuple[pd.DataFrame, ...],
                                            mode: str) -> None:
    runs, runners, pain = tables
    daily = build_panel(runs, runners, pain, unlogged_gaps=mode).daily
    for _, one in daily.groupby("runner_id"):
        km = one["distance_km"].to_numpy()  # NaN on gap days under "missing"
        both = (one["km_7d"] + one["km_prev7d"]).to_numpy()
        for i in range(13, len(km)):  # a plain loop is the independent reference here
            expected = km[i - 13:i + 1].sum()  # NaN when the 14 days touch a gap
            if np.isnan(expected):
                assert np.isnan(both[i])
            else:
                assert both[i] == pytest.approx(expected, abs=1e-9)
        assert one["km_prev7d"].iloc[:13].isna().all()
        # a week without runs is exactly 0 km (a 1e-15 residue would make the jump ~1e15)
        km_7d = one["km_7d"].to_numpy()
        for i in range(6, len(km)):
            if (km[i - 6:i + 1] == 0).all():
                assert km_7d[i] == 0.0
        jump = one["mileage_jump"].to_numpy()
        assert np.isnan(jump[one["km_prev7d"].to_numpy() == 0]).all()


@_PROPERTY
@given(_cohorts())
def test_bounds_rest_days_and_coupled_ratio(tables: tuple[pd.DataFrame, ...]) -> None:
    runs, runners, pain = tables
    daily = build_panel(runs, runners, pain).daily
    rest = daily["rest_days_7d"].dropna()
    assert ((rest >= 0) & (rest <= 7)).all()
    ratio = daily["acwr_rolling"].dropna()
    assert (ratio <= 4.0 + 1e-12).all() and (ratio >= 0).all()
    numeric = daily.select_dtypes("number")
    assert not np.isinf(numeric.to_numpy(dtype=float)).any()


@_PROPERTY
@given(_cohorts())
def test_shoe_km_never_decreases_within_a_shoe(tables: tuple[pd.DataFrame, ...]) -> None:
    runs, runners, pain = tables
    daily = build_panel(runs, runners, pain).daily
    current = daily.groupby("runner_id")["shoe_id"].ffill()  # every run carries a shoe here
    known = daily.assign(current=current).dropna(subset=["current", "shoe_km"])
    for _, one in known.groupby("current"):
        assert (np.diff(one["shoe_km"].to_numpy()) >= -1e-9).all()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cohorts(), st.randoms(use_true_random=False), st.sampled_from(["rest", "missing"]))
def test_results_do_not_depend_on_row_order(tables: tuple[pd.DataFrame, ...],
                                            rnd: object, mode: str) -> None:
    runs, runners, pain = tables
    first = build_panel(runs, runners, pain, lags=(1,), unlogged_gaps=mode)
    seed = rnd.randint(0, 2**31)  # type: ignore[attr-defined]
    again = build_panel(runs.sample(frac=1, random_state=seed),
                        runners.sample(frac=1, random_state=seed),
                        pain.sample(frac=1, random_state=seed), lags=(1,),
                        unlogged_gaps=mode)
    pd.testing.assert_frame_equal(first.panel, again.panel)
    pd.testing.assert_frame_equal(first.daily, again.daily)


# --- contracts, options, OSTRC coding ------------------------------------------------------


def test_outputs_meet_the_table_contracts(fixture_builds: dict[str, PanelBuild]) -> None:
    from analysis.schemas import DAILY, PANEL

    for build in fixture_builds.values():
        PANEL.validate(build.panel)
        DAILY.validate(build.daily)


def test_lag_zero_must_be_asked_for_and_is_recorded() -> None:
    runs, runners, pain, shoes = _quick_tables()
    same_day = build_panel(runs, runners, pain, shoes, exposure_lag_days=0)
    row = _row(same_day, "A", 27)
    assert row["reference_date"] == _day(27) and row["km_7d"] == 39.0
    assert same_day.meta["exposure_lag_days"] == 0
    assert build_panel(runs, runners, pain, shoes).meta["exposure_lag_days"] == 7


@pytest.mark.parametrize("bad", [
    {"exposure_lag_days": -1}, {"exposure_lag_days": 2.5}, {"pain_threshold": 11},
    {"pain_threshold": -0.5}, {"pain_threshold": float("nan")},
    {"lags": (0,)}, {"unlogged_gaps": "zero"}, {"decay": "linear"}, {"ostrc_coding": "x"},
])
def test_impossible_options_raise_a_kneeload_error(bad: dict) -> None:
    from analysis.errors import KneeloadError

    runs, runners, pain, shoes = _quick_tables()
    with pytest.raises(KneeloadError):
        build_panel(runs, runners, pain, shoes, **bad)


def test_each_option_is_checked_once_with_one_message() -> None:
    # unlogged_gaps and decay were checked twice (build_panel, then again in the calendar
    # and the EWMA helpers) with copies of the message; now one check per public entry
    from analysis.errors import KneeloadError
    from analysis.exposures import _ALPHAS, DECAYS

    runs, runners, pain, shoes = _quick_tables()
    with pytest.raises(KneeloadError) as via_panel:
        build_panel(runs, runners, pain, shoes, unlogged_gaps="zero")
    with pytest.raises(KneeloadError) as via_calendar:
        daily_calendar(runs, runners, unlogged_gaps="zero")
    assert str(via_panel.value) == str(via_calendar.value) == (
        "unlogged_gaps must be one of ('rest', 'missing'), got 'zero'")
    assert tuple(_ALPHAS) == DECAYS  # every documented convention has its formula


def test_missing_required_column_names_the_column() -> None:
    from analysis.errors import DataContractError

    runs, runners, pain, shoes = _quick_tables()
    with pytest.raises(DataContractError) as err:
        build_panel(runs.drop(columns="distance_km"), runners, pain, shoes)
    assert err.value.column == "distance_km"


def test_auto_coding_names_the_file_row_and_column_of_the_bad_ostrc_answer() -> None:
    # one ostrc_q2 = 5 aborted the build with an error naming ostrc_q1 and no file or row
    from analysis.errors import DataContractError

    runs, runners, pain, shoes = _quick_tables()
    pain = pain.assign(ostrc_q1=[1.0, 2.0, 2.0, 1.0, 3.0], ostrc_q2=[1.0, 1.0, 5.0, 1.0, 2.0],
                       source_file="pain.csv", source_line=[2, 3, 4, 5, 6])
    with pytest.raises(DataContractError) as err:
        build_panel(runs, runners, pain, shoes)
    assert (err.value.file, err.value.row, err.value.column) == ("pain.csv", 4, "ostrc_q2")
    assert "OSTRC answer 5 is neither" in err.value.message
    # a mix of codings names the first answer of the rarer one (here the score 17 in q2)
    mixed = pain.assign(ostrc_q2=[1.0, 17.0, 2.0, 1.0, 2.0])
    with pytest.raises(DataContractError) as err:
        build_panel(runs, runners, mixed, shoes)
    assert (err.value.file, err.value.row, err.value.column) == ("pain.csv", 3, "ostrc_q2")


def test_shoe_rotation_counts_distinct_shoes_and_is_nan_for_runners_without_shoes() -> None:
    days = pd.date_range("2025-01-06", periods=40, freq="D").astype("datetime64[us]")
    runs = pd.DataFrame({
        "runner_id": ["A"] * 4 + ["B"],
        "date": [days[0], days[5], days[10], days[35], days[3]],
        "distance_km": [5.0, 5.0, 5.0, 5.0, 5.0],
        "shoe_id": ["a1", "a2", "a1", "a3", None],
    })
    runners = pd.DataFrame({"runner_id": ["A", "B"], "cohort": ["c", "c"],
                            "follow_up_start": [days[0]] * 2, "follow_up_end": [days[-1]] * 2})
    pain = pd.DataFrame({"runner_id": ["A"], "date": [days[-1]], "pain": [0.0]})
    daily = build_panel(runs, runners, pain).daily.set_index(["runner_id", "date"])
    rotation = daily["shoes_in_rotation_30d"]
    # by hand: day 29 window 0..29 holds a1, a2; day 35 window 6..35 holds a1 (day 10), a3;
    # day 39 window 10..39 holds a1 (day 10) and a3
    assert rotation[("A", days[29])] == 2.0
    assert rotation[("A", days[35])] == 2.0
    assert rotation[("A", days[39])] == 2.0
    assert np.isnan(rotation[("A", days[28])])  # window reaches before follow-up
    assert rotation.loc["B"].isna().all()  # B's runs carry no shoe


def test_latest_run_of_a_day_compares_clock_times_not_text() -> None:
    day = pd.Timestamp("2025-01-06")
    runs = pd.DataFrame({"runner_id": ["A", "A"], "date": [day, day],
                         "distance_km": [10.0, 4.0], "shoe_id": ["late", "early"],
                         "start_time": ["17:00", "7:05"]})  # as text "17:00" < "7:05"
    runners = pd.DataFrame({"runner_id": ["A"], "cohort": ["c"]})
    daily = daily_calendar(runs, runners)
    assert daily["shoe_id"].tolist() == ["late"]


def test_runners_without_runs_or_follow_up_give_nan_rows_not_errors() -> None:
    runs, runners, pain, shoes = _quick_tables()
    build = build_panel(runs.iloc[:0], runners[["runner_id", "cohort"]], pain, shoes)
    assert build.daily.empty and len(build.panel) == 4
    assert build.panel["km_7d"].isna().all() and build.panel["shoe_km"].isna().all()
    assert build_panel(runs, runners, pain.iloc[:0], shoes).panel.empty


def test_duckdb_window_functions_agree_on_a_simulated_cohort() -> None:
    """The benchmark's DuckDB baseline is an independent SQL implementation of four columns."""
    pytest.importorskip("duckdb")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_exposures", Path(__file__).parents[1] / "bench" / "bench_exposures.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    runs, runners, pain, shoes = bench.simulate(60, 120, seed=3)
    ours = build_panel(runs, runners, pain, shoes).daily
    ours = ours[ours["in_follow_up"]]  # the SQL calendar has no lead-in
    theirs = bench.duckdb_baseline(runs, runners)
    assert ours["runner_id"].tolist() == theirs["runner_id"].tolist()
    for col in ["km_7d", "km_prev7d", "rest_days_7d", "acwr_rolling"]:
        np.testing.assert_allclose(ours[col].to_numpy(dtype=float),
                                   theirs[col].to_numpy(dtype=float), rtol=1e-12,
                                   atol=1e-12, equal_nan=True)


def test_a_week_without_runs_is_exactly_zero_km() -> None:
    # this series (from simulate seed 2) left -7.1e-15 km in the last week through pandas'
    # compensated cumulative sum, which turned the next week's mileage_jump into ~1e15
    km = np.array([0.0, 0.0, 5.2, 10.03, 0.0, 18.95] + [0.0] * 15)
    daily = _one_runner_daily(km)
    assert daily["km_7d"].iloc[12] == 0.0
    assert daily["km_prev7d"].iloc[19] == 0.0
    assert np.isnan(daily["mileage_jump"].iloc[19])


# --- threads: no import may happen inside the feature thread pool ---------------------------

_FRESH_BUILD = """
import sys
import pandas as pd
import analysis.exposures as ex
days = pd.date_range("2024-01-01", periods=60)
runs = pd.DataFrame({"runner_id": "A", "date": days, "distance_km": 10.0, "shoe_id": "S",
                     "start_time": "07:00", "duration_min": 50.0, "rpe": 4.0})
runners = pd.DataFrame({"runner_id": ["A"], "cohort": ["x"]})
pain = pd.DataFrame({"runner_id": "A", "date": days[[50]], "pain": 1.0, "ostrc_q1": 2.0})
shoes = pd.DataFrame({"shoe_id": ["S"], "runner_id": ["A"], "start_km": [5.0]})
before = set(sys.modules)
for gaps in ("rest", "missing"):
    ex.build_panel(runs, runners, pain, shoes, unlogged_gaps=gaps, lags=(1,))
print(sorted(m for m in set(sys.modules) - before if not m.startswith("encodings.")))
"""


def test_build_panel_imports_nothing_on_its_threads_in_fresh_processes() -> None:
    # Two threads importing scipy submodules for the first time at once raced: about one fresh
    # process in ten failed with KeyError: 'scipy' (review, /tmp/rv_race.py). Every module the
    # pool needs is now imported with analysis.exposures, so a build imports nothing.
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", _FRESH_BUILD], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "[]", out


def test_two_runners_with_the_same_shoe_name_have_separate_shoes() -> None:
    # Strava's shoe_id is the gear's display name: A's and B's "Pegasus 38" are two shoes
    # (review, /tmp/rv_shoe.py: both got the pooled 600 km)
    days = pd.date_range("2024-01-01", periods=40, freq="D").astype("datetime64[us]")
    runs = pd.concat([
        pd.DataFrame({"runner_id": "A", "date": days, "distance_km": 5.0,
                      "shoe_id": "Pegasus 38"}),
        pd.DataFrame({"runner_id": "B", "date": days[10:], "distance_km": 10.0,
                      "shoe_id": "Pegasus 38"})], ignore_index=True)
    runners = pd.DataFrame({"runner_id": ["A", "B"], "cohort": ["x", "x"]})
    pain = pd.DataFrame({"runner_id": ["A", "B"], "date": [days[-1]] * 2, "pain": [1.0, 1.0]})
    shoes = pd.DataFrame({"shoe_id": ["Pegasus 38", "Pegasus 38"], "runner_id": ["B", "A"],
                          "start_km": [50.0, 0.0],
                          "start_date": [pd.NaT, pd.Timestamp("2023-12-30")]})
    build = build_panel(runs, runners, pain, shoes, exposure_lag_days=0)
    panel = build.panel.set_index("runner_id")
    assert panel.loc["A", "shoe_km"] == 40 * 5.0  # 200 km, start_km 0
    assert panel.loc["B", "shoe_km"] == 50.0 + 30 * 10.0  # its own start_km + 300 km
    assert panel.loc["A", "shoe_age_days"] == 39 + 2  # A's start_date 2023-12-30
    assert panel.loc["B", "shoe_age_days"] == 29  # no start_date: B's first use
    assert panel["shoes_in_rotation_30d"].tolist() == [1.0, 1.0]
    assert (build.daily["shoe_id"].dropna() == "Pegasus 38").all()


def test_every_exposure_is_missing_on_the_days_of_an_unlogged_gap() -> None:
    # a 60-day gap: the EWMA columns (and the 30-day shoe rotation) on gap days were float
    # residue such as 2.2e-16 instead of NaN (review, /tmp/rv_gap.py)
    days = pd.date_range("2024-01-01", periods=200, freq="D").astype("datetime64[us]")
    ran = np.r_[np.ones(60), np.zeros(60), np.ones(80)].astype(bool)
    runs = pd.DataFrame({"runner_id": "A", "date": days[ran], "distance_km": 10.0,
                         "duration_min": 55.0, "rpe": 5.0, "shoe_id": "S"})
    runners = pd.DataFrame({"runner_id": ["A"], "cohort": ["x"]})
    pain = pd.DataFrame({"runner_id": "A", "date": days[[105, 115, 125, 130]], "pain": 1.0})
    build = build_panel(runs, runners, pain, unlogged_gaps="missing", exposure_lag_days=0)
    daily = build.daily
    gap = daily["unlogged_gap"].to_numpy()
    assert gap.sum() == 60
    features = daily.columns[daily.columns.get_loc("km_7d"):]
    for col in features:
        assert daily.loc[gap, col].isna().all(), col
    # reports on gap days: every exposure is missing; the report after it restarts
    on_gap = build.panel[build.panel["date"] < days[120]]
    assert len(on_gap) == 2 and on_gap[list(features)].isna().all().all()
    after = daily.iloc[120:]
    assert np.isnan(after["tsb"].to_numpy()[:42]).all()  # warm-up of ctl, then s - 1
    np.testing.assert_allclose(after["atl"].to_numpy()[6:8],
                               10 * (1 - (1 - 2 / 8) ** np.array([7, 8])), rtol=1e-12)


# --- one definition per computed value (issue 11) --------------------------------------------
def test_same_day_reports_follow_the_one_clean_rule() -> None:
    """build_panel has no dedupe of its own: on a tie it keeps the later report, as clean
    does (the former exposures copy sorted by OSTRC and kept the earlier one)."""
    import analysis.exposures as ex
    from analysis.clean import superseded_same_day

    assert not hasattr(ex, "_dedupe_pain")
    runs, runners, _, _ = _quick_tables()
    pain = pd.DataFrame({"runner_id": ["A", "A"], "date": pd.to_datetime(["2025-01-20"] * 2),
                         "pain": [4.0, 4.0], "ostrc_q1": [4.0, 2.0]})
    built = build_panel(runs, runners, pain)
    assert built.panel["ostrc_q1"].tolist() == [2.0]  # the later of two equal reports
    assert superseded_same_day(pain["runner_id"], pain["date"], pain["pain"]).tolist() == [
        True, False]
    assert built.audit["duplicate_pain_reports"]["count"] == 1


def test_unknown_runners_are_filtered_once_in_clean() -> None:
    """The unknown-runner rule is clean's (quarantine reason unknown_runner): on clean
    tables (pain_cleaned, the build) build_panel refuses such a report instead of dropping
    it a second time; on other tables it drops it and counts it in the audit."""
    from analysis.errors import DataContractError

    runs, runners, pain, shoes = _quick_tables()
    stranger = pd.DataFrame({"runner_id": ["ZZ"], "date": pain["date"].iloc[:1].to_numpy(),
                             "pain": [5.0]})
    with_stranger = pd.concat([pain, stranger], ignore_index=True)
    with pytest.raises(DataContractError, match="'ZZ' not in the runners table"):
        build_panel(runs, runners, with_stranger, shoes, pain_cleaned=True)
    built = build_panel(runs, runners, with_stranger, shoes)
    assert built.audit["pain_unknown_runner"]["count"] == 1
    assert "ZZ" not in set(built.panel["runner_id"])
    assert len(built.panel) == len(build_panel(runs, runners, pain, shoes).panel)


def test_a_missing_pain_value_never_supersedes_a_number() -> None:
    """Review: the same-day rule sorted NaN as the highest pain, so a table that did not
    come through cleaning (which quarantines NaN pain first) kept the empty report, hid the
    7 and gave it pain_any False. The rule now sorts a missing value lowest, and build_panel
    refuses a report without a pain value on the NRS (the panel contract's pain)."""
    from analysis.clean import superseded_same_day
    from analysis.errors import DataContractError

    runs, runners, _, _ = _quick_tables()
    for values in ([7.0, np.nan], [np.nan, 7.0]):
        pain = pd.DataFrame({"runner_id": ["A", "A"],
                             "date": pd.to_datetime(["2025-01-20"] * 2), "pain": values})
        mask = superseded_same_day(pain["runner_id"], pain["date"], pain["pain"])
        assert mask.tolist() == [np.isnan(v) for v in values]
        # the empty second report is superseded, the 7 kept
        built = build_panel(runs, runners, pain)
        assert built.panel["pain"].tolist() == [7.0] and built.panel["pain_any"].tolist() == [
            True]
        assert built.audit["duplicate_pain_reports"]["count"] == 1
    for value in (np.nan, -1.0, 10.5, np.inf):
        pain = pd.DataFrame({"runner_id": ["A", "A", "ZZ"],
                             "date": pd.to_datetime(["2025-01-19", "2025-01-20", "2025-01-20"]),
                             "pain": [2.0, value, np.nan]})
        with pytest.raises(DataContractError, match=(
                rf"runner 'A' on 2025-01-20 has pain {value:g}, not a value on the 0-10 NRS")):
            build_panel(runs, runners, pain)
    # review: a report without a date raised a bare ValueError (lag 7) or gave a NaT row
    for lag in (0, 7):
        pain = pd.DataFrame({"runner_id": ["A", "A"],
                             "date": pd.to_datetime(["2025-01-19", None]), "pain": [2.0, 3.0]})
        with pytest.raises(DataContractError, match="runner 'A' has no date"):
            build_panel(runs, runners, pain, exposure_lag_days=lag)
    # a report of an unknown runner is dropped (and counted) before its pain is looked at
    pain = pd.DataFrame({"runner_id": ["A", "ZZ"], "date": pd.to_datetime(["2025-01-20"] * 2),
                         "pain": [2.0, np.nan]})
    assert build_panel(runs, runners, pain).audit["pain_unknown_runner"]["count"] == 1


def test_build_imports_no_scipy() -> None:
    """The build path does its EWMA and running max in numpy (no scipy import, no import
    on the feature threads: the c3542f9 race cannot come back)."""
    import subprocess
    import sys

    code = ("import sys, analysis.pipeline; "
            "print(sorted(m for m in ('scipy', 'statsmodels', 'gpboost') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_numpy_filters_match_scipy() -> None:
    """_geometric_scan is scipy.signal.lfilter's first-order recursion; _Windows.extreme is
    the trailing max of scipy.ndimage on every valid row."""
    from scipy.ndimage import maximum_filter1d
    from scipy.signal import lfilter

    import analysis.exposures as ex

    rng = np.random.default_rng(4)
    x = rng.gamma(2.0, 3.0, 5000) * (rng.random(5000) > 0.4)
    for alpha in (2 / 8, 2 / 29, 1 - np.exp(-1 / 42)):
        np.testing.assert_allclose(alpha * ex._geometric_scan(x, 1 - alpha),
                                   lfilter([alpha], [1.0, -(1.0 - alpha)], x), rtol=1e-12,
                                   atol=1e-12)
    daily = pd.DataFrame({"distance_km": x, "day_index": np.arange(5000) % 400})
    win = ex._Windows(daily)
    width = 30
    got = win.extreme(x, width, offset=1)
    centred = maximum_filter1d(x, size=width, mode="nearest")
    ref = np.r_[np.full(width - 1 - width // 2, np.nan), centred[: -(width - 1 - width // 2)]]
    ref = np.r_[np.nan, ref[:-1]]
    valid = win.valid(width, offset=1)
    assert valid.sum() > 4000
    np.testing.assert_array_equal(got[valid], ref[valid])
    assert np.isnan(got[~valid]).all()


def test_the_panel_has_no_within_between_split_of_its_own(
    fixture_builds: dict[str, PanelBuild],
) -> None:
    """One ``<x>_within``: the model's (models.build_design, over the rows a model uses). The
    panel once carried its own over all rows, under the same name (issue 11: they differed
    in all 141 modelling rows of a 20-runner panel)."""
    import analysis.exposures as ex

    for built in fixture_builds.values():
        split = [c for c in built.panel.columns if c.endswith(("_within", "_between"))]
        assert split == []
        assert "within_between" not in built.meta
        assert "km_7d" in built.panel.columns and "km_7d_lag1w" in built.panel.columns
    assert not hasattr(ex, "_within_between")


# --- follow-up semantics and heart-rate loads (issue 12) -------------------------------------


def test_a_runner_who_stops_running_keeps_zero_km_rows(
    fixture_builds: dict[str, PanelBuild],
) -> None:
    """R6 runs 5 km a day 03-03..03-09, then stops and reports pain weekly to 03-30 (no
    follow_up_end). Follow-up ends at the last report, not the last run: 0 km and 7 rest
    days, not NaN exposures that a model would drop (informative missingness)."""
    daily = fixture_builds["rest"].daily
    r6 = daily[daily["runner_id"] == "R6"].set_index("date")
    assert r6.index.min() == pd.Timestamp("2025-03-03")
    assert r6.index.max() == pd.Timestamp("2025-03-30")  # the last pain report
    after = r6.loc["2025-03-10":]
    assert len(after) == 21 and (after["distance_km"] == 0).all() and after["rest_day"].all()
    assert (r6.loc["2025-03-16":, "rest_days_7d"] == 7).all()
    assert (r6.loc["2025-03-16":, "km_7d"] == 0).all()
    panel = fixture_builds["rest"].panel.set_index(["runner_id", "date"])
    assert panel.loc[("R6", pd.Timestamp("2025-03-30")), "km_7d"] == 0.0
    assert panel.loc[("R6", pd.Timestamp("2025-03-30")), "rest_days_7d"] == 7.0
    # under "missing" the 21-day rule applies to this stretch like to any other
    missing = fixture_builds["missing"].daily
    gap = missing[(missing["runner_id"] == "R6") & (missing["date"] >= "2025-03-10")]
    assert gap["unlogged_gap"].all() and gap["distance_km"].isna().all()
    # without the pain reports the calendar knows only the runs: it ends on the last run
    runs, runners, pain, _ = _load_fixture()
    alone = daily_calendar(runs, runners)
    assert alone.loc[alone["runner_id"] == "R6", "date"].max() == pd.Timestamp("2025-03-09")
    with_pain = daily_calendar(runs, runners, pain=pain)
    assert with_pain.loc[with_pain["runner_id"] == "R6", "date"].max() == pd.Timestamp(
        "2025-03-30")
    # a given follow_up_end is kept, reports or not (R5 ends 03-12, its last report)
    assert with_pain.loc[with_pain["runner_id"] == "R1", "date"].max() == pd.Timestamp(
        "2025-02-23")


def test_runs_before_follow_up_warm_the_windows_up_to_the_lead_in() -> None:
    """10 km a day from 60 days before follow-up start: the calendar holds the last
    LEAD_IN_DAYS (42) of them, so on day 0 km_prev7d and ctl are known; ctl started at 0 on
    day -42 and has 43 days at 10 km: 10 (1 - (1 - 2/43)^43)."""
    from analysis.exposures import LEAD_IN_DAYS

    start = pd.Timestamp("2025-03-03")
    days = pd.date_range(start - pd.Timedelta(days=60), periods=70, freq="D")
    runs = pd.DataFrame({"runner_id": "A", "date": days.astype("datetime64[us]"),
                         "distance_km": 10.0})
    runners = pd.DataFrame({"runner_id": ["A"], "cohort": ["c"], "follow_up_start": [start],
                            "follow_up_end": [days[-1]]})
    pain = pd.DataFrame({"runner_id": ["A"], "date": [start + pd.Timedelta(days=7)],
                         "pain": [1.0]})
    built = build_panel(runs, runners, pain)
    daily = built.daily
    assert LEAD_IN_DAYS == 42 and built.meta["lead_in_days"] == 42
    assert daily["date"].min() == start - pd.Timedelta(days=LEAD_IN_DAYS)
    assert daily["day_index"].min() == -LEAD_IN_DAYS
    day0 = daily[daily["date"] == start].iloc[0]
    assert bool(day0["in_follow_up"]) and day0["day_index"] == 0
    assert (day0["km_7d"], day0["km_prev7d"], day0["km_28d"]) == (70.0, 70.0, 280.0)
    assert day0["acwr_rolling"] == 1.0
    assert day0["ctl"] == pytest.approx(10 * (1 - (1 - 2 / 43) ** 43), rel=1e-12)
    row = built.panel.iloc[0]  # report on day 7: s = day 0
    assert row["reference_date"] == start and row["ctl"] == day0["ctl"]


def test_heart_rate_loads_are_summed_per_day_with_unknown_days_nan(
    fixture_builds: dict[str, PanelBuild],
) -> None:
    """R7 (tests/fixtures/exposures): two runs on 03-08 (30 + 40 and 60 + 70 AU), a run
    without heart rate on 04-01, rest days 0."""
    daily = fixture_builds["rest"].daily
    r7 = daily[daily["runner_id"] == "R7"].set_index("date")
    assert (r7.loc["2025-03-08", "trimp_banister_au"],
            r7.loc["2025-03-08", "trimp_edwards_au"]) == (70.0, 130.0)
    assert r7.loc["2025-03-08", "duration_min"] == 66.0
    assert np.isnan(r7.loc["2025-04-01", "trimp_banister_au"])
    assert r7.loc["2025-04-01", "duration_min"] == 50.0
    assert (r7.loc["2025-03-09", "trimp_banister_au"], r7.loc["2025-03-09", "rest_day"]) == (
        0.0, True)
    # runners whose runs carry no heart rate: NaN on run days, 0 on rest days
    r1 = daily[daily["runner_id"] == "R1"].set_index("date")
    assert np.isnan(r1.loc["2025-01-06", "trimp_banister_au"])
    assert r1.loc["2025-01-07", "trimp_banister_au"] == 0.0


def test_load_columns_exist_only_when_the_runs_carry_the_load() -> None:
    runs, runners, pain, shoes = _quick_tables()  # no duration, rpe or heart rate
    built = build_panel(runs, runners, pain, shoes)
    for table in (built.daily, built.panel):
        assert not [c for c in table.columns if c.startswith(("trimp_", "duration_7d"))]
        assert "srpe_7d" in table.columns and "srpe_28d" not in table.columns
    timed = runs.assign(duration_min=runs["distance_km"] * 6.0, rpe=4.0,
                        trimp_edwards_au=runs["distance_km"] * 12.0)
    built = build_panel(timed, runners, pain, shoes)
    names = [f"{p}_{w}" for p in ("srpe", "duration", "trimp_edwards")
             for w in ("7d", "28d", "acwr_rolling", "acwr_ewma")]
    assert set(names) <= set(built.panel.columns)
    assert "trimp_banister_7d" not in built.panel.columns
    row = _row(built, "A", 34)  # s = day 27: the 39 km week of _quick_tables
    assert row["duration_7d"] == 39.0 * 6 and row["trimp_edwards_7d"] == 39.0 * 12
    assert row["srpe_7d"] == 39.0 * 6 * 4
    # the loads are proportional to km, so their ratios are km's, to rounding
    for prefix in ("srpe", "duration", "trimp_edwards"):
        assert row[f"{prefix}_acwr_rolling"] == pytest.approx(row["acwr_rolling"], rel=1e-12)
    # and km's columns are those of the build without the loads
    plain = build_panel(runs, runners, pain, shoes).panel
    pd.testing.assert_frame_equal(built.panel[plain.columns.drop("srpe_7d")],
                                  plain.drop(columns="srpe_7d"))


def test_one_window_function_serves_every_load() -> None:
    """km's windows and every other load's come from the one _load_windows: fed km as a
    load, another name gives exactly km's numbers."""
    runs, runners, pain, shoes = _quick_tables()
    as_trimp = runs.assign(trimp_banister_au=runs["distance_km"])
    built = build_panel(as_trimp, runners, pain, shoes)
    daily = built.daily
    for window, km_name in (("7d", "km_7d"), ("28d", "km_28d"),
                            ("acwr_rolling", "acwr_rolling"), ("acwr_ewma", "acwr_ewma")):
        np.testing.assert_array_equal(daily[f"trimp_banister_{window}"].to_numpy(),
                                      daily[km_name].to_numpy())


def test_a_report_counts_follow_up_days_not_the_lead_in(tmp_path: Path) -> None:
    """The processed daily table keeps the lead-in rows (in_follow_up False); the report's
    view of a cohort (weeks followed, km per week, weekly plots) holds follow-up days only."""
    from analysis.pipeline import build, load_processed
    from analysis.reports.cohort import follow_up_coverage, load_cohort

    out = tmp_path / "p"
    build(FIXTURES, out)
    daily = load_processed(out)["daily"]
    assert (~daily["in_follow_up"]).sum() == 5 + 6  # R2's and R5's lead-ins
    view = load_cohort(out, "road", min_cohort_size=1, salt=None)
    assert view.daily["in_follow_up"].all()
    coverage = follow_up_coverage(view.daily, view.panel, view.runners)
    r5 = coverage.loc["R5"]
    assert (r5["first_day"], r5["days_followed"], r5["km"]) == (
        pd.Timestamp("2025-03-03"), 10, 10.0)  # not the 02-25..03-01 lead-in runs


def test_a_reference_day_in_the_lead_in_takes_its_window_values() -> None:
    """The review's case: r04 runs 10 km on 02-13, 02-20, 02-27 and 03-02; follow-up starts
    03-04; the report of 03-10 has reference day 03-03 (lag 7), a lead-in day. Its km_7d is
    the runs of 02-25..03-03 = 02-27 + 03-02 = 20 km (was NaN); the 1-week lag (02-24,
    window 02-18..02-24) is the run of 02-20 = 10 km; the panel holds the follow-up report
    only."""
    days = pd.to_datetime(["2025-02-13", "2025-02-20", "2025-02-27", "2025-03-02"]) \
        .astype("datetime64[us]")
    runs = pd.DataFrame({"runner_id": "r04", "date": days, "distance_km": 10.0})
    runners = pd.DataFrame({"runner_id": ["r04"], "cohort": ["c"],
                            "follow_up_start": pd.to_datetime(["2025-03-04"]),
                            "follow_up_end": pd.to_datetime(["2025-03-10"])})
    pain = pd.DataFrame({"runner_id": ["r04"], "date": pd.to_datetime(["2025-03-10"]),
                         "pain": [2.0]})
    panel = build_panel(runs, runners, pain, lags=(1,)).panel
    assert len(panel) == 1
    row = panel.iloc[0]
    assert row["reference_date"] == pd.Timestamp("2025-03-03")
    assert row["km_7d"] == 20.0
    assert row["km_7d_lag1w"] == 10.0
    assert row["rest_days_7d"] == 5  # 02-25, 02-26, 02-28, 03-01, 03-03
