"""Mixed models: known truth, lme4 reference numbers, identifiability errors, round trips."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rtools import requires_r
from scipy import stats

from analysis.errors import ModelSpecError
from analysis.models import (
    ModelResult,
    build_design,
    fit_glmm,
    fit_lmm,
    fit_lmm_design,
    fit_model,
    gls_covariance,
    likelihood_ratio_test,
)
from analysis.power import redraw_lmm_outcome, simulate_panel

#: True effects of the numpy panel below (pain NRS per unit of exposure).
TRUE_LMM = {"Intercept": 2.0, "mileage_jump": 1.5, "shoe_km": 0.004, "rest_days_7d": -0.3}
TRUE_SD_INTERCEPT, TRUE_SD_SLOPE, TRUE_SD_RESID = 1.0, 0.8, 1.2


def numpy_panel(*, n_runners: int = 60, n_reports: int = 20, seed: int = 1,
                slope_sd: float = TRUE_SD_SLOPE) -> pd.DataFrame:
    """A small panel with known effects, a random intercept and a random slope on the jump."""
    rng = np.random.default_rng(seed)
    rid = np.repeat(np.arange(n_runners), n_reports)
    n = rid.size
    jump = rng.normal(0.1, 0.25, n)
    shoe = rng.uniform(0, 800, n)
    rest = rng.integers(0, 5, n).astype(float)
    b0 = rng.normal(0, TRUE_SD_INTERCEPT, n_runners)[rid]
    b1 = rng.normal(0, slope_sd, n_runners)[rid]
    pain = (TRUE_LMM["Intercept"] + (TRUE_LMM["mileage_jump"] + b1) * jump
            + TRUE_LMM["shoe_km"] * shoe + TRUE_LMM["rest_days_7d"] * rest + b0
            + rng.normal(0, TRUE_SD_RESID, n))
    sex = np.where(np.arange(n_runners) % 2 == 0, "F", "M")[rid]
    return pd.DataFrame({
        "runner_id": pd.Series([f"r{i:03d}" for i in rid], dtype="str"),
        "cohort": "numpy",
        "date": pd.Timestamp("2026-01-05") + pd.to_timedelta(np.tile(np.arange(n_reports),
                                                                      n_runners) * 7, "D"),
        "pain": pain, "pain_any": pain >= 3,
        "mileage_jump": jump, "shoe_km": shoe, "rest_days_7d": rest,
        "sex": sex, "age": (30 + rid % 25).astype(float),
    })


EXPOSURES = ["mileage_jump", "shoe_km", "rest_days_7d"]


def test_lmm_recovers_truth_within_ci():
    res = fit_lmm(numpy_panel(), exposures=EXPOSURES, random_slopes=["mileage_jump"])
    assert res.converged
    for term, truth in TRUE_LMM.items():
        row = res.term(term)
        assert row.ci_low < truth < row.ci_high, (term, row.to_dict())
    vc = res.variance_components
    sd0 = vc.loc[(vc["var1"] == "Intercept") & vc["var2"].isna(), "sdcor"].item()
    assert sd0 == pytest.approx(TRUE_SD_INTERCEPT, rel=0.35)
    assert res.variance_components.iloc[-1]["sdcor"] == pytest.approx(TRUE_SD_RESID, rel=0.1)


def test_gls_se_equals_dense_formula():
    """The Woodbury per-runner computation equals the dense sigma^2 (X'V^-1X)^-1."""
    panel = numpy_panel(n_runners=12, n_reports=6)
    d = build_design(panel, outcome="pain", exposures=EXPOSURES, random_slopes=["mileage_jump"])
    G = np.array([[0.9, 0.2], [0.2, 0.5]])
    s2 = 1.3
    V = np.zeros((len(d.y), len(d.y)))
    for g in range(12):
        idx = d.groups == g
        Zi = d.Z[idx]
        V[np.ix_(idx, idx)] = Zi @ G @ Zi.T + s2 * np.eye(idx.sum())
    dense = np.linalg.inv(d.X.T @ np.linalg.solve(V, d.X))
    np.testing.assert_allclose(gls_covariance(d, G=G, sigma2=s2), dense, rtol=1e-10)
    # singular G (slope variance zero) is allowed
    G0 = np.array([[0.9, 0.0], [0.0, 0.0]])
    V0 = V.copy()
    for g in range(12):
        idx = d.groups == g
        Zi = d.Z[idx]
        V0[np.ix_(idx, idx)] = Zi @ G0 @ Zi.T + s2 * np.eye(idx.sum())
    dense0 = np.linalg.inv(d.X.T @ np.linalg.solve(V0, d.X))
    np.testing.assert_allclose(gls_covariance(d, G=G0, sigma2=s2), dense0, rtol=1e-10)


def test_dropped_rows_counted_by_reason():
    panel = numpy_panel(n_runners=20, n_reports=10)
    panel.loc[[0, 1, 2], "mileage_jump"] = np.nan
    panel.loc[[2, 3], "shoe_km"] = np.nan  # row 2 already counted under mileage_jump
    res = fit_lmm(panel, exposures=EXPOSURES)
    assert res.dropped == {"missing mileage_jump": 3, "missing shoe_km": 1}
    assert res.n_obs == 200 - 4
    assert res.n_runners == 20


@pytest.mark.parametrize("model", ["lmm", "glmm", "gee"])
def test_dropped_rows_reported_in_warnings_by_every_model(model):
    """Every model reports the same researcher-facing note for the rows it dropped."""
    panel = numpy_panel(n_runners=20, n_reports=10)
    panel.loc[[0, 1, 2], "mileage_jump"] = np.nan
    panel.loc[[2, 3], "shoe_km"] = np.nan
    outcome = "pain" if model == "lmm" else "pain_any"
    res = fit_model(panel, model=model, exposures=EXPOSURES, outcome=outcome)
    assert [w for w in res.warnings if w.startswith("rows dropped")] == [
        "rows dropped: missing mileage_jump: 3, missing shoe_km: 1"]
    complete = fit_model(panel.dropna(subset=EXPOSURES), model=model, exposures=EXPOSURES,
                         outcome=outcome)
    assert not any(w.startswith("rows dropped") for w in complete.warnings)


def test_constant_exposure_is_a_spec_error():
    panel = numpy_panel(n_runners=20, n_reports=10).assign(rest_days_7d=2.0)
    with pytest.raises(ModelSpecError, match=r"rest_days_7d.*constant"):
        fit_lmm(panel, exposures=EXPOSURES)


def test_too_few_runners_for_slope_is_a_spec_error():
    panel = numpy_panel(n_runners=6, n_reports=10)
    with pytest.raises(ModelSpecError, match="random slope"):
        fit_lmm(panel, exposures=EXPOSURES, random_slopes=["mileage_jump"])


def test_categorical_covariate_and_round_trip():
    res = fit_model(numpy_panel(), model="lmm", exposures=EXPOSURES,
                    covariates=["sex", "age"])
    assert "C(sex)[T.M]" in set(res.table["term"])
    back = ModelResult.from_dict(res.to_dict())
    pd.testing.assert_frame_equal(back.table, res.table)
    assert back.icc == pytest.approx(res.icc)
    assert back.dropped == res.dropped


@pytest.mark.parametrize("ddf", ["wald", "satterthwaite"])
def test_result_json_is_standard_and_round_trips(ddf):
    """summary.json and `kneeload fit` output are strict JSON: a z test's infinite df is None."""
    import json

    res = fit_lmm(numpy_panel(n_runners=20, n_reports=8), exposures=EXPOSURES, ddf=ddf)
    text = json.dumps(res.to_dict(), allow_nan=False)  # raises on NaN / Infinity
    back = ModelResult.from_dict(json.loads(text))
    pd.testing.assert_frame_equal(back.table, res.table, check_dtype=False)
    assert np.isinf(back.table["df"]).all() == (ddf == "wald")


# --- lme4 reference (tests/reference/lme4_reference.R on the committed fixtures) ------------

REF_DIR = Path(__file__).resolve().parent / "reference"
LME4_TERMS = {"(Intercept)": "Intercept", "sexM": "C(sex)[T.M]"}
LMM_SPECS = {
    "lmm_ri": {},
    "lmm_rs": {"random_slopes": ["mileage_jump"]},
    "lmm_ri_ml": {"reml": False},
    "lmm_rs_ml": {"random_slopes": ["mileage_jump"], "reml": False},
    "lmm_cov": {"covariates": ["sex", "age"]},
}


def load_fixture(cohort: str) -> pd.DataFrame:
    return pd.read_csv(REF_DIR / f"{cohort}.csv", dtype={"runner_id": "str"})


def lme4_numbers(ref: pd.DataFrame, cohort: str, model: str, kind: str) -> pd.DataFrame:
    rows = ref.loc[(ref["cohort"] == cohort) & (ref["model"] == model) & (ref["kind"] == kind)]
    return rows.assign(term=rows["term"].replace(LME4_TERMS).replace({"Residual": None}))


def compare_lmm_with_lme4(ref: pd.DataFrame, cohort: str, model: str,
                          engine: str = "profiled", *, se_rtol: float = 1e-3) -> None:
    res = fit_lmm(load_fixture(cohort), exposures=EXPOSURES, engine=engine, **LMM_SPECS[model])
    fe = lme4_numbers(ref, cohort, model, "fixef").set_index("term")
    ours = res.table.set_index("term").loc[fe.index]
    # fixed effects and standard errors within 1e-3 relative (issue 5)
    np.testing.assert_allclose(ours["estimate"], fe["estimate"], rtol=1e-3)
    np.testing.assert_allclose(ours["std_error"], fe["std_error"], rtol=se_rtol)
    # variance components within 1 % (variances, covariances; residual last)
    vc = lme4_numbers(ref, cohort, model, "varcorr")
    np.testing.assert_allclose(res.variance_components["vcov"], vc["estimate"], rtol=0.01)
    fit = lme4_numbers(ref, cohort, model, "fit").set_index("term")["estimate"]
    assert res.n_obs == fit["nobs"]
    assert res.loglik == pytest.approx(fit["loglik"], abs=1e-3)
    assert res.extra["singular"] == bool(fit["singular"])


@pytest.fixture(scope="module")
def lme4_ref() -> pd.DataFrame:
    return pd.read_csv(REF_DIR / "lme4_reference.csv")


@pytest.mark.parametrize("cohort", ["demo", "sparse"])
@pytest.mark.parametrize("model", list(LMM_SPECS))
def test_lmm_matches_lme4(lme4_ref, cohort, model):
    compare_lmm_with_lme4(lme4_ref, cohort, model)


@pytest.mark.parametrize("cohort", ["demo", "sparse"])
@pytest.mark.parametrize("model", ["lmm_ri", "lmm_rs"])
def test_statsmodels_engine_close_to_lme4(lme4_ref, cohort, model):
    """statsmodels' MixedLM stops short of the optimum on the singular sparse slope model."""
    compare_lmm_with_lme4(lme4_ref, cohort, model, engine="statsmodels")


# --- binomial models ------------------------------------------------------------------------


@pytest.mark.parametrize("cohort", ["demo", "sparse"])
def test_glmm_matches_glmer(lme4_ref, cohort):
    res = fit_glmm(load_fixture(cohort), exposures=EXPOSURES)
    fe = lme4_numbers(lme4_ref, cohort, "glmm_ri", "fixef").set_index("term")
    ours = res.table.set_index("term").loc[fe.index]
    # fixed effects within 1 % of glmer (issue 5); standard errors within 2 %
    np.testing.assert_allclose(ours["estimate"], fe["estimate"], rtol=0.01)
    np.testing.assert_allclose(ours["std_error"], fe["std_error"], rtol=0.02)
    vc = lme4_numbers(lme4_ref, cohort, "glmm_ri", "varcorr")
    assert res.variance_components["vcov"].item() == pytest.approx(vc["estimate"].item(),
                                                                   rel=0.01)
    loglik = lme4_numbers(lme4_ref, cohort, "glmm_ri", "fit").set_index("term")["estimate"]
    assert res.loglik == pytest.approx(loglik["loglik"], abs=0.01)
    np.testing.assert_allclose(ours["odds_ratio"], np.exp(fe["estimate"]), rtol=0.01)
    assert res.converged and res.method.startswith("Laplace")
    tau2 = res.variance_components["vcov"].item()
    assert res.icc == pytest.approx(tau2 / (tau2 + np.pi**2 / 3))


def test_glmm_random_slope_against_glmer(lme4_ref):
    """The uncorrelated random slope vs glmer's ``(1 + mileage_jump || runner_id)``."""
    res = fit_glmm(load_fixture("demo"), exposures=EXPOSURES, random_slopes=["mileage_jump"],
                   correlated=False)
    fe = lme4_numbers(lme4_ref, "demo", "glmm_rs", "fixef").set_index("term")
    ours = res.table.set_index("term").loc[fe.index]
    np.testing.assert_allclose(ours["estimate"], fe["estimate"], rtol=0.01)
    fit = lme4_numbers(lme4_ref, "demo", "glmm_rs", "fit").set_index("term")["estimate"]
    assert res.loglik >= fit["loglik"] - 1e-3  # at least as good an optimum
    assert res.converged and res.optimizer is not None


def test_icc_is_none_with_random_slopes_for_lmm_and_glmm():
    """With a random slope the share of variance between runners depends on the exposure
    value, so no single ICC exists: both mixed models report None (and a number without)."""
    panel = load_fixture("demo")
    for fit, outcome in ((fit_lmm, "pain"), (fit_glmm, "pain_any")):
        rs = fit(panel, exposures=EXPOSURES, outcome=outcome, random_slopes=["mileage_jump"])
        ri = fit(panel, exposures=EXPOSURES, outcome=outcome)
        assert rs.icc is None, (rs.model, rs.icc)
        assert ri.icc is not None and 0 < ri.icc < 1


def test_glmm_random_slope_where_glmer_fails(lme4_ref):
    """On the sparse cohort glmer's slope fit ends below its own random-intercept fit
    (log-likelihood -300.62 < -300.52, SEs of 0.0014): not a usable reference. The slope
    variance is ~0 there, so kneeload must land on the random-intercept solution."""
    res = fit_glmm(load_fixture("sparse"), exposures=EXPOSURES, random_slopes=["mileage_jump"],
                   correlated=False)
    ll = lme4_ref.loc[(lme4_ref["cohort"] == "sparse") & (lme4_ref["term"] == "loglik")]
    ll = ll.set_index("model")["estimate"]
    assert ll["glmm_rs"] < ll["glmm_ri"]  # glmer's failure, as recorded
    assert res.loglik > ll["glmm_rs"]
    assert res.loglik == pytest.approx(ll["glmm_ri"], abs=2e-3)
    fe = lme4_numbers(lme4_ref, "sparse", "glmm_ri", "fixef").set_index("term")
    ours = res.table.set_index("term").loc[fe.index]
    np.testing.assert_allclose(ours["estimate"], fe["estimate"], rtol=0.01)
    assert res.variance_components["sdcor"].iloc[1] < 0.05


def test_gee_is_attenuated_towards_one():
    """Marginal (GEE) log-odds are smaller than runner-specific (GLMM) ones (Zeger 1988)."""
    panel = load_fixture("demo")
    glmm = fit_model(panel, model="glmm", exposures=EXPOSURES)
    gee = fit_model(panel, model="gee", exposures=EXPOSURES)
    assert gee.converged and gee.loglik is None
    for term in EXPOSURES:
        b_glmm, b_gee = glmm.term(term).estimate, gee.term(term).estimate
        assert np.sign(b_glmm) == np.sign(b_gee)
        assert abs(b_gee) < abs(b_glmm)
    rho = gee.variance_components["vcov"].item()
    assert 0 < rho < 1


def test_binomial_outcome_must_be_binary():
    with pytest.raises(ModelSpecError, match="0/1"):
        fit_glmm(load_fixture("demo"), outcome="pain", exposures=EXPOSURES)


# --- known truth on the package's simulator -------------------------------------------------


#: Seed of the known-truth studies below, fixed before the tests were first run.
TRUTH_SEED = 2026


def test_lmm_on_simulated_cohorts_covers_truth():
    """Simulated exposures, outcome from the exact LMM (the NRS rounding attenuates slightly)."""
    panel, truth = simulate_panel(runners_per_cohort=40, weeks=26, cohorts=3, seed=TRUTH_SEED)
    panel = redraw_lmm_outcome(panel, truth, seed=TRUTH_SEED)
    res = fit_lmm(panel, exposures=EXPOSURES, random_slopes=["mileage_jump"])
    assert res.converged
    for term, value in truth["fixed_effects"].items():
        row = res.term(term)
        assert row.ci_low < value < row.ci_high, (term, value, row.to_dict())
    assert res.dropped and all(k.startswith("missing ") for k in res.dropped)
    assert res.variance_components["sdcor"].iloc[0] == pytest.approx(
        truth["random_effects"]["sd_intercept"], rel=0.25)
    assert res.variance_components["sdcor"].iloc[-1] == pytest.approx(
        truth["residual_sd"], rel=0.05)


def test_lmm_on_simulator_nrs_covers_truth():
    """End to end on the simulator's own rounded NRS outcome."""
    panel, truth = simulate_panel(runners_per_cohort=40, weeks=26, cohorts=3, seed=TRUTH_SEED)
    res = fit_lmm(panel, exposures=EXPOSURES, random_slopes=["mileage_jump"])
    for term, value in truth["fixed_effects"].items():
        row = res.term(term)
        assert row.ci_low < value < row.ci_high, (term, value, row.to_dict())


def test_glmm_on_simulated_cohorts_covers_truth():
    panel, truth = simulate_panel(runners_per_cohort=40, weeks=26, cohorts=3, seed=TRUTH_SEED,
                                  outcome="binary")
    res = fit_glmm(panel, exposures=EXPOSURES)
    for term, value in truth["fixed_effects"].items():
        row = res.term(term)
        assert row.ci_low < value < row.ci_high, (term, value, row.to_dict())


# --- likelihood-ratio test ------------------------------------------------------------------


def test_lrt_random_slope_matches_lme4_logliks(lme4_ref):
    panel = load_fixture("demo")
    ri = fit_lmm(panel, exposures=EXPOSURES, reml=False)
    rs = fit_lmm(panel, exposures=EXPOSURES, reml=False, random_slopes=["mileage_jump"])
    out = likelihood_ratio_test(ri, rs)
    ll = lme4_ref.loc[(lme4_ref["cohort"] == "demo") & (lme4_ref["term"] == "loglik")]
    ll = ll.set_index("model")["estimate"]
    expected = 2 * (ll["lmm_rs_ml"] - ll["lmm_ri_ml"])  # what lme4's anova() reports
    assert out["statistic"] == pytest.approx(expected, abs=1e-5)
    assert out["df"] == 2  # slope variance + intercept-slope covariance
    assert out["p_value"] == pytest.approx(np.exp(-expected / 2))  # chi2(2) survival
    # 50:50 mixture of chi2(1) and chi2(2) (Self & Liang 1987), smaller than chi2(2)
    x = out["statistic"]
    assert out["p_value_boundary"] == pytest.approx(0.5 * stats.chi2.sf(x, 1)
                                                    + 0.5 * stats.chi2.sf(x, 2), rel=1e-12)
    assert out["p_value_boundary"] < out["p_value"]
    assert "boundary" in out["caveat"]


def test_lrt_boundary_mixture_for_one_variance():
    """df = 1 (an uncorrelated slope has no covariance): the 50:50 mixture of chi2(0) and
    chi2(1).

    chi2(0) is a point mass at 0, so for a positive statistic p = 0.5 * chi2.sf(x, 1).
    """
    panel = numpy_panel(n_runners=30, n_reports=10, slope_sd=3.0)
    ri = fit_glmm(panel, exposures=EXPOSURES)
    rs = fit_glmm(panel, exposures=EXPOSURES, random_slopes=["mileage_jump"], correlated=False)
    out = likelihood_ratio_test(ri, rs)
    assert out["df"] == 1
    x = out["statistic"]
    assert x > 1.0  # a slope SD of 3 is clearly detected
    assert out["p_value"] == pytest.approx(stats.chi2.sf(x, 1), rel=1e-12)
    assert out["p_value_boundary"] == pytest.approx(0.5 * stats.chi2.sf(x, 1), rel=1e-12)


def test_lrt_refuses_reml_with_different_fixed_effects():
    panel = load_fixture("demo")
    small = fit_lmm(panel, exposures=["mileage_jump", "shoe_km"])
    big = fit_lmm(panel, exposures=EXPOSURES)
    with pytest.raises(ModelSpecError, match="ML"):
        likelihood_ratio_test(small, big)
    with pytest.raises(ModelSpecError, match="not nested"):
        likelihood_ratio_test(big, fit_lmm(panel, exposures=["mileage_jump", "age"]))



def test_lrt_refuses_reml_against_ml():
    """A REML and an ML log-likelihood are different criteria: their difference is no LRT.

    On this panel the mixed pair gives a statistic of 23.7 where the valid REML pair
    (same fixed effects, only the random slope added) gives 3.3.
    """
    panel = numpy_panel(n_runners=30, n_reports=10)
    ri_reml = fit_lmm(panel, exposures=EXPOSURES)
    rs_ml = fit_lmm(panel, exposures=EXPOSURES, random_slopes=["mileage_jump"], reml=False)
    rs_reml = fit_lmm(panel, exposures=EXPOSURES, random_slopes=["mileage_jump"])
    with pytest.raises(ModelSpecError, match="same method"):
        likelihood_ratio_test(ri_reml, rs_ml)
    with pytest.raises(ModelSpecError, match="same method"):
        likelihood_ratio_test(fit_lmm(panel, exposures=EXPOSURES, reml=False), rs_reml)
    valid = likelihood_ratio_test(ri_reml, rs_reml)  # REML, same fixed effects: allowed
    assert valid["statistic"] == pytest.approx(2 * (rs_reml.loglik - ri_reml.loglik))

# --- live lme4 ------------------------------------------------------------------------------



#: Columns that identify a reference number (compared exactly).
KEY_COLUMNS = ["cohort", "model", "kind", "term", "term2"]
#: How far a fresh lme4 run may be from the committed numbers, by model family. The reference
#: itself moves between machines with the same R and lme4 versions (BLAS, compiler): glmer
#: (bobyqa on the Laplace deviance, a finite-difference Hessian for the SEs) by up to 2.6e-6
#: relative (issue 10); lmer's estimates are pinned by the tightened nloptwrap tolerances
#: (xtol_rel 1e-10). A test that fails when its reference tool is present is a defect, so the
#: tolerance leaves a wide margin over what each holds; kneeload's own agreement with lme4 is
#: checked separately, at its own tolerance, by compare_lmm_with_lme4 and tests/test_glmm.py.
LIVE_RTOL = {"lmm": 1e-5, "glmm": 1e-4}


@pytest.mark.lme4
@requires_r("lme4")
def test_lme4_reference_live(tmp_path):
    """Re-run tests/reference/lme4_reference.R and compare with the committed numbers."""
    root = REF_DIR.parent.parent
    subprocess.run(["Rscript", str(REF_DIR / "lme4_reference.R"), str(tmp_path)], cwd=root,
                   check=True, capture_output=True, timeout=300)
    live = pd.read_csv(tmp_path / "lme4_reference.csv")
    committed = pd.read_csv(REF_DIR / "lme4_reference.csv")
    live, committed = (t.loc[t["term"] != "seconds"].reset_index(drop=True)
                       for t in (live, committed))
    pd.testing.assert_frame_equal(live[KEY_COLUMNS], committed[KEY_COLUMNS])
    for prefix, rtol in LIVE_RTOL.items():
        rows = live["model"].str.startswith(prefix).to_numpy()
        for col in ("estimate", "std_error"):
            np.testing.assert_allclose(live.loc[rows, col], committed.loc[rows, col],
                                       rtol=rtol, atol=rtol, equal_nan=True,
                                       err_msg=f"{prefix} {col}")
    for cohort in ("demo", "sparse"):
        for model in LMM_SPECS:
            compare_lmm_with_lme4(live, cohort, model)


# --- model figures (analysis.plots, section "model figures") ---------------------------------


@pytest.fixture
def agg_backend():
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    yield plt
    plt.close("all")


def test_forest_and_prediction_figures_show_the_estimates(agg_backend):
    from analysis import plots

    panel = load_fixture("demo")
    res = fit_lmm(panel, exposures=EXPOSURES, covariates=["sex"])
    ax = plots.forest_plot(res.table)
    x, _ = ax.lines[0].get_data()  # errorbar's marker line
    # the forest plot speaks reading units (per +10 % jump, per +100 km: analysis.effects)
    effects = res.table.iloc[1:]
    np.testing.assert_allclose(np.asarray(x, float), effects["estimate_step"])
    np.testing.assert_allclose(effects["estimate_step"], effects["estimate"] * effects["step"])
    assert effects.set_index("term").loc["mileage_jump", "step"] == 0.10
    ax = plots.predicted_pain(res, panel, exposure="mileage_jump")
    gx, gy = (np.asarray(v, float) for v in ax.lines[0].get_data())
    # a straight line whose slope is the mileage_jump estimate (NRS per unit); the x axis is
    # in the reading unit's display scale (per cent for a fraction: analysis.labels)
    from analysis.labels import display_scale

    slope = np.diff(gy) / np.diff(gx) * display_scale("mileage_jump")
    np.testing.assert_allclose(slope, res.term("mileage_jump").estimate)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() < gy.min() and band.max() > gy.max()
    glmm = fit_glmm(panel, exposures=EXPOSURES)
    ax = plots.forest_plot(glmm.table)
    assert ax.get_xscale() == "log"
    _, prob = plots.predicted_pain(glmm, panel, exposure="shoe_km").lines[0].get_data()
    assert ((prob > 0) & (prob < 1)).all() and (np.diff(prob) > 0).all()


def test_caterpillar_residuals_and_power_figures(agg_backend):
    from analysis import plots

    per_runner = pd.DataFrame({"Intercept": [0.5, -1.0, 0.2], "Intercept_se": [0.1, 0.2, 0.3]})
    ax = plots.caterpillar(per_runner)
    _, y = ax.lines[0].get_data()
    assert list(y) == [-1.0, 0.2, 0.5]  # sorted
    rng = np.random.default_rng(0)
    per_report = pd.DataFrame({"fitted": rng.uniform(0, 6, 300),
                               "residual": rng.normal(0, 1, 300)})
    axes = plots.residual_diagnostics(per_report)
    assert len(axes) == 3
    power = pd.DataFrame({"term": "mileage_jump", "weeks": [12, 12], "runners": [50, 100],
                          "power": [0.4, 0.7], "power_ci_low": [0.3, 0.6],
                          "power_ci_high": [0.5, 0.8]})
    ax = plots.power_curve_plot(power)
    assert list(ax.lines[0].get_data()[1]) == [0.4, 0.7]


# --- optimizers, centering ------------------------------------------------------------------


def test_optimizer_fallback_and_non_convergence_are_reported():
    d = build_design(load_fixture("demo"), outcome="pain", exposures=EXPOSURES,
                     random_slopes=["mileage_jump"])
    best = fit_lmm_design(d)
    assert best.converged and best.optimizer == "L-BFGS-B"
    nm = fit_lmm_design(d, optimizers=("Nelder-Mead",))
    assert nm.optimizer == "Nelder-Mead"
    np.testing.assert_allclose(nm.beta, best.beta, rtol=1e-5)
    assert nm.loglik == pytest.approx(best.loglik, abs=1e-6)
    stuck = fit_lmm_design(d, maxiter=1)
    assert not stuck.converged and stuck.optimizer is None
    # one note for the researcher; each optimizer's failed attempt told in it and in attempts
    assert len(stuck.notes) == 1 and "did not reach a verified optimum" in stuck.notes[0]
    assert [a.split()[0] for a in stuck.attempts] == ["L-BFGS-B", "Powell", "Nelder-Mead"]
    assert all(opt in stuck.notes[0] for opt in ("L-BFGS-B", "Powell", "Nelder-Mead"))
    assert stuck.loglik < best.loglik


def test_within_between_centering_separates_the_two_effects():
    """Between-runner confounding: the runner-mean jump has its own (here negative) effect."""
    rng = np.random.default_rng(4)
    n_runners, n_reports = 80, 15
    rid = np.repeat(np.arange(n_runners), n_reports)
    runner_mean = rng.normal(0.1, 0.2, n_runners)
    jump = runner_mean[rid] + rng.normal(0, 0.25, rid.size)
    within_true, between_true = 1.5, -2.0
    pain = (3 + within_true * (jump - runner_mean[rid]) + between_true * runner_mean[rid]
            + rng.normal(0, 0.7, n_runners)[rid] + rng.normal(0, 1, rid.size))
    panel = pd.DataFrame({"runner_id": [f"r{i}" for i in rid], "pain": pain,
                          "mileage_jump": jump})
    res = fit_lmm(panel, exposures=["mileage_jump"], center="within-between")
    w, b = res.term("mileage_jump_within"), res.term("mileage_jump_between")
    assert w.ci_low < within_true < w.ci_high
    assert b.ci_low < between_true < b.ci_high
    plain = fit_lmm(panel, exposures=["mileage_jump"])  # a blend of the two
    assert b.estimate < plain.term("mileage_jump").estimate < w.estimate
    grand = fit_lmm(panel, exposures=["mileage_jump"], center="grand")
    assert grand.term("mileage_jump").estimate == pytest.approx(
        plain.term("mileage_jump").estimate, rel=1e-5)
    assert res.extra["center"] == "within-between"


# --- invariants and dispatch -----------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_missing=st.integers(0, 30))
def test_fit_is_invariant_to_row_order_and_counts_every_dropped_row(seed, n_missing):
    rng = np.random.default_rng(seed)
    panel = load_fixture("sparse")
    holes = rng.choice(len(panel), n_missing, replace=False)
    cols = rng.choice(EXPOSURES, n_missing)
    for row, col in zip(holes, cols, strict=True):
        panel.loc[row, col] = np.nan
    base = fit_lmm(panel, exposures=EXPOSURES)
    shuffled = fit_lmm(panel.sample(frac=1.0, random_state=seed % 1000), exposures=EXPOSURES)
    np.testing.assert_allclose(shuffled.table["estimate"], base.table["estimate"], rtol=1e-6)
    assert base.n_obs + sum(base.dropped.values()) == len(panel)
    assert base.n_obs == len(panel) - len(set(holes.tolist()))


def test_dispatch_errors():
    panel = load_fixture("demo")
    with pytest.raises(ModelSpecError, match="unknown model"):
        fit_model(panel, model="cox", exposures=EXPOSURES)
    with pytest.raises(ModelSpecError, match="random slopes"):
        fit_model(panel, model="gee", exposures=EXPOSURES, random_slopes=["mileage_jump"])
    with pytest.raises(ModelSpecError, match="no column"):
        fit_model(panel, exposures=["acwr_rolling"])
