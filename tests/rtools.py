"""Whether the optional R reference tools are here: tests that re-run R skip without them.

The committed reference numbers (tests/reference/*.csv) are compared on every run; only the
live re-runs of the R scripts need Rscript and the packages.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

import pytest


@functools.cache
def have_r_packages(*packages: str) -> bool:
    """True when Rscript is on PATH and loads every one of ``packages``."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return False
    code = "; ".join(f"suppressPackageStartupMessages(library({p}))" for p in packages)
    probe = subprocess.run([rscript, "-e", code], capture_output=True, check=False)
    return probe.returncode == 0


def requires_r(*packages: str) -> pytest.MarkDecorator:
    """Skip (with the reason) unless Rscript with ``packages`` is installed."""
    return pytest.mark.skipif(not have_r_packages(*packages),
                              reason=f"needs Rscript with the R package(s) {', '.join(packages)}")
