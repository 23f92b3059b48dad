"""Bias and 95 % coverage of a DLNM's cumulative effect, by simulation with a known lag structure.

Usage (from the project root)::

    .venv/bin/python bench/bench_dlnm.py [--studies 200] [--runners 30] [--days 200]
                                         [--seed 1] [--model lmm|glmm]

Each study simulates ``runners`` runners with ``days`` days of daily km (gamma, about 30 %
rest days at 0 km) and a pain report every 7 days from day 35 on, its lag 0 the report day.
The truth is a distributed lag that is linear in the day's km and decays over the lags,
``eta = b0 + u_i + sum_k beta x_{s-k} w(k)``, k = 0..28, with ``w`` the projection of
``exp(-k / 7)`` onto the lag basis (``ns(0:28, 4, intercept = TRUE)``), so the model fitted
(a linear var basis x that lag basis, :func:`analysis.models.crossbasis.crossbasis`, random
intercept per runner) contains the truth. ``lmm``: pain = eta + N(0, 1) residual, random
intercept SD 1; ``glmm``: logit link, intercept SD 0.8.

Prints, for the overall cumulative effect of 10 km a day over the 29 days against rest
(:func:`analysis.models.crossbasis.crosspred`), the true value, the mean estimate, bias
(absolute and relative), the empirical SD against the mean delta-method SE, and the share
of 95 % intervals that cover the truth (Monte Carlo SE sqrt(0.95 x 0.05 / studies)), plus
the same coverage for the lag-0 effect.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd

from analysis.models import fit_glmm, fit_lmm
from analysis.models.crossbasis import crossbasis, crosspred, lag_basis

MAX_LAG = 28
LAG_DF = 4
#: km a day the cumulative effect is read at, against 0 km (rest).
AT_KM = 10.0
#: True effect per km of one day's load at lag 0 (NRS points, or log-odds for the GLMM).
BETA = {"lmm": 0.03, "glmm": 0.02}
DECAY_DAYS = 7.0
REPORT_EVERY = 7
FIRST_REPORT = 35


def true_lag_weights() -> np.ndarray:
    """exp(-k/7) projected onto the lag basis (least squares): exactly representable."""
    basis = lag_basis(MAX_LAG, kind="ns", df=LAG_DF)
    target = np.exp(-np.arange(MAX_LAG + 1) / DECAY_DAYS)
    coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
    return basis @ coef


def simulate_study(rng: np.random.Generator, *, runners: int, days: int, model: str,
                   weights: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One cohort: the daily calendar and the report panel (lag 0 = the report day)."""
    dates = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(days), "D")
    daily, panel = [], []
    sd_u = 1.0 if model == "lmm" else 0.8
    for r in range(runners):
        km = rng.gamma(2.0, 4.0, days) * rng.uniform(0.5, 1.5)
        km[rng.random(days) < 0.3] = 0.0
        runner = f"r{r:03d}"
        daily.append(pd.DataFrame({"runner_id": runner, "date": dates, "distance_km": km}))
        report_days = np.arange(FIRST_REPORT, days, REPORT_EVERY)
        lagged = np.stack([km[report_days - k] for k in range(MAX_LAG + 1)], axis=1)
        eta = -1.0 + rng.normal(0, sd_u) + BETA[model] * lagged @ weights
        if model == "lmm":
            y = 2.0 + eta + rng.normal(0, 1.0, report_days.size)
            outcome = {"pain": y}
        else:
            outcome = {"pain_any": (rng.random(report_days.size)
                                    < 1 / (1 + np.exp(-eta))).astype(float)}
        panel.append(pd.DataFrame({"runner_id": runner, "reference_date": dates[report_days],
                                   **outcome}))
    return pd.concat(daily, ignore_index=True), pd.concat(panel, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--runners", type=int, default=30)
    parser.add_argument("--days", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model", choices=("lmm", "glmm"), default="lmm")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    weights = true_lag_weights()
    truth_cum = BETA[args.model] * AT_KM * weights.sum()
    truth_lag0 = BETA[args.model] * AT_KM * weights[0]
    fitter = fit_lmm if args.model == "lmm" else fit_glmm
    est, se, cover, cover0, failed = [], [], [], [], 0
    t0 = time.perf_counter()
    for _ in range(args.studies):
        daily, panel = simulate_study(rng, runners=args.runners, days=args.days,
                                      model=args.model, weights=weights)
        cb = crossbasis(daily, panel, var="linear", lag="ns", lag_df=LAG_DF,
                        max_lag=MAX_LAG)
        data = pd.concat([panel, cb.frame], axis=1)
        kwargs = {"reml": False, "ddf": "wald"} if args.model == "lmm" else {}
        res = fitter(data, exposures=cb.names, **kwargs)
        if not res.converged:
            failed += 1
            continue
        pred = crosspred(cb, res, at=[AT_KM])
        cum = pred["cumulative"].iloc[0]
        lag0 = pred["surface"].iloc[0]
        est.append(cum["estimate"])
        se.append(cum["std_error"])
        cover.append(cum["ci_low"] <= truth_cum <= cum["ci_high"])
        cover0.append(lag0["ci_low"] <= truth_lag0 <= lag0["ci_high"])
    seconds = time.perf_counter() - t0
    est_a, n = np.asarray(est), len(est)
    mc_se = math.sqrt(0.95 * 0.05 / max(n, 1))
    scale = "NRS points" if args.model == "lmm" else "log-odds"
    print(f"DLNM bench: {args.model}, {n} studies fitted ({failed} not converged), "
          f"{args.runners} runners x {args.days} days, reports every {REPORT_EVERY} days, "
          f"lags 0..{MAX_LAG}, linear x ns(lag, {LAG_DF}); {seconds:.1f} s")
    print(f"cumulative effect of {AT_KM:g} km/day vs rest ({scale}): truth {truth_cum:.4f}, "
          f"mean estimate {est_a.mean():.4f}, bias {est_a.mean() - truth_cum:+.4f} "
          f"({(est_a.mean() - truth_cum) / truth_cum:+.2%}), empirical SD {est_a.std(ddof=1):.4f}"
          f", mean SE {np.mean(se):.4f}")
    print(f"95 % coverage: cumulative {np.mean(cover):.3f}, lag 0 {np.mean(cover0):.3f} "
          f"(Monte Carlo SE {mc_se:.3f})")


if __name__ == "__main__":
    main()
