"""Epidemiology summaries against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.defaults import DEFAULT_PAIN_THRESHOLD
from analysis.epi import (
    cluster_bootstrap_interval,
    incidence,
    incidence_from_days,
    mark_episodes,
    ostrc_substantial,
    poisson_interval,
    quasi_poisson_interval,
    weekly_prevalence,
    wilson_interval,
)
from analysis.errors import ModelSpecError

FIXTURE = Path(__file__).parent / "fixtures" / "episodes"
THRESHOLD = DEFAULT_PAIN_THRESHOLD  # the fixtures' pain_any is pain >= 3


def hand_panel() -> pd.DataFrame:
    """Two runners, weekly Sunday reports.

    A: F F T T F F T F T   -> episodes at report 3 and 7 (each after >= 1 pain-free report
       at the start, or 2 pain-free reports after an episode); report 9 follows only one
       pain-free report: the episode of report 7 continues.
    B: T F F F T           -> first report is prevalent pain (no history): not incident;
       report 5 follows 3 pain-free: an incident episode.
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
    marked = mark_episodes(hand_panel(), threshold=THRESHOLD)
    a = marked.loc[marked["runner_id"] == "A"]
    b = marked.loc[marked["runner_id"] == "B"]
    assert a["pain_free_before"].tolist() == [0, 1, 2, 0, 0, 1, 2, 0, 1]
    assert a["episode_start"].tolist() == [False, False, True, False, False, False, True,
                                           False, False]
    assert a["episode"].tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert b["episode_start"].tolist() == [False, False, False, False, True]
    assert b["prevalent"].tolist() == [True, False, False, False, False]


def fixture_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    reports = pd.read_csv(FIXTURE / "reports.csv", parse_dates=["date"])
    reports = reports.assign(ostrc_substantial=reports["ostrc_substantial"].astype("boolean"))
    return reports, pd.read_csv(FIXTURE / "daily.csv", parse_dates=["date"])


def test_incidence_counts_only_time_at_risk_the_reviewers_example():
    """Runner A (tests/fixtures/episodes, docs/episodes.md): 66 h between the first and the
    last report, of which 14 h at risk (days 1..14, 1 h a day); the other 52 h (20 km /
    2 h a day, days 15..40) were run inside the episode (onset day 14, resolved day 49).
    One episode: 1 / 66 h = 15.2 per 1,000 h before, 1 / 14 h = 71.4 per 1,000 h now."""
    reports, daily = fixture_tables()
    out = incidence(reports, daily, threshold=THRESHOLD, by=("runner_id",), n_boot=200)
    a = out.set_index(["runner_id", "scope"]).loc[("A", "all")]
    assert (a["episodes"], a["days_at_risk"]) == (1, 14)
    assert a["hours_observed"] == pytest.approx(66.0)
    assert a["hours"] == pytest.approx(14.0)
    assert round(1000 * a["episodes"] / a["hours_observed"], 1) == 15.2  # the old figure
    assert a["rate_per_1000_h"] == pytest.approx(1000 / 14)  # 71.43
    assert round(a["rate_per_1000_h"], 1) == 71.4
    assert a["km"] == pytest.approx(140.0) and a["km_observed"] == pytest.approx(660.0)
    assert a["rate_per_1000_km"] == pytest.approx(1000 / 140)
    # exact Poisson interval for 1 event: (0.025318, 5.571643) (Garwood; standard tables)
    assert a["ci_low_h"] == pytest.approx(0.025318 / 14 * 1000, rel=1e-5)
    assert a["ci_high_h"] == pytest.approx(5.571643 / 14 * 1000, rel=1e-5)
    # B: at risk days 15..21 only (after its prevalent episode, before the open one), runs
    # of 48 min on days 16, 18, 20 and 21: 3.2 h; the episode at day 21 is not a first one
    b = out.set_index(["runner_id", "scope"])
    assert b.loc[("B", "all"), "hours"] == pytest.approx(3.2)
    assert b.loc[("B", "all"), "episodes"] == 1
    assert b.loc[("B", "first"), "hours"] == 0.0 and b.loc[("B", "first"), "episodes"] == 0
    assert np.isnan(b.loc[("B", "first"), "rate_per_1000_h"])


