"""What a person sees on a rendered report page, read in a real browser (selenium).

Shared by ``tests/browser/test_report_pages.py`` and ``scripts/screenshots.py``: the checks
run in the page (JavaScript), on what Chromium laid out, not on the HTML source.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

#: Seconds to wait for every image of a page to finish loading.
IMAGE_LOAD_TIMEOUT_S = 30
#: Strings that must never be shown: a missing value printed as Python or pandas spells it.
MISSING_WORDS = ("nan", "NaN", "None")
#: Pixels a cell's content may exceed its box by (sub-pixel rounding of the layout).
OVERFLOW_SLACK_PX = 1
#: Endings of a value cut short for display (pandas' ``display.max_colwidth`` truncation
#: ends a cell in "..."; some formatters use the ellipsis character).
TRUNCATION_MARKS = ("...", "\u2026")

_IMAGES = """
return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))
    .map(i => i.getAttribute('src').slice(0, 120));
"""
_SVGS = """
return [...document.querySelectorAll('svg')].filter(s => {
    const r = s.getBoundingClientRect(); return !(r.width > 0 && r.height > 0); }).length;
"""
_OVERFLOW = """
const slack = arguments[0];
return [...document.querySelectorAll('td, th')]
    .filter(c => c.scrollWidth > c.clientWidth + slack)
    .map(c => `${c.scrollWidth}>${c.clientWidth}px: ${c.innerText.trim().slice(0, 80)}`);
"""
_IMAGES_DONE = "return [...document.images].every(i => i.complete);"
_TRUNCATED = """
const marks = arguments[0];
return [...document.querySelectorAll('td, th')]
    .map(c => c.innerText.trim())
    .filter(t => marks.some(m => t.endsWith(m)))
    .map(t => t.slice(-80));
"""


def wait_for_images(driver: Any, *, timeout_s: float = IMAGE_LOAD_TIMEOUT_S) -> None:
    """Wait (bounded) until every <img> of the page has finished loading or failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not driver.execute_script(_IMAGES_DONE):
        time.sleep(0.2)


def broken_images(driver: Any) -> list[str]:
    """``src`` of every <img> that did not load (naturalWidth 0), and a count of <svg>
    elements drawn with no size."""
    broken = list(driver.execute_script(_IMAGES))
    empty_svgs = int(driver.execute_script(_SVGS))
    return broken + ([f"{empty_svgs} <svg> element(s) with no size"] if empty_svgs else [])


def overflowing_cells(driver: Any) -> list[str]:
    """Table cells whose content is wider than the cell (``scrollWidth > clientWidth``)."""
    return list(driver.execute_script(_OVERFLOW, OVERFLOW_SLACK_PX))


def truncated_cells(driver: Any) -> list[str]:
    """Table cells whose visible text ends in "..." or "\u2026" (:data:`TRUNCATION_MARKS`):
    a value cut for display, e.g. a pandas cell past ``display.max_colwidth``; the last 80
    characters of each."""
    return list(driver.execute_script(_TRUNCATED, list(TRUNCATION_MARKS)))


def raw_words(text: str, columns: Iterable[str]) -> list[str]:
    """Raw column names and missing-value words in visible ``text``, each with context."""
    found = []
    words = [*sorted(set(columns), key=len, reverse=True), *MISSING_WORDS]
    for word in words:
        suffix = r"(?:_within|_between|_lag\d+w)*" if word not in MISSING_WORDS else ""
        for match in re.finditer(rf"(?<![\w.-]){re.escape(word)}{suffix}(?![\w-])", text):
            context = text[max(match.start() - 40, 0):match.end() + 40].replace("\n", " ")
            found.append(f"{word!r} in '...{context}...'")
    return found


def visible_text(driver: Any) -> str:
    """The page's text as rendered (``innerText``: hidden elements and markup left out)."""
    return str(driver.execute_script("return document.body.innerText;"))


def full_page_screenshot(driver: Any, path: str, *, width: int = 1400) -> None:
    """A PNG of the whole page: the window is made as tall as the document first."""
    height = int(driver.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight);"))
    driver.set_window_size(width, min(max(height + 40, 600), 16000))
    time.sleep(0.3)
    driver.save_screenshot(path)
