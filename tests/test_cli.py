"""The kneeload command as a user (or cron) runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import labels

KNEELOAD = str(Path(sys.executable).with_name("kneeload"))


def run(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([KNEELOAD, *map(str, args)], capture_output=True, text=True,
                          check=False, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"kneeload {args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_help_lists_the_commands():
    out = run("--help", check=True).stdout
    for command in ("simulate", "build", "fit", "report"):
        assert command in out


def test_build_of_a_missing_folder_is_one_line_exit_2(tmp_path):
    assert_one_line_error(run("build", tmp_path / "nope", "--out", tmp_path / "out"),
                          "nope", "does not exist")


def test_build_names_the_file_and_the_missing_column(tmp_path, small_raw):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("runners.csv", "pain.csv", "shoes.csv"):
        (raw / name).write_bytes((small_raw / name).read_bytes())
    runs = pd.read_csv(small_raw / "runs.csv").drop(columns="distance_km")
    runs.to_csv(raw / "runs.csv", index=False)
    assert_one_line_error(run("build", raw, "--out", tmp_path / "out"),
                          "runs.csv", "distance_km")
    assert not (tmp_path / "out").exists()


def test_fit_writes_a_tidy_json_and_csv(tmp_path, small_processed):
    out = tmp_path / "fit.json"
    proc = run("fit", small_processed.out_dir, "--out", out, check=True)
    assert "converged" in proc.stderr
    result = json.loads(out.read_text())
    terms = [row["term"] for row in result["table"]]
    assert terms == ["Intercept", "mileage_jump", "shoe_km", "rest_days_7d"]
    assert result["n_runners"] == 12
    for key in ("estimate", "std_error", "ci_low", "ci_high", "p_value"):
        assert all(isinstance(row[key], float) for row in result["table"])
    csv = tmp_path / "fit.csv"
    run("fit", small_processed.out_dir / "panel.parquet", "--out", csv, "--cohort", "novice",
        check=True)
    table = pd.read_csv(csv)
    assert list(table["term"]) == terms


def test_fit_of_an_unknown_cohort_is_one_line_exit_2(tmp_path, small_processed):
    assert_one_line_error(
        run("fit", small_processed.out_dir, "--out", tmp_path / "x.json", "--cohort", "elite"),
        "elite", "cohort")


def test_fit_of_an_unknown_exposure_is_one_line_exit_2(tmp_path, small_processed):
    assert_one_line_error(
        run("fit", small_processed.out_dir, "--out", tmp_path / "x.json",
            "--exposures", "mileage_jump,heart_rate"),
        "heart_rate")


@pytest.mark.slow
def test_simulate_build_fit_report_end_to_end(tmp_path):
    """The whole walking skeleton through the command line, with real papermill kernels."""
    raw, processed, reports = tmp_path / "raw", tmp_path / "processed", tmp_path / "reports"
    run("simulate", "--out", raw, "--runners-per-cohort", "5", "--weeks", "8", "--cohorts", "2",
        "--seed", "3", check=True)
    run("build", raw, "--out", processed, check=True)
    run("fit", processed, "--out", tmp_path / "fit.json", check=True)
    proc = run("report", processed, "--out", reports, check=True)
    assert "2 cohorts: 2 ok" in proc.stderr

    index = (reports / "index.html").read_text()
    for cohort in ("novice", "recreational"):
        assert f'href="{cohort}/report.html"' in index
        html = (reports / cohort / "report.html").read_text()
        # The model's table names the term by its human label (analysis.labels), not the
        # column; the label is looked for after the model table's caption, so a report
        # whose model section is missing fails here.
        _, table_2, model_part = html.partition("Table 2.")
        assert "Mixed model" in html and table_2
        assert labels.term_label("mileage_jump") in model_part.partition("Table 3.")[0]
        assert "from analysis import" not in html  # code cells are hidden
        assert (reports / cohort / "report.ipynb").is_file()
        summary = json.loads((reports / cohort / "summary.json").read_text())
        assert summary["n_runners"] == 5
        assert {h["term"] for h in summary["headline"]} == {
            "mileage_jump", "shoe_km", "rest_days_7d"}
        jump = next(h for h in summary["headline"] if h["term"] == "mileage_jump")
        # The index reads effects per +10 % mileage jump, i.e. the estimate x 0.10.
        assert f"{jump['estimate'] * 0.10:+.2f} NRS" in index
    manifest = json.loads((reports / "manifest.json").read_text())
    assert {c["status"] for c in manifest["cohorts"].values()} == {"ok"}

    again = run("report", processed, "--out", reports, "--changed-only", check=True)
    assert "2 skipped" in again.stderr


@pytest.mark.parametrize(("args", "fragment"), [
    (("simulate", "--outcome", "poisson"), "outcome"),
    (("simulate", "--weeks", "3", "--cohorts", "5", "--runners-per-cohort", "1",
      "--outcome", "x"), "outcome"),
])
def test_bad_simulate_arguments_are_one_line_exit_2(tmp_path, args, fragment):
    assert_one_line_error(run(*args, "--out", tmp_path / "sim"), fragment)


def test_bad_lags_are_one_line_exit_2(tmp_path, small_raw):
    assert_one_line_error(run("build", small_raw, "--out", tmp_path / "p", "--lags", "a"),
                          "--lags", "whole numbers")


def test_power_says_when_a_design_is_not_estimable(tmp_path):
    proc = run("power", "--out", tmp_path / "power.csv", "--runners", "6", "--weeks", "6",
               "--n-sims", "2", "--effect", "mileage_jump=0.08", check=True)
    assert "6 runners x 6 weeks: not estimable" in proc.stderr
    assert "nan" not in proc.stderr
    table = pd.read_csv(tmp_path / "power.csv")
    assert table["power"].isna().all() and table["not_estimable"].notna().all()


# --- kneeload fit options: 1:1 onto the Python API (issue 10) --------------------------------

FIT_EXPOSURES = ["mileage_jump", "shoe_km", "rest_days_7d"]


def _cli_table(tmp_path, processed, *args: str) -> pd.DataFrame:
    out = tmp_path / "fit.json"
    run("fit", processed, "--out", out, *args, check=True)
    return pd.DataFrame.from_records(json.loads(out.read_text())["table"]).set_index("term")


@pytest.mark.parametrize(("args", "model", "keywords"), [
    (("--method", "ml"), "lmm", {"reml": False}),
    (("--method", "ML", "--df", "wald"), "lmm", {"reml": False, "ddf": "wald"}),
    (("--df", "satterthwaite", "--se", "robust"), "lmm",
     {"ddf": "satterthwaite", "vcov": "robust"}),
    (("--correlation", "ar1", "--df", "wald"), "lmm", {"correlation": "ar1", "ddf": "wald"}),
    (("--model", "glmm", "--outcome", "pain_any", "--se", "robust"), "glmm",
     {"outcome": "pain_any", "vcov": "robust"}),
    (("--se", "CR0"), "lmm", {"vcov": "CR0"}),
    (("--se", "cr1", "--df", "wald"), "lmm", {"vcov": "CR1", "ddf": "wald"}),
], ids=["ml", "ml-wald", "satterthwaite-robust", "ar1", "glmm-robust", "cr0", "cr1-wald"])
def test_fit_options_give_the_python_apis_numbers(tmp_path, small_processed, args, model,
                                                  keywords):
    """Each option maps onto one keyword of the same fit_model call the Python API makes."""
    from analysis.models import fit_model

    panel = pd.read_parquet(small_processed.out_dir / "panel.parquet")
    expected = fit_model(panel, model=model, exposures=FIT_EXPOSURES, **keywords).table
    ours = _cli_table(tmp_path, small_processed.out_dir, *args)
    expected = expected.set_index("term")
    for column in ("estimate", "std_error", "ci_low", "ci_high", "p_value", "estimate_step"):
        np.testing.assert_allclose(ours[column], expected[column], rtol=1e-9, atol=1e-12,
                                   err_msg=column)


def test_fit_method_ml_differs_from_the_reml_default(tmp_path, small_processed):
    """The option really changes the fit (a test that --method is not silently ignored)."""
    reml = json.loads(run_json(tmp_path / "reml.json", small_processed.out_dir))
    ml = json.loads(run_json(tmp_path / "ml.json", small_processed.out_dir, "--method", "ml"))
    assert (reml["method"], ml["method"]) == ("REML", "ML")
    assert ml["loglik"] != pytest.approx(reml["loglik"], rel=1e-6)


def run_json(out, processed, *args: str) -> str:
    run("fit", processed, "--out", out, *args, check=True)
    return out.read_text()


def test_fit_output_carries_status_and_reading_units(tmp_path, small_processed):
    out = tmp_path / "fit.json"
    proc = run("fit", small_processed.out_dir, "--out", out, check=True)
    result = json.loads(out.read_text())
    assert result["status"] in {"ok", "warning"}
    assert result["problems"] == [] if result["status"] == "ok" else result["problems"]
    jump = next(r for r in result["table"] if r["term"] == "mileage_jump")
    assert jump["step"] == 0.10 and jump["step_label"] == "per +10 % week-over-week mileage"
    assert jump["estimate_step"] == pytest.approx(jump["estimate"] * 0.10, rel=1e-12)
    # the estimate and its interval with the decimals the interval supports
    # (labels.format_interval): never more than 2 significant digits of its half-width
    text, low, high = labels.format_interval(jump["estimate_step"], jump["ci_low_step"],
                                             jump["ci_high_step"], signed=True, null=0.0)
    assert f"mileage_jump: {text} NRS points per +10 % week-over-week mileage (95 % CI " \
           f"{low} to {high})" in proc.stderr
    assert f"status {result['status']}" in proc.stderr


@pytest.mark.parametrize(("args", "fragments"), [
    (("--method", "bayes"), ("--method", "reml, ml", "bayes")),
    (("--df", "kr"), ("--df", "wald, satterthwaite")),
    (("--se", "hc3"), ("--se", "model, robust, CR0, CR1")),
    (("--model", "glmm", "--se", "CR0"), ("--se CR0", "does not apply to --model glmm")),
    (("--format", "xml"), ("--format", "json, csv", "xml")),
    (("--format", "XML", "--se", "robust"), ("--format",)),
    (("--correlation", "ar2"), ("--correlation", "none, ar1")),
    (("--model", "glmm", "--method", "ml"), ("--method", "does not apply to --model glmm")),
    (("--model", "gee", "--correlation", "ar1"), ("--correlation", "--model gee")),
    (("--model", "probit"), ("--model", "lmm, glmm, gee")),
])
def test_bad_fit_options_are_one_line_exit_2(tmp_path, small_processed, args, fragments):
    assert_one_line_error(run("fit", small_processed.out_dir, "--out", tmp_path / "x.json",
                              *args), *fragments)
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("model", ["lmm", "cox"])
@pytest.mark.parametrize("second", ["mileage_jump:2", "mileage_jump:3"])
def test_a_spline_column_given_twice_is_one_line_exit_2(tmp_path, small_processed, model,
                                                        second):
    """--spline mileage_jump:3 --spline mileage_jump:2 kept the last silently (review 3)."""
    out = tmp_path / "x.json"
    assert_one_line_error(run("fit", small_processed.out_dir, "--model", model, "--exposures",
                              "mileage_jump", "--spline", "mileage_jump:3", "--spline", second,
                              "--out", out),
                          "--spline mileage_jump given more than once",
                          f"(mileage_jump:3, {second})")
    assert not out.exists()


def test_fit_out_must_name_a_known_format(tmp_path, small_processed):
    """--out x.xml without --format wrote JSON silently (review D8)."""
    out = tmp_path / "x.xml"
    assert_one_line_error(run("fit", small_processed.out_dir, "--out", out),
                          "--out", "x.xml", ".json or .csv", "--format")
    assert not out.exists()
    run("fit", small_processed.out_dir, "--out", out, "--format", "CSV", check=True)
    assert pd.read_csv(out)["term"].iloc[0] == "Intercept"  # --format wins over the suffix


def test_fit_cr0_and_cr1_differ_by_the_small_sample_factor(tmp_path, small_processed):
    """CR1 = CR0 x m / (m - 1) for m runners, so the SEs differ by sqrt(12 / 11) here."""
    cr0 = _cli_table(tmp_path, small_processed.out_dir, "--se", "CR0", "--df", "wald")
    cr1 = _cli_table(tmp_path, small_processed.out_dir, "--se", "CR1", "--df", "wald")
    robust = _cli_table(tmp_path, small_processed.out_dir, "--se", "robust", "--df", "wald")
    m = 12
    np.testing.assert_allclose(cr1["std_error"] / cr0["std_error"], np.sqrt(m / (m - 1)),
                               rtol=1e-9)
    np.testing.assert_allclose(robust["std_error"], cr1["std_error"], rtol=1e-12)


def test_fit_csv_says_whether_the_fit_can_be_trusted(tmp_path, small_processed):
    """The CSV carries status, problems and converged on every row, as the JSON does
    (review D6). Random slopes on shoe_km and mileage_jump are singular on this small
    study."""
    args = ("--random-slope", "shoe_km,mileage_jump")
    js, csv = tmp_path / "fit.json", tmp_path / "fit.csv"
    run("fit", small_processed.out_dir, "--out", js, *args, check=True)
    proc = run("fit", small_processed.out_dir, "--out", csv, *args, check=True)
    result = json.loads(js.read_text())
    table = pd.read_csv(csv, keep_default_na=False)
    assert result["status"] == "warning" and "singular fit" in result["problems"]
    assert list(table.columns[-3:]) == ["status", "problems", "converged"]
    assert (table["status"] == "warning").all()
    assert (table["problems"] == "; ".join(result["problems"])).all()
    assert (table["converged"].astype(str) == str(result["converged"])).all()
    assert "status warning" in proc.stderr and "problem: singular fit" in proc.stderr
    clean = tmp_path / "clean.csv"
    run("fit", small_processed.out_dir, "--out", clean, check=True)
    ok = json.loads(run_json(tmp_path / "clean.json", small_processed.out_dir))
    clean_table = pd.read_csv(clean, keep_default_na=False)
    assert (clean_table["status"] == ok["status"]).all()
    assert (clean_table["problems"] == "; ".join(ok["problems"])).all()


def test_fit_reads_a_dummy_covariate_vs_the_reference_level(tmp_path, small_processed):
    """``C(sex)[T.M]`` is a level against the reference, not "per unit" (review D8)."""
    out = tmp_path / "fit.json"
    proc = run("fit", small_processed.out_dir, "--out", out, "--covariates", "sex",
               check=True)
    row = next(r for r in json.loads(out.read_text())["table"] if r["term"] == "C(sex)[T.M]")
    assert row["step"] == 1.0 and row["step_label"] == "vs the reference level"
    assert row["estimate_step"] == row["estimate"]
    line = next(ln for ln in proc.stderr.splitlines() if "C(sex)[T.M]" in ln)
    text, low, high = labels.format_interval(row["estimate"], row["ci_low"], row["ci_high"],
                                             signed=True, null=0.0)
    assert line.strip() == (f"C(sex)[T.M]: {text} NRS points vs the reference level "
                            f"(95 % CI {low} to {high})")
    assert "per unit" not in line


@pytest.mark.parametrize(("args", "fragments"), [
    (("--effect", "mileage_jump=nan"), ("--effect", "mileage_jump=nan", "finite")),
    (("--effect", "mileage_jump=inf"), ("--effect", "finite")),
    (("--effect", "shoe_km=-inf", "--model", "glmm"), ("--effect", "finite")),
    (("--effect", "=0.08"), ("--effect must look like",)),
    (("--alpha", "1.5"), ("--alpha", "between 0 and 1", "1.5")),
    (("--alpha", "0"), ("--alpha",)),
    (("--alpha", "nan"), ("--alpha",)),
])
def test_bad_power_arguments_are_one_line_exit_2(tmp_path, args, fragments):
    """Before: nan printed "power 0.00" (every fit failed), inf 1.00, --alpha 1.5 ran."""
    out = tmp_path / "power.csv"
    assert_one_line_error(run("power", "--out", out, "--runners", "12", "--weeks", "4",
                              "--n-sims", "1", *args), *fragments)
    assert not out.exists()


def test_power_reports_failed_and_doubtful_fits(tmp_path):
    """3 weeks give no week-over-week jump to fit a random slope on: every fit fails, and
    power is not estimable with the reason (not "power 0.00"). At 6 weeks the fits run but
    are singular: counted in n_doubtful and said on the console line."""
    out = tmp_path / "power.csv"
    proc = run("power", "--out", out, "--runners", "12", "--weeks", "3,6", "--n-sims", "2",
               check=True)
    table = pd.read_csv(out).set_index("weeks")
    assert table.loc[3, "n_failed"] == table.loc[3, "n_sims"] == 2
    assert np.isnan(table.loc[3, "power"])
    assert table.loc[3, "not_estimable"].startswith("all 2 simulated fits failed")
    assert "12 runners x 3 weeks: not estimable (all 2 simulated fits failed" in proc.stderr
    assert "power 0.00" not in proc.stderr
    doubtful = int(table.loc[6, "n_doubtful"])
    assert doubtful > 0 and table.loc[6, "n_failed"] == 0
    line = next(ln for ln in proc.stderr.splitlines() if "x 6 weeks" in ln)
    assert f"{doubtful} of 2 fits doubtful" in line
    assert table.loc[6, "bias_step"] == pytest.approx(table.loc[6, "bias"] * 0.10, rel=1e-12)


# --- lazy imports: what each command pays for ---------------------------------------------

#: Modules only a model fit (scipy, statsmodels) or a report (plots, notebooks) needs.
MODEL_MODULES = ("scipy", "statsmodels")
REPORT_MODULES = ("matplotlib", "seaborn", "papermill", "nbformat", "nbconvert", "jinja2",
                  "dask")
#: Runs the CLI in this process, then prints the top-level packages it imported.
_MODULES_AFTER = (
    "import json, sys\n"
    "from analysis.cli import app\n"
    "try:\n"
    "    app(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
)


def modules_after(*args: str | Path) -> set[str]:
    """Top-level packages imported by ``kneeload <args>`` (run in a fresh interpreter)."""
    proc = subprocess.run([sys.executable, "-c", _MODULES_AFTER, *map(str, args)],
                          capture_output=True, text=True, check=False, timeout=300)
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [("--help",), ("fit", "--help"), ("report", "--help"),
                                  ("power", "--help"), ("build", "--help")])
def test_help_imports_neither_numpy_nor_pandas(args: tuple[str, ...]) -> None:
    heavy = {"numpy", "pandas", "pyarrow", "pandera", *MODEL_MODULES, *REPORT_MODULES}
    assert not modules_after(*args) & heavy


def test_build_imports_no_model_or_report_module(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "exposures"
    loaded = modules_after("build", fixture, "--out", tmp_path / "p")
    assert (tmp_path / "p" / "panel.parquet").is_file()  # the build did run
    assert {"numpy", "pandas"} <= loaded
    assert not loaded & {*MODEL_MODULES, *REPORT_MODULES}


#: ``kneeload --help`` at most this share of a process that only imports pandas, timed in
#: turn in the same test (best of :data:`HELP_ROUNDS` each). Measured 0.45-0.6 on this
#: project's VMs (help 0.30-0.63 s, pandas 0.5-0.9 s); a help path that imported pandas
#: again would be at 1.0 or above. The absolute 0.5 s target of issue 11 is a machine
#: figure, printed by ``bench/bench_cli_start.py`` (a fixed limit here failed a fresh-clone
#: ``make test`` on a slow VM at 0.52 s, on the code that gave 0.30-0.39 s elsewhere).
HELP_SHARE_OF_PANDAS = 0.8
HELP_ROUNDS = 5


def test_help_answers_faster_than_a_process_that_imports_pandas() -> None:
    """Issue 11: ``kneeload --help`` pays for typer and rich only, so it starts well within
    the time of a bare interpreter importing pandas on the same machine, in the same test
    (the best of each over alternating rounds, so that a busy moment fails neither)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_cli_start", Path(__file__).parents[1] / "bench" / "bench_cli_start.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    help_s, pandas_s = bench.best_times(HELP_ROUNDS)
    assert help_s < HELP_SHARE_OF_PANDAS * pandas_s, (
        f"kneeload --help took {help_s:.2f} s, a process importing pandas {pandas_s:.2f} s")


