"""A real JupyterLab on loopback and a headless Chromium driving it (issue 7).

The server runs from this project's ``.venv`` with a random token, an empty settings and
workspace folder (so nothing from a developer's own JupyterLab state leaks in) and a root folder
holding output-free copies of the notebooks, so that every figure on the page was drawn by
this run. Chromium and chromedriver are the Debian packages; ``scripts/ensure-chromium.sh``
installs them when missing (CI runs as root). Every wait is explicit and bounded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from analysis import paths

ROOT = paths.project_root()
ENSURE_CHROMIUM = ROOT / "scripts" / "ensure-chromium.sh"
#: Longest wait for it (s): its apt waits (update retries, the dpkg lock) stay below this.
ENSURE_CHROMIUM_TIMEOUT_S = 600
SERVER_START_TIMEOUT_S = 60
#: Flags that make Chromium work headless in a container without a GPU or network.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
#: JupyterLab user settings: no news or update checks (no network, no popup in screenshots).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    # every cell stays in the page (no virtual scrolling), so all of them can be inspected
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


@dataclass
class LabServer:
    """A running JupyterLab: where it listens and what it serves."""

    url: str
    token: str
    root_dir: Path
    log: Path

    def lab_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stripped_copy(source: Path, target: Path) -> None:
    """Copy a notebook without its stored outputs, so the page shows only what this run drew."""
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, target)


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installed by scripts/ensure-chromium.sh if needed."""
    try:
        done = subprocess.run(["bash", str(ENSURE_CHROMIUM)], capture_output=True, text=True,
                              timeout=ENSURE_CHROMIUM_TIMEOUT_S, check=False)
        failed = done.stderr.strip() if done.returncode != 0 else None
    except subprocess.TimeoutExpired:
        failed = f"{ENSURE_CHROMIUM.name} did not finish in {ENSURE_CHROMIUM_TIMEOUT_S} s"
    if failed is not None:
        message = f"headless Chromium unavailable: {failed}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    browser, driver = done.stdout.split()[-2:]
    return browser, driver


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab on 127.0.0.1 with a token, serving output-free copies of the notebooks."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root_dir = base / "root"
    root_dir.mkdir()
    for notebook in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        _stripped_copy(notebook, root_dir / notebook.name)
    settings = base / "settings"
    for name, values in LAB_SETTINGS.items():
        target = settings / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    token = secrets.token_hex(24)
    port = _free_port()
    env = {**os.environ,
           "JUPYTER_CONFIG_DIR": str(base / "config"),
           "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
           "KNEELOAD_ROOT": str(ROOT)}
    log = base / "jupyterlab.log"
    command = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser",
               "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
               "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:  # CI containers run as root; JupyterLab refuses without this
        command.append("--allow-root")
    with log.open("w") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   cwd=root_dir, start_new_session=True)
    server = LabServer(url=f"http://127.0.0.1:{port}", token=token, root_dir=root_dir, log=log)
    try:
        _wait_until_serving(server, process)
        yield server
    finally:
        _stop(process)


def _wait_until_serving(server: LabServer, process: subprocess.Popen[bytes]) -> None:
    status = f"{server.url}/api/status?token={server.token}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {process.returncode}:\n"
                        f"{server.log_tail()}")
        try:
            with urllib.request.urlopen(status, timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S} s:\n"
                f"{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and its kernels: they share the session started for it."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@pytest.fixture
def browser(chromium: tuple[str, str], tmp_path: Path) -> Iterator[object]:
    """A headless Chromium under selenium, with a new empty profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
