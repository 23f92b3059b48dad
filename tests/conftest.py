"""Shared, seeded fixtures: a small simulated dataset, written and built once per session."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis.pipeline import BuildSummary, build
from analysis.simulate import SimulatedDataset, simulate_dataset, write_dataset

SMALL = {"runners_per_cohort": 6, "weeks": 10, "cohorts": 2, "seed": 7}


@pytest.fixture(scope="session")
def small_dataset() -> SimulatedDataset:
    """2 cohorts x 6 runners x 10 weeks, NRS outcome."""
    return simulate_dataset(**SMALL)


@pytest.fixture(scope="session")
def small_raw(tmp_path_factory: pytest.TempPathFactory, small_dataset: SimulatedDataset) -> Path:
    """The small dataset written as canonical CSVs."""
    return write_dataset(small_dataset, tmp_path_factory.mktemp("raw") / "small")


@pytest.fixture(scope="session")
def small_processed(tmp_path_factory: pytest.TempPathFactory, small_raw: Path) -> BuildSummary:
    """The small dataset built into a processed folder."""
    return build(small_raw, tmp_path_factory.mktemp("processed") / "small")


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def tree_hashes():
    """sha256 of every file below a folder (to prove a folder was not written to)."""
    return _tree_hashes


@pytest.fixture
def agg() -> Iterator[None]:
    """Matplotlib's Agg backend for a figure test; every figure closed after."""
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    yield
    plt.close("all")
