"""Incidence intervals: the simple (exact Poisson) one against the two that allow clustering.

Usage (from the project root)::

    .venv/bin/python bench/bench_incidence_intervals.py [--studies 400] [--demo data/raw/demo]

1. Coverage with known truth: ``--studies`` cohorts of 40 runners, each with exposure
   uniform on 50-250 h and a runner rate ``0.01 h^-1 x gamma(shape, 1/shape)`` (gamma
   frailty: shape 1 is strong clustering, shape 1e6 none). The true cohort rate is 10 per
   1,000 h. For each interval (:func:`analysis.epi.poisson_interval`,
   :func:`analysis.epi.cluster_bootstrap_interval`, :func:`analysis.epi.quasi_poisson_interval`)
   the share of studies whose interval holds the true rate is printed, with its Monte Carlo
   standard error. The pooled rate is ``sum(y) / sum(E)``, whose target is the
   exposure-weighted mean rate; with frailty independent of exposure that is 10 per 1,000 h.
2. The demo study (built into a temporary folder): incidence per cohort with the three
   intervals side by side, the numbers quoted in docs/episodes.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from analysis.epi import (  # noqa: E402
    RATE_PER,
    cluster_bootstrap_interval,
    incidence,
    poisson_interval,
    quasi_poisson_interval,
)

RUNNERS = 40
TRUE_RATE = 0.01  # per hour
SHAPES = (1.0, 4.0, 1e6)


def coverage(studies: int, shape: float, seed: int = 3) -> dict[str, tuple[float, float]]:
    """Share of studies whose 95 % interval holds the true rate, per interval kind."""
    rng = np.random.default_rng(seed)
    boot_rng = np.random.default_rng(seed + 1)
    truth = TRUE_RATE * RATE_PER
    hits = {"exact Poisson": 0, "runner bootstrap": 0, "quasi-Poisson": 0}
    for _ in range(studies):
        e = rng.uniform(50, 250, RUNNERS)
        y = rng.poisson(e * TRUE_RATE * rng.gamma(shape, 1 / shape, RUNNERS)).astype(float)
        lo, hi = poisson_interval(y.sum())
        hits["exact Poisson"] += lo / e.sum() * RATE_PER <= truth <= hi / e.sum() * RATE_PER
        blo, bhi = cluster_bootstrap_interval(y, e, n_boot=1000, rng=boot_rng)
        hits["runner bootstrap"] += blo <= truth <= bhi
        _, qlo, qhi, _ = quasi_poisson_interval(y, e)
        hits["quasi-Poisson"] += bool(qlo <= truth <= qhi)
    return {k: (v / studies, float(np.sqrt(v / studies * (1 - v / studies) / studies)))
            for k, v in hits.items()}


def demo(raw: Path) -> None:
    from analysis.pipeline import build, load_processed

    with tempfile.TemporaryDirectory() as tmp:
        build(raw, Path(tmp) / "out")
        data = load_processed(Path(tmp) / "out")
    out = incidence(data["panel"], data["daily"],
                    threshold=data["panel_meta"]["pain_threshold"])
    cols = ["cohort", "scope", "runners", "episodes", "hours_observed", "hours",
            "rate_per_1000_h", "ci_low_h", "ci_high_h", "boot_low_h", "boot_high_h",
            "qp_low_h", "qp_high_h", "dispersion_h"]
    with np.printoptions(precision=2):
        print(out[cols].round(2).to_string(index=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--demo", type=Path, default=ROOT / "data" / "raw" / "demo")
    args = parser.parse_args(argv)
    print(f"coverage of 95 % intervals, {args.studies} studies of {RUNNERS} runners, "
          f"true rate {TRUE_RATE * RATE_PER:g} per 1,000 h")
    for shape in SHAPES:
        cov = coverage(args.studies, shape)
        text = ", ".join(f"{k} {p:.3f} (MC SE {se:.3f})" for k, (p, se) in cov.items())
        print(f"  frailty shape {shape:g}: {text}")
    if args.demo.is_dir():
        print(f"\ndemo study ({args.demo}):")
        demo(args.demo)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
