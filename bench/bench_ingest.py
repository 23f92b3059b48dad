"""Benchmark: read + clean against pandas' pyarrow-engine CSV read, same run.

Usage (from the project root)::

    .venv/bin/python bench/bench_ingest.py [--raw /tmp/bb/raw] [--runners 1000] [--days 365]
                                           [--repeat 3]

With ``--raw`` it times that canonical folder (e.g. the 2,000 x 365 build benchmark's
``raw``, ``bench/bench_build.py``); otherwise it writes (to a temporary folder) a canonical
dataset of N runners x D days (about 40 % rest days, start times so the two-device rule has
work, 1 % of runs duplicated by a second device, 1 % with messy values) and a Lövdal-size
day-approach file (74 athletes, 42,772 rows, 73 columns, the size of the full public file).
For each folder it times, alternating, in the same run:

* whole processes: ``python -c`` running ``read_dataset`` + ``clean_tables`` (imports,
  every rule, conservation check, contracts) against ``python -c`` reading the same CSVs
  with ``pandas.read_csv(engine="pyarrow")`` (parsing and type inference only, no rules);
* in this process: ``read_dataset`` and ``clean_tables`` separately, and the same pandas
  read,

and prints the medians, the ratios (kneeload / pandas) and each child's peak resident
memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.clean import clean_tables
from analysis.ingest import lovdal, read_dataset

START = pd.Timestamp("2024-01-01")
LOVDAL_ATHLETES, LOVDAL_DAYS = 74, 578  # 74 x 578 = 42,772 rows, like the full day file


def write_canonical(folder: Path, n_runners: int, n_days: int, seed: int = 3) -> int:
    """Write runners/runs/pain CSVs; returns the number of records."""
    rng = np.random.default_rng(seed)
    runner = np.repeat(np.arange(n_runners), n_days)
    day = np.tile(np.arange(n_days), n_runners)
    ran = rng.random(runner.size) > 0.4
    runner, day = runner[ran], day[ran]
    km = np.round(rng.gamma(4.0, 2.5, runner.size), 2) + 1
    minutes = np.round(km * rng.uniform(4.5, 7.0, runner.size), 1)
    start = START + pd.to_timedelta(day, unit="D") + pd.to_timedelta(
        rng.integers(6 * 60, 20 * 60, runner.size), unit="min")
    runs = pd.DataFrame({"runner_id": [f"R{r:05d}" for r in runner],
                         "date": start.strftime("%Y-%m-%d %H:%M"),
                         "distance_km": km.astype(str), "duration_min": minutes.astype(str),
                         "activity_type": "run"})
    dup = runs.sample(frac=0.01, random_state=seed)
    dup = dup.assign(distance_km=(dup["distance_km"].astype(float) * 1.02).round(2).astype(str))
    messy = runs.sample(frac=0.01, random_state=seed + 1).assign(distance_km="abc")
    runs = pd.concat([runs, dup, messy], ignore_index=True)
    runs.to_csv(folder / "runs.csv", index=False)
    pd.DataFrame({"runner_id": [f"R{r:05d}" for r in range(n_runners)],
                  "cohort": [f"C{r % 3}" for r in range(n_runners)]}).to_csv(
        folder / "runners.csv", index=False)
    weeks = np.arange(0, n_days, 7)
    pain = pd.DataFrame({
        "runner_id": np.repeat([f"R{r:05d}" for r in range(n_runners)], weeks.size),
        "date": np.tile((START + pd.to_timedelta(weeks, unit="D")).strftime("%Y-%m-%d"),
                        n_runners),
        "pain": rng.integers(0, 11, n_runners * weeks.size)})
    pain.to_csv(folder / "pain.csv", index=False)
    return len(runs) + len(pain) + n_runners


def write_lovdal(folder: Path, seed: int = 5) -> int:
    """A day-approach file of the full file's shape; returns its data rows."""
    rng = np.random.default_rng(seed)
    n_feat = len(lovdal.FEATURES)
    series = np.round(rng.gamma(2.0, 5.0, (LOVDAL_ATHLETES, LOVDAL_DAYS + 6, n_feat)), 2)
    series[rng.random((LOVDAL_ATHLETES, LOVDAL_DAYS + 6)) < 0.3] = 0.0
    header = [f"{f}{s}" for s in lovdal.BLOCK_SUFFIXES for f in lovdal.FEATURES]
    rows = []
    for a in range(LOVDAL_ATHLETES):
        windows = np.lib.stride_tricks.sliding_window_view(series[a], 7, axis=0)
        flat = windows[:LOVDAL_DAYS].transpose(0, 2, 1).reshape(LOVDAL_DAYS, -1)
        block = pd.DataFrame(flat, columns=header)
        block["Athlete ID"] = a
        block["injury"] = (rng.random(LOVDAL_DAYS) < 0.013).astype(int)
        block["Date"] = np.arange(LOVDAL_DAYS)
        rows.append(block)
    frame = pd.concat(rows, ignore_index=True)
    frame.to_csv(folder / "day_approach_maskedID_timeseries.csv", index=False)
    return len(frame)


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


