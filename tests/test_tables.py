"""analysis.tables: Table 1 against hand-computed values, the STROBE flow against the audit
(demo and a hostile build), the model tables in words, and escaped writers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import tables
from analysis.clean import MERGE_REASONS
from analysis.errors import KneeloadError
from analysis.paths import processed_dir
from analysis.pipeline import build, load_processed
from analysis.simulate import simulate_dataset, write_dataset

DEMO = processed_dir("demo")


# --- Table 1 on a hand-made cohort ------------------------------------------------------------


def _daily(runner: str, days: int, km: float, runs: int) -> pd.DataFrame:
    """``days`` follow-up days with ``km`` and ``runs`` in total (all on the first day), and
    one lead-in day of 100 km that Table 1 must not count."""
    dates = pd.date_range("2025-01-06", periods=days, freq="D")
    rows = pd.DataFrame({"runner_id": runner, "date": dates, "distance_km": 0.0, "n_runs": 0,
                         "in_follow_up": True})
    rows.loc[0, ["distance_km", "n_runs"]] = [km, runs]
    lead_in = pd.DataFrame({"runner_id": [runner], "date": [dates[0] - pd.Timedelta(days=1)],
                            "distance_km": [100.0], "n_runs": [5], "in_follow_up": [False]})
    return pd.concat([lead_in, rows], ignore_index=True)


@pytest.fixture
def cohort() -> dict[str, pd.DataFrame]:
    """Cohort A: R1 F 20 y 14 days 28 km 6 runs; R2 M 30 y 14 days 56 km 8 runs; R3 F 40 y
    28 days 112 km 20 runs; R5 enrolled, no report (not counted). Cohort B: R4 alone."""
    runners = pd.DataFrame({
        "runner_id": ["R1", "R2", "R3", "R4", "R5"], "cohort": ["A", "A", "A", "B", "A"],
        "sex": ["F", "M", "F", "M", "M"], "age": [20.0, 30.0, 40.0, 50.0, 60.0]})
    daily = pd.concat([_daily("R1", 14, 28.0, 6), _daily("R2", 14, 56.0, 8),
                       _daily("R3", 28, 112.0, 20), _daily("R4", 7, 70.0, 7),
                       _daily("R5", 7, 7.0, 1)], ignore_index=True)
    panel = pd.DataFrame({
        "runner_id": ["R1", "R1", "R2", "R2", "R3", "R3", "R3", "R3", "R4"],
        "pain": [1.0, 4.0, 0.0, 1.0, 3.0, 5.0, 2.0, 0.0, 9.0]})
    panel["pain_any"] = panel["pain"] >= 3.0  # as the build makes it, with threshold 3
    return {"runners": runners, "daily": daily, "panel": panel}


def test_table_one_matches_hand_computed_values(cohort: dict) -> None:
    table = tables.table_one(cohort["runners"], cohort["daily"], cohort["panel"], threshold=3.0,
                             min_cohort_size=2)
    assert list(table.columns) == ["A (n = 3)"]  # B (1 runner) suppressed, R5 has no report
    col = table["A (n = 3)"]
    # by hand: weekly km 14, 28, 28 (quartiles by linear interpolation 21, 28, 28)
    assert col["Distance per week, km, median (IQR)"] == "28.0 (21.0 to 28.0)"
    assert col["Runs per week, median (IQR)"] == "4.0 (3.5 to 4.5)"  # 3, 4, 5
    assert col["Follow-up, days, median (IQR)"] == "14 (14 to 21)"  # 14, 14, 28
    assert col["Age, years, median (IQR)"] == "30 (25 to 35)"
    assert col["Pain reports per runner, median (IQR)"] == "2 (2 to 3)"  # 2, 2, 4
    assert col["Sex: female, n (%)"] == "2 (67 %)"
    assert col["Sex: male, n (%)"] == "1 (33 %)"
    assert col["Pain reports, n"] == "8"
    # the threshold is in the row label; R1 (4) and R3 (3, 5) have pain >= 3
    assert col["Runners with any report of pain >= 3 NRS, n (% of runners)"] == "2 (67 %)"
    assert col["Reports of pain >= 3 NRS, n (% of reports)"] == "3 (38 %)"  # 3 of 8


def test_the_overall_column_counts_only_the_cohorts_shown(cohort: dict) -> None:
    both = tables.table_one(cohort["runners"], cohort["daily"], cohort["panel"], threshold=3.0)
    assert list(both.columns) == ["A (n = 3)", "B (n = 1)", "Overall (n = 4)"]
    assert both.loc["Pain reports, n", "Overall (n = 4)"] == "9"
    assert both.loc["Reports of pain >= 3 NRS, n (% of reports)", "Overall (n = 4)"] == \
        "4 (44 %)"
    shown = tables.table_one(cohort["runners"], cohort["daily"], cohort["panel"],
                             threshold=3.0, min_cohort_size=2)
    assert not shown.apply(lambda c: c.str.contains("50")).any().any()  # no trace of R4's age


def test_a_flag_outcome_counts_its_flag_and_says_so(cohort: dict) -> None:
    panel = cohort["panel"].assign(injury=cohort["panel"]["pain"] > 4)  # R3's 5 only
    table = tables.table_one(cohort["runners"], cohort["daily"], panel, threshold=None,
                             event_column="injury", event_label="injury", min_cohort_size=2)
    # 1 of 8 = 12.5 %, rounded half up
    assert table.loc["Reports of injury, n (% of reports)", "A (n = 3)"] == "1 (13 %)"
    assert not any("NRS" in str(i) for i in table.index)


def test_table_one_reads_pain_any_and_does_not_recompute_it(cohort: dict) -> None:
    """The one definition of "pain present" is the build's pain_any: a panel whose flag says
    otherwise (built with another threshold) is counted by its flag."""
    panel = cohort["panel"].assign(pain_any=False)
    table = tables.table_one(cohort["runners"], cohort["daily"], panel, threshold=3.0,
                             min_cohort_size=2)
    assert table.loc["Reports of pain >= 3 NRS, n (% of reports)", "A (n = 3)"] == "0 (0 %)"


def test_table_one_has_no_row_for_a_characteristic_nobody_has(cohort: dict) -> None:
    """Runners without an age column (or every age missing): no "Age" row of empty cells
    in the table and so none in its HTML, CSV, Markdown and LaTeX (review)."""
    with_age = tables.table_one(cohort["runners"], cohort["daily"], cohort["panel"],
                                threshold=3.0)
    assert "Age, years, median (IQR)" in with_age.index
    for runners in (cohort["runners"].drop(columns="age"),
                    cohort["runners"].assign(age=float("nan"))):
        table = tables.table_one(runners, cohort["daily"], cohort["panel"], threshold=3.0)
        assert "Age, years, median (IQR)" not in table.index
        assert list(table.index) == [i for i in with_age.index if not i.startswith("Age")]
        assert (table != "").any(axis=1).all()


def test_a_sex_row_one_cohort_has_is_filled_in_every_column(cohort: dict) -> None:
    """Sex missing for one runner of A only: B's cell of the "not recorded" row reads
    "0 (0 %)", not an empty cell (review)."""
    runners = cohort["runners"].copy()
    first_a = runners.index[runners["cohort"] == "A"][0]
    runners.loc[first_a, "sex"] = None
    table = tables.table_one(runners, cohort["daily"], cohort["panel"], threshold=3.0)
    row = table.loc[tables.SEX_NOT_RECORDED]
    assert row["A (n = 3)"] == "1 (33 %)" and row["B (n = 1)"] == "0 (0 %)"
    assert (table != "").all().all()


def test_table_one_on_the_demo_agrees_with_counts_json() -> None:
    data = load_processed(DEMO)
    table = tables.table_one(data["runners"], data["daily"], data["panel"], threshold=3.0)
    counts = data["counts"]["cohorts"]
    for name, entry in counts.items():
        column = f"{name} (n = {entry['runners_with_reports']})"
        assert table.loc["Pain reports, n", column] == str(entry["pain_reports"])
    events = int((data["panel"]["pain"] >= 3.0).sum())
    overall = table.columns[-1]
    assert table.loc["Reports of pain >= 3 NRS, n (% of reports)", overall].startswith(
        f"{events} (")


# --- the flow against the audit ------------------------------------------------------------


def _independent_record_counts(processed: Path) -> pd.DataFrame:
    """file x status counts from quarantine.csv and the clean tables' source_file (not from
    cleaning_report.json, which the flow reads)."""
    data = load_processed(processed)
    quarantine = data["quarantine"]
    quarantine = quarantine.assign(status=np.where(quarantine["reason"].isin(MERGE_REASONS),
                                                   "merged", "quarantined"))
    held = quarantine.groupby(["file", "status"]).size()
    kept = pd.concat([data[t]["source_file"] for t in ("runners", "runs", "pain", "shoes")
                      if len(data[t])]).value_counts()
    kept.index = pd.MultiIndex.from_arrays([kept.index, ["kept"] * len(kept)])
    return pd.concat([held, kept]).rename("n").sort_index()


def _check_flow_against_audit(processed: Path) -> tables.Flow:
    data = load_processed(processed)
    flow = tables.participant_flow(data["cleaning_report"], runners=data["runners"],
                                   runs=data["runs"], panel=data["panel"])
    flow.check()
    report = data["cleaning_report"]["files"]
    got = flow.records.groupby(["file", "status"])["n"].sum()
    got = got[got > 0].sort_index()
    np.testing.assert_array_equal(got.to_numpy(), _independent_record_counts(processed)
                                  .reindex(got.index).to_numpy())
    for name, entry in report.items():  # read = kept + merged + quarantined, exactly
        part = flow.records[flow.records["file"] == name]
        assert part["n"].sum() == entry["read"] == flow.read[name]
        assert part.loc[part["status"] == "merged", "n"].sum() == entry["merged"]
        assert part.loc[part["status"] == "quarantined", "n"].sum() == entry["quarantined"]
    merged = flow.records[flow.records["status"] == "merged"]
    assert set(merged["reason"]) <= set(MERGE_REASONS)
    quarantined = flow.records[flow.records["status"] == "quarantined"]
    assert not set(quarantined["reason"]) & set(MERGE_REASONS)
    return flow


def test_the_demo_flow_adds_up_and_merges_are_not_quarantined() -> None:
    flow = _check_flow_against_audit(DEMO)
    counts = json.loads((DEMO / "counts.json").read_text())
    assert dict(flow.runners)["Runners enrolled"] == counts["runners"]
    assert dict(flow.reports)["In the panel"] == counts["panel_rows"]
    duplicates = flow.records[flow.records["reason"] == "exact_duplicate"]
    assert len(duplicates) and set(duplicates["status"]) == {"merged"}
    records = flow.record_table().set_index("File")
    assert records.loc["runs.csv", "Merged"] == counts["merged"] - 1  # 1 merged in pain.csv


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small study with every kind of record problem, and runners who drop out at each
    stage: G1 enrolled with nothing, G2 with runs but no pain report, G3 with pain reports
    but no run (an injured runner who stopped running and kept reporting)."""
    root = tmp_path_factory.mktemp("hostile_flow")
    raw = write_dataset(simulate_dataset(runners_per_cohort=6, weeks=8, cohorts=2, seed=11),
                        root / "raw")
    runs = (raw / "runs.csv").read_text().splitlines()
    pain = (raw / "pain.csv").read_text().splitlines()
    runners = (raw / "runners.csv").read_text().splitlines()
    first = runners[1].split(",")
    ghosts = [",".join([g, *first[1:]]) for g in ("G1", "G2", "G3")]
    runs += [runs[1], runs[2],  # exact duplicates: merged
             "NOBODY,2025-01-07,5.0,30.0,,run",  # unknown runner
             runs[3].replace(runs[3].split(",")[2], "-4.0", 1),  # distance not positive
             "G2,2025-01-08,5.0,30.0,,run", "G2,2025-01-10,6.0,33.0,,run",
             runs[4] + ",extra,fields"]  # malformed row
    cells = pain[1].split(",")
    pain += [pain[1],  # exact duplicate
             ",".join([cells[0], cells[1], "9.0"]),  # same day, higher: supersedes the first
             ",".join([cells[0], "2025-02-03", "11"]),  # out of range
             ",".join([cells[0], "2025-02-10", "sore"]),  # not a number
             *(",".join(["G3", row.split(",")[1], "4"]) for row in pain[-3:])]  # no runs, late
    (raw / "runs.csv").write_text("\n".join(runs) + "\n")
    (raw / "pain.csv").write_text("\n".join(pain) + "\n")
    (raw / "runners.csv").write_text("\n".join([*runners, *ghosts]) + "\n")
    return build(raw, root / "processed").out_dir


