"""reports.nonlinear: the report's section on splines, DLNM and sensitivity analyses, and its
parameters (issue 16).

Every number the section shows is recomputed here from direct model calls (ML fits and the
chi-square tail by hand, crosspred of an own DLNM fit, models.sensitivity), on the committed
demo processed folder.
"""

from __future__ import annotations

import dataclasses
import html as html_module
import json
import os
import re
import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import paths, reports
from analysis.errors import ReportError
from analysis.models import crossbasis, crosspred, fit_lmm, sensitivity
from analysis.reports.nonlinear import DLNM_AT_QUANTILE, nonlinear_section
from analysis.reports.parameters import (
    MAX_DLNM_LAG_DAYS,
    declared_parameters,
    parse_dlnm_param,
    parse_splines_param,
)

matplotlib.use("Agg")

EXPOSURE = "acwr_rolling"
OTHERS = ["mileage_jump", "shoe_km"]


@pytest.fixture(scope="module")
def view():
    return reports.load_cohort(paths.processed_dir("demo"), "recreational", salt="")


@pytest.fixture(scope="module")
def section(view, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nonlinear")
    out = nonlinear_section(view, splines=f"{EXPOSURE}:3", dlnm="distance_km:14",
                            sensitivity=True, exposures=OTHERS, folder=folder)
    return out, folder


def test_parse_parameters():
    assert parse_splines_param("") == {}
    assert parse_splines_param(" acwr_rolling:3, km_7d:4 ") == {"acwr_rolling": 3, "km_7d": 4}
    assert parse_dlnm_param("") is None
    assert parse_dlnm_param("distance_km:28") == ("distance_km", 28)
    for bad in ("acwr_rolling", "acwr_rolling:0", "acwr_rolling:x", ":3", "a:3,a:4",
                "acwr_rolling:11"):
        with pytest.raises(ReportError, match="splines"):
            parse_splines_param(bad)
    for bad in ("distance_km", "distance_km:0", f"distance_km:{MAX_DLNM_LAG_DAYS + 1}",
                "a:7,b:7", "distance_km:-3"):
        with pytest.raises(ReportError, match="dlnm"):
            parse_dlnm_param(bad)


def test_validate_parameters_checks_columns(view):
    params = {**reports.DEFAULT_PARAMETERS, **reports.NONLINEAR_PARAMETERS}
    columns = list(view.panel.columns)
    reports.validate_parameters({**params, "splines": "acwr_rolling:3"}, panel_columns=columns)
    with pytest.raises(ReportError, match="'nope' is not a panel column"):
        reports.validate_parameters({**params, "splines": "nope:3"}, panel_columns=columns)
    with pytest.raises(ReportError, match="not a column of the daily table"):
        reports.validate_nonlinear_parameters({"dlnm": "km:7"},
                                              daily_columns=view.daily.columns)
    with pytest.raises(ReportError, match="sensitivity must be true or false"):
        reports.validate_nonlinear_parameters({"sensitivity": "yes"})
    reports.validate_parameters(reports.DEFAULT_PARAMETERS, panel_columns=columns)


def test_nothing_requested_is_empty(view):
    empty = nonlinear_section(view)
    assert not empty.requested and empty.figures == {}
    assert reports.nonlinear_summary(empty) == {}


def test_spline_lr_test_equals_direct_ml_fits(view, section):
    sec, _ = section
    panel = view.panel
    exposures = [EXPOSURE, *OTHERS]
    spline = fit_lmm(panel, exposures=exposures, splines={EXPOSURE: 3}, reml=False,
                     nonlinearity=False)
    linear = fit_lmm(panel, exposures=exposures, reml=False)
    statistic = 2 * (spline.loglik - linear.loglik)
    test = sec.summary()["nonlinear"]["splines"][EXPOSURE]["lr_test"]
    assert test["statistic"] == pytest.approx(statistic, rel=1e-6)
    assert test["p_value"] == pytest.approx(stats.chi2.sf(statistic, 2), rel=1e-5)
    assert test["df"] == 2
    assert f"p {reports_p(test['p_value'])}" in sec.text[0]
    curve = sec.curves[EXPOSURE]["curve"]
    reference = sec.curves[EXPOSURE]["reference"]
    used = panel.dropna(subset=["pain", *exposures])[EXPOSURE]
    assert reference == pytest.approx(float(np.median(used)))
    assert curve["x"][0] == pytest.approx(used.min()) and curve["x"][-1] == pytest.approx(
        used.max())


def reports_p(p: float) -> str:
    from analysis.labels import format_p

    return format_p(p)


def test_dlnm_numbers_equal_own_fit(view, section):
    sec, _ = section
    cb = crossbasis(view.daily, view.panel, column="distance_km", max_lag=14)
    fit = fit_lmm(pd.concat([view.panel, cb.frame], axis=1), exposures=cb.names)
    loads = view.daily["distance_km"].to_numpy(float)
    at = round(float(np.quantile(loads[loads > 0], DLNM_AT_QUANTILE)), 1)
    pred = crosspred(cb, fit, at=[at])
    lag = sec.lag
    assert lag["at"] == at and lag["max_lag"] == 14 and lag["n_obs"] == fit.n_obs
    np.testing.assert_allclose(lag["lag_response"]["estimate"],
                               pred["surface"]["estimate"], rtol=1e-9)
    np.testing.assert_allclose(lag["lag_response"]["lag"], np.arange(15))
    assert lag["cumulative_at"]["estimate"] == pytest.approx(
        pred["cumulative"]["estimate"].iloc[0], rel=1e-9)
    # the cumulative effect is the sum of the lag-specific ones (same coefficients)
    assert lag["cumulative_at"]["estimate"] == pytest.approx(
        sum(lag["lag_response"]["estimate"]), rel=1e-9)
    assert lag["cumulative"]["x"][0] == 0.0 and lag["cumulative"]["estimate"][0] == 0.0


def test_sensitivity_table_is_models_sensitivity_labelled(view, section):
    sec, _ = section
    direct = sensitivity(view.panel, exposure=EXPOSURE, daily=view.daily,
                         outcome="pain", model="lmm")
    pd.testing.assert_frame_equal(sec.sensitivity_raw, direct)
    shown = sec.sensitivity
    assert list(shown.columns) == ["Analysis", "Term", "Effect (95 % CI)", "p", "Reports",
                                   "Note"]
    assert len(shown) == len(direct)
    text = shown.to_string()
    assert "acwr_rolling" not in text and "km_7d" not in text  # human labels only
    assert "natural spline, df 3" in set(shown["Analysis"])
    main = direct.iloc[0]
    assert shown["Effect (95 % CI)"].iloc[0].startswith(
        reports_number(main["estimate_step"]))


def reports_number(x: float) -> str:
    from analysis.labels import format_number

    return format_number(x)


def test_figures_saved_and_summary_is_json(view, section):
    sec, folder = section
    assert set(sec.figures) == {f"spline_{EXPOSURE}", "dlnm_distance_km_lag",
                                "dlnm_distance_km_cumulative", "dlnm_distance_km_surface"}
    for name in sec.figures:
        for fmt in ("svg", "png"):
            assert (folder / "figures" / f"{name}.{fmt}").stat().st_size > 1000
        assert sec.captions[name]
    summary = sec.summary()
    text = json.dumps(summary, allow_nan=False)
    assert set(summary["nonlinear"]) == {"splines", "dlnm", "sensitivity", "problems"}
    ids = set(view.panel["runner_id"].astype(str))
    assert "runner_id" not in text and not [r for r in ids if f'"{r}"' in text]
    assert summary["nonlinear"]["problems"] == []


def test_a_fit_that_fails_is_a_problem_line(view):
    broken = dataclasses.replace(view, panel=view.panel.assign(km_7d=np.nan))
    sec = nonlinear_section(broken, splines="km_7d:3")
    assert sec.figures == {}
    assert len(sec.problems) == 1 and sec.problems[0].startswith("spline on km_7d: not fitted")
    assert sec.summary()["nonlinear"]["problems"] == sec.problems
    with pytest.raises(ReportError, match="daily table"):
        nonlinear_section(view, dlnm="nope:7")


# --- the section in the cohort report (notebooks/cohort_report.ipynb) ------------------------


def _kneeload(*args: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KNEELOAD_ID_SALT"}
    return subprocess.run([sys.executable, "-m", "analysis.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def test_the_template_declares_the_sections_parameters():
    declared = declared_parameters(reports.template_path())
    assert {k: declared[k] for k in reports.NONLINEAR_PARAMETERS} == {
        "splines": "str", "dlnm": "str", "sensitivity": "bool"}
    assert set(reports.NONLINEAR_PARAMETERS) <= set(reports.DEFAULT_PARAMETERS)


@pytest.mark.slow
def test_a_report_run_with_a_spline_shows_the_curve_the_test_and_the_summary(view, tmp_path):
    """kneeload report --param splines=acwr_rolling:3: the report shows the section's heading,
    the curve (inline and as files), the LR test with the numbers of an in-process section
    on the report's own exposures, and summary.json carries its nonlinear block."""
    out = tmp_path / "out"
    proc = _kneeload("report", paths.processed_dir("demo"), "--out", out, "--cohort",
                     "recreational", "--param", f"splines={EXPOSURE}:3")
    assert proc.returncode == 0, proc.stderr
    folder = out / "recreational"
    html = (folder / "report.html").read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script|svg)\b.*?</\1>", " ",
                                                    html, flags=re.S)).split())
    expected = nonlinear_section(view, splines=f"{EXPOSURE}:3",
                                 exposures=reports.choose_exposures(view).chosen)
    test = expected.curves[EXPOSURE]["lr_test"]
    assert "Non-linear and lagged load" in text
    assert (f"chi-square {reports_number(test['statistic'])} on {test['df']} df" in text)
    assert f"spline_{EXPOSURE}" in expected.figures
    for fmt in ("svg", "png"):
        assert (folder / "figures" / f"spline_{EXPOSURE}.{fmt}").stat().st_size > 1000
    caption = " ".join(expected.captions[f"spline_{EXPOSURE}"].split())
    assert f"Figure: {caption}" in html_module.unescape(text)
    # the report without the section has 9 figures on the demo cohort (test_cohort)
    assert len(re.findall(r"<img[^>]*>|<svg\b.*?</svg>", html, flags=re.S)) == 10
    block = json.loads((folder / "summary.json").read_text())["nonlinear"]
    spline = block["splines"][EXPOSURE]
    assert spline["df"] == 3 and spline["n_obs"] == expected.curves[EXPOSURE]["n_obs"]
    np.testing.assert_allclose(spline["lr_test"]["statistic"], test["statistic"], rtol=1e-8)
    np.testing.assert_allclose(spline["lr_test"]["p_value"], test["p_value"], rtol=1e-8)
    np.testing.assert_allclose(spline["curve"]["estimate"],
                               expected.curves[EXPOSURE]["curve"]["estimate"], rtol=1e-8,
                               atol=1e-12)
    assert block["dlnm"] is None and block["sensitivity"] is None


@pytest.mark.parametrize(("param", "fragment"), [
    ("splines=acwr_rolling", "COLUMN:DF"),
    ("splines=nope:3", "'nope' is not a panel column"),
    ("dlnm=km:7", "'km' is not a column of the daily table"),
    ("dlnm=distance_km:500", "MAX_LAG"),
    ("sensitivity=maybe", "expected bool"),
])
def test_a_bad_section_parameter_is_one_line_exit_2(tmp_path, param, fragment):
    proc = _kneeload("report", paths.processed_dir("demo"), "--out", tmp_path / "out",
                     "--cohort", "recreational", "--param", param)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], \
        proc.stderr
    assert not (tmp_path / "out" / "recreational").exists()
