"""raw -> processed: every file written, counts that add up, raw never touched, atomic swap."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from analysis.errors import InputFileError, KneeloadError
from analysis.outputs import OutputFolderError
from analysis.pipeline import build, input_hashes, load_processed

EXPECTED_FILES = {
    "runners.parquet", "runs.parquet", "pain.parquet", "shoes.parquet", "daily.parquet",
    "panel.parquet", "episodes.parquet", "quarantine.csv", "cleaning_report.json",
    "panel_meta.json", "counts.json", "audit.json",
}


def test_processed_folder_has_every_file(small_processed):
    assert {p.name for p in small_processed.out_dir.iterdir()} == EXPECTED_FILES


def test_counts_match_the_tables(small_processed, small_dataset):
    data = load_processed(small_processed.out_dir)
    counts = data["counts"]
    assert counts["runners"] == len(small_dataset.runners) == len(data["runners"])
    assert counts["runs"] == len(small_dataset.runs) == len(data["runs"])
    assert counts["pain_reports"] == len(small_dataset.pain) == len(data["panel"])
    assert counts["quarantined"] == 0 == len(data["quarantine"])
    per_cohort = counts["cohorts"]
    assert sum(c["runners"] for c in per_cohort.values()) == counts["runners"]
    assert sum(c["panel_rows"] for c in per_cohort.values()) == counts["panel_rows"]


def test_cleaning_report_adds_up_per_file(small_processed):
    report = json.loads((small_processed.out_dir / "cleaning_report.json").read_text())
    assert set(report["files"]) == {"runners.csv", "runs.csv", "pain.csv", "shoes.csv"}
    for name, c in report["files"].items():
        assert c["read"] == c["kept"] + c["merged"] + c["quarantined"], name


def test_meta_records_lag_threshold_version_and_input_hashes(small_processed, small_raw):
    meta = json.loads((small_processed.out_dir / "panel_meta.json").read_text())
    assert meta["exposure_lag_days"] == 7
    assert meta["pain_threshold"] == 3.0
    assert meta["format"] == "canonical"
    assert meta["input_sha256"] == input_hashes(small_raw)
    assert set(meta["input_sha256"]) == {"runners.csv", "runs.csv", "pain.csv", "shoes.csv",
                                         "truth.json"}


def test_panel_reference_day_is_report_day_minus_lag(small_processed):
    panel = pd.read_parquet(small_processed.out_dir / "panel.parquet")
    assert ((panel["date"] - panel["reference_date"]).dt.days == 7).all()
    assert (panel["pain_any"] == (panel["pain"] >= 3)).all()


def test_build_never_writes_under_raw(tmp_path, small_raw, tree_hashes):
    raw = shutil.copytree(small_raw, tmp_path / "raw")
    before = tree_hashes(raw)
    build(raw, tmp_path / "processed")
    assert tree_hashes(raw) == before
    with pytest.raises(OutputFolderError, match="must not be inside the raw"):
        build(raw, raw / "processed")
    assert tree_hashes(raw) == before


def test_a_failed_rebuild_leaves_the_previous_processed_folder(tmp_path, small_raw, tree_hashes):
    raw = shutil.copytree(small_raw, tmp_path / "raw")
    out = tmp_path / "processed"
    build(raw, out)
    good = tree_hashes(out)
    (raw / "runs.csv").write_text("runner_id,date\nX,2025-01-01\n")  # distance_km missing
    with pytest.raises(KneeloadError):
        build(raw, out)
    assert tree_hashes(out) == good
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_lag_zero_must_be_asked_for_and_is_recorded(tmp_path, small_raw):
    summary = build(small_raw, tmp_path / "p0", exposure_lag_days=0)
    panel = pd.read_parquet(summary.out_dir / "panel.parquet")
    assert (panel["date"] == panel["reference_date"]).all()
    assert summary.meta["exposure_lag_days"] == 0


def test_missing_raw_folder_is_a_user_error(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        build(tmp_path / "nope", tmp_path / "out")


def test_load_processed_refuses_a_folder_that_is_not_processed(tmp_path):
    with pytest.raises(InputFileError, match="kneeload build"):
        load_processed(tmp_path)


def test_build_refuses_an_output_folder_above_the_raw_data(tmp_path, small_raw, tree_hashes):
    project = tmp_path / "project"
    raw = shutil.copytree(small_raw, project / "raw" / "study")
    before = tree_hashes(project)
    for out in (project, project / "raw"):
        with pytest.raises(OutputFolderError, match="must not contain the raw data"):
            build(raw, out)
    assert tree_hashes(project) == before


def test_build_refuses_to_replace_a_folder_it_did_not_write(tmp_path, small_raw):
    unrelated = tmp_path / "thesis"
    unrelated.mkdir()
    (unrelated / "chapter1.tex").write_text("precious")
    with pytest.raises(OutputFolderError, match=r"is not kneeload.s \(no panel_meta\.json\)"):
        build(small_raw, unrelated)
    assert (unrelated / "chapter1.tex").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build(small_raw, empty).out_dir == empty  # an empty folder is fine


def test_pseudonymised_build_hashes_export_folder_names(tmp_path, monkeypatch):
    """Strava exports are one folder per runner, often named after the person."""
    export = Path(__file__).parent / "fixtures" / "ingest" / "strava_export"
    monkeypatch.setenv("KNEELOAD_ID_SALT", "test-salt")
    summary = build(export, tmp_path / "p", format="strava", pseudonymise=True,
                    today=date(2026, 1, 1))
    written = "\n".join(p.read_text(errors="ignore") for p in summary.out_dir.glob("*.json"))
    written += (summary.out_dir / "quarantine.csv").read_text()
    for folder in (p.name for p in export.iterdir() if p.is_dir()):
        assert folder not in written
    assert "raw_dir" not in summary.meta
    assert len(summary.meta["input_sha256"]) == len(input_hashes(export))


def _written_forms(name: str) -> list[bytes]:
    """How a name can stand in an output file: as is, JSON-escaped, as repr writes it."""
    return [name.encode(), json.dumps(name)[1:-1].encode(), repr(name)[1:-1].encode()]


@pytest.mark.parametrize("date_format", [None, "%d/%m/%Y"])
def test_a_strava_date_without_a_time_is_the_day_as_written(tmp_path: Path,
                                                           date_format: str | None) -> None:
    # review: a date-only cell was taken as UTC midnight and converted, so west of UTC every
    # such run moved a day back, and two of them on one day were merged as one
    raw = tmp_path / "raw"
    (raw / "ann").mkdir(parents=True)
    days = (["2024-03-05", "2024-03-05", "2024-03-06"] if date_format is None
            else ["05/03/2024", "05/03/2024", "06/03/2024"])
    (raw / "ann" / "activities.csv").write_text(
        "Activity ID,Activity Date,Activity Type,Distance,Elapsed Time,Moving Time\n"
        + "".join(f"{i},{d},Run,{k},1800,1800\n"
                  for i, (d, k) in enumerate(zip(days, (8.0, 8.1, 5.0), strict=True))),
        encoding="utf-8")
    pd.DataFrame({"runner_id": ["ann"], "date": ["2024-03-10"], "pain": [1]}).to_csv(
        raw / "pain.csv", index=False)
    build(raw, tmp_path / "out", format="strava", date_format=date_format,
          timezone="America/New_York", today=date(2025, 1, 1))
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert list(runs["date"].dt.strftime("%Y-%m-%d")) == ["2024-03-05", "2024-03-05",
                                                         "2024-03-06"]
    assert runs["distance_km"].tolist() == [8.0, 8.1, 5.0]  # no time: no two-device merge


def test_export_dates_missing_or_partial_keep_their_reason_and_text(tmp_path: Path) -> None:
    # review: a missing token (null) lost its text in the quarantine, and a partial date of
    # an export became unparseable_date
    raw = tmp_path / "raw"
    (raw / "ann").mkdir(parents=True)
    cells = ['"Mar 5, 2024, 6:30:00 AM"', "null", "2024-03", '"Mar 6, 2024, 6:30:00 AM"']
    (raw / "ann" / "activities.csv").write_text(
        "Activity ID,Activity Date,Activity Type,Distance,Elapsed Time,Moving Time\n"
        + "".join(f"{i},{c},Run,5.0,1800,1800\n" for i, c in enumerate(cells)),
        encoding="utf-8")
    pd.DataFrame({"runner_id": ["ann"], "date": ["2024-03-10"], "pain": [1]}).to_csv(
        raw / "pain.csv", index=False)
    build(raw, tmp_path / "out", format="strava", today=date(2025, 1, 1))
    quarantine = pd.read_csv(tmp_path / "out" / "quarantine.csv", dtype=str,
                             keep_default_na=False)
    assert quarantine[["line", "value", "reason"]].to_numpy().tolist() == [
        ["3", "null", "missing_value"], ["4", "2024-03", "partial_date"]]


def test_date_only_runs_of_a_garmin_file_stay_untimed_beside_a_typed_file(tmp_path: Path):
    # review: a file with one non-ISO cell has no has-a-time column; concatenated with a
    # file that has one, its rows were read as timed (NaN as True) and two date-only runs
    # of one day merged as a two-device duplicate
    raw = tmp_path / "raw"
    for folder, rows in (("a", [("2024-03-06 07:00:00", 5)]),
                         ("b", [("2024-03-06", 8), ("2024-03-06", 8.1), ("06/03/2024", 3)])):
        (raw / folder).mkdir(parents=True)
        (raw / folder / "Activities.csv").write_text(
            _GARMIN_HEADER + "".join(_garmin_run(d, k) for d, k in rows), encoding="utf-8")
    pd.DataFrame({"runner_id": ["a", "b"], "date": ["2024-03-10"] * 2, "pain": [1, 1]}).to_csv(
        raw / "pain.csv", index=False)
    build(raw, tmp_path / "out", format="garmin", today=date(2025, 1, 1))
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert runs.loc[runs["runner_id"] == "b", "distance_km"].tolist() == [8.0, 8.1]


@pytest.mark.parametrize(("export", "runner", "folder", "rename"), [
    ("strava_export", "alice", "alice", None), ("garmin_export", "carol", "carol", None),
    ("strava_export", "alice", 'Zoë "Z" O\'Neil', None),
    ("garmin_export", "carol", "back\\slash", None),
    ("garmin_export", "carol", "Ann\u200bMarie", None),
    ("strava_export", "alice", "alice", "activities_Jan'25.csv"),
    ("garmin_export", "carol", "Carol Smith", "Activities_o'clock.csv")])
def test_a_pseudonymised_single_export_leaves_no_runner_name(tmp_path, monkeypatch, export,
                                                             runner, folder, rename):
    """One runner's export directly in the raw folder: the runner is named after that
    folder, which is no folder part of any file name (review: panel_meta's dataset and the
    format note kept the name; then a name whose repr has escapes, quotes or backslashes).
    No output file holds it in any written form; the note names the pseudonym."""
    from analysis.privacy import pseudonym

    raw = tmp_path / folder
    shutil.copytree(Path(__file__).parent / "fixtures" / "ingest" / export / runner, raw)
    if rename:  # an apostrophe in the file name, before the quoted name in the note
        next(raw.glob("*.csv")).rename(raw / rename)
    monkeypatch.setenv("KNEELOAD_ID_SALT", "test-salt")
    summary = build(raw, tmp_path / "p", pseudonymise=True, today=date(2026, 1, 1))
    hidden = pseudonym(folder, salt="test-salt")
    for path in summary.out_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for form in _written_forms(folder):
                assert form not in data, (path.name, form)
    assert summary.meta["dataset"] == hidden
    assert load_processed(summary.out_dir)["runners"]["runner_id"].tolist() == [hidden]
    assert any(f"(runner '{hidden}')" in note for note in summary.cleaning["notes"])


def test_pseudonymised_folders_whose_names_overlap_get_their_own_pseudonyms(tmp_path,
                                                                           monkeypatch):
    """Review: folders aron and ron; ron/ was replaced inside aron/ in set order, leaving
    'a' + ron's pseudonym in the note."""
    from analysis.privacy import pseudonym

    carol = Path(__file__).parent / "fixtures" / "ingest" / "garmin_export" / "carol"
    for name in ("aron", "ron"):
        shutil.copytree(carol, tmp_path / "raw" / name)
    monkeypatch.setenv("KNEELOAD_ID_SALT", "test-salt")
    summary = build(tmp_path / "raw", tmp_path / "p", pseudonymise=True,
                    today=date(2026, 1, 1))
    notes = " ".join(summary.cleaning["notes"])
    aron, ron = (pseudonym(n, salt="test-salt") for n in ("aron", "ron"))
    assert f"{aron}/Activities.csv" in notes and "aron" not in notes and "ron/" not in notes
    assert set(load_processed(summary.out_dir)["runners"]["runner_id"]) == {aron, ron}


