"""analysis.plots: the figures read their widths and reference lines from named constants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats


def test_caterpillar_intervals_are_wald_95(agg: None) -> None:
    from analysis import plots

    per_runner = pd.DataFrame({"Intercept": [0.5, -1.0, 0.2], "Intercept_se": [0.1, 0.2, 0.3]})
    ax = plots.caterpillar(per_runner)
    segments = ax.collections[0].get_segments()  # one vertical bar per runner, sorted
    half = np.array([(s[1, 1] - s[0, 1]) / 2 for s in segments])
    # the normal 97.5 % quantile by scipy directly, not the package's constant
    np.testing.assert_allclose(half, stats.norm.ppf(0.975) * np.array([0.2, 0.3, 0.1]),
                               rtol=1e-12)


def test_power_curve_reference_line_is_the_power_target(agg: None) -> None:
    from analysis import plots

    power = pd.DataFrame({"term": "mileage_jump", "weeks": [12, 12], "runners": [50, 100],
                          "power": [0.4, 0.7], "power_ci_low": [0.3, 0.6],
                          "power_ci_high": [0.5, 0.8]})
    ax = plots.power_curve_plot(power)
    levels = [line.get_ydata()[0] for line in ax.lines[1:]]
    assert levels == [plots.POWER_TARGET] and plots.POWER_TARGET == 0.8


# --- issue 14: page-sized, labelled figures ------------------------------------------------


def _demo_panel() -> pd.DataFrame:
    from analysis.paths import processed_dir

    return pd.read_parquet(processed_dir("demo") / "panel.parquet")


def _texts(fig) -> list:
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]


def test_every_text_is_at_least_9_pt_on_a_page_wide_figure(agg: None) -> None:
    from analysis import plots

    plots.apply_theme()
    panel = _demo_panel()
    fig, axes = plots.panel_grid(4)
    plots.jump_bands_vs_pain(panel, ax=axes[0])
    for ax, exposure in zip(axes[1:], ["mileage_jump", "shoe_km", "rest_days_7d"],
                            strict=True):
        plots.exposure_vs_pain(panel, exposure, ax=ax)
    assert fig.get_size_inches()[0] == plots.PAGE_WIDTH_IN
    sizes = [t.get_fontsize() for t in _texts(fig)]
    assert len(sizes) > 20 and min(sizes) >= plots.MIN_FONT_PT == 9.0
    from analysis.paths import processed_dir

    daily = pd.read_parquet(processed_dir("demo") / "daily.parquet")
    fig, axes = plots.panel_grid(2)
    plots.weekly_mileage(daily, ax=axes[0])
    plots.pain_over_time(panel, ax=axes[1])
    fig.canvas.draw()  # the date axis's offset text exists once drawn
    assert min(t.get_fontsize() for t in _texts(fig)) >= plots.MIN_FONT_PT


def test_a_nearly_constant_axis_has_no_offset_or_multiplier(agg: None) -> None:
    """Residuals of a cohort whose outcome barely varies (~1e-5): the ticks read as plain
    numbers, with no "1e-5" or "+1" offset text above the axis (review)."""
    import matplotlib.pyplot as plt

    from analysis import plots

    plots.apply_theme()
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [3.00001, 3.00002, 3.00004])
    ax.plot([1e-6, 2e-6, 3e-6], [0, 1, 2])
    fig.canvas.draw()
    assert ax.yaxis.get_offset_text().get_text() == ""
    assert ax.xaxis.get_offset_text().get_text() == ""
    ticks = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    assert all("e" not in t.lower() for t in ticks), ticks
    plt.close(fig)


def test_axis_labels_are_human_and_bins_have_no_scientific_notation(agg: None) -> None:
    from analysis import labels, plots

    plots.apply_theme()
    panel = _demo_panel()
    ax = plots.exposure_vs_pain(panel, "shoe_km")
    assert ax.get_xlabel() == "Distance on the current shoe (km)"
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert all("e+" not in t and "e-" not in t for t in ticks)
    # the first bin starts at the smallest value (not pandas' widened edge)
    assert ticks[0].startswith(labels.format_number(panel["shoe_km"].min()))
    ax = plots.exposure_vs_pain(panel, "mileage_jump")
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    low = panel["mileage_jump"].min() * 100  # the jump in per cent, as it is read
    assert ticks[0].startswith(labels.format_number(low)) and ax.get_xlabel().endswith("(%)")


def test_quantile_bins_cover_every_value_with_its_observed_range() -> None:
    from analysis import plots

    values = pd.Series([120.0, 130.0, 150.0, 160.0, 200.0, 220.0])
    binned, order = plots.quantile_bins(values, bins=3)
    assert order == ["120 to 130", "150 to 160", "200 to 220"]
    assert binned.tolist() == ["120 to 130"] * 2 + ["150 to 160"] * 2 + ["200 to 220"] * 2
    fractions = pd.Series([-0.001, 0.2, 0.5, 1.0])
    _, order = plots.quantile_bins(fractions, bins=2, scale=100.0)
    assert order == ["-0.1 to 20", "50 to 100"]


@pytest.mark.parametrize("width", [0.5, 1.0])  # share of the page width
@pytest.mark.parametrize(("low", "high"), [(0.6, 1.6), (0.55, 1.7), (0.2, 12.0), (0.9, 1.1),
                                           (0.3, 1.3)])
def test_odds_ratio_ticks_do_not_overlap(agg: None, low: float, high: float,
                                         width: float) -> None:
    """The demo once printed "0.670.8 1 1.251.5": tick labels must never touch, at any
    figure width (the ticks are chosen at draw time for the axis as laid out)."""
    import itertools

    import matplotlib.pyplot as plt

    from analysis import plots

    plots.apply_theme()
    effects = pd.DataFrame({"term": ["mileage_jump", "shoe_km"],
                            "odds_ratio": [1.0, 1.0], "or_ci_low": [low, 1.0],
                            "or_ci_high": [1.0, high]})
    fig, ax = plt.subplots(figsize=(plots.PAGE_WIDTH_IN * width, 2.5), layout="constrained")
    plots.forest_plot(effects, ax=ax)
    fig.canvas.draw()
    shown = [t for t in ax.get_xticklabels() if t.get_text()]
    boxes = sorted((t.get_window_extent() for t in shown), key=lambda b: b.x0)
    assert all(a.x1 < b.x0 for a, b in itertools.pairwise(boxes))
    texts = [t.get_text() for t in shown]
    assert "1" in texts and all("e" not in t for t in texts)
    if width == 1.0 and high / low > 2:
        assert len(texts) >= 3


def test_odds_ticks_keep_one_and_the_widest_spread_that_fits() -> None:
    from analysis import plots

    assert plots.odds_ticks(0.5, 2.0, width_pt=20) == [1]  # no room: only no effect
    wide = plots.odds_ticks(0.5, 2.0, width_pt=400)
    assert wide[0] == 0.5 and wide[-1] == 2 and 1 in wide
    narrow = plots.odds_ticks(0.5, 2.0, width_pt=80)
    assert 1 in narrow and len(narrow) < len(wide)


def test_forest_labels_name_the_term_and_its_step(agg: None) -> None:
    from analysis import plots

    effects = pd.DataFrame({"term": ["mileage_jump_within", "C(sex)[T.M]"],
                            "estimate": [0.1, -0.2], "ci_low": [0.0, -0.4],
                            "ci_high": [0.2, 0.0]})
    ax = plots.forest_plot(effects)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["Week-over-week mileage change, within runner\n(per +10 %)",
                      "Sex: M\n(vs the reference level)"]


def test_predicted_pain_reads_a_jump_in_per_cent(agg: None) -> None:
    from analysis import plots
    from analysis.models import fit_model
    from analysis.models.predict import predicted_curve

    panel = _demo_panel()
    result = fit_model(panel, model="lmm", outcome="pain",
                       exposures=["mileage_jump", "rest_days_7d"])
    ax = plots.predicted_pain(result, panel, exposure="mileage_jump")
    curve = predicted_curve(result, panel, exposure="mileage_jump")
    np.testing.assert_allclose(ax.lines[0].get_xdata(), curve["x"] * 100.0)
    assert ax.get_xlabel() == "Week-over-week mileage change (%)"
    assert ax.get_xlim()[1] > 50  # per cent, not a fraction of 1


def test_save_figure_writes_svg_and_a_300_dpi_png(agg: None, tmp_path) -> None:
    import matplotlib.image as mpimg

    from analysis import plots

    fig, axes = plots.panel_grid(2)
    axes[0].plot([0, 1], [0, 1])
    paths = plots.save_figure(fig, tmp_path / "figures", "two")
    assert sorted(p.name for p in paths.values()) == ["two.png", "two.svg"]
    height, width = mpimg.imread(paths["png"]).shape[:2]
    assert width == round(plots.PAGE_WIDTH_IN * plots.SAVE_DPI)  # 6.5 in at 300 dpi
    assert height == round(fig.get_size_inches()[1] * plots.SAVE_DPI)
    assert paths["svg"].read_text().lstrip().startswith("<?xml")


def test_the_flow_diagram_shows_every_count(agg: None) -> None:
    from analysis import plots, tables

    records = pd.DataFrame({"file": ["runs.csv"] * 3, "status": ["kept", "merged",
                                                               "quarantined"],
                            "reason": ["", "exact_duplicate", "pace_too_fast"],
                            "n": [97, 2, 1]})
    flow = tables.Flow([("Runners enrolled", 12), ("With pain reports", 10),
                        ("In the model", 9)],
                       [("In the panel", 120), ("Dropped: missing x", 20),
                        ("In the model", 100)], records, {"runs.csv": 100},
                       {"With pain reports": "of whom 3 logged no usable run"})
    flow.check()
    ax = plots.flow_diagram(flow)
    text = " ".join(t.get_text() for t in _texts(ax.figure))
    for part in ("n = 12", "n = 9", "Excluded: 2", "Excluded: 1",
                 "(of whom 3 logged no usable run)", "runs.csv: 100 read, 97 kept",
                 "merged: exact duplicate 2", "quarantined: pace too fast 1",
                 "In the model: 100", "Dropped: missing x: 20"):
        assert part in text, part


def test_saving_the_same_figure_twice_gives_the_same_files(agg: None, tmp_path) -> None:
    """Reports are compared byte for byte (kept kernel vs fresh): SVG ids must not be
    random."""
    from analysis import plots

    def draw() -> dict:
        fig, axes = plots.panel_grid(1)
        axes[0].plot([0, 1, 2], [1, 0, 1], marker="o")
        return plots.save_figure(fig, tmp_path / str(len(list(tmp_path.iterdir()))), "f")

    first, second = draw(), draw()
    assert first["svg"].read_bytes() == second["svg"].read_bytes()
    assert first["png"].read_bytes() == second["png"].read_bytes()
