"""Benchmark: build_panel against a DuckDB window-function baseline, in the same process.

Usage::

    .venv/bin/python bench/bench_exposures.py [--runners 5000] [--days 365] [--repeat 5]

Simulates N runners x D days of runs (about 40 % rest days, some double days, two shoes in
rotation, a start time per run as the cleaning step writes it) and one pain report per runner
and week, then times

* ``analysis.exposures.build_panel`` (daily calendar, every exposure column, the panel), and
* DuckDB building the same daily calendar from the runs and computing ``km_7d``,
  ``km_prev7d``, ``rest_days_7d`` and ``acwr_rolling`` with window functions,

alternately (``--repeat`` pairs), and prints runner-days per second of each (best run), the
speed ratio (best vs best, and the median of the pairs), the largest difference between the
two on the four shared columns, and the peak resident memory of the process after
``build_panel`` (before DuckDB is loaded). Targets (issue 4): ratio >= 1, peak < 4 GiB.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time

import numpy as np
import pandas as pd

from analysis.exposures import build_panel

START = pd.Timestamp("2025-01-06")


def simulate(n_runners: int, n_days: int, seed: int = 7) -> tuple[pd.DataFrame, ...]:
    """Runs, runners, pain and shoes tables in the canonical clean format."""
    rng = np.random.default_rng(seed)
    runner = np.repeat(np.arange(n_runners), n_days)
    day = np.tile(np.arange(n_days), n_runners)
    ran = rng.random(runner.size) > 0.4
    runner, day = runner[ran], day[ran]
    double = rng.random(runner.size) < 0.05
    runner = np.r_[runner, runner[double]]
    day = np.r_[day, day[double]]
    km = np.round(rng.gamma(3.0, 3.0, runner.size) + 1.0, 1)
    shoe = rng.integers(0, 2, runner.size)
    ids = np.char.add("r", np.arange(n_runners).astype(str))
    runs = pd.DataFrame({
        "runner_id": pd.array(ids[runner], dtype="str"),
        "date": (START + pd.to_timedelta(day, unit="D")).astype("datetime64[us]"),
        "distance_km": np.minimum(km, 99.0),
        "start_time": (START + pd.to_timedelta(day * 86400 + rng.integers(5 * 3600, 21 * 3600,
                                                                          runner.size),
                                               unit="s")).astype("datetime64[us]"),
        "shoe_id": pd.array(np.char.add(ids[runner], np.where(shoe == 0, "-a", "-b")),
                            dtype="str"),
    })
    runners = pd.DataFrame({
        "runner_id": pd.array(ids, dtype="str"),
        "cohort": pd.array(np.where(np.arange(n_runners) % 2 == 0, "road", "trail"),
                           dtype="str"),
        "follow_up_start": START,
        "follow_up_end": START + pd.Timedelta(days=n_days - 1),
    })
    weeks = np.arange(6, n_days, 7)
    pain = pd.DataFrame({
        "runner_id": pd.array(np.repeat(ids, weeks.size), dtype="str"),
        "date": (START + pd.to_timedelta(np.tile(weeks, n_runners), unit="D"))
        .astype("datetime64[us]"),
        "pain": rng.integers(0, 11, n_runners * weeks.size).astype(float),
    })
    shoes = pd.DataFrame({"shoe_id": pd.array(np.r_[np.char.add(ids, "-a"),
                                                    np.char.add(ids, "-b")], dtype="str"),
                          "runner_id": pd.array(np.r_[ids, ids], dtype="str"),
                          "start_km": np.r_[rng.uniform(0, 300, n_runners),
                                            np.zeros(n_runners)]})
    return runs, runners, pain, shoes


DUCKDB_SQL = """
WITH per_day AS (
    SELECT runner_id, CAST(date AS DATE) AS day, SUM(distance_km) AS km
    FROM runs GROUP BY ALL
), grid AS (
    SELECT r.runner_id, CAST(g.day AS DATE) AS day
    FROM runners r,
         generate_series(CAST(r.follow_up_start AS DATE), CAST(r.follow_up_end AS DATE),
                         INTERVAL 1 DAY) AS g(day)
), daily AS (
    SELECT g.runner_id, g.day, COALESCE(p.km, 0.0) AS km,
           ROW_NUMBER() OVER (PARTITION BY g.runner_id ORDER BY g.day) - 1 AS day_index
    FROM grid g LEFT JOIN per_day p USING (runner_id, day)
), windows AS (
    SELECT runner_id, day, day_index,
        SUM(km) OVER w7 AS s7,
        SUM(km) OVER wprev AS sprev,
        SUM(km) OVER w28 AS s28,
        SUM(CASE WHEN km = 0 THEN 1 ELSE 0 END) OVER w7 AS r7
    FROM daily
    WINDOW w7 AS (PARTITION BY runner_id ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW),
           wprev AS (PARTITION BY runner_id ORDER BY day
                     ROWS BETWEEN 13 PRECEDING AND 7 PRECEDING),
           w28 AS (PARTITION BY runner_id ORDER BY day
                   ROWS BETWEEN 27 PRECEDING AND CURRENT ROW)
)
SELECT runner_id, day,
    CASE WHEN day_index >= 6 THEN s7 END AS km_7d,
    CASE WHEN day_index >= 13 THEN sprev END AS km_prev7d,
    CASE WHEN day_index >= 6 THEN r7 END AS rest_days_7d,
    CASE WHEN day_index >= 27 AND s28 > 0 THEN s7 / (s28 / 4.0) END AS acwr_rolling
