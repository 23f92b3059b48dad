"""analysis.reports.cohort: what the report notebook calls, in process.

The values it shows are read, not recomputed: ``pain_any`` and its threshold are the panel's
(one definition, in the build), reading units come from one function.
"""

from __future__ import annotations

import dataclasses
import json
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
    # in words (labels.humanize), the option that fixes it as the user types it
    assert reason.startswith("The model cannot be fitted") and "distance on the current " \
        "shoe takes one value" in reason and "--param exposures=mileage_jump,rest_days_7d" \
        in reason and "shoe_km" not in reason.split("--param")[0]
    # an exposure with no values: the column, the row count and the option that fixes it
    empty_shoes = dataclasses.replace(view, panel=view.panel.assign(shoe_km=np.nan))
    reason = reports.fit_cohort_model(empty_shoes, exposures=EXPOSURES).reason
    assert reason == (f"The model cannot be fitted for this cohort: distance on the current "
                      f"shoe is missing in all {len(view.panel):,} rows; fit without it: --param "
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


# --- issue 14: the report as a researcher takes it away ------------------------------------


def _demo_view(cohort: str = "recreational") -> reports.CohortView:
    from analysis.paths import processed_dir

    return reports.load_cohort(processed_dir("demo"), cohort, salt="")


def test_merged_duplicates_are_not_called_quarantined() -> None:
    """The demo report once listed 'quarantined: exact_duplicate' for merged rows."""
    from analysis.clean import MERGE_REASONS

    view = _demo_view()
    audit = reports.cohort_audit(view).set_index("count")["value"]
    assert "merged (duplicate of a kept record): exact duplicate" in audit.index
    assert not [k for k in audit.index if k.startswith("quarantined")
                and any(r.replace("_", " ") in k for r in MERGE_REASONS)]
    files = reports.cohort_file_audit(view).set_index("file")
    mine = view.quarantine[view.quarantine["file"] == "runs.csv"]
    merged = int(mine["reason"].isin(MERGE_REASONS).sum())
    assert merged > 0 and files.loc["runs.csv", "merged"] == merged
    assert files.loc["runs.csv", "quarantined"] == len(mine) - merged
    assert "exact duplicate" in files.loc["runs.csv", "merged by reason"]
    assert "exact" not in files.loc["runs.csv", "quarantined by reason"]


def test_the_cohort_flow_is_its_own_rows_and_adds_up() -> None:
    view = _demo_view()
    attempt = reports.fit_cohort_model(view)
    flow = reports.cohort_flow(view, attempt.result)
    files = reports.cohort_file_audit(view).set_index("file")
    for name, read in flow.read.items():
        row = files.loc[name]
        assert read == row["kept"] + row["merged"] + row["quarantined"]
    assert dict(flow.runners)["With pain reports"] == view.n_runners
    assert dict(flow.reports)["In the model"] == attempt.result.n_obs


def test_table_one_states_the_builds_threshold(study_threshold_4: Study) -> None:
    view = reports.load_cohort(study_threshold_4.processed, study_threshold_4.normal,
                               salt=None)
    table = reports.cohort_table_one(view)
    row = "Reports of pain >= 4 NRS, n (% of reports)"
    n = int(view.panel["pain_any"].sum())
    assert table.loc[row].iloc[0] == f"{n} ({round(100 * n / len(view.panel))} %)"
    assert list(table.columns) == [f"{view.cohort} (n = {view.n_runners})"]


def test_the_report_speaks_in_labels_not_column_names() -> None:
    view = _demo_view()
    choice = reports.choose_exposures(view)
    text = " ".join(choice.sentences(human=True))
    assert "Week-over-week mileage change" in text and "mileage_jump" not in text
    spec = view.outcome
    headings = reports.runner_table_labels(spec)
    shown = reports.runner_table(view, outcome=spec).rename(columns=headings)
    assert not [c for c in shown.columns if "_" in c]
    attempt = reports.fit_cohort_model(view)
    sentences = reports.plain_language(attempt.result.table, outcome=spec, human=True)
    assert sentences[0].startswith("Week-over-week mileage change: ")
    assert "per +10 % week-over-week mileage" in sentences[0]  # the reading unit's label
    assert "_" not in " ".join(sentences)


def test_take_aways_write_figures_and_tables_with_relative_links(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = tmp_path / "cohort" / ".summary.json.tmp"
    summary.parent.mkdir()
    take = reports.TakeAways(reports.takeaway_folder(summary))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    text = take.figure(fig, "demo", "A caption with a <b>tag</b>.")
    assert "[SVG](figures/demo.svg)" in text and "[PNG](figures/demo.png)" in text
    assert "<b>" not in text
    links = take.table(pd.DataFrame({"a": [1]}), "t")
    assert "[CSV](tables/t.csv)" in links and "[TEX](tables/t.tex)" in links
    for relative in take.written:
        assert (summary.parent / relative).is_file(), relative
    plt.close(fig)
    nowhere = reports.TakeAways(reports.takeaway_folder(""))
    assert nowhere.table(pd.DataFrame({"a": [1]}), "t") == "" and nowhere.written == []


@pytest.mark.slow
def test_a_rendered_report_links_its_take_away_files(tmp_path: Path) -> None:
    """Through papermill: every link of report.html to figures/ or tables/ resolves, each
    figure is there as SVG and as a 300 dpi PNG, Table 1 and the model table as CSV,
    Markdown and LaTeX; no raw variance layout or p of 0.0 reaches the page."""
    import matplotlib.image as mpimg

    from analysis import plots
    from analysis.paths import processed_dir

    run = reports.run_reports(processed_dir("demo"), tmp_path / "out",
                              cohorts=["recreational"])
    assert [o.status for o in run.outcomes] == ["ok"]
    folder = tmp_path / "out" / "recreational"
    html = (folder / "report.html").read_text()
    links = set(re.findall(r'href="((?:figures|tables)/[^"]+)"', html))
    assert {f"tables/{n}.{x}" for n in ("table1", "model") for x in ("csv", "md", "tex")} \
        <= links
    assert {f"tables/{n}.{x}" for n in ("episodes", "hazard_ratios")
            for x in ("csv", "md", "tex")} <= links  # the time-to-event section (issue 15)
    for name in ("over_time", "exposures", "forest", "predicted", "flow", "residuals",
                 "cumulative_incidence", "hazard_forest"):
        assert {f"figures/{name}.svg", f"figures/{name}.png"} <= links, name
        width = mpimg.imread(folder / "figures" / f"{name}.png").shape[1]
        assert width == round(plots.PAGE_WIDTH_IN * plots.SAVE_DPI)
    for link in links:
        assert (folder / link).is_file(), link
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script|svg)\b.*?</\1>", " ", html,
                                           flags=re.S))
    for raw in ("var1", "sdcor", "vcov", "quarantined: exact", "mileage_jump", "shoe_km"):
        assert raw not in text, raw
    model = pd.read_csv(folder / "tables" / "model.csv", dtype=str)
    assert set(model["p"]) <= {"< 0.001"} | {f"{k / 1000:.3f}" for k in range(1, 1001)}
    assert not model["p"].isin(["0.0", "0.000", "0"]).any()
    # Without splines, dlnm or sensitivity the non-linear section shows nothing, not even
    # its heading; 9 figures (with a spline: 10, test_nonlinear_report).
    assert "Non-linear and lagged load" not in text
    assert len(re.findall(r"<img[^>]*>|<svg\b.*?</svg>", html, flags=re.S)) == 9
    assert "nonlinear" not in json.loads((folder / "summary.json").read_text())