def test_incidence_first_and_all_per_cohort():
    reports, daily = fixture_tables()
    out = incidence(reports, daily, threshold=THRESHOLD, n_boot=500).set_index("scope")
    assert out.loc["all", "episodes"] == 2 and out.loc["first", "episodes"] == 1
    assert out.loc["all", "hours"] == pytest.approx(14.0 + 3.2)
    assert out.loc["first", "hours"] == pytest.approx(14.0)
    assert out.loc["all", "runners"] == 2 and out.loc["first", "runners_at_risk"] == 1
    assert out.loc["all", "rate_per_1000_h"] == pytest.approx(2 / 17.2 * 1000)
    # quasi-Poisson by hand: r = 2 / 17.2 per h; mu_A = 14 r = 1.62791, mu_B = 3.2 r =
    # 0.37209; phi = ((1 - 1.62791)^2 / 1.62791 + (1 - 0.37209)^2 / 0.37209) / (2 - 1)
    r = 2 / 17.2
    mu = np.array([14 * r, 3.2 * r])
    phi = float(np.sum((1 - mu) ** 2 / mu))
    assert out.loc["all", "dispersion_h"] == pytest.approx(phi)
    z = 1.959963984540054  # scipy.stats.norm.ppf(0.975)
    assert out.loc["all", "qp_low_h"] == pytest.approx(r * np.exp(-z * np.sqrt(phi / 2)) * 1000)
    assert out.loc["all", "qp_high_h"] == pytest.approx(r * np.exp(z * np.sqrt(phi / 2)) * 1000)
    assert out.loc["all", "boot_low_h"] <= out.loc["all", "rate_per_1000_h"] \
        <= out.loc["all", "boot_high_h"]


def test_quasi_poisson_is_statsmodels_glm_with_pearson_scale():
    import statsmodels.api as sm

    rng = np.random.default_rng(4)
    exposure = rng.uniform(20, 200, 40)
    events = rng.negative_binomial(2, 2 / (2 + 0.01 * exposure))  # overdispersed, mean 0.01 E
    rate, lo, hi, phi = quasi_poisson_interval(events, exposure)
    fit = sm.GLM(events, np.ones((40, 1)), family=sm.families.Poisson(),
                 offset=np.log(exposure)).fit(scale="X2")
    z = 1.959963984540054
    assert rate == pytest.approx(np.exp(fit.params[0]) * 1000, rel=1e-9)
    assert phi == pytest.approx(fit.scale, rel=1e-9)
    assert lo == pytest.approx(np.exp(fit.params[0] - z * fit.bse[0]) * 1000, rel=1e-8)
    assert hi == pytest.approx(np.exp(fit.params[0] + z * fit.bse[0]) * 1000, rel=1e-8)
    assert phi > 1.5  # the clustering the simple interval ignores


def test_cluster_bootstrap_by_hand_and_reproducible():
    # every runner has the same rate (1 event per 10 h): every resample has it too
    lo, hi = cluster_bootstrap_interval(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20, 30]),
                                        rng=np.random.default_rng(0), n_boot=300)
    assert lo == pytest.approx(100.0) and hi == pytest.approx(100.0)
    # all events in one of five runners of equal exposure: resamples without that runner
    # have rate 0, so the lower end is 0 where the exact Poisson interval of 10 events is not
    y, e = np.array([10.0, 0, 0, 0, 0]), np.full(5, 100.0)
    one = cluster_bootstrap_interval(y, e, rng=np.random.default_rng(1))
    two = cluster_bootstrap_interval(y, e, rng=np.random.default_rng(1))
    assert one == two
    assert one[0] == 0.0 and one[1] > 10 / 500 * 1000 * 2
    plo, _ = poisson_interval(10)
    assert float(plo) / 500 * 1000 > one[0]


def test_incidence_from_days_needs_the_at_risk_columns():
    with pytest.raises(ModelSpecError, match="at-risk table"):
        incidence_from_days(pd.DataFrame({"cohort": [], "runner_id": []}))
    reports, daily = fixture_tables()
    runs = daily.drop(columns=["day_index"])
    with pytest.raises(ModelSpecError, match="daily"):
        incidence(reports, runs, threshold=THRESHOLD)


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


