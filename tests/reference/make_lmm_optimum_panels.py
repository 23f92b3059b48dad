"""Write tests/reference/lmm_optimum_panels.csv: null panels that tripped the old optimiser.

Usage (from the project root)::

    .venv/bin/python tests/reference/make_lmm_optimum_panels.py
    Rscript tests/reference/lme4_optimum.R tests/reference/lmm_optimum_panels.csv \\
        tests/reference/lmm_optimum_lme4.csv

Each panel is ``analysis.power.simulate_panel(runners=80, weeks=12, seed=SEED, outcome="nrs")``
with all effects 0 (the modelling rows only). With bounded L-BFGS-B and finite-difference
gradients (kneeload before issue 10) seeds 1, 5, 6, 8, 9 and 23 stopped with the slope SD at 0
and a REML log-likelihood 0.87, 0.04, 0.50, 0.05, 0.36 and 0.22 below lme4's while reporting
converged; seeds 0 and 11 have a true boundary optimum (lme4: slope SD 0).
"""

from pathlib import Path

import pandas as pd

from analysis.models import build_design
from analysis.power import simulate_panel

EXPOSURES = ["mileage_jump", "shoe_km", "rest_days_7d"]
TRIPPED_SEEDS = (1, 5, 6, 8, 9, 23)
BOUNDARY_SEEDS = (0, 11)


def main() -> None:
    frames = []
    for seed in (*TRIPPED_SEEDS, *BOUNDARY_SEEDS):
        panel, _ = simulate_panel(runners=80, weeks=12, seed=seed, outcome="nrs",
                                  effects=dict.fromkeys(EXPOSURES, 0.0))
        d = build_design(panel, outcome="pain", exposures=EXPOSURES,
                         random_slopes=["mileage_jump"])
        frames.append(d.frame[["runner_id", "pain", *EXPOSURES]].assign(panel=f"seed{seed}"))
    out = pd.concat(frames, ignore_index=True)[["panel", "runner_id", "pain", *EXPOSURES]]
    out.to_csv(Path(__file__).with_name("lmm_optimum_panels.csv"), index=False,
               float_format="%.12g")


if __name__ == "__main__":
    main()
