"""Time-to-event models (analysis.models.survival) against hand computation and R survival.

The R numbers (tests/reference/cox_reference.csv, cox_km_reference.csv) were written by
tests/reference/cox_reference.R (survival 3.5.3) from the committed counting-process rows
cox_sim1.csv, cox_sim2.csv (tests/reference/make_cox_fixtures.py, a simulation that does not
use kneeload) and cox_demo.csv (make_cox_demo.py: the demo's rows from survival_design).
They are compared on every run; the live test re-runs R when it is installed.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rtools import requires_r

from analysis import labels
from analysis.errors import ModelSpecError
from analysis.exposures import RUN_SPIKE_RATIO
from analysis.models.survival import (
    SPIKE_BANDS,
    SURVIVAL_MODELS,
    cox_fit,
    first_episode_curves,
    fit_counting_process,
    fit_survival,
    kaplan_meier,
    session_exposures,
    survival_design,
)
from analysis.pipeline import build, load_processed

REF = Path(__file__).parent / "reference"
ROOT = Path(__file__).parents[1]
KNEELOAD = shutil.which("kneeload") or str(ROOT / ".venv" / "bin" / "kneeload")
SIM_X = ["x_cont", "x_bin", "x_base"]
DEMO_X = ["mileage_jump", "rest_days_7d"]
DATASETS = {"sim1": SIM_X, "sim2": SIM_X, "demo": DEMO_X}
MODELS = {"cox": "cox", "ag": "andersen-gill", "pwp": "pwp"}
#: The brief's agreement bound with R; measured agreement is ~1e-13 (docs/models.md).
REL_TOL = 1e-4
#: Live R against the committed numbers: both are converged optima (coxph eps 1e-12), so
#: they agree far below this on any machine; 1e-7 leaves room for BLAS rounding.
LIVE_TOL = 1e-7


def _reference() -> pd.DataFrame:
    return pd.read_csv(REF / "cox_reference.csv", keep_default_na=False)


def _rows(dataset: str, model: str) -> pd.DataFrame:
    d = pd.read_csv(REF / f"cox_{dataset}.csv")
    if model == "cox":
        d = d[d["stratum"] == 1]
    if model == "pwp":
        d = d.assign(start=d["gap_start"], stop=d["gap_stop"])
    return d.assign(event=d["event"].astype(bool))


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


# --- hand-computed fixtures -------------------------------------------------------------------


def test_cox_on_three_subjects_matches_the_hand_solution():
    # x = (1, 0, 1), events at t = 1, 2, 3, no ties. Partial likelihood
    # e^b/(2e^b+1) * 1/(1+e^b) * 1; score 1 - 2u/(2u+1) - u/(1+u) = 0 with u = e^b gives
    # 2u^2 = 1: b = -ln(2)/2. Information 2u/(2u+1)^2 + u/(1+u)^2 at u = 1/sqrt(2).
    fit = cox_fit([0, 0, 0], [1, 2, 3], [True, True, True], np.array([[1.0], [0.0], [1.0]]),
                  zph_transform=None)
    u = 1 / math.sqrt(2)
    info = 2 * u / (2 * u + 1) ** 2 + u / (1 + u) ** 2
    assert fit.converged
    assert fit.coef[0] == pytest.approx(-math.log(2) / 2, rel=1e-12)
    assert math.sqrt(fit.vcov[0, 0]) == pytest.approx(1 / math.sqrt(info), rel=1e-10)
    assert fit.loglik == pytest.approx(-math.log(2) / 2 - math.log(2 * u + 1)
                                       - math.log(1 + u), rel=1e-12)
    # score residuals add up to the score (0 at the optimum)
    assert fit.score_residuals.sum() == pytest.approx(0.0, abs=1e-12)


def test_efron_ties_by_hand():
    # two tied events at t = 1 among x = (1, 0, 0): Efron's denominator for the second
    # death is S0 - (1/2)(e^b + 1). At b = 0: S0 = 3, loglik = -log(3) - log(3 - 1) and the
    # score is 1 - [1/3 + (1 - 1/2)/(3 - 1)] = 1 - 1/3 - 1/4 = 5/12.
    fit = cox_fit([0, 0, 0], [1, 1, 2], [True, True, False], np.array([[1.0], [0.0], [0.0]]),
                  zph_transform=None)
    assert fit.loglik_null == pytest.approx(-math.log(3) - math.log(2), rel=1e-12)
    # at the optimum the Efron score is zero: 1 = u/(u+2) + (u/2)/((u+2) - (u+1)/2)
    u = math.exp(fit.coef[0])
    assert u / (u + 2) + (u / 2) / ((u + 2) - (u + 1) / 2) == pytest.approx(1.0, rel=1e-10)


def test_kaplan_meier_by_hand():
    # A (0,2] event, B (0,3] censored, C (0,3] event, D (1,4] event.
    # t=2: at risk A,B,C,D (n 4, d 1): S = 3/4; t=3: B,C,D (n 3, d 1): S = 1/2;
    # t=4: D (n 1, d 1): S = 0. Greenwood SE(S): 3/4 sqrt(1/(4*3)) = 0.21651,
    # 1/2 sqrt(1/12 + 1/6) = 0.25.
    rows = pd.DataFrame({"start": [0, 0, 0, 1], "stop": [2, 3, 3, 4],
                         "event": [True, False, True, True]})
    km = kaplan_meier(rows)
    assert km["time"].tolist() == [2, 3, 4]
    assert km["n_risk"].tolist() == [4, 3, 1]
    np.testing.assert_allclose(km["survival"], [0.75, 0.5, 0.0])
    np.testing.assert_allclose(km["cum_incidence"], [0.25, 0.5, 1.0])
    np.testing.assert_allclose(km["std_error"][:2], [0.75 * math.sqrt(1 / 12), 0.25])


# --- against R survival ---------------------------------------------------------------------


@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("model", list(MODELS))
def test_log_hr_robust_se_and_ph_test_agree_with_coxph(dataset, model):
    ref = _reference()
    ref = ref[(ref["dataset"] == dataset) & (ref["model"] == model)]
    assert len(ref) > 0
    rows = _rows(dataset, model)
    result = fit_counting_process(rows, exposures=DATASETS[dataset], model=MODELS[model])
    got = result.table.set_index("term")

    def r(kind):
        return ref[ref["kind"] == kind].set_index("term")["value"]

    terms = DATASETS[dataset]
    assert result.converged
    assert _relative(got.loc[terms, "estimate"], r("coef")[terms]) < REL_TOL
    assert _relative(got.loc[terms, "std_error"], r("robust_se")[terms]) < REL_TOL
    assert _relative(result.extra["naive_std_error"], r("se")[terms]) < REL_TOL
    assert result.loglik == pytest.approx(float(r("loglik").iloc[0]), rel=1e-9)
    zph = pd.DataFrame(result.extra["ph_test"]).set_index("term")
    assert _relative(zph["chisq"], r("zph_km_chisq")[zph.index]) < REL_TOL
    assert _relative(zph["p_value"], r("zph_km_p")[zph.index]) < REL_TOL
    assert result.n_obs == len(rows)
    assert result.extra["n_events"] == int(rows["event"].sum())


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_ph_test_identity_transform_agrees_with_cox_zph(dataset):
    ref = _reference()
    for model in MODELS:
        rows = _rows(dataset, model)
        result = fit_counting_process(rows, exposures=DATASETS[dataset], model=MODELS[model],
                                      zph_transform="identity")
        sel = ref[(ref["dataset"] == dataset) & (ref["model"] == model)
                  & (ref["kind"] == "zph_identity_chisq")].set_index("term")["value"]
        zph = pd.DataFrame(result.extra["ph_test"]).set_index("term")
        assert _relative(zph["chisq"], sel[zph.index]) < REL_TOL


def test_a_ph_violation_is_a_problem_of_the_result():
    # R: cox.zph(km) p = 0.037 for x_base in the AG fit of sim1 (cox_reference.csv)
    result = fit_counting_process(_rows("sim1", "ag"), exposures=SIM_X, model="andersen-gill")
    assert result.status == "warning"
    assert any(p.startswith("proportional hazards: x_base p = 0.0365") for p in result.problems)
    clean = fit_counting_process(_rows("sim1", "cox"), exposures=SIM_X, model="cox")
    assert clean.problems == []


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_kaplan_meier_by_band_agrees_with_survfit(dataset):
    band = "x_bin" if dataset != "demo" else "jump_category"
    rows = _rows(dataset, "cox")
    if dataset != "demo":
        rows = rows.assign(x_bin=rows["x_bin"].astype(str))
    km = kaplan_meier(rows, by=band).rename(columns={band: "band"})
    ref = pd.read_csv(REF / "cox_km_reference.csv", dtype={"band": str})
    ref = ref[ref["dataset"] == dataset]
    both = km.merge(ref, on=["band", "time"], how="outer", indicator=True)
    assert (both["_merge"] == "both").all()
    assert (both["n_risk_x"] == both["n_risk_y"]).all()
    np.testing.assert_allclose(both["survival"], both["surv"], rtol=1e-12)
    np.testing.assert_allclose(both["std_error"], both["std_err"], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(both["surv_low"], both["lower"], rtol=1e-10)
    np.testing.assert_allclose(both["surv_high"], both["upper"], rtol=1e-10)


@requires_r("survival")
def test_live_r_reproduces_the_committed_reference(tmp_path):
    subprocess.run(["Rscript", str(REF / "cox_reference.R"), str(tmp_path)], cwd=ROOT,
                   check=True, capture_output=True)
    live = pd.read_csv(tmp_path / "cox_reference.csv", keep_default_na=False)
    committed = _reference()
    assert live[["dataset", "model", "kind", "term"]].equals(
        committed[["dataset", "model", "kind", "term"]])
    np.testing.assert_allclose(live["value"], committed["value"], rtol=LIVE_TOL, atol=1e-12)
    km_live = pd.read_csv(tmp_path / "cox_km_reference.csv")
    km_committed = pd.read_csv(REF / "cox_km_reference.csv")
    np.testing.assert_allclose(km_live["surv"], km_committed["surv"], rtol=LIVE_TOL)


# --- the design from a processed folder -------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("survival") / "demo"
    build(ROOT / "data" / "raw" / "demo", out)
    return out


def test_the_demo_design_is_the_committed_reference_rows(demo):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_cox_demo", REF / "make_cox_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.demo_rows(load_processed(demo))
    committed = pd.read_csv(REF / "cox_demo.csv")
    assert list(rows.columns) == list(committed.columns)
    assert len(rows) == len(committed)
    for col in committed.columns:
        if committed[col].dtype == float:
            np.testing.assert_allclose(rows[col].to_numpy(float), committed[col], rtol=1e-12)
        else:
            assert rows[col].astype(str).tolist() == committed[col].astype(str).tolist(), col


def test_design_rows_are_the_days_at_risk_of_episodes_at_risk(demo):
    from analysis.episodes import at_risk

    processed = load_processed(demo)
    ag = survival_design(processed, model="andersen-gill", exposures=["km_7d"])
    first = survival_design(processed, model="cox", exposures=["km_7d"])
    gap = survival_design(processed, model="pwp", exposures=["km_7d"])
    risk = at_risk(processed["daily"], _episodes(processed), reports=processed["panel"])
    assert len(ag) == int(risk["at_risk"].sum())
    assert int(ag["event"].sum()) == int(risk["event"].sum())
    assert len(first) == int(risk["at_risk_first"].sum())
    assert int(first["event"].sum()) == int(risk["first_event"].sum())
    # the same days; gap time restarts after each episode, episode 1 keeps follow-up time
    assert (gap["runner_id"] == ag["runner_id"]).all() and (gap["date"] == ag["date"]).all()
    one = gap["stratum"] == 1
    assert (gap.loc[one, "start"] == ag.loc[one, "start"]).all()
    later = gap.loc[~one].groupby(["runner_id", "stratum"])["start"].min()
    assert (later == 0).all()
    # exposures at the 7-day reference day
    daily = processed["daily"].set_index(["runner_id", "date"])["km_7d"]
    keys = list(zip(ag["runner_id"], ag["reference_date"], strict=True))
    np.testing.assert_allclose(ag["km_7d"].to_numpy(float),
                               daily.reindex(keys).to_numpy(float), equal_nan=True)
    assert ((ag["date"] - ag["reference_date"]).dt.days == 7).all()


def _episodes(processed):
    from analysis.models.survival import episodes_of

    return episodes_of(processed)


def test_session_rows_give_the_day_level_fit_and_spikes_are_run_spikes(demo):
    processed = load_processed(demo)
    day = survival_design(processed, model="andersen-gill", exposures=["spike_ratio"])
    session = survival_design(processed, model="andersen-gill", exposures=["spike_ratio"],
                              unit="session")
    assert len(session) < len(day)
    assert (session.loc[session["spike_ratio"].notna(), "event"].sum()
            == day.loc[day["spike_ratio"].notna(), "event"].sum())
    a = fit_counting_process(day, exposures=["spike_ratio"], model="andersen-gill")
    b = fit_counting_process(session, exposures=["spike_ratio"], model="andersen-gill")
    # merging days with equal covariates leaves risk sets and the partial likelihood alone
    assert b.term("spike_ratio")["estimate"] == pytest.approx(
        a.term("spike_ratio")["estimate"], rel=1e-10)
    assert b.term("spike_ratio")["std_error"] == pytest.approx(
        a.term("spike_ratio")["std_error"], rel=1e-10)
    # a session ratio > RUN_SPIKE_RATIO on a day is what exposures' run_spike (any spike in
    # the last 7 days) is built from
    daily = processed["daily"].sort_values(["runner_id", "date"]).reset_index(drop=True)
    spikes = session_exposures(daily)
    spike_day = ((spikes["spike_ratio"] > RUN_SPIKE_RATIO) & (daily["n_runs"] > 0)).astype(int)
    any7 = spike_day.groupby(daily["runner_id"]).transform(
        lambda s: s.rolling(7, min_periods=1).max())
    known = daily["run_spike"].notna() & daily["in_follow_up"]
    assert (any7[known].astype(bool) == daily.loc[known, "run_spike"].astype(bool)).all()
    bands = survival_design(processed, model="andersen-gill", exposures=["spike_band"],
                            unit="session")
    assert set(bands["spike_band"].dropna().unique()) <= set(SPIKE_BANDS)


def test_spike_denominator_is_the_one_of_run_spike(demo):
    """One definition (issue 15 part 3): the session ratio's denominator is
    exposures.longest_run_before, and the day's run_spike flag is "ratio > RUN_SPIKE_RATIO"
    on that same denominator, day by day (not only through the 7-day window)."""
    from analysis.exposures import longest_run_before

    daily = load_processed(demo)["daily"].sort_values(["runner_id", "date"]).reset_index(
        drop=True)
    before = longest_run_before(daily)
    # hand rule on one runner: max of longest_run_km over the 30 rows before, when all 30
    # days exist in the calendar (the build's lead-in covers them from day 31 on)
    one = daily[daily["runner_id"] == daily["runner_id"].iloc[0]]
    km = one["longest_run_km"].to_numpy(float)
    hand = np.full(len(km), np.nan)
    for i in range(30, len(km)):
        hand[i] = km[i - 30:i].max()
    np.testing.assert_array_equal(before[one.index], hand)
    spikes = session_exposures(daily)
    ran = daily["n_runs"] > 0
    on_run_days = spikes.loc[ran, "spike_ratio"]
    np.testing.assert_allclose(on_run_days, daily.loc[ran, "longest_run_km"] / before[ran],
                               rtol=0, atol=0)
    assert np.isfinite(before[ran]).sum() > 0.5 * ran.sum()  # most sessions have a ratio


# --- errors and the CLI ---------------------------------------------------------------------


def test_bad_requests_are_model_spec_errors():
    rows = _rows("sim1", "ag")
    with pytest.raises(ModelSpecError, match="unknown time-to-event model"):
        fit_counting_process(rows, exposures=SIM_X, model="weibull")
    with pytest.raises(ModelSpecError, match="no column"):
        fit_counting_process(rows, exposures=["nope"], model="cox")
    with pytest.raises(ModelSpecError, match="constant or collinear"):
        fit_counting_process(rows.assign(c=1.0), exposures=["c"], model="cox")
    with pytest.raises(ModelSpecError, match="no episodes"):
        fit_counting_process(rows.assign(event=False), exposures=SIM_X, model="cox")


def test_a_band_without_episodes_is_an_infinite_estimate_problem():
    rows = _rows("sim2", "ag")
    # every episode on a band-"a" day: band "b" (vs "a") has a hazard ratio of 0
    noise = np.random.default_rng(0).choice(["a", "b"], size=len(rows))
    rows = rows.assign(band=np.where(rows["event"], "a", noise))
    result = fit_counting_process(rows, exposures=["band"], model="andersen-gill")
    assert "infinite estimate (monotone likelihood): C(band)[T.b]" in result.problems
    # kneeload fit prints it as the report's table does, not "HR 0.0 (0.0 to 0.0)"
    from analysis.cli import _hazard_lines

    assert _hazard_lines(result) == ["C(band)[T.b]: HR not estimable (infinite estimate)"]


def test_cli_names_the_models_of_the_package():
    from analysis.cli import SURVIVAL_MODEL_NAMES

    assert tuple(SURVIVAL_MODELS) == SURVIVAL_MODEL_NAMES


def test_cli_round_trip_and_design_out_refit(demo, tmp_path):
    out, design = tmp_path / "res.json", tmp_path / "rows.csv"
    proc = subprocess.run([KNEELOAD, "fit", str(demo), "--model", "cox", "--exposures",
                           ",".join(DEMO_X), "--out", str(out), "--design-out", str(design)],
                          capture_output=True, text=True, check=True)
    assert "cox:" in proc.stderr
    result = json.loads(out.read_text())
    table = pd.DataFrame(result["table"]).set_index("term")
    ref = _reference()
    ref = ref[(ref["dataset"] == "demo") & (ref["model"] == "cox")]
    coef = ref[ref["kind"] == "coef"].set_index("term")["value"]
    robust = ref[ref["kind"] == "robust_se"].set_index("term")["value"]
    assert _relative(table.loc[DEMO_X, "estimate"], coef[DEMO_X]) < REL_TOL
    assert _relative(table.loc[DEMO_X, "std_error"], robust[DEMO_X]) < REL_TOL
    np.testing.assert_allclose(table["hazard_ratio"], np.exp(table["estimate"]))
    # the printed lines read per reading step, as the report does (per +10 % mileage)
    from analysis.effects import reading_unit

    for term in DEMO_X:
        unit = reading_unit(term)
        hr, low, high = labels.format_interval(
            *(np.exp(table.loc[term, c] * unit.step) for c in ("estimate", "ci_low", "ci_high")),
            null=1.0)
        printed = f"  {term}: HR {hr} {unit.label} (95 % CI {low} to {high})"
        assert printed in proc.stderr, (printed, proc.stderr)
    # the design written is exactly the rows fitted: refitting it gives the same numbers
    rows = pd.read_csv(design)
    assert len(rows) == result["n_obs"] and rows[DEMO_X].notna().all().all()
    refit = fit_counting_process(rows, exposures=DEMO_X, model="cox")
    np.testing.assert_allclose(refit.table["estimate"], table["estimate"], rtol=1e-12)
    np.testing.assert_allclose(refit.table["std_error"], table["std_error"], rtol=1e-12)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--model", "cox", "--se", "robust"], "--se does not apply to --model cox"),
    (["--model", "pwp", "--exposures", "nope"], "no daily column(s) nope"),
    (["--model", "lmm", "--design-out", "x.csv"], "--design-out applies to the time-to-event"),
    (["--model", "andersen-gill", "--unit", "week"], "unit must be one of"),
])
def test_cli_bad_options_are_one_line_exit_2(demo, tmp_path, args, fragment):
    # in-process (the round trip above runs the real command): four subprocesses cost 10 s
    from typer.testing import CliRunner

    from analysis.cli import app

    proc = CliRunner().invoke(app, ["fit", str(demo), "--out", str(tmp_path / "r.json"),
                                    *args])
    assert proc.exit_code == 2
    lines = [line for line in proc.output.splitlines() if line]
    assert len(lines) == 1 and fragment in lines[0], proc.output


# --- the simulator's hazard outcome -------------------------------------------------------


def test_simulated_hazard_episodes_are_the_episodes_the_build_finds(tmp_path):
    from analysis.simulate import simulate_dataset, write_dataset

    data = simulate_dataset(runners_per_cohort=15, weeks=20, cohorts=2, seed=3,
                            outcome="hazard", report_missing_prob=0.0)
    truth = data.truth
    assert truth["hazard_ratios"]["mileage_jump"] == pytest.approx(math.exp(0.7))
    write_dataset(data, tmp_path / "raw")
    build(tmp_path / "raw", tmp_path / "p")
    processed = load_processed(tmp_path / "p")
    episodes = _episodes(processed)
    # every simulated onset is an incident episode of analysis.episodes, and no other
    assert not episodes["prevalent"].any()
    assert len(episodes) == truth["episodes"] >= 10
    rows = survival_design(processed, model="andersen-gill", exposures=["mileage_jump"])
    assert int(rows["event"].sum()) == truth["episodes"]


def test_first_episode_curves_by_nielsen_band(demo):
    from analysis.exposures import JUMP_CATEGORIES

    curves = first_episode_curves(load_processed(demo))
    assert set(curves["jump_category"]) <= set(JUMP_CATEGORIES)
    # the same numbers as survfit on the committed demo rows (cox_km_reference.csv)
    ref = pd.read_csv(REF / "cox_km_reference.csv", dtype={"band": str})
    ref = ref[ref["dataset"] == "demo"]
    got = curves.assign(band=curves["jump_category"].astype(str)).merge(
        ref, on=["band", "time"], how="inner")
    assert len(got) == len(ref)
    np.testing.assert_allclose(got["cum_incidence"], 1 - got["surv"], rtol=1e-12)


def test_newton_converges_when_the_loglik_rounding_exceeds_a_fixed_tolerance(tmp_path):
    # bench_survival_coverage study 1045: the PWP log-likelihood (-920.87) moved by 2e-12 of
    # rounding at the optimum, and a fixed 1e-12 step-halving tolerance kept halving a
    # converged step for 50 iterations ("not converged" with the right estimates)
    from analysis.simulate import simulate_dataset, write_dataset

    data = simulate_dataset(runners_per_cohort=60, weeks=30, cohorts=3, seed=1045,
                            outcome="hazard", report_missing_prob=0.0,
                            effects={"mileage_jump": 0.7, "rest_days_7d": -0.15,
                                     "shoe_km": 0.0})
    write_dataset(data, tmp_path / "raw")
    build(tmp_path / "raw", tmp_path / "p")
    result = fit_survival(load_processed(tmp_path / "p"), model="pwp", exposures=DEMO_X)
    assert result.converged and result.extra["newton_decrement"] < 1e-18
    assert result.term("mileage_jump")["estimate"] == pytest.approx(0.79990526, rel=1e-6)
