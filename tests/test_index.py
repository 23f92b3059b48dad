"""analysis.reports.index: the index page, its template file and its numbers."""

from __future__ import annotations

import json
import re
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rtools import requires_r

from analysis import labels, paths, reports
from analysis.reports import index, study

REF_DIR = Path(__file__).parent / "reference"
EXPOSURES = ["mileage_jump", "shoe_km", "rest_days_7d"]


def _text(html: str) -> str:
    html = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_headline_rows_are_in_reading_units() -> None:
    summary = {"scale": "nrs", "headline": [
        {"term": "mileage_jump", "estimate": 0.6, "ci_low": 0.4, "ci_high": 0.8},
        {"term": "shoe_km", "estimate": 0.002, "ci_low": 0.001, "ci_high": 0.003}]}
    rows = reports.headline_rows(summary)
    assert [r["phrase"] for r in rows] == ["per +10 % week-over-week mileage",
                                           "per +100 km on the shoe"]
    assert [round(r["estimate"], 12) for r in rows] == [0.06, 0.2]
    assert round(rows[1]["ci_high"], 12) == 0.3
    odds = reports.headline_rows({**summary, "scale": "odds"})
    assert odds[0]["estimate"] == pytest.approx(np.exp(0.06), rel=1e-12)
    assert odds[0]["ci_low"] == pytest.approx(np.exp(0.04), rel=1e-12)


@pytest.mark.parametrize("odds", [False, True])
def test_index_and_notebook_table_scale_effects_the_same_way(odds: bool) -> None:
    """Formerly two scalings (notebook table and index headline); both now read
    reports.effects.step_values, so the same per-unit effects print the same numbers."""
    table = pd.DataFrame({"term": ["Intercept", "mileage_jump", "rest_days_7d", "km_7d"],
                          "estimate": [1.0, 0.7, -0.2, 0.03], "ci_low": [0.5, 0.1, -0.4, 0.0],
                          "ci_high": [1.5, 1.3, 0.0, 0.06], "p_value": [0.0, 0.02, 0.05, 0.1]})
    if odds:
        table = table.assign(odds_ratio=np.exp(table["estimate"]))
    notebook = reports.effects_table(table).set_index("term")
    summary = {"scale": "odds" if odds else "nrs",
               "headline": table[table["term"] != "Intercept"].to_dict(orient="records")}
    for row in reports.headline_rows(summary):
        shown = notebook.loc[row["term"]]
        assert row["phrase"] == shown["step_label"]
        for key in ("estimate", "ci_low", "ci_high"):
            assert row[key] == shown[key]  # exactly: one function computed both
    # and by hand: +10 % of a fraction, 1 rest day, +10 km
    by_hand = {"mileage_jump": 0.07, "rest_days_7d": -0.2, "km_7d": 0.3}
    for term, value in by_hand.items():
        expected = np.exp(value) if odds else value
        assert notebook.loc[term, "estimate"] == pytest.approx(expected, rel=1e-12)


