"""Benchmark ``kneeload report``: 24 cohorts of the demo's size with 1 and 2 workers.

Prints seconds per cohort, the speed-up of 2 workers over 1, and the per-report overhead
beyond the analysis itself: the mean papermill report time (kernel start, execution, HTML)
minus the same notebook code run as a plain Python script in a fresh process (imports,
loading, model, figures rendered to PNG) for the same cohorts.

Usage::

    .venv/bin/python bench/bench_reports.py [--cohorts 24] [--keep DIR]

Takes about 10 minutes on 2 cores. The numbers go into docs/reports.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from analysis import reports
from analysis.pipeline import build
from analysis.simulate import simulate_dataset

DEMO = {"runners_per_cohort": 20, "weeks": 26, "cohorts": 3}  # the bundled demo's size
TARGET_OVERHEAD_S = 3.0  # issue 6
OVERHEAD_SAMPLE = 3  # cohorts whose analysis is also timed as a plain script

#: The notebook's code as a plain script: parameters, every code cell, figures to PNG.
SCRIPT = """
import io, sys, time
start = time.perf_counter()
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import IPython.display
IPython.display.display = lambda *a, **k: None
source = open(sys.argv[1]).read()
params = dict(dataset=sys.argv[2], cohort=sys.argv[3], summary_path="")
namespace = {}
exec(compile(source, sys.argv[1], "exec"), namespace)  # defaults first, as papermill does
namespace.update(params)
exec(compile(source.split("# %%", 2)[2], sys.argv[1], "exec"), namespace)
for number in plt.get_fignums():
    plt.figure(number).savefig(io.BytesIO(), format="png")
print(time.perf_counter() - start)
"""


def demo_sized_cohorts(raw: Path, *, n_cohorts: int) -> Path:
    """Write ``n_cohorts`` cohorts of the demo's size (20 runners x 26 weeks) as raw CSVs."""
    per_draw = DEMO["cohorts"]
    tables: dict[str, list[pd.DataFrame]] = {"runners": [], "runs": [], "pain": [], "shoes": []}
    for draw in range((n_cohorts + per_draw - 1) // per_draw):
        data = simulate_dataset(**DEMO, seed=1000 + draw)
        for name in tables:
            table = getattr(data, name)
            table = table.assign(runner_id=f"D{draw:02d}-" + table["runner_id"])
            if "shoe_id" in table.columns:
                table = table.assign(shoe_id=table["shoe_id"].where(
                    table["shoe_id"].isna(), f"D{draw:02d}-" + table["shoe_id"]))
            if "cohort" in table.columns:
                table = table.assign(cohort=table["cohort"] + f"-{draw:02d}")
            tables[name].append(table)
    combined = {name: pd.concat(parts, ignore_index=True) for name, parts in tables.items()}
    keep = combined["runners"]["cohort"].drop_duplicates().iloc[:n_cohorts]
    ids = combined["runners"].loc[combined["runners"]["cohort"].isin(keep), "runner_id"]
    raw.mkdir(parents=True, exist_ok=True)
    for name, table in combined.items():
        table = table[table["runner_id"].isin(ids)]
        for column in table.columns:
            if pd.api.types.is_datetime64_any_dtype(table[column]):
                table = table.assign(**{column: table[column].dt.strftime("%Y-%m-%d")})
        table.to_csv(raw / f"{name}.csv", index=False, lineterminator="\n")
    return raw


def timed_run(processed: Path, out: Path, *, workers: int) -> tuple[float, reports.ReportRun]:
    start = time.perf_counter()
    run = reports.run_reports(processed, out, workers=workers)
    return time.perf_counter() - start, run


def script_seconds(processed: Path, cohort: str) -> float:
    """Wall time of the notebook's code as a plain script in a fresh interpreter."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(reports.paths.notebooks_dir() / "cohort_report.py"),
         str(processed), cohort], capture_output=True, text=True, check=True,
        cwd=reports.paths.notebooks_dir())
    inner = float(done.stdout.strip().splitlines()[-1])
    return max(time.perf_counter() - start, inner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", type=int, default=24)
    parser.add_argument("--keep", type=Path, help="keep the data and reports here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-reports-")) if not args.keep else args.keep
    root.mkdir(parents=True, exist_ok=True)
    try:
        raw = demo_sized_cohorts(root / "raw", n_cohorts=args.cohorts)
        summary = build(raw, root / "processed")
        cohorts = sorted(summary.counts["cohorts"])
        print(f"{len(cohorts)} cohorts of {DEMO['runners_per_cohort']} runners x "
              f"{DEMO['weeks']} weeks; {summary.counts['panel_rows']} pain reports; "
              f"{os.cpu_count()} CPUs")

        seconds: dict[int, float] = {}
        durations: dict[int, list[float]] = {}
        for workers in (1, 2):
            elapsed, run = timed_run(root / "processed", root / f"reports-{workers}",
                                     workers=workers)
            assert not run.failed, run.one_line()
            seconds[workers] = elapsed
            durations[workers] = [o.duration_s for o in run.outcomes]
            print(f"--workers {workers}: {elapsed:.1f} s for {len(cohorts)} cohorts = "
                  f"{elapsed / len(cohorts):.2f} s per cohort "
                  f"(each report {min(durations[workers]):.1f}-{max(durations[workers]):.1f} s)")
        print(f"speed-up of 2 workers over 1: {seconds[1] / seconds[2]:.2f}x")

        sample = cohorts[:OVERHEAD_SAMPLE]
        manifest = json.loads((root / "reports-1" / reports.MANIFEST_NAME).read_text())
        report_s = [manifest["cohorts"][c]["duration_s"] for c in sample]
        script_s = [script_seconds(root / "processed", c) for c in sample]
        html_s = []
        for cohort in sample:
            start = time.perf_counter()
            reports.render_html(root / "reports-1" / reports.safe_name(cohort) / "report.ipynb")
            html_s.append(time.perf_counter() - start)
        mean = lambda values: sum(values) / len(values)  # noqa: E731
        overhead = mean(report_s) - mean(script_s)
        print(f"per report (--workers 1, {len(sample)} cohorts): papermill + kernel + HTML "
              f"{mean(report_s):.2f} s; the same code as a plain script {mean(script_s):.2f} s; "
              f"HTML export alone {mean(html_s):.2f} s")
        verdict = "within" if overhead < TARGET_OVERHEAD_S else "OVER"
        print(f"overhead beyond the analysis: {overhead:.2f} s per report "
              f"({verdict} the {TARGET_OVERHEAD_S:.0f} s target)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