def test_pain_threshold_is_defined_once_and_recorded(tmp_path, small_raw):
    """One threshold: analysis.defaults holds it, exposures/pipeline/CLI read it, and the
    build records the one it used in panel_meta.json (what later steps should read)."""
    import analysis.exposures as ex
    from analysis import defaults

    assert ex.DEFAULT_PAIN_THRESHOLD is defaults.DEFAULT_PAIN_THRESHOLD == 3.0
    summary = build(small_raw, tmp_path / "out", pain_threshold=5.0)
    data = load_processed(summary.out_dir)
    assert data["panel_meta"]["pain_threshold"] == 5.0
    assert (data["panel"]["pain_any"] == (data["panel"]["pain"] >= 5.0)).all()


def test_input_hashes_are_the_one_file_fingerprint(small_raw):
    """pipeline and the reports manifest share privacy.sha256_file; checked against hashlib."""
    import hashlib

    hashes = input_hashes(small_raw)
    for name, digest in hashes.items():
        assert digest == hashlib.sha256((small_raw / name).read_bytes()).hexdigest()


def test_each_table_is_one_parquet_write_with_text_dictionaries(small_processed):
    """One row group per table (one write), dictionary-encoded text compressed with snappy,
    uncompressed number columns, and statistics on the non-text columns only."""
    import pyarrow.parquet as pq

    from analysis import pipeline

    for name in ("runs", "pain", "daily", "panel"):
        meta = pq.ParquetFile(small_processed.out_dir / f"{name}.parquet").metadata
        assert meta.num_row_groups == 1, name
        group = meta.row_group(0)
        columns = {group.column(i).path_in_schema: group.column(i)
                   for i in range(group.num_columns)}
        runner = columns["runner_id"]
        assert "RLE_DICTIONARY" in runner.encodings and not runner.is_stats_set, name
        assert runner.compression == pipeline.PARQUET_TEXT_COMPRESSION.upper(), name
        assert columns["date"].is_stats_set, name
    km = pq.ParquetFile(small_processed.out_dir / "daily.parquet").metadata.row_group(0)
    km_col = next(km.column(i) for i in range(km.num_columns)
                  if km.column(i).path_in_schema == "km_7d")
    assert km_col.compression == "UNCOMPRESSED" and km_col.is_stats_set