def test_the_template_is_a_package_file_listed_for_the_wheel() -> None:
    source = index.index_template()
    assert source.startswith("<!doctype html>") and "{% for row in rows %}" in source
    assert (Path(index.__file__).parent / index.INDEX_TEMPLATE_FILE).is_file()
    pyproject = tomllib.loads((paths.project_root() / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["analysis"]
    assert any(Path("reports", index.INDEX_TEMPLATE_FILE).match(p) for p in data), data
    assert "INDEX_TEMPLATE" not in vars(index)  # no second copy as a string


def test_index_page_shows_each_status(tmp_path: Path) -> None:
    def outcome(cohort: str, status: str, summary: dict | None = None
                ) -> reports.CohortOutcome:
        return reports.CohortOutcome(cohort=cohort, status=status, runners=6,
                                     parameters={"min_cohort_size": 5}, input_sha256={},
                                     template_sha256="", summary=summary or {},
                                     error="cell 4: boom" if status == "failed" else None)

    headline = [{"term": "mileage_jump", "estimate": 0.6, "ci_low": 0.4, "ci_high": 0.8}]
    rows = [outcome("fine", "ok", {"n_reports": 40, "headline": headline, "scale": "nrs"}),
            outcome("shaky", "ok", {"problems": ["singular fit"], "headline": headline}),
            outcome("tiny", "suppressed"), outcome("broken", "failed")]
    (tmp_path / "fine").mkdir()
    (tmp_path / "fine" / "report.html").write_text("x")
    page = index.write_index(tmp_path, rows, processed=tmp_path / "demo").read_text()
    text = _text(page)
    assert "kneeload reports: demo" in text
    # 3 significant digits of the estimate, as many decimals as the interval's half-width
    # (0.02) shows with 2 (labels.format_interval), as in the cohort's own tables
    assert "Week-over-week mileage change (per +10 %): +0.060 NRS points (+0.040 to +0.080)" \
        in text
    assert '<td class="warning">warning</td>' in page and "warning: singular fit" in text
    assert 'href="fine/report.html"' in page and 'href="shaky/report.html"' not in page
    assert "cell 4: boom" in text and "failed notebook" in text
    # a suppressed cohort is not named (issue 14: invisible everywhere), nor counted
    assert "tiny" not in page
    assert len(re.findall(r"<tr>", page)) == 1 + 3  # header + fine, shaky, broken
    assert "lowered below the default" not in text


# --- the study-wide view: pooled model and forest plot across cohorts -----------------------


def _reference_panel() -> pd.DataFrame:
    """tests/reference/demo.csv with cohort A/B/C by runner number (as pooled_reference.R)."""
    panel = pd.read_csv(REF_DIR / "demo.csv")
    number = panel["runner_id"].str.removeprefix("r").astype(int)
    return panel.assign(cohort=np.array(["A", "B", "C"])[number % 3])


def _lme4_pooled(path: Path) -> pd.DataFrame:
    return pd.read_csv(path).set_index(["kind", "term"])


def _check_against_lme4(reference: pd.DataFrame) -> None:
    panel = _reference_panel()
    pooled = study.fit_pooled(panel, ["A", "B", "C"], outcome="nrs", exposures=EXPOSURES)
    assert pooled.fitted and pooled.converged and pooled.n_obs == len(panel)
    from analysis.effects import reading_unit

    for effect in pooled.effects:
        step = reading_unit(effect["term"]).step
        # REML optimum: the lme4 reference tests hold 1e-6 relative across machines
        assert effect["estimate"] == pytest.approx(
            reference.loc[("fixef", effect["term"]), "estimate"] * step, rel=1e-6)
    test = pooled.interaction
    assert test["df"] == int(reference.loc[("lrt", "df"), "estimate"])
    # a difference of two ML log-likelihoods at 1e-6 relative each: 1e-4 absolute
    assert test["statistic"] == pytest.approx(reference.loc[("lrt", "statistic"), "estimate"],
                                              abs=1e-4)
    from scipy import stats

    assert test["p_value"] == pytest.approx(stats.chi2.sf(test["statistic"], test["df"]))


def test_pooled_model_and_interaction_test_match_lme4() -> None:
    """Committed lme4 numbers (tests/reference/pooled_reference.R), compared on every run."""
    _check_against_lme4(_lme4_pooled(REF_DIR / "pooled_reference.csv"))


@requires_r("lme4")
def test_pooled_reference_live(tmp_path: Path) -> None:
    """Re-run the R script; its numbers are compared at the same tolerances as the
    committed ones (nloptwrap at 1e-12 tolerances reaches the optimum on any machine)."""
    import subprocess

    subprocess.run(["Rscript", str(REF_DIR / "pooled_reference.R"), str(tmp_path)],
                   cwd=paths.project_root(), check=True, capture_output=True)
    _check_against_lme4(_lme4_pooled(tmp_path / "pooled_reference.csv"))


def test_interaction_columns_are_the_exposure_in_its_cohort_only() -> None:
    panel = study.pooled_panel(_reference_panel(), ["B", "A"])  # B is the reference here
    assert (panel.loc[panel["cohort"] == "B", study.COHORT_CODE] == "k000").all()
    wide = study.interaction_columns(panel, ["shoe_km"])
    assert list(wide.columns[-1:]) == ["shoe_km__x__k001"]
    in_a = panel["cohort"] == "A"
    assert (wide.loc[in_a, "shoe_km__x__k001"] == panel.loc[in_a, "shoe_km"]).all()
    assert (wide.loc[~in_a, "shoe_km__x__k001"] == 0).all()
    assert "C" not in set(panel["cohort"])  # a cohort not asked for is not read


def _outcome(cohort: str, status: str, summary: dict | None = None) -> reports.CohortOutcome:
    return reports.CohortOutcome(cohort=cohort, status=status, runners=13,
                                 parameters={"min_cohort_size": 5}, input_sha256={},
                                 template_sha256="", summary=summary or {})


def _summary(panel: pd.DataFrame, cohort: str, **extra: object) -> dict:
    from analysis.models import fit_model

    fit = fit_model(panel[panel["cohort"] == cohort], exposures=EXPOSURES)
    headline = fit.table[fit.table["term"] != "Intercept"][list(study.HEADLINE_PER_UNIT)]
    return {"outcome": "nrs", "outcome_unit": "NRS points", "exposures": EXPOSURES,
            "scale": "nrs", "converged": True, "problems": [], "n_reports": fit.n_obs,
            "headline": headline.to_dict(orient="records"), **extra}


def test_study_view_pools_shown_cohorts_only_and_flags_warnings(tmp_path: Path) -> None:
    """A suppressed cohort is neither in the figure nor in the pooled data; a cohort whose
    model did not converge is flagged in the figure and the model column; labels are text."""
    panel = _reference_panel()
    hostile = "<b>A</b> $x$"
    panel = panel.assign(cohort=panel["cohort"].replace({"A": hostile}))
    processed = tmp_path / "processed"
    processed.mkdir()
    panel.to_parquet(processed / "panel.parquet")
    rows = [_outcome(hostile, "ok", _summary(panel, hostile)),
            _outcome("B", "ok", _summary(panel, "B", converged=False,
                                         problems=["not converged"])),
            _outcome("C", "suppressed")]
    out = tmp_path / "out"
    out.mkdir()
    page = index.write_index(out, rows, processed=processed).read_text()
    text = _text(page)
    shown = panel[panel["cohort"].isin([hostile, "B"])]
    assert f"({len(shown)} reports from {shown['runner_id'].nunique()} runners)" in text
    assert f"({len(panel)} reports" not in text
    assert "&lt;b&gt;A&lt;/b&gt;" in page and "<b>A</b>" not in page
    assert re.search(r'<td class="warning">\s*not converged</td>', page)
    svg = (out / study.FIGURES_DIR / f"{study.FOREST_STEM}.svg").read_text()
    import xml.etree.ElementTree as ET

    ET.fromstring(svg)  # well-formed: the label is XML-escaped text, not markup
    assert "&lt;b&gt;A&lt;/b&gt; $x$" in svg and "B (warning)" in svg and ">C<" not in svg
    assert "Pooled" in svg
    png = out / study.FIGURES_DIR / f"{study.FOREST_STEM}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f'href="{study.FIGURES_DIR}/{study.FOREST_STEM}.svg"' in page
    # the pooled numbers are fit_pooled's over the two shown cohorts
    pooled = study.fit_pooled(panel, [hostile, "B"], outcome="nrs", exposures=EXPOSURES)
    first = pooled.effects[0]
    text_of = labels.format_interval(first["estimate"], first["ci_low"], first["ci_high"],
                                     signed=True, null=0.0)
    assert (first["text"], first["low_text"], first["high_text"]) == text_of
    assert f"{text_of[0]} ({text_of[1]} to {text_of[2]})" in text
    assert f"chi-square {pooled.interaction['statistic_text']} on 3 df" in text


def test_one_cohort_gets_a_figure_but_no_pooled_model(tmp_path: Path) -> None:
    panel = _reference_panel()
    processed = tmp_path / "processed"
    processed.mkdir()
    panel.to_parquet(processed / "panel.parquet")
    page = index.write_index(tmp_path, [_outcome("A", "ok", _summary(panel, "A"))],
                             processed=processed).read_text()
    assert "a pooled model needs at least 2 cohorts with a model" in _text(page)
    assert "index.figures/effects_across_cohorts.png" in page
    none = index.write_index(tmp_path, [_outcome("A", "suppressed")], processed=processed)
    assert "Study-wide view" not in none.read_text()


def test_the_interaction_test_is_skipped_with_a_reason_above_its_cohort_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(study, "MAX_INTERACTION_COHORTS", 2)
    pooled = study.fit_pooled(_reference_panel(), ["A", "B", "C"], outcome="nrs",
                              exposures=EXPOSURES)
    assert pooled.fitted and pooled.interaction is None
    assert pooled.interaction_note == ("no interaction test: 3 cohorts would give the full "
                                       "model 6 interaction terms; it is run for at most 2 "
                                       "cohorts")


# --- Table 1 over the cohorts shown ---------------------------------------------------------


def _processed_demo(tmp_path: Path) -> Path:
    """The demo's processed folder with the novice cohort cut to 4 runners with data (below
    the floor of 5), so the index must suppress it."""
    source = paths.project_root() / "data" / "processed" / "demo"
    if not (source / "panel.parquet").is_file():
        pytest.skip("the demo is not built (make build)")
    runners = pd.read_parquet(source / "runners.parquet")
    panel = pd.read_parquet(source / "panel.parquet")
    daily = pd.read_parquet(source / "daily.parquet")
    novice = sorted(runners.loc[runners["cohort"] == "novice", "runner_id"])
    gone = set(novice[4:])
    folder = tmp_path / "processed"
    folder.mkdir()
    runners[~runners["runner_id"].isin(gone)].to_parquet(folder / "runners.parquet")
    panel[~panel["runner_id"].isin(gone)].to_parquet(folder / "panel.parquet")
    daily[~daily["runner_id"].isin(gone)].to_parquet(folder / "daily.parquet")
    (folder / "panel_meta.json").write_text((source / "panel_meta.json").read_text())
    return folder


def test_index_table_one_counts_only_the_cohorts_shown(tmp_path: Path) -> None:
    """Table 1 on the index: a column per shown cohort and an overall one over those only,
    written as index.tables/table1.{csv,md,tex}; the suppressed cohort has no column and the
    overall column equals the sum over the shown ones (computed here by hand from the
    panel), so nothing can be subtracted."""
    processed = _processed_demo(tmp_path)
    rows = [_outcome("competitive", "ok"), _outcome("recreational", "skipped"),
            _outcome("novice", "suppressed")]
    out = tmp_path / "out"
    out.mkdir()
    page = index.write_index(out, rows, processed=processed).read_text()
    assert "novice" not in page
    panel = pd.read_parquet(processed / "panel.parquet")
    runners = pd.read_parquet(processed / "runners.parquet")
    cohort = panel["runner_id"].map(runners.set_index("runner_id")["cohort"])
    shown = panel[cohort.isin(["competitive", "recreational"])]
    n_runners, n_reports = shown["runner_id"].nunique(), len(shown)
    assert n_runners == 40
    table = pd.read_csv(out / study.TABLES_DIR / "table1.csv").set_index("Characteristic")
    assert list(table.columns) == ["competitive (n = 20)", "recreational (n = 20)",
                                   f"Overall (n = {n_runners})"]
    assert int(table.loc["Pain reports, n"].iloc[-1]) == n_reports
    events = int(shown["pain_any"].astype("boolean").fillna(False).sum())
    row = next(r for r in table.index if r.startswith("Reports of pain >= 3 NRS"))
    percent = int(np.floor(100 * events / n_reports + 0.5))  # half up, as the table rounds
    assert table.loc[row].iloc[-1] == f"{events} ({percent} %)"
    by_cohort = [int(table.loc["Pain reports, n"].iloc[i]) for i in (0, 1)]
    assert sum(by_cohort) == n_reports
    for fmt in ("md", "tex"):
        text = (out / study.TABLES_DIR / f"table1.{fmt}").read_text()
        assert "Overall" in text and "novice" not in text
    text = _text(page)
    assert "Table 1: characteristics of the cohorts" in text
    assert f"Overall (n = {n_runners})" in text
    assert f"Pain reports, n {by_cohort[0]} {by_cohort[1]} {n_reports}" in text
    assert 'href="index.tables/table1.tex"' in page
    # no cohort shown: no table, and the old files are removed
    none = index.write_index(out, [_outcome("novice", "suppressed")], processed=processed)
    assert "Table 1" not in none.read_text()
    assert not (out / study.TABLES_DIR / "table1.csv").exists()


@pytest.mark.parametrize("label", [r"edge5 \textbf{x} $y$ ~^#{}", "a\\$b", "p \\ q",
                                   "$5 and $6"])
def test_forest_labels_are_drawn_as_written(label: str) -> None:
    """A cohort label reaches the forest plot as literal text: no mathtext, each backslash
    drawn once (review: ``\\textbf`` was drawn with two)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    text = ax.text(0, 0, study._plain(label))
    shown, math = text._preprocess_math(text.get_text())
    plt.close(fig)
    assert not math and shown == label


def test_the_odds_ratio_forest_has_plain_ticks_and_room_for_one_exposure(agg: None) -> None:
    """Review: the index's odds-ratio panels had "1.1x10^0"-style minor tick labels running
    into each other, and one exposure with a longer cohort label cut the panel title."""
    rows = pd.DataFrame([{"cohort": c, "term": "mileage_jump", "estimate": e, "ci_low": lo,
                          "ci_high": hi, "scale": "odds", "flag": ""}
                         for c, e, lo, hi in [("a much longer cohort label here", 1.2, 1.05,
                                                1.4), ("novice", 1.1, 0.8, 1.5)]])
    fig = study.forest_across_cohorts(rows, None)
    fig.canvas.draw()
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_visible()]
    assert ticks and all(re.fullmatch(r"[0-9.,]+", t) for t in ticks), ticks
    assert not [t for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    title = ax.title.get_window_extent()
    assert title.x0 >= 0 and title.x1 <= fig.bbox.width  # the whole title is on the figure
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_table_one_applies_the_floor_again(tmp_path: Path) -> None:
    """Even asked for a cohort below min_cohort_size, the table leaves it out."""
    processed = _processed_demo(tmp_path)
    table = study.study_table_one(processed, ["competitive", "novice"], min_cohort_size=5)
    assert list(table.columns) == ["competitive (n = 20)"]


# --- a suppressed cohort is named nowhere in the reports folder -----------------------------


def _fake_reports(jobs: list) -> object:
    """What a finished run leaves, without a kernel: the report files, a take-away figure
    and table, each naming its cohort, and an ``ok`` outcome."""
    import dataclasses

    for job in jobs:
        folder = Path(job.out_dir) / reports.safe_name(job.cohort)
        for sub, name in (("figures", "forest.svg"), ("tables", "table1.csv")):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            (folder / sub / name).write_text(f"{job.cohort}\n")
        for name in reports.REPORT_FILES:
            (folder / name).write_text(f'{{"cohort": "{job.cohort}"}}\n')
        yield dataclasses.replace(job.outcome, status="ok",
                                  summary={"n_reports": 1, "cohort": job.cohort})


def test_a_suppressed_cohort_is_named_in_no_file_of_the_reports_folder(
        tmp_path: Path) -> None:
    """Issue 14: a cohort that falls below the floor leaves no trace under --out (index,
    manifest, Table 1 files, its own folder, file names); only the run's one-line summary
    to the operator (ReportRun.one_line, the CLI's log) counts it."""
    import shutil

    source = paths.project_root() / "data" / "processed" / "demo"
    if not (source / "panel.parquet").is_file():
        pytest.skip("the demo is not built (make build)")
    out = tmp_path / "out"
    first = reports.run_reports(source, out, submit=_fake_reports)
    assert {o.status for o in first.outcomes} == {"ok"}
    assert "novice" in (out / "manifest.json").read_text()  # the test can see the name

    cut = tmp_path / "processed"
    shutil.copytree(source, cut)
    runners = pd.read_parquet(cut / "runners.parquet")
    gone = set(sorted(runners.loc[runners["cohort"] == "novice", "runner_id"])[4:])
    for table in cut.glob("*.parquet"):
        frame = pd.read_parquet(table)
        if "runner_id" in frame.columns:
            frame[~frame["runner_id"].isin(gone)].to_parquet(table)
    (out / "novice" / "tables" / "my_notes.txt").write_text("a user's file stays\n")
    second = reports.run_reports(cut, out, submit=_fake_reports)
    assert {o.cohort: o.status for o in second.outcomes}["novice"] == "suppressed"
    assert "1 suppressed" in second.one_line()  # the operator's log line counts it
    (out / "novice" / "tables" / "my_notes.txt").unlink()  # the user's file was kept
    named = [p for p in out.rglob("*") if "novice" in str(p.relative_to(out))]
    assert named == [out / "novice", out / "novice" / "tables"]  # kept for the user's file
    for path in out.rglob("*"):
        if path.is_file():
            assert "novice" not in path.read_text(errors="replace"), path
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["cohorts"]) == ["competitive", "recreational"]
    assert (out / study.TABLES_DIR / "table1.csv").is_file()


def test_hiding_a_cohort_removes_only_what_kneeload_wrote_and_follows_no_link(
        tmp_path: Path) -> None:
    """The recorded take-away files go; a user's file beside them stays; a cohort folder
    (or a file) that is a symbolic link is unlinked, its target outside the reports folder
    untouched (review: every file of a linked folder's target was deleted)."""
    from analysis.reports import runner

    out = tmp_path / "out"
    folder = out / "tiny"
    for name in ("figures/forest.svg", "figures/mine.png", "tables/table1.csv", "report.html"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.svg").write_text("theirs\n")
    (folder / "figures" / "linked.svg").symlink_to(outside / "keep.svg")
    hashes = runner.takeaway_hashes(folder, since=0.0)
    assert sorted(hashes) == ["figures/forest.svg", "figures/mine.png", "tables/table1.csv"]
    assert runner.takeaway_hashes(folder, since=time.time() + 60) == {}  # none written since
    entry = {"outputs_sha256": {"report.html": "h", "figures/forest.svg": "h",
                                "tables/table1.csv": "h", "figures/linked.svg": "h"}}
    runner.remove_suppressed_folder(folder, entry)
    left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert left == ["figures", "figures/mine.png"]  # the user's file (and its folder) stay
    assert (outside / "keep.svg").read_text() == "theirs\n"  # the link, not its target
    # a cohort folder that is a link: the link goes, the folder it points to is untouched
    target = tmp_path / "earlier_report"
    (target / "figures").mkdir(parents=True)
    for name in ("report.html", "summary.json", "figures/forest.svg"):
        (target / name).write_text("earlier\n")
    link = out / "linked_cohort"
    link.symlink_to(target, target_is_directory=True)
    runner.remove_suppressed_folder(link, entry)
    assert not link.exists() and not link.is_symlink()
    assert sorted(p.name for p in target.rglob("*")) == ["figures", "forest.svg",
                                                          "report.html", "summary.json"]
    # an entry of an older version (no take-away names): every take-away suffix goes
    (folder / "tables").mkdir(exist_ok=True)
    (folder / "tables" / "model.csv").write_text("x\n")
    runner.remove_suppressed_folder(folder, {"outputs_sha256": {"report.html": "h"}})
    assert not folder.exists()


def test_an_earlier_runs_take_away_files_stay_recorded(tmp_path: Path) -> None:
    """A section switched off leaves its old figure on disk: the new entry still lists it,
    so a later suppression removes it too (it holds the cohort's statistics)."""
    from analysis.reports import runner

    folder = tmp_path / "c"
    (folder / "figures").mkdir(parents=True)
    for name in ("old_spline.svg", "forest.svg"):
        (folder / "figures" / name).write_text(name)
    outcome = _outcome("c", "ok")
    outcome.outputs_sha256 = {"report.html": "h", "figures/forest.svg": "h2"}
    previous = {"outputs_sha256": {"figures/old_spline.svg": "h0", "figures/gone.svg": "h1",
                                   "report.html": "h"}}
    runner._keep_recorded_takeaways(folder, outcome, previous)
    assert sorted(outcome.outputs_sha256) == ["figures/forest.svg", "figures/old_spline.svg",
                                              "report.html"]
    assert outcome.outputs_sha256["figures/forest.svg"] == "h2"  # this run's hash kept
    runner.remove_suppressed_folder(folder, {"outputs_sha256": outcome.outputs_sha256})
    assert not folder.exists()


def test_a_subset_run_with_a_higher_floor_hides_the_cohorts_it_did_not_run(
        tmp_path: Path) -> None:
    """``--cohort competitive --param min_cohort_size=21``: novice and recreational (20
    runners each) were not run, but are now below the floor: their earlier reports and
    manifest entries go, as a run of every cohort would have done (review: they stayed on
    disk with their statistics while the index hid them)."""
    source = paths.project_root() / "data" / "processed" / "demo"
    if not (source / "panel.parquet").is_file():
        pytest.skip("the demo is not built (make build)")
    out = tmp_path / "out"
    reports.run_reports(source, out, submit=_fake_reports)
    assert (out / "novice" / "report.html").is_file()
    (out / "recreational" / "my_notes.txt").write_text("a user's file stays\n")
    run = reports.run_reports(source, out, cohorts=["competitive"], submit=_fake_reports,
                              params={"min_cohort_size": 21})
    assert [o.status for o in run.outcomes] == ["suppressed"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cohorts"] == {}
    assert not (out / "novice").exists() and not (out / "competitive").exists()
    assert [p.name for p in (out / "recreational").iterdir()] == ["my_notes.txt"]
    for path in out.rglob("*"):
        if path.is_file() and path.name != "my_notes.txt":
            text = path.read_text(errors="replace")
            assert not {"novice", "recreational", "competitive"} & set(
                re.findall(r"[a-z]+", text)), path


def test_many_cohorts_show_the_overall_column_and_keep_every_column_in_the_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    processed = _processed_demo(tmp_path)
    monkeypatch.setattr(study, "MAX_TABLE_ONE_COLUMNS", 1)
    rows = [_outcome("competitive", "ok"), _outcome("recreational", "ok")]
    page = index.write_index(tmp_path, rows, processed=processed).read_text()
    head = re.search(r'<table class="table-one"><thead>(.*?)</thead>', page, flags=re.S)
    assert re.findall(r"<th>(.*?)</th>", head.group(1)) == ["Characteristic",
                                                          "Overall (n = 40)"]
    assert "each cohort's column is in the files" in _text(page).replace("&#x27;", "'")
    table = pd.read_csv(tmp_path / study.TABLES_DIR / "table1.csv")
    assert list(table.columns) == ["Characteristic", "competitive (n = 20)",
                                   "recreational (n = 20)", "Overall (n = 40)"]
