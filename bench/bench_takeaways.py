"""Share of a report's time spent writing its take-away files (issue 14 speed).

Runs the demo's cohorts with one worker (``run_reports(workers=1)``, kept kernel), with the
template's ``takeaways`` parameter true (figures/ as SVG + 300 dpi PNG, tables/ as CSV,
Markdown, LaTeX; the SVG displayed) and false (each figure displayed once, inline), rounds
alternated so both see the same machine load. Prints the median seconds per report of the
cohorts after the first of each run (the first one starts the kernel) and the difference.

Usage::

    .venv/bin/python bench/bench_takeaways.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from analysis import paths, reports


def per_report(processed: Path, out: Path, *, takeaways: bool) -> list[float]:
    """Seconds per report (``duration_s``) of every cohort but the first."""
    shutil.rmtree(out, ignore_errors=True)
    run = reports.run_reports(processed, out, workers=1, params={"takeaways": takeaways})
    if run.failed:
        raise SystemExit(run.one_line())
    return [float(o.duration_s) for o in run.outcomes[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    processed = paths.processed_dir("demo")
    root = Path(tempfile.mkdtemp(prefix="bench-takeaways-"))
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for _ in range(args.rounds):
            for flag in (True, False):
                times[flag] += per_report(processed, root / str(flag), takeaways=flag)
        with_files, without = (statistics.median(times[f]) for f in (True, False))
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"takeaways=true : {with_files:.2f} s per report (median of "
              f"{len(times[True])}: {', '.join(f'{t:.2f}' for t in times[True])})")
        print(f"takeaways=false: {without:.2f} s per report (median of "
              f"{len(times[False])}: {', '.join(f'{t:.2f}' for t in times[False])})")
        print(f"take-away files: {with_files - without:+.2f} s per report = "
              f"{(with_files - without) / with_files:.0%} of a report")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
