"""The Laplace GLMM engine against glmer, an independent Laplace deviance and the delta method.

Reference numbers: tests/reference/glmer_reference.csv, written by glmer_reference.R (lme4
1.1-31, tolPwrss = 1e-14, bobyqa rhoend = 1e-9) on demo.csv and the two simulated fixtures of
make_glmm_fixtures.py (rare events, 2.1 % positive; correlated random slope, true corr 0.8).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rtools import requires_r
from scipy import optimize, special, stats

from analysis.errors import ModelSpecError
from analysis.models import fit_glmm
from analysis.models import glmm as glmm_module
from analysis.models.design import _binary_design
from analysis.models.laplace import LaplaceProblem, fit_laplace

REF_DIR = Path(__file__).resolve().parent / "reference"
EXPOSURES = ["mileage_jump", "shoe_km", "rest_days_7d"]
#: (data set, reference model) -> fit_glmm keywords
SHAPES = {
    ("demo", "ri"): {},
    ("glmm_rare", "ri"): {},
    ("glmm_slope", "rs"): {"random_slopes": ["mileage_jump"]},
    ("glmm_slope", "rs_uncorr"): {"random_slopes": ["mileage_jump"], "correlated": False},
}
#: kneeload vs glmer at glmer's exact optimum (measured: fixed effects <= 8.3e-6 relative,
#: SEs <= 1.4e-4 (rare events), variance components <= 8e-6, log-likelihood <= 2.3e-5); the
#: issue asks for 1 % on fixed effects and SEs and 1e-3 on the log-likelihood.
FE_RTOL, SE_RTOL, VC_RTOL, LOGLIK_ATOL = 1e-4, 1e-3, 1e-4, 1e-4


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(REF_DIR / f"{name}.csv", dtype={"runner_id": "str"})


@pytest.fixture(scope="module")
def glmer_ref() -> pd.DataFrame:
    return pd.read_csv(REF_DIR / "glmer_reference.csv")


@pytest.fixture(scope="module")
def fits() -> dict:
    return {key: fit_glmm(load(key[0]), exposures=EXPOSURES, **kw) for key, kw in SHAPES.items()}


def _ref(ref: pd.DataFrame, dataset: str, model: str, kind: str) -> pd.DataFrame:
    return ref.loc[(ref["dataset"] == dataset) & (ref["model"] == model) & (ref["kind"] == kind)]


def compare_with_glmer(res, ref: pd.DataFrame, dataset: str, model: str) -> None:
    fe = _ref(ref, dataset, model, "fixef")
    names = fe["term"].replace({"(Intercept)": "Intercept"}).to_numpy()
    table = res.table.set_index("term").loc[names]
    np.testing.assert_allclose(table["estimate"], fe["estimate"], rtol=FE_RTOL)
    np.testing.assert_allclose(table["std_error"], fe["std_error"], rtol=SE_RTOL)
    np.testing.assert_allclose(table["odds_ratio"], np.exp(fe["estimate"]), rtol=FE_RTOL)
    # the full covariance (off-diagonals too), as correlations
    V = np.asarray(res.extra["vcov"])
    se = np.sqrt(np.diag(V))
    for _, row in _ref(ref, dataset, model, "vcov").iterrows():
        i = list(names).index(row["term"].replace("(Intercept)", "Intercept"))
        j = list(names).index(row["term2"].replace("(Intercept)", "Intercept"))
        theirs = row["estimate"] / np.sqrt(fe["std_error"].iloc[i] ** 2
                                           * fe["std_error"].iloc[j] ** 2)
        assert V[i, j] / (se[i] * se[j]) == pytest.approx(theirs, abs=1e-3), (i, j)
    vc = _ref(ref, dataset, model, "varcorr")
    ours = res.variance_components
    assert len(ours) == len(vc)
    np.testing.assert_allclose(ours["vcov"], vc["estimate"], rtol=VC_RTOL)
    np.testing.assert_allclose(ours["sdcor"], vc["std_error"], rtol=VC_RTOL)
    assert ours["var2"].isna().tolist() == vc["term2"].isna().tolist()
    fit = _ref(ref, dataset, model, "fit").set_index("term")["estimate"]
    assert res.loglik == pytest.approx(fit["loglik"], abs=LOGLIK_ATOL)
    assert res.extra["singular"] == bool(fit["singular"])
    assert res.n_obs == fit["nobs"]
    np.testing.assert_allclose(res.extra["theta"], _ref(ref, dataset, model, "theta")["estimate"],
                               rtol=VC_RTOL, atol=1e-6)


@pytest.mark.parametrize(("dataset", "model"), list(SHAPES))
def test_matches_committed_glmer(fits, glmer_ref, dataset, model):
    res = fits[(dataset, model)]
    assert res.converged and res.extra["newton_decrement"] < 1e-6
    assert res.method == "Laplace (ML)" and res.engine == "laplace"
    compare_with_glmer(res, glmer_ref, dataset, model)


def test_rare_events_fixture_is_rare():
    assert 0.02 <= load("glmm_rare")["pain_any"].mean() <= 0.03


def test_correlated_slope_row_and_icc(fits):
    rs = fits[("glmm_slope", "rs")]
    vc = rs.variance_components
    assert vc[["var1", "var2"]].iloc[2].tolist() == ["Intercept", "mileage_jump"]
    sd0, sd1 = vc["sdcor"].iloc[:2]
    assert vc["sdcor"].iloc[2] == pytest.approx(vc["vcov"].iloc[2] / (sd0 * sd1))
    assert rs.icc is None and rs.extra["n_params"] == 4 + 3
    assert fits[("glmm_slope", "rs_uncorr")].extra["n_params"] == 4 + 2
    ri = fits[("demo", "ri")]
    tau2 = ri.variance_components["vcov"].item()
    assert ri.icc == pytest.approx(tau2 / (tau2 + np.pi**2 / 3))


def test_deviance_at_glmers_parameters_is_glmers(glmer_ref):
    """The objective itself: our Laplace deviance at glmer's (theta, beta) is glmer's."""
    for (dataset, model), kw in SHAPES.items():
        design = _binary_design(load(dataset), outcome="pain_any", exposures=EXPOSURES,
                                covariates=(), random_slopes=kw.get("random_slopes", ()),
                                center=None, group="runner_id")
        prob = LaplaceProblem(design, correlated=kw.get("correlated", True))
        theta = _ref(glmer_ref, dataset, model, "theta")["estimate"].to_numpy()
        beta = _ref(glmer_ref, dataset, model, "fixef")["estimate"].to_numpy()
        dev = prob.deviance(np.r_[theta, beta * prob.x_scale])
        glmer_dev = -2 * _ref(glmer_ref, dataset, model, "fit").set_index("term").loc[
            "loglik", "estimate"]
        assert dev == pytest.approx(glmer_dev, abs=1e-6), (dataset, model)


# --- an independent Laplace deviance ----------------------------------------------------------


def small_design(*, slope: bool, n_runners: int = 25, n_reports: int = 16, seed: int = 3):
    d = load("glmm_slope")
    keep = d["runner_id"].isin(sorted(d["runner_id"].unique())[:n_runners])
    d = d.loc[keep].groupby("runner_id").head(n_reports).reset_index(drop=True)
    return _binary_design(d, outcome="pain_any", exposures=EXPOSURES, covariates=(),
                          random_slopes=["mileage_jump"] if slope else (), center=None,
                          group="runner_id")


def dense_runner_deviances(design, theta_full: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """-2 x each runner's Laplace log-likelihood, by brute force (no code shared with laplace.py).

    For runner i with b = Lambda u: minimise -2 log p(y_i | X_i beta + Z_i Lambda u) + u'u with
    scipy (BFGS, tight), then add log det(Lambda' Z_i' W Z_i Lambda + I), W = mu (1 - mu).
    """
    q = design.Z.shape[1]
    lam = np.zeros((q, q))
    k = 0
    for c in range(q):  # lme4's theta: lower triangle, column by column
        for r in range(c, q):
            lam[r, c] = theta_full[k]
            k += 1
    out = []
    ends = np.r_[design.starts[1:], len(design.y)]
    for s, e in zip(design.starts, ends, strict=True):
        X, Z, y = design.X[s:e], design.Z[s:e], design.y[s:e]
        off = X @ beta

        def f(u, off=off, Z=Z, y=y):
            eta = off + Z @ lam @ u
            return -2 * np.sum(y * eta - np.logaddexp(0, eta)) + u @ u

        # the mode: scipy's BFGS to start, then dense Newton steps to machine precision
        u = optimize.minimize(f, np.zeros(q), method="BFGS").x
        ZL = Z @ lam
        for _ in range(50):
            mu = special.expit(off + ZL @ u)
            grad = -2 * ZL.T @ (y - mu) + 2 * u
            hess = 2 * ZL.T @ (ZL * (mu * (1 - mu))[:, None]) + 2 * np.eye(q)
            step = np.linalg.solve(hess, grad)
            u = u - step
            if np.abs(step).max() < 1e-14:
                break
        mu = special.expit(off + Z @ lam @ u)
        ZL = Z @ lam
        M = ZL.T @ (ZL * (mu * (1 - mu))[:, None]) + np.eye(q)
        out.append(f(u) + np.linalg.slogdet(M)[1])
    return np.array(out)


@pytest.mark.parametrize("slope", [False, True])
def test_deviance_and_gradient_against_brute_force(slope):
    design = small_design(slope=slope)
    prob = LaplaceProblem(design)
    rng = np.random.default_rng(11)
    theta = np.array([0.8, 0.4, 0.6]) if slope else np.array([0.9])
    beta = np.array([-1.0, 0.7, 0.001, -0.15])
    phi = np.r_[theta, beta * prob.x_scale]
    dev, grad, per = prob.evaluate(phi, per_runner=True)
    brute = dense_runner_deviances(design, theta, beta)
    assert dev == pytest.approx(brute.sum(), abs=1e-7)
    # analytic gradient vs central differences of the brute-force deviance
    h = 1e-5
    for j in rng.permutation(len(phi))[:4]:
        e = np.zeros(len(phi))
        e[j] = h
        num = (prob.deviance(phi + e) - prob.deviance(phi - e)) / (2 * h)
        assert grad[j] == pytest.approx(num, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(per.sum(axis=0), grad, rtol=1e-12, atol=1e-9)


def test_random_intercept_closed_forms_equal_the_general_code():
    """The scalar random-intercept path (default) and the q x q block code agree to rounding,
    at the start, away from it (a negative lambda included) and through a whole fit."""
    design = _binary_design(load("glmm_rare"), outcome="pain_any", exposures=EXPOSURES,
                            covariates=(), random_slopes=(), center=None, group="runner_id")
    fast, general = LaplaceProblem(design), LaplaceProblem(design, closed_form=False)
    assert fast.intercept_only and not general.intercept_only
    for phi in (fast.start(), np.r_[1.7, fast.start()[1:] + 0.2], np.r_[-0.6, -1.0, 0.3,
                                                                         0.1, -0.4]):
        d1, g1, p1 = fast.evaluate(phi, per_runner=True)
        d2, g2, p2 = general.evaluate(phi, per_runner=True)
        assert d1 == pytest.approx(d2, rel=1e-13)
        np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9 * np.abs(g2).max())
        np.testing.assert_allclose(p1, p2, rtol=1e-8, atol=1e-10 * np.abs(p2).max())
        np.testing.assert_allclose(fast.modes(phi)[0], general.modes(phi)[0], atol=1e-9)
    # the row kernels against scipy's expit and logaddexp, far into both tails
    from analysis.models.laplace import _log_bernoulli, _logistic

    eta = np.linspace(-740.0, 740.0, 2001)
    y = (np.arange(eta.size) % 2).astype(float)
    e, mu, w = _logistic(eta)
    inner = np.abs(eta) < 700
    np.testing.assert_allclose(mu, special.expit(eta), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(w[inner], (special.expit(eta) * special.expit(-eta))[inner],
                               rtol=1e-13)
    np.testing.assert_allclose(_log_bernoulli(eta, y, e)[inner],
                               (y * eta - np.logaddexp(0.0, eta))[inner], rtol=1e-13,
                               atol=1e-13)


def test_robust_vcov_against_independent_sandwich():
    """CR1 sandwich H^-1 (sum_i g_i g_i') H^-1 m/(m-1) from brute-force per-runner deviances."""
    design = small_design(slope=False, n_runners=30, n_reports=20)
    frame = design.frame
    res = fit_glmm(frame, exposures=EXPOSURES, vcov="robust")
    model = fit_glmm(frame, exposures=EXPOSURES)
    assert res.extra["vcov_type"] == "robust" and model.extra["vcov_type"] == "model"
    np.testing.assert_allclose(res.table["estimate"], model.table["estimate"])
    theta = np.asarray(res.extra["theta"])
    beta = res.table["estimate"].to_numpy()
    x = np.r_[theta, beta]
    # steps relative to each parameter's SE (shoe_km is per km); central differences
    steps = 1e-2 * np.r_[0.1, model.table["std_error"].to_numpy()]
    k = len(x)

    def per_runner(v):
        return dense_runner_deviances(design, v[:1], v[1:])

    scores = np.empty((len(design.starts), k))
    for j in range(k):
        e = np.zeros(k)
        e[j] = steps[j]
        scores[:, j] = (per_runner(x + e) - per_runner(x - e)) / (2 * steps[j])
    # Hessian of the total deviance, four-point central differences
    def total(v):
        return per_runner(v).sum()

    H = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * steps[i], np.eye(k)[j] * steps[j]
            H[i, j] = H[j, i] = (total(x + ei + ej) - total(x + ei - ej) - total(x - ei + ej)
                                 + total(x - ei - ej)) / (4 * steps[i] * steps[j])
    H = (H + H.T) / 2
    m = len(design.starts)
    Hinv = np.linalg.inv(H)
    robust = (Hinv @ scores.T @ scores @ Hinv)[1:, 1:] * m / (m - 1)
    np.testing.assert_allclose(np.asarray(res.extra["vcov"]), robust, rtol=2e-3,
                               atol=1e-3 * np.sqrt(np.outer(np.diag(robust),
                                                            np.diag(robust))).max())
    np.testing.assert_allclose(res.table["std_error"], np.sqrt(np.diag(robust)), rtol=2e-3)
    # the model-based covariance is 2 H^-1 from the same brute-force Hessian
    np.testing.assert_allclose(model.table["std_error"], np.sqrt(np.diag(2 * Hinv)[1:]),
                               rtol=2e-3)


# --- convergence, singular fits, errors -------------------------------------------------------


def test_capped_iterations_are_not_converged():
    res = fit_glmm(load("demo"), exposures=EXPOSURES, random_slopes=["mileage_jump"])
    design = _binary_design(load("demo"), outcome="pain_any", exposures=EXPOSURES,
                            covariates=(), random_slopes=["mileage_jump"], center=None,
                            group="runner_id")
    from analysis.models.laplace import fit_laplace

    capped = fit_laplace(design, maxiter=1)
    assert not capped.converged
    assert any(n.startswith("not converged") for n in capped.notes)
    assert res.converged


def test_singular_fit_is_flagged():
    """demo's correlated slope has |corr| -> 1 (theta's last entry at 0): singular, as lme4."""
    res = fit_glmm(load("demo"), exposures=EXPOSURES, random_slopes=["mileage_jump"])
    assert res.extra["singular"]
    assert abs(res.variance_components["sdcor"].iloc[2]) > 1 - 1e-4
    assert any(w.startswith("singular fit") for w in res.warnings)


def test_unknown_engine_and_vcov():
    with pytest.raises(ModelSpecError, match="engine"):
        fit_glmm(load("demo"), exposures=EXPOSURES, engine="gpboost")
    with pytest.raises(ModelSpecError, match="vcov"):
        fit_glmm(load("demo"), exposures=EXPOSURES, vcov="sandwich")


# --- prediction band from the full covariance --------------------------------------------------


def test_prediction_band_is_the_delta_method_from_the_full_covariance(fits):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis import plots

    panel = load("glmm_rare")
    res = fits[("glmm_rare", "ri")]
    ax = plots.predicted_pain(res, panel, exposure="shoe_km", n_points=7)
    grid, prob = (np.asarray(v, float) for v in ax.lines[0].get_data())
    band = ax.collections[0].get_paths()[0].vertices
    plt.close("all")
    # independent: covariate means, eta = x'beta, Var(eta) = x' V x (full V), on the logit scale
    V = np.asarray(res.extra["vcov"])
    beta = res.table["estimate"].to_numpy()
    x = np.column_stack([np.ones(len(grid)), np.full(len(grid), panel["mileage_jump"].mean()),
                         grid, np.full(len(grid), panel["rest_days_7d"].mean())])
    eta = x @ beta
    half = stats.norm.ppf(0.975) * np.sqrt(np.einsum("ij,jk,ik->i", x, V, x))
    lo, hi = special.expit(eta - half), special.expit(eta + half)
    np.testing.assert_allclose(prob, special.expit(eta), rtol=1e-10)
    ours_hi = [band[(np.isclose(band[:, 0], g))][:, 1].max() for g in grid]
    ours_lo = [band[(np.isclose(band[:, 0], g))][:, 1].min() for g in grid]
    np.testing.assert_allclose(ours_hi, hi, rtol=1e-8)
    np.testing.assert_allclose(ours_lo, lo, rtol=1e-8)
    # the diagonal-only band (what a missing covariance gave) is much wider here
    half_diag = stats.norm.ppf(0.975) * np.sqrt(np.einsum("ij,j,ij->i", x, np.diag(V), x))
    assert np.all(half_diag > 1.3 * half)


# --- live glmer ---------------------------------------------------------------------------------



#: glmer's own numbers move by up to 2.6e-6 relative between machines with the same R and
#: lme4 versions (BLAS, compiler; bobyqa and the finite-difference Hessian amplify rounding),
#: so a fresh run is compared with the committed one at 1e-4, ~40x that. kneeload is then
#: compared with the fresh run at the tolerances above.
LIVE_RTOL = 1e-4
#: The fast data sets re-fitted live (the slope fits take ~40 s each in glmer).
LIVE_DATASETS = ("demo", "glmm_rare")
#: Set to 1 to re-run the long live glmer references too (glmm_rare: about 50 s of glmer on
#: a 2-core VM, which would push ``make test`` past its 15 minutes where R is installed).
LONG_REFERENCES_ENV = "KNEELOAD_LONG_REFERENCES"
#: The live datasets whose glmer fit takes longer than a test should.
LONG_LIVE_DATASETS = ("glmm_rare",)


def _covariance_scale(ref: pd.DataFrame) -> np.ndarray:
    """Per row of ``ref``: sqrt(var_i var_j) of a ``vcov`` row's two terms (from the same
    fit's diagonal rows), NaN on other rows."""
    cov = ref["kind"] == "vcov"
    diagonal = ref.loc[cov & (ref["term"] == ref["term2"])].set_index(
        ["dataset", "model", "term"])["estimate"]
    scale = np.full(len(ref), np.nan)
    for at, row in zip(np.flatnonzero(cov), ref.loc[cov].itertuples(), strict=True):
        scale[at] = np.sqrt(diagonal[(row.dataset, row.model, row.term)]
                            * diagonal[(row.dataset, row.model, row.term2)])
    return scale


def test_covariance_scale_is_the_product_of_the_sds():
    ref = pd.DataFrame({"dataset": "d", "model": "ri", "kind": ["vcov"] * 3 + ["fixef"],
                        "term": ["a", "b", "b", "a"], "term2": ["a", "a", "b", None],
                        "estimate": [4.0, -1.0, 9.0, 0.5]})
    np.testing.assert_allclose(_covariance_scale(ref), [4.0, 6.0, 9.0, np.nan])


@pytest.mark.lme4
@requires_r("lme4")
@pytest.mark.parametrize("dataset", LIVE_DATASETS)
def test_glmer_reference_live(tmp_path, fits, dataset):
    """glmer re-run on this machine reproduces the committed reference of ``dataset``, and the
    engine agrees with the live numbers. The long ones run with KNEELOAD_LONG_REFERENCES=1
    (their committed numbers are checked on every run by test_matches_committed_glmer)."""
    if dataset in LONG_LIVE_DATASETS and os.environ.get(LONG_REFERENCES_ENV) != "1":
        pytest.skip(f"live glmer on {dataset} takes ~50 s: set {LONG_REFERENCES_ENV}=1")
    root = REF_DIR.parent.parent
    subprocess.run(["Rscript", str(REF_DIR / "glmer_reference.R"), str(tmp_path), dataset],
                   cwd=root, check=True, capture_output=True, timeout=600)
    live = pd.read_csv(tmp_path / "glmer_reference.csv")
    committed = pd.read_csv(REF_DIR / "glmer_reference.csv")
    committed = committed.loc[committed["dataset"] == dataset].reset_index(drop=True)
    live, committed = (t.loc[t["term"] != "seconds"].reset_index(drop=True)
                       for t in (live, committed))
    keys = ["dataset", "model", "kind", "term", "term2"]
    pd.testing.assert_frame_equal(live[keys], committed[keys])
    # a covariance of two estimates is compared on the scale of their SDs (as a correlation):
    # glmer's finite-difference Hessian moved cov(rest_days_7d, mileage_jump) of glmm_rare,
    # -1.2343e-4, by 3.6e-4 relative between two machines with the same R 4.2.2 and lme4
    # 1.1-31, a correlation change of 8e-6
    cov = (live["kind"] == "vcov").to_numpy()
    for col in ("estimate", "std_error"):
        np.testing.assert_allclose(live.loc[~cov, col], committed.loc[~cov, col],
                                   rtol=LIVE_RTOL, atol=1e-9, equal_nan=True, err_msg=col)
    scale = _covariance_scale(committed)
    np.testing.assert_allclose(live.loc[cov, "estimate"] / scale[cov],
                               committed.loc[cov, "estimate"] / scale[cov], rtol=0,
                               atol=LIVE_RTOL, err_msg="vcov as correlations")
    compare_with_glmer(fits[(dataset, "ri")], live, dataset, "ri")


def test_the_fit_path_imports_neither_scipy_stats_nor_pandera(tmp_path):
    """`kneeload fit` pays only for what it uses: scipy.stats (0.3 s), pandera (0.25 s),
    statsmodels and the build modules are not imported by the CLI and the models package
    (measured: the fit path's imports fell from 1.2 s to the 0.65 s of pandas + scipy.optimize +
    typer + rich)."""
    import sys

    code = ("import sys, analysis.cli\nfrom analysis.models import fit_model, fit_glmm\n"
            "print(sorted(m for m in ('scipy.stats', 'pandera', 'statsmodels', 'matplotlib', "
            "'analysis.exposures', 'analysis.simulate', 'analysis.clean') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]"


# --- doubtful fits: separation and a nearly unidentifiable runner SD (review D4, D5) --------

def _panel(seed: int, *, m: int, nper: int, constant_within: bool = False,
           separate_x: bool = False) -> pd.DataFrame:
    """A small logit panel: random intercept SD 1, x with log-odds 0.5, sex F/M/X.

    ``constant_within``: every runner reports the same outcome every time (half 0, half 1:
    the review's novice cohort); ``separate_x``: runners of sex X never report pain.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(m):
        sex = "FMX"[i % 3]
        x = rng.normal(0.05, 0.5, nper)
        km = rng.normal(300, 150, nper)
        eta = -1.0 + rng.normal() + 0.5 * x + 0.3 * (sex == "M")
        y = (rng.random(nper) < special.expit(eta)).astype(int)
        if constant_within:
            y[:] = i % 2
        if separate_x and sex == "X":
            y[:] = 0
        rows += [{"runner_id": f"r{i:03d}", "y": int(y[j]), "x": x[j], "km": km[j],
                  "sex": sex} for j in range(nper)]
    return pd.DataFrame(rows)


def test_outcome_constant_within_runners_is_nearly_unidentifiable():
    """Every runner always reports the same outcome: the likelihood is nearly flat in a huge
    runner SD (glmer: "nearly unidentifiable"); the review's novice cohort stopped at 76
    logits with status ok. The SD must be flagged, with the count of constant runners."""
    panel = _panel(41, m=16, nper=15, constant_within=True)
    res = fit_glmm(panel, exposures=["x", "km"], outcome="y")
    sd = float(res.variance_components["sdcor"].iloc[0])
    assert sd > glmm_module.RANDOM_SD_MAX
    # conditional on the modes every runner's fitted probability is its constant outcome
    design = _binary_design(panel, outcome="y", exposures=["x", "km"], covariates=[],
                            random_slopes=[], center=None, group="runner_id")
    fit = fit_laplace(design)
    assert np.abs(special.expit(fit.eta) - design.y).max() < 1e-2
    assert res.status == "warning"
    (msg,) = [p for p in res.problems if p.startswith(glmm_module.PROBLEM_UNIDENTIFIABLE)]
    assert "16 of 16 runners report the same outcome" in msg


def test_separated_covariate_is_flagged_without_overflow_warnings():
    """Runners of sex X never report pain: C(sex)[T.X] runs off to -infinity (complete
    separation in that term, Albert & Anderson 1984). Flagged with the term and the count of
    reports (every X report); no numpy overflow warning (pytest turns warnings into errors,
    and the check here does not depend on that setting)."""
    import warnings

    panel = _panel(43, m=60, nper=30, separate_x=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit_glmm(panel, exposures=["x", "km"], outcome="y", covariates=["C(sex)"])
    row = res.term("C(sex)[T.X]")
    others = res.table.loc[res.table["term"] != "C(sex)[T.X]", "std_error"]
    assert row["estimate"] < -glmm_module.SEPARATION_LOGIT
    assert row["std_error"] > 100 * others.max()
    assert row["or_ci_high"] == np.inf
    assert res.status == "warning"
    (msg,) = [p for p in res.problems if p.startswith(glmm_module.PROBLEM_SEPARATION)]
    n_x = int((panel["sex"] == "X").sum())
    assert msg.startswith("separation in C(sex)[T.X]:")
    assert f"for {n_x} of {len(panel)} reports" in msg
    assert "Hessian is numerically singular" in msg
    # the rest of the model is an ordinary fit: sex M's estimate is finite and its SE usual
    assert res.term("C(sex)[T.M]")["std_error"] < 1.0
    # a report reloads the saved result: that too without an overflow warning, problems kept
    import json

    from analysis.models import ModelResult

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = ModelResult.from_dict(json.loads(json.dumps(res.to_dict(), allow_nan=False)))
    assert back.status == "warning" and back.problems == res.problems


def test_clean_fixtures_are_not_flagged(fits):
    """The committed glmer fixtures (rare events at 2.1 %, correlated slopes) stay ok, with
    orders of magnitude to spare on both thresholds."""
    for key, res in fits.items():
        assert res.status == "ok", (key, res.problems)
        assert res.problems == [], key
    design = _binary_design(load("glmm_rare"), outcome="pain_any", exposures=EXPOSURES,
                            covariates=[], random_slopes=[], center=None, group="runner_id")
    fit = fit_laplace(design)
    tail = special.expit(-np.abs(fit.eta))
    assert tail.min() > 100 * glmm_module.SEPARATION_PROB  # measured 1.1e-3
    assert fit.hessian_ratio > 100 * glmm_module.HESSIAN_RATIO_TOL  # measured 3.5e-2
    assert np.sqrt(fit.G[0, 0]) < glmm_module.RANDOM_SD_MAX / 5  # measured 0.82
