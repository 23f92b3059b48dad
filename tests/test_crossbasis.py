"""DLNM cross-basis: columns against an R construction from splines::ns, and its readout.

Reference: tests/reference/ns_crossbasis.csv, written by ns_crossbasis.R from the committed
daily series and panel rows (make_ns_crossbasis_fixture.py); compared on every run, the R
script re-run live when Rscript is installed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rtools import requires_r

from analysis.effects import BASIS, reading_unit
from analysis.errors import ModelSpecError
from analysis.models import fit_glmm, fit_lmm
from analysis.models.crossbasis import (
    crossbasis,
    crosspred,
    lag_basis,
    lag_response,
    lagged_loads,
)

REF_DIR = Path(__file__).parent / "reference"
#: Columns vs R: the same B-splines, reflections and sums in double precision; measured
#: 1.4e-14 (write.csv keeps 15 significant digits).
CB_TOL = 1e-10

CASES = {
    "ns3_ns4_L28": {"var": "ns", "var_df": 3, "lag": "ns", "lag_df": 4, "max_lag": 28},
    "lin_strata_L28": {"var": "linear", "lag": "strata", "lag_breaks": (1, 7, 14),
                       "max_lag": 28},
    # 30 % rest days: the var knots are quantiles of the running days (> 0 km)
    "ns4_ns3_L10": {"var": "ns", "var_df": 4, "lag": "ns", "lag_df": 3, "max_lag": 10},
}


@pytest.fixture(scope="module")
def fixture() -> tuple[pd.DataFrame, pd.DataFrame]:
    daily = pd.read_csv(REF_DIR / "ns_crossbasis_daily.csv", parse_dates=["date"])
    panel = pd.read_csv(REF_DIR / "ns_crossbasis_panel.csv", parse_dates=["reference_date"])
    return daily, panel


def _compare(ref: pd.DataFrame, daily: pd.DataFrame, panel: pd.DataFrame) -> float:
    worst = 0.0
    for case, kwargs in CASES.items():
        cb = crossbasis(daily, panel, **kwargs)
        rows = ref.loc[ref["case"] == case].sort_values(["col", "row"])
        r_cols = rows["value"].to_numpy().reshape(-1, len(panel)).T
        ours = cb.frame.to_numpy()
        assert ours.shape == r_cols.shape, case
        assert (np.isnan(ours) == np.isnan(r_cols)).all(), case
        worst = max(worst, float(np.nanmax(np.abs(ours - r_cols))))
    return worst


def test_columns_match_committed_r(fixture):
    ref = pd.read_csv(REF_DIR / "ns_crossbasis.csv")
    assert _compare(ref, *fixture) < CB_TOL


@requires_r("splines")
def test_columns_match_live_r(tmp_path, fixture):
    subprocess.run(["Rscript", str(REF_DIR / "ns_crossbasis.R"), str(tmp_path)], check=True,
                   capture_output=True, cwd=REF_DIR.parent.parent)
    assert _compare(pd.read_csv(tmp_path / "ns_crossbasis.csv"), *fixture) < CB_TOL


def test_names_are_var_major_and_read_off_the_curve(fixture):
    cb = crossbasis(*fixture, var="ns", var_df=2, lag="ns", lag_df=3, max_lag=5)
    assert cb.names == [f"cb(distance_km)v{v}.l{j}" for v in (1, 2) for j in (1, 2, 3)]
    assert reading_unit(cb.names[0]) == BASIS


def test_lagged_loads_by_hand():
    daily = pd.DataFrame({"runner_id": ["a"] * 5 + ["b"] * 3,
                          "date": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03",
                                                  "2024-01-04", "2024-01-05", "2024-01-03",
                                                  "2024-01-04", "2024-01-05"]),
                          "distance_km": [5.0, 0.0, 8.0, np.nan, 3.0, 2.0, 4.0, 6.0]})
    rows = pd.DataFrame({"runner_id": ["a", "a", "b"],
                         "reference_date": pd.to_datetime(["2024-01-03", "2024-01-05",
                                                           "2024-01-04"])})
    got = lagged_loads(daily, rows, column="distance_km", max_lag=2)
    expected = np.array([[8.0, 0.0, 5.0], [3.0, np.nan, 8.0], [4.0, 2.0, np.nan]])
    np.testing.assert_array_equal(got, expected)


def test_strata_lag_basis_by_hand():
    basis = lag_basis(6, kind="strata", breaks=[1, 3])
    expected = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1],
                         [0, 0, 1]], dtype=float)
    np.testing.assert_array_equal(basis, expected)
    ns_basis = lag_basis(28, kind="ns", df=4)
    assert ns_basis.shape == (29, 4)
    # intercept = TRUE: the constants are in the span
    coef, *_ = np.linalg.lstsq(ns_basis, np.ones(29), rcond=None)
    np.testing.assert_allclose(ns_basis @ coef, 1.0, atol=1e-10)
    for bad in ([0, 3], [3, 3], [7]):
        with pytest.raises(ModelSpecError, match="strata breaks"):
            lag_basis(6, kind="strata", breaks=bad)
    with pytest.raises(ModelSpecError, match="lag basis"):
        lag_basis(6, kind="poly")


def _simulated(seed: int = 7, runners: int = 30, days: int = 150):
    """Pain = 0.05 km on lag 0-2 + 0.02 km on lag 3-6 (a strata truth) + runner + noise."""
    rng = np.random.default_rng(seed)
    dates = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(days), "D")
    daily, panel = [], []
    for r in range(runners):
        km = rng.gamma(2.0, 4.0, days)
        km[rng.random(days) < 0.3] = 0.0
        report = np.arange(10, days, 3)
        eta = (0.05 * sum(km[report - k] for k in range(3))
               + 0.02 * sum(km[report - k] for k in range(3, 7)))
        daily.append(pd.DataFrame({"runner_id": f"r{r}", "date": dates, "distance_km": km}))
        panel.append(pd.DataFrame({"runner_id": f"r{r}", "reference_date": dates[report],
                                   "pain": 1 + rng.normal(0, 0.7) + eta
                                   + rng.normal(0, 1, report.size)}))
    return pd.concat(daily, ignore_index=True), pd.concat(panel, ignore_index=True)


def test_crosspred_of_a_linear_strata_model_by_hand():
    """Linear var x strata lag: the lag-specific effect at x is x * (stratum coefficient),
    the cumulative effect x * sum(coefficient x stratum width); SEs from the contrast."""
    daily, panel = _simulated()
    cb = crossbasis(daily, panel, var="linear", lag="strata", lag_breaks=(3,), max_lag=6)
    res = fit_lmm(pd.concat([panel, cb.frame], axis=1), exposures=cb.names, reml=False,
                  ddf="wald")
    beta = res.table.set_index("term").loc[cb.names, "estimate"].to_numpy()
    cov = np.asarray(res.extra["vcov"])[1:, 1:]
    pred = crosspred(cb, res, at=[0.0, 10.0])
    cum = pred["cumulative"].set_index("x")
    weights = np.array([3.0, 4.0])  # lags 0-2 and 3-6
    assert cum.loc[10.0, "estimate"] == pytest.approx(10 * weights @ beta, rel=1e-12)
    assert cum.loc[10.0, "std_error"] == pytest.approx(10 * np.sqrt(weights @ cov @ weights),
                                                       rel=1e-12)
    assert cum.loc[0.0, "estimate"] == 0.0
    lag = lag_response(cb, res, at=10.0).set_index("lag")
    np.testing.assert_allclose(lag["estimate"], 10 * np.r_[[beta[0]] * 3, [beta[1]] * 4])
    # the truth (0.05 per km on lags 0-2, 0.02 on lags 3-6) is recovered
    assert (np.abs(beta - [0.05, 0.02]) < 4 * np.sqrt(np.diag(cov))).all()
    surface = pred["surface"]
    assert len(surface) == 2 * 7
    assert (surface["ci_low"] <= surface["estimate"]).all()


def test_a_dlnm_glmm_reports_odds_ratios():
    daily, panel = _simulated(seed=3)
    panel = panel.assign(pain_any=(panel["pain"] > panel["pain"].median()).astype(float))
    cb = crossbasis(daily, panel, var="ns", var_df=2, lag="ns", lag_df=3, max_lag=6)
    res = fit_glmm(pd.concat([panel, cb.frame], axis=1), exposures=cb.names)
    cum = crosspred(cb, res, at=[5.0, 15.0])["cumulative"]
    np.testing.assert_allclose(cum["odds_ratio"], np.exp(cum["estimate"]))
    assert (cum["odds_ratio"] > 1).all()


def test_unknown_lag_days_drop_the_row_and_are_counted(fixture):
    daily, panel = fixture
    cb = crossbasis(daily, panel, var="linear", lag="ns", lag_df=3, max_lag=10)
    rng = np.random.default_rng(0)
    data = pd.concat([panel, cb.frame], axis=1).assign(pain=rng.normal(2, 1, len(panel)))
    res = fit_lmm(data, exposures=cb.names)
    n_nan = int(cb.frame.iloc[:, 0].isna().sum())
    assert n_nan == 13
    assert res.n_obs == len(panel) - n_nan
    assert res.dropped == {f"missing {cb.names[0]}": n_nan}


def test_var_knots_avoid_the_rest_day_boundary(fixture):
    """Quantiles of all days would put a knot on 0 km (30 % rest days); the knots are the
    running days' quantiles, and the columns are not collinear with the intercept."""
    daily, panel = fixture
    cb = crossbasis(daily, panel, var="ns", var_df=4, lag="ns", lag_df=3, max_lag=10)
    running = daily["distance_km"][daily["distance_km"] > 0]
    np.testing.assert_allclose(cb.var_spline.knots, running.quantile([0.25, 0.5, 0.75]))
    assert cb.var_spline.boundary == (0.0, daily["distance_km"].max())
    X = np.column_stack([np.ones(len(panel)), cb.frame.to_numpy()])
    X = X[~np.isnan(X).any(axis=1)]
    assert np.linalg.matrix_rank(X) == X.shape[1]
    given = crossbasis(daily, panel, var="ns", var_df=3, var_knots=[4.0, 9.0], max_lag=10)
    assert given.var_spline.knots == (4.0, 9.0)
    with pytest.raises(ModelSpecError, match="var_knots must be 2 values"):
        crossbasis(daily, panel, var="ns", var_df=3, var_knots=[0.0, 9.0], max_lag=10)