# --- issue 12: help through a pipe, date options, defaults that fit the data ---------------

#: Every command whose help is checked for whole option names.
COMMANDS = (("simulate",), ("build",), ("fit",), ("report",), ("power",),
            ("datasets", "fetch"))


@pytest.mark.parametrize("command", COMMANDS)
def test_help_through_a_pipe_shows_every_option_name_whole(command: tuple[str, ...]) -> None:
    """``kneeload build --help | cat`` cut names at 80 columns ("--exposure-lag…"); stdout
    here is a pipe, as under ``| cat``, and COLUMNS is unset as in a cron job."""
    from typer.main import get_command

    from analysis.cli import app

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    proc = subprocess.run([KNEELOAD, *command, "--help"], capture_output=True, text=True,
                          check=True, timeout=60, env=env)
    group = get_command(app)
    cmd = group
    for name in command:
        cmd = cmd.commands[name]
    names = [opt for param in cmd.params for opt in (*param.opts, *param.secondary_opts)
             if opt.startswith("--")]
    assert names  # --help is added by click, not a param
    words = set(proc.stdout.replace("│", " ").split())
    missing = [name for name in names if name not in words]
    assert not missing, (missing, proc.stdout)
    assert "…" not in proc.stdout


def test_build_passes_date_options_only_when_given() -> None:
    from analysis.cli import date_options

    def old_build(raw, out, *, format="auto"):  # a build without the keywords
        return None

    def new_build(raw, out, *, dayfirst=None, date_format=None):
        return None

    assert date_options(old_build, dayfirst=None, date_format=None) == {}
    assert date_options(new_build, dayfirst=True, date_format=None) == {"dayfirst": True}
    assert date_options(new_build, dayfirst=False, date_format="%d.%m.%Y") == {
        "dayfirst": False, "date_format": "%d.%m.%Y"}
    with pytest.raises(Exception, match="--date-format is not supported by this build"):
        date_options(old_build, dayfirst=None, date_format="%d.%m.%Y")


