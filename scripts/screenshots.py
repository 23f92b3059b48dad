"""Refresh docs/img/index.png and docs/img/cohort_report.png from the demo (``make screenshots``).

Renders the demo reports (``reports/demo``, as ``make report`` does) and photographs the
index and one cohort report in the same headless Chromium the browser test uses
(``scripts/ensure-chromium.sh``), full page, 1400 px wide.

Usage::

    .venv/bin/python scripts/screenshots.py [--cohort recreational]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from pages import full_page_screenshot, wait_for_images  # noqa: E402

from analysis import paths, reports  # noqa: E402

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-dev-shm-usage",
                  "--hide-scrollbars", "--window-size=1400,1000")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", default="recreational")
    args = parser.parse_args()
    found = subprocess.run(["bash", str(ROOT / "scripts" / "ensure-chromium.sh")],
                           capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise SystemExit(f"headless Chromium unavailable: {found.stderr.strip()}")
    binary, driver_path = found.stdout.split()[-2:]
    out = ROOT / "reports" / "demo"
    run = reports.run_reports(paths.processed_dir("demo"), out, changed_only=True, workers=2)
    if run.failed:
        raise SystemExit(run.one_line())

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    with tempfile.TemporaryDirectory() as profile:
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            for page, target in ((out / "index.html", "index.png"),
                                 (out / reports.safe_name(args.cohort) / "report.html",
                                  "cohort_report.png")):
                driver.set_window_size(1400, 1000)
                driver.get(page.as_uri())
                wait_for_images(driver)
                full_page_screenshot(driver, str(ROOT / "docs" / "img" / target))
                print(f"docs/img/{target} <- {page.relative_to(ROOT)}")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
