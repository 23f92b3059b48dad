"""analysis.outcomes: outcome kinds, default exposures the data support, and why a model
cannot be fitted (the column and the option that fixes it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from outcome_study import make_injury_study

from analysis import outcomes, reports
from analysis.defaults import DEFAULT_EXPOSURES
from analysis.errors import ReportError

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def injury(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_injury_study(tmp_path_factory.mktemp("injury"))


# --- the registry ------------------------------------------------------------------------


def test_older_panels_read_as_nrs_and_keys_and_columns_resolve() -> None:
    assert outcomes.outcome_spec({}).key == "nrs"  # built before "outcome" was recorded
    assert outcomes.outcome_spec({"outcome": "injury_flag"}).default_model == "glmm"
    nrs = outcomes.OUTCOME_SPECS["nrs"]
    assert (nrs.column, nrs.low, nrs.high, nrs.default_model) == ("pain", 0.0, 10.0, "lmm")
    ostrc = outcomes.OUTCOME_SPECS["ostrc"]
    assert (ostrc.column, ostrc.high) == ("ostrc_severity", 100.0)  # analysis.ostrc's column
    # a column names the dataset's own kind when it declares one with that column
    assert outcomes.outcome_by_name("pain_any", meta={"outcome": "injury_flag"}).key == \
        "injury_flag"
    assert outcomes.outcome_by_name("pain_any", meta={}).key == "pain_any"
    assert outcomes.outcome_by_name("pain", meta={"outcome": "injury_flag"}).key == "nrs"
    assert outcomes.outcome_by_name("pain_any", meta={"pain_threshold": 4.0}).axis_label == \
        "pain present (NRS >= 4)"
    with pytest.raises(ReportError, match="'pain_score'"):
        outcomes.outcome_by_name("pain_score")
    with pytest.raises(ReportError, match="'bogus'"):
        outcomes.outcome_spec({"outcome": "bogus"})


def test_the_build_keys_outcome_and_default_exposures() -> None:
    panel = pd.DataFrame({"pain": [0.0, 10.0], "pain_any": [False, True],
                          "mileage_jump": [0.1, 0.2], "shoe_km": [np.nan, np.nan],
                          "rest_days_7d": [1, 2]})
    meta = outcomes.panel_defaults(panel, {"format": "lovdal"})
    assert meta == {"outcome": "injury_flag",
                    "default_exposures": ["mileage_jump", "rest_days_7d"],
                    "exposures_left_out": {"shoe_km": "shoe_km left out: the Lovdal data "
                                                      "have no shoe/gear records"}}
    assert outcomes.panel_defaults(panel, {"format": "strava"})["outcome"] == "nrs"
    ostrc_only = pd.DataFrame({"pain": [np.nan], "ostrc_severity": [25.0]})
    assert outcomes.infer_outcome({"format": "canonical"},
                                  outcomes.columns_with_data(ostrc_only)) == "ostrc"
    assert outcomes.panel_defaults(panel, {"format": "garmin"}, outcome="ostrc")["outcome"] \
        == "ostrc"


def test_default_exposures_leave_out_absent_and_empty_columns_with_a_reason() -> None:
    chosen, left_out = outcomes.default_exposures({"mileage_jump", "rest_days_7d", "pain"},
                                                  {"format": "strava"})
    assert chosen == ["mileage_jump", "rest_days_7d"]
    assert left_out == {"shoe_km": "shoe_km left out: the Strava export has no shoe/gear "
                                   "records"}
    assert outcomes.default_exposures(set(DEFAULT_EXPOSURES), {}) == (list(DEFAULT_EXPOSURES),
                                                                       {})
    chosen, left_out = outcomes.default_exposures(set(), {"format": "canonical"})
    assert chosen == [] and list(left_out) == list(DEFAULT_EXPOSURES)
    assert left_out["rest_days_7d"] == "rest_days_7d left out: the data have no daily run " \
        "records"


def test_outcomes_and_defaults_import_nothing_heavy() -> None:
    code = ("import sys, analysis.outcomes, analysis.defaults; "
            "print(sorted({'numpy', 'pandas', 'pyarrow', 'scipy'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


# --- why a model cannot be fitted --------------------------------------------------------


def _panel(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"pain": rng.integers(0, 10, n).astype(float),
                         "mileage_jump": rng.normal(size=n), "shoe_km": np.nan,
                         "rest_days_7d": rng.integers(0, 7, n).astype(float)})


def test_an_exposure_missing_everywhere_is_named_with_its_fix() -> None:
    reason = outcomes.unfittable_reason(_panel(1234), outcome="pain",
                                        exposures=list(DEFAULT_EXPOSURES))
    assert reason == ("shoe_km is missing in all 1,234 rows; fit without it: --param "
                      "exposures=mileage_jump,rest_days_7d")
    fit_option = outcomes.unfittable_reason(_panel(10), outcome="pain",
                                            exposures=["shoe_km"], option="--exposures ")
    assert fit_option == "shoe_km is missing in all 10 rows; choose exposures with values " \
        "(--exposures COLUMNS)"


def test_no_complete_row_and_no_variation_are_named() -> None:
    panel = _panel(8).assign(shoe_km=[1.0, 2.0, 3.0, 4.0, np.nan, np.nan, np.nan, np.nan],
                             mileage_jump=[np.nan] * 4 + [0.1, 0.2, 0.3, 0.4])
    reason = outcomes.unfittable_reason(panel, outcome="pain",
                                        exposures=["mileage_jump", "shoe_km"])
    assert reason == ("no row of 8 has pain and all of mileage_jump, shoe_km known "
                      "(mileage_jump missing in 4, shoe_km missing in 4); e.g. --param "
                      "exposures=shoe_km")
    flat = _panel(6).assign(rest_days_7d=0.0)
    assert outcomes.unfittable_reason(flat, outcome="pain",
                                      exposures=["mileage_jump", "rest_days_7d"]) == (
        "rest_days_7d takes one value (0.0) in all 6 complete rows, so its effect cannot be "
        "estimated; fit without it: --param exposures=mileage_jump")
    assert outcomes.unfittable_reason(_panel(6), outcome="pain",
                                      exposures=["mileage_jump", "km_99d"]) == (
        "the panel has no column km_99d; --param exposures=mileage_jump")
    assert outcomes.unfittable_reason(_panel(6), outcome="pain",
                                      exposures=["mileage_jump"]) is None


# --- a Lovdal-like study: any injury, fitted as a flag -----------------------------------


def test_an_injury_flag_panel_is_labelled_and_fitted_as_injury(injury: Path) -> None:
    import matplotlib.pyplot as plt

    from analysis import plots

    meta = json.loads((injury / "panel_meta.json").read_text())
    view = reports.load_cohort(injury, "novice", salt=None)
    spec = view.outcome
    assert (spec.key, spec.column, spec.default_model) == ("injury_flag", "pain_any", "glmm")
    assert set(view.panel["pain"]) == {0.0, 10.0}
    choice = reports.choose_exposures(view)  # "auto"
    assert choice.chosen == ["mileage_jump", "rest_days_7d"] == meta["default_exposures"]
    assert choice.left_out == {"shoe_km": "shoe_km left out: the Lovdal data have no "
                                          "shoe/gear records"}
    attempt = reports.fit_cohort_model(view)  # outcome and exposures "auto"
    result = attempt.result
    assert result is not None and result.model == "glmm" and result.outcome == "pain_any"
    assert result.exposures == choice.chosen
    summary = reports.write_summary(None, view, attempt, exposures=choice)
    assert summary["outcome"] == "injury_flag" and summary["scale"] == "odds"
    assert summary["exposures_left_out"] == choice.left_out
    words = [*reports.plain_language(result.table, outcome=spec), spec.title,
             *reports.cohort_summary(view, exposures=choice.chosen)["measure"],
             *reports.runner_table(view).columns]
    fig, axes = plt.subplots(1, 4)
    plots.pain_over_time(view.panel, outcome=spec, ax=axes[0])
    plots.exposure_vs_pain(view.panel, "rest_days_7d", outcome=spec, ax=axes[1])
    plots.forest_plot(reports.effects_table(result.table), null=1.0, outcome=spec, ax=axes[2])
    plots.predicted_pain(result, view.panel, exposure="mileage_jump", outcome=spec, ax=axes[3])
    words += [t for ax in axes for t in (ax.get_xlabel(), ax.get_ylabel(), ax.get_title())]
    plt.close(fig)
    text = " | ".join(words)
    assert "the odds of injury change by a factor of" in text
    # figure labels are sentence case (analysis.plots; issue 14): compared case-blind
    assert "share of reports with injury" in text.lower()
    assert "odds ratio of injury" in text.lower()
    assert "Any injury and training load" in text
    assert "predicted probability of injury" in text.lower()
    assert "reports with injury (flag set)" in text
    assert "NRS" not in text and "Knee pain" not in text and "knee pain" not in text
    # the share of injured reports in the time plot is the flag's mean, on a 0-1 axis
    assert axes[0].get_ylim() == (0.0, 1.0)


def test_an_nrs_panel_keeps_its_labels(small_processed) -> None:
    view = reports.load_cohort(small_processed.out_dir,
                               sorted(set(pd.read_parquet(small_processed.out_dir /
                                                          "runners.parquet")["cohort"]))[0],
                               salt=None)
    assert view.outcome.key == "nrs"
    attempt = reports.fit_cohort_model(view, exposures=list(DEFAULT_EXPOSURES))
    assert attempt.result.model == "lmm"
    sentence = reports.plain_language(attempt.result.table, outcome=view.outcome)[0]
    assert " NRS points " in sentence and "knee pain" in sentence
    assert view.outcome.title == "Knee pain and training load"


def test_columns_with_data_names_each_column_holding_a_value() -> None:
    """Any dtype (float NaN, nullable NA, text, datetime NaT), duplicated names, no rows."""
    frame = pd.DataFrame({
        "km": [np.nan, 2.0], "empty": [np.nan, np.nan], "flag": pd.array([pd.NA, True]),
        "no_flag": pd.array([pd.NA, pd.NA], dtype="boolean"),
        "note": pd.array([None, None], dtype="str"), "day": pd.to_datetime(["2025-01-01",
                                                                           None])})
    twice = pd.concat([frame[["empty"]], frame[["km"]].set_axis(["empty"], axis=1)], axis=1)
    assert outcomes.columns_with_data(frame) == {"km", "flag", "day"}
    assert outcomes.columns_with_data(twice) == {"empty"}  # the second "empty" has a value
    assert outcomes.columns_with_data(frame.iloc[:0]) == set()
    # a value only past the rows looked at first, in the last row or the first one past them
    n = outcomes.HEAD_ROWS + 5
    late = pd.DataFrame({"km": np.r_[np.full(n - 1, np.nan), 1.0],
                         "note": pd.array([None] * outcomes.HEAD_ROWS + ["x"] * 5, dtype="str"),
                         "empty": np.full(n, np.nan), "early": np.r_[1.0, np.full(n - 1, np.nan)]})
    late_twice = pd.concat([late[["empty"]], late[["km"]].set_axis(["empty"], axis=1)], axis=1)
    assert outcomes.columns_with_data(late) == {"km", "note", "early"}
    assert outcomes.columns_with_data(late_twice) == {"empty"}
    for rows in (1, outcomes.HEAD_ROWS, outcomes.HEAD_ROWS + 1):
        assert outcomes.columns_with_data(late.iloc[-rows:]) == {"km", "note"}
