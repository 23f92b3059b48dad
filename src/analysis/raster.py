"""The PNG of a figure drawn from its saved SVG (libvips with librsvg), not drawn again.

A report saves every figure as SVG and as a 300 dpi PNG. Matplotlib's Agg backend draws the
figure a second time for the PNG (every artist, tick and text laid out again, then a
zlib-compressed image): 55 % of a report's figure time. Rasterising the SVG that was just
written costs a tenth of that (``bench/bench_reports.py``). The two images agree to the
anti-aliasing of edges (``tests/test_raster.py`` compares them pixel by pixel).

The SVG keeps its text as text (``svg.fonttype: none``, so a journal can edit it) with
matplotlib's font list (``'Arial', 'DejaVu Sans', ...``). A rasteriser would resolve that
list against the machine's fonts and could pick a font matplotlib did not measure the
layout with (Arial where matplotlib used DejaVu Sans): labels would then be wider or
narrower than their boxes. So the family in the rasterised copy is the one matplotlib
resolved, and the rasteriser sees only the font files matplotlib uses (a fontconfig
configuration of their folders, read once per process).

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
#: The font declarations of matplotlib's SVG text (``font-family: 'Arial', ...``).
_FONT_FAMILY = re.compile(rb"font-family: [^;\"]*")
#: Environment variable of fontconfig's configuration file.
_FONTCONFIG_FILE = "FONTCONFIG_FILE"
#: Font weights and styles matplotlib may ask for (their files are put in the fontconfig
#: configuration).
_FONT_VARIANTS = ({}, {"weight": "bold"}, {"style": "italic"},
                  {"weight": "bold", "style": "italic"})
#: A text to draw once so fontconfig reads the configuration while it exists.
_PROBE_SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8">'
              b'<text x="0" y="6" style="font-size: 6px; font-family: sans-serif">x</text>'
              b"</svg>")


def svg_to_png(svg: Path, png: Path, *, dpi: float) -> bool:
    """Write ``png``: the SVG file ``svg`` (as :func:`analysis.plots.save_figure` writes
    it) rasterised at ``dpi`` dots per inch, its text in the font matplotlib laid it out
    with. Returns False, writing nothing, where no SVG-capable libvips is installed."""
    vips = _vips(png.parent)
    if vips is None:
        return False
    family = b"font-family: '" + _matplotlib_family().encode() + b"'"
    data = _FONT_FAMILY.sub(family, svg.read_bytes())
    image = vips.Image.svgload_buffer(data, scale=dpi / POINTS_PER_INCH)
    image = image.copy(xres=dpi / MM_PER_INCH, yres=dpi / MM_PER_INCH)  # the PNG's pHYs
    image.pngsave(str(png), compression=PNG_COMPRESSION, strip=True)
    return True


def _matplotlib_family() -> str:
    """The family name of the font matplotlib draws text with (rcParams ``font.family``)."""
    import matplotlib as mpl
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family=mpl.rcParams["font.family"]))
    return str(font_manager.get_font(path).family_name)


def _font_folders() -> list[str]:
    """Folders of the font files matplotlib uses for its family, in each weight and style."""
    import matplotlib as mpl
    from matplotlib import font_manager

    family = mpl.rcParams["font.family"]
    return sorted({str(Path(font_manager.findfont(font_manager.FontProperties(
        family=family, **variant))).parent) for variant in _FONT_VARIANTS})


#: pyvips once loaded and its fonts configured (a one-item list: loaded or not, per process).
_LOADED: list[Any] = []


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
    before = os.environ.get(_FONTCONFIG_FILE)
    os.environ[_FONTCONFIG_FILE] = str(_font_config(folder))
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


def _font_config(folder: Path) -> Path:
    """A fontconfig file in ``folder`` naming only matplotlib's font folders, its cache in
    ``folder`` and no rescanning."""
    dirs = "".join(f"<dir>{_xml_text(d)}</dir>" for d in _font_folders())
    config = folder / "fonts.conf"
    config.write_text('<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd">'
                      f"<fontconfig>{dirs}<cachedir>{_xml_text(str(folder))}</cachedir>"
                      "<config><rescan><int>0</int></rescan></config></fontconfig>",
                      encoding="utf-8")
    return config


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
