"""Soak: ``kneeload build`` killed with SIGKILL at many random moments (issue 13).

After every kill the processed folder (or, killed between the two renames of the swap, its
``.<out>.old-<pid>`` copy) holds exactly the previous tables; after the last kill one
complete build recovers and leaves no ``.<out>.building-*`` / ``.<out>.old-*`` folder.
Prints how many kills left each kind of leftover. Run on demand (not in ``make test``)::

    .venv/bin/python bench/soak_build.py --kills 60 --runners 40 --weeks 40
"""

from __future__ import annotations

import argparse
import hashlib
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from analysis.pipeline import PROCESSED_MARKER
from analysis.simulate import simulate_dataset, write_dataset


def tables_hash(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != PROCESSED_MARKER}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--runners", type=int, default=30, help="runners per cohort")
    parser.add_argument("--weeks", type=int, default=30)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = write_dataset(simulate_dataset(runners_per_cohort=args.runners, weeks=args.weeks,
                                             cohorts=2, seed=args.seed), root / "raw")
        out = root / "out"
        cmd = [sys.executable, "-m", "analysis.cli", "build", str(raw), "--out", str(out)]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        full_s = time.perf_counter() - started
        expected = tables_hash(out)
        seen: Counter[str] = Counter()
        for _ in range(args.kills):
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.1, full_s * 1.1))
            proc.kill()
            proc.wait()
            left = sorted(p.name for p in root.iterdir() if p.name.startswith(".out."))
            kinds = {name.split(".")[2].split("-")[0] for name in left} or {"none"}
            seen.update(kinds)
            olds = [root / n for n in left if ".old-" in n]
            where = out if out.is_dir() else olds[-1]
            if tables_hash(where) != expected:
                print(f"FAIL: {where} differs from the previous build", file=sys.stderr)
                return 1
        subprocess.run(cmd, check=True, capture_output=True)
        left = sorted(p.name for p in root.iterdir() if p.name.startswith(".out."))
        ok = tables_hash(out) == expected and not left
        print(f"build {full_s:.2f} s; {args.kills} kills; leftovers after a kill: "
              f"{dict(seen)}; after the last build: {left or 'none'}; "
              f"{'OK' if ok else 'FAIL'}")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
