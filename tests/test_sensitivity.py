"""models.sensitivity: every row is the fit it names, checked against the build itself.

The lag-0 analysis is checked against a second build with ``exposure_lag_days=0`` and the
rest-vs-missing analysis against a build with ``unlogged_gaps="missing"`` (the build's own
paths, not the lookup under test).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.errors import ModelSpecError
from analysis.models import fit_glmm, fit_lmm, likelihood_ratio_test
from analysis.models.sensitivity import SENSITIVITY_COLUMNS, lag0_panel, sensitivity
from analysis.pipeline import build, load_processed

EXPOSURE = "acwr_rolling"


@pytest.fixture(scope="module")
def builds(small_raw, small_processed, tmp_path_factory):
    out = tmp_path_factory.mktemp("sens")
    main = load_processed(small_processed.out_dir)
    lag0 = load_processed(build(small_raw, out / "lag0", exposure_lag_days=0).out_dir)
    missing = load_processed(build(small_raw, out / "missing", unlogged_gaps="missing")
                             .out_dir)
    return main, lag0, missing


def test_lag0_lookup_equals_a_lag0_build(builds):
    main, lag0, _ = builds
    columns = [EXPOSURE, "km_7d", "km_28d", "mileage_jump"]
    ours = lag0_panel(main["panel"], main["daily"], columns=columns)
    key = ["runner_id", "date"]
    expected = lag0["panel"].set_index(key).loc[ours.set_index(key).index, columns]
    pd.testing.assert_frame_equal(ours.set_index(key)[columns], expected, check_dtype=False)
    assert ours[EXPOSURE].notna().sum() > 0.5 * len(ours)


def _row(table: pd.DataFrame, analysis: str, term: str | None = None) -> pd.Series:
    rows = table.loc[table["analysis"].str.startswith(analysis)]
    if term is not None:
        rows = rows.loc[rows["term"] == term]
    assert len(rows) == 1, (analysis, term)
    return rows.iloc[0]


def test_each_row_is_the_fit_it_names(builds):
    main, lag0, missing = builds
    panel = main["panel"]
    table = sensitivity(panel, daily=main["daily"], missing_panel=missing["panel"])
    assert tuple(table.columns) == SENSITIVITY_COLUMNS
    step = 0.1  # per +0.1 acute:chronic ratio

    direct = fit_lmm(panel, exposures=[EXPOSURE]).term(EXPOSURE)
    assert _row(table, "main: lag 7 days")["estimate_step"] == pytest.approx(
        direct["estimate"] * step, rel=1e-10)
    at_lag0 = fit_lmm(lag0["panel"], exposures=[EXPOSURE])
    row = _row(table, "lag 0 days")
    assert row["estimate_step"] == pytest.approx(at_lag0.term(EXPOSURE)["estimate"] * step,
                                                 rel=1e-8)
    assert row["n_obs"] == at_lag0.n_obs
    separate = fit_lmm(panel, exposures=["km_7d", "km_28d"])
    for term in ("km_7d", "km_28d"):
        assert _row(table, "acute + chronic", term)["estimate_step"] == pytest.approx(
            separate.term(term)["estimate_step"], rel=1e-10)
    both = fit_lmm(panel, exposures=["km_7d", "km_28d"], interactions=["km_7d:km_28d"])
    assert _row(table, "acute x chronic", "km_7d:km_28d")["ci_high_step"] == pytest.approx(
        both.term("km_7d:km_28d")["ci_high_step"], rel=1e-10)
    lrt = likelihood_ratio_test(
        fit_lmm(panel, exposures=[EXPOSURE], reml=False),
        fit_lmm(panel, exposures=[EXPOSURE], reml=False, splines={EXPOSURE: 3},
                nonlinearity=False))
    assert _row(table, "natural spline")["p_value"] == pytest.approx(lrt["p_value"], rel=1e-6)
    gaps = fit_lmm(missing["panel"], exposures=[EXPOSURE]).term(EXPOSURE)
    assert _row(table, "unlogged gaps as missing")["estimate_step"] == pytest.approx(
        gaps["estimate"] * step, rel=1e-10)
    # the small study has no 21-day gap (both builds agree); a panel that differs shows
    # the row is fitted on the panel given
    doubled = panel.assign(**{EXPOSURE: 2 * panel[EXPOSURE]})
    other = sensitivity(panel, missing_panel=doubled)
    assert _row(other, "unlogged gaps as missing")["estimate_step"] == pytest.approx(
        direct["estimate"] * step / 2, rel=1e-6)


def test_analyses_without_their_inputs_say_so(builds):
    main, _, _ = builds
    table = sensitivity(main["panel"], exposure="mileage_jump", model="glmm")
    assert _row(table, "lag 0 days")["note"].startswith("not done: needs the daily table")
    assert "unlogged_gaps='missing'" in _row(table, "unlogged gaps")["note"]
    direct = fit_glmm(main["panel"], exposures=["mileage_jump"]).term("mileage_jump")
    row = _row(table, "main")
    assert row["odds_ratio_step"] == pytest.approx(direct["odds_ratio_step"], rel=1e-8)
    assert np.isnan(_row(table, "lag 0 days")["estimate_step"])
    with pytest.raises(ModelSpecError, match="'lmm' or 'glmm'"):
        sensitivity(main["panel"], model="gee")
