"""Activity files: FIT (written by fit-tool), GPX (gpxpy), TCX (the Garmin TCX v2 layout).

Every expected value comes from the track the fixture writer was given (see
tests/fixtures/activity/activity_writers.py), never from analysis.ingest.activity.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import InputFileError
from analysis.ingest.activity import (
    HR_COLUMNS,
    PARALLEL_MIN_FILES,
    QUARANTINE_COLUMNS,
    SESSION_COLUMNS,
    ActivityFileError,
    read_activity_file,
    read_activity_folder,
)
from analysis.ingest.activity_formats import MOVING_SPEED_MPS

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "activity"))
from activity_writers import (
    START,
    Track,
    default_hr,
    fit_bytes,
    write_fit,
    write_gpx,
    write_tcx,
)

# fit-tool stores altitude in 0.2 m units (scale 5, offset 500): a 0.6 m climb per point is
# exact, so the unsmoothed record gain is exact too.
SHORT = Track(n_points=301, climb_m=0.6)
PAUSED = replace(SHORT, pauses={100: 59.0, 200: 119.0})


@pytest.fixture(scope="module")
def fit_plain() -> bytes:
    return fit_bytes(SHORT)


def _hr_expected(track: Track) -> tuple[np.ndarray, np.ndarray]:
    t = np.array([(x - track.start).total_seconds() for x in track.times()])
    return t, np.array([default_hr(i) for i in range(track.n_points)], dtype=float)


def _check(session, track: Track, *, moving_s: float | None = None) -> None:
    assert session.start_time == pd.Timestamp(track.start)
    assert str(session.start_time.tz) == "UTC"
    assert session.distance_km == pytest.approx(track.distance_m / 1000, rel=1e-9)
    assert session.elapsed_s == track.elapsed_s
    assert session.moving_s == (track.moving_s if moving_s is None else moving_s)
    assert session.elevation_gain_m == pytest.approx(track.gain_m, abs=1e-6)
    t, hr = _hr_expected(track)
    np.testing.assert_array_equal(session.hr_elapsed_s, t)
    np.testing.assert_array_equal(session.hr_bpm, hr)


@pytest.mark.parametrize("name", ["run.fit", "run.fit.gz", "RUN.FIT"])
def test_fit_session_totals_and_heart_rate(tmp_path: Path, fit_plain: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(fit_plain) if name.endswith(".gz") else fit_plain)
    session = read_activity_file(path)
    _check(session, SHORT)
    assert session.sport == "running"
    assert session.file_format == "fit"
    assert session.n_hr_samples == 301
    assert session.distance_km == 0.9  # session total_distance, 900 m, exactly


def test_fit_with_pauses_uses_the_timer_and_without_session_the_records(tmp_path: Path) -> None:
    with_session = read_activity_file(write_fit(tmp_path / "p.fit", PAUSED))
    _check(with_session, PAUSED)
    assert with_session.elapsed_s == 300 + 59 + 119
    assert with_session.moving_s == 298  # total_timer_time as written
    no_session = read_activity_file(write_fit(tmp_path / "n.fit", PAUSED, session=False))
    # From the records: the two pause intervals move 3 m in 60 s and 120 s (< 1 km/h).
    assert 3 / 60 < MOVING_SPEED_MPS
    _check(no_session, PAUSED, moving_s=298.0)
    assert no_session.sport is None


def test_fit_without_heart_rate_has_no_samples(tmp_path: Path) -> None:
    session = read_activity_file(write_fit(tmp_path / "a.fit", replace(SHORT, hr=None)))
    assert session.n_hr_samples == 0
    assert session.hr_elapsed_s.dtype == np.float64


@pytest.mark.parametrize("name", ["run.gpx", "run.gpx.gz"])
def test_gpx_haversine_distance_moving_time_and_hr(tmp_path: Path, name: str) -> None:
    track = replace(PAUSED, climb_m=0.5)
    session = read_activity_file(write_gpx(tmp_path / name, track))
    # 300 steps of 3 m along a meridian; moving = 300 intervals minus the 2 pauses.
    _check(session, track, moving_s=298.0)
    assert session.sport == "running"
    assert session.file_format == "gpx"


def test_gpx_without_type_or_hr(tmp_path: Path) -> None:
    session = read_activity_file(write_gpx(tmp_path / "x.gpx", replace(SHORT, hr=None),
                                           activity_type=None))
    assert session.sport is None
    assert session.n_hr_samples == 0


@pytest.mark.parametrize("name", ["run.tcx", "run.tcx.gz"])
def test_tcx_lap_totals(tmp_path: Path, name: str) -> None:
    track = replace(PAUSED, climb_m=0.5)
    session = read_activity_file(write_tcx(tmp_path / name, track, sport="Running"))
    _check(session, track)  # moving = lap TotalTimeSeconds (298)
    assert session.distance_km == 0.9
    assert session.sport == "running"


def _bad_files(folder: Path, fit: bytes) -> dict[str, str]:
    """Write one bad file of each kind; {name: words its reason must contain}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trunc.fit").write_bytes(fit[: len(fit) // 2])
    (folder / "garbage.fit").write_bytes(b"this is not a FIT file at all" * 10)
    (folder / "empty.fit").write_bytes(b"")
    (folder / "plain.fit.gz").write_bytes(fit)
    (folder / "cut.gpx.gz").write_bytes(gzip.compress(b"<gpx>" * 200)[:30])
    (folder / "cut.tcx").write_bytes(b'<?xml version="1.0"?><TrainingCenterDatabase><Activ')
    (folder / "crc.fit").write_bytes(fit[:-1] + bytes([fit[-1] ^ 0xFF]))
    return {"trunc.fit": "truncated", "garbage.fit": "not a FIT file",
            "empty.fit": "empty file", "plain.fit.gz": "not gzip",
            "cut.gpx.gz": "gzip data is truncated", "cut.tcx": "not well-formed",
            "crc.fit": "CRC"}


