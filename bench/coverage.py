"""Coverage and bias of the models' 95 % intervals over repeated simulated studies.

Usage (from the project root)::

    .venv/bin/python bench/coverage.py [--n-sims 200] [--runners 40] [--cohorts 3] [--weeks 26]

Three settings, each ``--n-sims`` independent studies of ``cohorts x runners`` runners
followed ``weeks`` weeks (weekly reports) from :func:`analysis.simulate.simulate_dataset`:

``lmm``          the LMM (random intercept + random slope on ``mileage_jump``, REML) on an
                 outcome redrawn from the exact linear mixed model on the simulated
                 exposures: the model is correctly specified, so coverage should be 0.95.
``lmm-nrs``      the same LMM on the simulator's own NRS outcome, which is rounded and
                 clipped to 0-10: effects are attenuated slightly (the simulator documents
                 this), so coverage of the latent-scale truth is expected to fall short.
``glmm``         the binomial GLMM (kneeload's Laplace engine) on the simulator's logistic outcome.

Prints, per setting and exposure, the coverage of the 95 % Wald interval (target
0.93-0.97), bias, empirical SD and mean standard error. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from analysis.models import fit_glmm, fit_lmm
from analysis.power import (
    DEFAULT_EXPOSURES,
    redraw_lmm_outcome,
    simulate_panel,
    summarise_simulations,
)


def one_study(setting: str, seed: int, *, runners: int, cohorts: int,
              weeks: int) -> pd.DataFrame:
    outcome = "binary" if setting == "glmm" else "nrs"
    panel, truth = simulate_panel(runners_per_cohort=runners, cohorts=cohorts, weeks=weeks,
                                  seed=seed, outcome=outcome)
    exposures = list(DEFAULT_EXPOSURES)
    if setting == "lmm":
        panel = redraw_lmm_outcome(panel, truth, seed=seed + 1)
    if setting == "glmm":
        res = fit_glmm(panel, exposures=exposures)
    else:
        res = fit_lmm(panel, exposures=exposures, random_slopes=["mileage_jump"])
    table = res.table.set_index("term").loc[exposures]
    truth_fe = pd.Series(truth["fixed_effects"]).loc[exposures]
    return pd.DataFrame({
        "setting": setting, "seed": seed, "term": exposures, "truth": truth_fe.to_numpy(),
        "estimate": table["estimate"].to_numpy(), "std_error": table["std_error"].to_numpy(),
        "ci_low": table["ci_low"].to_numpy(), "ci_high": table["ci_high"].to_numpy(),
        "p_value": table["p_value"].to_numpy(), "failed": False,
        "converged": res.converged,
        "max_abs_jump": float(panel["mileage_jump"].abs().max()),
    }).assign(significant=lambda d: d["p_value"] < 0.05,
              covered=lambda d: (d["ci_low"] < d["truth"]) & (d["truth"] < d["ci_high"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-sims", type=int, default=200)
    parser.add_argument("--runners", type=int, default=40, help="runners per cohort")
    parser.add_argument("--cohorts", type=int, default=3)
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--settings", default="lmm,lmm-nrs,glmm")
    parser.add_argument("--seed", type=int, default=5000)
    args = parser.parse_args()
    seeds = np.random.SeedSequence(args.seed).generate_state(args.n_sims, dtype=np.uint32)
    pd.set_option("display.width", 140)
    for setting in args.settings.split(","):
        t0 = time.perf_counter()
        sims = pd.concat([one_study(setting, int(s), runners=args.runners,
                                    cohorts=args.cohorts, weeks=args.weeks) for s in seeds],
                         ignore_index=True)
        summary = summarise_simulations(sims, by=["setting", "term"])
        mc_se = np.sqrt(0.95 * 0.05 / args.n_sims)
        n_wild = int(sims.groupby("seed")["max_abs_jump"].first().gt(10).sum())
        print(f"\n== {setting}: {args.n_sims} studies of {args.cohorts} x {args.runners} runners"
              f" x {args.weeks} weeks ({time.perf_counter() - t0:.0f} s; Monte Carlo SE of a"
              f" coverage of 0.95 is {mc_se:.3f}; {int((~sims['converged']).sum())} "
              f"non-converged term fits; {n_wild} studies with an impossible |mileage_jump| > 10)")
        cols = ["term", "truth", "mean_estimate", "bias", "empirical_sd", "mean_std_error",
                "coverage", "power"]
        print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
