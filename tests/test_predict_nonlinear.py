"""predicted_curve with a spline exposure and with an interaction (issue 16).

Independent checks: ``ns(x, 1)`` spans the same column space as ``x`` with the intercept, so
its predicted curve and band must equal the linear model's (a reparametrisation leaves
fitted values and their variances unchanged); an interaction curve is recomputed by hand
from the fitted table.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis import paths
from analysis.errors import ModelSpecError
from analysis.models import exposure_response, fit_lmm, predicted_curve
from analysis.pipeline import load_processed

EXPOSURE = "acwr_rolling"


@pytest.fixture(scope="module")
def panel():
    return load_processed(paths.processed_dir("demo"))["panel"]


def test_spline_df1_curve_equals_linear_curve(panel):
    linear = predicted_curve(fit_lmm(panel, exposures=[EXPOSURE, "shoe_km"]), panel,
                             exposure=EXPOSURE)
    spline = predicted_curve(fit_lmm(panel, exposures=[EXPOSURE, "shoe_km"],
                                     splines={EXPOSURE: 1}), panel, exposure=EXPOSURE)
    # REML fits of the same column space: agree to the optimizer's tolerance (measured 1e-9)
    np.testing.assert_allclose(spline.to_numpy(), linear.to_numpy(), rtol=1e-6, atol=1e-6)


def test_spline_curve_differences_are_the_exposure_response(panel):
    result = fit_lmm(panel, exposures=[EXPOSURE, "shoe_km"], splines={EXPOSURE: 3})
    curve = predicted_curve(result, panel, exposure=EXPOSURE, n_points=11)
    effect = exposure_response(result, exposure=EXPOSURE, x=curve["x"],
                               reference=float(curve["x"].iloc[0]))
    np.testing.assert_allclose(curve["predicted"] - curve["predicted"].iloc[0],
                               effect["estimate"], atol=1e-12)
    assert not np.allclose(np.diff(curve["predicted"], 2), 0)  # a curve, not a line
    assert (curve["ci_low"] < curve["predicted"]).all()
    assert (curve["predicted"] < curve["ci_high"]).all()


def test_interaction_curve_by_hand(panel):
    result = fit_lmm(panel, exposures=["km_7d", "km_28d"], interactions=["km_7d:km_28d"])
    curve = predicted_curve(result, panel, exposure="km_7d", n_points=5)
    beta = result.table.set_index("term")["estimate"]
    used = panel.dropna(subset=["pain", "km_7d", "km_28d"])
    m28 = used["km_28d"].mean()
    by_hand = (beta["Intercept"] + beta["km_7d"] * curve["x"] + beta["km_28d"] * m28
               + beta["km_7d:km_28d"] * curve["x"] * m28)
    np.testing.assert_allclose(curve["predicted"], by_hand, rtol=1e-10)


def test_not_an_exposure_is_one_line(panel):
    result = fit_lmm(panel, exposures=[EXPOSURE])
    with pytest.raises(ModelSpecError, match="not an exposure of this model"):
        predicted_curve(result, panel, exposure="shoe_km")
