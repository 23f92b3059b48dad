"""Heart-rate load against a fixture worked out by hand (nothing below calls analysis.hrload to
produce an expected value: each one is written from the formula in its comment)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import hrload

EXACT = 1e-12


def men(x: float) -> float:  # Banister 1991, men: a = 0.64, b = 1.92
    return x * 0.64 * math.exp(1.92 * x)


def women(x: float) -> float:  # women: a = 0.86, b = 1.67
    return x * 0.86 * math.exp(1.67 * x)


def mean_curve(x: float) -> float:  # sex unknown: mean of the two weightings
    return x * (0.64 * math.exp(1.92 * x) + 0.86 * math.exp(1.67 * x)) / 2


RUNNERS = pd.DataFrame({
    "runner_id": ["A", "B", "C", "D", "E", "F", "G"],
    "sex": ["M", "female", None, "F", "m", "M", None],
    "age": [np.nan, 40.0, np.nan, np.nan, 60.0, np.nan, 30.0],
    "hr_rest": [60.0, np.nan, 50.0, np.nan, 55.0, np.nan, np.nan],
    "hr_max": [200.0, np.nan, 190.0, np.nan, np.nan, np.nan, np.nan],
})
SESSIONS = pd.DataFrame({  # d2, d3: a session maximum (Strava "Max Heart Rate") and no samples
    "session_id": ["a1", "b1", "b2", "c1", "d1", "d2", "d3", "e1", "f1", "f2", "g1"],
    "runner_id": ["A", "B", "B", "C", "D", "D", "D", "E", "F", "F", "G"],
    "moving_s": [1500.0, np.nan, 600.0, np.nan, 60.0, 600.0, 600.0, 0.0, 1800.0, 1200.0,
                 600.0],
    "elapsed_s": [1600.0, 1200.0, 700.0, 1800.0, 90.0, 700.0, 700.0, 300.0, 1900.0, 1300.0,
                  700.0],
    "avg_hr_bpm": [150.0, np.nan, np.nan, 150.0, np.nan, np.nan, np.nan, np.nan, 150.0, 165.0,
                   190.0],
    "max_hr_bpm": [np.nan, np.nan, np.nan, np.nan, np.nan, 185.0, 175.0, np.nan, np.nan, np.nan,
                   np.nan],
})
SAMPLES = pd.DataFrame({  # b1 out of order on purpose; d1 has a sample without heart rate
    "session_id": ["a1"] * 5 + ["b1"] * 3 + ["d1"] * 3 + ["e1"] * 2,
    "elapsed_s": [0, 10, 20, 30, 100, 15, 0, 5, 0, 10, 20, 0, 4],
    "hr_bpm": [130, 165, 200, 210, 90, 170, 120, 150, 100, np.nan, 180, 175, 140],
})

# a1, runner A (men; rest 60, max 200 from runners.csv). Gaps to the next sample: 10, 10, 10,
# 70 -> capped at 30 s, last 0 -> minutes 1/6, 1/6, 1/6, 1/2, 0.
# HRr = (HR - 60) / 140 = 0.5, 0.75, 1.0, 1.0714 -> 1.0 (clipped), 0.214.
A1_BANISTER = men(0.5) / 6 + men(0.75) / 6 + men(1.0) / 6 + men(1.0) / 2  # = 3.38722...
# HR/HRmax = .65 (zone 2), .825 (4), 1.0 (5), 1.05 (5), .45 (0): 2/6 + 4/6 + 5/6 + 5/2 = 13/3
A1_EDWARDS = 13 / 3
# b1, runner B (women; no hr_rest -> 60 default; age 40 -> Tanaka 208 - 0.7*40 = 180, above the
# observed 170). Sorted samples t = 0, 5, 15 (HR 120, 150, 170) -> minutes 1/12, 1/6, 0;
# HRr = 60/120 = 0.5, 90/120 = 0.75.
B1_BANISTER = women(0.5) / 12 + women(0.75) / 6  # = 0.45874...
B1_EDWARDS = 2 / 12 + 4 / 6  # 120/180 = .667 (zone 2), 150/180 = .833 (zone 4) -> 5/6
# c1, runner C (sex unknown; rest 50, max 190): no samples, mean HR 150 over elapsed 1800 s
# (no moving time) = 30 min. HRr = 100/140 = 5/7; 150/190 = .789 -> zone 3.
C1_BANISTER = 30 * mean_curve(5 / 7)  # = 57.3986...
C1_EDWARDS = 30 * 3
# d1, runner D (women; no max, no age; rest default 60): max observed over her 3 sessions with
# a maximum = max(180 from d1's samples, 185 and 175 from d2/d3 max_hr_bpm) = 185. The NaN
# sample is dropped, so t = 0 (HR 100) weighs 20 s = 1/3 min; HRr = 40/125 = 0.32;
# 100/185 = .541 -> zone 1. d2, d3 have no samples and no mean HR: no TRIMP ("none").
D1_BANISTER = women(0.32) / 3  # = 0.12171...
D1_EDWARDS = 1 / 3
# f1, f2, runner F (men; no hr_max, no age, no samples, no session maximum; means 150 and
# 165): means never give a "max observed" (165 would put f2 at HRr 1, zone 5), so F has no
# HRmax and no TRIMP: NaN, and trimp_method says why.
# g1, runner G (sex unknown; age 30 -> Tanaka 208 - 21 = 187; rest default 60): the mean 190
# is above 187 but a mean never raises HRmax. 10 min; HRr = 130/127 -> 1.0 (clipped);
# 190/187 -> zone 5.
G1_BANISTER = 10 * mean_curve(1.0)  # = 24.47...
G1_EDWARDS = 10 * 5
# e1, runner E (men; age 60 -> Tanaka 166 < observed 175 -> 175 "above the age estimate";
# rest 55): t = 0 (HR 175) weighs 4 s; HRr = 120/120 = 1; 175/175 -> zone 5.
# moving_s 0 is not a moving time -> elapsed 300 s = 5 min.
E1_BANISTER = men(1.0) * 4 / 60  # = 0.29103...
E1_EDWARDS = 5 * 4 / 60


@pytest.fixture(scope="module")
def result() -> tuple[pd.DataFrame, pd.DataFrame]:
    return hrload.session_loads(SAMPLES, SESSIONS, RUNNERS)


def test_session_loads_match_the_hand_computed_fixture(result) -> None:
    loads = result[0].set_index("session_id")
    expected = {
        "a1": (A1_BANISTER, A1_EDWARDS, 25.0, "samples"),
        "b1": (B1_BANISTER, B1_EDWARDS, 20.0, "samples"),
        "b2": (np.nan, np.nan, 10.0, "none"),
        "c1": (C1_BANISTER, C1_EDWARDS, 30.0, "mean HR"),
        "d1": (D1_BANISTER, D1_EDWARDS, 1.0, "samples"),
        "d2": (np.nan, np.nan, 10.0, "none"),
        "d3": (np.nan, np.nan, 10.0, "none"),
        "e1": (E1_BANISTER, E1_EDWARDS, 5.0, "samples"),
        "f1": (np.nan, np.nan, 30.0, hrload.METHOD_NO_HR_MAX),
        "f2": (np.nan, np.nan, 20.0, hrload.METHOD_NO_HR_MAX),
        "g1": (G1_BANISTER, G1_EDWARDS, 10.0, "mean HR"),
    }
    assert list(loads.index) == list(expected)
    for sid, (banister, edwards, minutes, method) in expected.items():
        row = loads.loc[sid]
        assert row["trimp_method"] == method, sid
        assert row["duration_min"] == pytest.approx(minutes, abs=EXACT), sid
        if method.startswith("none"):
            assert np.isnan(row["trimp_banister"]) and np.isnan(row["trimp_edwards"])
        else:
            assert row["trimp_banister"] == pytest.approx(banister, rel=0, abs=EXACT), sid
            assert row["trimp_edwards"] == pytest.approx(edwards, rel=0, abs=EXACT), sid
    # a1 has a mean HR too: the samples win
    assert loads.loc["a1", "trimp_banister"] != pytest.approx(25 * men(90 / 140))


def test_runner_references_say_where_each_value_came_from(result) -> None:
    refs = result[1].set_index("runner_id")
    hr_max = refs["hr_max_bpm"].to_dict()
    assert np.isnan(hr_max.pop("F"))
    assert hr_max == {"A": 200.0, "B": 180.0, "C": 190.0, "D": 185.0, "E": 175.0,
                      "G": pytest.approx(187.0, abs=EXACT)}
    tanaka = "age (Tanaka 2001: 208-0.7*age)"
    assert refs["hr_max_source"].to_dict() == {
        "A": "runners.csv", "B": tanaka, "C": "runners.csv", "D": "max observed",
        "E": "max observed (above the age estimate)",
        "F": "none: no HR maximum: give hr_max or age in runners.csv", "G": tanaka}
    assert refs["hr_rest_bpm"].to_dict() == {"A": 60.0, "B": 60.0, "C": 50.0, "D": 60.0,
                                             "E": 55.0, "F": 60.0, "G": 60.0}
    assert refs["hr_rest_source"].to_dict() == {
        "A": "runners.csv", "B": "default 60 bpm", "C": "runners.csv", "D": "default 60 bpm",
        "E": "runners.csv", "F": "default 60 bpm", "G": "default 60 bpm"}
    assert refs["trimp_curve"].to_dict() == {
        "A": hrload.CURVE_MEN, "B": hrload.CURVE_WOMEN, "C": hrload.CURVE_UNKNOWN,
        "D": hrload.CURVE_WOMEN, "E": hrload.CURVE_MEN, "F": hrload.CURVE_MEN,
        "G": hrload.CURVE_UNKNOWN}


def test_max_observed_needs_three_sessions_with_a_maximum() -> None:
    """D's maximum stands alone as HRmax only with 3 sessions that have one (samples or
    max_hr_bpm); with 2 she has no HRmax, and her sampled session no TRIMP."""
    two = SESSIONS[SESSIONS["session_id"] != "d3"]
    loads, refs = hrload.session_loads(SAMPLES, two, RUNNERS)
    d = refs.set_index("runner_id").loc["D"]
    assert np.isnan(d["hr_max_bpm"]) and d["hr_max_source"] == hrload.SOURCE_NO_MAX
    d1 = loads.set_index("session_id").loc["d1"]
    assert d1["trimp_method"] == hrload.METHOD_NO_HR_MAX and np.isnan(d1["trimp_banister"])


def test_birth_year_becomes_an_age_at_the_first_session() -> None:
    runners = pd.DataFrame({"runner_id": ["B"], "birth_year": [1984]})
    sessions = SESSIONS[SESSIONS["runner_id"] == "B"].assign(
        date=pd.to_datetime(["2024-07-02", "2024-08-01"]))
    refs = hrload.runner_references(runners, hr_samples=SAMPLES.iloc[:0], sessions=sessions)
    assert refs["age_years"].iloc[0] == pytest.approx(40.0, abs=0.01)  # 1984-07-02 -> 2024-07-02
    assert refs["hr_max_bpm"].iloc[0] == pytest.approx(208 - 0.7 * 40, abs=0.01)


def test_formula_pieces() -> None:
    # Edwards boundaries: a lower bound belongs to its zone; >= 90 % is zone 5; < 50 % is 0
    frac = np.array([0.49, 0.5, 0.6, 0.6999, 0.9, 1.2, np.nan])
    assert hrload.edwards_zone(frac)[:6].tolist() == [0, 1, 2, 2, 5, 5]
    assert np.isnan(hrload.edwards_zone(frac)[6])
    # gaps: capped, last of each session 0, backward clock 0
    minutes = hrload.sample_minutes(np.array(["x", "x", "x", "y", "y"]),
                                    np.array([0.0, 45.0, 40.0, 0.0, 6.0]), max_gap_s=30)
    assert minutes.tolist() == [0.5, 0.0, 0.0, 0.1, 0.0]
    assert hrload.heart_rate_reserve(np.array([40.0, 130.0, 250.0]), hr_rest=60.0,
                                     hr_max=200.0).tolist() == [0.0, 0.5, 1.0]
    assert np.isnan(hrload.heart_rate_reserve(np.array([100.0]), hr_rest=60.0, hr_max=60.0))[0]
    # the mean curve lies between the men's and the women's at every HRr
    x = np.linspace(0.01, 1, 50)
    lo = np.minimum(hrload.banister_weight(x, curve=np.full(50, hrload.CURVE_MEN)),
                    hrload.banister_weight(x, curve=np.full(50, hrload.CURVE_WOMEN)))
    mid = hrload.banister_weight(x, curve=np.full(50, hrload.CURVE_UNKNOWN))
    assert (mid >= lo).all()


# --- integer session codes (the ID strings of 2 million runs are hashed once, or never) ---


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-1, max_value=6), max_size=30))
def test_dense_codes_number_values_as_factorize_does(values: list[int]) -> None:
    codes = np.array(values, dtype=np.int64)
    expected = np.full(len(codes), -1)
    known = codes >= 0
    expected[known] = pd.factorize(codes[known])[0]
    assert hrload.dense_codes(codes).tolist() == expected.tolist()
    increasing = np.unique(codes[known])  # one session a row, in order: no hashing
    assert hrload.dense_codes(increasing).tolist() == list(range(len(increasing)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["runs.csv", "a:1.csv", "b.csv"]),
                          st.integers(min_value=1, max_value=9)), min_size=1, max_size=25))
def test_row_key_codes_group_records_as_their_key_strings(records: list[tuple[str, int]]
                                                          ) -> None:
    """Without activity files a record's session key is ``<file>:<line>``; its integer code
    groups records exactly as the key strings do (a file name with a colon included), and
    the loads of the sessions are those of the string path."""
    from analysis.ingest import watch

    runs = pd.DataFrame({"source_file": pd.array([f for f, _ in records], dtype="str"),
                         "source_line": np.array([n for _, n in records], dtype=np.int64)})
    key = watch._row_keys(runs)
    codes = watch._key_codes(runs, key)
    assert hrload.dense_codes(codes).tolist() == pd.factorize(key)[0].tolist()
    sessions = pd.DataFrame({"session_id": key.array, "runner_id": "R1",
                             "moving_s": 1800.0, "elapsed_s": np.nan, "avg_hr_bpm": 150.0,
                             "max_hr_bpm": 170.0 + np.arange(len(records))})
    by_strings, refs_strings = hrload.session_loads(SAMPLES.iloc[:0], sessions, RUNNERS)
    by_codes, refs_codes = hrload.session_loads(SAMPLES.iloc[:0], sessions, RUNNERS,
                                                session_codes=codes)
    pd.testing.assert_frame_equal(by_codes, by_strings)
    pd.testing.assert_frame_equal(refs_codes, refs_strings)


def test_row_key_codes_of_huge_line_numbers_do_not_overflow() -> None:
    from analysis.ingest import watch

    runs = pd.DataFrame({"source_file": pd.array(["a.csv", "b.csv", "a.csv"], dtype="str"),
                         "source_line": np.array([1, 2**62, 2**62], dtype=np.int64)})
    key = watch._row_keys(runs)
    assert hrload.dense_codes(watch._key_codes(runs, key)).tolist() == [0, 1, 2]
