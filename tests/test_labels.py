"""analysis.labels: one registry of human labels, p-values and numbers as journals print them."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from analysis import labels
from analysis.effects import READING_UNITS, reading_unit
from analysis.exposures import LOAD_PREFIXES, LOAD_WINDOWS, OTHER_LOAD_WINDOWS, build_panel
from analysis.outcomes import OUTCOME_SPECS
from analysis.simulate import simulate_dataset


def _every_built_column() -> list[str]:
    """Every column build_panel writes on a study with session RPE, OSTRC items and a lag,
    plus the load windows of every load the exposures module knows (TRIMP needs HR files)."""
    data = simulate_dataset(runners_per_cohort=4, weeks=8, cohorts=1, seed=3)
    runs = data.runs.assign(rpe=5.0)
    pain = data.pain.assign(ostrc_q1=0.0, ostrc_q2=8.0, ostrc_q3=0.0, ostrc_q4=17.0)
    panel = build_panel(runs, data.runners, pain, data.shoes, lags=(1,)).panel
    loads = [f"{prefix}_{w}" for prefix in LOAD_PREFIXES.values() for w in OTHER_LOAD_WINDOWS]
    return [*panel.columns, *loads, *LOAD_PREFIXES]


def test_every_column_the_build_writes_has_a_label() -> None:
    """Fails when the build starts writing a column the registry does not name."""
    columns = _every_built_column()
    assert len(columns) > 60  # the lag copies, OSTRC items and load windows are all there
    missing = sorted({c for c in columns if not labels.has_label(c)})
    assert missing == []


def test_every_outcome_and_reading_unit_has_a_label() -> None:
    for spec in OUTCOME_SPECS.values():
        assert spec.column in labels.COLUMN_LABELS
    for column in READING_UNITS:
        assert column in labels.COLUMN_LABELS
    for prefix in LOAD_PREFIXES.values():  # every window the registry claims exists
        assert all(f"{prefix}_{w}" in labels.COLUMN_LABELS for w in LOAD_WINDOWS)


def test_a_fraction_is_shown_in_per_cent_and_its_step_comes_from_the_reading_unit() -> None:
    assert labels.axis_label("mileage_jump") == "Week-over-week mileage change (%)"
    assert labels.step_label("mileage_jump") == "Week-over-week mileage change (per +10 %)"
    assert labels.display_scale("mileage_jump") == 100.0
    # the step is the reading unit's, spelt in the display unit
    assert labels.step_text("mileage_jump") == "per +10 %"
    assert reading_unit("mileage_jump").step * labels.display_scale("mileage_jump") == \
        pytest.approx(10.0)
    assert labels.step_text("shoe_km") == "per +100 km"
    assert labels.step_text("shoe_age_days") == "per +30 days"
    assert labels.step_text("rest_days_7d") == "per +1 day"
    assert labels.step_text("acwr_ewma") == "per +0.1"
    assert labels.step_text("ctl") == "per +1 km/day"  # no registered step: per unit
    assert labels.step_text("C(sex)[T.M]") == "vs the reference level"


def test_units_agree_with_the_reading_units() -> None:
    """A column with a reading unit in km or days shows km or days (no second unit table
    that can drift)."""
    for column, ru in READING_UNITS.items():
        shown = labels.unit(column)
        expected = {"fraction": "%", "km": "km", "days": "days", "ratio": ""}[ru.unit]
        assert shown == expected, column


@pytest.mark.parametrize(("term", "expected"), [
    ("mileage_jump", "Week-over-week mileage change"),
    ("mileage_jump_within", "Week-over-week mileage change, within runner"),
    ("mileage_jump_between", "Week-over-week mileage change, runner mean"),
    ("km_7d_lag1w", "Distance in the last 7 days, 1 week earlier"),
    ("km_7d_lag2w_within", "Distance in the last 7 days, 2 weeks earlier, within runner"),
    ("C(sex)[T.M]", "Sex: M"),
    ("Intercept", "Intercept"),
    ("not_a_column", "Not a column"),
])
def test_term_labels(term: str, expected: str) -> None:
    assert labels.term_label(term) == expected


@pytest.mark.parametrize(("row", "expected"), [
    (("runner_id", "Intercept", None), "Between-runner SD of the intercept"),
    (("runner_id", "km_7d", None),
     "Between-runner SD of the slope of Distance in the last 7 days"),
    (("runner_id", "Intercept", "km_7d"),
     "Correlation of the intercept and the slope of Distance in the last 7 days between "
     "runners"),
    (("Residual", None, None), "Residual SD"),
    (("Residual", float("nan"), float("nan")), "Residual SD"),
    (("Residual", "AR(1) rho", None), "Residual AR(1) correlation between consecutive reports"),
    (("runner_id", "exchangeable_correlation", None), "Within-runner correlation (exchangeable)"),
])
def test_variance_component_labels(row: tuple, expected: str) -> None:
    assert labels.variance_label(*row) == expected


@pytest.mark.parametrize(("p", "expected"), [
    (0.0, "< 0.001"), (1e-12, "< 0.001"), (0.000999, "< 0.001"), (0.001, "0.001"),
    (0.0423, "0.042"), (0.05, "0.050"), (0.9996, "1.000"), (1.0, "1.000"),
    (float("nan"), ""), (None, ""), ("x", ""),
])
def test_format_p_is_journal_style(p: object, expected: str) -> None:
    assert labels.format_p(p) == expected


@pytest.mark.parametrize(("x", "expected"), [
    (123.4, "123"), (0.0012345, "0.00123"), (-0.0004, "-0.0004"), (1234567.0, "1,230,000"),
    (120.0, "120"), (2.2e2, "220"), (0.5, "0.5"), (1.0, "1"), (-0.00001, "-0.00001"),
    (0.0, "0"), (-0.0, "0"), (float("nan"), ""), (math.inf, "inf"), (9.996, "10"),
    (1e300, "1" + ",000" * 100), (-2.345e20, "-234,000,000,000,000,000,000"),
    (9.999e15, "10,000,000,000,000,000"),
])
def test_format_number_has_no_scientific_notation(x: float, expected: str) -> None:
    assert labels.format_number(x) == expected


def test_format_number_never_prints_an_exponent_over_many_magnitudes() -> None:
    rng = np.random.default_rng(1)
    values = rng.standard_normal(500) * 10.0 ** rng.integers(-8, 9, 500)
    for x in values:
        text = labels.format_number(x)
        assert "e" not in text.lower()
        assert float(text.replace(",", "")) == pytest.approx(x, rel=5e-3)


@pytest.mark.parametrize(("values", "options", "expected"), [
    # review: -0.0004 with a CI of +/- 0.21 was "-0.000400 (-0.210400 to 0.209600)"
    ((-0.0004, -0.2104, 0.2096), {}, ("0.00", "-0.21", "0.21")),
    ((-0.0004, -0.2104, 0.2096), {"signed": True, "null": 0.0}, ("0.00", "-0.21", "+0.21")),
    # no more decimals than give the nearer half-width (0.0245) 2 significant digits
    ((0.0946, 0.0701, 0.1191), {"signed": True}, ("+0.095", "+0.070", "+0.119")),
    # the estimate's 3 significant digits when the interval allows them
    ((61.73, 56.41, 67.06), {}, ("61.7", "56.4", "67.1")),
    # a narrow interval keeps one digit of its half-width: it never collapses to one number
    ((1.2345, 1.2339, 1.2351), {}, ("1.2345", "1.2339", "1.2351")),
    # an asymmetric ratio interval: the nearer half sets the decimals
    ((0.88, 0.408, 1.9), {"null": 1.0}, ("0.88", "0.41", "1.90")),
    ((1.12, 1.04, 1.2), {"null": 1.0}, ("1.12", "1.04", "1.20")),
    # a bound that is not the null is not printed as the null (up to the estimate's digits)
    ((1.17, 0.02, 2.32), {"signed": True}, ("+1.2", "0.0", "+2.3")),
    ((1.17, 0.02, 2.32), {"signed": True, "null": 0.0}, ("+1.17", "+0.02", "+2.32")),
    ((2.36e-10, -9.157231e-6, 9.157703e-6), {}, ("0.0000000", "-0.0000092", "0.0000092")),
    ((float("nan"), 1.0, 2.0), {}, ("", "1.00", "2.00")),
    ((0.5, 0.5, 0.5), {}, ("0.500", "0.500", "0.500")),
    # review: missing and numpy inputs, and values past 2**53 without binary noise
    ((pd.NA, 0.1, 0.2), {}, ("", "0.10", "0.20")),
    ((np.float32(1.17), np.float32(0.02), np.float32(2.32)), {"signed": True, "null": 0.0},
     ("+1.17", "+0.02", "+2.32")),
    ((math.exp(40), math.exp(39), math.exp(41)), {"null": 1.0},
     ("235,000,000,000,000,000", "86,600,000,000,000,000", "640,000,000,000,000,000")),
])
def test_an_interval_is_printed_with_the_decimals_it_supports(values, options, expected):
    assert labels.format_interval(*values, **options) == expected


def test_interval_text_never_has_an_exponent_or_a_negative_zero() -> None:
    rng = np.random.default_rng(3)
    for _ in range(500):
        scale = 10.0 ** rng.integers(-9, 7)
        estimate = rng.standard_normal() * scale
        low, high = estimate - rng.exponential() * scale, estimate + rng.exponential() * scale
        texts = labels.format_interval(estimate, low, high, signed=True, null=0.0)
        for text in texts:
            assert "e" not in text.lower(), texts
            assert not re.fullmatch(r"[-+][0.,]+", text), texts  # no "-0.00" or "+0.00"
        decimals = {len(t.split(".")[1]) if "." in t else 0 for t in texts}
        assert len(decimals) == 1, texts  # estimate and bounds alike
        back = [float(t.replace(",", "")) for t in texts]
        half = min(estimate - low, high - estimate)
        assert abs(back[0] - estimate) <= max(half / 2, abs(estimate) * 5e-3), texts


@pytest.mark.parametrize(("text", "expected"), [
    ("rows dropped: missing mileage_jump: 54",
     "rows dropped: missing week-over-week mileage change: 54"),
    ("exposure 'shoe_km' is constant", "exposure 'distance on the current shoe' is constant"),
    # numbers as Python writes floats, as precise as given; an ID-like "2e3" stays
    ("fitted probabilities numerically 0 or 1 (within 1e-06)",
     "fitted probabilities numerically 0 or 1 (within 0.000001)"),
    ("gradient 1.0004e-03 > tolerance 1e-03", "gradient 0.0010004 > tolerance 0.001"),
    ("cohort 2e3 and v1.2e-3", "cohort 2e3 and v1.2e-3"),
    ("tiny 1e-300, huge 1e+400", "tiny 1e-300, huge 1e+400"),
    # what the user types or names stays as written
    ("fit without it: --param exposures=mileage_jump,rest_days_7d.",
     "fit without it: --param exposures=mileage_jump,rest_days_7d."),
    ("read /data/raw/mileage_jump.csv and shoe_km.csv", "read /data/raw/mileage_jump.csv and "
     "shoe_km.csv"),
    ("the column `shoe_km`", "the column `shoe_km`"),
])
def test_humanize_names_columns_in_words_and_keeps_what_is_typed(text, expected) -> None:
    assert labels.humanize(text) == expected


def test_captions_say_what_the_band_is() -> None:
    assert "95 % bootstrap confidence interval" in labels.caption("pain_over_time",
                                                                 outcome="Knee pain")
    assert "interquartile range" in labels.caption("weekly_mileage")
    assert "whiskers 95 % confidence intervals" in labels.caption("forest", null="OR 1")
    with pytest.raises(KeyError):
        labels.caption("nope")


def test_labels_are_plain_strings_for_every_registry_entry() -> None:
    frame = pd.DataFrame([(k, v.name, v.unit) for k, v in labels.COLUMN_LABELS.items()],
                         columns=["column", "name", "unit"])
    assert frame["name"].str.len().min() > 2
    assert not frame["name"].str.contains("_").any()  # no raw column names leak as names


def test_interval_text_uses_the_null_of_its_scale() -> None:
    """A ratio keeps a bound that is not 1 from reading 1; a difference one that is not 0
    from reading 0 (analysis.effects.NULL_EFFECT); the three texts as the index stores
    them."""
    from analysis.labels import interval_text, interval_texts, sentence

    assert interval_text(2.5, 1.02, 4.0, ratio=True) == "2.50 (1.02 to 4.00)"  # not 1.0
    assert interval_text(2.5, 1.02, 4.0, ratio=False) == "2.5 (1.0 to 4.0)"  # 0 is the null
    assert interval_text(1.17, 0.02, 2.32, ratio=False, signed=True) == \
        "+1.17 (+0.02 to +2.32)"  # not 0.0
    assert interval_texts(0.5, 0.25, 1.0, ratio=True) == {
        "text": "0.50", "low_text": "0.25", "high_text": "1.00"}
    assert sentence("distance left out") == "Distance left out" and sentence("") == ""


def test_the_caterpillar_caption_names_the_figures_normal_quantile() -> None:
    """Review: the caption wrote 1.96 while the figure draws Z_95 conditional SDs."""
    from analysis import labels
    from analysis.models import Z_95

    assert f"+/- {Z_95:.2f} conditional SD" in labels.caption("caterpillar")
    assert "1.96" not in "".join(labels.CAPTIONS.values())