def test_weekly_prevalence_counts_runners_the_reviewers_example():
    """tests/fixtures/episodes/prevalence.csv, week Mon 2026-01-05 .. Sun 01-11: D1 reports
    daily with pain (7 reports), D2..D5 once each without: 7 / 11 = 0.64 of reports, but
    1 / 5 = 0.20 of runners."""
    panel = pd.read_csv(FIXTURE / "prevalence.csv", parse_dates=["date"])
    out = weekly_prevalence(panel).iloc[0]
    assert out["week_start"] == pd.Timestamp("2026-01-05")
    assert (out["reports"], out["pain_reports"]) == (11, 7)
    assert round(out["pain_reports"] / out["reports"], 2) == 0.64  # the old figure
    assert (out["runners"], out["runners_with_pain"]) == (5, 1)
    assert out["prevalence"] == pytest.approx(0.20)
    # Wilson 1 of 5, z = 1.959964: centre (0.2 + z^2/10) / (1 + z^2/5), half
    # z sqrt(0.2 * 0.8 / 5 + z^2 / 100) / (1 + z^2/5): 0.330345 -+ 0.294121
    assert out["ci_low"] == pytest.approx(0.036224, abs=1e-6)
    assert out["ci_high"] == pytest.approx(0.624465, abs=1e-6)


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
    assert (first["runners"], first["runners_with_pain"]) == (2, 1)
    assert first["prevalence"] == pytest.approx(0.5)
    assert (first["ostrc_runners"], first["runners_substantial"]) == (2, 1)
    assert out["reports"].sum() == len(panel)
    assert out.iloc[1]["ostrc_runners"] == 0
    assert np.isnan(out.iloc[1]["prevalence_substantial"])
    # a precomputed panel column wins over the items
    flagged = panel.assign(ostrc_substantial=pd.array([True] + [pd.NA] * (len(panel) - 1),
                                                      dtype="boolean"))
    assert ostrc_substantial(flagged).sum() == 1


def test_summaries_on_a_simulated_study():
    from analysis.exposures import build_panel
    from analysis.simulate import simulate_dataset

    ds = simulate_dataset(runners_per_cohort=8, weeks=16, cohorts=2, seed=3)
    built = build_panel(ds.runs, ds.runners, ds.pain, ds.shoes)
    panel, daily = built.panel, built.daily
    inc = incidence(panel, daily, threshold=built.meta["pain_threshold"], n_boot=300)
    assert set(inc["cohort"]) == set(panel["cohort"])
    assert (inc["episodes"] <= panel.groupby("cohort")["pain_any"].sum()
            .loc[inc["cohort"]].to_numpy()).all()
    for lo, hi in (("ci_low_km", "ci_high_km"), ("boot_low_km", "boot_high_km"),
                   ("qp_low_km", "qp_high_km")):
        assert (inc[lo] <= inc["rate_per_1000_km"]).all()
        assert (inc["rate_per_1000_km"] <= inc[hi]).all()
    # time at risk is part of the observed time; first-episode time part of all time
    assert (inc["hours"] <= inc["hours_observed"] + 1e-9).all()
    wide = inc.pivot_table(index="cohort", columns="scope", values="hours")
    assert (wide["first"] <= wide["all"] + 1e-9).all()
    # every run of the simulator has a duration, so km and hours come from the same days
    assert (inc["days_without_duration"] == 0).all() and (inc["hours"] > 0).all()
    prev = weekly_prevalence(panel)
    assert prev["reports"].sum() == panel["pain_any"].notna().sum()
    assert ((prev["ci_low"] <= prev["prevalence"]) & (prev["prevalence"] <= prev["ci_high"])).all()
    assert (prev["runners"] <= prev["reports"]).all()


def test_a_running_day_without_duration_adds_km_not_hours_and_no_grouping_works():
    reports, daily = fixture_tables()
    # A's day 5 loses its duration: 10 km still at risk, 1 h fewer
    day5 = (daily["runner_id"] == "A") & (daily["date"] == pd.Timestamp("2026-01-09"))
    daily = daily.assign(duration_min=daily["duration_min"].mask(day5))
    out = incidence(reports, daily, threshold=THRESHOLD, by=(), n_boot=100)
    every = out.set_index("scope").loc["all"]
    assert every["days_without_duration"] == 1
    assert every["hours"] == pytest.approx(14.0 - 1.0 + 3.2)
    assert every["km"] == pytest.approx(140.0 + 32.0)
    assert every["episodes"] == 2 and every["runners"] == 2
