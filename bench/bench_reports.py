"""Benchmark ``kneeload report``: 24 cohorts of the demo's size with 1 and 2 workers.

Prints seconds per cohort, the speed-up of 2 workers over 1, and the per-report overhead
beyond the analysis itself: the median papermill report time (kernel start, execution, HTML)
minus the same notebook code run as a plain Python script in a fresh process (imports,
loading, model, figures rendered to PNG) for the same cohorts.

Usage::

    .venv/bin/python bench/bench_reports.py [--cohorts 24] [--keep DIR]

Takes about 10 minutes on 2 cores. The numbers go into docs/reports.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from analysis import paths, reports
from analysis.pipeline import build
from analysis.simulate import simulate_dataset

DEMO = {"runners_per_cohort": 20, "weeks": 26, "cohorts": 3}  # the bundled demo's size
TARGET_OVERHEAD_S = 3.0  # issue 6
OVERHEAD_SAMPLE = 5  # cohorts whose analysis is also timed as a plain script

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
cells = source.split("# %%")  # cells[0]: jupytext header, cells[1]: parameters cell
namespace = {}
exec(compile(cells[1].split("\\n", 1)[1], sys.argv[1], "exec"), namespace)  # defaults
namespace.update(params)  # then the injected values, as papermill does
exec(compile("# %%".join(cells[2:]), sys.argv[1], "exec"), namespace)
for number in plt.get_fignums():
    plt.figure(number).savefig(io.BytesIO(), format="png", bbox_inches="tight")
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


def timed_run(processed: Path, out: Path, *, workers: int, cohorts: list[str] | None = None
              ) -> tuple[float, reports.ReportRun]:
    start = time.perf_counter()
    run = reports.run_reports(processed, out, workers=workers, cohorts=cohorts)
    return time.perf_counter() - start, run


def script_seconds(processed: Path, cohort: str) -> float:
    """Wall time of the notebook's code as a plain script in a fresh interpreter."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(paths.notebooks_dir() / "cohort_report.py"),
         str(processed), cohort], capture_output=True, text=True, check=True,
        cwd=paths.notebooks_dir())
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

        # overhead: each sample cohort as a one-cohort report and as a plain script, back
        # to back, so both see the same machine load (others may share the CPUs)
        pairs = []
        for number, cohort in enumerate(cohorts[:OVERHEAD_SAMPLE]):
            script_first = number % 2 == 1
            script = script_seconds(root / "processed", cohort) if script_first else None
            _, run = timed_run(root / "processed", root / f"single-{number}", workers=1,
                               cohorts=[cohort])
            report = run.outcomes[0].duration_s
            script = script if script_first else script_seconds(root / "processed", cohort)
            start = time.perf_counter()
            reports.render_html(root / f"single-{number}" / reports.safe_name(cohort)
                                / "report.ipynb")
            pairs.append((report, script, time.perf_counter() - start))
        report_s, script_s, html_s = (statistics.median(v) for v in zip(*pairs, strict=True))
        overhead = statistics.median(r - s for r, s, _ in pairs)
        print(f"per report (median of {len(pairs)} cohorts): papermill + kernel + HTML "
              f"{report_s:.2f} s; the same code as a plain script {script_s:.2f} s; "
              f"HTML export alone {html_s:.2f} s")
        verdict = "within" if overhead < TARGET_OVERHEAD_S else "OVER"
        print(f"overhead beyond the analysis: {overhead:.2f} s per report "
              f"({verdict} the {TARGET_OVERHEAD_S:.0f} s target); load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
