"""analysis.reports.cohort: what the report notebook calls, in process.

The values it shows are read, not recomputed: ``pain_any`` and its threshold are the panel's
(one definition, in the build), reading units come from one function.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_study import EXPOSURES, SALT, Study, make_study

from analysis import reports
from analysis.errors import ReportError
from analysis.pipeline import build
from analysis.simulate import simulate_dataset, write_dataset

#: A threshold other than the default 3.0, so that a report reading the default would differ.
OTHER_THRESHOLD = 4.0


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return make_study(tmp_path_factory.mktemp("cohort-study"))


@pytest.fixture(scope="module")
def study_threshold_4(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return make_study(tmp_path_factory.mktemp("cohort-study-4"),
                      pain_threshold=OTHER_THRESHOLD)


def test_pain_any_is_the_panels_and_its_threshold_is_panel_meta(
        study: Study, study_threshold_4: Study) -> None:
    """Formerly load_cohort recomputed pain_any from a report parameter that could differ
    from panel_meta's threshold; now the view carries the panel's column unchanged."""
    for built, threshold in ((study, 3.0), (study_threshold_4, OTHER_THRESHOLD)):
        view = reports.load_cohort(built.processed, built.normal, salt=None)
        assert view.pain_threshold == threshold == view.meta[reports.PAIN_THRESHOLD_KEY]
        panel = pd.read_parquet(built.processed / "panel.parquet")
        own = panel[panel["cohort"] == built.normal].reset_index(drop=True)
        pd.testing.assert_series_equal(view.panel["pain_any"], own["pain_any"])
        # and the build's rule is the one written in analysis.defaults / docs: pain >= it
        assert (own["pain_any"] == (own["pain"] >= threshold)).all()
        shown = reports.cohort_summary(view, exposures=EXPOSURES).set_index("measure")
        label = f"reports with pain >= {threshold:g} NRS (pain present)"
        assert shown.loc[label, "value"] == int(own["pain_any"].sum())
    four = reports.load_cohort(study_threshold_4.processed, study_threshold_4.normal,
                               salt=None)
    three = reports.load_cohort(study.processed, study.normal, salt=None)
    assert four.panel["pain_any"].sum() < three.panel["pain_any"].sum()  # the value matters


def test_a_threshold_other_than_the_builds_is_refused(study: Study) -> None:
    assert reports.load_cohort(study.processed, study.normal, pain_threshold=3.0,
                               salt=None).pain_threshold == 3.0
    with pytest.raises(ReportError, match=re.escape("kneeload build --pain-threshold 4")):
        reports.load_cohort(study.processed, study.normal, pain_threshold=OTHER_THRESHOLD)


def test_no_report_module_computes_pain_any() -> None:
    """The former second definition (``pain_any=panel["pain"] >= ...``) no longer exists,
    in the reports package, the figures or the notebooks (their jupytext twins)."""
    package = Path(reports.__file__).parent
    notebooks = Path(__file__).parents[1] / "notebooks"
    sources = [*package.glob("*.py"), package.parent / "plots.py", *notebooks.glob("[0-9c]*.py")]
    assert len(sources) >= 12
    for path in sources:
        text = path.read_text()
        assert not re.search(r"pain_any\s*=", text), path.name
        assert not re.search(r"\[\"pain\"\]\s*>=", text), path.name


def test_models_that_cannot_be_fitted_give_a_reason(study: Study) -> None:
    view = reports.load_cohort(study.processed, study.normal, salt=None)
    assert reports.fit_cohort_model(view, exposures=EXPOSURES).result is not None
    empty = dataclasses.replace(view, panel=view.panel.iloc[:0])
    assert "no pain reports" in reports.fit_cohort_model(empty, exposures=EXPOSURES).reason
    flat = dataclasses.replace(view, panel=view.panel.assign(pain=0.0))
    assert "no pain events" in reports.fit_cohort_model(flat, exposures=EXPOSURES).reason
    constant = dataclasses.replace(view, panel=view.panel.assign(shoe_km=5.0))
    reason = reports.fit_cohort_model(constant, exposures=EXPOSURES).reason
    assert reason.startswith("The model cannot be fitted") and "shoe_km takes one value" in \
        reason and "--param exposures=mileage_jump,rest_days_7d" in reason
    # an exposure with no values: the column, the row count and the option that fixes it
    empty_shoes = dataclasses.replace(view, panel=view.panel.assign(shoe_km=np.nan))
    reason = reports.fit_cohort_model(empty_shoes, exposures=EXPOSURES).reason
    assert reason == (f"The model cannot be fitted for this cohort: shoe_km is missing in all "
                      f"{len(view.panel):,} rows; fit without it: --param "
                      "exposures=mileage_jump,rest_days_7d.")
    # ... and with exposures=auto it is left out, with the reason, and the model is fitted
    auto = reports.fit_cohort_model(empty_shoes)
    assert auto.result is not None and auto.result.exposures == ["mileage_jump",
                                                                 "rest_days_7d"]
    assert reports.choose_exposures(empty_shoes).left_out == {
        "shoe_km": "shoe_km left out: the data have no shoe/gear records"}
    with pytest.raises(ReportError, match="fewer runners than min_cohort_size"):
        reports.load_cohort(study.processed, study.small)


def test_summary_headline_is_the_tables_reading_units(study: Study) -> None:
    """write_summary's step values are those of the result table (one scaling function)."""
    view = reports.load_cohort(study.processed, study.normal, salt=None)
    result = reports.fit_cohort_model(view, exposures=EXPOSURES).result
    summary = reports.write_summary(None, view, reports.ModelAttempt(result))
    table = reports.effects_table(result.table).set_index("term")
    for effect in summary["headline"]:
        row = table.loc[effect["term"]]
        assert effect["estimate_step"] == pytest.approx(row["estimate"], rel=1e-12)
        assert effect["ci_low_step"] == pytest.approx(row["ci_low"], rel=1e-12)
        assert effect["step_label"] == row["step_label"]
    jump = next(e for e in summary["headline"] if e["term"] == "mileage_jump")
    assert jump["estimate_step"] == pytest.approx(jump["estimate"] * 0.1, rel=1e-12)


def test_a_pseudonymised_build_is_not_hashed_twice(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KNEELOAD_ID_SALT", SALT)
    write_dataset(simulate_dataset(runners_per_cohort=5, weeks=4, cohorts=1, seed=2),
                  tmp_path / "raw")
    build(tmp_path / "raw", tmp_path / "processed", pseudonymise=True)
    runners = pd.read_parquet(tmp_path / "processed" / "runners.parquet")
    view = reports.load_cohort(tmp_path / "processed", runners["cohort"].iloc[0])
    assert view.pseudonymised
    assert sorted(view.runners["runner_id"]) == sorted(runners["runner_id"])
    assert view.runners["runner_id"].str.fullmatch(reports.PSEUDONYM_PATTERN).all()


def test_runner_table_takes_the_modes_of_models(study: Study) -> None:
    view = reports.load_cohort(study.processed, study.normal, salt=None)
    result = reports.fit_cohort_model(view, exposures=EXPOSURES).result
    modes = reports.conditional_modes(view.panel, result)
    table = reports.runner_table(view, modes).set_index("runner_id")
    expected = modes.per_runner.set_index("runner_id")["Intercept"].round(2)
    np.testing.assert_array_equal(table.loc[expected.index, "random_intercept"], expected)
    assert table["reports"].sum() == len(view.panel)
