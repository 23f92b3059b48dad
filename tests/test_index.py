"""analysis.reports.index: the index page, its template file and its numbers."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import paths, reports
from analysis.reports import index


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
    assert "mileage_jump per +10 % week-over-week mileage: +0.06 NRS points (+0.04 to +0.08)" \
        in text
    assert '<td class="warning">warning</td>' in page and "warning: singular fit" in text
    assert 'href="fine/report.html"' in page and 'href="shaky/report.html"' not in page
    assert "cell 4: boom" in text and "failed notebook" in text
    tiny = _text(next(r for r in re.findall(r"<tr>.*?</tr>", page, flags=re.S)
                      if "<td>tiny</td>" in r))
    assert "suppressed" in tiny and not re.search(r"\d", tiny)
    assert "lowered below the default" not in text
