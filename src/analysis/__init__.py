"""kneeload: running training load and knee pain.

Import name ``analysis``. Each concern has one module:

- :mod:`analysis.ingest` reads foreign files into the canonical tables,
- :mod:`analysis.clean` applies the cleaning rules and keeps the audit,
- :mod:`analysis.exposures` builds the daily calendar and the exposure panel,
- :mod:`analysis.models` fits mixed models into one tidy result type,
- :mod:`analysis.plots` draws seaborn figures,
- :mod:`analysis.reports` runs the per-cohort papermill reports,
- :mod:`analysis.cli` is the ``kneeload`` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kneeload")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
