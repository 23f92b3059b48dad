"""The small simulated study the report tests share (not a test module).

3 cohorts x 6 runners x 8 weeks: one ordinary cohort, one whose every pain report is 0 (no
pain events), and one cut to 3 runners (below the privacy floor: suppressed).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from analysis.pipeline import build
from analysis.simulate import simulate_dataset, write_dataset

SALT = "test-salt-6f1c"
EXPOSURES = ["mileage_jump", "shoe_km", "rest_days_7d"]


@dataclasses.dataclass
class Study:
    raw: Path
    processed: Path
    normal: str  # ordinary cohort
    painless: str  # every pain report 0
    small: str  # 3 runners: suppressed
    raw_ids: list[str]


def make_raw(folder: Path, *, bump_runner: str | None = None) -> dict[str, Any]:
    """Write the study's raw CSVs; ``bump_runner`` adds 1 NRS point to one of its reports."""
    data = simulate_dataset(runners_per_cohort=6, weeks=8, cohorts=3, seed=11)
    names = list(dict.fromkeys(data.runners["cohort"]))
    _, painless, small = names
    dropped = data.runners.loc[data.runners["cohort"] == small, "runner_id"].iloc[3:]
    keep = lambda t: t[~t["runner_id"].isin(dropped)]  # noqa: E731
    painless_ids = data.runners.loc[data.runners["cohort"] == painless, "runner_id"]
    pain = keep(data.pain)
    pain = pain.assign(pain=pain["pain"].where(~pain["runner_id"].isin(painless_ids), 0.0))
    if bump_runner is not None:  # change one report of one runner by +1 NRS point
        first = pain.index[pain["runner_id"] == bump_runner][0]
        pain.loc[first, "pain"] = min(pain.loc[first, "pain"] + 1.0, 10.0)
    data = dataclasses.replace(data, runners=keep(data.runners), runs=keep(data.runs),
                               pain=pain, shoes=keep(data.shoes))
    write_dataset(data, folder)
    return {"names": names, "ids": sorted(data.runners["runner_id"])}


def make_study(root: Path, **build_options: Any) -> Study:
    """Write and build the study under ``root`` (``build_options`` go to the build)."""
    made = make_raw(root / "raw")
    build(root / "raw", root / "processed", **build_options)
    normal, painless, small = made["names"]
    return Study(raw=root / "raw", processed=root / "processed", normal=normal,
                 painless=painless, small=small, raw_ids=made["ids"])
