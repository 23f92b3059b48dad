"""analysis.models.modes and the one design rebuild, analysis.models.design_of.

References: statsmodels MixedLM's own random effects and fitted values, each from its own
REML fit (an independent implementation of the BLUP).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from report_study import make_study

import analysis
from analysis.errors import ModelSpecError
from analysis.models import conditional_modes, design_of, fit_model, predicted_curve
from analysis.pipeline import build
from analysis.simulate import simulate_dataset, write_dataset

EXPOSURES = ["mileage_jump", "shoe_km", "rest_days_7d"]
#: BLUPs of two independent REML fits (different optimizers, tolerance 1e-8 on theta) agree
#: to about 1e-6 on these panels; 1e-4 NRS points leaves room and still catches a wrong
#: formula (a missing sigma^2 term moves them by > 1e-2).
BLUP_ATOL = 1e-4


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("modes")
    write_dataset(simulate_dataset(runners_per_cohort=14, weeks=12, cohorts=1, seed=5),
                  root / "raw")
    build(root / "raw", root / "processed")
    return pd.read_parquet(root / "processed" / "panel.parquet").dropna(subset=EXPOSURES)


@pytest.fixture(scope="module")
def study_panel(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The report study's panel without its no-pain cohort (12 runners, 8 weeks)."""
    study = make_study(tmp_path_factory.mktemp("modes-study"))
    panel = pd.read_parquet(study.processed / "panel.parquet").dropna(subset=EXPOSURES)
    return panel[panel["cohort"] != study.painless]


def test_conditional_modes_match_statsmodels(study_panel: pd.DataFrame) -> None:
    panel = study_panel
    result = fit_model(panel, model="lmm", exposures=EXPOSURES)
    modes = conditional_modes(panel, result)
    fit = smf.mixedlm("pain ~ mileage_jump + shoe_km + rest_days_7d", panel,
                      groups=panel["runner_id"]).fit(reml=True, method=["lbfgs"])
    reference = pd.Series({k: v.iloc[0] for k, v in fit.random_effects.items()})
    ours = modes.per_runner.set_index("runner_id")["Intercept"]
    np.testing.assert_allclose(ours.loc[reference.index], reference, atol=BLUP_ATOL)
    by_row = modes.per_report["fitted"].to_numpy()
    reference_fitted = fit.fittedvalues.loc[panel.sort_values("runner_id",
                                                              kind="stable").index]
    np.testing.assert_allclose(by_row, reference_fitted.to_numpy(), atol=BLUP_ATOL)
    assert (modes.per_runner["Intercept_se"] > 0).all()


def test_conditional_modes_with_a_random_slope_match_statsmodels(panel: pd.DataFrame) -> None:
    result = fit_model(panel, model="lmm", exposures=EXPOSURES, random_slopes=["mileage_jump"])
    modes = conditional_modes(panel, result)
    fit = smf.mixedlm("pain ~ mileage_jump + shoe_km + rest_days_7d", panel,
                      groups=panel["runner_id"], re_formula="~mileage_jump").fit(
        reml=True, method=["lbfgs"])
    reference = pd.DataFrame(fit.random_effects).T.rename(columns={"Group": "Intercept"})
    ours = modes.per_runner.set_index("runner_id").loc[reference.index]
    assert list(modes.per_runner.columns) == ["runner_id", "Intercept", "mileage_jump",
                                              "Intercept_se", "mileage_jump_se"]
    np.testing.assert_allclose(ours["Intercept"], reference["Intercept"], atol=BLUP_ATOL)
    np.testing.assert_allclose(ours["mileage_jump"], reference["mileage_jump"], atol=BLUP_ATOL)


def test_within_between_fit_gets_its_modes_and_curve(study_panel: pd.DataFrame) -> None:
    """The former report-side rebuild forgot ``center`` and raised on a within-between fit
    (its table has ``<x>_within``/``<x>_between``, the rebuilt design had ``<x>``)."""
    panel = study_panel
    result = fit_model(panel, model="lmm", exposures=EXPOSURES, center="within-between")
    design = design_of(result, panel)
    assert design.x_names == list(result.table["term"])
    modes = conditional_modes(panel, result)
    # reference: statsmodels on within/between columns computed here with pandas
    means = panel.groupby("runner_id")[EXPOSURES].transform("mean")
    split = panel.assign(**{f"{c}_between": means[c] for c in EXPOSURES},
                         **{f"{c}_within": panel[c] - means[c] for c in EXPOSURES})
    terms = " + ".join(f"{c}_within + {c}_between" for c in EXPOSURES)
    fit = smf.mixedlm(f"pain ~ {terms}", split, groups=split["runner_id"]).fit(
        reml=True, method=["lbfgs"])
    reference = pd.Series({k: v.iloc[0] for k, v in fit.random_effects.items()})
    ours = modes.per_runner.set_index("runner_id")["Intercept"]
    np.testing.assert_allclose(ours.loc[reference.index], reference, atol=BLUP_ATOL)
    curve = predicted_curve(result, panel, exposure="mileage_jump")
    assert np.isfinite(curve[["predicted", "ci_low", "ci_high"]].to_numpy()).all()


def test_conditional_modes_refuse_models_they_do_not_cover(panel: pd.DataFrame) -> None:
    binary = panel.assign(pain_any=panel["pain"] >= panel["pain"].median())
    glmm = fit_model(binary, model="glmm", outcome="pain_any", exposures=["mileage_jump"])
    with pytest.raises(ModelSpecError, match="linear mixed models"):
        conditional_modes(binary, glmm)


def test_one_design_rebuild_from_a_result() -> None:
    """Outside the fitters, a design is rebuilt from a result only by design_of."""
    src = Path(analysis.__file__).parent
    fitters = {"models/design.py", "models/lmm.py", "models/glmm.py", "models/gee.py"}
    callers = set()
    for path in src.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "build_design":
                callers.add(path.relative_to(src).as_posix())
    assert callers <= fitters, callers - fitters