def test_the_hostile_flow_adds_up_with_every_reason_in_its_place(hostile: Path) -> None:
    flow = _check_flow_against_audit(hostile)
    status = {(r.file, r.reason): r.status for r in flow.records.itertuples()}
    assert status[("runs.csv", "exact_duplicate")] == "merged"
    assert status[("pain.csv", "same_day_pain_report")] == "merged"
    assert status[("runs.csv", "unknown_runner")] == "quarantined"
    assert status[("pain.csv", "pain_out_of_range")] == "quarantined"
    stages = dict(flow.runners)
    # G1 (nothing) and G2 (runs, no report) are excluded; G3 (reports, no run) is not
    assert stages == {"Runners enrolled": 15, "With pain reports": 13}
    assert flow.notes == {"With pain reports": "of whom 1 logged no usable run"}
    table = flow.runner_table()
    assert table["Excluded"].tolist() == ["", "2"]
    assert table["Note"].tolist() == ["", "of whom 1 logged no usable run"]


def test_the_model_stage_of_the_flow_adds_up(hostile: Path) -> None:
    from analysis.models import fit_model

    data = load_processed(hostile)
    result = fit_model(data["panel"], model="lmm", outcome="pain",
                       exposures=["mileage_jump", "rest_days_7d"])
    flow = tables.participant_flow(data["cleaning_report"], runners=data["runners"],
                                   runs=data["runs"], panel=data["panel"], model=result)
    flow.check()
    reports = dict(flow.reports)
    dropped = sum(n for what, n in flow.reports if what.startswith("Dropped"))
    assert reports["In the panel"] - dropped == reports["In the model"] == result.n_obs
    assert dropped == len(data["panel"]) - len(data["panel"].dropna(
        subset=["pain", "mileage_jump", "rest_days_7d"]))
    assert any("week-over-week mileage change" in what for what, _ in flow.reports)
    assert dict(flow.runners)["In the model"] == result.n_runners


