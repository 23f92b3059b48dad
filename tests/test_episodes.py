"""Pain episodes and time at risk against a hand-computed fixture and a plain-Python reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.defaults import DEFAULT_PAIN_THRESHOLD
from analysis.episodes import (
    AT_RISK_COLUMNS,
    EPISODE_COLUMNS,
    RESOLVE_AFTER_REPORTS,
    at_risk,
    episodes,
    mark_reports,
)
from analysis.errors import ModelSpecError

FIXTURE = Path(__file__).parent / "fixtures" / "episodes"
THRESHOLD = DEFAULT_PAIN_THRESHOLD  # the fixture's pain_any was written with pain >= 3
DAY0 = pd.Timestamp("2026-01-04")


def fixture_reports() -> pd.DataFrame:
    reports = pd.read_csv(FIXTURE / "reports.csv", parse_dates=["date"])
    return reports.assign(ostrc_substantial=reports["ostrc_substantial"].astype("boolean"))


def fixture_daily() -> pd.DataFrame:
    return pd.read_csv(FIXTURE / "daily.csv", parse_dates=["date"])


def day(k: int) -> pd.Timestamp:
    return DAY0 + pd.Timedelta(days=k)


def test_hand_fixture_episodes_exactly():
    got = episodes(fixture_reports().sample(frac=1.0, random_state=1), fixture_daily(),
                   threshold=THRESHOLD)
    assert tuple(got.columns) == EPISODE_COLUMNS
    want = pd.read_csv(FIXTURE / "expected_episodes.csv",
                       parse_dates=["onset", "last_pain", "end", "resolved_on"])
    assert RESOLVE_AFTER_REPORTS == 2  # the fixture was worked out for two reports
    for col in want.columns:
        mine, theirs = got[col], want[col]
        if col == "ostrc_substantial":
            assert mine.astype(object).where(mine.notna(), None).tolist() == \
                theirs.astype("boolean").astype(object).where(theirs.notna(), None).tolist()
        elif theirs.dtype.kind == "f":
            np.testing.assert_allclose(mine.to_numpy(float), theirs.to_numpy(float),
                                       rtol=1e-12, err_msg=col)
        elif theirs.dtype.kind == "M":
            assert pd.to_datetime(mine).tolist() == theirs.tolist(), col
        else:
            assert mine.tolist() == theirs.tolist(), col
    assert got["cohort"].tolist() == ["x", "x", "x"]


def test_pain_after_one_pain_free_report_is_new_only_when_that_resolves():
    # A: pain days 14, 21; pain-free 28; pain 35; pain-free 42, 49
    reports = fixture_reports().query("runner_id == 'A'")
    daily = fixture_daily().query("runner_id == 'A'")
    two = episodes(reports, daily, threshold=THRESHOLD, resolve_after=2)
    assert two["onset"].tolist() == [day(14)]  # one pain-free report does not resolve
    one = episodes(reports, daily, threshold=THRESHOLD, resolve_after=1)
    assert one["onset"].tolist() == [day(14), day(35)]  # it does with resolve_after=1
    assert one["resolved_on"].tolist() == [day(28), day(42)]
    assert one["end"].tolist() == [day(28), day(42)]
    assert one["first"].tolist() == [True, False]
    # two pain-free reports resolve with resolve_after=2: pain at the next is a new episode
    later = reports.assign(pain_any=reports["date"].isin([day(14), day(49)]),
                           pain=np.where(reports["date"].isin([day(14), day(49)]), 5, 0))
    split = episodes(later, daily, threshold=THRESHOLD)
    assert split["onset"].tolist() == [day(14), day(49)]
    assert split["resolved_on"].iloc[0] == day(28) and not split["resolved"].iloc[1]


def test_pain_at_the_second_report_of_a_runner_is_incident():
    # pain-free first report, pain at the second: a (first) incident episode, at risk before
    reports = pd.DataFrame({"runner_id": "C", "date": [day(0), day(7)], "pain": [0.0, 4.0],
                            "pain_any": [False, True]})
    daily = pd.DataFrame({"runner_id": "C", "date": pd.date_range(day(0), day(7)),
                          "distance_km": 5.0, "duration_min": 30.0})
    ep = episodes(reports, daily, threshold=THRESHOLD)
    assert ep[["episode", "first", "prevalent", "resolved"]].to_numpy().tolist() == \
        [[1, True, False, False]]
    days = at_risk(daily, ep, reports=reports)
    assert days["at_risk"].tolist() == [False] + [True] * 7  # days 1..7, onset day 7 at risk
    assert days["event"].tolist() == [False] * 7 + [True]


def test_hand_fixture_at_risk():
    reports, daily = fixture_reports(), fixture_daily()
    days = at_risk(daily, episodes(reports, daily, threshold=THRESHOLD), reports=reports)
    assert tuple(days.columns) == AT_RISK_COLUMNS
    assert (days.index == daily.index).all()
    offset = (days["date"] - DAY0).dt.days
    a, b = days["runner_id"] == "A", days["runner_id"] == "B"
    # A: first report day 0, episode (14, 49]: at risk days 1..14 (14 = onset, the event)
    assert offset[a & days["at_risk"]].tolist() == list(range(1, 15))
    assert days.loc[a & days["at_risk"], "hours"].sum() == pytest.approx(14.0)
    assert days.loc[a & days["observed"], "hours"].sum() == pytest.approx(66.0)
    # B: prevalent (0, 14], open from 21: at risk days 15..21; runs on 16, 18, 20, 21
    assert offset[b & days["at_risk"]].tolist() == list(range(15, 22))
    assert days.loc[b & days["at_risk"], "hours"].sum() == pytest.approx(4 * 0.8)
    assert not days.loc[b, "at_risk_first"].any()  # after a prevalent episode
    assert not days.loc[b & ~days["in_follow_up" if "in_follow_up" in days else "observed"],
                        "at_risk"].any()
    assert offset[days["event"]].tolist() == [14, 21]
    assert days.loc[days["event"], "first_event"].tolist() == [True, False]
    assert days.loc[days["event"], "episode"].tolist() == [1, 2]
    assert days.loc[b & (offset == 21), "episodes_before"].item() == 1
    assert days.loc[b & (offset == 22), "episodes_before"].item() == 2
    assert days.loc[b & (offset < 0), "observed"].sum() == 0  # the lead-in
    assert (days["cohort"].astype(str) == "x").all()


@pytest.mark.parametrize("zone", ["Europe/Oslo", "America/Los_Angeles", "Asia/Tokyo"])
def test_time_at_risk_of_time_zone_aware_episode_dates_with_open_episodes(zone):
    """Episode dates that are time-zone aware (a library caller's table), an open episode's
    ``resolved_on`` missing among them: the same time at risk as the naive dates (each day
    on its own zone's calendar); this raised before (the missing value was filled with a
    naive time)."""
    reports, daily = fixture_reports(), fixture_daily()
    ep = episodes(reports, daily, threshold=THRESHOLD)
    assert ep["resolved_on"].isna().any() and ep["resolved_on"].notna().any()
    aware = ep.assign(**{c: ep[c].dt.tz_localize(zone) + pd.Timedelta(hours=23)
                         for c in ("onset", "resolved_on")})
    naive = at_risk(daily, ep, reports=reports)
    pd.testing.assert_frame_equal(at_risk(daily, aware, reports=reports), naive)
    assert naive["event"].sum() == (~ep["prevalent"]).sum() == 2


def test_a_threshold_that_did_not_build_pain_any_is_refused():
    with pytest.raises(ModelSpecError, match="pain_threshold"):
        episodes(fixture_reports(), fixture_daily(), threshold=5.0)
    with pytest.raises(ModelSpecError, match="resolve_after"):
        episodes(fixture_reports(), fixture_daily(), threshold=THRESHOLD, resolve_after=0)
    with pytest.raises(ModelSpecError, match="distance_km"):
        episodes(fixture_reports(), fixture_daily().drop(columns="distance_km"),
                 threshold=THRESHOLD)


def test_same_day_reports_are_not_merged_again():
    # clean merges same-day reports; episodes takes the rows it is given, in date order
    reports = fixture_reports()
    assert len(mark_reports(reports, threshold=THRESHOLD)) == len(reports)


def test_a_row_without_runner_id_is_refused_not_given_to_a_runner():
    # review 3 case 4: an ID-less report got code -1 and moved the last runner's first report
    reports = fixture_reports()
    reports.loc[len(reports)] = {**reports.iloc[0].to_dict(), "runner_id": None,
                                 "date": day(-20)}
    daily = fixture_daily()
    ep = episodes(fixture_reports(), daily, threshold=THRESHOLD)
    with pytest.raises(ModelSpecError, match="runner_id") as err:
        episodes(reports, daily, threshold=THRESHOLD)
    assert err.value.row == len(reports) - 1 and err.value.column == "runner_id"
    with pytest.raises(ModelSpecError, match="runner_id"):
        at_risk(daily, ep, reports=reports)
    no_id = daily.astype({"runner_id": object})
    no_id.loc[3, "runner_id"] = None
    with pytest.raises(ModelSpecError, match=r"daily table.*runner_id") as err:
        at_risk(no_id, ep, reports=fixture_reports())
    assert err.value.row == 3
    with pytest.raises(ModelSpecError, match=r"daily table.*runner_id"):
        episodes(fixture_reports(), no_id, threshold=THRESHOLD)


def test_a_report_without_pain_any_is_not_a_report_for_episodes_nor_time_at_risk():
    # review 3 case 1: at_risk started follow-up at an unanswered report, episodes skipped it
    reports = fixture_reports()
    answered = len(reports)
    blank = {"pain": np.nan, "pain_any": pd.NA, "ostrc_substantial": pd.NA}
    extra = pd.DataFrame([
        {**reports.iloc[0].to_dict(), **blank, "date": day(-3)},   # A before the first
        {**reports.iloc[2].to_dict(), **blank, "date": day(17)},   # A inside episode 1
        {**reports.iloc[9].to_dict(), **blank, "date": day(-1)},   # B before the first
        {**reports.iloc[9].to_dict(), **blank, "date": day(45)},   # B after the last
    ])
    reports = pd.concat([reports, extra], ignore_index=True).astype(
        {"pain_any": "boolean"}).sample(frac=1.0, random_state=3)
    assert reports["pain_any"].isna().sum() == 4 and len(reports) == answered + 4
    daily = fixture_daily()
    want_ep = episodes(fixture_reports(), daily, threshold=THRESHOLD)
    got_ep = episodes(reports, daily, threshold=THRESHOLD)
    pd.testing.assert_frame_equal(got_ep, want_ep)
    want = at_risk(daily, want_ep, reports=fixture_reports())
    got = at_risk(daily, got_ep, reports=reports)
    pd.testing.assert_frame_equal(got, want)
    offset = (got["date"] - DAY0).dt.days
    a = got["runner_id"] == "A"
    assert offset[a & got["observed"]].min() == 0  # not day -3, the unanswered report
    assert offset[a & got["at_risk"]].tolist() == list(range(1, 15))
    # the reviewer's runner: unanswered first report, then pain: prevalent at day 7
    one = pd.DataFrame({"runner_id": "A", "date": [day(d) for d in (0, 7, 14, 21, 28)],
                        "pain": [np.nan, 5.0, 0.0, 0.0, 0.0],
                        "pain_any": pd.array([pd.NA, True, False, False, False],
                                             dtype="boolean")})
    log = pd.DataFrame({"runner_id": "A", "date": pd.date_range(day(0), day(28)),
                        "distance_km": 10.0, "duration_min": 60.0})
    ep = episodes(one, log, threshold=THRESHOLD)
    assert ep[["onset", "prevalent", "resolved_on"]].to_numpy().tolist() == \
        [[day(7), True, day(21)]]
    days = at_risk(log, ep, reports=one)
    assert (days.loc[days["at_risk"], "date"] - DAY0).dt.days.tolist() == list(range(22, 29))
    assert (days.loc[days["observed"], "date"] - DAY0).dt.days.min() == 7


def test_daily_must_be_one_row_per_runner_day_and_hold_every_onset_day():
    reports, daily = fixture_reports(), fixture_daily()
    ep = episodes(reports, daily, threshold=THRESHOLD)
    # review 3 case 3: a second row on a day (two sessions) gave 2 events and double hours
    onset_b = daily.index[(daily["runner_id"] == "B") & (daily["date"] == day(21))]
    twice = pd.concat([daily, daily.loc[onset_b]], ignore_index=True)
    with pytest.raises(ModelSpecError, match="two rows of runner B on 2026-01-25") as err:
        at_risk(twice, ep, reports=reports)
    assert err.value.row == len(daily) and err.value.column == "date"
    with pytest.raises(ModelSpecError, match="one row per runner and day"):
        episodes(reports, twice, threshold=THRESHOLD)  # time loss would count it twice
    # review 3 case 2: an onset day missing from daily lost the event without a word
    with pytest.raises(ModelSpecError, match="runner B on 2026-01-25, the onset of their "
                                             "episode 2"):
        at_risk(daily.drop(index=onset_b), ep, reports=reports)
    # ... as does an onset day outside follow-up
    out = daily.assign(in_follow_up=True)
    out.loc[onset_b, "in_follow_up"] = False
    with pytest.raises(ModelSpecError, match="no follow-up row for runner B"):
        at_risk(out, ep, reports=reports)
    # a runner left out of daily altogether: their days are not in the result, no error
    only_a = daily[daily["runner_id"] == "A"]
    days = at_risk(only_a, ep, reports=reports)
    assert len(days) == len(only_a) and days["event"].sum() == 1


def test_same_day_reports_are_refused_whatever_their_order():
    # review 3 case 5: a painful and a pain-free report on one day gave an order-dependent
    # episode; cleaning merges them, so here they are refused
    reports = pd.DataFrame({"runner_id": "C", "date": [day(0), day(7), day(7), day(14)],
                            "pain": [0.0, 6.0, 0.0, 0.0],
                            "pain_any": [False, True, False, False]})
    daily = pd.DataFrame({"runner_id": "C", "date": pd.date_range(day(0), day(14)),
                          "distance_km": 5.0})
    for order in ([0, 1, 2, 3], [0, 2, 1, 3], [3, 2, 1, 0]):
        with pytest.raises(ModelSpecError, match="two reports of runner C on 2026-01-11"):
            episodes(reports.iloc[order], daily, threshold=THRESHOLD)
    ep = episodes(reports.drop(index=2), daily, threshold=THRESHOLD)
    with pytest.raises(ModelSpecError, match="merge same-day reports"):
        at_risk(daily, ep, reports=reports)
    # an unanswered report on a day with an answered one is no report: not a duplicate
    blank = reports.astype({"pain_any": "boolean"})
    blank.loc[2, ["pain", "pain_any"]] = [np.nan, pd.NA]
    pd.testing.assert_frame_equal(episodes(blank, daily, threshold=THRESHOLD), ep)


# ---- a plain-Python reference: the state machine of docs/episodes.md, one report at a time

def reference(pain: list[bool], report_days: list[int], last_day: int, resolve_after: int
              ) -> tuple[list[tuple[int, int | None, bool]], set[int], list[int]]:
    """(onset, resolved_on, prevalent) per episode, the at-risk days and the event days."""
    eps: list[tuple[int, int | None, bool]] = []
    state, free = "unknown", 0
    status_after: dict[int, str] = {}
    events = []
    for p, d in zip(pain, report_days, strict=True):
        if p:
            if state == "unknown":
                eps.append((d, None, True))
            elif state == "free":
                eps.append((d, None, False))
                events.append(d)
            state, free = "episode", 0
        elif state == "episode":
            free += 1
            if free == resolve_after:
                eps[-1] = (eps[-1][0], d, eps[-1][2])
                state = "free"
        else:
            state = "free"
        status_after[d] = state
    risk = set()
    for d in range(report_days[0] + 1, last_day + 1):
        last = max(r for r in report_days if r < d)
        if status_after[last] == "free" or d in events:
            risk.add(d)
    return eps, risk, events


@settings(max_examples=80, deadline=None)
@given(data=st.data(), n_runners=st.integers(1, 4), resolve_after=st.integers(1, 3))
def test_episodes_and_risk_agree_with_the_state_machine(data, n_runners, resolve_after):
    reports, daily, want = [], [], {}
    for r in range(n_runners):
        n = data.draw(st.integers(1, 12))
        gaps = data.draw(st.lists(st.integers(1, 9), min_size=n - 1, max_size=n - 1))
        report_days = np.cumsum([data.draw(st.integers(0, 5)), *gaps]).tolist()
        pain = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
        last = report_days[-1]
        rid = f"R{r}"
        reports.append(pd.DataFrame({"runner_id": rid, "cohort": "c",
                                     "date": [day(d) for d in report_days],
                                     "pain_any": pain}))
        km = data.draw(st.lists(st.sampled_from([0.0, 5.0, 10.0]), min_size=last + 3,
                                max_size=last + 3))
        daily.append(pd.DataFrame({"runner_id": rid, "date": [day(d) for d in range(-2,
                                                                               last + 1)],
                                   "distance_km": km, "duration_min": np.array(km) * 6}))
        want[rid] = reference(pain, report_days, last, resolve_after)
    seed = data.draw(st.integers(0, 2**16))
    reports_df = pd.concat(reports, ignore_index=True).sample(frac=1.0, random_state=seed)
    daily_df = pd.concat(daily, ignore_index=True).sample(frac=1.0, random_state=seed)
    ep = episodes(reports_df, daily_df, threshold=THRESHOLD, resolve_after=resolve_after)
    days = at_risk(daily_df, ep, reports=reports_df)
    offset = (days["date"] - DAY0).dt.days
    for rid, (eps, risk, events) in want.items():
        mine = ep.loc[ep["runner_id"] == rid]
        onset = (mine["onset"] - DAY0).dt.days.tolist()
        resolved_on = [None if pd.isna(x) else (x - DAY0).days for x in mine["resolved_on"]]
        assert list(zip(onset, resolved_on, mine["prevalent"], strict=True)) == eps
        assert mine["episode"].tolist() == list(range(1, len(eps) + 1))
        # episodes never overlap: each starts after the previous one is resolved
        stops = [s for s in resolved_on[:-1]]
        assert all(s is not None and s < o for s, o in zip(stops, onset[1:], strict=True))
        here = days["runner_id"] == rid
        assert set(offset[here & days["at_risk"]]) == risk
        assert sorted(offset[here & days["event"]]) == events  # daily is shuffled
        # every at-risk day is outside every episode's (onset, resolved_on]
        for o, s in zip(onset, resolved_on, strict=True):
            inside = (offset > o) & ((offset <= s) if s is not None else True)
            assert not (here & inside & days["at_risk"]).any()
    # counts add up: one event per incident episode, one first event per incident first
    assert days["event"].sum() == (~ep["prevalent"]).sum()
    assert days["first_event"].sum() == ep["first"].sum()
    assert (days["at_risk_first"] <= days["at_risk"]).all()
    assert (ep["reports"] >= ep["painful_reports"]).all()
    assert (ep["duration_days"] >= 0).all()
    assert (ep["days_no_running"] <= ep["duration_days"]).all()
    assert (ep["time_loss_days"].fillna(0) <= ep["days_no_running"]).all()


def test_episodes_on_a_simulated_build(tmp_path):
    from analysis.pipeline import build, load_processed
    from analysis.simulate import simulate_dataset, write_dataset

    ds = simulate_dataset(runners_per_cohort=6, weeks=12, cohorts=2, seed=5)
    raw = tmp_path / "raw"
    write_dataset(ds, raw)
    build(raw, tmp_path / "out")
    data = load_processed(tmp_path / "out")
    written = pd.read_parquet(tmp_path / "out" / "episodes.parquet")
    again = episodes(data["panel"], data["daily"],
                     threshold=data["panel_meta"]["pain_threshold"])
    pd.testing.assert_frame_equal(written.reset_index(drop=True), again,
                                  check_dtype=False)
    assert len(written) > 0 and set(written["cohort"]) <= set(data["panel"]["cohort"])
