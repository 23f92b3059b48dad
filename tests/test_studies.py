"""Four studies as a researcher holds them, each through ``kneeload build`` to a fitted model.

(a) per-runner Strava ``activities.csv`` folders + a weekly pain diary; (b) a Strava bulk
export with FIT, GPX and TCX activity files; (c) a folder of Garmin FIT files + an xlsx pain
sheet; (d) the Lövdal day-approach file. Every file is written in its real format by the
format's own writer (fit-tool, gpxpy, the TCX v2 layout: tests/fixtures/activity), the
builds run as real subprocesses with the defaults, and a model is fitted with the default
exposures the build recorded in ``panel_meta.json``. Expected values come from the schedule
each study was generated from, never from the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import hrload
from analysis.ingest import lovdal

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "activity"))
from activity_writers import Track, default_hr, fit_bytes, gpx_bytes, tcx_bytes

KNEELOAD = str(Path(sys.executable).with_name("kneeload"))
RUNNERS = [f"r{i:02d}" for i in range(1, 13)]
WEEKS = 10
START = date(2024, 3, 4)  # a Monday
#: Points per activity file: 31 samples 30 s apart (the hrload sample cap), 15 min.
POINTS, STEP_S = 31, 30.0
SHOE_TERMS = {"shoe_km", "shoe_age_days", "shoes_in_rotation_30d"}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KNEELOAD, *map(str, args)], capture_output=True, text=True,
                          check=False, timeout=600)


def build(raw: Path, out: Path, *extra: str) -> dict:
    proc = run("build", raw, "--out", out, *extra)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads((out / "panel_meta.json").read_text())


@dataclass(frozen=True)
class Run:
    runner: str
    start: datetime  # UTC
    km: float
    kind: str = "Run"


def schedule(seed: int) -> list[Run]:
    """1-3 runs a week per runner, 4-12 km, 06:30 UTC on distinct days (seeded)."""
    rng = np.random.default_rng(seed)
    runs = []
    for runner in RUNNERS:
        for week in range(WEEKS):
            days = sorted(rng.choice(7, size=int(rng.integers(1, 4)), replace=False))
            for day in days:
                when = datetime.combine(START + timedelta(days=7 * week + int(day)),
                                        datetime.min.time(), tzinfo=UTC)
                runs.append(Run(runner, when + timedelta(hours=6, minutes=30),
                                round(float(rng.uniform(4, 12)), 1)))
    return runs


def track(r: Run) -> Track:
    """A 15-minute file of the run's distance (the file's own pace may be fast: the CSV
    row, not the file, carries a Strava run's moving time)."""
    return Track(n_points=POINTS, step_s=STEP_S, step_m=r.km * 1000 / (POINTS - 1),
                 start=r.start)


def pain_of(rng: np.random.Generator, km_week: float) -> int:
    return int(np.clip(round(rng.normal(1 + km_week / 12, 1.2)), 0, 10))


