"""The PNG of a figure drawn from its saved SVG (libvips with librsvg), not drawn again.

A report saves every figure as SVG and as a 300 dpi PNG. Matplotlib's Agg backend draws the
figure a second time for the PNG (every artist, tick and text laid out again, then a
zlib-compressed image): 55 % of a report's figure time. Rasterising the SVG that was just
written costs a quarter of that (``bench/bench_reports.py``, ``docs/reports.md``). The PNG
shows what the SVG shows, pixel for pixel like Agg's to the anti-aliasing of edges
(``tests/test_raster.py``), except where matplotlib's SVG and Agg outputs themselves differ
(a hatch on a translucent patch is translucent in the SVG, as browsers draw it, and solid
in Agg's PNG).

The SVG keeps its text as text (``svg.fonttype: none``, so a journal can edit it) with
matplotlib's font list (``'Arial', 'DejaVu Sans', ...``). A rasteriser would resolve that
list against the machine's fonts and could pick a font matplotlib did not measure the
layout with (Arial where matplotlib used DejaVu Sans): labels would then be wider or
narrower than their boxes. So each font list in the rasterised copy is replaced by the
families matplotlib resolved it to (its per-glyph fallback list, in order), and the
rasteriser sees only the folders of matplotlib's fonts (a fontconfig configuration read
once per process, from a private temporary folder removed straight after).

:func:`svg_to_png` returns False, and the caller draws the PNG with Agg as before, where
libvips or its SVG loader is missing (it comes with the ``pyvips[binary]`` wheel; a conda
``libvips`` may lack librsvg), where fontconfig did not take that configuration (it had
started before in the process), where a text's font is not in those folders, and where
libvips fails on the file.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping
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
#: The SVG's size in points (matplotlib's header: ``width="468pt" height="230.4pt"``).
_SIZE = re.compile(rb'<svg [^>]*?width="([0-9.]+)pt" height="([0-9.]+)pt"')
_HEADER_BYTES = 4096
#: Added before truncating a size in pixels (468 pt at 300 dpi is 1949.9999999 in floats).
_SIZE_EPSILON = 1e-6
#: CSS weights the rasteriser draws as matplotlib does (matplotlib writes a weight only
#: when it is not 400), with matplotlib's name of each.
_PLAIN_WEIGHTS = {"normal": "normal", "700": "bold", "bold": "bold"}
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
#: A family only kneeload's configuration defines (an alias of :data:`_PROBE_TARGET`): it
#: draws as that font only when fontconfig read the configuration.
_PROBE_FAMILY = "kneeload-configuration-probe"
#: The font the probe family stands for (matplotlib ships it; unlike the default sans-serif).
_PROBE_TARGET = "DejaVu Serif"
#: One line of text in a font family, drawn to check which font fontconfig gives it.
_PROBE_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="96" height="32"><text x="2" '
              'y="24" style="font-size: 22px; font-family: {family}">Rag</text></svg>')


def svg_to_png(svg: Path, png: Path, *, dpi: float, fonts: Mapping[str, list[str]]) -> bool:
    """Write ``png``: the SVG file ``svg`` (as :func:`analysis.plots.save_figure` writes
    it) rasterised at ``dpi`` dots per inch to Agg's pixel size of it, its text in the
    fonts matplotlib laid it out with. ``fonts``: :func:`text_fonts` of the figure. Returns
    False, writing nothing, where the rasteriser cannot be trusted with it (module
    docstring)."""
    vips = _vips()
    if vips is None:
        return False
    data = svg.read_bytes()
    size = _agg_size(data, dpi)
    if size is None:
        return False
    families: dict[bytes, bytes] = {}
    for style in set(_STYLE.findall(data)):
        for declaration in _FONT_FAMILY.findall(style):
            resolved = _resolved_families(declaration.decode("utf-8"), _css(style), fonts)
            if resolved is None or families.get(declaration, resolved) != resolved:
                return False
            families[declaration] = resolved

    def pinned(tag: re.Match[bytes]) -> bytes:
        return _FONT_FAMILY.sub(lambda m: families[m.group(0)], tag.group(0))

    try:
        # unlimited: an embedded image's base64 text may pass libxml2's 10 MB default
        image = vips.Image.svgload_buffer(_STYLE.sub(pinned, data),
                                          scale=dpi / POINTS_PER_INCH, unlimited=True)
        image = _fit(image, *size)
        image = image.copy(xres=dpi / MM_PER_INCH, yres=dpi / MM_PER_INCH)  # the pHYs
        image.pngsave(str(png), compression=PNG_COMPRESSION, strip=True)
    except vips.Error:
        png.unlink(missing_ok=True)
        return False
    return True


def text_fonts(fig: Any) -> dict[str, list[str]]:
    """The CSS ``font-family`` declaration matplotlib's SVG writes for each text of ``fig``
    (after a draw, so tick labels exist), with the text's font families: a declaration
    expands each generic family into its configured names, so the families cannot be read
    back from it. A declaration two texts with other families share maps to both lists
    joined (then resolved; a disagreement sends the figure to Agg)."""
    from matplotlib import font_manager
    from matplotlib.text import Text

    def normal(name: str) -> str:
        return "sans-serif" if name in ("sans", "sans serif") else name

    def names(family: str) -> list[str]:
        family = normal(family)
        expanded = ([normal(n) for n in font_manager.FontManager._expand_aliases(family)]
                    if family in font_manager.font_family_aliases else [])
        return [*expanded, family]

    out: dict[str, list[str]] = {}
    for text in fig.findobj(Text):
        families = list(text.get_fontproperties().get_family())
        quoted = [n if n in font_manager.font_family_aliases else repr(n)
                  for f in families for n in names(f)]
        declaration = "font-family: " + ", ".join(dict.fromkeys(quoted))
        out[declaration] = list(dict.fromkeys([*out.get(declaration, []), *families]))
    return out


def _agg_size(data: bytes, dpi: float) -> tuple[int, int] | None:
    """Agg's pixel size of the figure this SVG holds: its width and height (points, as
    matplotlib writes them, a tight bounding box included) at ``dpi``, truncated as Agg
    truncates; None when the header says no size in points."""
    found = _SIZE.search(data[:_HEADER_BYTES])
    if found is None:
        return None
    width, height = (float(v) * dpi / POINTS_PER_INCH for v in found.groups())
    return int(width + _SIZE_EPSILON), int(height + _SIZE_EPSILON)


def _css(style: bytes) -> dict[str, str]:
    """The properties of one style attribute (``style="a: 1; b: 2"`` -> {"a": "1", ...})."""
    body = style.decode("utf-8").split('style="', 1)[1].rstrip('"')
    pairs = (item.split(":", 1) for item in body.split(";") if ":" in item)
    return {k.strip(): v.strip() for k, v in pairs}


def _fit(image: Any, width: int, height: int) -> Any:
    """``image`` cropped or padded (transparent) to ``width`` x ``height`` pixels: librsvg
    rounds the scaled size where Agg truncates it (6.3333 in at 300 dpi: 1900 vs 1899)."""
    if (image.width, image.height) == (width, height):
        return image
    if image.width >= width and image.height >= height:
        return image.crop(0, 0, width, height)
    return image.embed(0, 0, width, height, extend="background",
                       background=[0] * image.bands).crop(0, 0, width, height)


def _resolved_families(declaration: str, style: Mapping[str, str],
                       fonts: Mapping[str, list[str]]) -> bytes | None:
    """The pinned declaration of a text: the families matplotlib draws it in (the fonts of
    its families that matplotlib has, in order: the first for most glyphs, the next for
    glyphs the first lacks), each a plain face the rasteriser has. None (Agg draws) when
    the text asks for a stretch, a variant or a weight other than normal or bold, or a font
    is outside the folders fontconfig was given or is not a plain face (condensed, light):
    there fontconfig and matplotlib could choose differently."""
    from matplotlib import font_manager

    if style.get("font-stretch", "normal") != "normal" or \
            style.get("font-variant", "normal") != "normal":
        return None
    weight = style.get("font-weight", "normal")
    if weight not in _PLAIN_WEIGHTS:
        return None
    families = fonts.get(declaration)
    if families is None:  # mathtext: one exact family name per glyph span
        families = [n.strip().strip("'\"") for n in declaration.split(":", 1)[1].split(",")]
        if len(families) != 1:
            return None
    prop = font_manager.FontProperties(family=families, weight=_PLAIN_WEIGHTS[weight],
                                       style=style.get("font-style", "normal"))
    entries = {entry.fname: entry for entry in font_manager.fontManager.ttflist}
    resolved = []
    for path in map(Path, _font_files(prop)):
        entry = entries.get(str(path))
        if str(path.parent) not in _CONFIGURED or entry is None or \
                entry.stretch != "normal" or _weight(entry.weight) not in (400, 700) or \
                any(fnmatch.fnmatch(str(path), glob) for glob in _REJECTED_FONTS):
            return None
        resolved.append(str(font_manager.get_font(str(path)).family_name))
    return b"font-family: " + ", ".join(
        f"'{family}'" for family in dict.fromkeys(resolved)).encode("utf-8")


def _weight(weight: Any) -> int:
    """A font entry's weight as a number (matplotlib stores 400 or "normal")."""
    from matplotlib import font_manager

    return int(font_manager.weight_dict.get(weight, weight))


