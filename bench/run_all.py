"""Run every benchmark in bench/ in turn (``make bench``); each prints its own ratios.

Benchmarks are long and machine-dependent, so they are never part of ``make test``.
Pass names to run a subset: ``python bench/run_all.py bench_exposures bench_models``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    scripts = sorted(p for p in BENCH.glob("*.py") if p.name != Path(__file__).name)
    if names:
        scripts = [p for p in scripts if p.stem in names]
    failures = 0
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)])
        print(f"=== {script.stem}: exit {code} after {time.perf_counter() - start:.0f} s ===")
        failures += code != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