_CHILD_OURS = """
import json, resource, sys, time
from datetime import date
from analysis.clean import clean_tables
from analysis.ingest import read_dataset
t0 = time.perf_counter()
result = clean_tables(read_dataset(sys.argv[1]), today=date.fromisoformat(sys.argv[2]))
print(json.dumps({"work_s": time.perf_counter() - t0, "pandera": "pandera" in sys.modules,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
_CHILD_PANDAS = """
import json, resource, sys, time
from pathlib import Path
import pandas as pd
t0 = time.perf_counter()
frames = [pd.read_csv(p, engine="pyarrow") for p in sorted(Path(sys.argv[1]).glob("*.csv"))]
print(json.dumps({"work_s": time.perf_counter() - t0, "pandera": False,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def whole_process(code: str, folder: Path, today: date) -> dict:
    """Wall time of a fresh interpreter running ``code`` on ``folder``, and what it says."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(folder), today.isoformat()],
                         capture_output=True, text=True, check=True)
    return {"wall_s": time.perf_counter() - t0, **json.loads(out.stdout.splitlines()[-1])}


def bench_folder(label: str, folder: Path, today: date, repeat: int) -> None:
    """Print whole-process and in-process timings of one folder against pandas."""
    ours, base = [], []
    for _ in range(repeat):  # alternate, so load on a shared machine hits both alike
        ours.append(whole_process(_CHILD_OURS, folder, today))
        base.append(whole_process(_CHILD_PANDAS, folder, today))
    med = {k: float(np.median([r[k] for r in runs])) for runs, k in
           ((ours, "wall_s"), (ours, "work_s"), (ours, "peak_mib"))}
    b_wall = float(np.median([r["wall_s"] for r in base]))
    b_work = float(np.median([r["work_s"] for r in base]))
    raw = read_dataset(folder)
    result = clean_tables(raw, today=today)
    t_read = timed(lambda: read_dataset(folder), repeat)
    t_clean = timed(lambda: clean_tables(raw, today=today), repeat)
    t_pandas = timed(lambda: [pd.read_csv(p, engine="pyarrow")
                              for p in sorted(folder.glob("*.csv"))], repeat)
    n = sum(raw.files.values())
    by_reason: dict[str, int] = {}
    for entry in result.report["files"].values():
        for k, v in entry["by_reason"].items():
            by_reason[k] = by_reason.get(k, 0) + v
    print(f"{label}: {n:,} input records; not kept by reason: {by_reason}")
    print(f"  whole process: kneeload read+clean {med['wall_s']:.2f} s wall "
          f"({med['work_s']:.2f} s after imports, peak {med['peak_mib']:,.0f} MiB, pandera "
          f"imported: {ours[0]['pandera']}) vs pandas pyarrow read {b_wall:.2f} s wall "
          f"({b_work:.2f} s after imports): ratio {med['wall_s'] / b_wall:.2f}x wall, "
          f"{med['work_s'] / b_work:.2f}x after imports")
    print(f"  in process: read {t_read:.3f} s + clean {t_clean:.3f} s = "
          f"{t_read + t_clean:.3f} s vs pandas pyarrow read {t_pandas:.3f} s: ratio "
          f"{(t_read + t_clean) / t_pandas:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=None,
                        help="time this canonical folder instead of generated data")
    parser.add_argument("--runners", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.raw is not None:
        bench_folder(str(args.raw), args.raw, date(2100, 1, 1), args.repeat)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        canon, lov = Path(tmp) / "canonical", Path(tmp) / "lovdal"
        canon.mkdir()
        lov.mkdir()
        write_canonical(canon, args.runners, args.days)
        write_lovdal(lov)
        today = (START + pd.Timedelta(days=args.days + 1)).date()
        for label, folder in (("canonical", canon), ("lovdal", lov)):
            bench_folder(label, folder, today, args.repeat)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process {peak_mib:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
