"""Satterthwaite df: false-positive rate with few runners, and its cost on 182,500 rows.

Usage (from the project root)::

    .venv/bin/python bench/bench_satterthwaite.py [--n-sims 200] [--runners 8] [--seed 1]

1. ``--n-sims`` null studies: ``--runners`` runners x 20 reports, random intercept (SD 1,
   residual SD 1.2), a runner-level covariate ``age`` (true effect 0: the test that Wald z
   makes anti-conservative with few runners) and a within-runner ``mileage_jump`` (effect
   1.5). Each is fitted by REML with ``ddf="wald"``, ``ddf="satterthwaite"`` and
   ``vcov="robust"`` (CR1, t(m-1)); printed: the rate at which the test of ``age`` rejects at
   0.05 (target 0.05; Monte Carlo SE at 200 studies 0.015) and the mean df.
2. One random-intercept and one random-slope fit of 500 runners x 365 rows, with
   ``ddf="wald"`` and ``"satterthwaite"`` (best of 3 wall-clock seconds).

Not part of the test suite (about a minute at 200 studies); docs/models.md quotes its output.
The full type-I/coverage study is bench/bench_inference.py.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from analysis.models import fit_lmm

ALPHA = 0.05
EXPOSURES = ["mileage_jump"]


def null_study(rng: np.random.Generator, runners: int, reports: int = 20) -> pd.DataFrame:
    """One panel with a runner-level covariate whose true effect is 0."""
    rid = np.repeat(np.arange(runners), reports)
    age = rng.normal(40, 10, runners)[rid]
    jump = rng.normal(0, 0.3, runners * reports)
    pain = 3 + 1.5 * jump + rng.normal(0, 1, runners)[rid] + rng.normal(0, 1.2, len(rid))
    return pd.DataFrame({"runner_id": [f"r{i:02d}" for i in rid], "pain": pain,
                         "mileage_jump": jump, "age": age})


def type_one_error(n_sims: int, runners: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    options = {"wald (z)": {"ddf": "wald"}, "satterthwaite (t)": {"ddf": "satterthwaite"},
               "robust CR1, t(m-1)": {"vcov": "robust"}}
    rows = []
    for _ in range(n_sims):
        panel = null_study(rng, runners)
        for name, kw in options.items():
            row = fit_lmm(panel, exposures=EXPOSURES, covariates=["age"], **kw).term("age")
            rows.append({"method": name, "rejected": row["p_value"] < ALPHA, "df": row["df"]})
    return (pd.DataFrame(rows).groupby("method", sort=False)
            .agg(rejection_rate=("rejected", "mean"), mean_df=("df", "mean")))


def large_panel(seed: int = 1, runners: int = 500, rows_each: int = 365) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rid = np.repeat(np.arange(runners), rows_each)
    n = len(rid)
    x = rng.normal(0, 0.3, n)
    shoe = rng.uniform(0, 800, n)
    rest = rng.integers(0, 7, n).astype(float)
    pain = (2 + (0.5 + rng.normal(0, 0.5, runners)[rid]) * x + 0.002 * shoe - 0.1 * rest
            + rng.normal(0, 1, runners)[rid] + rng.normal(0, 1, n))
    return pd.DataFrame({"runner_id": [f"r{i:04d}" for i in rid], "pain": pain,
                         "mileage_jump": x, "shoe_km": shoe, "rest_days_7d": rest})


def timing() -> None:
    panel = large_panel()
    exposures = ["mileage_jump", "shoe_km", "rest_days_7d"]
    for slopes in ([], ["mileage_jump"]):
        for ddf in ("wald", "satterthwaite"):
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                fit_lmm(panel, exposures=exposures, random_slopes=slopes, ddf=ddf)
                best = min(best, time.perf_counter() - t0)
            label = "random slope" if slopes else "random intercept"
            print(f"{len(panel):,} rows, {label:16s} ddf={ddf:13s} {best:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sims", type=int, default=200)
    parser.add_argument("--runners", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    res = type_one_error(args.n_sims, args.runners, args.seed)
    print(f"{args.n_sims} null studies, {args.runners} runners x 20 reports, test of the "
          f"runner-level covariate at alpha {ALPHA} ({time.perf_counter() - t0:.0f} s):")
    print(res.to_string(float_format=lambda v: f"{v:.3f}"))
    if not args.skip_timing:
        timing()


if __name__ == "__main__":
    main()
