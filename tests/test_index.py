"""analysis.reports.index: the index page, its template file and its numbers."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rtools import requires_r

from analysis import paths, reports
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
    assert "Week-over-week mileage change (per +10 %): +0.06 NRS points (+0.04 to +0.08)" \
        in text
    assert '<td class="warning">warning</td>' in page and "warning: singular fit" in text
    assert 'href="fine/report.html"' in page and 'href="shaky/report.html"' not in page
    assert "cell 4: boom" in text and "failed notebook" in text
    tiny = _text(next(r for r in re.findall(r"<tr>.*?</tr>", page, flags=re.S)
                      if "<td>tiny</td>" in r))
    assert "suppressed" in tiny and not re.search(r"\d", tiny)
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
    assert f"{first['estimate']:+.2f} ({first['ci_low']:+.2f} to {first['ci_high']:+.2f})" \
        in text
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
