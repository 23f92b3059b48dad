"""The shared real third-party samples (``../shared/data/real``), read in place.

They are never copied into this repository: tests read them through
:func:`analysis.paths.real_data_dir` (``KNEELOAD_REAL_DATA``, default ``../shared/data/real``
beside the checkout) and skip, with the reason, where they are absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.paths import real_data_dir


def real_sample(*parts: str) -> Path:
    """The real file or folder at ``parts`` (``"formats/strava"`` or ``"formats",
    "strava"``) under the real-data folder; skips the calling test when it is not there."""
    path = real_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample {path} not available (set KNEELOAD_REAL_DATA)")
    return path
