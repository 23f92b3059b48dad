"""``make notebooks`` runs its kernels over IPC, as the report workers do (issue 14).

Over TCP, ipykernel 7 prints "Kernel is running over TCP without encryption" at every kernel
start (``ipykernel/kernelapp.py``, ``init_sockets``). The options are read from the
Makefile's own recipe (``make -n``) and run on a one-cell notebook in a temporary folder,
so the real notebooks are not re-executed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from analysis import paths

ROOT = paths.project_root()
TCP_WARNING = "running over TCP without encryption"


def _recipe() -> str:
    """What ``make notebooks`` would run (``make -n``: nothing is executed)."""
    done = subprocess.run(["make", "-n", "notebooks"], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    return done.stdout


def _options(recipe: str, sockets: Path) -> list[str]:
    """The recipe's ``--Class.trait=value`` options, the socket folder filled in."""
    found = re.findall(r'--(?:ExecutePreprocessor|KernelManager)\.\w+=("[^"]*"|\S+)', recipe)
    names = re.findall(r"--((?:ExecutePreprocessor|KernelManager)\.\w+)=", recipe)
    values = [v.strip('"').replace("$sockets", str(sockets)) for v in found]
    return [f"--{n}={v}" for n, v in zip(names, values, strict=True)]


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_notebooks_uses_the_ipc_transport() -> None:
    assert "--KernelManager.transport=ipc" in _recipe()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_the_recipes_options_start_a_kernel_without_the_tcp_warning(tmp_path: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    sockets = tmp_path / "s"
    sockets.mkdir()
    options = _options(_recipe(), sockets)
    kernel = next(o.split("=", 1)[1] for o in options if "kernel_name" in o)
    try:
        KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        pytest.skip(f"the {kernel!r} kernel is not registered (make setup)")
    notebook = tmp_path / "one.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nbformat.write(nb, notebook)
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                           "--execute", "--inplace", *options, notebook.name],
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    assert TCP_WARNING not in done.stderr, done.stderr
    outputs = nbformat.read(notebook, as_version=4).cells[0].outputs
    assert outputs[0]["text"] == "42\n"
    assert not list(sockets.iterdir())  # the sockets are removed with the kernel
    # and the test can see the warning: the same run without the transport options
    tcp = [o for o in options if not o.startswith("--KernelManager.")]
    done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                           "--execute", "--inplace", *tcp, notebook.name],
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    assert TCP_WARNING in done.stderr
