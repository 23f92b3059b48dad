"""Write the simulated counting-process cohorts of the Cox reference (tests/reference/cox_*.csv).

Usage (from the project root): ``.venv/bin/python tests/reference/make_cox_fixtures.py``.
Nothing here uses analysis.models.survival: each runner-day is at risk with a hazard
``h0 * exp(x' beta)`` (daily probability ``1 - exp(-h)``), an episode lasts a random number
of days (not at risk), then the runner is at risk again. Columns: runner_id, start, stop,
event, stratum (= episode number; the PWP gap-time clock restarts at 0 after each episode in
``gap_start``/``gap_stop``), x_cont (time-varying AR(1), e.g. a week-over-week jump), x_bin
(time-varying 0/1, e.g. a run spike), x_base (runner-level); a log-normal runner frailty.
cox_sim1: 60 runners x 150 days, few ties; cox_sim2: 150 runners x 100 days, a higher
hazard (many tied event days) and a larger x_bin effect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent


def simulate(seed: int, n_runners: int, n_days: int, h0: float,
             beta: tuple[float, float, float]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_runners):
        x_base = rng.normal()
        frailty = np.exp(rng.normal(0.0, 0.3))  # some within-runner correlation
        ar = np.zeros(n_days)
        e = rng.normal(0, 1, n_days)
        for t in range(1, n_days):
            ar[t] = 0.8 * ar[t - 1] + 0.6 * e[t]
        x_bin = (rng.random(n_days) < 0.2).astype(int)
        episode, gap0, off = 1, 0, 0
        for t in range(n_days):
            if off > 0:
                off -= 1
                if off == 0:
                    gap0 = t
                continue
            h = h0 * frailty * np.exp(beta[0] * ar[t] + beta[1] * x_bin[t] + beta[2] * x_base)
            event = rng.random() < 1 - np.exp(-h)
            rows.append((f"S{seed}R{i:03d}", t, t + 1, int(event), episode, t - gap0,
                         t - gap0 + 1, round(ar[t], 6), x_bin[t], round(x_base, 6)))
            if event:
                episode += 1
                off = int(rng.integers(3, 20))
    return pd.DataFrame(rows, columns=["runner_id", "start", "stop", "event", "stratum",
                                       "gap_start", "gap_stop", "x_cont", "x_bin", "x_base"])


def main() -> None:
    simulate(1, 60, 150, 0.01, (0.4, 0.5, -0.3)).to_csv(OUT / "cox_sim1.csv", index=False)
    simulate(2, 150, 100, 0.03, (0.2, 0.9, 0.25)).to_csv(OUT / "cox_sim2.csv", index=False)


if __name__ == "__main__":
    main()
