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
    assert min(_dark_overlap(a, b), _dark_overlap(b, a)) >= MIN_DARK_OVERLAP
    assert np.abs(a - b).max(axis=2).mean() < 5  # of 255: edges only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agg.png", "agg.svg", "svg.png",
                                                          "svg.svg"]  # nothing else left


def test_another_font_than_matplotlibs_would_be_caught(agg: None, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The overlap above fails when the text is drawn in a face matplotlib did not lay it
    out with (so the font pinning is what the first test checks)."""
    fig = _figure()
    drawn = plots.save_figure(fig, tmp_path, "agg", raster="agg")
    monkeypatch.setattr(raster, "_resolved_families",
                        lambda *_, **__: b"font-family: 'DejaVu Sans Mono'")
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
    monkeypatch.setattr(raster, "_resolved_families",
                        lambda *_, **__: f"font-family: '{face}'".encode())
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
    assert not raster.svg_to_png(tmp_path / "warm.svg", tmp_path / "x.png", dpi=100,
                                 fonts=raster.text_fonts(fig))
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


def _fresh_process(code: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter (fontconfig starts once per process) with its own
    temporary folder ``tmp/tmp`` and no FONTCONFIG_FILE; ``sys.argv[1]`` is ``tmp``."""
    (tmp / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "FONTCONFIG_FILE"}
    env["TMPDIR"] = str(tmp / "tmp")
    prelude = ("import os, sys, matplotlib; matplotlib.use('Agg'); from pathlib import Path\n"
               "import matplotlib.pyplot as plt; from analysis import plots, raster\n")
    return subprocess.run([sys.executable, "-c", prelude + code, str(tmp)],
                          capture_output=True, text=True, check=True, env=env)


def test_a_fresh_process_leaves_no_fontconfig_file_and_no_environment(tmp_path: Path) -> None:
    """The first PNG of a process configures fontconfig from a private temporary folder
    (absolute, even for a relative figures folder) and removes it; FONTCONFIG_FILE is as
    it was; nothing but the two figure files is left, and nothing is printed."""
    done = _fresh_process(
        "os.chdir(sys.argv[1]); fig, ax = plt.subplots(); ax.set_title('Knee pain')\n"
        "plots.save_figure(fig, 'figs', 'f')\n"
        "print(raster._LOADED[0] is not None, os.environ.get('FONTCONFIG_FILE', 'unset'))\n",
        tmp_path)
    assert done.stdout.split() == ["True", "unset"]
    assert done.stderr == ""  # no fontconfig or GLib warning (a notebook would show it)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["f.png", "f.svg"]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_fontconfig_started_before_means_agg_draws_the_png(tmp_path: Path) -> None:
    """When another library drew text with libvips first, fontconfig runs on the system's
    configuration and kneeload's is never read: the probe says so and Agg draws the PNG
    (byte for byte what ``raster="agg"`` gives)."""
    done = _fresh_process(
        "import pyvips; pyvips.Image.text('hello').avg()  # fontconfig starts here\n"
        "fig, ax = plt.subplots(); ax.set_title('Knee pain')\n"
        "out = Path(sys.argv[1])\n"
        "a = plots.save_figure(fig, out, 'auto'); b = plots.save_figure(fig, out, 'agg',"
        " raster='agg')\n"
        "print(raster._LOADED[0] is None, a['png'].read_bytes() == b['png'].read_bytes())\n",
        tmp_path)
    assert done.stdout.split() == ["True", "True"]


def test_a_glyph_from_matplotlibs_fallback_font_is_drawn_from_it(agg: None,
                                                                 tmp_path: Path) -> None:
    """A text in ``['DejaVu Sans', 'STIXGeneral']`` with a character only STIX has (U+2312):
    matplotlib draws that glyph from STIX, and so does the raster (the family list is kept
    in order). A fallback font outside the folders fontconfig was given sends the figure
    to Agg (test above)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(plots.PAGE_WIDTH_IN, 1.0), layout="constrained")
    ax.set_axis_off()
    ax.text(0.0, 0.5, "Arc \u2312\u2312\u2312 of the knee", family=["DejaVu Sans", "STIXGeneral"],
            fontsize=14, va="center")
    drawn = _text_lines(_pixels(plots.save_figure(fig, tmp_path, "agg", raster="agg")["png"]))
    kept = _text_lines(_pixels(plots.save_figure(fig, tmp_path, "svg")["png"]))
    assert len(drawn) == len(kept) == 1
    assert abs(drawn[0][1] - kept[0][1]) <= MAX_INK_SHARE * drawn[0][1]
    fonts = raster.text_fonts(fig)
    assert ["DejaVu Sans", "STIXGeneral"] in fonts.values()
    declaration = next(d for d, f in fonts.items() if f == ["DejaVu Sans", "STIXGeneral"])
    assert raster._resolved_families(declaration, {}, fonts) == \
        b"font-family: 'DejaVu Sans', 'STIXGeneral'"


def test_the_png_has_aggs_pixel_size_for_any_figure_size(agg: None, tmp_path: Path) -> None:
    """librsvg rounds the scaled size and Agg truncates it (6.3333 in: 1900 vs 1899 px):
    the raster is fitted to Agg's size."""
    import matplotlib.pyplot as plt
    from PIL import Image

    for width in (6.3333, 2.0017, 4.999, 5.55):
        fig = plt.figure(figsize=(width, width / 2))
        fig.text(0.1, 0.5, "Knee pain")
        sizes = [Image.open(plots.save_figure(fig, tmp_path, name, raster=name)["png"]).size
                 for name in ("agg", "svg")]
        assert sizes[0] == sizes[1], width
        plt.close(fig)


def test_a_figure_past_libxml2s_text_limit_is_rasterised(tmp_path: Path) -> None:
    """An SVG with an attribute over libxml2's 10 MB default (a large embedded image's
    base64 text) loads: libvips is asked for no limit."""
    svg = tmp_path / "big.svg"
    svg.write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg" width="72pt" height="36pt" '
                    b'data-payload="' + b"A" * (11 << 20) + b'"><rect width="72" '
                    b'height="36" style="fill: #0173b2"/></svg>')
    assert raster.svg_to_png(svg, tmp_path / "big.png", dpi=100, fonts={})
    assert _pixels(tmp_path / "big.png")[25, 50].tolist() == [1, 115, 178]


