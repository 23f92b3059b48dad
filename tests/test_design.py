"""analysis.models.design: the one within/between split, build_design's steps, design_of.

References: hand-computed means, pandas ``groupby().transform("mean")`` (an independent
implementation of the runner mean) and the uncentred fit of the same model (grand-mean
centring moves only the intercept).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import plots
from analysis.errors import ModelSpecError
from analysis.models import (
    build_design,
    conditional_modes,
    design_of,
    fit_model,
    predicted_curve,
    prediction_problems,
    within_between,
)

REF_DIR = Path(__file__).parent / "reference"
NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
EXPOSURES = ["mileage_jump", "shoe_km", "rest_days_7d"]


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    """The committed demo panel (949 reports, 40 runners) with every 7th shoe_km missing, so
    the rows with mileage_jump known are not the rows a two-exposure model uses."""
    frame = pd.read_csv(REF_DIR / "demo.csv", dtype={"runner_id": "str"})
    return frame.assign(shoe_km=frame["shoe_km"].mask(np.arange(len(frame)) % 7 == 0))


def test_within_between_is_the_runner_mean_over_the_rows_given() -> None:
    frame = pd.DataFrame({"runner_id": ["b", "a", "a", "b", "a"],
                          "x": [4.0, 1.0, 2.0, 5.0, 6.0]})
    split = within_between(frame, ["x"])
    # a: mean (1 + 2 + 6) / 3 = 3; b: mean (4 + 5) / 2 = 4.5
    assert list(split.columns) == ["x_within", "x_between"]
    assert split["x_between"].tolist() == [4.5, 3.0, 3.0, 4.5, 3.0]
    assert split["x_within"].tolist() == [-0.5, -2.0, -1.0, 0.5, 3.0]
    assert split.index.equals(frame.index)


def test_within_between_refuses_missing_values() -> None:
    frame = pd.DataFrame({"runner_id": ["a", "a", "b"], "x": [1.0, np.nan, 2.0]})
    with pytest.raises(ModelSpecError, match="rows the model uses"):
        within_between(frame, ["x"])
    with pytest.raises(ModelSpecError, match="no column 'y'"):
        within_between(frame, ["y"])


def test_build_design_centres_with_within_between_on_its_modelling_rows(panel) -> None:
    """One definition: the design's <x>_within is within_between of the complete rows, and
    equals pandas' runner means there; over the rows with only x known it differs (the
    issue-11 double computation, when the panel carried its own <x>_within)."""
    design = build_design(panel, outcome="pain", exposures=["mileage_jump", "shoe_km"],
                          center="within-between")
    rows = panel.dropna(subset=["pain", "mileage_jump", "shoe_km"])
    assert len(design.frame) == len(rows) == 813  # 949 reports, 136 without shoe_km
    split = within_between(design.frame, ["mileage_jump", "shoe_km"])
    for name in split.columns:
        np.testing.assert_array_equal(design.frame[name], split[name])
        np.testing.assert_array_equal(design.X[:, design.x_names.index(name)], split[name])
    sorted_rows = rows.sort_values("runner_id", kind="stable")
    means = sorted_rows.groupby("runner_id")["mileage_jump"].transform("mean")
    np.testing.assert_allclose(design.frame["mileage_jump_between"], means, rtol=1e-12)
    np.testing.assert_allclose(design.frame["mileage_jump_within"],
                               sorted_rows["mileage_jump"] - means, atol=1e-12)
    # over every row with mileage_jump known (the former panel definition) it is another value
    wider = panel.groupby("runner_id")["mileage_jump"].transform("mean").loc[sorted_rows.index]
    assert np.abs(wider.to_numpy() - means.to_numpy()).max() > 1e-3


def test_build_design_keeps_the_raw_exposure_in_its_frame(panel) -> None:
    rows = panel.dropna(subset=EXPOSURES)
    design = build_design(rows, outcome="pain", exposures=EXPOSURES, center="grand",
                          covariates=["C(sex)"])
    order = rows.sort_values("runner_id", kind="stable")
    np.testing.assert_array_equal(design.frame["shoe_km"], order["shoe_km"])
    j = design.x_names.index("shoe_km")
    np.testing.assert_allclose(design.X[:, j], order["shoe_km"] - order["shoe_km"].mean(),
                               atol=1e-9)
    assert design.x_names == ["Intercept", *EXPOSURES, "C(sex)[T.M]"]
    np.testing.assert_array_equal(design.frame["C(sex)[T.M]"], order["sex"].eq("M"))


def test_a_grand_centred_curve_is_drawn_in_the_exposures_own_unit(panel) -> None:
    """Centring moves only the intercept: the predicted curve of a grand-centred fit is the
    uncentred fit's, at the same x (it used to be drawn over x - mean(x))."""
    rows = panel.dropna(subset=EXPOSURES)
    plain = predicted_curve(fit_model(rows, model="lmm", exposures=EXPOSURES), rows,
                            exposure="shoe_km")
    grand = predicted_curve(fit_model(rows, model="lmm", exposures=EXPOSURES,
                                      center="grand"), rows, exposure="shoe_km")
    np.testing.assert_allclose(grand["x"], plain["x"], rtol=1e-12)
    np.testing.assert_allclose(grand[["predicted", "ci_low", "ci_high"]],
                               plain[["predicted", "ci_low", "ci_high"]], atol=1e-6)
    assert grand["x"].min() > 0  # km, not km - mean


