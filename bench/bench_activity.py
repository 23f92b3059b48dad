"""Reading speed of activity files: one-hour 1 Hz FIT files with heart rate, whole process.

    .venv/bin/python bench/bench_activity.py              # 600 files, 2 workers
    .venv/bin/python bench/bench_activity.py --files 2000 --libraries

Writes ``--distinct`` different one-hour FIT files with fit-tool (3,601 records each: time,
position, distance, altitude, heart rate; session/lap/activity messages) and copies them to
``--files`` names. Then, each in a fresh ``python -c`` process (imports included):

1. uncached read of the folder (``read_activity_folder(workers=N)``): files/minute, peak RSS
   of the main process and of the largest worker;
2. a read that fills the cache, then the cached re-read: seconds and files/minute;
3. one file changed, re-read: seconds and files parsed (must be 1).

``--libraries`` also times the candidate parsers on one file in this process (the numbers
behind the README's dependency table): garmin-fit-sdk vs fitdecode for FIT, lxml vs gpxpy
for GPX, lxml vs tcxreader for TCX (each skipped when not installed).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "activity"))
from activity_writers import START, Track, fit_bytes, gpx_bytes, tcx_bytes

HOUR = Track(n_points=3601)

READ = """
import json, resource, sys, time
t0 = time.perf_counter()
from analysis.ingest.activity import read_activity_folder
r = read_activity_folder(sys.argv[1], cache_dir=sys.argv[2] or None, workers=int(sys.argv[3]))
s = time.perf_counter() - t0
print(json.dumps({"seconds": s, "sessions": len(r.sessions), "hr_rows": len(r.hr_samples),
                  "quarantined": len(r.quarantine), "n_parsed": r.n_parsed,
                  "n_cached": r.n_cached,
                  "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                  / 1024}))
"""


def _run(folder: Path, cache: Path | None, workers: int) -> dict:
    out = subprocess.run([sys.executable, "-c", READ, str(folder), str(cache or ""),
                          str(workers)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def _best(fn, data, reps: int = 3) -> float:
    fn(data)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - t)
    return best


def compare_libraries() -> None:
    """Seconds per one-hour file for each candidate parser (best of 3)."""
    fit, gpx, tcx = fit_bytes(HOUR), gpx_bytes(HOUR), tcx_bytes(HOUR)
    from analysis.ingest.activity_formats import parse_fit, parse_gpx, parse_tcx

    rows = [("FIT", "kneeload parse_fit (garmin-fit-sdk)", _best(parse_fit, fit))]
    try:
        from garmin_fit_sdk import Decoder, Stream

        def sdk(d: bytes) -> object:
            return Decoder(Stream.from_byte_array(bytearray(d))).read(
                convert_datetimes_to_dates=False)
        rows.append(("FIT", "garmin-fit-sdk Decoder.read alone", _best(sdk, fit)))
    except ImportError:
        pass
    try:
        import fitdecode

        def fd(d: bytes) -> list:
            out = []
            with fitdecode.FitReader(io.BytesIO(d), processor=None) as reader:
                for frame in reader:
                    if frame.frame_type == fitdecode.FIT_FRAME_DATA:
                        out.append({f.def_num: f.raw_value for f in frame.fields})
            return out
        rows.append(("FIT", "fitdecode (raw values, no processor)", _best(fd, fit)))
    except ImportError:
        pass
    rows.append(("GPX", "kneeload parse_gpx (lxml)", _best(parse_gpx, gpx)))
    try:
        import gpxpy

        rows.append(("GPX", "gpxpy.parse", _best(lambda d: gpxpy.parse(d.decode()), gpx)))
    except ImportError:
        pass
    rows.append(("TCX", "kneeload parse_tcx (lxml)", _best(parse_tcx, tcx)))
    try:
        from tcxreader.tcxreader import TCXReader

        with tempfile.NamedTemporaryFile(suffix=".tcx", delete=False) as handle:
            handle.write(tcx)
        rows.append(("TCX", "tcxreader", _best(lambda p: TCXReader().read(p), handle.name)))
        Path(handle.name).unlink()
    except ImportError:
        pass
    print("\nparser comparison, one-hour 1 Hz file (3,601 samples), best of 3:")
    for fmt, name, seconds in rows:
        print(f"  {fmt}  {name:<42} {seconds * 1000:8.1f} ms  ({60 / seconds:6.0f} files/min"
              " on one core)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--distinct", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--libraries", action="store_true")
    parser.add_argument("--skip-uncached", action="store_true",
                        help="only the cache steps (e.g. --files 10000: the copies share "
                             "--distinct cache entries, so filling is quick)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp) / "runner", Path(tmp) / "cache"
        folder.mkdir()
        t = time.perf_counter()
        blobs = [fit_bytes(replace(HOUR, start=START + timedelta(days=k)))
                 for k in range(args.distinct)]
        print(f"wrote {args.distinct} distinct one-hour FIT files with fit-tool in "
              f"{time.perf_counter() - t:.1f} s ({len(blobs[0]):,} bytes each)")
        for i in range(args.files):
            (folder / f"a{i:05d}.fit").write_bytes(blobs[i % len(blobs)])
        cold = None if args.skip_uncached else _run(folder, None, args.workers)
        rate = 0.0 if cold is None else args.files / cold["seconds"] * 60
        if cold is not None:
            print(f"uncached: {args.files} files in {cold['seconds']:.1f} s = {rate:,.0f} "
                  f"files/min on {args.workers} workers (target 300, stretch 1,000); "
                  f"{cold['hr_rows']:,} HR rows; peak RSS main {cold['rss_main_mb']:.0f} MB, "
                  f"largest worker {cold['rss_worker_mb']:.0f} MB")
        fill = _run(folder, cache, args.workers)
        warm = _run(folder, cache, args.workers)
        print(f"cache fill: {fill['seconds']:.1f} s, parsed {fill['n_parsed']} (identical "
              f"copies share one entry); cached re-read: {warm['seconds']:.1f} s = "
              f"{args.files / warm['seconds'] * 60:,.0f} files/min, parsed {warm['n_parsed']}, "
              f"from cache {warm['n_cached']}, peak RSS main {warm['rss_main_mb']:.0f} MB")
        shutil.copy(folder / "a00000.fit", folder / "changed.tmp")
        (folder / "a00001.fit").write_bytes(
            fit_bytes(replace(HOUR, n_points=1801, start=START - timedelta(days=1))))
        (folder / "changed.tmp").unlink()
        one = _run(folder, cache, args.workers)
        print(f"one file changed: re-read {one['seconds']:.1f} s, parsed {one['n_parsed']} "
              f"(expected 1), from cache {one['n_cached']}")
    if args.libraries:
        compare_libraries()


if __name__ == "__main__":
    main()
