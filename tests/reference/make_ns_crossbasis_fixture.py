"""Write the daily series and panel rows of the cross-basis reference (ns_crossbasis.R).

Usage (from the project root): .venv/bin/python tests/reference/make_ns_crossbasis_fixture.py
Three runners, seeded: rest days are 0 km, runner b has a 5-day unknown stretch (NaN, as an
unlogged gap under ``unlogged_gaps="missing"``), runner c's calendar starts 20 days later;
report rows every 4 days, so early rows reach before the calendar (NaN cross-basis rows).
Nothing here is produced by analysis.models.crossbasis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent
SEED = 20260116


def main() -> None:
    rng = np.random.default_rng(SEED)
    daily, panel = [], []
    for runner, start, n in (("a", 0, 90), ("b", 0, 80), ("c", 20, 70)):
        dates = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(start, start + n), "D")
        km = np.round(rng.gamma(2.0, 4.0, n), 1)
        km[rng.random(n) < 0.3] = 0.0  # rest days
        if runner == "b":
            km[40:45] = np.nan  # unknown days
        daily.append(pd.DataFrame({"runner_id": runner, "date": dates, "distance_km": km}))
        panel.append(pd.DataFrame({"runner_id": runner, "reference_date": dates[::4]}))
    pd.concat(daily).to_csv(OUT / "ns_crossbasis_daily.csv", index=False,
                            date_format="%Y-%m-%d")
    pd.concat(panel).to_csv(OUT / "ns_crossbasis_panel.csv", index=False,
                            date_format="%Y-%m-%d")


if __name__ == "__main__":
    main()