def test_build_passes_dayfirst_to_the_readers_that_take_it(tmp_path: Path) -> None:
    """The date options reach read_dataset: a Strava export builds with them; canonical data
    (ISO 8601 dates) refuse them in one line (exit 2) instead of ignoring them."""
    fixtures = Path(__file__).parent / "fixtures"
    proc = run("build", fixtures / "ingest" / "strava_export", "--out", tmp_path / "s",
               "--format", "strava", "--no-dayfirst")
    assert proc.returncode == 0, proc.stderr
    proc = run("build", fixtures / "exposures", "--out", tmp_path / "p", "--no-dayfirst")
    assert_one_line_error(proc, "--dayfirst/--no-dayfirst applies to strava exports only",
                          "ISO 8601")


def test_fit_defaults_to_the_datasets_outcome_and_supported_exposures(
        tmp_path: Path) -> None:
    from outcome_study import make_injury_study

    processed = make_injury_study(tmp_path / "injury")
    done = run("fit", processed, "--out", tmp_path / "fit.json", check=True)
    result = json.loads((tmp_path / "fit.json").read_text())
    assert result["model"] == "glmm" and result["outcome"] == "pain_any"
    assert result["exposures"] == ["mileage_jump", "rest_days_7d"]
    assert "note: shoe_km left out: the Lovdal data have no shoe/gear records" in done.stderr
    assert "OR " in done.stderr and "NRS" not in done.stderr
    # an explicit exposure with no values: the column, the rows and the option that fixes it
    proc = run("fit", processed, "--out", tmp_path / "x.json", "--exposures",
               "mileage_jump,shoe_km")
    rows = len(pd.read_parquet(processed / "panel.parquet"))
    assert_one_line_error(proc, f"shoe_km is missing in all {rows:,} rows",
                          "--exposures mileage_jump")