def test_a_runner_with_reports_and_no_run_keeps_the_flow_nested(hostile: Path) -> None:
    """G3 logged no run: its days are rest days, so a model of rest days and weekly km has
    it (a flow that required a run before the reports said 13 -> 12 -> 13 and failed)."""
    from analysis.models import fit_model

    data = load_processed(hostile)
    result = fit_model(data["panel"], model="lmm", outcome="pain",
                       exposures=["rest_days_7d", "km_7d"])
    modelled = set(data["panel"].dropna(subset=["pain", "rest_days_7d", "km_7d"])["runner_id"])
    assert "G3" in modelled and result.n_runners == len(modelled) == 13
    flow = tables.participant_flow(data["cleaning_report"], runners=data["runners"],
                                   runs=data["runs"], panel=data["panel"], model=result)
    flow.check()
    assert flow.runners == [("Runners enrolled", 15), ("With pain reports", 13),
                            ("In the model", 13)]
    assert flow.runner_table()["Excluded"].tolist() == ["", "2", "0"]


def test_per_cohort_flows_add_up_to_the_dataset(hostile: Path) -> None:
    from analysis import reports

    data = load_processed(hostile)
    total: dict[str, int] = {}
    for name in sorted(data["runners"]["cohort"].unique()):
        view = reports.load_cohort(hostile, name, salt="")
        flow = reports.cohort_flow(view)
        for file, n in flow.read.items():
            total[file] = total.get(file, 0) + n
    # rows that name no runner of any cohort (unknown runner, malformed line) are the
    # dataset's only; the quarantine says which
    quarantine = data["quarantine"]
    orphan = quarantine[~quarantine["runner_id"].isin(set(data["runners"]["runner_id"]))]
    for file, entry in data["cleaning_report"]["files"].items():
        assert total.get(file, 0) + int((orphan["file"] == file).sum()) == entry["read"], file