def test_a_file_libvips_fails_on_is_drawn_by_agg(agg: None, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fig = _figure()
    plots.save_figure(fig, tmp_path, "warm")  # pyvips loaded

    def fails(*_: object, **__: object) -> None:
        raise pyvips.Error("Resource limit exceeded")

    monkeypatch.setattr(pyvips.Image, "svgload_buffer", fails)
    saved = plots.save_figure(fig, tmp_path, "fallback")
    expected = plots.save_figure(fig, tmp_path, "agg", raster="agg")
    assert saved["svg"].is_file()
    assert saved["png"].read_bytes() == expected["png"].read_bytes()


def test_agg_pngs_carry_no_software_entry_and_raster_is_checked(agg: None, tmp_path: Path
                                                               ) -> None:
    from PIL import Image

    path = plots.save_figure(_figure(), tmp_path, "agg", raster="agg")["png"]
    with Image.open(path) as image:
        assert "Software" not in image.info  # the same bytes on any matplotlib
    with pytest.raises(ValueError, match="raster must be one of"):
        plots.save_figure(_figure(), tmp_path, "x", raster="SVG")


def test_a_font_folder_that_is_not_valid_xml_is_left_out(tmp_path: Path) -> None:
    folders = [str(tmp_path / "ok & <fine>"), str(tmp_path / "bad\x01name")]
    conf = raster._font_config(tmp_path, folders).read_text(encoding="utf-8")
    assert folders == [str(tmp_path / "ok & <fine>")]  # fonts there are not trusted
    assert "ok &amp; &lt;fine&gt;" in conf and "\x01" not in conf


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


@pytest.mark.parametrize("style", [{"stretch": "condensed"}, {"weight": "light"},
                                   {"weight": 100}, {"variant": "small-caps"}])
def test_a_face_fontconfig_could_choose_otherwise_is_drawn_by_agg(agg: None, tmp_path: Path,
                                                                  style: dict) -> None:
    """A stretch, a variant, a weight other than normal or bold, or a face the rasteriser
    is not given: fontconfig and matplotlib could pick different files (a system's
    Condensed or ExtraLight face, real small caps), so Agg draws the PNG, byte for byte."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.0, 1.0))
    ax.set_axis_off()
    ax.text(0.0, 0.5, "Knee pain per +10 %", **style)
    saved = plots.save_figure(fig, tmp_path, "auto")
    expected = plots.save_figure(fig, tmp_path, "agg", raster="agg")
    assert saved["png"].read_bytes() == expected["png"].read_bytes()


def test_a_face_fontconfig_is_not_given_is_not_pinned(agg: None, tmp_path: Path) -> None:
    plots.save_figure(_figure(), tmp_path, "warm")  # pyvips loaded, _CONFIGURED set
    display = "font-family: 'DejaVu Sans Display'"  # matplotlib's, rejected for fontconfig
    assert raster._resolved_families(display, {}, {}) is None
    assert raster._resolved_families("font-family: 'DejaVu Sans'", {}, {}) == \
        b"font-family: 'DejaVu Sans'"


def test_an_explicit_family_before_a_generic_that_also_lists_it(agg: None, tmp_path: Path
                                                                ) -> None:
    """``font.family = ['DejaVu Sans Mono', 'sans-serif']`` with the sans-serif list naming
    DejaVu Sans Mono too: matplotlib draws monospace, and so does the raster."""
    import matplotlib as mpl

    fig = _text_figure()
    with mpl.rc_context({"font.family": ["DejaVu Sans Mono", "sans-serif"],
                         "font.sans-serif": ["DejaVu Sans", "DejaVu Sans Mono"]}):
        for text in fig.findobj(lambda a: hasattr(a, "set_fontfamily")):
            if not getattr(text, "get_math_fontfamily", None) or "$" not in text.get_text():
                text.set_fontfamily(["DejaVu Sans Mono", "sans-serif"])
        drawn = plots.save_figure(fig, tmp_path, "agg", raster="agg")
        rasterised = plots.save_figure(fig, tmp_path, "svg")
    assert _lines_agree(_pixels(drawn["png"]), _pixels(rasterised["png"]))


def test_a_tight_bounding_box_keeps_the_whole_figure(agg: None, tmp_path: Path) -> None:
    """``savefig.bbox: tight`` (a user's matplotlibrc) makes both files larger than the
    figure: the PNG takes the SVG's size, as Agg's does, and nothing is cut off (each
    renderer measures its own tight box: they differ by a few pixels, 2 here)."""
    import matplotlib as mpl

    with mpl.rc_context({"savefig.bbox": "tight"}):
        fig = _figure()
        drawn = plots.save_figure(fig, tmp_path, "agg", raster="agg")
        rasterised = plots.save_figure(fig, tmp_path, "svg")
    a, b = _pixels(drawn["png"]), _pixels(rasterised["png"])
    assert abs(a.shape[0] - b.shape[0]) <= 4 and abs(a.shape[1] - b.shape[1]) <= 4
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    assert min(_dark_overlap(a[:h, :w], b[:h, :w]), _dark_overlap(b[:h, :w], a[:h, :w])) \
        >= MIN_DARK_OVERLAP


def test_two_threads_saving_first_load_pyvips_once(tmp_path: Path) -> None:
    """Two threads' first figures at once: pyvips is loaded once and FONTCONFIG_FILE is
    restored (a race once left it naming the removed file, for every child process)."""
    done = _fresh_process(
        "import threading; barrier = threading.Barrier(2); out = Path(sys.argv[1])\n"
        "def save(k):\n"
        "    fig, ax = plt.subplots(); ax.set_title('Knee pain'); barrier.wait()\n"
        "    plots.save_figure(fig, out / f'f{k}', 'f')\n"
        "threads = [threading.Thread(target=save, args=(k,)) for k in range(2)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(len(raster._LOADED), os.environ.get('FONTCONFIG_FILE', 'unset'))\n",
        tmp_path)
    assert done.stdout.split() == ["1", "unset"]