@pytest.mark.slow
def test_no_table_cell_of_a_rendered_report_is_cut_short(tmp_path: Path) -> None:
    """pandas cuts a displayed cell past 50 characters: the demo's competitive cohort once
    read "non running activity: 2, pace too fast: 1, unp..." in its data-quality table.
    Every cell of report.html ends in full, and the reason that was cut off is there."""
    from analysis.paths import processed_dir

    view = _demo_view("competitive")
    reasons = reports.cohort_file_audit(view).set_index("file").loc[
        "runs.csv", "quarantined by reason"]
    assert len(reasons) > 50 and reasons.endswith("unparseable date: 1")  # the case itself
    run = reports.run_reports(processed_dir("demo"), tmp_path / "out",
                              cohorts=["competitive"], params={"takeaways": False})
    assert [o.status for o in run.outcomes] == ["ok"]
    html = (tmp_path / "out" / "competitive" / "report.html").read_text()
    cells = [" ".join(re.sub(r"<[^>]+>", " ", c).split())
             for c in re.findall(r"<t[dh]\b[^>]*>(.*?)</t[dh]>", html, flags=re.S)]
    assert len(cells) > 100
    assert not [c for c in cells if c.endswith(("...", "\u2026"))]
    assert reasons in cells


@pytest.mark.slow
def test_a_cohort_without_a_model_says_so_and_nothing_about_a_forest_plot(
        study: Study, tmp_path: Path) -> None:
    run = reports.run_reports(study.processed, tmp_path / "out", cohorts=[study.painless])
    assert [o.status for o in run.outcomes] == ["ok"]
    folder = tmp_path / "out" / reports.safe_name(study.painless)
    text = " ".join(re.sub(r"<[^>]+>", " ", (folder / "report.html").read_text()).split())
    assert "No model for this cohort." in text
    assert "forest plot" not in text.lower()
    assert not (folder / "figures" / "forest.svg").exists()
    assert (folder / "figures" / "flow.svg").is_file()  # the flow is drawn without a model
    assert (folder / "tables" / "table1.tex").is_file()
    assert not (folder / "tables" / "model.csv").exists()