def _font_files(prop: Any) -> list[str]:
    """The font files matplotlib uses for ``prop``, with its per-glyph fallback (matplotlib
    >= 3.6), else the one file it finds; without the "not found" log lines of families the
    list names but this machine lacks (matplotlib logged them when it drew the text)."""
    import logging

    from matplotlib import font_manager

    log = logging.getLogger(font_manager.__name__)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        manager = font_manager.fontManager
        if hasattr(manager, "_find_fonts_by_props"):
            return [str(p) for p in manager._find_fonts_by_props(prop)]
        return [font_manager.findfont(prop)]
    finally:
        log.setLevel(level)


def _font_folders() -> list[str]:
    """The folders the rasteriser gets: matplotlib's own fonts (DejaVu, STIX, Computer
    Modern: its text and mathtext faces) and the folders of the fonts matplotlib resolves
    its generic families and ``font.family`` to, with their fallbacks, in each weight and
    style."""
    import matplotlib as mpl
    from matplotlib import font_manager

    own = Path(mpl.get_data_path()) / "fonts" / "ttf"
    families = [mpl.rcParams["font.family"], ["sans-serif"], ["serif"], ["monospace"]]
    return sorted({str(own)} | {
        str(Path(path).parent) for family in families for variant in _FONT_VARIANTS
        for path in _font_files(font_manager.FontProperties(family=family, **variant))})