def test_a_flow_that_does_not_add_up_is_refused() -> None:
    bad = {"files": {"runs.csv": {"read": 10, "kept": 8, "merged": 1, "quarantined": 0,
                                  "by_reason": {"exact_duplicate": 1}}}}
    records, read = tables.record_flow(bad)
    flow = tables.Flow([("Runners enrolled", 1)], [], records, read)
    with pytest.raises(KneeloadError, match="read 10 != kept"):
        flow.check()
    wrong = {"files": {"runs.csv": {"read": 2, "kept": 1, "merged": 1, "quarantined": 0,
                                    "by_reason": {"pace_too_fast": 1}}}}
    with pytest.raises(KneeloadError, match="merged 1 but its reasons add up to 0"):
        tables.record_flow(wrong)


# --- model tables --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_fit():
    from analysis.models import fit_model

    panel = load_processed(DEMO)["panel"]
    return fit_model(panel, model="lmm", outcome="pain",
                     exposures=["mileage_jump", "shoe_km", "rest_days_7d"])


def test_the_model_table_reads_in_words_and_reading_steps(demo_fit) -> None:
    table = tables.model_table(demo_fit).set_index("Term")
    row = table.loc["Week-over-week mileage change"]
    assert row["Step"] == "per +10 %"
    per_unit = demo_fit.term("mileage_jump")
    estimate = per_unit["estimate"] * 0.10  # the reading step, by hand
    assert float(row["Difference (NRS points)"]) == pytest.approx(estimate, abs=5e-4)
    low, high = (float(v) for v in row["95 % CI"].split(" to "))
    assert low == pytest.approx(per_unit["ci_low"] * 0.10, abs=5e-4)
    assert high == pytest.approx(per_unit["ci_high"] * 0.10, abs=5e-4)
    assert row["p"] == "< 0.001"  # p is ~1e-20 here: never "0.0" or "0.000"
    text = table.to_string()
    assert "mileage_jump" not in text and "nan" not in text.lower() and "e-" not in text


