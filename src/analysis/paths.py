"""Where things live. The only module (with :mod:`analysis.ingest`) that knows about locations.

The project root is found by walking up from this file (or the working directory) to the
folder holding ``pyproject.toml``; environment variables override each location so that
papermill, nbval, JupyterLab and a scheduler, which all start in different folders, agree.

Environment overrides
---------------------
``KNEELOAD_ROOT``       project root
``KNEELOAD_DATA_DIR``   folder holding ``raw/`` and ``processed/`` (default ``<root>/data``)
``KNEELOAD_REAL_DATA``  the shared real-data folder (default ``<root>/../shared/data/real``)
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_MARKER = "pyproject.toml"
DEFAULT_DATASET = "demo"


def _walk_up(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / PROJECT_MARKER).is_file() and (folder / "src" / "analysis").is_dir():
            return folder
    return None


def project_root() -> Path:
    """The kneeload checkout: ``KNEELOAD_ROOT``, else the folder above ``src/analysis``."""
    env = os.environ.get("KNEELOAD_ROOT")
    if env:
        return Path(env).resolve()
    found = _walk_up(Path(__file__).resolve().parent) or _walk_up(Path.cwd().resolve())
    if found is None:  # installed without a checkout: fall back to the working directory
        return Path.cwd().resolve()
    return found


def data_dir() -> Path:
    """Folder holding ``raw/`` and ``processed/``."""
    env = os.environ.get("KNEELOAD_DATA_DIR")
    return Path(env).resolve() if env else project_root() / "data"


def raw_dir(dataset: str = DEFAULT_DATASET) -> Path:
    """``data/raw/<dataset>``, or ``dataset`` itself when it is an existing folder."""
    return _dataset_dir(dataset, "raw")


def processed_dir(dataset: str = DEFAULT_DATASET) -> Path:
    """``data/processed/<dataset>``, or ``dataset`` itself when it is an existing folder."""
    return _dataset_dir(dataset, "processed")


def _dataset_dir(dataset: str, stage: str) -> Path:
    candidate = Path(dataset).expanduser()
    if candidate.is_absolute() or os.sep in dataset or candidate.is_dir():
        return candidate.resolve()
    return data_dir() / stage / dataset


def notebooks_dir() -> Path:
    """The project's ``notebooks/`` folder (templates for papermill live here)."""
    return project_root() / "notebooks"


def real_data_dir() -> Path:
    """The shared real-data folder (public datasets and export samples, not in this repo)."""
    env = os.environ.get("KNEELOAD_REAL_DATA")
    return Path(env).resolve() if env else (project_root().parent / "shared" / "data" / "real")
