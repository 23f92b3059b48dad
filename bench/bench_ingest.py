"""Benchmark: read_dataset + clean_tables against a bare ``pandas.read_csv``, same process.

Usage (from the project root)::

    .venv/bin/python bench/bench_ingest.py [--runners 1000] [--days 365] [--repeat 3]

Writes (to a temporary folder) a canonical dataset of N runners x D days (about 40 % rest
days, start times so the two-device rule has work, 1 % of runs duplicated by a second
device, 1 % with messy values) and a Lövdal-size day-approach file (74 athletes, 42,772
rows, 73 columns, the size of the full public file). Times

* kneeload: ``read_dataset`` + ``clean_tables`` (every rule, conservation check, schemas),
* baseline: ``pandas.read_csv(dtype=str)`` of the same files (parsing only, no rules),

and prints records per second of each, their ratio (kneeload time / baseline time) and
the peak resident memory. The ratio is the price of the audit; it is reported, not targeted.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        canon, lov = Path(tmp) / "canonical", Path(tmp) / "lovdal"
        canon.mkdir()
        lov.mkdir()
        n_canon = write_canonical(canon, args.runners, args.days)
        n_lov = write_lovdal(lov)
        today = (START + pd.Timedelta(days=args.days + 1)).date()
        for label, folder, n in (("canonical", canon, n_canon), ("lovdal", lov, n_lov)):
            result = clean_tables(read_dataset(folder), today=today)
            ours = timed(lambda f=folder: clean_tables(read_dataset(f), today=today),
                         args.repeat)
            base = timed(lambda f=folder: [pd.read_csv(p, dtype=str)
                                           for p in sorted(f.glob("*.csv"))], args.repeat)
            by_reason: dict[str, int] = {}
            for entry in result.report["files"].values():
                for k, v in entry["by_reason"].items():
                    by_reason[k] = by_reason.get(k, 0) + v
            print(f"{label}: {n:,} input records/rows; kneeload {ours:.2f} s "
                  f"({n / ours:,.0f}/s), pandas.read_csv {base:.2f} s ({n / base:,.0f}/s), "
                  f"ratio {ours / base:.1f}x; not kept by reason: {by_reason}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak_mib:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