def weekly_pain(runs: list[Run], seed: int) -> dict[tuple[str, int], int]:
    rng = np.random.default_rng(seed)
    km = {(r, w): 0.0 for r in RUNNERS for w in range(WEEKS)}
    for r in runs:
        km[r.runner, (r.start.date() - START).days // 7] += r.km
    return {key: pain_of(rng, v) for key, v in km.items()}


STRAVA_HEADER = ("Activity ID,Activity Date,Activity Name,Activity Type,Elapsed Time,Distance,"
                 "Max Heart Rate,Activity Gear,Filename,Elapsed Time,Moving Time,Distance,"
                 "Average Heart Rate")


def strava_row(i: int, r: Run, *, filename: str = "", avg_hr: str = "") -> str:
    when = r.start.strftime("%b %-d, %Y, %-I:%M:%S %p")
    moving = r.km * 5.5 * 60  # 5:30 min/km
    return (f'{i},"{when}",Morning Run,{r.kind},{moving + 60:.0f},{r.km:.2f},,,{filename},'
            f"{moving + 60:.1f},{moving:.1f},{r.km * 1000:.1f},{avg_hr}")


def strava_csv_study(folder: Path, runs: list[Run]) -> Path:
    """(a): <runner>/activities.csv with a mean heart rate, and a weekly pain_diary.csv."""
    for runner in RUNNERS:
        mine = [r for r in runs if r.runner == runner]
        lines = [STRAVA_HEADER] + [strava_row(i, r, avg_hr=f"{140 + i % 15}.0")
                                   for i, r in enumerate(mine, start=1)]
        (folder / runner).mkdir(parents=True)
        (folder / runner / "activities.csv").write_text("\n".join(lines) + "\n")
    pain = weekly_pain(runs, seed=1)
    weeks = ",".join(f"week_{w + 1}" for w in range(WEEKS))
    rows = [f"runner_id,start_date,{weeks}"] + [
        f"{r},{START.isoformat()}," + ",".join(str(pain[r, w]) for w in range(WEEKS))
        for r in RUNNERS]
    (folder / "pain_diary.csv").write_text("\n".join(rows) + "\n")
    return folder


def pain_long(runs: list[Run], seed: int) -> pd.DataFrame:
    pain = weekly_pain(runs, seed=seed)
    return pd.DataFrame([{"runner_id": r, "date": START + timedelta(days=7 * w + 6),
                          "pain": pain[r, w]} for r in RUNNERS for w in range(WEEKS)])


WRITERS = {"fit": fit_bytes, "gpx": gpx_bytes, "tcx": tcx_bytes}


def bulk_export_study(folder: Path, runs: list[Run]) -> dict[str, int]:
    """(b): Strava bulk export per runner, files cycling FIT, GPX, TCX (gzipped); r01's
    first file truncated, one ride, one file no row names; pain.csv. Returns counts."""
    import gzip

    counts = {"files": 0, "rides": 0}
    for runner in RUNNERS:
        mine = [r for r in runs if r.runner == runner]
        (folder / runner / "activities").mkdir(parents=True)
        lines = [STRAVA_HEADER]
        for i, r in enumerate(mine, start=1):
            kind = ("fit", "gpx", "tcx")[i % 3]
            name = f"activities/{i}.{kind}.gz"
            data = WRITERS[kind](track(r))
            if runner == "r01" and i == 1:
                data = data[: len(data) // 2]  # truncated upload
            (folder / runner / name).write_bytes(gzip.compress(data, mtime=0))
            counts["files"] += 1
            lines.append(strava_row(i, r, filename=name))
        if runner == "r02":  # a ride with its file, and a file no row names
            ride = Run(runner, mine[0].start + timedelta(hours=8), 30.0, kind="Ride")
            (folder / runner / "activities" / "99.fit.gz").write_bytes(
                gzip.compress(fit_bytes(track(ride), sport="CYCLING"), mtime=0))
            lines.append(strava_row(99, ride, filename="activities/99.fit.gz"))
            extra = Run(runner, mine[-1].start + timedelta(hours=10), 5.0)
            (folder / runner / "activities" / "100.fit.gz").write_bytes(
                gzip.compress(fit_bytes(Track(n_points=POINTS, step_s=55.0,
                                              step_m=5000 / (POINTS - 1),
                                              start=extra.start)), mtime=0))
            counts["files"] += 2
            counts["rides"] += 1
        (folder / runner / "activities.csv").write_text("\n".join(lines) + "\n")
    pain_long(runs, seed=2).to_csv(folder / "pain.csv", index=False)
    return counts


def garmin_fit_study(folder: Path, runs: list[Run]) -> None:
    """(c): <runner>/<n>.fit (5:30 min/km), one cycling file for r03; pain.xlsx."""
    for runner in RUNNERS:
        (folder / runner).mkdir(parents=True)
        mine = [r for r in runs if r.runner == runner]
        for i, r in enumerate(mine, start=1):
            t = Track(n_points=POINTS, step_s=r.km * 5.5 * 60 / (POINTS - 1),
                      step_m=r.km * 1000 / (POINTS - 1), start=r.start)
            (folder / runner / f"{i}.fit").write_bytes(fit_bytes(t))
        if runner == "r03":
            (folder / runner / "ride.fit").write_bytes(
                fit_bytes(track(Run(runner, mine[0].start + timedelta(hours=9), 25.0)),
                          sport="CYCLING"))
    pain_long(runs, seed=3).to_excel(folder / "pain.xlsx", index=False)


def lovdal_study(folder: Path, *, athletes: int = 12, days: int = 70, seed: int = 4) -> int:
    """(d): the day-approach file, one row per athlete-day, injury ~ Bernoulli(0.12)."""
    rng = np.random.default_rng(seed)
    features = list(lovdal.FEATURES)
    header = [f"{f}{s}" for s in lovdal.BLOCK_SUFFIXES for f in features]
    header += ["Athlete ID", "injury", "Date"]
    km = {(a, d): (float(rng.choice([0.0, rng.uniform(5, 15)], p=[0.4, 0.6])))
          for a in range(athletes) for d in range(-6, days)}
    lines, injuries = [",".join(header)], 0
    for a in range(athletes):
        for day in range(days):
            cells = []
            for k in range(7):
                dist = round(km[a, day - 6 + k], 1)
                ran = dist > 0
                values = {"nr. sessions": float(ran), "total km": dist, "km Z3-4": 0.0,
                          "km Z5-T1-T2": 0.0, "km sprinting": 0.0, "strength training": 0.0,
                          "hours alternative": 0.0,
                          "perceived exertion": 0.1 if ran else -0.01,
                          "perceived trainingSuccess": 0.0 if ran else -0.01,
                          "perceived recovery": 0.17 if ran else -0.01}
                cells += [str(values[f]) for f in features]
            injury = int(rng.random() < 0.12)
            injuries += injury
            cells += [str(a), str(injury), str(day)]
            lines.append(",".join(cells))
    (folder / "day_approach_maskedID_timeseries.csv").write_text("\n".join(lines) + "\n")
    return injuries


def fitted(out: Path, meta: dict):
    """The dataset's default model with the build's default exposures."""
    from analysis.models import fit_model
    from analysis.outcomes import outcome_spec

    spec = outcome_spec(meta)
    panel = pd.read_parquet(out / "panel.parquet")
    return fit_model(panel, model=spec.default_model, outcome=spec.column,
                     exposures=meta["default_exposures"])


def _no_shoes(meta: dict) -> None:
    assert meta["default_exposures"], meta
    assert not SHOE_TERMS & set(meta["default_exposures"])
    assert "shoe_km" in meta["exposures_left_out"]


@pytest.fixture(scope="module")
def runs() -> list[Run]:
    return schedule(seed=0)


def test_strava_csv_folders_with_a_weekly_diary(tmp_path: Path, runs: list[Run]) -> None:
    raw = strava_csv_study(tmp_path / "raw", runs)
    out = tmp_path / "processed"
    meta = build(raw, out)
    assert meta["format"] == "strava" and meta["outcome"] == "nrs"
    _no_shoes(meta)
    kept = pd.read_parquet(out / "runs.parquet")
    assert len(kept) == len(runs)
    # every run has an "Average Heart Rate" but no runner an hr_max, an age or a maximum HR:
    # a mean is no HRmax (analysis.hrload), so no TRIMP, and panel_meta says why
    assert kept["trimp_banister_au"].isna().all() and kept["trimp_edwards_au"].isna().all()
    assert meta["trimp_method"] == {hrload.METHOD_NO_HR_MAX: len(runs)}
    assert "activity_files" not in meta
    assert meta["hr_references"]["hr_max_source"] == {hrload.SOURCE_NO_MAX: len(RUNNERS)}
    assert len(pd.read_parquet(out / "pain.parquet")) == len(RUNNERS) * WEEKS
    result = fitted(out, meta)
    assert result.model == "lmm" and result.converged
    assert set(meta["default_exposures"]) <= set(result.table["term"])


def _banister_by_hand(hr: np.ndarray, *, rest: float, hmax: float, minutes: float) -> float:
    """sum over samples (the last weighs 0) of minutes x HRr x the mean of the men's
    (0.64 e^1.92x) and women's (0.86 e^1.67x) curves (sex unknown), HRr = (HR-rest)/(max-rest)."""
    x = (hr[:-1] - rest) / (hmax - rest)
    return float(np.sum(minutes * x * (0.64 * np.exp(1.92 * x) + 0.86 * np.exp(1.67 * x)) / 2))


def test_strava_bulk_export_with_fit_gpx_tcx(tmp_path: Path, runs: list[Run]) -> None:
    raw = tmp_path / "raw"
    counts = bulk_export_study(raw, runs)
    out = tmp_path / "processed"
    meta = build(raw, out)
    assert meta["format"] == "strava" and meta["outcome"] == "nrs"
    _no_shoes(meta)
    assert meta["activity_files"]["files"] == counts["files"]  # the truncated one too
    assert meta["activity_files"]["unreadable"] == 1
    assert meta["activity_files"]["parsed"] == counts["files"]
    quarantine = pd.read_csv(out / "quarantine.csv")
    bad = quarantine[quarantine["reason"] == "unreadable_activity_file"]
    assert list(bad["file"]) == ["r01/activities/1.gpx.gz"]
    assert list(quarantine.loc[quarantine["reason"] == "non_running_activity", "file"]) == [
        "r02/activities.csv"]
    report = json.loads((out / "cleaning_report.json").read_text())
    assert report["files"]["r01/activities/1.gpx.gz"] == {
        "read": 1, "kept": 0, "merged": 0, "quarantined": 1, "fixed": 0,
        "by_reason": {"unreadable_activity_file": 1}, "fixes": {}}
    kept = pd.read_parquet(out / "runs.parquet")
    assert len(kept) == len(runs) + 1  # every CSV run, plus the file no row names
    # rows with a readable file have sample TRIMP; r01's truncated one has none
    with_hr = kept["trimp_banister_au"].notna()
    assert int(with_hr.sum()) == len(runs)
    # the hand-computed Banister TRIMP of one file: 31 samples 30 s apart (0.5 min each,
    # the last weighs 0), HR 120..150, HRrest 60 (default), HRmax 150 (the runner's
    # observed maximum, no age), sex unknown
    hr = np.array([default_hr(i) for i in range(POINTS)], dtype=float)
    expected = _banister_by_hand(hr, rest=60.0, hmax=150.0, minutes=STEP_S / 60)
    r05 = kept[kept["runner_id"] == "r05"]
    np.testing.assert_allclose(r05["trimp_banister_au"], expected, rtol=1e-12)
    # Edwards: zones of HR/150: 120-134 -> 80-89.3 % zone 4, 135-150 -> 90-100 % zone 5
    edwards = 0.5 * sum(4 if h / 150 < 0.9 else 5 for h in hr[:-1])
    np.testing.assert_allclose(r05["trimp_edwards_au"], edwards, rtol=1e-12)
    result = fitted(out, meta)
    assert result.model == "lmm" and result.converged

    # the rebuild of an unchanged study parses no file: every parse comes from the cache
    again = build(raw, out)
    assert again["activity_files"]["parsed"] == 0
    assert again["activity_files"]["cached"] == counts["files"]
    assert (out / ".cache" / "activity").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name not in ("raw", "processed")]


def test_garmin_fit_folder_with_an_xlsx_pain_sheet(tmp_path: Path, runs: list[Run]) -> None:
    raw = tmp_path / "raw"
    garmin_fit_study(raw, runs)
    out = tmp_path / "processed"
    meta = build(raw, out)
    assert meta["format"] == "activity" and meta["outcome"] == "nrs"
    _no_shoes(meta)
    kept = pd.read_parquet(out / "runs.parquet")
    assert len(kept) == len(runs)
    by_hand = pd.DataFrame({"runner_id": [r.runner for r in runs],
                            "date": [pd.Timestamp(r.start.date()) for r in runs],
                            "distance_km": [r.km for r in runs],
                            "duration_min": [r.km * 5.5 for r in runs]})
    got = kept[["runner_id", "date", "distance_km", "duration_min"]] \
        .sort_values(["runner_id", "date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, by_hand.sort_values(["runner_id", "date"])
                                  .reset_index(drop=True), check_dtype=False, rtol=1e-6)
    assert (kept["start_time"].dt.hour == 6).all()  # no device offset: the UTC clock
    quarantine = pd.read_csv(out / "quarantine.csv")
    assert list(quarantine["reason"]) == ["non_running_activity"]
    assert list(quarantine["file"]) == ["r03/ride.fit"]
    assert kept["trimp_banister_au"].notna().all()
    result = fitted(out, meta)
    assert result.model == "lmm" and result.converged


def test_lovdal_is_fitted_as_an_injury_flag(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    injuries = lovdal_study(raw)
    out = tmp_path / "processed"
    meta = build(raw, out)
    assert meta["format"] == "lovdal" and meta["outcome"] == "injury_flag"
    _no_shoes(meta)
    panel = pd.read_parquet(out / "panel.parquet")
    assert int(panel["pain_any"].sum()) == injuries
    result = fitted(out, meta)
    assert result.model == "glmm" and result.outcome == "pain_any" and result.converged


def test_a_build_keeping_no_runs_fails_with_the_reasons(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for runner in ("a", "b"):
        (raw / runner).mkdir(parents=True)
        for i in range(3):
            start = datetime(2024, 3, 4 + i, 7, tzinfo=UTC)
            (raw / runner / f"{i}.fit").write_bytes(
                fit_bytes(Track(n_points=POINTS, step_s=STEP_S, step_m=300.0, start=start),
                          sport="CYCLING"))
    (raw / "b" / "broken.fit").write_bytes(b"\x0e\x10")
    pd.DataFrame({"runner_id": ["a"], "date": ["2024-03-10"], "pain": [2]}).to_csv(
        raw / "pain.csv", index=False)
    proc = run("build", raw, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "no runs kept from 7 runs records" in lines[0]
    assert "non_running_activity (6), unreadable_activity_file (1)" in lines[0]
    # the failed build left only the parse cache in --out, and a later build may use it
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".cache"]
    canonical = _canonical(tmp_path / "canonical", pain=("3",))
    assert run("build", canonical, "--out", tmp_path / "out").returncode == 0


def _canonical(raw: Path, *, pain: tuple[str, ...]) -> Path:
    raw.mkdir()
    pd.DataFrame({"runner_id": ["a"], "cohort": ["c"]}).to_csv(raw / "runners.csv", index=False)
    pd.DataFrame({"runner_id": ["a"], "date": ["2024-03-04"], "distance_km": [5.0]}).to_csv(
        raw / "runs.csv", index=False)
    pd.DataFrame({"runner_id": ["a"] * len(pain),
                  "date": [f"2024-03-{10 + i}" for i in range(len(pain))],
                  "pain": list(pain)}).to_csv(raw / "pain.csv", index=False)
    return raw


def test_a_build_keeping_no_pain_reports_fails_with_the_reasons(tmp_path: Path) -> None:
    raw = _canonical(tmp_path / "raw", pain=("11", "-1", "x"))
    proc = run("build", raw, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = " ".join(proc.stderr.split())
    assert "no pain reports kept from 3 pain records read" in line
    assert "pain_out_of_range (2), pain_not_number (1)" in line


@pytest.mark.parametrize(("option", "fragment"), [
    (("--timezone", "Toronto"), "America/Toronto"),
    (("--distance-unit", "furlongs"), "--distance-unit"),
])
def test_option_typos_fail_even_for_canonical_data(tmp_path: Path, option: tuple[str, str],
                                                   fragment: str) -> None:
    raw = _canonical(tmp_path / "raw", pain=("1",))
    proc = run("build", raw, "--out", tmp_path / "out", *option)
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_report_of_the_strava_csv_study(tmp_path: Path, runs: list[Run]) -> None:
    raw = strava_csv_study(tmp_path / "raw", runs)
    out = tmp_path / "processed"
    build(raw, out)
    proc = run("report", out, "--out", tmp_path / "reports")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "reports" / "all" / "summary.json").read_text())
    assert summary["n_runners"] == len(RUNNERS)
    assert {h["term"] for h in summary["headline"]} & {"mileage_jump", "rest_days_7d"}
    assert not {h["term"] for h in summary["headline"]} & SHOE_TERMS


def test_pseudonymised_activity_study_hides_every_folder_name(tmp_path: Path, runs: list[Run],
                                                              monkeypatch) -> None:
    """One folder-hiding rule (privacy.hide_folders) in every output: a sub-folder named after
    a person inside a runner's export is hashed in quarantine.csv, the cleaning report, the
    Parquet provenance and panel_meta alike, and the names agree across them."""
    raw = tmp_path / "raw"
    garmin_fit_study(raw, [r for r in runs if r.runner in RUNNERS[:6]])
    (raw / "r01" / "Alice Smith").mkdir()
    (raw / "r01" / "Alice Smith" / "broken.fit").write_bytes(b"not a fit file at all")
    monkeypatch.setenv("KNEELOAD_ID_SALT", "s3cret")
    out = tmp_path / "out"
    meta = build(raw, out, "--pseudonymise")
    texts = [p.read_text(errors="ignore") for p in out.iterdir()
             if p.suffix in {".json", ".csv"}]
    sources = pd.read_parquet(out / "runs.parquet")["source_file"].astype("str")
    assert not [t for t in [*texts, *sources] if "Alice" in t or "r01/" in t]
    quarantined = pd.read_csv(out / "quarantine.csv")["file"].astype("str")
    broken = [f for f in quarantined if f.endswith("/broken.fit")]
    assert len(broken) == 1
    assert broken[0] in meta["input_sha256"]  # the same hidden name everywhere