#: pyvips once loaded and its fonts configured (a one-item list: loaded or not, per process).
_LOADED: list[Any] = []
#: The font folders fontconfig was given when pyvips was loaded (:func:`_font_folders`).
_CONFIGURED: list[str] = []
#: Held while pyvips is loaded (FONTCONFIG_FILE is set for the process meanwhile).
_LOADING = threading.Lock()


def _vips() -> Any:
    """pyvips with fontconfig set to matplotlib's font folders; None when it cannot be
    (no pyvips, no SVG loader, or fontconfig had started with another configuration).

    fontconfig reads its configuration once per process, at the first text drawn: the file
    is written in a private temporary folder (absolute path, no user-supplied name in it),
    read by drawing one probe text, and removed; rescanning is off so the removed file is
    never looked for again. Loaded once per process.
    """
    with _LOADING:  # one thread sets the environment, probes and restores it
        if not _LOADED:
            _LOADED.append(_load_vips())
    return _LOADED[0]


def _load_vips() -> Any:
    """Import pyvips with :func:`_font_config` in place and draw the probe texts (fontconfig
    reads its configuration there); the configuration's folder is removed after."""
    _CONFIGURED[:] = _font_folders()
    try:
        folder = Path(tempfile.mkdtemp(prefix="kneeload-fontconfig-")).resolve()
        config = _font_config(folder, _CONFIGURED)
    except OSError:  # no writable temporary folder
        return None
    before = os.environ.get(_FONTCONFIG_FILE)
    os.environ[_FONTCONFIG_FILE] = str(config)
    try:
        import pyvips

        if not pyvips.type_find("VipsOperation", "svgload_buffer"):
            return None
        return pyvips if _configuration_taken(pyvips) else None
    except ImportError:  # no pyvips
        return None
    except OSError:  # no libvips shared library
        return None
    finally:
        if before is None:
            os.environ.pop(_FONTCONFIG_FILE, None)
        else:
            os.environ[_FONTCONFIG_FILE] = before
        shutil.rmtree(folder, ignore_errors=True)


def _configuration_taken(pyvips: Any) -> bool:
    """True when fontconfig runs on kneeload's configuration: the probe family (defined only
    there) draws as its target font, and not as the default sans-serif. False when
    fontconfig had started before (another library drew text first) or could not read it."""
    def drawn(family: str) -> Any:
        svg = _PROBE_SVG.format(family=family).encode("utf-8")
        return pyvips.Image.svgload_buffer(svg)

    try:
        probe, target = drawn(f"'{_PROBE_FAMILY}'"), drawn(f"'{_PROBE_TARGET}'")
        default = drawn("sans-serif")
        return (probe - target).abs().max() == 0 and (probe - default).abs().max() > 0
    except pyvips.Error:
        return False


def _font_config(folder: Path, fonts: list[str]) -> Path:
    """A fontconfig file in ``folder`` naming only the font folders ``fonts`` (each valid
    XML text, else left out: no font of it is then trusted), its cache in ``folder``, the
    probe alias, the rejected faces and no rescanning."""
    fonts[:] = [d for d in fonts if _xml_safe(d)]
    dirs = "".join(f"<dir>{_xml_text(d)}</dir>" for d in fonts)
    rejected = "".join(f"<glob>{_xml_text(g)}</glob>" for g in _REJECTED_FONTS)
    config = folder / "fonts.conf"
    config.write_text('<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd">'
                      f"<fontconfig>{dirs}<cachedir>{_xml_text(str(folder))}</cachedir>"
                      f"<selectfont><rejectfont>{rejected}</rejectfont></selectfont>"
                      f"<alias><family>{_PROBE_FAMILY}</family>"
                      f"<prefer><family>{_PROBE_TARGET}</family></prefer></alias>"
                      "<config><rescan><int>0</int></rescan></config></fontconfig>",
                      encoding="utf-8")
    return config


def _xml_safe(text: str) -> bool:
    """True when ``text`` holds only characters XML 1.0 allows (no control character, no
    lone surrogate of an undecodable file name)."""
    return all((c in "\t\n\r" or ord(c) >= 0x20) and not 0xD800 <= ord(c) <= 0xDFFF
               and c not in "\ufffe\uffff" for c in text)


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
