"""Simulation-based power: reproducibility, sanity at the extremes, summaries by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.errors import ModelSpecError
from analysis.models import MIN_RUNNERS_FOR_SLOPE
from analysis.power import (
    power_curve,
    redraw_lmm_outcome,
    simulate_and_fit,
    simulate_panel,
    summarise_simulations,
)


def test_summarise_by_hand():
    sims = pd.DataFrame({
        "seed": [1, 2, 3, 4],
        "term": "mileage_jump",
        "truth": 0.8,
        "failed": [False, False, False, True],
        "estimate": [0.7, 0.9, 1.1, np.nan],
        "std_error": [0.1, 0.1, 0.1, np.nan],
        "p_value": [0.001, 0.01, 0.2, np.nan],
        "covered": [True, True, False, False],
    }).assign(significant=lambda d: d["p_value"] < 0.05)
    out = summarise_simulations(sims).iloc[0]
    assert out["n_sims"] == 4 and out["n_failed"] == 1
    assert out["power"] == pytest.approx(2 / 4)  # a failed fit counts as not detected
    assert out["mean_estimate"] == pytest.approx(0.9)
    assert out["bias"] == pytest.approx(0.1)
    assert out["coverage"] == pytest.approx(2 / 3)  # among successful fits
    assert out["power_ci_low"] < 0.5 < out["power_ci_high"]


def test_power_curve_reproducible_and_monotone_in_effect():
    kwargs = {"runners": [20], "weeks": [10], "n_sims": 12, "seed": 7, "progress": False}
    big = power_curve(effects={"mileage_jump": 0.3}, **kwargs)  # NRS per +10 % jump
    again = power_curve(effects={"mileage_jump": 0.3}, **kwargs)
    pd.testing.assert_frame_equal(big.drop(columns="seconds_per_sim"),
                                  again.drop(columns="seconds_per_sim"))
    none = power_curve(effects={"mileage_jump": 0.0}, **kwargs)
    assert list(big[["runners", "weeks", "term"]].iloc[0]) == [20, 10, "mileage_jump"]
    assert big["power"].item() == 1.0  # 0.3 points per +10 % (3 per +100 %) is unmissable
    assert big["truth"].item() == pytest.approx(3.0)  # simulated per unit of the fraction
    assert none["power"].item() <= 0.25  # type I error 0.05 (P(>= 4 of 12) = 0.002)
    assert none["truth"].item() == 0.0


def test_power_curve_grid_and_binomial():
    """GLMM power: a null effect is detected at about alpha, a large one almost always."""
    kwargs = {"runners": [10, 30], "weeks": [8], "n_sims": 30, "seed": 3, "progress": False,
              "model": "glmm"}
    null = power_curve(effects={"mileage_jump": 1.0}, **kwargs)  # odds ratio per +10 %
    assert null[["runners", "weeks"]].to_numpy().tolist() == [[10, 8], [30, 8]]
    assert (null["n_failed"] == 0).all()
    # type I error 0.05: more than the binomial 99.9 % quantile (6 of 30) would be a defect
    limit = stats.binom.ppf(0.999, 30, 0.05)
    assert (null["n_significant"] <= limit).all(), null[["runners", "n_significant"]]
    # OR exp(0.6) per +10 % jump = 6 log-odds per +100 %
    # With glmer-matched (Hessian) SEs, 10 runners detect it in 26 of these 30 studies: a
    # near-separated 10-runner study has an honest SE about 1.8x the former GPBoost one.
    large = power_curve(effects={"mileage_jump": float(np.exp(0.6))}, **kwargs)
    power = large.set_index("runners")["power"]
    assert power[10] >= 0.75 and power[30] >= 0.9, power
    assert power[30] >= power[10]  # more runners, more power


def test_unknown_effect_is_an_error():
    with pytest.raises(ModelSpecError, match="not among"):
        power_curve(runners=[10], weeks=[8], effects={"acwr": 1.0}, n_sims=2, progress=False)


def test_parallel_equals_serial():
    kwargs = {"runners": [12], "weeks": [8], "effects": {"mileage_jump": 0.08}, "n_sims": 4,
              "seed": 11, "progress": False}
    serial = power_curve(**kwargs)
    parallel = power_curve(**kwargs, n_jobs=2)
    pd.testing.assert_frame_equal(serial.drop(columns="seconds_per_sim"),
                                  parallel.drop(columns="seconds_per_sim"))


def test_designs_too_small_for_a_random_slope_are_not_estimable():
    """Below MIN_RUNNERS_FOR_SLOPE the default random-slope LMM cannot be fitted: power is
    not estimable (NaN, with the reason), not a power of 0."""
    small = MIN_RUNNERS_FOR_SLOPE - 2
    out = power_curve(runners=[small, 12], weeks=[8], effects={"mileage_jump": 0.3},
                      n_sims=2, seed=1, progress=False).set_index("runners")
    assert np.isnan(out.loc[small, "power"]) and out.loc[small, "n_sims"] == 0
    assert "random slope" in out.loc[small, "not_estimable"]
    assert str(MIN_RUNNERS_FOR_SLOPE) in out.loc[small, "not_estimable"]
    assert pd.isna(out.loc[12, "not_estimable"]) and out.loc[12, "power"] == 1.0
    # a random-intercept model has no such limit
    ri = power_curve(runners=[small], weeks=[8], effects={"mileage_jump": 0.3}, n_sims=2,
                     seed=1, progress=False, random_slopes=())
    assert ri["power"].item() == 1.0 and pd.isna(ri["not_estimable"].item())


def test_exactly_the_requested_runners_are_simulated():
    """50 runners in 3 cohorts are 17 + 17 + 16, not 3 x ceil(50 / 3) = 51."""
    panel, truth = simulate_panel(runners=50, cohorts=3, weeks=8, seed=2)
    assert truth["n_runners"] == 50
    per_cohort = panel.groupby("cohort")["runner_id"].nunique().sort_values()
    assert per_cohort.tolist() == [16, 17, 17]
    sims = simulate_and_fit(runners=50, weeks=8, cohorts=3, seed=2)
    assert (sims["n_runners"] == 50).all()


def test_redraw_is_the_stated_linear_model():
    """With no random effects and no noise the redrawn pain is exactly b0 + sum b_k x_k."""
    panel, truth = simulate_panel(runners_per_cohort=4, weeks=6, seed=4)
    exact = {**truth, "random_effects": {"sd_intercept": 0.0, "sd_slope_mileage_jump": 0.0},
             "residual_sd": 0.0}
    out = redraw_lmm_outcome(panel, exact, seed=0)
    fe = truth["fixed_effects"]
    x = panel[["mileage_jump", "shoe_km", "rest_days_7d"]].astype(float).fillna(0.0)
    expected = (fe["Intercept"] + fe["mileage_jump"] * x["mileage_jump"]
                + fe["shoe_km"] * x["shoe_km"] + fe["rest_days_7d"] * x["rest_days_7d"])
    np.testing.assert_allclose(out["pain"], expected, rtol=1e-12)


def test_a_reports_number_typed_into_power_is_the_effect_simulated():
    """The report prints estimate_step (NRS points per +10 % jump); power takes that number
    and simulates the same coefficient per unit of the fraction (issue 10, finding 9)."""
    from analysis.models import fit_model

    panel, _ = simulate_panel(runners=12, weeks=8, seed=5)
    fitted = fit_model(panel, model="lmm", exposures=["mileage_jump", "shoe_km",
                                                      "rest_days_7d"])
    printed = fitted.term("mileage_jump")
    assert printed["step_label"] == "per +10 % week-over-week mileage"
    assert printed["estimate_step"] == pytest.approx(printed["estimate"] * 0.10, rel=1e-12)
    out = power_curve(runners=[12], weeks=[4], effects={"mileage_jump": printed["estimate_step"]},
                      n_sims=1, seed=1, progress=False)
    assert out["effect"].item() == printed["estimate_step"]
    assert out["truth"].item() == pytest.approx(printed["estimate"], rel=1e-12)
    # and the simulator itself was given that coefficient (truth.json of the study)
    _, truth = simulate_panel(runners=12, weeks=4, seed=1,
                              effects={"mileage_jump": out["truth"].item()})
    assert truth["fixed_effects"]["mileage_jump"] == pytest.approx(printed["estimate"])
    # binomial models: the odds ratio per step the report prints
    odds = power_curve(runners=[12], weeks=[4], effects={"shoe_km": 1.25}, n_sims=1, seed=1,
                       progress=False, model="glmm")
    assert odds["truth"].item() == pytest.approx(np.log(1.25) / 100.0, rel=1e-12)
    with pytest.raises(ModelSpecError, match="odds ratio"):
        power_curve(runners=[12], weeks=[4], effects={"shoe_km": 0.0}, n_sims=1,
                    progress=False, model="glmm")


# --- review D7: impossible inputs, designs where nothing was estimated, doubtful fits ---------

def test_summarise_counts_doubtful_fits_by_hand():
    """A fit that ran but did not converge or has problems is counted in n_doubtful (its
    estimate is kept); a failed fit is not doubtful, it is failed."""
    sims = pd.DataFrame({
        "seed": [1, 2, 3, 4, 5],
        "term": "mileage_jump",
        "truth": 0.8,
        "failed": [False, False, False, False, True],
        "converged": [True, False, True, True, False],
        "status": ["ok", "warning", "warning", "ok", "failed"],
        "problems": ["", "not converged", "singular fit", "", ""],
        "error": ["", "", "", "", "too few runners"],
        "estimate": [0.7, 0.9, 1.1, 0.5, np.nan],
        "std_error": 0.1,
        "p_value": [0.001, 0.01, 0.2, 0.03, np.nan],
        "covered": [True, True, False, False, False],
    }).assign(significant=lambda d: d["p_value"] < 0.05)
    out = summarise_simulations(sims).iloc[0]
    assert (out["n_sims"], out["n_failed"], out["n_doubtful"]) == (5, 1, 2)
    assert out["first_problem"] == "not converged"
    assert out["first_error"] == "too few runners"
    assert out["power"] == pytest.approx(3 / 5)
    assert out["mean_estimate"] == pytest.approx(0.8)  # doubtful fits' estimates are used


def test_summarise_when_every_fit_failed_gives_no_power():
    sims = pd.DataFrame({"seed": [1, 2], "term": "mileage_jump", "truth": 0.8,
                         "failed": True, "estimate": np.nan, "std_error": np.nan,
                         "p_value": np.nan, "covered": False, "error": "boom"}).assign(
        significant=False)
    out = summarise_simulations(sims).iloc[0]
    assert out["n_failed"] == out["n_sims"] == 2 and out["n_doubtful"] == 0
    assert np.isnan(out["power"]) and np.isnan(out["power_ci_low"])
    assert np.isnan(out["power_ci_high"])


def test_a_design_where_every_fit_failed_has_power_nan_with_the_reason():
    """One runner cannot carry a random intercept: every fit fails, so nothing was
    estimated. Power is NaN with the reason, not 0.00 (review D7)."""
    out = power_curve(runners=[1], weeks=[3], effects={"mileage_jump": 0.3}, n_sims=2,
                      seed=1, progress=False, random_slopes=())
    row = out.iloc[0]
    assert row["n_sims"] == row["n_failed"] == 2
    assert np.isnan(row["power"]) and np.isnan(row["power_ci_low"])
    assert row["not_estimable"].startswith("all 2 simulated fits failed; the first: ")
    assert "random intercept needs at least 2" in row["not_estimable"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"effects": {"mileage_jump": np.nan}}, "finite"),
    ({"effects": {"mileage_jump": np.inf}}, "finite"),
    ({"effects": {"shoe_km": -np.inf}}, "finite"),
    ({"effects": {"mileage_jump": np.nan}, "model": "gee"}, "finite"),
    ({"effects": {"mileage_jump": np.inf}, "model": "glmm"}, "finite"),
    ({"alpha": 1.5}, "alpha"),
    ({"alpha": 1.0}, "alpha"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": -0.05}, "alpha"),
    ({"alpha": np.nan}, "alpha"),
])
def test_impossible_effects_and_alpha_are_errors(kwargs, match):
    """Before: nan gave "power 0.00" (every fit failed), inf power 1.00, alpha 1.5 ran."""
    args = {"runners": [12], "weeks": [4], "effects": {"mileage_jump": 0.08}, "n_sims": 1,
            "progress": False, **kwargs}
    with pytest.raises(ModelSpecError, match=match):
        power_curve(**args)


def test_power_table_gives_per_unit_and_per_step_summaries():
    """``mean_estimate``, ``bias``, ... are per unit like ``truth``; the ``_step`` columns are
    per reading step like ``effect`` (here 0.10 of a fraction: +10 % mileage)."""
    out = power_curve(runners=[12], weeks=[6], effects={"mileage_jump": 0.1, "shoe_km": 0.2},
                      n_sims=3, seed=1, progress=False).set_index("term")
    assert out.loc["mileage_jump", "step"] == 0.10 and out.loc["shoe_km", "step"] == 100.0
    for term, step in (("mileage_jump", 0.10), ("shoe_km", 100.0)):
        row = out.loc[term]
        for column in ("mean_estimate", "bias", "empirical_sd", "mean_std_error"):
            assert row[f"{column}_step"] == pytest.approx(row[column] * step, rel=1e-12)
        # bias per step is against the effect as typed (NRS points per step)
        assert row["bias_step"] == pytest.approx(row["mean_estimate_step"] - row["effect"],
                                                 rel=1e-9, abs=1e-12)
    assert 0 <= out.loc["mileage_jump", "n_doubtful"] <= 3


def test_simulated_fits_carry_the_status_of_the_same_fit():
    """simulate_and_fit's status/problems are those of fit_model on the same simulated panel
    (the independent path): the inputs of n_doubtful."""
    from analysis.models import fit_model

    sims = simulate_and_fit(runners=12, weeks=6, seed=3, random_slopes=("mileage_jump",))
    panel, _ = simulate_panel(runners=12, weeks=6, seed=3)
    direct = fit_model(panel, model="lmm", exposures=["mileage_jump", "shoe_km",
                                                      "rest_days_7d"],
                       random_slopes=["mileage_jump"])
    assert (sims["status"] == direct.status).all()
    assert (sims["problems"] == "; ".join(direct.problems)).all()
    assert (sims["converged"] == direct.converged).all()
    np.testing.assert_allclose(sims.set_index("term")["estimate"],
                               direct.table.set_index("term").loc[sims["term"], "estimate"],
                               rtol=1e-12)


def test_smallest_designs_names_the_fewest_runners_per_weeks_that_reach_the_target() -> None:
    """What notebook 04 reports (the rule lived in the notebook): per number of weeks, the
    fewest runners whose estimated power reaches the target, fewest runners first."""
    from analysis import plots, power
    from analysis.defaults import POWER_TARGET

    curve = pd.DataFrame({"runners": [10, 20, 30, 10, 20, 30],
                          "weeks": [8, 8, 8, 16, 16, 16],
                          "power": [0.5, 0.79, 0.85, 0.6, 0.8, 0.95]})
    reached = power.smallest_designs(curve)
    assert reached[["runners", "weeks"]].to_numpy().tolist() == [[20, 16], [30, 8]]
    assert power.smallest_designs(curve, target=0.96).empty
    assert plots.POWER_TARGET is POWER_TARGET == 0.8
