"""The PNG rasterised from a figure's SVG against the one Agg draws (analysis.raster)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from analysis import plots, raster

pyvips = pytest.importorskip("pyvips", reason="pyvips (libvips) not installed: PNGs are "
                             "drawn by Agg")
if not pyvips.type_find("VipsOperation", "svgload_buffer"):  # pragma: no cover
    pytest.skip("libvips has no SVG loader: PNGs are drawn by Agg", allow_module_level=True)

#: Share of Agg's dark (text and line) pixels that the rasterised PNG also has dark: the
#: two agree to the anti-aliasing of edges (measured 0.98 on this figure). A label in
#: another font than matplotlib measured moves most glyph pixels (0.7 with the monospace
#: face below).
MIN_DARK_OVERLAP = 0.95
DARK = 300  # sum of RGB below which a pixel is text or line (of 765)


def _figure() -> Figure:
    plots.apply_theme()
    fig, axes = plots.panel_grid(2)
    axes[0].plot([0, 1, 2], [1, 3, 2], label="Week-over-week mileage change")
    axes[0].set_title("By mileage-change band (Nielsen 2014)", fontweight="bold")
    axes[0].legend()
    axes[1].bar(["<10 %", "10-30 %", ">30 %"], [3, 2, 1])
    axes[1].set_xlabel("Knee pain (NRS 0-10)", style="italic")
    return fig


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def _dark_overlap(agg: np.ndarray, svg: np.ndarray) -> float:
    dark_agg, dark_svg = agg.sum(axis=2) < DARK, svg.sum(axis=2) < DARK
    return float((dark_agg & dark_svg).sum() / dark_agg.sum())


def test_rasterised_png_matches_the_agg_png(agg: None, tmp_path: Path) -> None:
    from PIL import Image

    fig = _figure()
    drawn = plots.save_figure(fig, tmp_path, "agg", raster="agg")
    rasterised = plots.save_figure(fig, tmp_path, "svg", raster="svg")
    a, b = _pixels(drawn["png"]), _pixels(rasterised["png"])
    assert a.shape == b.shape == (round(plots.PANEL_HEIGHT_IN * plots.SAVE_DPI),
                                  round(plots.PAGE_WIDTH_IN * plots.SAVE_DPI), 3)
    with Image.open(rasterised["png"]) as image:
        assert image.info["dpi"] == pytest.approx((plots.SAVE_DPI, plots.SAVE_DPI), abs=0.01)
    assert _dark_overlap(a, b) >= MIN_DARK_OVERLAP
    assert np.abs(a - b).max(axis=2).mean() < 5  # of 255: edges only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agg.png", "agg.svg", "svg.png",
                                                          "svg.svg"]  # no fontconfig left


def test_another_font_than_matplotlibs_would_be_caught(agg: None, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The overlap above fails when the text is drawn in a face matplotlib did not lay it
    out with (so the font pinning is what the first test checks)."""
    fig = _figure()
    drawn = plots.save_figure(fig, tmp_path, "agg", raster="agg")
    monkeypatch.setattr(raster, "_matplotlib_family", lambda: "DejaVu Sans Mono")
    rasterised = plots.save_figure(fig, tmp_path, "mono", raster="svg")
    assert _dark_overlap(_pixels(drawn["png"]), _pixels(rasterised["png"])) < MIN_DARK_OVERLAP


def test_without_libvips_agg_draws_the_png(agg: None, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raster, "_LOADED", [None])
    fig = _figure()
    saved = plots.save_figure(fig, tmp_path, "fallback")
    expected = plots.save_figure(fig, tmp_path, "agg", raster="agg")
    assert np.array_equal(_pixels(saved["png"]), _pixels(expected["png"]))


def test_a_fresh_process_leaves_no_fontconfig_file_and_no_environment(tmp_path: Path) -> None:
    """The first PNG of a process configures fontconfig in a folder under the figures folder
    and removes it; FONTCONFIG_FILE is as it was."""
    code = (
        "import os, sys, matplotlib; matplotlib.use('Agg'); from pathlib import Path\n"
        "import matplotlib.pyplot as plt; from analysis import plots, raster\n"
        "fig, ax = plt.subplots(); ax.set_title('Knee pain')\n"
        "plots.save_figure(fig, sys.argv[1], 'f')\n"
        "assert raster._LOADED[0] is not None\n"
        "print(os.environ.get('FONTCONFIG_FILE', 'unset'))\n")
    env = {k: v for k, v in os.environ.items() if k != "FONTCONFIG_FILE"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, check=True, env=env)
    assert done.stdout.strip() == "unset"
    assert done.stderr == ""  # no fontconfig or GLib warning (a notebook would show it)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "f.svg"]
