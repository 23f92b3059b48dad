"""Whole-process speed and agreement of kneeload's Laplace GLMM against lme4's glmer.

Usage (from the project root)::

    .venv/bin/python bench/bench_glmm.py [--runners 500] [--days 365] [--slope] [--no-r]

Simulates ``runners x days`` daily reports (bench_models.simulate_daily: a pain flag from a
logistic random-intercept model), keeps 88 % of the days at random (about 160,000 rows at
500 x 365, the size of /work/shared/ANCHORS.md's "kneeload fit" figure), caps jumps at 300 %,
writes the panel as Parquet and CSV and times whole processes, each reading the panel and
fitting ``pain_any ~ mileage_jump + shoe_km + rest_days_7d + (1 | runner_id)``:

* kneeload: ``kneeload fit panel.parquet --model glmm --out fit.json`` (imports, Parquet,
  design, fit, covariance, JSON), the process the ratio is taken on; then ``python -c``
  (imports, ``pandas.read_csv``, ``fit_glmm``) for the split into imports and fit;
* lme4: ``Rscript`` (library(lme4), ``read.csv``, ``glmer(nAGQ = 1)`` with its default
  control except ``check.scaleX = "ignore"``).

``--slope`` fits ``(1 + mileage_jump | runner_id)`` instead (glmer takes minutes). Prints
seconds, the ratio glmer / kneeload, and the largest differences in fixed effects, SEs and
log-likelihood (glmer at its default PIRLS tolerance stops ~1e-3 short in the deviance; see
tests/reference/glmer_reference.R).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import simulate_daily

#: Share of simulated days kept (ANCHORS' 160,460 rows of 500 x 365).
KEEP_SHARE = 0.88
#: Jumps capped at +300 % (glmer's PIRLS fails on uncapped jumps, ANCHORS.md).
JUMP_CAP = 3.0

PY_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from analysis.models import fit_glmm
d = pd.read_csv(sys.argv[1], dtype={"runner_id": "str"})
slopes = ["mileage_jump"] if sys.argv[3] == "1" else []
t1 = time.perf_counter()
r = fit_glmm(d, exposures=["mileage_jump", "shoe_km", "rest_days_7d"], random_slopes=slopes)
t2 = time.perf_counter()
json.dump({"fit_s": t2 - t1, "load_s": t1 - t0, "estimate": r.table["estimate"].tolist(),
           "std_error": r.table["std_error"].tolist(), "loglik": r.loglik,
           "converged": r.converged}, open(sys.argv[2], "w"))
"""

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[[1]]); d$runner_id <- factor(d$runner_id)
d$pain_any <- as.integer(as.logical(d$pain_any))
re <- if (args[[3]] == "1") "(1 + mileage_jump | runner_id)" else "(1 | runner_id)"
t0 <- proc.time()[["elapsed"]]
fit <- glmer(as.formula(paste("pain_any ~ mileage_jump + shoe_km + rest_days_7d +", re)),
             data = d, family = binomial, control = glmerControl(check.scaleX = "ignore"))
secs <- proc.time()[["elapsed"]] - t0
out <- data.frame(estimate = unname(fixef(fit)), std_error = sqrt(diag(as.matrix(vcov(fit)))))
out$loglik <- as.numeric(logLik(fit)); out$fit_s <- secs
write.csv(out, args[[2]], row.names = FALSE)
"""


def make_panel(n_runners: int, n_days: int, *, seed: int = 1) -> pd.DataFrame:
    panel = simulate_daily(n_runners, n_days, seed=seed)
    rng = np.random.default_rng(seed + 1)
    panel = panel.loc[rng.uniform(size=len(panel)) < KEEP_SHARE].reset_index(drop=True)
    return panel.assign(mileage_jump=panel["mileage_jump"].clip(upper=JUMP_CAP),
                        pain_any=panel["pain_any"].astype(int))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runners", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--slope", action="store_true")
    parser.add_argument("--no-r", action="store_true")
    args = parser.parse_args()
    panel = make_panel(args.runners, args.days)
    slope = "1" if args.slope else "0"
    with tempfile.TemporaryDirectory() as tmp:
        data, parquet = Path(tmp) / "panel.csv", Path(tmp) / "panel.parquet"
        panel.to_csv(data, index=False)
        panel.to_parquet(parquet, index=False)
        py_out, r_out, r_src = (Path(tmp) / n for n in ("py.json", "r.csv", "b.R"))
        cli = [str(Path(sys.executable).with_name("kneeload")), "fit", str(parquet), "--model",
               "glmm", "--out", str(Path(tmp) / "fit.json")]
        if args.slope:
            cli += ["--random-slope", "mileage_jump"]
        t0 = time.perf_counter()
        subprocess.run(cli, check=True, capture_output=True)
        ours_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", PY_SCRIPT, str(data), str(py_out), slope],
                       check=True)
        py_s = time.perf_counter() - t0
        ours = json.loads(py_out.read_text())
        print(f"{len(panel):,} rows, {args.runners} runners, "
              f"{'correlated random slope' if args.slope else 'random intercept'}; "
              f"{panel['pain_any'].mean():.3f} positive")
        print(f"kneeload fit (CLI)  whole process {ours_s:6.2f} s")
        print(f"kneeload python -c  whole process {py_s:6.2f} s (fit {ours['fit_s']:.2f} s, "
              f"imports and CSV {ours['load_s']:.2f} s), converged={ours['converged']}")
        rscript = shutil.which("Rscript")
        if args.no_r or rscript is None:
            return
        r_src.write_text(R_SCRIPT)
        t0 = time.perf_counter()
        subprocess.run([rscript, str(r_src), str(data), str(r_out), slope], check=True,
                       capture_output=True)
        r_s = time.perf_counter() - t0
        ref = pd.read_csv(r_out)
        print(f"glmer               whole process {r_s:6.2f} s (fit {ref['fit_s'].iloc[0]:.2f} s)")
        print(f"ratio glmer / kneeload fit (whole processes, same run): {r_s / ours_s:.1f}x")
        est, se = np.asarray(ours["estimate"]), np.asarray(ours["std_error"])
        print(f"max relative difference: fixed effects "
              f"{np.max(np.abs(est / ref['estimate'] - 1)):.1e}, SEs "
              f"{np.max(np.abs(se / ref['std_error'] - 1)):.1e}; log-likelihood kneeload - "
              f"glmer {ours['loglik'] - ref['loglik'].iloc[0]:+.2e}")


if __name__ == "__main__":
    main()
