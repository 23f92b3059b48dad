"""A Lovdal-like processed folder the outcome tests share (not a test module).

Lovdal-format data store an any-injury flag as ``pain`` in {0, 10} and have no shoe
records; the build is asked to declare ``outcome = injury_flag`` in ``panel_meta.json``
(written here by hand, as :func:`analysis.outcomes.panel_defaults` gives it, so the test
does not depend on the build wiring it).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.outcomes import panel_defaults
from analysis.pipeline import build
from analysis.simulate import simulate_dataset, write_dataset

#: Simulated NRS at or above this becomes an injury (pain 10), below it none (pain 0).
INJURY_FROM_NRS = 3.0


def make_injury_study(root: Path) -> Path:
    """6 runners x 10 weeks, pain in {0, 10}, no shoes; the processed folder's path."""
    data = simulate_dataset(runners_per_cohort=6, weeks=10, cohorts=1, seed=5)
    pain = data.pain.assign(pain=np.where(data.pain["pain"] >= INJURY_FROM_NRS, 10.0, 0.0))
    data = dataclasses.replace(data, pain=pain, runs=data.runs.assign(shoe_id=None),
                               shoes=data.shoes.iloc[:0])
    write_dataset(data, root / "raw")
    processed = root / "processed"
    summary = build(root / "raw", processed)
    meta_file = processed / "panel_meta.json"
    meta = {**json.loads(meta_file.read_text()), "format": "lovdal"}
    meta |= panel_defaults(pd.read_parquet(processed / "panel.parquet"), meta,
                           outcome="injury_flag")
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    assert summary.counts["shoes"] == 0
    return processed
