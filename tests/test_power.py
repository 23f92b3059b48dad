"""Simulation-based power: reproducibility, sanity at the extremes, summaries by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.errors import ModelSpecError
from analysis.power import power_curve, summarise_simulations


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
    big = power_curve(effects={"mileage_jump": 3.0}, **kwargs)
    again = power_curve(effects={"mileage_jump": 3.0}, **kwargs)
    pd.testing.assert_frame_equal(big.drop(columns="seconds_per_sim"),
                                  again.drop(columns="seconds_per_sim"))
    none = power_curve(effects={"mileage_jump": 0.0}, **kwargs)
    assert list(big[["runners", "weeks", "term"]].iloc[0]) == [20, 10, "mileage_jump"]
    assert big["power"].item() == 1.0  # a 3-point effect per +100 % is unmissable
    assert none["power"].item() <= 0.25  # type I error 0.05 (P(>= 4 of 12) = 0.002)
    assert none["truth"].item() == 0.0


def test_power_curve_grid_and_binomial():
    out = power_curve(runners=[10, 30], weeks=[8], effects={"mileage_jump": 1.0}, n_sims=3,
                      seed=3, progress=False, model="glmm")
    assert out[["runners", "weeks"]].to_numpy().tolist() == [[10, 8], [30, 8]]
    assert ((out["power"] >= 0) & (out["power"] <= 1)).all()


def test_unknown_effect_is_an_error():
    with pytest.raises(ModelSpecError, match="not among"):
        power_curve(runners=[10], weeks=[8], effects={"acwr": 1.0}, n_sims=2, progress=False)


def test_parallel_equals_serial():
    kwargs = {"runners": [12], "weeks": [8], "effects": {"mileage_jump": 0.8}, "n_sims": 4,
              "seed": 11, "progress": False}
    serial = power_curve(**kwargs)
    parallel = power_curve(**kwargs, n_jobs=2)
    pd.testing.assert_frame_equal(serial.drop(columns="seconds_per_sim"),
                                  parallel.drop(columns="seconds_per_sim"))


def test_failed_fits_count_as_not_detected_and_say_why():
    # 8 runners cannot support the random slope on mileage_jump (MIN_RUNNERS_FOR_SLOPE = 10)
    out = power_curve(runners=[8], weeks=[8], effects={"mileage_jump": 3.0}, n_sims=2, seed=1,
                      progress=False)
    assert out["n_failed"].item() == 2 and out["power"].item() == 0.0
    assert "random slope" in out["first_error"].item()