def test_the_variance_table_has_words_and_no_missing_values(demo_fit) -> None:
    table = tables.variance_table(demo_fit).set_index("Component")
    vc = demo_fit.variance_components
    residual = vc.loc[vc["group"] == "Residual", "sdcor"].iloc[0]
    intercept = vc.loc[vc["var1"] == "Intercept", "sdcor"].iloc[0]
    assert float(table.loc["Residual SD", "Value"]) == pytest.approx(residual, rel=5e-3)
    assert float(table.loc["Between-runner SD of the intercept", "Value"]) == \
        pytest.approx(intercept, rel=5e-3)
    text = table.to_string()
    for raw in ("var1", "var2", "vcov", "sdcor", "None", "NaN", "nan"):
        assert raw not in text


# --- writers -------------------------------------------------------------------------------


HOSTILE_NAME = "<script>alert(1)</script> | *x* [a](javascript:1) 50% & C_1 {b} ~ \\x"


def test_writers_escape_user_text(tmp_path: Path) -> None:
    table = pd.DataFrame({f"{HOSTILE_NAME} (n = 5)": ["1 (20 %)", "< 0.001"]},
                         index=pd.Index(["Runners, n", "p"], name="Characteristic"))
    paths = tables.write_table(table, tmp_path, "t1")
    assert sorted(p.name for p in paths.values()) == ["t1.csv", "t1.md", "t1.tex"]
    md = paths["md"].read_text()
    assert "<script" not in md and "&lt;script>" in md
    assert "\\[a\\](javascript" in md  # brackets escaped: no link
    assert not re.search(r"(?<!\\)\[a(?<!\\)\]\(", md)
    assert md.splitlines()[0].count(" | ") == 1  # the name's pipe does not split a cell
    assert "< 0.001" in md  # no tag can start with "< ", so it stays readable
    tex = paths["tex"].read_text()
    assert r"50\%" in tex and r"\&" in tex and r"C\_1" in tex and r"\{b\}" in tex
    assert pd.read_csv(paths["csv"]).columns[1] == f"{HOSTILE_NAME} (n = 5)"  # CSV: as is
    with pytest.raises(KneeloadError):
        tables.write_table(table, tmp_path, "t2", formats=("docx",))


