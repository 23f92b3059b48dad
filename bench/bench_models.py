"""Speed of the mixed models against lme4 on the same data.

Usage (from the project root)::

    .venv/bin/python bench/bench_models.py [--sizes 500,2000] [--days 365] [--repeat 3] [--no-r]

For each size, simulates ``runners x days`` daily pain reports (about 40 % rest days, a
pain score driven by the week-over-week mileage jump, shoe km and rest days, a random
intercept and a random slope on the jump per runner, and a pain flag from a logistic mixed
model), then times, on the same rows:

* ``lmm_ri``  kneeload ``fit_lmm`` (profiled REML engine) vs ``lmer(pain ~ ... + (1 | runner_id))``
* ``lmm_rs``  with a random slope on ``mileage_jump`` vs ``(1 + mileage_jump | runner_id)``
* ``glmm``    kneeload ``fit_glmm`` (Laplace engine) vs ``glmer(..., family = binomial)``

Times are for the whole fit call from the data frame (design building included, on both
sides), median of ``--repeat`` runs (R: one run per model above 200,000 rows). Prints
seconds and the ratio kneeload / lme4, and the largest fixed-effect difference.

``--agreement`` instead prints, for every model in ``tests/reference/lme4_reference.csv``,
the largest relative differences between kneeload's engines and lme4 on the committed
fixtures (fixed effects, standard errors, variance components; log-likelihood absolute).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.models import fit_glmm, fit_lmm

EXPOSURES = ["mileage_jump", "shoe_km", "rest_days_7d"]

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[[1]]); d$runner_id <- factor(d$runner_id)
reps <- as.integer(args[[3]])
fx <- "mileage_jump + shoe_km + rest_days_7d"
specs <- list(
  lmm_ri = function() lmer(as.formula(paste("pain ~", fx, "+ (1 | runner_id)")), data = d),
  lmm_rs = function() lmer(as.formula(paste("pain ~", fx, "+ (1 + mileage_jump | runner_id)")),
                           data = d),
  glmm = function() glmer(as.formula(paste("pain_any ~", fx, "+ (1 | runner_id)")), data = d,
                          family = binomial,
                          control = glmerControl(check.scaleX = "ignore")))
out <- NULL
for (name in names(specs)) {
  n_rep <- if (nrow(d) > 200000) 1 else reps
  secs <- numeric(n_rep)
  for (i in seq_len(n_rep)) {
    t0 <- proc.time()[["elapsed"]]; fit <- suppressWarnings(specs[[name]]())
    secs[i] <- proc.time()[["elapsed"]] - t0
  }
  fe <- fixef(fit)
  out <- rbind(out, data.frame(model = name, seconds = median(secs), term = names(fe),
                               estimate = unname(fe)))
}
write.csv(out, args[[2]], row.names = FALSE)
"""


def simulate_daily(n_runners: int, n_days: int, *, seed: int = 1) -> pd.DataFrame:
    """Daily reports with known effects (NRS points; log-odds for ``pain_any``)."""
    rng = np.random.default_rng(seed)
    rid = np.repeat(np.arange(n_runners), n_days)
    n = rid.size
    rest = rng.binomial(7, 0.4, n).astype(float)
    jump = rng.lognormal(0.0, 0.3, n) - 1.0
    shoe = rng.uniform(0, 700, n)
    u0 = rng.normal(0, 1.0, n_runners)[rid]
    u1 = rng.normal(0, 0.4, n_runners)[rid]
    pain = (2.5 + (0.8 + u1) * jump + 0.002 * shoe - 0.15 * rest + u0
            + rng.normal(0, 1.0, n))
    eta = -1.2 + 0.9 * jump + 0.0015 * shoe - 0.2 * rest + rng.normal(0, 0.8, n_runners)[rid]
    pain_any = rng.uniform(size=n) < 1 / (1 + np.exp(-eta))
    return pd.DataFrame({"runner_id": [f"r{i:05d}" for i in rid], "pain": pain.round(3),
                         "pain_any": pain_any, "mileage_jump": jump.round(4),
                         "shoe_km": shoe.round(1), "rest_days_7d": rest})


def time_kneeload(panel: pd.DataFrame, repeat: int) -> dict[str, tuple[float, pd.Series]]:
    fits = {
        "lmm_ri": lambda: fit_lmm(panel, exposures=EXPOSURES),
        "lmm_rs": lambda: fit_lmm(panel, exposures=EXPOSURES, random_slopes=["mileage_jump"]),
        "glmm": lambda: fit_glmm(panel, exposures=EXPOSURES),
    }
    out = {}
    for name, fit in fits.items():
        secs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = fit()
            secs.append(time.perf_counter() - t0)
        out[name] = (float(np.median(secs)), res.table.set_index("term")["estimate"])
    return out