def test_bad_files_are_quarantined_with_a_reason(tmp_path: Path, fit_plain: bytes) -> None:
    expected = _bad_files(tmp_path / "r1", fit_plain)
    (tmp_path / "r1" / "good.fit").write_bytes(fit_plain)
    read = read_activity_folder(tmp_path / "r1")
    assert read.sessions["session_id"].tolist() == ["r1/good.fit"]
    q = read.quarantine.set_index("source_file")["reason"]
    assert sorted(q.index) == sorted(f"r1/{n}" for n in expected)
    for name, words in expected.items():
        assert words in q[f"r1/{name}"], (name, q[f"r1/{name}"])
    for name in expected:
        with pytest.raises(ActivityFileError, match=name.replace(".", r"\.")):
            read_activity_file(tmp_path / "r1" / name)


def _strava_export(root: Path, fit: bytes) -> Path:
    folder = root / "runner_a"
    acts = folder / "activities"
    acts.mkdir(parents=True)
    (acts / "101.fit.gz").write_bytes(gzip.compress(fit))
    write_gpx(acts / "102.gpx.gz", SHORT, activity_type=None)
    write_tcx(acts / "103.tcx.gz", replace(SHORT, hr=None), sport="Biking")
    (folder / "activities.csv").write_text(
        "Activity ID,Activity Date,Activity Name,Activity Type,Elapsed Time,Filename\n"
        '101,"Mar 4, 2024, 6:30:00 AM",Run,Run,300,activities/101.fit.gz\n'
        '102,"Mar 4, 2024, 6:30:00 AM",Run,Trail Run,300,activities/102.gpx.gz\n'
        '103,"Mar 4, 2024, 6:30:00 AM",Ride,Ride,300,activities/103.tcx.gz\n'
        '104,"Mar 5, 2024, 6:30:00 AM",Treadmill,Run,300,\n'
        '105,"Mar 6, 2024, 6:30:00 AM",Lost,Run,300,activities/105.fit.gz\n')
    return folder


def test_strava_export_folder(tmp_path: Path, fit_plain: bytes) -> None:
    read = read_activity_folder(_strava_export(tmp_path, fit_plain))
    assert read.layout == "strava"
    s = read.sessions
    assert tuple(s.columns) == SESSION_COLUMNS
    assert s["session_id"].tolist() == ["runner_a/activities/101.fit.gz",
                                        "runner_a/activities/102.gpx.gz",
                                        "runner_a/activities/103.tcx.gz"]
    assert (s["runner_id"] == "runner_a").all()
    # FIT and TCX name their sport; the GPX has none, so the CSV's "Trail Run" -> running.
    assert s["sport"].tolist() == ["running", "running", "biking"]
    assert s["n_hr_samples"].tolist() == [301, 301, 0]
    assert s["source_line"].tolist() == [1, 1, 1]
    assert str(s["start_time"].dtype) == "datetime64[ns, UTC]"
    assert s["date"].tolist() == [pd.Timestamp("2024-03-04")] * 3
    assert s["date_basis"].tolist() == ["utc"] * 3
    np.testing.assert_allclose(s["distance_km"], 0.9, rtol=1e-9)
    assert s["elapsed_s"].tolist() == [300.0] * 3
    assert read.quarantine.to_dict("records") == [
        {"source_file": "runner_a/activities.csv",
         "reason": "line 6: names activities/105.fit.gz, which is not in the export"}]
    hr = read.hr_samples
    assert tuple(hr.columns) == HR_COLUMNS
    assert len(hr) == 602
    first = hr[hr["session_id"] == "runner_a/activities/101.fit.gz"]
    t, bpm = _hr_expected(SHORT)
    np.testing.assert_array_equal(first["elapsed_s"], t)
    np.testing.assert_array_equal(first["hr_bpm"], bpm)
    assert tuple(read.quarantine.columns) == QUARANTINE_COLUMNS


