"""Epidemiology summaries against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.epi import (
    incidence,
    mark_episodes,
    ostrc_substantial,
    poisson_interval,
    weekly_prevalence,
    wilson_interval,
)


def hand_panel() -> pd.DataFrame:
    """Two runners, weekly Sunday reports.

    A: F F T T F F T F T   -> episodes at report 3 (after 2 pain-free) and 7 (after 2 free);
       report 9 follows only one pain-free report: same episode continues.
    B: T F F F T           -> first report is prevalent pain (no history): not an episode;
       report 5 follows 3 pain-free: an episode.
    """
    a = [False, False, True, True, False, False, True, False, True]
    b = [True, False, False, False, True]
    dates_a = pd.date_range("2026-01-04", periods=len(a), freq="7D")  # Sundays
    dates_b = pd.date_range("2026-01-04", periods=len(b), freq="7D")
    return pd.DataFrame({
        "runner_id": ["A"] * len(a) + ["B"] * len(b),
        "cohort": ["x"] * len(a) + ["y"] * len(b),
        "date": np.r_[dates_a, dates_b],
        "pain_any": a + b,
    }).sample(frac=1.0, random_state=3)  # order must not matter


def test_episodes_by_hand():
    marked = mark_episodes(hand_panel())
    a = marked.loc[marked["runner_id"] == "A"]
    b = marked.loc[marked["runner_id"] == "B"]
    assert a["pain_free_before"].tolist() == [0, 1, 2, 0, 0, 1, 2, 0, 1]
    assert a["episode_start"].tolist() == [False, False, True, False, False, False, True,
                                           False, False]
    assert b["episode_start"].tolist() == [False, False, False, False, True]


def test_incidence_by_hand():
    panel = hand_panel()
    runs = pd.DataFrame({
        "runner_id": ["A", "A", "A", "B", "B", "B"],
        # A's window is 2026-01-04..2026-03-01; the run on 2025-12-30 is outside it
        "date": pd.to_datetime(["2025-12-30", "2026-01-10", "2026-02-01",
                                "2026-01-04", "2026-01-20", "2026-02-01"]),
        "distance_km": [99.0, 10.0, 15.0, 8.0, 12.0, 20.0],
        "duration_min": [600.0, 60.0, 90.0, 48.0, np.nan, 120.0],
    })
    out = incidence(panel, runs).set_index("cohort")
    assert out.loc["x", "episodes"] == 2
    assert out.loc["x", "km"] == pytest.approx(25.0)
    assert out.loc["x", "hours"] == pytest.approx(2.5)
    assert out.loc["x", "rate_per_1000_h"] == pytest.approx(2 / 2.5 * 1000)
    assert out.loc["x", "rate_per_1000_km"] == pytest.approx(2 / 25 * 1000)
    assert out.loc["y", "episodes"] == 1
    assert out.loc["y", "km"] == pytest.approx(40.0)
    assert out.loc["y", "hours"] == pytest.approx(168 / 60)
    assert out.loc["y", "runs_without_duration"] == 1
    # exact Poisson interval for 2 events: (0.2422, 7.2247) (Garwood; standard tables)
    assert out.loc["x", "ci_low_km"] == pytest.approx(0.242209 / 25 * 1000, rel=1e-5)
    assert out.loc["x", "ci_high_km"] == pytest.approx(7.224693 / 25 * 1000, rel=1e-5)


def test_poisson_interval_zero_and_known():
    lo, hi = poisson_interval(np.array([0, 1, 10]))
    np.testing.assert_allclose(lo, [0.0, 0.025318, 4.795389], rtol=1e-5)
    np.testing.assert_allclose(hi, [3.688879, 5.571643, 18.390356], rtol=1e-5)


def test_wilson_by_hand():
    # 3 of 10, z = 1.959964: centre (0.3 + z^2/20) / (1 + z^2/10), Wilson 1927
    lo, hi = wilson_interval(3, 10)
    assert float(lo) == pytest.approx(0.10779, abs=1e-5)
    assert float(hi) == pytest.approx(0.60322, abs=1e-5)
    lo0, hi0 = wilson_interval(0, 0)
    assert np.isnan(lo0) and np.isnan(hi0)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 500), data=st.data())
def test_wilson_contains_estimate(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson_interval(k, n)
    eps = 1e-12  # the interval ends are computed in floating point
    assert 0 <= lo <= k / n + eps and k / n - eps <= hi <= 1


def test_weekly_prevalence_and_ostrc():
    panel = hand_panel().sort_values(["runner_id", "date"]).reset_index(drop=True)
    items = {f"ostrc_q{i}": np.nan for i in range(1, 5)}
    panel = panel.assign(cohort="all", **items)
    # first week, OSTRC-O2 option numbers 1-4: A reduced participation (q1 = 3) with a
    # moderate loss of training volume (q2 = 3): substantial; B full participation with
    # problems (q1 = 2) and no reduction (q2 = q3 = 1): a problem but not substantial
    panel.loc[0, ["ostrc_q1", "ostrc_q2", "ostrc_q3", "ostrc_q4"]] = [3.0, 3.0, 1.0, 2.0]
    panel.loc[9, ["ostrc_q1", "ostrc_q2", "ostrc_q3", "ostrc_q4"]] = [2.0, 1.0, 1.0, 2.0]
    out = weekly_prevalence(panel)
    first = out.iloc[0]
    assert first["week_start"] == pd.Timestamp("2025-12-29")  # Monday before Sunday 4 Jan
    assert (first["reports"], first["pain_reports"]) == (2, 1)
    assert first["prevalence"] == pytest.approx(0.5)
    assert (first["ostrc_reports"], first["substantial"]) == (2, 1)
    assert out["reports"].sum() == len(panel)
    assert out.iloc[1]["ostrc_reports"] == 0
    assert np.isnan(out.iloc[1]["prevalence_substantial"])
    # a precomputed panel column wins over the items
    flagged = panel.assign(ostrc_substantial=pd.array([True] + [pd.NA] * (len(panel) - 1),
                                                      dtype="boolean"))
    assert ostrc_substantial(flagged).sum() == 1


def test_summaries_on_a_simulated_study():
    from analysis.exposures import build_panel
    from analysis.simulate import simulate_dataset

    ds = simulate_dataset(runners_per_cohort=8, weeks=16, cohorts=2, seed=3)
    panel = build_panel(ds.runs, ds.runners, ds.pain, ds.shoes).panel
    inc = incidence(panel, ds.runs)
    assert set(inc["cohort"]) == set(panel["cohort"])
    assert (inc["episodes"] <= panel.groupby("cohort")["pain_any"].sum().loc[inc["cohort"]]
            .to_numpy()).all()
    assert (inc["ci_low_km"] <= inc["rate_per_1000_km"]).all()
    assert (inc["rate_per_1000_km"] <= inc["ci_high_km"]).all()
    # every run of the simulator has a duration, so km and hours come from the same runs
    assert (inc["runs_without_duration"] == 0).all() and (inc["hours"] > 0).all()
    prev = weekly_prevalence(panel)
    assert prev["reports"].sum() == panel["pain_any"].notna().sum()
    assert ((prev["ci_low"] <= prev["prevalence"]) & (prev["prevalence"] <= prev["ci_high"])).all()
