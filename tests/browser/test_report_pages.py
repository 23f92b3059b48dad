"""The demo index and one cohort report as a person sees them, in headless Chromium (issue 14).

One real ``run_reports`` on the bundled demo (papermill, kernels, nbconvert), then each page
is opened from disk and checked in the page: every figure loaded, no table cell whose text
overflows it or was cut short ("..." or an ellipsis at its end), and no raw column name (the
modelled exposures) or "nan"/"None"/"NaN" in the visible text. Skipped (with the reason) when
Chromium or chromedriver is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pages import (
    broken_images,
    overflowing_cells,
    raw_words,
    truncated_cells,
    visible_text,
    wait_for_images,
)

from analysis import paths, reports
from analysis.effects import READING_UNITS

# one xdist worker runs every browser test (make test: --dist loadgroup)
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]


@pytest.fixture(scope="module")
def demo_reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    processed = paths.processed_dir("demo")
    if not (processed / "panel.parquet").is_file():
        pytest.skip("the demo is not built (make build)")
    out = tmp_path_factory.mktemp("browser") / "reports"
    run = reports.run_reports(processed, out, workers=2)
    assert not run.failed, run.one_line()
    return out


def _columns(out: Path) -> set[str]:
    """Raw names that must not show: every modelled exposure and every registered one."""
    names = set(READING_UNITS)
    for summary in out.glob("*/summary.json"):
        names.update(json.loads(summary.read_text()).get("exposures") or [])
    return names


def _pages(out: Path) -> list[Path]:
    cohort = sorted(out.glob("*/report.html"))[0]
    return [out / "index.html", cohort]


@pytest.mark.parametrize("page", ["index", "cohort report"])
def test_what_a_person_sees(demo_reports: Path, browser: Any, page: str) -> None:
    path = _pages(demo_reports)[0 if page == "index" else 1]
    browser.get(path.as_uri())
    wait_for_images(browser)
    problems = {
        "figures that did not load": broken_images(browser),
        "table cells whose text overflows": overflowing_cells(browser),
        'table cells cut short ("..." or an ellipsis)': truncated_cells(browser),
        "raw column names or missing-value words": raw_words(visible_text(browser),
                                                             _columns(demo_reports)),
    }
    if page == "index":
        assert browser.find_elements("css selector", "img"), "the index shows no figure"
    failed = {k: v for k, v in problems.items() if v}
    assert not failed, f"{page} ({path.name}):\n" + "\n".join(
        f"- {kind} ({len(items)}): " + "; ".join(items[:12]) for kind, items in failed.items())


def test_the_checks_find_what_they_look_for(browser: Any, tmp_path: Path) -> None:
    """Each check on a page made to fail it: a missing image, a cell too narrow for its
    text, a raw column name, a printed NaN and cells cut short with "..." or an ellipsis
    (so a passing page check means something); "..." inside a cell is not a cut."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><img src="missing.png"><table><tr>'
        '<td style="width:40px;max-width:40px;white-space:nowrap">a long unbroken cell text'
        '</td><td>mileage_jump per +10 %: nan</td><td>shoe_km_within</td></tr>'
        '<tr><td>pace too fast: 1, unp...</td><td>reasons \u2026 </td>'
        '<td>knee pain... and more</td></tr></table>'
        '</body></html>', encoding="utf-8")
    browser.get(page.as_uri())
    wait_for_images(browser)
    assert [src for src in broken_images(browser)] == ["missing.png"]
    assert [c.split(": ", 1)[1] for c in overflowing_cells(browser)] == [
        "a long unbroken cell text"]
    found = raw_words(visible_text(browser), ["mileage_jump", "shoe_km"])
    assert [f.split(" in ")[0] for f in found] == ["'mileage_jump'", "'shoe_km'", "'nan'"]
    assert truncated_cells(browser) == ["pace too fast: 1, unp...", "reasons \u2026"]
