"""Benchmark: what the cohort report's "Time to pain episode" section adds per report.

Usage (from the project root)::

    .venv/bin/python bench/bench_time_to_event_report.py [--dataset demo] [--repeat 5]

For each cohort of the processed dataset (default: the demo, built first with ``make
build``), in one process as a report kernel has it (the mixed model fitted first, so the
model stack is imported; matplotlib Agg with the report theme): the section's computation
(:func:`analysis.reports.time_to_event.cohort_time_to_event` and its tables), then its two
figures drawn and saved as the report saves them (SVG + PNG at 300 dpi,
:func:`analysis.plots.save_figure`). Prints the median and best wall and CPU time of each
part over ``--repeat`` calls and the machine's load average, since the wall time of a
shared machine moves with its load. Target (issue 15 part 3): < 0.5 s added per report.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from analysis import paths, plots, reports
from analysis.reports import time_to_event as tte_mod


def _timed(fn, repeat: int) -> tuple[float, float, float]:
    """(median wall, best wall, median CPU) seconds of ``fn()`` over ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    walls.sort()
    cpus.sort()
    return walls[len(walls) // 2], walls[0], cpus[len(cpus) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=paths.DEFAULT_DATASET)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    plots.apply_theme()
    folder = paths.processed_dir(args.dataset)
    cohorts = sorted(reports.list_cohorts(folder)["cohort"])
    out = Path(tempfile.mkdtemp(prefix="bench_tte_"))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for cohort in cohorts:
        view = reports.load_cohort(folder, cohort)
        chosen = reports.choose_exposures(view).chosen
        reports.fit_cohort_model(view, exposures=chosen)  # as the report: models imported
        section = tte_mod.cohort_time_to_event(view, exposures=chosen)

        def compute(view=view, chosen=chosen) -> None:
            s = tte_mod.cohort_time_to_event(view, exposures=chosen)
            tte_mod.episodes_table(s)
            tte_mod.hazard_table(s)
            tte_mod.summary_block(s)

        def figures(section=section) -> None:
            fig, ax = plt.subplots(figsize=plots.FIGSIZE, layout="constrained")
            plots.cumulative_incidence_plot(section.curves, ends=section.curve_ends,
                                            overall=section.overall, ax=ax)
            plots.save_figure(fig, out, "cumulative_incidence")
            plt.close(fig)
            fig, ax = plt.subplots(figsize=plots.forest_figure_size(3), layout="constrained")
            plots.hazard_ratio_forest(tte_mod.forest_rows(section),
                                      doubtful=tte_mod.doubtful_terms(section), ax=ax)
            plots.save_figure(fig, out, "hazard_forest")
            plt.close(fig)

        c_med, c_best, c_cpu = _timed(compute, args.repeat)
        f_med, f_best, f_cpu = _timed(figures, args.repeat)
        print(f"{cohort}: compute {c_med:.3f} s (best {c_best:.3f}, CPU {c_cpu:.3f}); "
              f"two figures saved {f_med:.3f} s (best {f_best:.3f}, CPU {f_cpu:.3f}); "
              f"total median {c_med + f_med:.3f} s")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
