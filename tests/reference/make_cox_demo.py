"""Write tests/reference/cox_demo.csv: the demo's counting-process rows for the R reference.

Usage (from the project root): ``.venv/bin/python tests/reference/make_cox_demo.py``.
Builds data/raw/demo into a temporary folder and writes the Andersen-Gill rows of
:func:`analysis.models.survival.survival_design` (exposures :data:`DEMO_EXPOSURES` at the
7-day reference day, rows with a missing exposure dropped, as the fit drops them) with the
PWP gap-time clock beside them (``gap_start``, ``gap_stop``; the rows are the same days).
``tests/test_survival.py`` checks that the design still gives these rows, and compares the
fits with R's numbers in cox_reference.csv.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from analysis.models.survival import survival_design
from analysis.pipeline import build, load_processed

HERE = Path(__file__).resolve().parent
DEMO_RAW = HERE.parents[1] / "data" / "raw" / "demo"
DEMO_EXPOSURES = ["mileage_jump", "rest_days_7d"]
BAND = "jump_category"


def demo_rows(processed: dict) -> pd.DataFrame:
    """AG rows with the gap clock of the PWP rows and the jump band, complete cases only."""
    exposures = [*DEMO_EXPOSURES, BAND]
    ag = survival_design(processed, model="andersen-gill", exposures=exposures)
    gap = survival_design(processed, model="pwp", exposures=exposures)
    rows = ag.assign(stratum=gap["stratum"], gap_start=gap["start"], gap_stop=gap["stop"])
    rows = rows.dropna(subset=DEMO_EXPOSURES).reset_index(drop=True)
    cols = ["runner_id", "start", "stop", "event", "stratum", "gap_start", "gap_stop",
            *DEMO_EXPOSURES, BAND]
    return rows[cols].assign(event=rows["event"].astype(int))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        build(DEMO_RAW, Path(tmp) / "demo")
        rows = demo_rows(load_processed(Path(tmp) / "demo"))
    rows.to_csv(HERE / "cox_demo.csv", index=False)


if __name__ == "__main__":
    main()
