"""Write the two committed model fixtures (small CSVs with known truth) for the lme4 reference.

Run from the project root: ``.venv/bin/python tests/reference/make_fixtures.py``. The files are
committed; re-running with the same seeds rewrites them byte for byte.

* ``demo.csv``   40 runners x 26 weekly reports (10 % not returned), NRS pain with a random
  intercept and a random slope on ``mileage_jump``; ``pain_any`` from a logistic mixed model.
* ``sparse.csv`` 120 runners with 2-8 reports each and many rest weeks (``rest_days_7d`` often
  5-7, ``mileage_jump`` often -1 = a week without running), the hard shape for variance
  components.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

#: True effects used for both fixtures (pain NRS per unit; log-odds for pain_any).
TRUTH = {
    "nrs": {"Intercept": 2.5, "mileage_jump": 0.8, "shoe_km": 0.002, "rest_days_7d": -0.15,
            "sd_intercept": 1.0, "sd_slope_jump": 0.4, "sd_residual": 1.0},
    "binary": {"Intercept": -1.2, "mileage_jump": 0.9, "shoe_km": 0.0015,
               "rest_days_7d": -0.2, "sd_intercept": 0.8},
}


def make_fixture(*, n_runners: int, reports: tuple[int, int], rest_heavy: bool,
                 seed: int) -> pd.DataFrame:
    """One fixture cohort; ``reports`` is the (min, max) number of weekly reports."""
    rng = np.random.default_rng(seed)
    n_rep = rng.integers(reports[0], reports[1] + 1, n_runners)
    rid = np.repeat(np.arange(n_runners), n_rep)
    week = np.concatenate([np.arange(k) for k in n_rep])
    n = rid.size
    rest_p = 0.55 if rest_heavy else 0.35
    rest = rng.binomial(7, rest_p, n).astype(float)
    jump = np.round(rng.lognormal(0.0, 0.3, n) - 1.0, 3)
    if rest_heavy:
        jump = np.where(rest == 7, -1.0, jump)  # a week without running
    shoe = np.round(rng.uniform(0, 700, n), 1)
    nrs = TRUTH["nrs"]
    b0 = rng.normal(0, nrs["sd_intercept"], n_runners)[rid]
    b1 = rng.normal(0, nrs["sd_slope_jump"], n_runners)[rid]
    latent = (nrs["Intercept"] + (nrs["mileage_jump"] + b1) * jump + nrs["shoe_km"] * shoe
              + nrs["rest_days_7d"] * rest + b0 + rng.normal(0, nrs["sd_residual"], n))
    pain = np.round(latent, 2)
    binary = TRUTH["binary"]
    eta = (binary["Intercept"] + binary["mileage_jump"] * jump + binary["shoe_km"] * shoe
           + binary["rest_days_7d"] * rest
           + rng.normal(0, binary["sd_intercept"], n_runners)[rid])
    pain_any = rng.uniform(size=n) < 1 / (1 + np.exp(-eta))
    sex = rng.choice(["F", "M"], n_runners)[rid]
    age = rng.integers(20, 60, n_runners)[rid].astype(float)
    keep = rng.uniform(size=n) >= (0.0 if rest_heavy else 0.1)  # unreturned reports
    return pd.DataFrame({
        "runner_id": [f"r{i:03d}" for i in rid], "week": week, "pain": pain,
        "pain_any": pain_any, "mileage_jump": jump, "shoe_km": shoe, "rest_days_7d": rest,
        "sex": sex, "age": age,
    }).loc[keep].reset_index(drop=True)


FIXTURES = {
    "demo": {"n_runners": 40, "reports": (26, 26), "rest_heavy": False, "seed": 5001},
    "sparse": {"n_runners": 120, "reports": (2, 8), "rest_heavy": True, "seed": 5002},
}


def main() -> None:
    """Write ``<name>.csv`` for each fixture and ``fixtures_truth.json``."""
    for name, spec in FIXTURES.items():
        make_fixture(**spec).to_csv(HERE / f"{name}.csv", index=False, lineterminator="\n")
    (HERE / "fixtures_truth.json").write_text(
        json.dumps({"truth": TRUTH, "fixtures": {k: {**v, "reports": list(v["reports"])}
                                                 for k, v in FIXTURES.items()}},
                   indent=2) + "\n")


if __name__ == "__main__":
    main()