FORMULA_NAME = "=cmd|' /C calc'!A0"


def test_the_csv_take_away_defuses_formulas_in_headers_and_cells(tmp_path: Path) -> None:
    """A cohort label reaches Table 1's header ("<label> (n = 20)"): a spreadsheet would run
    it (OWASP CSV injection). Headers and cells that would are written with a leading
    quote; formatted numbers keep their minus sign."""
    table = pd.DataFrame({f"{FORMULA_NAME} (n = 5)": ["-0.14", "-0.20 to -0.09", "@SUM(A1)",
                                                      "+12 %", "-1+cmd|' /C x'!A0"],
                          "b": ["3 (2 to 4)", "=HYPERLINK(\"x\")", "1,234", "\u22120.5",
                                "-"]},
                         index=pd.Index(["a", "b", "+c", "d", "e"], name="Characteristic"))
    path = tables.write_table(table, tmp_path, "t", formats=("csv",))["csv"]
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(back.columns) == ["Characteristic", f"'{FORMULA_NAME} (n = 5)", "b"]
    assert back["Characteristic"].tolist() == ["a", "b", "'+c", "d", "e"]
    assert back.iloc[:, 1].tolist() == ["-0.14", "-0.20 to -0.09", "'@SUM(A1)", "+12 %",
                                        "'-1+cmd|' /C x'!A0"]
    assert back["b"].tolist() == ["3 (2 to 4)", "'=HYPERLINK(\"x\")", "1,234", "\u22120.5",
                                  "'-"]
    md = tables.markdown_cell("$y$ costs $5")
    assert md == "\\$y\\$ costs \\$5"  # no math span in GitHub or pandoc Markdown


def test_a_copied_processed_folder_gives_the_same_flow(tmp_path: Path) -> None:
    copy = tmp_path / "demo"
    shutil.copytree(DEMO, copy)
    a = tables.record_flow(json.loads((copy / "cleaning_report.json").read_text()))[0]
    b = tables.record_flow(load_processed(DEMO)["cleaning_report"])[0]
    pd.testing.assert_frame_equal(a, b)


# --- LaTeX: every character prints as itself under pdflatex's default OT1 encoding ---------

#: What each escape prints (the LaTeX2e kernel's text symbols and math relations); written
#: here from the LaTeX documentation, not from analysis.tables.
_PRINTS = [(r"\textbackslash{}", "\\"), (r"\textasciitilde{}", "~"),
           (r"\textasciicircum{}", "^"), (r"\textless{}", "<"), (r"\textgreater{}", ">"),
           (r"\textbar{}", "|"), (r"$\geq$", ">="), (r"$\leq$", "<="), (r"$\pm$", "±"),
           (r"$\times$", "\u00d7"), (r"$\cdot$", "·"), (r"$-$", "\u2212"), ("-{}", "-"),
           (r"\&", "&"), (r"\%", "%"), (r"\$", "$"), (r"\#", "#"), (r"\_", "_"),
           (r"\{", "{"), (r"\}", "}"), (r"\textasciigrave{}", "`")]
#: Characters that must never reach the .tex bare: LaTeX syntax, or OT1 glyph slots that
#: print as something else (< as an inverted exclamation mark, > as ¿, | as an em dash).
_BARE = set("\\{}$&%#_^~<>|`")  # ` prints a left quote in OT1 (and !` ?` are ¡ ¿)


