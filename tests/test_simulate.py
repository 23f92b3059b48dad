"""The simulator: deterministic, realistic training, and pain from the stated truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import simulate
from analysis.errors import KneeloadError
from analysis.exposures import build_panel
from analysis.pipeline import build
from analysis.simulate import simulate_dataset, write_dataset

DEMO = Path(__file__).resolve().parents[1] / "data" / "raw" / "demo"


def test_same_seed_same_bytes_and_another_seed_differs(tmp_path, tree_hashes):
    a = write_dataset(simulate_dataset(runners_per_cohort=3, weeks=6, seed=1), tmp_path / "a")
    b = write_dataset(simulate_dataset(runners_per_cohort=3, weeks=6, seed=1), tmp_path / "b")
    c = write_dataset(simulate_dataset(runners_per_cohort=3, weeks=6, seed=2), tmp_path / "c")
    assert tree_hashes(a) == tree_hashes(b)
    assert tree_hashes(a)["runs.csv"] != tree_hashes(c)["runs.csv"]


def test_bundled_demo_is_what_kneeload_simulate_messy_writes(tmp_path, tree_hashes):
    regenerated = write_dataset(simulate_dataset(), tmp_path / "demo", messy=True)
    assert tree_hashes(regenerated) == tree_hashes(DEMO)


def test_cleaning_finds_exactly_the_injected_defects_and_recovers_the_clean_data(
        tmp_path, small_dataset, small_processed):
    """Known truth for the cleaning step: every injected line, and nothing else, is caught."""
    raw = write_dataset(small_dataset, tmp_path / "messy", messy=True)
    messy = build(raw, tmp_path / "processed")
    truth = json.loads((raw / "truth.json").read_text())["messy"]
    quarantine = pd.read_csv(messy.out_dir / "quarantine.csv")
    found = sorted(zip(quarantine["file"], quarantine["line"], quarantine["reason"],
                       strict=True))
    expected = sorted((d["file"], d["line"], d["reason"]) for d in truth["quarantined_or_merged"])
    assert found == expected
    assert len(expected) == sum(count for _, _, count in simulate.MESSY_DEFECTS)
    report = messy.cleaning["files"]
    assert report["runs.csv"]["fixes"] == truth["fixed"]["runs.csv"] == {"decimal_comma": 2}
    clean_panel = pd.read_parquet(small_processed.out_dir / "panel.parquet")
    messy_panel = pd.read_parquet(messy.out_dir / "panel.parquet")
    pd.testing.assert_frame_equal(messy_panel, clean_panel)


def test_canonical_files_and_truth(small_raw):
    assert sorted(p.name for p in small_raw.iterdir()) == [
        "pain.csv", "runners.csv", "runs.csv", "shoes.csv", "truth.json"]
    runs = pd.read_csv(small_raw / "runs.csv")
    assert list(runs.columns) == [
        "runner_id", "date", "distance_km", "duration_min", "shoe_id", "activity_type"]
    pd.to_datetime(runs["date"], format="%Y-%m-%d")  # ISO 8601 days, raises otherwise
    truth = json.loads((small_raw / "truth.json").read_text())
    assert truth["fixed_effects"] == {"Intercept": simulate.NRS_INTERCEPT,
                                      **simulate.DEFAULT_NRS_EFFECTS}
    assert truth["counts"]["runs"] == len(runs)


def test_training_is_realistic(small_dataset):
    runs, runners = small_dataset.runs, small_dataset.runners
    assert runs["distance_km"].between(simulate.MIN_RUN_KM, simulate.MAX_RUN_KM).all()
    assert not runs.duplicated(["runner_id", "date"]).any()  # one run a day
    pace = runs["duration_min"] / runs["distance_km"]
    assert pace.between(3.5, 8.5).all()  # min/km, well inside the cleaning limits
    days = len(runners) * 10 * 7
    rest_share = 1 - len(runs) / days
    assert 0.2 < rest_share < 0.7
    weekly = (runs.merge(runners[["runner_id", "cohort"]], on="runner_id")
              .groupby("cohort")["distance_km"].sum() / runners.groupby("cohort").size() / 10)
    assert weekly["novice"] < weekly["recreational"]  # archetypes keep their order


def test_long_run_falls_on_the_weekend(small_dataset):
    runs = small_dataset.runs.assign(week=lambda d: d["date"].dt.to_period("W-SUN"))
    longest = runs.loc[runs.groupby(["runner_id", "week"])["distance_km"].idxmax()]
    assert (longest["date"].dt.day_of_week >= 5).mean() > 0.8


def test_shoes_are_retired_within_their_lifetime(small_dataset):
    runs, shoes = small_dataset.runs, small_dataset.shoes
    worn = runs.groupby("shoe_id")["distance_km"].sum()
    start = shoes.set_index("shoe_id")["start_km"]
    total = worn + start.reindex(worn.index)
    last_shoe = runs.sort_values("date").groupby("runner_id")["shoe_id"].last()
    retired = total.drop(last_shoe.to_numpy())
    # A shoe is retired on the first run that takes it past its lifetime: at most one run over.
    assert (retired >= simulate.SHOE_LIFETIME_KM[0]).all()
    assert (retired <= simulate.SHOE_LIFETIME_KM[1] + simulate.MAX_RUN_KM).all()
    pre_used = shoes[shoes["start_km"] > 0]
    assert pre_used["start_date"].isna().all()  # purchase date unknown for a pre-used shoe
    assert pre_used["shoe_id"].str.endswith("-S1").all()


def test_reports_are_weekly_on_sundays_with_some_missing(small_dataset):
    pain = small_dataset.pain
    assert (pain["date"].dt.day_of_week == 6).all()
    expected = len(small_dataset.runners) * 10
    assert 0.75 * expected < len(pain) < expected
    assert pain["pain"].between(0, 10).all()
    assert (pain["pain"] == pain["pain"].round()).all()  # NRS is whole points


def test_pain_recovers_the_true_effects_by_ordinary_least_squares():
    """Without runner effects, plain OLS on the package's panel must find the stated truth.

    This checks the simulator's wiring (pain is generated from the same exposure columns the
    panel holds) independently of analysis.models.
    """
    import statsmodels.formula.api as smf

    ds = simulate_dataset(runners_per_cohort=30, weeks=20, seed=11, sd_intercept=0.0,
                          sd_slope_jump=0.0)
    panel = build_panel(ds.runs, ds.runners, ds.pain, ds.shoes).panel
    exposures = list(simulate.DEFAULT_NRS_EFFECTS)
    fit = smf.ols(f"pain ~ {' + '.join(exposures)}", data=panel.dropna(subset=exposures)).fit()
    ci = fit.conf_int()
    for name, true in simulate.DEFAULT_NRS_EFFECTS.items():
        assert ci.loc[name, 0] < true < ci.loc[name, 1], (name, fit.params[name], true)
    assert fit.params["mileage_jump"] > 0 and fit.params["rest_days_7d"] < 0


def test_binary_outcome_puts_nrs_on_the_right_side_of_the_threshold():
    ds = simulate_dataset(runners_per_cohort=10, weeks=12, outcome="binary", seed=3)
    assert ds.truth["outcome_model"] == "binary"
    assert ds.truth["odds_ratios"]["mileage_jump"] == pytest.approx(
        np.exp(simulate.DEFAULT_BINARY_EFFECTS["mileage_jump"]))
    assert 0.1 < ds.truth["prevalence"] < 0.6
    assert set(np.unique(ds.pain["pain"])) <= set(range(11))


@pytest.mark.parametrize(("bad", "message"), [({"outcome": "poisson"}, "outcome"),
                                              ({"cohorts": 9}, "cohorts"),
                                              ({"weeks": 2}, "3 weeks")])
def test_bad_arguments_are_user_errors(bad, message):
    with pytest.raises(KneeloadError, match=message):
        simulate_dataset(**bad)
