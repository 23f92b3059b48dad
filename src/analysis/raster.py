"""The PNG of a figure drawn from its saved SVG (libvips with librsvg), not drawn again.

A report saves every figure as SVG and as a 300 dpi PNG. Matplotlib's Agg backend draws the
figure a second time for the PNG (every artist, tick and text laid out again, then a
zlib-compressed image): 55 % of a report's figure time. Rasterising the SVG that was just
written costs a quarter of that (``bench/bench_reports.py``, ``docs/reports.md``). The two
images agree to the anti-aliasing of edges (``tests/test_raster.py`` compares them pixel by
pixel).

The SVG keeps its text as text (``svg.fonttype: none``, so a journal can edit it) with
matplotlib's font list (``'Arial', 'DejaVu Sans', ...``). A rasteriser would resolve that
list against the machine's fonts and could pick a font matplotlib did not measure the
layout with (Arial where matplotlib used DejaVu Sans): labels would then be wider or
narrower than their boxes. So each font list in the rasterised copy is replaced by the one
family matplotlib resolved it to, and the rasteriser sees only matplotlib's font folders (a
fontconfig configuration read once per process). A figure whose text resolves to a font
outside those folders is drawn by Agg instead.

Where libvips or its SVG loader is missing (it comes with the ``pyvips[binary]`` wheel;
a conda ``libvips`` may lack librsvg), :func:`svg_to_png` returns False and the caller
draws the PNG with Agg as before.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

#: Millimetres per inch (libvips resolutions are pixels per millimetre).
MM_PER_INCH = 25.4
#: SVG user units per inch (matplotlib writes sizes in points).
POINTS_PER_INCH = 72.0
#: zlib level of the PNG (libvips: 6 writes half the bytes of 1 in the same time).
PNG_COMPRESSION = 6
#: A tag's ``style`` attribute in the SVG (a ``<`` in text is written ``&lt;`` and a ``"`` in
#: an attribute ``&quot;``, so a figure's text can never look like one).
_STYLE = re.compile(rb'<[A-Za-z][^<>]*?\sstyle="[^"]*"')
#: A font declaration inside a style attribute (``font-family: 'Arial', ...``).
_FONT_FAMILY = re.compile(rb"font-family: [^;\"]*")
#: Environment variable of fontconfig's configuration file.
_FONTCONFIG_FILE = "FONTCONFIG_FILE"
#: Font weights and styles matplotlib may ask for (their files are put in the fontconfig
#: configuration).
_FONT_VARIANTS = ({}, {"weight": "bold"}, {"style": "italic"},
                  {"weight": "bold", "style": "italic"})
#: Font files of matplotlib's folder the rasteriser must not pick: matplotlib's last-resort
#: font (a box naming the Unicode block for every character: fontconfig would rank it for
#: mathtext's single-glyph spans) and the Display faces (a few glyphs for large sizes).
_REJECTED_FONTS = ("*/LastResort*", "*Display.ttf")
#: A text to draw once so fontconfig reads the configuration while it exists.
_PROBE_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8">'
              b'<text x="0" y="6" style="font-size: 6px; font-family: sans-serif">x</text>'
              b"</svg>")


def svg_to_png(svg: Path, png: Path, *, dpi: float) -> bool:
    """Write ``png``: the SVG file ``svg`` (as :func:`analysis.plots.save_figure` writes
    it) rasterised at ``dpi`` dots per inch, its text in the fonts matplotlib laid it out
    with. Returns False, writing nothing, where no SVG-capable libvips is installed or a
    text's font is not one the rasteriser was given (:func:`_font_folders`)."""
    vips = _vips(png.parent)
    if vips is None:
        return False
    data = svg.read_bytes()
    families = {}
    for style in set(_STYLE.findall(data)):
        for declaration in _FONT_FAMILY.findall(style):
            resolved = _resolved_family(declaration.decode("utf-8"), folders=_CONFIGURED)
            if resolved is None:
                return False
            families[declaration] = b"font-family: '" + resolved.encode("utf-8") + b"'"

    def pinned(tag: re.Match[bytes]) -> bytes:
        return _FONT_FAMILY.sub(lambda m: families[m.group(0)], tag.group(0))

    data = _STYLE.sub(pinned, data)
    image = vips.Image.svgload_buffer(data, scale=dpi / POINTS_PER_INCH)
    image = image.copy(xres=dpi / MM_PER_INCH, yres=dpi / MM_PER_INCH)  # the PNG's pHYs
    image.pngsave(str(png), compression=PNG_COMPRESSION, strip=True)
    return True