def test_a_kept_process_reads_a_folder_once_and_again_after_a_rebuild(tmp_path: Path) -> None:
    """load_cohort keeps the last folder's tables (a report worker renders many cohorts of one
    folder): a view changed by one report does not reach the next, and a rebuild is read."""
    from analysis.reports import cohort as cohort_module

    study = make_study(tmp_path / "s")
    first = reports.load_cohort(study.processed, study.normal, salt="")
    threshold = first.meta["pain_threshold"]
    first.meta["pain_threshold"] = 99.0
    first.cleaning.clear()
    first.panel.loc[0, "pain"] = -5.0
    again = reports.load_cohort(study.processed, study.normal, salt="")
    assert cohort_module._LAST_READ[0][0] == study.processed
    assert again.meta["pain_threshold"] == threshold == 3.0
    assert again.cleaning and again.panel["pain"].min() >= 0
    pd.testing.assert_frame_equal(again.panel, reports.load_cohort(
        study.processed, study.normal, salt="").panel)
    build(study.raw, study.processed, pain_threshold=OTHER_THRESHOLD)
    rebuilt = reports.load_cohort(study.processed, study.normal, salt="")
    assert rebuilt.meta["pain_threshold"] == OTHER_THRESHOLD
    assert (rebuilt.panel["pain_any"] == (rebuilt.panel["pain"] >= OTHER_THRESHOLD)).all()


def test_the_report_says_whether_its_identifiers_are_hashed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a salt (or a --pseudonymise build) the IDs are the study's own: the report
    must not call them pseudonyms (review)."""
    from analysis import paths

    demo = paths.project_root() / "data" / "processed" / "demo"
    if not (demo / "panel.parquet").is_file():
        pytest.skip("the demo is not built (make build)")
    monkeypatch.delenv("KNEELOAD_ID_SALT", raising=False)
    plain = reports.load_cohort(demo, "novice")
    hashed = reports.load_cohort(demo, "novice", salt="k")
    assert not plain.pseudonymised and "not hashed" in plain.id_statement
    assert plain.runners["runner_id"].str.startswith("NOV").all()  # shown as given
    assert hashed.pseudonymised
    assert hashed.id_statement == "Runner identifiers are keyed-hash pseudonyms."
