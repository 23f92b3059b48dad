"""The cohort report's time-to-event section (analysis.reports.time_to_event).

Values are the package's one definitions read out (episodes.at_risk, epi, models.survival):
the tests check the section shows those numbers, says when a fit is doubtful, and that its
figures draw what they say.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import plots, reports
from analysis.epi import incidence_from_days
from analysis.episodes import at_risk, episodes
from analysis.models.survival import (
    first_episode_curves,
    fit_counting_process,
    fit_survival,
)
from analysis.pipeline import build
from analysis.reports import time_to_event as tte_mod

ROOT = Path(__file__).parents[1]
REF = Path(__file__).parent / "reference"
EXPOSURES = ["mileage_jump", "rest_days_7d"]


@pytest.fixture(autouse=True)
def _agg():
    matplotlib.use("Agg")
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tte") / "demo"
    build(ROOT / "data" / "raw" / "demo", out)
    return out


@pytest.fixture(scope="module")
def view(demo):
    return reports.load_cohort(demo, "recreational")


@pytest.fixture(scope="module")
def section(view):
    return tte_mod.cohort_time_to_event(view, exposures=[*EXPOSURES, "not_daily"])


def test_the_view_carries_the_builds_episodes_and_whole_calendar(view, demo):
    stored = pd.read_parquet(demo / "episodes.parquet")
    ids = set(view.runners["runner_id"])
    assert view.episodes is not None
    assert len(view.episodes) == int(stored["runner_id"].isin(ids).sum()) > 0
    # the calendar keeps the lead-in days the follow-up view drops
    assert len(view.calendar) >= len(view.daily)
    assert set(view.calendar["runner_id"]) == ids


def test_table_numbers_are_epi_on_at_risk_days(section, view):
    processed = view.processed()
    days = at_risk(processed["daily"], view.episodes, reports=view.panel)
    expected = incidence_from_days(days, by=(), n_boot=tte_mod.REPORT_BOOTSTRAP, seed=0)
    pd.testing.assert_frame_equal(section.incidence, expected)
    table = tte_mod.episodes_table(section).set_index("Measure")
    for scope, heading in tte_mod.SCOPE_HEADINGS.items():
        row = expected.set_index("scope").loc[scope]
        assert table.loc["Episodes", heading] == str(int(row["episodes"]))
        # by hand: rate = episodes / hours at risk x 1,000
        rate = row["episodes"] / row["hours"] * 1000
        assert float(table.loc["Incidence per 1,000 h", heading]) == pytest.approx(
            rate, rel=5e-3)  # shown to 3 significant digits
    # the episodes the build wrote (not recomputed differently here)
    rebuilt = episodes(view.panel, view.calendar, threshold=view.pain_threshold)
    assert len(rebuilt) == len(view.episodes)


def test_model_is_fit_survival_on_the_cohort_and_summary_has_its_keys(section, view):
    api = fit_survival(view.processed(), model="andersen-gill", exposures=EXPOSURES)
    np.testing.assert_allclose(section.result.table["estimate"], api.table["estimate"],
                               rtol=1e-12)
    assert section.left_out.keys() == {"not_daily"}
    block = tte_mod.summary_block(section)
    assert tuple(block) == tte_mod.SUMMARY_KEYS
    assert block["n_events"] == api.extra["n_events"]
    assert block["status"] == ("warning" if api.problems else "ok")
    first = block["estimates"][0]
    assert first["term"] == "mileage_jump" and first["step"] == 0.1
    assert first["hr_step"] == pytest.approx(math.exp(0.1 * first["log_hr"]), rel=1e-12)
    assert first["hazard_ratio"] == pytest.approx(math.exp(first["log_hr"]), rel=1e-12)
    assert block["incidence"]["all"]["episodes"] == int(
        section.incidence.set_index("scope").loc["all", "episodes"])
    json.dumps(block, allow_nan=False)  # plain JSON: no NaN reaches summary.json


def test_write_summary_stores_the_block(view, section, tmp_path):
    path = tmp_path / "summary.json"
    block = tte_mod.summary_block(section)
    reports.write_summary(path, view, None, time_to_event=block)
    assert json.loads(path.read_text())["time_to_event"] == json.loads(json.dumps(block))
    assert "time_to_event" not in reports.write_summary(None, view, None)


def test_curves_are_first_episode_curves_and_end_at_the_last_day_at_risk(section, view):
    expected = first_episode_curves(view.processed(), band=tte_mod.CURVE_BAND)
    pd.testing.assert_frame_equal(section.curves.reset_index(drop=True),
                                  expected.reset_index(drop=True))
    assert section.curve_ends["all days"] >= max(v for k, v in section.curve_ends.items())
    fig, ax = plt.subplots()
    plots.cumulative_incidence_plot(section.curves, ends=section.curve_ends,
                                    overall=section.overall, ax=ax)
    lines = {line.get_label(): line for line in ax.get_lines()}
    bands = set(section.curves[tte_mod.CURVE_BAND].astype(str))
    assert set(lines) == bands | {"all days"}
    for band in bands:  # flat to the band's last day at risk, in per cent
        x, y = lines[band].get_data()
        assert x[-1] == section.curve_ends[band]
        part = section.curves[section.curves[tte_mod.CURVE_BAND].astype(str) == band]
        assert y[-1] == pytest.approx(100 * part["cum_incidence"].iloc[-1])
    plt.close(fig)


def _doubtful_section(section) -> tte_mod.TimeToEvent:
    """A fit with an infinite estimate: every episode on a band-"a" day (test_survival)."""
    rows = pd.read_csv(REF / "cox_sim2.csv").assign(event=lambda d: d["event"].astype(bool))
    noise = np.random.default_rng(0).choice(["a", "b"], size=len(rows))
    rows = rows.assign(band=np.where(rows["event"], "a", noise))
    result = fit_counting_process(rows, exposures=["band", "x_cont"], model="andersen-gill")
    return tte_mod.TimeToEvent(model="andersen-gill", exposures=["band", "x_cont"],
                               result=result, reason=None, incidence=section.incidence,
                               curves=None, curve_reason="none")


def test_a_doubtful_fit_says_so_in_table_text_summary_and_figure(section):
    doubtful = _doubtful_section(section)
    assert doubtful.status == "warning"
    table = tte_mod.hazard_table(doubtful).set_index("Term")
    notes = dict(zip(doubtful.result.table["term"], table["Note"], strict=True))
    assert "infinite estimate" in notes["C(band)[T.b]"]
    text = tte_mod.section_text(doubtful)
    assert "This model has problems" in text and "infinite estimate" in text
    block = tte_mod.summary_block(doubtful)
    assert block["status"] == "warning"
    assert any("C(band)[T.b]" in p for p in block["problems"])
    assert tte_mod.doubtful_terms(doubtful) == ["C(band)[T.b]"]
    assert tte_mod.hazard_table(doubtful).set_index("Term")["Hazard ratio (95 % CI)"].iloc[0] \
        == "not estimable"
    assert doubtful.forest_reason is None  # x_cont is finite: the figure is drawn
    stuck = dataclasses.replace(doubtful, result=dataclasses.replace(doubtful.result,
                                                                     converged=False))
    assert stuck.forest_reason == "the model did not converge"
    assert "not converged" in tte_mod.summary_block(stuck)["problems"]
    fig, ax = plt.subplots()
    plots.hazard_ratio_forest(doubtful.result.table, doubtful=["C(band)[T.b]"], ax=ax)
    faces = [line.get_markerfacecolor() for line in ax.get_lines() if line.get_marker() == "o"]
    assert faces.count("white") == 1
    plt.close(fig)


def test_no_daily_exposure_means_no_model_and_a_reason(view):
    none = tte_mod.cohort_time_to_event(view, exposures=["not_daily"])
    assert none.result is None and none.status is None
    block = tte_mod.summary_block(none)
    assert block["note"] and block["estimates"] == [] and block["n_events"] is None
    assert "No time-to-event model" in tte_mod.section_text(none)
    assert tte_mod.hazard_table(none).empty
