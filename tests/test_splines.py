"""Natural-spline terms: the basis against R's splines::ns, spline LMM/GLMM against lme4.

Reference numbers: tests/reference/ns_basis.csv (ns_basis.R: ns(x, df) columns, knots and
predict() at new x inside and outside the boundary knots) and tests/reference/ns_models.csv
(ns_models.R: lmer/glmer ML fits with ns() terms on tests/reference/demo.csv). Both are
compared on every run; the R scripts are re-run live when Rscript is installed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rtools import requires_r

from analysis.effects import BASIS, reading_unit
from analysis.errors import ModelSpecError
from analysis.models import (
    ModelResult,
    build_design,
    design_of,
    fit_glmm,
    fit_lmm,
    likelihood_ratio_test,
)
from analysis.models.design import UNDEFINED_RATIO, parse_spline_spec
from analysis.models.nonlinear import exposure_response, spline_curve
from analysis.models.splines import natural_spline, spline_column_names

REF_DIR = Path(__file__).parent / "reference"

#: Basis columns vs R: both are double-precision evaluations of the same B-splines and
#: Householder reflections; measured worst 5.7e-15 (write.csv keeps 15 significant digits).
BASIS_TOL = 1e-10
#: ML log-likelihoods vs lme4 (the issue's criterion); measured 5.5e-12 (LMM), 1.5e-8 (GLMM).
LOGLIK_TOL = 1e-4
#: Fixed effects vs lme4 at its optimum (relative): measured 2e-9 (SEs 2.5e-8) for the LMM;
#: the GLMM's Laplace optimum is flat to about 1e-5 relative (measured 1.2e-5, SEs 1.5e-4).
LMM_FIXEF_RTOL = 1e-5
GLMM_FIXEF_RTOL = 1e-4


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    return pd.read_csv(REF_DIR / "demo.csv")


def _x_values(case: str, demo: pd.DataFrame) -> np.ndarray:
    if case == "ties":
        return np.array([0, 0, 0, 1, 1, 2, 3, 3, 5, 8, 8, 8, 13], dtype=float)
    return demo[case].to_numpy(dtype=float)


def _compare_basis(ref: pd.DataFrame, demo: pd.DataFrame) -> float:
    worst = 0.0
    for (case, df), rows in ref.groupby(["case", "df"]):
        basis = natural_spline(_x_values(case, demo), int(df))
        for kind in ("basis", "predict"):
            part = rows.loc[rows["kind"] == kind]
            x = part.loc[part["col"] == 1].sort_values("row")["x"].to_numpy()
            r_cols = part.pivot_table(index="row", columns="col", values="value").to_numpy()
            worst = max(worst, float(np.abs(basis.basis(x) - r_cols).max()))
        knots = rows.loc[rows["kind"] == "knot", "value"].to_numpy()
        np.testing.assert_allclose(basis.knots, knots, rtol=0, atol=BASIS_TOL)
        bounds = rows.loc[rows["kind"] == "boundary", "value"].to_numpy()
        np.testing.assert_allclose(basis.boundary, bounds, rtol=0, atol=BASIS_TOL)
    return worst


def test_columns_match_committed_r(demo):
    """Columns (not only their span), knots and predict() outside the range, as ns()."""
    ref = pd.read_csv(REF_DIR / "ns_basis.csv")
    assert set(ref["kind"]) == {"basis", "predict", "knot", "boundary"}
    assert _compare_basis(ref, demo) < BASIS_TOL


@requires_r("splines")
def test_columns_match_live_r(tmp_path, demo):
    subprocess.run(["Rscript", str(REF_DIR / "ns_basis.R"), str(tmp_path)], check=True,
                   capture_output=True, cwd=REF_DIR.parent.parent)
    live = pd.read_csv(tmp_path / "ns_basis.csv")
    assert _compare_basis(live, demo) < BASIS_TOL


def test_basis_is_linear_outside_the_boundary_and_nan_for_nan():
    x = np.linspace(0, 10, 41)
    basis = natural_spline(x, 4)
    out = basis.basis(np.array([-3.0, -2.0, -1.0, 11.0, 12.0, 13.0, np.nan]))
    np.testing.assert_allclose(np.diff(out[:3], 2, axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(np.diff(out[3:6], 2, axis=0), 0, atol=1e-12)
    assert np.isnan(out[6]).all()
    # natural: the second derivative is 0 at the boundary, so the linear pieces continue
    # the curve with its slope (first differences just inside and just outside agree)
    eps = 1e-6
    inner = basis.basis(np.array([10 - eps, 10.0]))
    outer = basis.basis(np.array([10.0, 10 + eps]))
    np.testing.assert_allclose(np.diff(inner, axis=0), np.diff(outer, axis=0), atol=1e-10)


def test_df_and_distinct_values_are_checked():
    with pytest.raises(ModelSpecError, match="df >= 1"):
        natural_spline([1.0, 2.0, 3.0], 0)
    with pytest.raises(ModelSpecError, match="distinct values"):
        natural_spline([1.0, 1.0, 2.0], 3)
    # 60 % of the values tied at 0: the 1/3 quantile knot would sit on the boundary
    with pytest.raises(ModelSpecError, match="60% of the values are tied"):
        natural_spline([0.0] * 6 + [1.0, 2.0, 3.0, 4.0], 3)


def _ref(model: str) -> pd.DataFrame:
    ref = pd.read_csv(REF_DIR / "ns_models.csv")
    return ref.loc[ref["model"] == model]


def _loglik(ref: pd.DataFrame) -> float:
    return float(ref.loc[ref["kind"] == "loglik", "estimate"].iloc[0])


def _assert_fixef(result, ref: pd.DataFrame, rtol: float) -> None:
    fixef = ref.loc[ref["kind"] == "fixef"].set_index("term")
    table = result.table.set_index("term")
    assert list(table.index) == list(fixef.index)
    np.testing.assert_allclose(table["estimate"], fixef["estimate"], rtol=rtol)
    np.testing.assert_allclose(table["std_error"], fixef["std_error"], rtol=10 * rtol)


@pytest.fixture(scope="module")
def lmm_ns3(demo):
    return fit_lmm(demo, exposures=["mileage_jump", "shoe_km"], splines={"mileage_jump": 3},
                   reml=False)


def test_spline_lmm_equals_lmer(demo, lmm_ns3):
    ref = _ref("lmm_ns3")
    assert lmm_ns3.loglik == pytest.approx(_loglik(ref), abs=LOGLIK_TOL)
    _assert_fixef(lmm_ns3, ref, LMM_FIXEF_RTOL)
    two = fit_lmm(demo, exposures=["mileage_jump", "shoe_km"],
                  splines={"mileage_jump": 5, "shoe_km": 2}, reml=False, nonlinearity=False)
    assert two.loglik == pytest.approx(_loglik(_ref("lmm_ns5")), abs=LOGLIK_TOL)
    _assert_fixef(two, _ref("lmm_ns5"), LMM_FIXEF_RTOL)


def test_nonlinearity_test_is_the_lr_of_the_two_lmer_fits(lmm_ns3):
    expected = 2 * (_loglik(_ref("lmm_ns3")) - _loglik(_ref("lmm_linear")))
    test = lmm_ns3.extra["nonlinearity"]["mileage_jump"]
    assert test["statistic"] == pytest.approx(expected, abs=2 * LOGLIK_TOL)
    assert test["df"] == 2
    assert test["method"] == "ML"
    assert test["loglik_linear"] == pytest.approx(_loglik(_ref("lmm_linear")), abs=LOGLIK_TOL)


def test_spline_glmm_equals_glmer(demo):
    res = fit_glmm(demo, exposures=["mileage_jump", "shoe_km"], splines={"mileage_jump": 3})
    ref = _ref("glmm_ns3")
    assert res.loglik == pytest.approx(_loglik(ref), abs=LOGLIK_TOL)
    _assert_fixef(res, ref, GLMM_FIXEF_RTOL)
    test = res.extra["nonlinearity"]["mileage_jump"]
    expected = 2 * (_loglik(ref) - _loglik(_ref("glmm_linear")))
    assert test["statistic"] == pytest.approx(expected, abs=2 * LOGLIK_TOL)
    curve = spline_curve(res, "mileage_jump")
    np.testing.assert_allclose(curve["odds_ratio"], np.exp(curve["estimate"]))


#: The live lmer fits move by less than 1e-8 in the log-likelihood between machines with the
#: same R (bobyqa at rhoend 1e-10 on a smooth profiled deviance): compared at LOGLIK_TOL.
@requires_r("lme4", "splines")
def test_spline_lmm_reference_live(tmp_path, lmm_ns3):
    subprocess.run(["Rscript", str(REF_DIR / "ns_models.R"), str(tmp_path), "lmm_ns3",
                    "lmm_linear"], check=True, capture_output=True,
                   cwd=REF_DIR.parent.parent)
    live = pd.read_csv(tmp_path / "ns_models.csv")
    for model in ("lmm_ns3", "lmm_linear"):
        assert _loglik(live.loc[live["model"] == model]) == pytest.approx(
            _loglik(_ref(model)), abs=LOGLIK_TOL)
    assert lmm_ns3.loglik == pytest.approx(_loglik(live.loc[live["model"] == "lmm_ns3"]),
                                           abs=LOGLIK_TOL)


def test_curve_is_zero_at_the_median_and_the_delta_method_by_hand(demo, lmm_ns3):
    ref_value = float(np.median(demo["mileage_jump"]))
    assert lmm_ns3.extra["spline_reference"]["mileage_jump"] == pytest.approx(ref_value)
    curve = exposure_response(lmm_ns3, exposure="mileage_jump", x=[ref_value, 0.3, -0.2])
    assert curve["estimate"].iloc[0] == pytest.approx(0, abs=1e-12)
    assert curve["std_error"].iloc[0] == pytest.approx(0, abs=1e-9)
    # by hand from the design: predicted difference with every other column fixed
    design = design_of(lmm_ns3, demo)
    names = spline_column_names("mileage_jump", 3)
    idx = [design.x_names.index(n) for n in names]
    beta = lmm_ns3.table.set_index("term").loc[names, "estimate"].to_numpy()
    cov = np.asarray(lmm_ns3.extra["vcov"])[np.ix_(idx, idx)]
    b = design.splines["mileage_jump"].basis(np.array([0.3, ref_value]))
    d = b[0] - b[1]
    assert curve["estimate"].iloc[1] == pytest.approx(d @ beta, rel=1e-12)
    assert curve["std_error"].iloc[1] == pytest.approx(np.sqrt(d @ cov @ d), rel=1e-12)
    assert curve.attrs["reference"] == ref_value


def test_a_one_df_spline_is_the_linear_term(demo):
    """ns(x, 1) spans the straight lines: same likelihood, and the curve is slope x (x - ref)
    with SE |x - ref| x SE(slope) from the linear fit (an independent computation)."""
    linear = fit_lmm(demo, exposures=["mileage_jump", "shoe_km"], reml=False)
    one = fit_lmm(demo, exposures=["mileage_jump", "shoe_km"], splines={"mileage_jump": 1},
                  reml=False, ddf="wald")
    assert one.loglik == pytest.approx(linear.loglik, abs=1e-8)
    assert one.extra["nonlinearity"]["mileage_jump"]["df"] == 0
    ref_value = one.extra["spline_reference"]["mileage_jump"]
    x = np.array([-0.3, 0.0, 0.4])
    curve = exposure_response(one, exposure="mileage_jump", x=x)
    slope = linear.term("mileage_jump")
    np.testing.assert_allclose(curve["estimate"], slope["estimate"] * (x - ref_value),
                               rtol=1e-6)
    np.testing.assert_allclose(curve["std_error"],
                               slope["std_error"] * np.abs(x - ref_value), rtol=1e-5)


def test_design_of_rebuilds_the_spline_columns(demo, lmm_ns3):
    design = design_of(lmm_ns3, demo)
    assert design.x_names[1:4] == spline_column_names("mileage_jump", 3)
    assert lmm_ns3.extra["spline_knots"]["mileage_jump"]["knots"] == list(
        design.splines["mileage_jump"].knots)


def test_spline_terms_read_off_the_curve(lmm_ns3):
    row = lmm_ns3.term("ns(mileage_jump, 3)1")
    assert row["step_label"] == BASIS.label
    assert reading_unit("ns(acwr_rolling, 3)2") == BASIS


def test_spline_requests_are_checked(demo):
    with pytest.raises(ModelSpecError, match="must also be one of the exposures"):
        build_design(demo, outcome="pain", exposures=["shoe_km"], splines={"mileage_jump": 3})
    with pytest.raises(ModelSpecError, match="center=None"):
        build_design(demo, outcome="pain", exposures=["mileage_jump"],
                     splines={"mileage_jump": 3}, center="grand")
    with pytest.raises(ModelSpecError, match="df must be"):
        build_design(demo, outcome="pain", exposures=["mileage_jump"],
                     splines={"mileage_jump": 2.5})
    assert parse_spline_spec("acwr_rolling:3") == ("acwr_rolling", 3)
    for bad in ("acwr_rolling", "acwr_rolling:x", ":3"):
        with pytest.raises(ModelSpecError, match="COLUMN:DF"):
            parse_spline_spec(bad)


def test_linear_and_spline_fits_are_nested_for_the_lr_test(demo, lmm_ns3):
    linear = fit_lmm(demo, exposures=["mileage_jump", "shoe_km"], reml=False)
    lrt = likelihood_ratio_test(linear, lmm_ns3)
    assert lrt["df"] == 2
    other = fit_lmm(demo, exposures=["rest_days_7d", "shoe_km"], reml=False)
    with pytest.raises(ModelSpecError, match="not nested"):
        likelihood_ratio_test(other, lmm_ns3)


def test_interaction_column_and_its_reading_unit(demo):
    design = build_design(demo, outcome="pain", exposures=["mileage_jump", "shoe_km"],
                          interactions=["mileage_jump:shoe_km"])
    assert design.x_names[-1] == "mileage_jump:shoe_km"
    np.testing.assert_allclose(design.X[:, -1], design.X[:, 1] * design.X[:, 2])
    unit = reading_unit("km_7d:km_28d")
    assert unit.step == 100.0
    assert unit.label == "per +10 km in the week x +10 km in four weeks"
    with pytest.raises(ModelSpecError, match="linear exposure or numeric covariate"):
        build_design(demo, outcome="pain", exposures=["mileage_jump"],
                     interactions=["mileage_jump:age"])


def test_rows_lost_to_undefined_ratios_are_counted():
    rng = np.random.default_rng(3)
    n = 60
    km_28d = rng.uniform(20, 120, n)
    km_28d[:7] = 0.0  # return-to-running weeks: 0 km over four weeks
    km_7d = km_28d * rng.uniform(0.1, 0.4, n)
    acwr = np.where(km_28d > 0, km_7d / np.where(km_28d > 0, km_28d / 4, 1), np.nan)
    acwr[7:10] = np.nan  # unknown for another reason (history before the first run)
    panel = pd.DataFrame({"runner_id": np.repeat(["a", "b", "c", "d"], n // 4),
                          "pain": rng.normal(2, 1, n), "km_7d": km_7d, "km_28d": km_28d,
                          "acwr_rolling": acwr})
    design = build_design(panel, outcome="pain", exposures=["acwr_rolling"])
    assert design.dropped == {UNDEFINED_RATIO: 7, "missing acwr_rolling": 3}
    res = fit_lmm(panel, exposures=["acwr_rolling"])
    assert any(UNDEFINED_RATIO + ": 7" in w for w in res.warnings)


def test_cli_spline_option(tmp_path, demo):
    from typer.testing import CliRunner

    from analysis.cli import app

    panel = demo.assign(cohort="a")
    panel.to_parquet(tmp_path / "panel.parquet")
    out = tmp_path / "fit.json"
    args = ["fit", str(tmp_path / "panel.parquet"), "--out", str(out), "--exposures",
            "mileage_jump,shoe_km", "--method", "ml"]
    done = CliRunner().invoke(app, [*args, "--model", "lmm", "--spline", "mileage_jump:3"])
    assert done.exit_code == 0, done.output
    fitted = json.loads(out.read_text())
    assert fitted["loglik"] == pytest.approx(_loglik(_ref("lmm_ns3")), abs=LOGLIK_TOL)
    assert fitted["extra"]["splines"] == {"mileage_jump": 3}
    assert fitted["extra"]["nonlinearity"]["mileage_jump"]["df"] == 2
    # the saved result still draws its curve, with any reference
    restored = ModelResult.from_dict(fitted)
    pd.testing.assert_frame_equal(spline_curve(restored, "mileage_jump"),
                                  spline_curve(fit_lmm(demo, exposures=["mileage_jump",
                                                                        "shoe_km"],
                                                       splines={"mileage_jump": 3},
                                                       reml=False), "mileage_jump"))
    at_zero = exposure_response(restored, exposure="mileage_jump", x=[0.0], reference=0.0)
    assert at_zero["estimate"].iloc[0] == 0.0
    bad = CliRunner().invoke(app, [*args, "--model", "lmm", "--spline", "mileage_jump"])
    assert bad.exit_code == 2
    assert "COLUMN:DF" in bad.output
    gee = CliRunner().invoke(app, [*args[:-2], "--model", "gee", "--spline", "mileage_jump:3"])
    assert gee.exit_code == 2
    assert "does not apply to --model gee" in gee.output


def test_exposure_response_figure_draws_the_curve_band_and_rug(demo, lmm_ns3):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.plots_nonlinear import exposure_response_plot

    curve = spline_curve(lmm_ns3, "mileage_jump")
    ax = exposure_response_plot(curve, values=demo["mileage_jump"], xlabel="jump (fraction)")
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_ydata(), curve["estimate"])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(curve["ci_low"].min())
    assert band.max() == pytest.approx(curve["ci_high"].max())
    rug = next(ln for ln in ax.lines if ln.get_marker() == "|")
    assert len(rug.get_xdata()) == len(demo)
    plt.close(ax.figure)


def test_return_to_running_weeks_through_the_build():
    """Two runners stop for 6 weeks: the build's acwr_rolling is NaN on the reports whose
    four-week window is 0 km; the model's note counts them, and acute + chronic terms keep
    those reports (both are 0 km there, not undefined)."""
    from analysis.exposures import build_panel

    days = pd.date_range("2024-01-01", "2024-04-30")
    run_days = days[(days < "2024-02-16") | (days >= "2024-04-01")]
    runs = pd.concat([pd.DataFrame({"runner_id": r, "date": run_days, "distance_km": 5.0 + i})
                      for i, r in enumerate("ab")], ignore_index=True)
    runners = pd.DataFrame({"runner_id": ["a", "b"], "cohort": "x"})
    reports = days[::7][1:]
    pain = pd.concat([pd.DataFrame({"runner_id": r, "date": reports,
                                    "pain": (np.arange(len(reports)) % 4 + i).astype(float)})
                      for i, r in enumerate("ab")], ignore_index=True)
    panel = build_panel(runs, runners, pain).panel
    zero_month = panel["km_28d"] == 0
    assert zero_month.sum() == 4
    assert panel.loc[zero_month, "acwr_rolling"].isna().all()
    ratio = build_design(panel, outcome="pain", exposures=["acwr_rolling"])
    assert ratio.dropped[UNDEFINED_RATIO] == 4
    separate = build_design(panel, outcome="pain", exposures=["km_7d", "km_28d"])
    assert UNDEFINED_RATIO not in separate.dropped
    assert len(separate.frame) == len(ratio.frame) + 4
