"""Write the two simulated GLMM fixtures (known truth) for the glmer reference.

Run from the project root: ``.venv/bin/python tests/reference/make_glmm_fixtures.py``. The files
are committed; re-running with the same seeds rewrites them byte for byte.

* ``glmm_rare.csv``  150 runners x 70 reports, pain flag from a logistic random-intercept model
  with intercept -4.4: about 2.5 % positive (rare events; the intercept SE is where a
  covariance that ignores the random-effect parameters goes wrong).
* ``glmm_slope.csv`` 120 runners x 50 reports, a random intercept and a random slope on
  ``mileage_jump`` with SDs 1.0 and 1.0 and a true correlation of 0.8 (glmer's
  ``(1 + mileage_jump | runner_id)``).

Truth is in ``glmm_fixtures_truth.json``. Nothing in ``glmer_reference.csv`` comes from
kneeload: it is written by ``glmer_reference.R``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

SPECS = {
    "glmm_rare": {"n_runners": 150, "n_reports": 70, "seed": 7101,
                  "beta": {"Intercept": -4.4, "mileage_jump": 0.9, "shoe_km": 0.0015,
                           "rest_days_7d": -0.2},
                  "sd_intercept": 0.8, "sd_slope": 0.0, "corr": 0.0},
    "glmm_slope": {"n_runners": 120, "n_reports": 50, "seed": 7102,
                   "beta": {"Intercept": -1.2, "mileage_jump": 0.9, "shoe_km": 0.0015,
                            "rest_days_7d": -0.2},
                   "sd_intercept": 1.0, "sd_slope": 1.0, "corr": 0.8},
}


def make(spec: dict) -> pd.DataFrame:
    rng = np.random.default_rng(spec["seed"])
    m, k = spec["n_runners"], spec["n_reports"]
    rid = np.repeat(np.arange(m), k)
    n = rid.size
    jump = np.round(rng.normal(0.1, 0.5, n), 3)
    shoe = np.round(rng.uniform(0, 800, n), 1)
    rest = rng.binomial(7, 0.35, n).astype(float)
    s0, s1, rho = spec["sd_intercept"], spec["sd_slope"], spec["corr"]
    e = rng.standard_normal((m, 2))
    b = np.column_stack([s0 * e[:, 0], s1 * (rho * e[:, 0] + np.sqrt(1 - rho**2) * e[:, 1])])
    beta = spec["beta"]
    eta = (beta["Intercept"] + b[rid, 0] + (beta["mileage_jump"] + b[rid, 1]) * jump
           + beta["shoe_km"] * shoe + beta["rest_days_7d"] * rest)
    pain_any = rng.uniform(size=n) < 1 / (1 + np.exp(-eta))
    return pd.DataFrame({"runner_id": [f"r{i:03d}" for i in rid], "pain_any": pain_any,
                         "mileage_jump": jump, "shoe_km": shoe, "rest_days_7d": rest})


def main() -> None:
    for name, spec in SPECS.items():
        data = make(spec)
        data.to_csv(HERE / f"{name}.csv", index=False)
        print(name, len(data), f"{data['pain_any'].mean():.4f} positive")
    (HERE / "glmm_fixtures_truth.json").write_text(json.dumps(SPECS, indent=2) + "\n")


if __name__ == "__main__":
    main()
