"""Soak of kill -9 against ``kneeload report`` (issue 13): many random kill moments.

Builds the report study, renders one cohort, then N times starts ``kneeload report`` and
SIGKILLs it after a random delay; after each kill the previous report (or a complete new one
the manifest records) must be in place; at the end one run must clean every temporary file.
Prints the moments and the outcome. Run: ``.venv/bin/python bench/soak_report.py [N] [SEED]``.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from report_study import make_study

from analysis import reports
from analysis.outputs import is_temporary_name
from analysis.privacy import sha256_file

MAX_DELAY_S = 9.0


def main(n: int = 20, seed: int = 0) -> int:
    root = Path(tempfile.mkdtemp(prefix="kneeload-soak-"))
    study = make_study(root)
    out = root / "reports"
    cmd = [sys.executable, "-m", "analysis.cli", "report", str(study.processed), "--out",
           str(out), "--cohort", study.normal]
    subprocess.run(cmd, check=True, capture_output=True)
    html = out / reports.safe_name(study.normal) / "report.html"
    rng = random.Random(seed)
    bad = 0
    for i in range(n):
        previous = sha256_file(html)
        delay = rng.uniform(0.1, MAX_DELAY_S)
        proc = subprocess.Popen([*cmd, "--param", f"seed={i + 1}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        entry = json.loads((out / reports.MANIFEST_NAME).read_text())["cohorts"][study.normal]
        now = sha256_file(html)
        ok = now == previous or entry["outputs_sha256"].get("report.html") == now
        bad += not ok
        print(f"kill {i + 1:2d} at {delay:4.1f} s: {'ok' if ok else 'INCONSISTENT'}")
    time.sleep(1)
    subprocess.run([*cmd[:-2], "--cohort", study.small], check=True, capture_output=True)
    left = [p for p in out.rglob("*") if is_temporary_name(p.name)]
    print(f"{n} kills, {bad} inconsistent, {len(left)} temporary files left after recovery")
    return int(bad > 0 or bool(left))


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:3])))
