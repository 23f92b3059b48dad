"""Open the data-quality notebook in a real JupyterLab, run every cell, look at the page.

Marked ``browser``: it starts JupyterLab and a headless Chromium (about half a minute here).
A screenshot is saved under ``reports/browser/`` for a human to look at.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import nbformat
import pytest

from analysis import paths

# one xdist worker runs every browser test (make test: --dist loadgroup)
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

NOTEBOOK = "01_data_quality.ipynb"
OPEN_TIMEOUT_S = 60
RUN_TIMEOUT_S = 90
SCREENSHOT = paths.project_root() / "reports" / "browser" / "01_data_quality.png"
FAILED_SCREENSHOT = SCREENSHOT.with_suffix(".failed.png")
PROMPT_DONE = re.compile(r"^\[\d+\]:$")
#: The prompt of a cell that is queued or running.
RUNNING_PROMPT = "[*]:"
ERROR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


def _sessions(server: Any) -> list[dict[str, Any]]:
    url = f"{server.url}/api/sessions?token={server.token}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.load(reply)


def _kernel_state(server: Any, notebook: str) -> str | None:
    for session in _sessions(server):
        if session.get("path") == notebook:
            return session["kernel"]["execution_state"]
    return None


def _wait(condition: Any, timeout: float, what: str, server: Any) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n"
                f"JupyterLab log:\n{server.log_tail()}")


def test_data_quality_runs_in_jupyterlab(lab_server: Any, browser: Any) -> None:
    FAILED_SCREENSHOT.unlink(missing_ok=True)
    try:
        _open_run_and_check(lab_server, browser)
    except BaseException:
        FAILED_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(FAILED_SCREENSHOT))  # what the page showed, for the log
        raise


def _open_run_and_check(lab_server: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    expected = nbformat.read(lab_server.root_dir / NOTEBOOK, as_version=4)
    n_code = sum(c.cell_type == "code" for c in expected.cells)
    browser.get(lab_server.lab_url(NOTEBOOK))
    wait = WebDriverWait(browser, OPEN_TIMEOUT_S, poll_frequency=0.25)

    # the notebook is open with every cell on the page, and its kernel has started
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell"))
               == len(expected.cells))
    _wait(lambda: _kernel_state(lab_server, NOTEBOOK) == "idle", OPEN_TIMEOUT_S,
          "the kneeload kernel to start", lab_server)
    prompts = browser.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputArea-prompt")
    assert len(prompts) == n_code
    assert not any(PROMPT_DONE.match(p.text.strip()) for p in prompts), "cells already ran"

    # Run > Run All Cells, through the menu as a researcher would
    run_menu = wait.until(ec.element_to_be_clickable(
        (By.XPATH, "//li[contains(@class, 'lm-MenuBar-item')][.//div[text()='Run']]")))
    run_menu.click()
    wait.until(ec.element_to_be_clickable(
        (By.XPATH, "//li[contains(@class, 'lm-Menu-item')]"
                   "[.//div[contains(@class, 'lm-Menu-itemLabel')][text()='Run All Cells']]"))
    ).click()

    def finished() -> bool:
        texts = [p.text.strip() for p in browser.find_elements(
            By.CSS_SELECTOR, ".jp-CodeCell .jp-InputArea-prompt")]
        if any(t == RUNNING_PROMPT for t in texts):
            return False  # a cell is queued or running (the kernel flickers idle between)
        if _kernel_state(lab_server, NOTEBOOK) != "idle":
            return False
        if browser.find_elements(By.CSS_SELECTOR, ERROR_OUTPUT):
            return True  # a cell failed and the rest were not run: the assert below says why
        return len(texts) == n_code and all(PROMPT_DONE.match(t) for t in texts)

    _wait(finished, RUN_TIMEOUT_S, "all cells to finish", lab_server)

    errors = browser.find_elements(By.CSS_SELECTOR, ERROR_OUTPUT)
    assert not errors, "a cell shows an error or a warning:\n" + "\n---\n".join(
        e.text[:800] for e in errors)
    counts = [int(p.text.strip()[1:-2]) for p in browser.find_elements(
        By.CSS_SELECTOR, ".jp-CodeCell .jp-InputArea-prompt")]
    assert counts == list(range(1, n_code + 1)), "cells ran out of order or twice"

    images = browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea .jp-RenderedImage img")
    assert images, "no figure was rendered"
    width = browser.execute_script(
        "arguments[0].scrollIntoView({block: 'center'}); return arguments[0].naturalWidth;",
        images[0])
    assert width > 100, f"the figure did not load (natural width {width} px)"
    tables = browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea table.dataframe")
    assert tables, "no table was rendered"

    time.sleep(0.5)  # let the scroll settle before the screenshot
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
