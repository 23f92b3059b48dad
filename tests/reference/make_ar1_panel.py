"""Write tests/reference/ar1_panel.csv: a panel with AR(1) daily residuals and gaps in the days.

Usage (from the project root): ``.venv/bin/python tests/reference/make_ar1_panel.py``.
Truth: pain = 3 + (0.8 + v_i) mileage_jump + 0.002 shoe_km - 0.1 rest_days_7d + u_i + e_ij
with u_i ~ N(0, 1), v_i ~ N(0, 1.5) independent, e AR(1) in days with rho = 0.6 and SD 1;
40 runners, 20-40 reports each, 1-4 days apart. nlme_ar1_reference.R fits it with
nlme::lme(correlation = corAR1()).
"""

from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240610
RHO, SIGMA, SD_RUNNER, SD_SLOPE = 0.6, 1.0, 1.0, 1.5


def main() -> None:
    rng = np.random.default_rng(SEED)
    rows = []
    for i in range(40):
        n = int(rng.integers(20, 41))
        day = np.cumsum(rng.integers(1, 5, n)) + int(rng.integers(19000, 19100))
        e = np.empty(n)
        e[0] = rng.normal(0, SIGMA)
        for k in range(1, n):
            phi = RHO ** (day[k] - day[k - 1])
            e[k] = phi * e[k - 1] + rng.normal(0, SIGMA * np.sqrt(1 - phi**2))
        jump = rng.normal(0.1, 0.3, n)
        shoe = rng.uniform(0, 800, n)
        rest = rng.integers(0, 4, n).astype(float)
        slope = 0.8 + rng.normal(0, SD_SLOPE)
        pain = 3 + slope * jump + 0.002 * shoe - 0.1 * rest + rng.normal(0, SD_RUNNER) + e
        rows.append(pd.DataFrame({"runner_id": f"R{i:02d}", "day": day, "pain": pain,
                                  "mileage_jump": jump, "shoe_km": shoe,
                                  "rest_days_7d": rest}))
    out = pd.concat(rows, ignore_index=True)
    # rows shuffled so that the fit must sort them in time itself
    out = out.sample(frac=1.0, random_state=1).reset_index(drop=True)
    out.to_csv(Path(__file__).with_name("ar1_panel.csv"), index=False, float_format="%.10g")


if __name__ == "__main__":
    main()