def test_a_within_between_fit_goes_through_every_design_rebuild(panel) -> None:
    """design_of, conditional_modes, predicted_curve, prediction_problems and the
    predicted-pain figure all rebuild the within-between design (the former report-side
    rebuild forgot ``center``)."""
    rows = panel.dropna(subset=EXPOSURES)
    result = fit_model(rows, model="lmm", exposures=EXPOSURES, center="within-between",
                       random_slopes=["mileage_jump"])
    design = design_of(result, rows)
    assert design.x_names == list(result.table["term"])
    assert design.z_names == ["Intercept", "mileage_jump_within"]
    beta = result.table.set_index("term").loc[design.x_names, "estimate"].to_numpy()
    modes = conditional_modes(rows, result)
    np.testing.assert_allclose(modes.per_report["fitted_marginal"], design.X @ beta,
                               rtol=1e-12)
    assert list(modes.per_runner.columns[1:3]) == ["Intercept", "mileage_jump_within"]
    curve = predicted_curve(result, rows, exposure="mileage_jump")
    # the within effect: slope of the curve is the <x>_within estimate
    slope = np.diff(curve["predicted"]) / np.diff(curve["x"])
    np.testing.assert_allclose(slope, result.table.set_index("term").loc[
        "mileage_jump_within", "estimate"], rtol=1e-9)
    assert prediction_problems(result, rows) == []
    ax = plots.predicted_pain(result, rows, exposure="mileage_jump")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), curve["predicted"].clip(0, 10))
    ax.figure.clf()


def test_notebook_02_splits_the_model_rows_with_the_one_function() -> None:
    """The exposures notebook no longer reads a within/between list from panel_meta: it
    calls analysis.models.within_between_spread, which splits the rows a model uses with
    within_between (checked by hand on a small panel)."""
    source = (NOTEBOOKS / "02_exposures.py").read_text()
    assert 'meta["within_between"]' not in source
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "within_between_spread"]
    assert calls
    from analysis.models import within_between_spread

    panel = pd.DataFrame({"runner_id": ["a", "a", "b", "b", "b"],
                          "pain": [1.0, 2.0, 3.0, np.nan, 4.0],
                          "x": [1.0, 3.0, 5.0, 9.0, 7.0], "y": [np.nan] * 4 + [1.0]})
    spread = within_between_spread(panel, ["x", "y"])
    # rows with pain and x: a (1, 3; mean 2), b (5, 7; mean 6): within -1, 1, -1, 1 ->
    # SD sqrt(4/3); between 2, 2, 6, 6 -> SD sqrt(16/3); share 4/3 / (4/3 + 16/3) = 0.2
    assert list(spread.index) == ["x"]  # y has one known value: left out
    assert spread.loc["x", ["reports", "runners"]].tolist() == [4, 2]
    assert spread.loc["x", "sd_within"] == pytest.approx(np.sqrt(4 / 3), rel=1e-12)
    assert spread.loc["x", "sd_between"] == pytest.approx(np.sqrt(16 / 3), rel=1e-12)
    assert spread.loc["x", "share_within"] == pytest.approx(0.2, rel=1e-12)
