"""Reading units (analysis.effects) and the honest status of a ModelResult (issue 10, 2 and 9).

The expected values are written out by hand (0.10 x an estimate, exp of it); nothing here
is computed by the functions under test.
"""

from __future__ import annotations

import dataclasses
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import effects, plots, reports
from analysis.models import (
    STATUS_OK,
    STATUS_WARNING,
    ModelResult,
    fit_model,
    predicted_curve,
    prediction_problems,
)
from analysis.power import simulate_panel

EXPOSURES = ["mileage_jump", "shoe_km", "rest_days_7d"]


def test_suffixes_map_to_their_base_exposure():
    assert effects.base_exposure("mileage_jump_within") == "mileage_jump"
    assert effects.base_exposure("mileage_jump_between") == "mileage_jump"
    assert effects.base_exposure("km_7d_lag2w") == "km_7d"
    assert effects.base_exposure("km_7d_lag1w_within") == "km_7d"
    assert effects.reading_unit("shoe_km_between").label == "per +100 km on the shoe"
    assert effects.reading_unit("age") == effects.PER_UNIT


def test_reading_unit_columns_by_hand_and_idempotent():
    table = pd.DataFrame({"term": ["Intercept", "mileage_jump_within", "shoe_km", "age"],
                          "estimate": [2.0, 0.9, 0.002, 0.03],
                          "ci_low": [1.0, 0.5, -0.001, 0.01],
                          "ci_high": [3.0, 1.3, 0.005, 0.05]})
    out = effects.add_reading_units(table)
    assert list(out.columns[:4]) == ["term", "estimate", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(out[table.columns], table)  # per-unit values unchanged
    assert out["step"].iloc[1:].tolist() == [0.10, 100.0, 1.0]
    assert np.isnan(out["step"].iloc[0]) and pd.isna(out["step_label"].iloc[0])
    assert out["step_label"].iloc[1:].tolist() == ["per +10 % week-over-week mileage",
                                                   "per +100 km on the shoe", "per unit"]
    np.testing.assert_allclose(out["estimate_step"].iloc[1:], [0.09, 0.2, 0.03], rtol=1e-12)
    np.testing.assert_allclose(out["ci_low_step"].iloc[1:], [0.05, -0.1, 0.01], rtol=1e-12)
    np.testing.assert_allclose(out["ci_high_step"].iloc[1:], [0.13, 0.5, 0.05], rtol=1e-12)
    assert "odds_ratio_step" not in out
    pd.testing.assert_frame_equal(effects.add_reading_units(out), out)

    odds = effects.add_reading_units(table.assign(odds_ratio=np.exp(table["estimate"])))
    np.testing.assert_allclose(odds["odds_ratio_step"].iloc[1:],
                               [math.exp(0.09), math.exp(0.2), math.exp(0.03)], rtol=1e-12)
    np.testing.assert_allclose(odds["or_ci_high_step"].iloc[1], math.exp(0.13), rtol=1e-12)


def test_per_unit_effects_invert_the_printed_step():
    assert effects.per_unit_effects({"mileage_jump": 0.09}) == pytest.approx(
        {"mileage_jump": 0.9})
    assert effects.per_unit_effects({"shoe_km": 1.25}, odds=True) == pytest.approx(
        {"shoe_km": math.log(1.25) / 100})
    back = effects.step_effects(effects.per_unit_effects({"km_7d": 1.3}, odds=True),
                                odds=True)
    assert back == pytest.approx({"km_7d": 1.3})
    with pytest.raises(ValueError, match="positive"):
        effects.per_unit_effects({"shoe_km": -1.0}, odds=True)


def test_categorical_dummies_are_read_vs_the_reference_level():
    """A dummy (0/1) of ``C(sex)`` has step 1 and no "per unit": its estimate is the level
    against the reference level (review D8; before, "OR ... per unit")."""
    assert effects.reading_unit("C(sex)[T.M]") == effects.CATEGORICAL
    assert effects.reading_unit("C(cohort)[T.recreational]").label == "vs the reference level"
    assert effects.is_categorical_term("C(sex)[T.M]") and not effects.is_categorical_term("age")
    assert effects.reading_unit("age") == effects.PER_UNIT  # a numeric covariate is unchanged
    table = pd.DataFrame({"term": ["Intercept", "C(sex)[T.M]", "age"],
                          "estimate": [-1.0, -0.4, 0.02], "ci_low": [-2.0, -0.9, 0.01],
                          "ci_high": [0.0, 0.1, 0.03], "odds_ratio": [0.37, 0.67, 1.02]})
    out = effects.add_reading_units(table).set_index("term")
    assert out.loc["C(sex)[T.M]", "step"] == 1.0
    assert out.loc["C(sex)[T.M]", "step_label"] == "vs the reference level"
    assert out.loc["C(sex)[T.M]", "estimate_step"] == -0.4  # x 1: the dummy's own estimate
    assert out.loc["C(sex)[T.M]", "odds_ratio_step"] == pytest.approx(math.exp(-0.4),
                                                                       rel=1e-12)
    assert out.loc["C(sex)[T.M]", "or_ci_high_step"] == pytest.approx(math.exp(0.1), rel=1e-12)
    assert out.loc["age", "step_label"] == "per unit"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("odds", [False, True])
def test_per_unit_effects_reject_non_finite_values(value, odds):
    """nan/inf are no effect a simulation can draw (review D7: nan gave "power 0.00")."""
    with pytest.raises(ValueError, match="finite"):
        effects.per_unit_effects({"mileage_jump": value}, odds=odds)


def test_reports_effects_table_reads_the_registry():
    table = pd.DataFrame({"term": ["Intercept", "mileage_jump"], "estimate": [2.0, 0.5],
                          "ci_low": [1.0, 0.3], "ci_high": [3.0, 0.7], "p_value": [0, 0.01]})
    out = reports.effects_table(table)
    assert list(out.columns) == ["term", "step_label", "estimate", "ci_low", "ci_high",
                                 "p_value"]
    assert list(out["term"]) == ["mileage_jump"]
    assert out.iloc[0]["ci_low"] == pytest.approx(0.03, rel=1e-12)
    assert out.iloc[0]["estimate"] == pytest.approx(0.05, rel=1e-12)
    assert out.iloc[0]["step_label"] == "per +10 % week-over-week mileage"
    assert not hasattr(reports, "EFFECT_STEPS")  # one definition: analysis.effects


@pytest.fixture(scope="module")
def fitted() -> tuple[pd.DataFrame, ModelResult]:
    panel, _ = simulate_panel(runners=12, weeks=8, seed=5)
    return panel, fit_model(panel, model="lmm", exposures=EXPOSURES)


def test_model_tables_carry_both_units_and_round_trip(fitted):
    _, result = fitted
    jump = result.term("mileage_jump")
    assert jump["estimate_step"] == pytest.approx(0.10 * jump["estimate"], rel=1e-12)
    assert jump["ci_high_step"] == pytest.approx(0.10 * jump["ci_high"], rel=1e-12)
    d = result.to_dict()
    assert d["status"] == result.status and d["problems"] == result.problems
    back = ModelResult.from_dict(d)
    pd.testing.assert_frame_equal(back.table, result.table)
    assert back.problems == result.problems
    old = {k: v for k, v in d.items() if k not in ("problems", "status")}
    old["table"] = [{k: v for k, v in row.items() if k not in effects.STEP_COLUMNS}
                    for row in d["table"]]
    restored = ModelResult.from_dict(old)  # a dict written before these columns existed
    pd.testing.assert_frame_equal(restored.table, result.table)


def test_status_follows_convergence_singularity_and_boundary(fitted):
    _, result = fitted
    clean = dataclasses.replace(result, converged=True, extra={**result.extra,
                                                               "singular": False},
                                problems=[])
    assert clean.status == STATUS_OK and clean.problems == []
    stuck = dataclasses.replace(clean, converged=False)
    assert stuck.status == STATUS_WARNING and stuck.problems == ["not converged"]
    singular = dataclasses.replace(clean, extra={**clean.extra, "singular": True})
    assert singular.problems == ["singular fit"]
    vc = clean.variance_components.copy()
    runner_sd = float(vc.loc[vc["group"] != "Residual", "sdcor"].iloc[0])
    vc.loc[vc["group"] == "Residual", ["vcov", "sdcor"]] = [(runner_sd * 1e-3) ** 2,
                                                            runner_sd * 1e-3]
    boundary = dataclasses.replace(clean, variance_components=vc)
    assert boundary.problems[0].startswith("boundary estimate: residual variance near 0")
    assert dataclasses.replace(stuck, converged=False).problems == ["not converged"]  # once
    assert stuck.with_problems(["x", "not converged"]).problems == ["not converged", "x"]


def test_predictions_outside_0_10_are_flagged_and_clipped(fitted):
    panel, result = fitted
    assert prediction_problems(result, panel) == []
    # the same fit moved down by 6 NRS points: a curve that runs below 0
    table = result.table.copy()
    table.loc[table["term"] == "Intercept", "estimate"] -= 6.0
    low = dataclasses.replace(result, table=table)
    curve = predicted_curve(low, panel, exposure="mileage_jump")
    reference = predicted_curve(result, panel, exposure="mileage_jump")
    np.testing.assert_allclose(curve["predicted"], reference["predicted"] - 6.0, rtol=1e-12)
    assert curve["predicted"].min() < 0
    problems = prediction_problems(low, panel)
    assert problems and all(p.startswith("predictions outside 0-10 (") for p in problems)
    assert f"{curve['predicted'].min():.1f}" in next(p for p in problems
                                                    if "mileage_jump" in p)
    ax = plots.predicted_pain(low, panel, exposure="mileage_jump")
    line = ax.get_lines()[0].get_ydata()
    assert line.min() == 0.0  # clipped, not drawn below the scale
    np.testing.assert_allclose(line, np.clip(curve["predicted"], 0, 10))
    notes = [t.get_text() for t in ax.texts]
    assert any("outside 0-10: clipped" in n for n in notes), notes
    plt.close(ax.figure)


def test_the_columns_shown_per_step_and_the_null_are_chosen_in_one_place() -> None:
    """Review: the odds-or-NRS choice of the per-step columns (and the null line) was written
    out in the notebook table, the pooled index headline, the forest plots, the non-linear
    table, the sensitivity table and the CLI. Now effects.step_value_columns and
    effects.null_effect: no other module spells the tuples or the null literals."""
    import re
    from pathlib import Path

    assert effects.step_value_columns(odds=True) == effects.ODDS_STEP_COLUMNS
    assert effects.step_value_columns(odds=False) == ("estimate_step", "ci_low_step",
                                                      "ci_high_step")
    assert set(effects.step_value_columns(odds=False)) | set(
        effects.ODDS_STEP_COLUMNS) <= set(effects.add_reading_units(pd.DataFrame({
            "term": ["km_7d"], "estimate": [0.1], "ci_low": [0.0], "ci_high": [0.2]}),
            odds=True).columns)
    assert (effects.null_effect(odds=True), effects.null_effect(odds=False)) == (1.0, 0.0)
    # the package's modules (a notebook may name the columns of a model it fitted itself)
    package = Path(effects.__file__).parent
    sources = [p for p in package.rglob("*.py")
               if p.name != "effects.py" or p.parent.name == "reports"]
    assert len(sources) >= 40
    tuple_text = re.compile(r"\"(estimate|odds_ratio)_step\",\s*\"(ci|or_ci)_low_step\"")
    null_text = re.compile(r"1\.0 if odds else 0\.0|\(1\.0 if \w+ else 0\.0\)")
    for path in sources:
        text = path.read_text()
        assert not tuple_text.search(text), path.name
        assert not null_text.search(text), path.name
