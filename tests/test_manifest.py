"""analysis.reports.manifest: fingerprints, the manifest file, folder names."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from report_study import Study, make_study

from analysis import reports
from analysis.reports import manifest


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return make_study(tmp_path_factory.mktemp("manifest-study"))


def test_one_cohorts_data_change_changes_only_its_hashes(study: Study, tmp_path: Path) -> None:
    copy = tmp_path / "processed"
    shutil.copytree(study.processed, copy)
    cohorts = [study.normal, study.painless]
    before = reports.cohort_input_hashes(copy, cohorts)
    panel = pd.read_parquet(copy / "panel.parquet")
    row = panel.index[panel["cohort"] == study.normal][0]
    panel.loc[row, "pain"] = panel.loc[row, "pain"] + 0.5
    panel.to_parquet(copy / "panel.parquet", index=False)
    after = reports.cohort_input_hashes(copy, cohorts)
    assert after[study.painless] == before[study.painless]
    changed = {k for k, v in before[study.normal].items() if after[study.normal][k] != v}
    assert changed == {f"panel.parquet[{study.normal}]"}


def test_cohort_folder_names_never_collide() -> None:
    assert reports.safe_name("novice") == "novice"
    names = {reports.safe_name(c) for c in ("a b", "a_b", "a/b", "a.b", "å")}
    assert len(names) == 5
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in names)
    assert reports.safe_name("a b") == "a_b-" + hashlib.sha256(b"a b").hexdigest()[:8]


def _outcome(cohort: str, status: str = "ok") -> reports.CohortOutcome:
    return reports.CohortOutcome(cohort=cohort, status=status, runners=6,
                                 parameters={"seed": 0}, input_sha256={"a": "1"},
                                 template_sha256="t")


def test_manifest_round_trip_and_a_failure_keeps_the_previous_report(tmp_path: Path) -> None:
    assert manifest.load_manifest(tmp_path) == {"cohorts": {}}
    (tmp_path / reports.MANIFEST_NAME).write_text("{not json")
    assert manifest.load_manifest(tmp_path) == {"cohorts": {}}
    record = manifest.load_manifest(tmp_path)
    good = _outcome("c")
    good.finished, good.outputs_sha256 = "2026-01-01T00:00:00+00:00", {"report.html": "h"}
    manifest.update_manifest(tmp_path, record, good)
    on_disk = json.loads((tmp_path / reports.MANIFEST_NAME).read_text())
    assert on_disk["cohorts"]["c"]["fingerprint"] == good.fingerprint
    assert not list(tmp_path.glob(".kneeload-tmp.*"))  # the atomic write left no temporary
    failed = _outcome("c", "failed")
    manifest.update_manifest(tmp_path, manifest.load_manifest(tmp_path), failed)
    entry = manifest.load_manifest(tmp_path)["cohorts"]["c"]
    assert entry["status"] == "failed" and entry["last_ok"] == good.finished
    assert entry["outputs_sha256"] == {"report.html": "h"}


def test_unchanged_needs_the_same_fingerprint_and_intact_files(tmp_path: Path) -> None:
    planned = _outcome("c")
    folder = tmp_path / "c"
    folder.mkdir()
    for name in reports.REPORT_FILES:
        (folder / name).write_text(name)
    previous = {"status": "ok", "fingerprint": planned.fingerprint,
                "outputs_sha256": {n: manifest.sha256_file(folder / n)
                                   for n in reports.REPORT_FILES}}
    assert manifest.unchanged(tmp_path, previous, planned)
    (folder / "report.html").write_text("edited")
    assert not manifest.unchanged(tmp_path, previous, planned)
    other = _outcome("c")
    other.parameters = {"seed": 1}
    assert not manifest.unchanged(tmp_path, {**previous, "fingerprint": other.fingerprint},
                                  planned)