def test_requests_are_checked(fixture):
    daily, panel = fixture
    with pytest.raises(ModelSpecError, match="var basis"):
        crossbasis(daily, panel, var="poly")
    with pytest.raises(ModelSpecError, match="max_lag"):
        crossbasis(daily, panel, max_lag=-1)
    with pytest.raises(ModelSpecError, match="no column 'trimp'"):
        crossbasis(daily, panel, column="trimp")
    daily, panel = _simulated(runners=3, days=20)
    cb = crossbasis(daily, panel, var="linear", lag="strata", lag_breaks=(3,), max_lag=6)
    res = fit_lmm(panel.assign(x=np.arange(len(panel), dtype=float)), exposures=["x"])
    with pytest.raises(ModelSpecError, match="no cross-basis term"):
        crosspred(cb, res, at=[1.0])


def test_lag_response_and_surface_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.plots_nonlinear import exposure_lag_contour, lag_response_plot

    daily, panel = _simulated(seed=5)
    cb = crossbasis(daily, panel, var="ns", var_df=2, lag="ns", lag_df=3, max_lag=6)
    res = fit_lmm(pd.concat([panel, cb.frame], axis=1), exposures=cb.names)
    surface = crosspred(cb, res, at=np.linspace(0, 20, 5))["surface"]
    ax = lag_response_plot(surface, at=10.0)
    np.testing.assert_allclose(ax.lines[0].get_ydata(),
                               surface.loc[surface["x"] == 10.0, "estimate"])
    with pytest.raises(ValueError, match="pick one"):
        lag_response_plot(surface)
    plt.close(ax.figure)
    ax = exposure_lag_contour(surface, xlabel="km per day")
    assert ax.get_ylabel() == "lag (days)"
    plt.close(ax.figure)
