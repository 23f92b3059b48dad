"""Benchmark: the whole ``kneeload build`` process against a DuckDB process, same run.

Usage (from the project root)::

    .venv/bin/python bench/bench_build.py [--runners 2000] [--days 365] [--repeat 3]
    .venv/bin/python bench/bench_build.py --big        # also the 200 MB / 2 million-row CSV
    .venv/bin/python bench/bench_build.py --big --big-repeat 3   # ... built three times

Writes (to a temporary folder) a canonical dataset of N runners x D days: about 60 % of the
days have a run (with a start time, a duration and one of two shoes), about 90 % a pain
report (2,000 x 365: about 438,000 runs and 660,000 pain reports, the size of issue 11's
measurement), runners with a follow-up window, and a shoes table. Then times, as separate
whole processes started the same way, ``--repeat`` rounds of three:

* ``kneeload build RAW --out OUT`` into a folder that does not exist (removed untimed
  first; read, clean with every rule and the conservation check, the exposure panel,
  pandera contracts, Parquet and audit files),
* a DuckDB process reading the same CSVs and computing the daily calendar and ``km_7d``,
  ``km_prev7d``, ``rest_days_7d`` and ``acwr_rolling`` with window functions, joined to the
  pain reports (the baseline of issue 11), and
* the same build command again (a rebuild: it also swaps the new folder in and removes the
  previous one's files, about 200 MB at the default size),

the rebuild and DuckDB in turn first (odd and even rounds), so neither always follows the
other. It prints the medians and bests of the wall times, kneeload's peak resident memory
over both builds and DuckDB's of the last round (``wait4``), the median ratio of the rounds
(fresh build / DuckDB and rebuild / DuckDB, each with the same round's DuckDB), the
best-vs-best ratio and the median of each round's rebuild minus fresh build. A round takes
about as long as three builds (at 2,000 x 365: 8-10 s on a 2-core VM). Targets (issue 11):
ratio <= 2 (stretch 1.3), peak under 1 GiB; ``--big``: a 200 MB runs CSV of about 2
million rows builds in under 15 s.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2025-01-06")
KNEELOAD = Path(sys.executable).with_name("kneeload")
RUN_FRACTION, PAIN_FRACTION = 0.6, 0.904  # of runner-days
TARGET_RATIO, STRETCH_RATIO = 2.0, 1.3
PEAK_LIMIT_MIB = 1024.0
BIG_LIMIT_S = 15.0
#: Big-file runners (x 365 days x 0.6: about 2 million runs, issue 11's "2 million-row CSV").
BIG_RUNNERS = 9000
#: Devices and free-text notes of the big file's runs (``write_dataset(wide=True)``).
DEVICES = ("Garmin Forerunner 255", "Garmin Fenix 7", "Apple Watch Series 9",
           "Coros Pace 3", "Polar Vantage V2", "Suunto Race")
NOTES = ("", "easy run with the club", "intervals 6x800 m on the track",
         "long run along the river, felt heavy", "tempo run, windy", "recovery jog",
         "hill repeats, left knee a bit sore", "treadmill at the gym", "parkrun with a friend")

DUCKDB_SCRIPT = r"""
import sys, duckdb
raw = sys.argv[1]
con = duckdb.connect()
con.execute(f'''
create table runs as select * from read_csv('{raw}/runs.csv', header=true);
create table runners as select * from read_csv('{raw}/runners.csv', header=true);
create table pain as select * from read_csv('{raw}/pain.csv', header=true);
create table daily as
with days as (
  select runner_id, unnest(generate_series(follow_up_start::date, follow_up_end::date,
                                           interval 1 day))::date as day
  from runners),
km as (select runner_id, date::date as day, sum(distance_km) as km from runs group by all)
select d.runner_id, d.day, coalesce(k.km, 0) as km
from days d left join km k using (runner_id, day);
create table feat as
select runner_id, day,
  case when count(*) over w7 = 7 then sum(km) over w7 end as km_7d,
  case when count(*) over wp = 7 then sum(km) over wp end as km_prev7d,
  case when count(*) over w7 = 7 then sum(case when km = 0 then 1 else 0 end) over w7 end
    as rest_days_7d,
  case when count(*) over w28 = 28 and sum(km) over w28 > 0
    then sum(km) over w7 / (sum(km) over w28 / 4.0) end as acwr_rolling
from daily
window w7 as (partition by runner_id order by day rows between 6 preceding and current row),
       wp as (partition by runner_id order by day rows between 13 preceding and 7 preceding),
       w28 as (partition by runner_id order by day rows between 27 preceding and current row);
create table panel as
select p.runner_id, p.date::date as date, p.pain, f.km_7d, f.km_prev7d, f.rest_days_7d,
       f.acwr_rolling
from pain p left join feat f
  on f.runner_id = p.runner_id and f.day = p.date::date - 7;
''')
n = con.execute('select count(*), count(km_7d) from panel').fetchone()
print(f'duckdb panel rows {n[0]}, with km_7d {n[1]}')
"""


def write_dataset(folder: Path, n_runners: int, n_days: int, seed: int = 11, *,
                  wide: bool = False) -> dict[str, int]:
    """Write runners/runs/pain/shoes CSVs; returns the records per table.

    ``wide`` adds the columns a real watch export carries to every run: session mean and
    maximum heart rate (``avg_hr_bpm``, ``max_hr_bpm``, so the build computes TRIMP), an
    RPE, the recording device and a free-text note (:data:`DEVICES`, :data:`NOTES`): about
    100 bytes a run, the issue's 200 MB for 2 million runs.
    """
    rng = np.random.default_rng(seed)
    ids = np.char.add("R", np.char.zfill(np.arange(n_runners).astype(str), 5))
    runner = np.repeat(np.arange(n_runners), n_days)
    day = np.tile(np.arange(n_days), n_runners)
    ran = rng.random(runner.size) < RUN_FRACTION
    r_run, d_run = runner[ran], day[ran]
    km = np.round(rng.gamma(4.0, 2.5, r_run.size) + 1.0, 2)
    minutes = np.round(km * rng.uniform(4.5, 7.0, r_run.size), 1)
    start = START + pd.to_timedelta(d_run, unit="D") + pd.to_timedelta(
        rng.integers(6 * 60, 20 * 60, r_run.size), unit="min")
    shoe = np.char.add(ids[r_run], np.where(rng.random(r_run.size) < 0.5, "-a", "-b"))
    runs = {"runner_id": ids[r_run], "date": start.strftime("%Y-%m-%d %H:%M"),
            "distance_km": km, "duration_min": minutes, "shoe_id": shoe,
            "activity_type": "run"}
    if wide:
        avg_hr = rng.integers(118, 176, r_run.size)
        runs |= {"avg_hr_bpm": avg_hr, "max_hr_bpm": avg_hr + rng.integers(8, 30, r_run.size),
                 "rpe": rng.integers(1, 11, r_run.size),
                 "device": np.array(DEVICES)[rng.integers(0, len(DEVICES), r_run.size)],
                 "notes": np.array(NOTES)[rng.integers(0, len(NOTES), r_run.size)]}
    pd.DataFrame(runs).to_csv(folder / "runs.csv", index=False)
    end = (START + pd.Timedelta(days=n_days - 1)).strftime("%Y-%m-%d")
    pd.DataFrame({"runner_id": ids, "cohort": np.char.add("C", (np.arange(n_runners) % 3)
                                                          .astype(str)),
                  "sex": np.where(np.arange(n_runners) % 2, "F", "M"),
                  "age": 20 + np.arange(n_runners) % 40,
                  "follow_up_start": START.strftime("%Y-%m-%d"),
                  "follow_up_end": end}).to_csv(folder / "runners.csv", index=False)
    reported = rng.random(runner.size) < PAIN_FRACTION
    pd.DataFrame({"runner_id": ids[runner[reported]],
                  "date": (START + pd.to_timedelta(day[reported], unit="D"))
                  .strftime("%Y-%m-%d"),
                  "pain": rng.integers(0, 11, int(reported.sum()))}).to_csv(
        folder / "pain.csv", index=False)
    pd.DataFrame({"shoe_id": np.r_[np.char.add(ids, "-a"), np.char.add(ids, "-b")],
                  "runner_id": np.r_[ids, ids], "start_km": 0.0}).to_csv(
        folder / "shoes.csv", index=False)
    return {"runs": int(ran.sum()), "pain": int(reported.sum()), "runners": n_runners}


#: CPU seconds (user + system) of the last :func:`run_process` child (``wait4``).
LAST_CPU_S: list[float] = [0.0]


def run_process(args: list[str]) -> tuple[float, float, str]:
    """Wall time (s), peak resident memory (MiB) and stdout+stderr of one child process;
    its CPU time (user + system, s) in :data:`LAST_CPU_S`.

    Written data is flushed to disk first (``os.sync``, not timed), so no process is timed
    while the kernel still writes back the generated CSVs or the previous process's
    output on one of the two cores.
    """
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    LAST_CPU_S[0] = usage.ru_utime + usage.ru_stime
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out}")
    return wall, usage.ru_maxrss / 1024, out


def compare(raw: Path, out: Path, repeat: int
            ) -> tuple[list[float], list[float], list[float], float]:
    """``repeat`` rounds of: a fresh kneeload build (``out`` removed first, untimed), then
    DuckDB and a rebuild (the same command again: it replaces the folder the fresh build
    made and removes the old one's files), in turn first. Returns the fresh, DuckDB and
    rebuild times (index i: round i) and the peak of the builds."""
    ours, base, again, peaks, cpu = [], [], [], [], []
    command = [str(KNEELOAD), "build", str(raw), "--out", str(out)]
    duckdb = [sys.executable, "-c", DUCKDB_SCRIPT, str(raw)]

    def rebuild() -> None:
        wall_r, rss_r, _ = run_process(command)
        again.append(wall_r)
        peaks.append(rss_r)

    for round_ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        wall, rss, text = run_process(command)
        ours.append(wall)
        cpu.append(LAST_CPU_S[0])
        peaks.append(rss)
        if round_ % 2:  # odd rounds: the rebuild before DuckDB
            rebuild()
        wall_b, rss_b, text_b = run_process(duckdb)
        base.append(wall_b)
        if not round_ % 2:
            rebuild()
    print(f"  kneeload: {text.strip().splitlines()[0][:160]}")
    # CPU / wall above 1: the build's threads used the second core
    print(f"  kneeload CPU {np.median(cpu):.2f} s median (CPU / wall "
          f"{np.median(np.array(cpu) / np.array(ours)):.2f})")
    print(f"  duckdb:   {text_b.strip()} (peak {rss_b:,.0f} MiB)")
    return ours, base, again, max(peaks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=2000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big", action="store_true",
                        help="also build the 200 MB / 2 million-row runs CSV "
                        "(heart rate, RPE, device and notes on every run)")
    parser.add_argument("--big-repeat", type=int, default=1,
                        help="builds of the big CSV, each a fresh process into an empty "
                        "folder (the median is compared with the target)")
    args = parser.parse_args(argv)
    # the package's bytecode up to date (untimed), as an installed package has it (make
    # setup compiles it): with PYTHONDONTWRITEBYTECODE set, an edited source would
    # otherwise be compiled again in every timed process
    package = importlib.util.find_spec("analysis")
    for folder in (package.submodule_search_locations or []) if package else []:
        compileall.compile_dir(folder, quiet=1, invalidation_mode=py_compile
                               .PycInvalidationMode.CHECKED_HASH)
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "processed"
        raw.mkdir()
        n = write_dataset(raw, args.runners, args.days)
        size = sum(p.stat().st_size for p in raw.glob("*.csv")) / 2**20
        print(f"{args.runners} runners x {args.days} days: {n['runs']:,} runs, "
              f"{n['pain']:,} pain reports, {size:.0f} MB of CSV")
        ours, base, again, peak = compare(raw, out, args.repeat)
        ratio = float(np.median(np.array(ours) / np.array(base)))
        best = min(ours) / min(base)
        print(f"kneeload build into a new folder {np.median(ours):.2f} s (best "
              f"{min(ours):.2f}), duckdb {np.median(base):.2f} s (best {min(base):.2f}); "
              f"ratio {ratio:.2f}x median of rounds, {best:.2f}x best vs best (target <= "
              f"{TARGET_RATIO}x, stretch {STRETCH_RATIO}x); kneeload peak of both builds "
              f"{peak:,.0f} MiB (target < {PEAK_LIMIT_MIB:,.0f})")
        rebuild = float(np.median(np.array(again) / np.array(base)))
        extra = float(np.median(np.array(again) - np.array(ours)))
        print(f"rebuild (the same command again: replaces the folder, removes the old "
              f"one's files) {np.median(again):.2f} s (best {min(again):.2f}); ratio "
              f"{rebuild:.2f}x median of rounds, {min(again) / min(base):.2f}x best vs best; "
              f"rebuild minus fresh build {extra:+.2f} s median of rounds")
        if args.big:
            big_raw, big_out = Path(tmp) / "big", Path(tmp) / "big_processed"
            big_raw.mkdir()
            nb = write_dataset(big_raw, BIG_RUNNERS, 365, seed=12, wide=True)
            runs_mb = (big_raw / "runs.csv").stat().st_size / 1e6
            walls, peaks = [], []
            for _ in range(max(args.big_repeat, 1)):
                shutil.rmtree(big_out, ignore_errors=True)
                wall, rss, _ = run_process([str(KNEELOAD), "build", str(big_raw), "--out",
                                            str(big_out)])
                walls.append(wall)
                peaks.append(rss)
            each = ", ".join(f"{w:.1f}" for w in walls)
            print(f"big: runs.csv {runs_mb:.0f} MB, {nb['runs']:,} runs, {nb['pain']:,} "
                  f"pain reports: kneeload build {np.median(walls):.1f} s median ({each}; "
                  f"target < {BIG_LIMIT_S:.0f}), peak {max(peaks):,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
