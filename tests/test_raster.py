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
                                                          "svg.svg"]  # nothing else left


def test_another_font_than_matplotlibs_would_be_caught(agg: None, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The overlap above fails when the text is drawn in a face matplotlib did not lay it
    out with (so the font pinning is what the first test checks)."""
    fig = _figure()
    drawn = plots.save_figure(fig, tmp_path, "agg", raster="agg")
    monkeypatch.setattr(raster, "_resolved_family", lambda *_, **__: "DejaVu Sans Mono")
    rasterised = plots.save_figure(fig, tmp_path, "mono", raster="svg")
    assert _dark_overlap(_pixels(drawn["png"]), _pixels(rasterised["png"])) < MIN_DARK_OVERLAP


#: Lines of text in each face a figure may use (bold, italic, serif, monospace, mathtext,
#: non-ASCII), for :func:`_text_lines`.
TEXT_LINES = (("Week-over-week mileage change (per +10 %)", {}),
              ("Between-runner SD of the intercept", {"fontweight": "bold"}),
              ("Knee pain (NRS 0-10), reports \u2265 3", {"style": "italic"}),
              ("Shoe age (days) \u2014 caf\u00e9 \u00b5 \u22122", {"family": "serif"}),
              ("runner R017: 12.5 km", {"family": "monospace"}),
              (r"$\beta_1$ per +10 % ($\mathrm{km}^2$), $\chi^2_{1} = 4.2$", {}))
#: Per line of :data:`TEXT_LINES`: how far the raster's ink may end from Agg's (px at
#: 300 dpi; measured <= 8 of 550-1,070) and differ in amount (share; measured <= 8 %).
#: Anti-aliasing and hinting differ between the two renderers; another font moves a line's
#: end by 50 px or more (monospace) and a missing glyph box adds ink.
MAX_LINE_END_PX = 16
MAX_INK_SHARE = 0.15


def _text_figure() -> Figure:
    import matplotlib.pyplot as plt

    plots.apply_theme()
    fig, ax = plt.subplots(figsize=(plots.PAGE_WIDTH_IN, 3.0), layout="constrained")
    ax.set_axis_off()
    for i, (text, style) in enumerate(TEXT_LINES):
        ax.text(0.0, 1 - i / len(TEXT_LINES), text, fontsize=11, va="top", **style)
    return fig


def _text_lines(pixels: np.ndarray) -> list[tuple[int, int]]:
    """(right end in px, dark pixels) of each band of rows holding ink, top to bottom."""
    ink = pixels.sum(axis=2) < DARK
    rows = np.r_[False, ink.any(axis=1), False]
    edges = np.flatnonzero(rows[1:] != rows[:-1])
    return [(int(np.flatnonzero(ink[top:bottom].any(axis=0)).max()),
             int(ink[top:bottom].sum())) for top, bottom in zip(edges[::2], edges[1::2],
                                                                strict=True)]


def _lines_agree(agg: np.ndarray, svg: np.ndarray) -> bool:
    a, b = _text_lines(agg), _text_lines(svg)
    return len(a) == len(b) == len(TEXT_LINES) and all(
        abs(end_a - end_b) <= MAX_LINE_END_PX and abs(ink_a - ink_b) <= MAX_INK_SHARE * ink_a
        for (end_a, ink_a), (end_b, ink_b) in zip(a, b, strict=True))


def test_every_face_of_text_is_drawn_in_matplotlibs_font(agg: None, tmp_path: Path) -> None:
    """Each font list of the SVG becomes the family matplotlib resolved it to: a serif and
    a monospace line, bold, italic, mathtext in its own faces and non-ASCII characters end
    where Agg's end, with as much ink (no missing-glyph box, no substituted face)."""
    fig = _text_figure()
    drawn = plots.save_figure(fig, tmp_path, "agg", raster="agg")
    rasterised = plots.save_figure(fig, tmp_path, "svg")
    assert _lines_agree(_pixels(drawn["png"]), _pixels(rasterised["png"]))


@pytest.mark.parametrize("face", ["DejaVu Sans Mono", "DejaVu Sans"])
def test_text_in_another_face_would_be_caught(agg: None, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              face: str) -> None:
    """The line check above fails when every text is drawn in one face (so it checks the
    per-list resolution: all text in the theme's sans-serif moves the monospace line)."""
    fig = _text_figure()
    drawn = plots.save_figure(fig, tmp_path, "agg", raster="agg")
    monkeypatch.setattr(raster, "_resolved_family", lambda *_, **__: face)
    rasterised = plots.save_figure(fig, tmp_path, "one_face")
    assert not _lines_agree(_pixels(drawn["png"]), _pixels(rasterised["png"]))


def test_without_rejecting_the_last_resort_font_mathtext_would_break(tmp_path: Path) -> None:
    """matplotlib's folder holds LastResortHE (a box naming the Unicode block for any
    character): fontconfig ranks it for mathtext's one-glyph spans unless it is rejected
    (raster._REJECTED_FONTS). In a fresh process with no rejection the line check fails,
    so the rejection is what makes the test above pass."""
    code = (
        "import sys, matplotlib; matplotlib.use('Agg'); sys.path.insert(0, sys.argv[2])\n"
        "from pathlib import Path; from analysis import plots, raster\n"
        "raster._REJECTED_FONTS = ()\n"
        "import test_raster as t\n"
        "fig = t._text_figure(); out = Path(sys.argv[1])\n"
        "a = plots.save_figure(fig, out, 'agg', raster='agg')\n"
        "b = plots.save_figure(fig, out, 'svg')\n"
        "print(t._lines_agree(t._pixels(a['png']), t._pixels(b['png'])))\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path),
                           str(Path(__file__).parent)], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


def test_a_font_the_rasteriser_was_not_given_is_drawn_by_agg(
        agg: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fig = _figure()
    plots.save_figure(fig, tmp_path, "warm")  # pyvips loaded and fontconfig configured
    monkeypatch.setattr(raster, "_CONFIGURED", [])  # no font folder known to it
    assert not raster.svg_to_png(tmp_path / "warm.svg", tmp_path / "x.png", dpi=100)
    assert not (tmp_path / "x.png").exists()
    saved = plots.save_figure(fig, tmp_path, "fallback")
    expected = plots.save_figure(fig, tmp_path, "agg", raster="agg")
    assert np.array_equal(_pixels(saved["png"]), _pixels(expected["png"]))


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


def test_a_label_that_reads_like_css_is_drawn_as_written(agg: None, tmp_path: Path) -> None:
    """Only font declarations in the SVG's style attributes are pinned: a cohort label that
    reads like one (``"; font-family: 'x'`` in text) is drawn as written, as Agg draws it."""
    import matplotlib.pyplot as plt

    plots.apply_theme()
    fig, ax = plt.subplots(figsize=(plots.PAGE_WIDTH_IN, 1.0), layout="constrained")
    ax.set_axis_off()
    label = "club\" style=\"font-family: 'DejaVu Sans Mono'; font-family: x"
    ax.text(0.0, 0.5, label, va="center")
    drawn = plots.save_figure(fig, tmp_path, "agg", raster="agg")
    rasterised = plots.save_figure(fig, tmp_path, "svg")
    assert b"font-family: x" in rasterised["svg"].read_bytes()  # the text, in the SVG
    (end_agg, ink_agg), = _text_lines(_pixels(drawn["png"]))
    (end_svg, ink_svg), = _text_lines(_pixels(rasterised["png"]))
    assert abs(end_agg - end_svg) <= MAX_LINE_END_PX
    assert abs(ink_agg - ink_svg) <= MAX_INK_SHARE * ink_agg