def test_build_help_names_every_input_format() -> None:
    """The --format help comes from defaults.INPUT_FORMATS, the tuple read_dataset uses."""
    from analysis.defaults import INPUT_FORMATS
    from analysis.ingest import FORMATS

    assert FORMATS is INPUT_FORMATS
    out = subprocess.run([KNEELOAD, "build", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert all(f in out for f in (*INPUT_FORMATS, "auto"))


def test_a_build_process_with_its_heap_warmed_writes_what_an_in_process_build_writes(
        tmp_path: Path) -> None:
    """``kneeload build`` faults in its heap while it imports and starts no BLAS worker
    (analysis.memory.prepare_build_process); an input big enough for the warm-up must give
    the tables a library call of ``build`` gives, value for value."""
    from analysis import memory
    from analysis.pipeline import build

    raw = tmp_path / "raw"
    run("simulate", "--out", raw, "--runners-per-cohort", "40", "--weeks", "52", check=True)
    assert memory.warm_bytes(raw) >= memory.WARM_MIN_BYTES  # the warm-up does run
    run("build", raw, "--out", tmp_path / "cli", check=True)
    build(raw, tmp_path / "library")
    tables = sorted(p.name for p in (tmp_path / "library").glob("*.parquet"))
    assert {"runs.parquet", "pain.parquet", "daily.parquet", "panel.parquet",
            "episodes.parquet"} <= set(tables)
    for name in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "cli" / name),
                                      pd.read_parquet(tmp_path / "library" / name),
                                      check_exact=True, obj=name)