def time_lme4(panel: pd.DataFrame, repeat: int) -> pd.DataFrame | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data, script, result = (Path(tmp) / n for n in ("d.csv", "b.R", "out.csv"))
        panel.assign(pain_any=panel["pain_any"].astype(int)).to_csv(data, index=False)
        script.write_text(R_SCRIPT)
        proc = subprocess.run([rscript, str(script), str(data), str(result), str(repeat)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print("Rscript failed:", proc.stderr.strip().splitlines()[-1:])
            return None
        return pd.read_csv(result)


REF_DIR = Path(__file__).resolve().parent.parent / "tests" / "reference"
AGREEMENT_SPECS = {
    "lmm_ri": {}, "lmm_rs": {"random_slopes": ["mileage_jump"]},
    "lmm_ri_ml": {"reml": False},
    "lmm_rs_ml": {"random_slopes": ["mileage_jump"], "reml": False},
    "lmm_cov": {"covariates": ["sex", "age"]},
    "glmm_ri": {}, "glmm_rs": {"random_slopes": ["mileage_jump"], "correlated": False},
}


def fixture_agreement() -> pd.DataFrame:
    """Largest differences from lme4 per engine, cohort and model on the fixtures."""
    ref = pd.read_csv(REF_DIR / "lme4_reference.csv")
    rows = []
    for cohort in ("demo", "sparse"):
        data = pd.read_csv(REF_DIR / f"{cohort}.csv", dtype={"runner_id": "str"})
        for name, spec in AGREEMENT_SPECS.items():
            engines = ["laplace"] if name.startswith("glmm") else ["profiled", "statsmodels"]
            r = ref.loc[(ref["cohort"] == cohort) & (ref["model"] == name)]
            fe = r.loc[r["kind"] == "fixef"]
            vc = r.loc[r["kind"] == "varcorr"]
            for engine in engines:
                res = (fit_glmm(data, exposures=EXPOSURES, **spec) if engine == "laplace"
                       else fit_lmm(data, exposures=EXPOSURES, engine=engine, **spec))

                def rel(ours: np.ndarray, theirs: pd.Series) -> float:
                    return float(np.max(np.abs(ours - theirs.to_numpy())
                                        / np.abs(theirs.to_numpy())))

                rows.append({
                    "engine": engine, "cohort": cohort, "model": name,
                    "fixed_effects": rel(res.table["estimate"].to_numpy(), fe["estimate"]),
                    "std_errors": rel(res.table["std_error"].to_numpy(), fe["std_error"]),
                    "variance_components": rel(res.variance_components["vcov"].to_numpy(),
                                               vc["estimate"]),
                    "loglik_minus_lme4": res.loglik - float(
                        r.loc[r["term"] == "loglik", "estimate"].iloc[0]),
                    "singular": res.extra["singular"],
                    "lme4_singular": bool(r.loc[r["term"] == "singular", "estimate"].iloc[0]),
                })
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="500,2000", help="runners, comma-separated")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-r", action="store_true")
    parser.add_argument("--agreement", action="store_true",
                        help="compare with the committed lme4 reference numbers instead")
    args = parser.parse_args()
    if args.agreement:
        pd.set_option("display.width", 160)
        print(fixture_agreement().to_string(index=False, float_format=lambda v: f"{v:.1e}"))
        return
    for n_runners in (int(s) for s in args.sizes.split(",")):
        panel = simulate_daily(n_runners, args.days)
        ours = time_kneeload(panel, args.repeat)
        ref = None if args.no_r else time_lme4(panel, args.repeat)
        print(f"\n{n_runners} runners x {args.days} days = {len(panel):,} rows")
        print(f"{'model':8} {'kneeload s':>11} {'lme4 s':>9} {'ratio':>7} {'max |diff| FE':>14}")
        for name, (secs, est) in ours.items():
            if ref is None:
                print(f"{name:8} {secs:11.2f} {'-':>9} {'-':>7} {'-':>14}")
                continue
            r = ref.loc[ref["model"] == name]
            r_est = r.set_index("term")["estimate"].rename({"(Intercept)": "Intercept"})
            diff = float((est.loc[r_est.index] - r_est).abs().max())
            r_secs = float(r["seconds"].iloc[0])
            print(f"{name:8} {secs:11.2f} {r_secs:9.2f} {secs / r_secs:7.2f} {diff:14.2e}")


if __name__ == "__main__":
    main()