def _resolved_family(declaration: str, *, folders: list[str]) -> str | None:
    """The family matplotlib draws a text of this CSS ``font-family`` declaration in (the
    first of its list matplotlib has, as its text layout picks it); None when that font's
    folder is not in ``folders``, those the rasteriser was given (it would not find it)."""
    from matplotlib import font_manager

    names = [n.strip().strip("'\"") for n in declaration.split(":", 1)[1].split(",")]
    path = Path(font_manager.findfont(font_manager.FontProperties(family=names)))
    if str(path.parent) not in folders:
        return None
    return str(font_manager.get_font(str(path)).family_name)


def _font_folders() -> list[str]:
    """The folders the rasteriser gets: matplotlib's own fonts (DejaVu, STIX, Computer
    Modern: its text and mathtext faces) and the folders of the fonts matplotlib resolves
    its generic families and ``font.family`` to, in each weight and style."""
    import matplotlib as mpl
    from matplotlib import font_manager

    own = Path(mpl.get_data_path()) / "fonts" / "ttf"
    families = [mpl.rcParams["font.family"], ["sans-serif"], ["serif"], ["monospace"]]
    return sorted({str(own)} | {
        str(Path(font_manager.findfont(font_manager.FontProperties(
            family=family, **variant))).parent)
        for family in families for variant in _FONT_VARIANTS})


#: pyvips once loaded and its fonts configured (a one-item list: loaded or not, per process).
_LOADED: list[Any] = []
#: The font folders fontconfig was given when pyvips was loaded (:func:`_font_folders`).
_CONFIGURED: list[str] = []


def _vips(scratch: Path) -> Any:
    """pyvips, with fontconfig set to matplotlib's font folders; None without an SVG loader.

    fontconfig reads its configuration once per process, at the first text drawn: the file
    is written in a folder under ``scratch`` (the figures folder, so nothing is created
    outside the output), read by drawing one character, and removed; rescanning is off so
    the removed file is never looked for again. Loaded once per process; ``scratch`` only
    matters the first time.
    """
    if not _LOADED:
        _LOADED.append(_load_vips(scratch))
    return _LOADED[0]


def _load_vips(scratch: Path) -> Any:
    """Import pyvips with :func:`_font_config` in place and draw one text (fontconfig reads
    its configuration there); the configuration's folder is removed after."""
    folder = Path(tempfile.mkdtemp(prefix=".fontconfig-", dir=scratch))
    _CONFIGURED[:] = _font_folders()
    before = os.environ.get(_FONTCONFIG_FILE)
    os.environ[_FONTCONFIG_FILE] = str(_font_config(folder, _CONFIGURED))
    try:
        import pyvips

        if not pyvips.type_find("VipsOperation", "svgload_buffer"):
            return None
        pyvips.Image.svgload_buffer(_PROBE_SVG).avg()  # draws the text: fontconfig starts
        return pyvips
    except (ImportError, OSError):  # no pyvips, or no libvips shared library
        return None
    finally:
        if before is None:
            os.environ.pop(_FONTCONFIG_FILE, None)
        else:
            os.environ[_FONTCONFIG_FILE] = before
        shutil.rmtree(folder, ignore_errors=True)


def _font_config(folder: Path, fonts: list[str]) -> Path:
    """A fontconfig file in ``folder`` naming only the font folders ``fonts``, its cache in
    ``folder`` and no rescanning."""
    dirs = "".join(f"<dir>{_xml_text(d)}</dir>" for d in fonts)
    rejected = "".join(f"<glob>{_xml_text(g)}</glob>" for g in _REJECTED_FONTS)
    config = folder / "fonts.conf"
    config.write_text('<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd">'
                      f"<fontconfig>{dirs}<cachedir>{_xml_text(str(folder))}</cachedir>"
                      f"<selectfont><rejectfont>{rejected}</rejectfont></selectfont>"
                      "<config><rescan><int>0</int></rescan></config></fontconfig>",
                      encoding="utf-8")
    return config


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
