"""Does the profiled LMM engine reach lme4's optimum? (issue 10, item 1; on demand).

Simulates random-slope panels (the simulator's 80 runners x 12 weeks, null and non-null, plus
awkward shapes: few runners, a tiny slope SD, a large one), fits each by kneeload's default
engine and by lme4 (one Rscript process for all panels, ``tests/reference/lme4_optimum.R``,
data via one CSV in a temporary folder) and prints the REML log-likelihood gap, fits flagged
as not converged, fixed-effect differences in SE units, SE ratios and timings.

Usage: ``.venv/bin/python bench/bench_lmm_optimum.py [--panels 240] [--seed 1000]``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.models import build_design, fit_lmm_design
from analysis.power import simulate_panel

ROOT = Path(__file__).resolve().parents[1]
R_SCRIPT = ROOT / "tests" / "reference" / "lme4_optimum.R"
EXPOSURES = ["mileage_jump", "shoe_km", "rest_days_7d"]
NULL = dict.fromkeys(EXPOSURES, 0.0)
#: (label, share of panels, simulate_panel keywords)
SHAPES = [
    ("null 80x12", 0.40, {"runners": 80, "weeks": 12, "effects": NULL}),
    ("default effects 80x12", 0.25, {"runners": 80, "weeks": 12}),
    ("few runners 12x12", 0.10, {"runners": 12, "weeks": 12, "effects": NULL}),
    ("20 runners x 26 weeks", 0.10, {"runners": 20, "weeks": 26}),
    ("tiny slope SD 0.05, 80x12", 0.10, {"runners": 80, "weeks": 12, "effects": NULL,
                                         "sd_slope_jump": 0.05}),
    ("large slope SD 2, 40x12", 0.05, {"runners": 40, "weeks": 12, "sd_slope_jump": 2.0}),
]
LOGLIK_TOL = 1e-3


def simulate(n_panels: int, seed0: int) -> list[tuple[str, int, pd.DataFrame]]:
    out = []
    for label, share, kw in SHAPES:
        for k in range(max(1, round(share * n_panels))):
            seed = seed0 + len(out)
            panel, _ = simulate_panel(seed=seed, outcome="nrs", **kw)
            d = build_design(panel, outcome="pain", exposures=EXPOSURES,
                             random_slopes=["mileage_jump"])
            out.append((label, seed, d.frame.assign(panel=f"{label}|{k}|{seed}")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--panels", type=int, default=240)
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args()
    if shutil.which("Rscript") is None:
        sys.exit("Rscript not found: this benchmark compares with lme4")
    panels = simulate(args.panels, args.seed)
    rows = []
    for label, _seed, frame in panels:
        d = build_design(frame, outcome="pain", exposures=EXPOSURES,
                         random_slopes=["mileage_jump"])
        t = time.perf_counter()
        f = fit_lmm_design(d, reml=True)
        secs = time.perf_counter() - t
        for name, b, se in zip(d.x_names, f.beta, np.sqrt(np.diag(f.vcov)), strict=True):
            rows.append({"panel": frame["panel"].iloc[0], "shape": label, "term": name,
                         "kl_estimate": b, "kl_se": se, "kl_loglik": f.loglik,
                         "kl_converged": f.converged, "kl_optimizer": f.optimizer,
                         "kl_singular": f.singular, "kl_seconds": secs,
                         "kl_attempts": len(f.attempts)})
    kl = pd.DataFrame(rows)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "panels.csv", Path(tmp) / "lme4.csv"
        pd.concat([f for _, _, f in panels])[
            ["panel", "runner_id", "pain", *EXPOSURES]].to_csv(src, index=False)
        t = time.perf_counter()
        subprocess.run(["Rscript", str(R_SCRIPT), str(src), str(dst)], check=True, cwd=ROOT)
        r_wall = time.perf_counter() - t
        ref = pd.read_csv(dst).rename(columns={"(Intercept)": "Intercept"})
    ref["term"] = ref["term"].replace({"(Intercept)": "Intercept"})
    m = kl.merge(ref, on=["panel", "term"], validate="one_to_one")
    per_panel = m.drop_duplicates("panel")
    gap = per_panel["loglik"] - per_panel["kl_loglik"]
    z = (m["kl_estimate"] - m["estimate"]).abs() / m["std_error"]
    ratio = m["kl_se"] / m["std_error"]
    counts = per_panel["shape"].value_counts(sort=False)
    print(f"panels: {len(per_panel)} ({', '.join(f'{s}: {n}' for s, n in counts.items())})")
    print(f"max(lme4 loglik - kneeload loglik): {gap.max():.3g}  (min {gap.min():.3g})")
    print(f"panels with lme4 loglik > kneeload's by more than {LOGLIK_TOL:g}: "
          f"{int((gap > LOGLIK_TOL).sum())}")
    print(f"kneeload fits flagged not converged: {int((~per_panel['kl_converged']).sum())}")
    print(f"kneeload needed a second optimizer: {int((per_panel['kl_attempts'] > 1).sum())}")
    print(f"singular fits: kneeload {int(per_panel['kl_singular'].sum())}, lme4 "
          f"{int(per_panel['singular'].sum())}")
    print(f"max |beta diff| / lme4 SE: {z.max():.3g}")
    print(f"SE ratio kneeload / lme4: min {ratio.min():.6f}, max {ratio.max():.6f}")
    print(f"time per fit: kneeload mean {per_panel['kl_seconds'].mean():.4f} s, max "
          f"{per_panel['kl_seconds'].max():.3f} s; lme4 mean {per_panel['seconds'].mean():.4f} s "
          f"(R process wall {r_wall:.1f} s)")
    by = per_panel.assign(gap=gap).groupby("shape", sort=False).agg(
        n=("gap", "size"), max_gap=("gap", "max"),
        not_converged=("kl_converged", lambda s: int((~s).sum())),
        singular_kl=("kl_singular", "sum"), singular_lme4=("singular", "sum"))
    print(by.to_string())


if __name__ == "__main__":
    main()
