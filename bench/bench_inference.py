"""Type-I error and 95 % coverage of the models' inference options, over simulated studies.

Usage (from the project root)::

    .venv/bin/python bench/bench_inference.py [--n-sims 1000] [--settings few-8,few-12,ar1,rare]

Each setting simulates ``--n-sims`` studies from an exactly known model (numpy, below: no
rounding or clipping, so the fitted model is the true one up to the named misspecification)
and fits them with every inference option, printed side by side:

``few-8``, ``few-12``  8 or 12 runners x 20 reports, random intercept (SD 1, residual SD 1.2);
                       a runner-level covariate ``age`` with true effect 0 (the test that Wald
                       z makes anti-conservative with few runners) and a within-runner
                       ``mileage_jump`` with true effect 1.5. LMM, REML: Wald z vs
                       Satterthwaite t, model-based vs cluster-robust SEs.
``ar1``                30 runners x 60 days (10 % of days unreported), a serially correlated
                       exposure (AR(1), rho 0.8) with true effect 0, and AR(1) residuals
                       (rho 0.6 per day): the iid LMM vs ``correlation="ar1"`` vs robust SEs.
``rare``               binomial GLMM, 120 runners x 60 reports, 2-3 % positive (intercept
                       logit(0.025)), runner SD 0.5, ``mileage_jump`` effect 0 and ``age``
                       effect 0.3 (log-odds per SD): model-based vs robust SEs.

Prints, per setting, method and term: the rejection rate at alpha 0.05 where the truth is 0
(type-I error; target 0.05, the Monte Carlo SE at 1,000 studies is 0.007) and the coverage of
the 95 % interval (target 0.95), with the number of fits flagged not converged. Issue 10 asks
Satterthwaite's type-I error to lie within 0.035-0.065 for 8 and 12 runners. Not part of the
test suite (about 15 minutes at 1,000 studies on 2 cores); docs/models.md quotes its output.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from analysis.models import fit_glmm, fit_lmm

ALPHA = 0.05
#: Truth of the simulated studies, per setting and term.
TRUTH: dict[str, dict[str, float]] = {
    "few": {"Intercept": 2.0, "mileage_jump": 1.5, "age": 0.0},
    "ar1": {"Intercept": 2.0, "load": 0.0},
    "rare": {"Intercept": float(logit(0.025)), "mileage_jump": 0.0, "age": 0.3},
}
SD_RUNNER, SD_RESIDUAL = 1.0, 1.2
AR_RESIDUAL_RHO, AR_EXPOSURE_RHO = 0.6, 0.8
RARE_RUNNER_SD = 0.5


def _ar1_series(rng: np.random.Generator, n_series: int, length: int, rho: float
                ) -> np.ndarray:
    """Stationary unit-variance AR(1) series, one per row -> (n_series, length)."""
    out = np.empty((n_series, length))
    out[:, 0] = rng.standard_normal(n_series)
    innov = rng.standard_normal((n_series, length)) * np.sqrt(1 - rho**2)
    for t in range(1, length):
        out[:, t] = rho * out[:, t - 1] + innov[:, t]
    return out


def _runners_with_covariates(rng: np.random.Generator, n_runners: int, n_reports: int, *,
                             truth: dict[str, float], runner_sd: float) -> pd.DataFrame:
    """Runners with a runner-level ``age`` (SD 1) and a per-report ``mileage_jump``; ``eta``
    is the linear predictor of ``truth`` plus a random intercept of SD ``runner_sd``."""
    rid = np.repeat(np.arange(n_runners), n_reports)
    age = rng.standard_normal(n_runners)[rid]
    jump = rng.normal(0.1, 0.25, rid.size)
    eta = (truth["Intercept"] + truth["mileage_jump"] * jump + truth["age"] * age
           + rng.normal(0, runner_sd, n_runners)[rid])
    return pd.DataFrame({"runner_id": [f"r{i:03d}" for i in rid], "mileage_jump": jump,
                         "age": age, "eta": eta})


def simulate_few(rng: np.random.Generator, n_runners: int, n_reports: int = 20
                 ) -> pd.DataFrame:
    """Few runners: a runner-level covariate and a within-runner exposure."""
    frame = _runners_with_covariates(rng, n_runners, n_reports, truth=TRUTH["few"],
                                     runner_sd=SD_RUNNER)
    pain = frame.pop("eta") + rng.normal(0, SD_RESIDUAL, len(frame))
    return frame.assign(pain=pain)


def simulate_ar1(rng: np.random.Generator, n_runners: int = 30, n_days: int = 60
                 ) -> pd.DataFrame:
    """Daily reports with AR(1) residuals and a serially correlated exposure, 10 % gaps."""
    load = _ar1_series(rng, n_runners, n_days, AR_EXPOSURE_RHO)
    resid = _ar1_series(rng, n_runners, n_days, AR_RESIDUAL_RHO) * SD_RESIDUAL
    pain = (TRUTH["ar1"]["Intercept"] + TRUTH["ar1"]["load"] * load
            + rng.normal(0, SD_RUNNER, n_runners)[:, None] + resid)
    rid, day = np.divmod(np.arange(n_runners * n_days), n_days)
    frame = pd.DataFrame({"runner_id": [f"r{i:02d}" for i in rid],
                          "date": pd.Timestamp("2025-01-01") + pd.to_timedelta(day, "D"),
                          "pain": pain.ravel(), "load": load.ravel()})
    return frame.loc[rng.random(len(frame)) > 0.10].reset_index(drop=True)


def simulate_rare(rng: np.random.Generator, n_runners: int = 120, n_reports: int = 60
                  ) -> pd.DataFrame:
    """Rare events: 2-3 % of reports positive."""
    frame = _runners_with_covariates(rng, n_runners, n_reports, truth=TRUTH["rare"],
                                     runner_sd=RARE_RUNNER_SD)
    eta = frame.pop("eta").to_numpy()
    return frame.assign(pain_any=(rng.random(len(frame)) < expit(eta)).astype(float))


#: Per setting: (simulator, fitting function, {method name: fit keywords}).
Setting = tuple[Callable[[np.random.Generator], pd.DataFrame], Callable[..., Any],
                dict[str, dict[str, Any]], str]
SETTINGS: dict[str, Setting] = {
    "few-8": (lambda rng: simulate_few(rng, 8), fit_lmm, {
        "wald": {"ddf": "wald"}, "satterthwaite": {"ddf": "satterthwaite"},
        "robust (wald)": {"ddf": "wald", "vcov": "robust"}},
        "few"),
    "few-12": (lambda rng: simulate_few(rng, 12), fit_lmm, {
        "wald": {"ddf": "wald"}, "satterthwaite": {"ddf": "satterthwaite"},
        "robust (wald)": {"ddf": "wald", "vcov": "robust"}},
        "few"),
    "ar1": (simulate_ar1, fit_lmm, {
        "iid wald": {"ddf": "wald"}, "iid satterthwaite": {"ddf": "satterthwaite"},
        "iid robust": {"ddf": "wald", "vcov": "robust"},
        "ar1 wald": {"ddf": "wald", "correlation": "ar1", "time": "date"},
        "ar1 satterthwaite": {"ddf": "satterthwaite", "correlation": "ar1", "time": "date"}},
        "ar1"),
    "rare": (simulate_rare, fit_glmm, {
        "model": {}, "robust": {"vcov": "robust"}},
        "rare"),
}
EXPOSURES = {"few": (["mileage_jump"], ["age"]), "ar1": (["load"], []),
             "rare": (["mileage_jump"], ["age"])}


def one_study(name: str, seed: int) -> list[dict[str, Any]]:
    simulate, fitter, methods, family = SETTINGS[name]
    panel = simulate(np.random.default_rng(seed))
    exposures, covariates = EXPOSURES[family]
    rows = []
    for method, kwargs in methods.items():
        res = fitter(panel, exposures=exposures, covariates=covariates, **kwargs)
        for term, truth in TRUTH[family].items():
            row = res.term(term)
            rows.append({"setting": name, "method": method, "seed": seed, "term": term,
                         "truth": truth, "estimate": row["estimate"],
                         "rejected": bool(row["p_value"] < ALPHA),
                         "covered": bool(row["ci_low"] <= truth <= row["ci_high"]),
                         "converged": bool(res.converged)})
    return rows


def summarise(sims: pd.DataFrame) -> pd.DataFrame:
    """Rejection rate (the type-I error where truth is 0), coverage and bias per method."""
    g = sims.groupby(["setting", "method", "term"], sort=False)
    out = g.agg(truth=("truth", "first"), studies=("seed", "nunique"),
                rejection=("rejected", "mean"), coverage=("covered", "mean"),
                bias=("estimate", "mean"), not_converged=("converged", lambda c: int((~c).sum())))
    out["bias"] -= out["truth"]
    return out.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-sims", type=int, default=1000)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--csv", help="also write every study's rows here")
    args = parser.parse_args()
    seeds = np.random.SeedSequence(args.seed).generate_state(args.n_sims, dtype=np.uint32)
    pd.set_option("display.width", 160)
    frames = []
    for name in args.settings.split(","):
        t0 = time.perf_counter()
        sims = pd.DataFrame([r for s in seeds for r in one_study(name, int(s))])
        frames.append(sims)
        mc = np.sqrt(ALPHA * (1 - ALPHA) / args.n_sims)
        print(f"\n== {name}: {args.n_sims} studies in {time.perf_counter() - t0:.0f} s "
              f"(Monte Carlo SE of a rate of 0.05: {mc:.3f}; of a coverage of 0.95: {mc:.3f})")
        table = summarise(sims)
        table["type_I_error"] = table["rejection"].where(table["truth"] == 0)
        cols = ["method", "term", "truth", "type_I_error", "coverage", "bias", "not_converged"]
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}",
                                    na_rep="-"))
    if args.csv:
        pd.concat(frames, ignore_index=True).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