def printed(tex: str) -> str:
    """What pdflatex prints for an escaped cell: each escape read left to right; fails on
    any bare special character."""
    out, i = [], 0
    while i < len(tex):
        for code, glyph in _PRINTS:
            if tex.startswith(code, i):
                out.append(glyph)
                i += len(code)
                break
        else:
            assert tex[i] not in _BARE, f"bare {tex[i]!r} at {i} in {tex!r}"
            assert not tex.startswith("--", i), f"'--' ligature at {i} in {tex!r}"
            out.append(tex[i])
            i += 1
    return "".join(out)


HOSTILE_COHORTS = ["p < 0.001 & >= 3 | 50% $5 #1", r"C_1 {b} ~x ^y \end{tabular}",
                   "a--b <= 2 ≥ ≤", "\\textbf{x}\nnew line", "!`?` ``q'' `tick`"]


def test_latex_prints_hostile_cohort_names_as_written(cohort: dict) -> None:
    runners = cohort["runners"].assign(cohort=cohort["runners"]["cohort"].map(
        {"A": HOSTILE_COHORTS[0], "B": HOSTILE_COHORTS[1]}))
    table = tables.table_one(runners, cohort["daily"], cohort["panel"], threshold=3.0)
    tex = tables.latex_table(table, caption=f"Table 1: {HOSTILE_COHORTS[2]}", label="tab:one")
    body = tex.split(r"\midrule")[0].split(r"\toprule")[1]
    header = [printed(h.strip()) for h in body.strip().removesuffix(r"\\").split(" & ")]
    assert header[1:] == list(table.columns)
    assert {f"{HOSTILE_COHORTS[0]} (n = 3)", f"{HOSTILE_COHORTS[1]} (n = 1)"} < set(header)
    rows = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    first = [printed(c.strip()) for c in rows[0].removesuffix(r"\\").split(" & ")]
    assert first[0] == table.index[0]
    # the row labels with >= (Table 1's threshold rows) print >= and not "¿="
    label = "Runners with any report of pain >= 3 NRS, n (% of runners)"
    assert any(printed(r.split(" & ")[0].strip()) == label for r in rows)
    assert r"pain $\geq$ 3 NRS, n (\% of runners)" in tex
    caption = re.search(r"\\caption\{(.*)\}", tex)
    assert caption is not None and printed(caption.group(1)) == "Table 1: a--b <= 2 >= <="
    assert r"\label{tab:one}" in tex
    with pytest.raises(KneeloadError, match="label"):
        tables.latex_table(table, label="tab:{x}")


@pytest.mark.parametrize("text", [*HOSTILE_COHORTS, "< 0.001", "x > 2", "1--2", "---",
                                  "\\\\", "{}", "$$", "a\tb\r\nc"])
def test_latex_text_prints_every_text_as_written(text: str) -> None:
    want = " ".join(text.split()).replace("≥", ">=").replace("≤", "<=")
    assert printed(tables.latex_text(text)) == want
    assert tables.latex_text(float("nan")) == "" and tables.latex_text(None) == ""


_PDFLATEX = shutil.which("pdflatex")


@pytest.mark.skipif(_PDFLATEX is None, reason="pdflatex not installed (no TeX on this machine)")
def test_the_latex_table_compiles_and_prints_as_written(tmp_path: Path) -> None:
    table = pd.DataFrame({f"{HOSTILE_COHORTS[0]} (n = 5)": ["< 0.001", ">= 3"]},
                         index=pd.Index(["p | q", r"C_1 {b} ~ ^ \x"], name="Characteristic"))
    doc = ("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
           + tables.latex_table(table, caption=HOSTILE_COHORTS[1]) + "\\end{document}\n")
    (tmp_path / "t.tex").write_text(doc, encoding="utf-8")
    import subprocess

    run = subprocess.run([_PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout[-2000:]
    pdftotext = shutil.which("pdftotext")
    if pdftotext is not None:  # the glyphs themselves: no inverted marks, pipes as pipes
        text = subprocess.run([pdftotext, "t.pdf", "-"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, check=True).stdout
        assert "¡" not in text and "¿" not in text
        assert "< 0.001" in text and "p | q" in text