def test_the_arrow_table_written_is_from_pandas_table(tmp_path):
    """_arrow_table (float64 validity from numpy) is pyarrow's from_pandas table: the same
    values, nulls and schema with its pandas metadata, for every dtype a processed table
    holds (NaN, inf, -0.0, a float column that is a strided view of a 2-d block, an empty
    table), and the Parquet file reads back as the frame."""
    import numpy as np
    import pyarrow as pa

    from analysis import pipeline

    rng = np.random.default_rng(11)
    n = 1_000
    floats = rng.normal(size=(n, 3))
    floats[rng.random((n, 3)) < 0.2] = np.nan
    floats[:5, 0] = [np.inf, -np.inf, -0.0, 0.0, np.nan]
    block = pd.DataFrame(floats, columns=["a", "b", "c"])  # one 2-d block: strided columns
    frame = block.assign(
        runner_id=pd.array([f"R{i % 7}" if i % 13 else None for i in range(n)], dtype="str"),
        date=pd.Series(pd.date_range("2025-01-01", periods=n, freq="D"),
                       dtype="datetime64[us]").where(rng.random(n) > 0.1),
        count=rng.integers(0, 5, n), flag=rng.random(n) < 0.5,
        maybe=pd.array([True, None, False] * (n // 3) + [True], dtype="boolean"),
        band=pd.Categorical.from_codes(rng.integers(-1, 3, n), ["<10%", "10-30%", ">30%"],
                                       ordered=True),
        all_missing=np.full(n, np.nan), none_missing=np.arange(n, dtype=float))
    for table in (frame, frame.iloc[:0], frame[["a"]]):
        expected = pa.Table.from_pandas(table, preserve_index=False)
        got = pipeline._arrow_table(table)
        assert got.schema.equals(expected.schema, check_metadata=True)
        assert got.equals(expected)
        for name in table.columns:
            assert got[name].null_count == expected[name].null_count, name
    path = tmp_path / "t.parquet"
    pipeline._write_parquet(frame, path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
    # a column Arrow cannot take fails as from_pandas fails: its message names the column
    bad = pd.DataFrame({"ok": [1.0, 2.0], "mixed": [b"x", 1]})
    with pytest.raises(pa.ArrowTypeError) as raised:
        pipeline._arrow_table(bad)
    assert "Conversion failed for column mixed" in str(raised.value)


def test_number_columns_keep_a_dictionary_only_while_it_is_small(tmp_path):
    """A number column with few distinct values is written as dictionary indices (a fraction
    of its 8 bytes a value); one with a distinct value per row falls back to plain pages
    once its dictionary outgrows PARQUET_DICTIONARY_PAGE_BYTES (about its 8 bytes a value,
    not a dictionary as big as the column); every value and dtype reads back the same."""
    import numpy as np
    import pyarrow.parquet as pq

    from analysis import pipeline

    n = 200_000
    rng = np.random.default_rng(3)
    distinct = pipeline.PARQUET_DICTIONARY_PAGE_BYTES // 8
    frame = pd.DataFrame({
        "runner_id": pd.array(np.char.add("R", (np.arange(n) // 365).astype(str)), dtype="str"),
        "rest_days_7d": rng.integers(0, 8, n).astype(float),
        "acwr": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
        "shoe_km": rng.integers(0, distinct * 4, n) / 10.0,
    })
    path = tmp_path / "t.parquet"
    pipeline._write_parquet(frame, path)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, frame)
    group = pq.ParquetFile(path).metadata.row_group(0)
    size = {group.column(i).path_in_schema: group.column(i).total_compressed_size
            for i in range(group.num_columns)}
    codec = {group.column(i).path_in_schema: group.column(i).compression
             for i in range(group.num_columns)}
    assert codec == {"runner_id": "SNAPPY", "rest_days_7d": "UNCOMPRESSED",
                     "acwr": "UNCOMPRESSED", "shoe_km": "UNCOMPRESSED"}
    assert size["rest_days_7d"] < n  # 3-bit indices, not 8 bytes a value
    assert 0.85 * 8 * n < size["acwr"] / 0.9 < 1.1 * 8 * n  # plain: nulls take no bytes
    # more distinct values than the dictionary page holds: plain after the first pages
    assert 0.8 * 8 * n < size["shoe_km"] < 1.1 * 8 * n


def test_the_build_asks_for_no_huge_pages_and_restores_each_setting(tmp_path, small_raw,
                                                                      monkeypatch):
    """Inside the build numpy advises no huge pages and pyarrow allocates from the system
    heap (memory.BUILD_NUMPY_HUGEPAGES, BUILD_ARROW_POOL); afterwards the caller's numpy
    setting and pyarrow pool are back, whichever they were."""
    import numpy as np
    import pyarrow as pa

    from analysis import pipeline

    switch = np._core.multiarray._set_madvise_hugepage
    seen: list[tuple[bool, str]] = []
    real = pipeline.build_panel

    def spy(*args, **kwargs):
        state = switch(True)
        switch(state)
        seen.append((state, pa.default_memory_pool().backend_name))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "build_panel", spy)
    caller = switch(True)
    pool = pa.default_memory_pool().backend_name
    try:
        for i, setting in enumerate((True, False)):
            switch(setting)
            build(small_raw, tmp_path / f"out{i}")
            assert switch(setting) is setting  # the caller's setting is back
            assert pa.default_memory_pool().backend_name == pool
    finally:
        switch(caller)
    assert seen == [(False, "system"), (False, "system")]


def test_a_failed_or_overlapping_build_leaves_the_callers_settings(tmp_path, small_raw,
                                                                   monkeypatch):
    """A build that raises inside restores numpy's huge-page setting and pyarrow's pool; two
    builds overlapping on threads keep the build settings until the last ends and then
    restore the caller's (found by review: each restored what it found on entry, so the
    caller's setting was lost)."""
    import threading

    import numpy as np
    import pyarrow as pa

    from analysis import pipeline

    switch = np._core.multiarray._set_madvise_hugepage
    real = pipeline.build_panel
    caller = switch(True)
    pool = pa.default_memory_pool().backend_name

    def state() -> tuple[bool, str]:
        setting = switch(True)
        switch(setting)
        return setting, pa.default_memory_pool().backend_name

    try:
        def failing(*args, **kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(pipeline, "build_panel", failing)
        with pytest.raises(RuntimeError, match="boom"):
            build(small_raw, tmp_path / "failed")
        assert state() == (True, pool)

        a_in, b_in, a_done = threading.Event(), threading.Event(), threading.Event()
        seen: list[tuple[bool, str]] = []

        def overlapping(*args, **kwargs):
            if not a_in.is_set():  # build a: starts first, ends while b is inside
                a_in.set()
                assert b_in.wait(60)
            else:  # build b: looks at the settings once a has ended
                b_in.set()
                assert a_done.wait(60)
                seen.append(state())
            return real(*args, **kwargs)

        monkeypatch.setattr(pipeline, "build_panel", overlapping)
        a = threading.Thread(target=build, args=(small_raw, tmp_path / "a"))
        b = threading.Thread(target=build, args=(small_raw, tmp_path / "b"))
        a.start()
        assert a_in.wait(60)
        b.start()
        a.join(60)
        a_done.set()
        b.join(60)
        assert seen == [(False, "system")]  # b still builds with the build settings
        assert state() == (True, pool)  # and the caller's are back after both
        assert (tmp_path / "b" / "panel.parquet").is_file()
    finally:
        switch(caller)


def test_build_imports_neither_pandera_nor_the_model_stack(tmp_path, small_raw):
    """The build checks its tables with schemas.check_table (pandera's first validation
    costs ~0.5 s per process) and fits nothing, so a build process imports none of them."""
    import subprocess
    import sys

    code = ("import sys; from analysis.pipeline import build; "
            f"build({str(small_raw)!r}, {str(tmp_path / 'out')!r}); "
            "print(sorted(m for m in ('pandera', 'scipy', 'statsmodels', 'gpboost', "
            "'hypothesis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_per_cohort_counts_agree_with_a_groupby(small_processed):
    data = load_processed(small_processed.out_dir)
    cohort = data["runners"].set_index("runner_id")["cohort"]
    want = {}
    for table, col in ((data["runs"], "runs"), (data["pain"], "pain_reports"),
                       (data["panel"], "panel_rows")):
        for c, n in table["runner_id"].map(cohort).value_counts().items():
            want.setdefault(c, {})[col] = int(n)
    for c, n in data["panel"].groupby(data["panel"]["runner_id"].map(cohort))[
            "runner_id"].nunique().items():
        want[c]["runners_with_reports"] = int(n)
    for c, n in cohort.value_counts().items():
        want[c]["runners"] = int(n)
    assert data["counts"]["cohorts"] == want
    assert len(want) >= 2  # the small dataset has several cohorts


def _numeric_strava(folder: Path) -> Path:
    """One runner's Strava export with numeric, ambiguous dates (day and month <= 12)."""
    (folder / "ann").mkdir(parents=True)
    (folder / "ann" / "activities.csv").write_text(
        "Activity ID,Activity Date,Activity Type,Distance,Elapsed Time,Moving Time\n"
        "1,05/03/2024 06:30:00,Run,5.0,1800,1800\n"
        "2,07/03/2024 06:30:00,Run,6.0,2100,2100\n", encoding="utf-8")
    pd.DataFrame({"runner_id": ["ann"], "date": ["2024-03-10"], "pain": [1]}).to_csv(
        folder / "pain.csv", index=False)
    return folder


def test_build_passes_dayfirst_and_date_format_to_the_readers(tmp_path: Path) -> None:
    raw = _numeric_strava(tmp_path / "raw")
    with pytest.raises(KneeloadError, match="--dayfirst"):
        build(raw, tmp_path / "p0", today=date(2025, 1, 1))
    for out, options in (("p1", {"dayfirst": True}),
                         ("p2", {"date_format": "%d/%m/%Y %H:%M:%S"})):
        build(raw, tmp_path / out, today=date(2025, 1, 1), **options)
        runs = pd.read_parquet(tmp_path / out / "runs.parquet")
        assert list(runs["date"].dt.strftime("%Y-%m-%d")) == ["2024-03-05", "2024-03-07"]
    build(raw, tmp_path / "p3", today=date(2025, 1, 1), dayfirst=False)  # 3 May, 3 July
    runs = pd.read_parquet(tmp_path / "p3" / "runs.parquet")
    assert list(runs["date"].dt.strftime("%Y-%m-%d")) == ["2024-05-03", "2024-07-03"]


_GARMIN_HEADER = ("Activity Type,Date,Favorite,Title,Distance,Calories,Time,Avg HR,"
                  "Moving Time,Elapsed Time\n")


def _garmin_run(day: str, km: float) -> str:
    return f'Running,{day},false,"x","{km:.2f}","500","00:40:00","150","00:40:00","00:41:00"\n'


@pytest.mark.parametrize("fmt", ["garmin", "strava"])
def test_a_date_the_format_refuses_is_quarantined_alone(tmp_path: Path, fmt: str) -> None:
    # review: with --date-format, one date the format refused sent the Garmin column to
    # cleaning as text, which read it as ISO 8601: every run was lost (exit 2); and a
    # refused cell that happened to be ISO 8601 was then kept (Strava: as local time,
    # without the UTC conversion). Now each refused cell is quarantined with its text, an
    # empty one is missing, and 00:00 under a format with a time is a time of day (the
    # two-device rule merges the second 00:00 run as it does at 07:00)
    raw = tmp_path / "raw"
    (raw / "dave").mkdir(parents=True)
    days = ["05/03/2024 07:00", "31/02/2024 07:00", "06/03/2024 00:00", "06/03/2024 00:00",
            "2024-03-07 07:00", "", "07/03/2024 18:45"]
    km = [10, 6, 8, 8.1, 5, 4, 6]
    if fmt == "garmin":
        (raw / "dave" / "Activities.csv").write_text(_GARMIN_HEADER + "".join(
            _garmin_run(d, k) for d, k in zip(days, km, strict=True)), encoding="utf-8")
        date_format = "%d/%m/%Y %H:%M"
    else:
        days = [d + ":00" if d else d for d in days]
        (raw / "dave" / "activities.csv").write_text(
            "Activity ID,Activity Date,Activity Type,Distance,Elapsed Time,Moving Time\n"
            + "".join(f"{i},{d},Run,{k},1800,1800\n"
                      for i, (d, k) in enumerate(zip(days, km, strict=True))),
            encoding="utf-8")
        date_format = "%d/%m/%Y %H:%M:%S"
    pd.DataFrame({"runner_id": ["dave"], "date": ["2024-03-10"], "pain": [1]}).to_csv(
        raw / "pain.csv", index=False)
    out = tmp_path / "out"
    summary = build(raw, out, format=fmt, date_format=date_format, today=date(2025, 1, 1))
    runs = pd.read_parquet(out / "runs.parquet")
    assert list(runs["date"].dt.strftime("%Y-%m-%d")) == ["2024-03-05", "2024-03-06",
                                                         "2024-03-07"]
    assert runs["distance_km"].tolist() == [10.0, 8.0, 6.0]
    assert runs["source_line"].tolist() == [2, 4, 8]
    quarantine = pd.read_csv(out / "quarantine.csv", dtype=str, keep_default_na=False)
    assert quarantine[["line", "column", "value", "reason"]].to_numpy().tolist() == [
        ["3", "date", days[1], "unparseable_date"],
        ["5", "distance_km", "8.1", "two_device_duplicate"],
        ["6", "date", days[4], "unparseable_date"],
        ["7", "date", "", "missing_value"]]
    name = "Activities.csv" if fmt == "garmin" else "activities.csv"
    export = summary.cleaning["files"][f"dave/{name}"]
    assert (export["read"], export["kept"], export["merged"], export["quarantined"]) == (
        7, 3, 1, 3)
    assert "date_as_written" not in runs.columns


def test_outcome_and_default_exposures_are_in_panel_meta(small_processed) -> None:
    # the small canonical dataset has shoes: nothing is left out, the outcome is NRS pain
    meta = json.loads((small_processed.out_dir / "panel_meta.json").read_text())
    assert meta["outcome"] == "nrs"
    assert meta["default_exposures"] == ["mileage_jump", "shoe_km", "rest_days_7d"]
    assert meta["exposures_left_out"] == {}


@pytest.mark.parametrize(("answers", "outcome"), [
    # option numbers 2, 1, 2, 1 score 8 + 0 + 8 + 0 = 16 (Clarsen et al. 2020 O2 scores)
    (("2", "1", "2", "1"), "ostrc"),
    (("", "", "", ""), "nrs"),         # OSTRC columns without answers: NRS pain
])
def test_an_ostrc_diary_declares_the_ostrc_outcome(tmp_path: Path, answers: tuple[str, ...],
                                                  outcome: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "runners.csv").write_text("runner_id,cohort\nR1,A\n", encoding="utf-8")
    (raw / "runs.csv").write_text("runner_id,date,distance_km\nR1,2024-01-01,5\n",
                                  encoding="utf-8")
    (raw / "pain.csv").write_text(
        "runner_id,date,pain,ostrc_q1,ostrc_q2,ostrc_q3,ostrc_q4\n"
        f"R1,2024-01-08,2,{','.join(answers)}\n", encoding="utf-8")
    summary = build(raw, tmp_path / "out", today=date(2025, 1, 1))
    assert summary.meta["outcome"] == outcome
    if outcome == "ostrc":
        panel = pd.read_parquet(tmp_path / "out" / "panel.parquet")
        assert panel["ostrc_severity"].tolist() == [16.0]


@pytest.mark.parametrize("raw", ["small", "exposures"])
def test_build_episodes_equal_episodes_of_the_whole_panel(raw, small_processed, tmp_path):
    """The build hands ``episodes`` only the report columns it reads (memory and time,
    issue 11); its table must be what the whole panel gives. The exposure fixture carries
    OSTRC answers, so the columns found by prefix are exercised too."""
    from analysis.episodes import episodes

    if raw == "small":
        out = small_processed.out_dir
    else:
        out = tmp_path / "processed"
        build(Path(__file__).parent / "fixtures" / "exposures", out)
    data = load_processed(out)
    panel = data["panel"]
    if raw == "exposures":
        assert any(c.startswith("ostrc_") for c in panel.columns)
    expected = episodes(panel, data["daily"], threshold=data["panel_meta"]["pain_threshold"])
    built = pd.read_parquet(out / "episodes.parquet")
    assert len(built) > 0
    pd.testing.assert_frame_equal(built, expected, check_exact=True)


def test_rebuild_panel_equals_a_second_build_with_those_settings(small_processed, small_raw,
                                                                 tmp_path):
    from analysis.pipeline import rebuild_panel

    processed = load_processed(small_processed.out_dir)
    pd.testing.assert_frame_equal(rebuild_panel(processed), processed["panel"])
    settings = {"exposure_lag_days": 3, "pain_threshold": 2.0, "lags": (1,),
                "unlogged_gaps": "missing"}
    second = build(small_raw, tmp_path / "second", **settings)
    expected = pd.read_parquet(second.out_dir / "panel.parquet")
    pd.testing.assert_frame_equal(rebuild_panel(processed, **settings), expected)
    with pytest.raises(InputFileError, match="cannot change decay"):
        rebuild_panel(processed, decay="banister")


def test_json_records_write_the_same_json_as_to_dict_records():
    import numpy as np

    from analysis.pipeline import _json_default, _json_records

    frame = pd.DataFrame({
        "runner_id": pd.array(["a", None, "c"], dtype="str"),
        "age_years": [20.0, np.nan, 3.5], "n": np.array([1, 2, 3]),
        "flag": [True, False, True], "mixed": np.array([1, "x", None], dtype=object),
        "source": pd.Categorical(["max", "default", None]),
        "day": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),
        "hr_max": pd.array([190, None, 181], dtype="Int64"),
        "ratio": pd.array([0.5, None, 1.5], dtype="Float64"),
        "told": pd.array([True, None, False], dtype="boolean"),
        "note": pd.array(["x", None, "z"], dtype="string[python]"),
        "arrow": pd.array(["x", None, "z"], dtype="string[pyarrow]")})
    twice = frame[["n", "age_years"]].set_axis(["n", "n"], axis=1)
    for table in (frame, frame.iloc[:0], frame[[]], frame.iloc[[2, 0]]):
        expected = json.dumps(table.to_dict(orient="records"), default=_json_default,
                              sort_keys=True)
        records = _json_records(table)
        assert json.dumps(records, default=_json_default, sort_keys=True) == expected
        # Python values: the encoder's fallback is not needed per cell
        assert all(not hasattr(v, "item") for row in records for v in row.values()
                   if not isinstance(v, pd.Timestamp))
    assert _json_records(frame)[1]["hr_max"] is None  # null, as to_dict writes it
    with pytest.warns(UserWarning, match="not unique"):  # pandas' own warning, kept
        kept_last = _json_records(twice)
    assert json.dumps(kept_last) == '[{"n": 20.0}, {"n": NaN}, {"n": 3.5}]'


def test_the_build_checks_the_daily_and_panel_contracts_before_writing_them(tmp_path,
                                                                            small_raw,
                                                                            monkeypatch):
    """Each table's contract at the boundary, once, before its Parquet write starts (the
    daily table's now inside build_panel, as soon as the table is complete)."""
    from analysis import pipeline, schemas

    events: list[str] = []
    check, write = schemas.check_table, pipeline._write_parquet
    names = {id(schemas.DAILY_CONTRACT): "daily", id(schemas.PANEL_CONTRACT): "panel"}

    def checked(table, contract, *args, **kwargs):
        if id(contract) in names:
            events.append(f"check {names[id(contract)]}")
        return check(table, contract, *args, **kwargs)

    def written(table, path):
        events.append(f"write {path.stem}")  # the writer thread: after its submit
        return write(table, path)

    monkeypatch.setattr(schemas, "check_table", checked)
    monkeypatch.setattr(pipeline, "_write_parquet", written)
    build(small_raw, tmp_path / "out")
    for name in ("daily", "panel"):
        assert events.count(f"check {name}") == 1
        assert events.index(f"check {name}") < events.index(f"write {name}")
