"""kneeload: running training load and knee pain.

Import name ``analysis``. Each concern has one module:

- :mod:`analysis.ingest` reads foreign files into the canonical tables,
- :mod:`analysis.clean` applies the cleaning rules and keeps the audit,
- :mod:`analysis.exposures` builds the daily calendar and the exposure panel,
- :mod:`analysis.outcomes` names each dataset's outcome and the defaults its data support,
- :mod:`analysis.models` fits mixed models into one tidy result type,
- :mod:`analysis.plots` draws seaborn figures,
- :mod:`analysis.reports` runs the per-cohort papermill reports,
- :mod:`analysis.cli` is the ``kneeload`` command.

``__version__`` is looked up on first use (PEP 562): :mod:`importlib.metadata` costs about
0.04-0.1 s, which ``kneeload --help`` does not need to pay.
"""

from __future__ import annotations

__all__ = ["__version__"]


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kneeload")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        value = _installed_version()
        globals()["__version__"] = value  # later lookups are plain attribute reads
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