FROM windows
ORDER BY runner_id, day
"""


def duckdb_baseline(runs: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect()
    con.register("runs", runs)
    con.register("runners", runners)
    out = con.execute(DUCKDB_SQL).df()
    con.close()
    return out


def _timed(fn) -> tuple[float, float, object]:
    """Wall-clock time, CPU time (all threads of the process) and the result of ``fn()``."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - t0, time.process_time() - c0, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=5000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    runs, runners, pain, shoes = simulate(args.runners, args.days)
    runner_days = args.runners * args.days
    print(f"{args.runners} runners x {args.days} days = {runner_days:,} runner-days, "
          f"{len(runs):,} runs, {len(pain):,} pain reports; best of {args.repeat}")

    # interleaved, so that a change in machine load hits both sides alike
    ours_runs, duck_runs, peak_gib = [], [], 0.0
    built = duck = None
    for _ in range(args.repeat):
        built = duck = None  # free the previous results before timing again
        gc.collect()
        *timing, built = _timed(lambda: build_panel(runs, runners, pain, shoes))
        ours_runs.append(timing)
        if not duck_runs:  # before DuckDB is loaded: the panel's own peak
            peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB
        gc.collect()
        *timing, duck = _timed(lambda: duckdb_baseline(runs, runners))
        duck_runs.append(timing)
    t_ours, cpu_ours = min(ours_runs)
    t_duck, cpu_duck = min(duck_runs)
    paired = sorted(d[0] / o[0] for o, d in zip(ours_runs, duck_runs, strict=True))

    daily = built.daily  # type: ignore[attr-defined]
    daily = daily[daily["in_follow_up"]]  # DuckDB's calendar is follow-up only
    cols = ["km_7d", "km_prev7d", "rest_days_7d", "acwr_rolling"]
    ours = daily[cols].to_numpy(dtype=float)
    theirs = duck[cols].to_numpy(dtype=float)  # type: ignore[index]
    same_nan = bool((np.isnan(ours) == np.isnan(theirs)).all())
    diff = float(np.nanmax(np.abs(ours - theirs)))

    print(f"build_panel (all {len(daily.columns)} daily columns + panel): {t_ours:7.2f} s  "
          f"{runner_days / t_ours / 1e6:6.2f} M runner-days/s  (cpu {cpu_ours:.2f} s)")
    print(f"duckdb (calendar + 4 window features):       {t_duck:7.2f} s  "
          f"{runner_days / t_duck / 1e6:6.2f} M runner-days/s  (cpu {cpu_duck:.2f} s)")
    print(f"speed ratio build_panel / duckdb: {t_duck / t_ours:.2f}x best vs best, "
          f"{paired[len(paired) // 2]:.2f}x median of {len(paired)} interleaved pairs "
          f"(range {paired[0]:.2f}-{paired[-1]:.2f}; target >= 1)")
    print(f"shared columns: same NaN pattern {same_nan}, max |difference| {diff:.2e}")
    print(f"peak resident memory after build_panel: {peak_gib:.2f} GiB (target < 4)")
    return 0 if same_nan and diff < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