def test_garmin_folder_dates_in_the_runners_zone(tmp_path: Path) -> None:
    folder = tmp_path / "study" / "r2"
    late = replace(SHORT, start=START.replace(hour=23, minute=30))
    write_fit(folder / "sub" / "late.fit", late, sport="CYCLING")
    utc = read_activity_folder(folder, runner_id="R-2", study_root=tmp_path / "study")
    assert utc.sessions.loc[0, "session_id"] == "r2/sub/late.fit"
    assert utc.sessions.loc[0, "runner_id"] == "R-2"
    assert utc.sessions.loc[0, "sport"] == "cycling"  # kept: the caller filters
    assert utc.sessions.loc[0, "date"] == pd.Timestamp("2024-03-04")
    oslo = read_activity_folder(folder, timezone="Europe/Oslo")  # 00:30 CET next day
    assert oslo.sessions.loc[0, "date"] == pd.Timestamp("2024-03-05")
    assert oslo.sessions.loc[0, "date_basis"] == "timezone"
    with pytest.raises(InputFileError, match="Toronto"):
        read_activity_folder(folder, timezone="Toronto")


def test_folder_without_activity_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("x")
    with pytest.raises(InputFileError, match="no activity files"):
        read_activity_folder(tmp_path / "r")


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cache_reuses_unchanged_files_and_parses_changed_ones(
        tmp_path: Path, fit_plain: bytes) -> None:
    folder = _strava_export(tmp_path / "study", fit_plain)
    _bad_files(folder / "activities", fit_plain)
    cache = tmp_path / "cache"
    before = _tree(tmp_path / "study")
    first = read_activity_folder(folder, cache_dir=cache)
    assert (first.n_parsed, first.n_cached) == (10, 0)
    second = read_activity_folder(folder, cache_dir=cache)
    assert (second.n_parsed, second.n_cached) == (0, 10)
    pd.testing.assert_frame_equal(first.sessions, second.sessions)
    pd.testing.assert_frame_equal(first.hr_samples, second.hr_samples)
    pd.testing.assert_frame_equal(first.quarantine, second.quarantine)
    assert _tree(tmp_path / "study") == before  # nothing written next to the data
    assert {p.parent.parent for p in cache.rglob("*.npz")} == {cache}
    write_gpx(folder / "activities" / "102.gpx.gz", replace(SHORT, n_points=101))
    third = read_activity_folder(folder, cache_dir=cache)
    assert (third.n_parsed, third.n_cached) == (1, 9)
    row = third.sessions.set_index("session_id").loc["runner_a/activities/102.gpx.gz"]
    assert row["distance_km"] == pytest.approx(0.3, rel=1e-9)
    # A damaged cache entry is a miss, parsed again.
    for entry in cache.rglob("*.npz"):
        entry.write_bytes(b"junk")
    assert read_activity_folder(folder, cache_dir=cache).n_parsed == 10


def test_parallel_read_equals_serial(tmp_path: Path, fit_plain: bytes) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    (folder / "f000.fit").write_bytes(fit_plain)
    for i in range(1, PARALLEL_MIN_FILES + 2):
        shutil.copy(folder / "f000.fit", folder / f"f{i:03d}.fit")
    (folder / "bad.fit").write_bytes(b"")
    serial = read_activity_folder(folder, workers=1)
    parallel = read_activity_folder(folder, workers=2)
    assert len(parallel.sessions) == PARALLEL_MIN_FILES + 2
    pd.testing.assert_frame_equal(serial.sessions, parallel.sessions)
    pd.testing.assert_frame_equal(serial.hr_samples, parallel.hr_samples)
    pd.testing.assert_frame_equal(serial.quarantine, parallel.quarantine)
    filled = read_activity_folder(folder, workers=2, cache_dir=tmp_path / "cache")
    # Identical copies share one cache entry: a worker that meets a copy after another
    # stored it reads the entry, so parses + hits cover every file, with at least one parse.
    assert filled.n_parsed >= 1
    assert filled.n_parsed + filled.n_cached == PARALLEL_MIN_FILES + 3
    again = read_activity_folder(folder, workers=2, cache_dir=tmp_path / "cache")
    assert (again.n_parsed, again.n_cached) == (0, PARALLEL_MIN_FILES + 3)
    pd.testing.assert_frame_equal(serial.sessions, again.sessions)


def test_multisport_fit_gives_one_row_per_session(tmp_path: Path) -> None:
    bike = replace(SHORT, n_points=201, step_m=8.0, start=START + pd.Timedelta(minutes=10),
                   hr=lambda i: 100 + i % 7)
    path = write_fit(tmp_path / "r" / "tri.fit", SHORT, then=(bike, "CYCLING"))
    with pytest.raises(ActivityFileError, match="2 sessions"):
        read_activity_file(path)
    read = read_activity_folder(tmp_path / "r")
    s = read.sessions
    assert s["session_id"].tolist() == ["r/tri.fit", "r/tri.fit#2"]
    assert s["source_line"].tolist() == [1, 2]
    assert s["sport"].tolist() == ["running", "cycling"]
    assert s["distance_km"].tolist() == [0.9, 1.6]
    assert s["n_hr_samples"].tolist() == [301, 201]
    second = read.hr_samples[read.hr_samples["session_id"] == "r/tri.fit#2"]
    np.testing.assert_array_equal(second["elapsed_s"], np.arange(201.0))
    np.testing.assert_array_equal(second["hr_bpm"], [100 + i % 7 for i in range(201)])
