"""Benchmark: ``analysis.episodes.episodes`` and ``at_risk`` at the build's 2,000 x 365 size.

Usage (from the project root)::

    .venv/bin/python bench/bench_episodes.py [--runners 2000] [--days 365] [--repeat 5]

Makes, in memory, the tables the build hands to :func:`analysis.episodes.episodes`: a daily
log of N runners x D days (a 42-day lead-in included, 60 % of days with a run) and a panel
with a pain report on about 90 % of follow-up days (bench_build.py's shares: 2,000 x 365
gives about 660,000 reports), pain from a two-state Markov chain (episodes of a few weeks).
Prints the best and median wall and CPU time of each function over ``--repeat`` calls. Target
(issue 15): ``episodes`` adds < 0.15 s to the build.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from analysis.defaults import DEFAULT_PAIN_THRESHOLD
from analysis.episodes import at_risk, episodes

START = pd.Timestamp("2025-01-06")
LEAD_IN = 42
RUN_FRACTION, REPORT_FRACTION = 0.6, 0.904
P_ONSET, P_RECOVER = 0.02, 0.08  # daily transition probabilities of the pain chain
TARGET_S = 0.15


def tables(n_runners: int, n_days: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(panel, daily) of ``n_runners`` x ``n_days`` follow-up days."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"R{i:05d}" for i in range(n_runners)])
    total = n_days + LEAD_IN
    code = np.repeat(np.arange(n_runners), total)
    day_index = np.tile(np.arange(-LEAD_IN, n_days), n_runners)
    km = np.where(rng.random(code.size) < RUN_FRACTION, rng.gamma(4.0, 2.5, code.size), 0.0)
    daily = pd.DataFrame({"runner_id": ids[code],
                          "date": START + pd.to_timedelta(day_index, unit="D"),
                          "day_index": day_index, "in_follow_up": day_index >= 0,
                          "distance_km": km, "duration_min": km * 5.5})
    state = np.zeros((n_runners, n_days), dtype=bool)
    now = rng.random(n_runners) < 0.1
    draws = rng.random((n_runners, n_days))
    for d in range(n_days):  # the chain is the fixture, not the code under test
        now = np.where(now, draws[:, d] >= P_RECOVER, draws[:, d] < P_ONSET)
        state[:, d] = now
    report = rng.random((n_runners, n_days)) < REPORT_FRACTION
    r, d = np.nonzero(report)
    pain = np.where(state[r, d], rng.integers(3, 8, r.size), rng.integers(0, 3, r.size))
    panel = pd.DataFrame({"runner_id": ids[r], "cohort": "all",
                          "date": START + pd.to_timedelta(d, unit="D"),
                          "pain": pain.astype(float),
                          "pain_any": pain >= DEFAULT_PAIN_THRESHOLD})
    return panel, daily


def timed(fn, repeat: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each call (CPU time is steadier on a shared machine)."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=2000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    panel, daily = tables(args.runners, args.days)
    ep = episodes(panel, daily, threshold=DEFAULT_PAIN_THRESHOLD)
    print(f"{args.runners} x {args.days}: {len(panel):,} reports, {len(daily):,} daily rows, "
          f"{len(ep):,} episodes")
    t_ep = timed(lambda: episodes(panel, daily, threshold=DEFAULT_PAIN_THRESHOLD),
                 args.repeat)
    t_ar = timed(lambda: at_risk(daily, ep, reports=panel), args.repeat)
    for name, (wall, cpu) in (("episodes", t_ep), ("at_risk", t_ar)):
        print(f"{name:9s} wall best {min(wall):.3f} s  median {float(np.median(wall)):.3f} s"
              f"  cpu best {min(cpu):.3f} s  median {float(np.median(cpu)):.3f} s")
    ok = min(t_ep[0]) < TARGET_S
    print(f"episodes best < {TARGET_S} s: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
