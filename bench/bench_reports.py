"""Benchmark ``kneeload report``: seconds per report and 100 demo-size cohorts (issue 14).

Prints, in one run on this machine:

(a) seconds per report with one worker (``run_reports(workers=1)`` on ``--sample`` cohorts:
    papermill on the worker's kept kernel, HTML included) against the same notebook code run
    as a plain script in one process for the same cohorts (imports paid once, as a kept
    kernel pays them once; the same take-away files written, so every figure is drawn as
    in the report), and their ratio; target <= 4 s per report. The cold script time (a
    fresh interpreter for one cohort, imports included) is printed too, and where a report's
    seconds go: its cells (papermill's per-cell durations in the saved notebook), papermill
    around them, and the rest (kernel reset, HTML export, moves into place, manifest).
(b) wall time of all ``--cohorts`` cohorts (default 100, demo size: 20 runners x 26 weeks)
    with two workers, pooled model and index included; target <= 3.5 minutes on 2 cores.

Usage::

    .venv/bin/python bench/bench_reports.py [--cohorts 100] [--sample 8] [--keep DIR]

Takes about 5 minutes on 2 cores. The numbers go into docs/reports.md.
"""

from __future__ import annotations

import argparse
import json
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
TARGET_PER_REPORT_S = 4.0  # issue 14, one worker
TARGET_100_COHORTS_S = 210.0  # issue 14: 3.5 minutes, two workers on 2 cores

#: The notebook's code as a plain script, for each cohort in turn in one process: the
#: parameters cell, every code cell, the take-away files (figures as SVG + 300 dpi PNG,
#: tables) written to a folder of its own as the report writes them (``summary_path`` in
#: it: without one the notebook writes no file and the figures it closes are never drawn,
#: which is what this script measured before: 1.95 s "warm" had no figure in it); prints
#: one wall time per cohort.
SCRIPT = """
import io, os, sys, time
start = time.perf_counter()
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import IPython.display
IPython.display.display = lambda *a, **k: None
source = open(sys.argv[1]).read()
cells = source.split("# %%")  # cells[0]: jupytext header, cells[1]: parameters cell
for cohort in sys.argv[4:]:
    namespace = {}
    exec(compile(cells[1].split("\\n", 1)[1], sys.argv[1], "exec"), namespace)  # defaults
    folder = os.path.join(sys.argv[3], cohort)
    os.makedirs(folder, exist_ok=True)
    namespace.update(dataset=sys.argv[2], cohort=cohort,  # as papermill
                     summary_path=os.path.join(folder, "summary.json"))
    exec(compile("# %%".join(cells[2:]), sys.argv[1], "exec"), namespace)
    for number in plt.get_fignums():
        plt.figure(number).savefig(io.BytesIO(), format="png", bbox_inches="tight")
    plt.close("all")
    print(time.perf_counter() - start, flush=True)
    start = time.perf_counter()
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


def script_seconds(processed: Path, cohorts: list[str], out: Path) -> list[float]:
    """Wall time per cohort of the notebook's code as a plain script, all cohorts in one
    fresh interpreter (the first one includes the imports); take-away files under ``out``."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(paths.notebooks_dir() / "cohort_report.py"),
         str(processed), str(out), *cohorts], capture_output=True, text=True, check=True,
        cwd=paths.notebooks_dir())
    return [float(line) for line in done.stdout.split()]


def report_split(out: Path, outcome: reports.CohortOutcome) -> tuple[float, float, float]:
    """Seconds of one report in its cells, in papermill around them, and the rest of its
    ``duration_s`` (reset, HTML export, moves, manifest), from the saved notebook's papermill
    metadata (``duration`` of the run and of every cell)."""
    notebook = json.loads((out / reports.safe_name(outcome.cohort) / "report.ipynb")
                          .read_text(encoding="utf-8"))
    cells = sum(c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0
                for c in notebook["cells"])
    total = float(notebook["metadata"]["papermill"]["duration"])
    return cells, total - cells, float(outcome.duration_s) - total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", type=int, default=100)
    parser.add_argument("--sample", type=int, default=8, help="cohorts timed one by one")
    parser.add_argument("--keep", type=Path, help="keep the data and reports here")
    args = parser.parse_args()
    # as the kneeload report command does (its process then reads the template with papermill)
    from analysis.reports.execute import block_unused_slow_modules

    block_unused_slow_modules()
    root = Path(tempfile.mkdtemp(prefix="bench-reports-")) if not args.keep else args.keep
    root.mkdir(parents=True, exist_ok=True)
    try:
        raw = demo_sized_cohorts(root / "raw", n_cohorts=args.cohorts)
        summary = build(raw, root / "processed")
        cohorts = sorted(summary.counts["cohorts"])
        print(f"{len(cohorts)} cohorts of {DEMO['runners_per_cohort']} runners x "
              f"{DEMO['weeks']} weeks; {summary.counts['panel_rows']} pain reports; "
              f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")

        # (a) one worker, sample cohorts, against the plain script on the same cohorts,
        # script and report runs alternated so both see the same machine load
        sample = cohorts[:args.sample]
        half = len(sample) // 2
        script = script_seconds(root / "processed", sample[:half], root / "script")
        elapsed, run = timed_run(root / "processed", root / "one-worker", workers=1,
                                 cohorts=sample)
        if run.failed:
            raise SystemExit(run.one_line())
        script += script_seconds(root / "processed", sample[half:], root / "script")
        per_report = elapsed / len(sample)
        cold = statistics.median([script[0], script[half]])
        warm = statistics.median(script[1:half] + script[half + 1:])
        each = [o.duration_s for o in run.outcomes]
        print(f"(a) one worker: {elapsed:.1f} s for {len(sample)} reports = {per_report:.2f} s "
              f"per report (each {min(each):.1f}-{max(each):.1f} s; the first starts the "
              f"kernel; index and pooled model included)")
        print(f"    plain script, same code and cohorts: {warm:.2f} s per cohort with imports "
              f"warm, {cold:.2f} s for a fresh interpreter's first cohort")
        split = [report_split(root / "one-worker", o) for o in run.outcomes[1:]]
        cells, papermill, rest = (statistics.median(part) for part in zip(*split, strict=True))
        print(f"    after the first, median per report: cells {cells:.2f} s, papermill around "
              f"them {papermill:.2f} s, rest (reset, HTML, files) {rest:.2f} s")
        steady = statistics.median(each[1:])  # a report once the worker's kernel is up
        print(f"    ratio report / warm script {per_report / warm:.2f}; report / cold script "
              f"{per_report / cold:.2f}")
        for what, seconds in (("all in, kernel start and index included", per_report),
                              ("each report after the first (median)", steady)):
            verdict = "within" if seconds <= TARGET_PER_REPORT_S else "OVER"
            print(f"    per report, {what}: {seconds:.2f} s; {verdict} the "
                  f"{TARGET_PER_REPORT_S:.0f} s target")

        # (b) every cohort, two workers
        elapsed, run = timed_run(root / "processed", root / "two-workers", workers=2)
        if run.failed:
            raise SystemExit(run.one_line())
        verdict = "within" if elapsed <= TARGET_100_COHORTS_S else "OVER"
        print(f"(b) {len(cohorts)} cohorts, two workers: {elapsed:.0f} s = "
              f"{elapsed / 60:.2f} min ({elapsed / len(cohorts):.2f} s per cohort; {verdict} "
              f"the {TARGET_100_COHORTS_S / 60:.1f} min target); load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
