"""Pain episodes and time at risk: the one definition of an episode and of a day at risk.

A runner's pain reports (the panel, one per runner and day after cleaning's same-day rule)
are read in date order; a row whose ``pain_any`` is missing is not a report (it neither
starts follow-up nor breaks an episode), and both functions read the same reports
(``_usable_reports``). A report is *painful* when the panel's ``pain_any`` is set
(``pain >= pain_threshold``, the threshold the build recorded in ``panel_meta.json``):

* an **episode** starts at a painful report when the runner is not in an episode; at the
  runner's first report it is *prevalent* (its onset lies before the first report), later it
  is *incident*;
* it is **resolved** by ``resolve_after`` consecutive reports below the threshold
  (:data:`RESOLVE_AFTER_REPORTS`); a painful report before that continues it. ``end`` is the
  first report of that pain-free run (recovery), ``resolved_on`` the last one (resolution
  confirmed); an episode still open at the runner's last report is censored there;
* a runner is **at risk** of a new episode on day ``d`` when ``first report < d <= last
  report`` and ``d`` is not in ``(onset, resolved_on]`` of any episode (an open episode: not
  after its onset): exactly the days on which a painful report would start a new, incident
  episode. The onset day of an incident episode is at risk (its event day).

:func:`episodes` builds the table ``kneeload build`` writes (``episodes.parquet``);
:func:`at_risk` the runner-days that incidence (:mod:`analysis.epi`) and the time-to-event
models count. Definitions, citations and a hand-computed fixture: ``docs/episodes.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.keys import day_dates, day_numbers, factorize, positions

#: Consecutive reports below the pain threshold that resolve an episode. The 2020 IOC
#: consensus (Bahr et al. 2020, BJSM 54:372) ends a health problem at full recovery and counts
#: a problem after it as a new (recurrent or subsequent) case; the OSTRC method (Clarsen et
#: al. 2013, BJSM 47:495; 2020, BJSM 54:390) registers problems from repeated weekly reports.
#: Neither fixes a number of reports; one pain-free weekly report is weak evidence of
#: recovery, so two are required (the project's rule since issue 5). Configurable.
RESOLVE_AFTER_REPORTS = 2
#: Days before onset whose training log is the runner's baseline for time loss (the chronic
#: window of the acute:chronic ratio, docs/exposures.md).
BASELINE_DAYS = 28

#: Columns every pain-report table needs (the panel has them).
REPORT_COLUMNS = ("runner_id", "date", "pain_any")
#: Columns of the daily training log that episodes and time at risk read.
DAILY_COLUMNS = ("runner_id", "date", "distance_km")
#: Columns of the episodes table, in order (``docs/episodes.md``).
EPISODE_COLUMNS = (
    "runner_id", "cohort", "episode", "first", "prevalent", "onset", "last_pain", "end",
    "resolved_on", "resolved", "duration_days", "reports", "painful_reports", "max_pain",
    "baseline_km_per_day", "km_per_day", "running_ratio", "days_no_running",
    "expected_rest_days", "time_loss_days", "ostrc_substantial",
)
#: Columns of :func:`at_risk`, in order.
AT_RISK_COLUMNS = (
    "runner_id", "cohort", "date", "observed", "at_risk", "at_risk_first", "event",
    "first_event", "episode", "episodes_before", "km", "hours",
)

def _require(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    for col in columns:
        if col not in table.columns:
            raise ModelSpecError(f"{name} table has no column {col!r}", column=col)


def ostrc_substantial(reports: pd.DataFrame, *, coding: str = "auto") -> pd.Series:
    """OSTRC substantial problem per report (nullable boolean; NA when not answered).

    Uses the panel's ``ostrc_substantial`` column when present, else scores ``ostrc_q1`` ..
    ``ostrc_q4`` with :func:`analysis.ostrc.ostrc_scores` (OSTRC-O2, Clarsen et al. 2020,
    BJSM 54:390: item 1 "could not participate", or item 2 or 3 "moderate" or worse), so the
    definition lives in one place.
    """
    if "ostrc_substantial" in reports.columns:
        return reports["ostrc_substantial"].astype("boolean")
    if not any(c.startswith("ostrc_q") for c in reports.columns):
        return pd.Series(pd.NA, index=reports.index, dtype="boolean")
    from analysis.ostrc import ostrc_scores

    return ostrc_scores(reports, coding=coding)["ostrc_substantial"].astype("boolean")


def _check_threshold(pain: np.ndarray, flag: np.ndarray, threshold: float,
                     rows: np.ndarray) -> None:
    """Refuse a threshold that is not the one the reports' ``pain_any`` was built with."""
    bad = ~np.isnan(pain) & (flag != (pain >= threshold))
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        raise ModelSpecError(
            f"pain_any of these reports was not built with pain >= {threshold:g} (NRS "
            f"{pain[at]:g} has pain_any {bool(flag[at])}); pass the threshold of "
            "panel_meta.json 'pain_threshold', or rebuild with --pain-threshold",
            row=int(rows[at]), column="pain_any")


@dataclass(frozen=True)
class _Marks:
    """The reports' place in the episodes, as arrays in runner-then-date order."""

    rows: np.ndarray  # position in the input table of each sorted report
    codes: np.ndarray  # runner code (index into ids; ids sorted)
    ids: pd.Index  # runner IDs of the reports, sorted
    day: np.ndarray  # day number (int64)
    painful: np.ndarray  # pain_any
    is_first: np.ndarray  # the runner's first report
    before: np.ndarray  # consecutive pain-free reports of the runner just before
    onset: np.ndarray  # starts an episode
    confirms: np.ndarray  # the report that resolves its episode
    in_episode: np.ndarray  # belongs to an episode (onset .. confirming report)
    episode: np.ndarray  # number of the runner's episode (0 outside)


def _check_resolve_after(resolve_after: int) -> None:
    if isinstance(resolve_after, bool) or not isinstance(resolve_after, int | np.integer) \
            or resolve_after < 1:
        raise ModelSpecError(f"resolve_after must be a whole number >= 1, got "
                             f"{resolve_after!r}")


def _runner_codes(values: pd.Series, ids: pd.Index | None = None
                  ) -> tuple[np.ndarray, pd.Index]:
    """Runner code of each row (-1: missing or not in ``ids``) and the IDs coded.

    Without ``ids``: codes into the row's own sorted IDs. Each distinct ID is compared once
    (factorize), never the column as Python strings.
    """
    if ids is not None:
        return positions(values, ids), ids
    codes, uniques = factorize(values, sort=True)
    return codes, uniques.astype(str)


def _refuse_missing(missing: np.ndarray, column: str, name: str) -> None:
    """One line naming the first row (position) of ``name`` whose ``column`` is missing."""
    if missing.any():
        at = int(np.flatnonzero(missing)[0])
        raise ModelSpecError(f"{name} table: {int(missing.sum())} row(s) without {column} "
                             "(the row given is the first, by position); every row needs one",
                             row=at, column=column)


def _duplicate(key: np.ndarray) -> tuple[int, int] | None:
    """Positions of two rows with the same key, or None (``key`` in any order)."""
    if len(key) < 2 or (key[1:] > key[:-1]).all():
        return None
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    return None if not len(same) else (int(order[same[0]]), int(order[same[0] + 1]))


@dataclass(frozen=True)
class _Reports:
    """The usable pain reports, as arrays in runner-then-date order."""

    rows: np.ndarray  # position in the input table of each sorted report
    codes: np.ndarray  # runner code (index into ids; ids sorted)
    ids: pd.Index  # runner IDs of the usable reports, sorted
    day: np.ndarray  # day number (int64)
    painful: np.ndarray  # pain_any


def _usable_reports(reports: pd.DataFrame) -> _Reports:
    """The reports episodes and time at risk both read: the one selection of reports.

    A row whose ``pain_any`` is missing is not a report: it neither starts a runner's
    follow-up nor breaks or resolves an episode (``docs/episodes.md``). A row without
    ``runner_id`` or ``date``, or a second report of a runner on one day, is refused (one
    line): cleaning merges same-day reports (``clean.superseded_same_day``) and they are not
    merged again here, where the result would depend on row order.
    """
    _require(reports, REPORT_COLUMNS, "pain reports")
    _refuse_missing(reports["runner_id"].isna().to_numpy(), "runner_id", "pain reports")
    _refuse_missing(reports["date"].isna().to_numpy(), "date", "pain reports")
    flag = reports["pain_any"]
    known = flag.notna().to_numpy()
    if known.all():
        rows = np.arange(len(known))
        code, ids = _runner_codes(reports["runner_id"])
        day = day_numbers(reports["date"])
    else:
        rows = np.flatnonzero(known)
        code, ids = _runner_codes(reports["runner_id"].iloc[rows])
        day = day_numbers(reports["date"].iloc[rows])
    if len(rows):
        origin = int(day.min())
        key = code * (int(day.max()) - origin + 1) + (day - origin)
        if not (key[1:] > key[:-1]).all():  # the build's panel is already in this order
            order = np.argsort(key, kind="stable")
            rows, code, day, key = rows[order], code[order], day[order], key[order]
            same = np.flatnonzero(key[1:] == key[:-1])
            if len(same):
                first, second = rows[same[0]], rows[same[0] + 1]
                raise ModelSpecError(
                    f"pain reports table: two reports of runner {ids[code[same[0]]]} on "
                    f"{np.datetime64(int(day[same[0]]), 'D')} (positions {first} and "
                    f"{second}); merge same-day reports first (kneeload build's cleaning "
                    "does)", row=int(second), column="date")
    painful = flag.to_numpy(dtype=bool, na_value=False)[rows]
    return _Reports(rows=rows, codes=code, ids=ids, day=day, painful=painful)


def _marks(reports: pd.DataFrame, *, threshold: float, resolve_after: int) -> _Marks:
    """:func:`mark_reports` as arrays (no copy of the reports table)."""
    _check_resolve_after(resolve_after)
    usable = _usable_reports(reports)
    rows, codes, ids, day, pain = (usable.rows, usable.codes, usable.ids, usable.day,
                                   usable.painful)
    if "pain" in reports.columns:
        _check_threshold(reports["pain"].to_numpy(dtype=float)[rows], pain, threshold, rows)
    n = len(rows)
    pos = np.arange(n)
    is_first = np.r_[True, codes[1:] != codes[:-1]] if n else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(is_first, pos, 0)) if n else pos
    last_pain = np.maximum.accumulate(np.where(pain, pos, -1)) if n else pos
    last_pain = np.where(last_pain >= start, last_pain, start - 1)
    free_run = pos - last_pain  # pain-free reports ending at (and including) each row
    before = np.where(is_first, 0, np.r_[0, free_run[:-1]]) if n else pos
    pain_earlier = ~is_first & (np.r_[-1, last_pain[:-1]] >= start) if n else pain
    onset = pain & (~pain_earlier | (before >= resolve_after))
    confirms = ~pain & (free_run == resolve_after) & (last_pain >= start)
    last_onset = np.maximum.accumulate(np.where(onset, pos, -1)) if n else pos
    last_confirm = np.maximum.accumulate(np.where(confirms, pos, -1)) if n else pos
    in_episode = (last_onset >= start) & ((last_confirm < last_onset) | confirms)
    number = np.cumsum(onset)
    first_number = number[start] - onset[start] if n else number
    episode = np.where(in_episode, number - first_number, 0)
    return _Marks(rows=rows, codes=codes, ids=ids, day=day, painful=pain, is_first=is_first,
                  before=before, onset=onset, confirms=confirms, in_episode=in_episode,
                  episode=episode)


def mark_reports(reports: pd.DataFrame, *, threshold: float,
                 resolve_after: int = RESOLVE_AFTER_REPORTS) -> pd.DataFrame:
    """Pain reports sorted by runner and date, each with its place in the episodes.

    Parameters
    ----------
    reports
        ``runner_id``, ``date``, ``pain_any`` (bool; rows where it is missing are left out)
        and optionally ``pain`` (NRS 0-10), ``cohort``, OSTRC columns.
    threshold
        The threshold ``pain_any`` was built with (``panel_meta.json`` ``pain_threshold``,
        NRS 0-10); checked against ``pain`` when present, never used to recompute it.
    resolve_after
        Consecutive reports below the threshold that resolve an episode (>= 1).

    Returns
    -------
    pandas.DataFrame
        The reports (index reset) with ``pain_free_before`` (consecutive pain-free reports
        of the runner just before), ``onset`` (starts an episode), ``prevalent`` (an onset at
        the runner's first report), ``episode_start`` (an incident onset), ``confirms``
        (the report that resolves its episode), ``in_episode`` (the report belongs to an
        episode: from its onset to the report that resolves it, inclusive) and ``episode``
        (number of the runner's episode it belongs to, 1, 2, ...; 0 outside episodes).
    """
    m = _marks(reports, threshold=threshold, resolve_after=resolve_after)
    return reports.iloc[m.rows].reset_index(drop=True).assign(
        pain_free_before=m.before, onset=m.onset, prevalent=m.onset & m.is_first,
        episode_start=m.onset & ~m.is_first, confirms=m.confirms, in_episode=m.in_episode,
        episode=m.episode)


def _daily_codes(daily: pd.DataFrame, ids: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Runner code into ``ids`` (-1: a runner without reports) and day number of each row
    of the daily log, refusing rows without ``runner_id`` or ``date`` and a second row of a
    runner on one day (the log is one row per runner-day: the build's calendar sums a day's
    runs; two rows would count the day twice)."""
    _require(daily, DAILY_COLUMNS, "daily")
    _refuse_missing(daily["runner_id"].isna().to_numpy(), "runner_id", "daily")
    _refuse_missing(daily["date"].isna().to_numpy(), "date", "daily")
    own, uniques = factorize(daily["runner_id"])  # order of appearance: no sort
    day = day_numbers(daily["date"])
    if len(day):
        origin = int(day.min())
        twice = _duplicate(own * (int(day.max()) - origin + 1) + (day - origin))
        if twice is not None:
            first, second = twice
            raise ModelSpecError(
                f"daily table: two rows of runner {daily['runner_id'].iloc[first]} on "
                f"{np.datetime64(int(day[first]), 'D')} (positions {first} and {second}); "
                "the daily log is one row per runner and day (sum a day's runs first)",
                row=second, column="date")
    at = ids.get_indexer(pd.Index(uniques).astype(str))
    code = at[own] if len(at) else np.full(len(own), -1, dtype=np.intp)
    return code, day


class _DailyLog:
    """The training log keyed by runner and day, with prefix sums for window totals."""

    def __init__(self, daily: pd.DataFrame, ids: pd.Index) -> None:
        code, day = _daily_codes(daily, ids)
        self.origin = int(day.min()) if len(day) else 0
        self.span = int(day.max()) - self.origin + 2 if len(day) else 1
        key = np.where(code >= 0, code, len(ids)) * self.span + (day - self.origin)
        km = daily["distance_km"].to_numpy(dtype=float)
        if not (key[1:] >= key[:-1]).all():  # the build's calendar is in this order
            order = np.argsort(key, kind="stable")
            key, km = key[order], km[order]
        self.key = key
        logged = ~np.isnan(km)
        self.logged = np.r_[0, np.cumsum(logged)]
        self.km = np.r_[0.0, np.cumsum(np.where(logged, km, 0.0))]
        self.rest = np.r_[0, np.cumsum(logged & (km == 0))]

    def rows(self, code: np.ndarray, first_day: np.ndarray, stop_day: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """Row bounds [lo, hi) of each runner's days ``first_day <= day < stop_day``."""
        top = self.span - 1
        first = np.clip(first_day - self.origin, 0, top)
        stop = np.clip(stop_day - self.origin, first, top)
        lo = np.searchsorted(self.key, code * self.span + first, side="left")
        hi = np.searchsorted(self.key, code * self.span + stop, side="left")
        return lo, hi

    def totals(self, code: np.ndarray, first_day: np.ndarray, stop_day: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logged days, km and logged days without running in each window."""
        lo, hi = self.rows(code, first_day, stop_day)
        return (self.logged[hi] - self.logged[lo], self.km[hi] - self.km[lo],
                self.rest[hi] - self.rest[lo])


def _episode_reduce(values: np.ndarray, seg_start: np.ndarray, ufunc: np.ufunc,
                    fill: float) -> np.ndarray:
    """``ufunc.reduceat`` over contiguous segments starting at ``seg_start`` (none: empty)."""
    if not len(seg_start):
        return np.zeros(0, dtype=float)
    out = ufunc.reduceat(values, seg_start)
    return np.where(np.isnan(out), fill, out) if out.dtype.kind == "f" else out


def episodes(pain_reports: pd.DataFrame, daily: pd.DataFrame, *, threshold: float,
             resolve_after: int = RESOLVE_AFTER_REPORTS,
             baseline_days: int = BASELINE_DAYS, ostrc_coding: str = "auto") -> pd.DataFrame:
    """One row per pain episode per runner (the build's ``episodes.parquet``).

    Parameters
    ----------
    pain_reports
        The panel (or any table with ``runner_id``, ``date``, ``pain_any``; optional
        ``cohort``, ``pain`` NRS 0-10, OSTRC answers or ``ostrc_substantial``). Rows with
        ``pain_any`` missing are not reports. Same-day reports must already be merged
        (``clean`` does it): a second report of a runner on one day, or a row without
        ``runner_id`` or ``date``, raises :class:`~analysis.errors.ModelSpecError`.
    daily
        The daily training log (``runner_id``, ``date``, ``distance_km``), lead-in included,
        one row per runner and day (a second row raises ``ModelSpecError``).
    threshold
        The threshold the panel's ``pain_any`` was built with (``panel_meta.json``
        ``pain_threshold``).
    resolve_after
        Consecutive reports below the threshold that resolve an episode.
    baseline_days
        Days before onset that give the runner's baseline training (time loss).
    ostrc_coding
        As for :func:`analysis.ostrc.ostrc_scores`.

    Returns
    -------
    pandas.DataFrame
        :data:`EPISODE_COLUMNS`. ``episode`` numbers a runner's episodes 1, 2, ...; ``first``
        is the runner's first episode when incident (after a prevalent one every episode is
        subsequent); ``onset`` its first painful report, ``last_pain`` its last; ``end`` the
        first of the ``resolve_after`` pain-free reports that resolve it (recovery) or, when
        open (``resolved`` False), the runner's last report (censored); ``resolved_on`` the
        last of those reports (NaT when open); ``duration_days`` = ``end - onset``.
        Time loss over the episode's days ``onset <= d < end``, against the
        ``baseline_days`` before onset (logged days only, lead-in included):
        ``baseline_km_per_day`` and ``km_per_day`` (mean km per logged day),
        ``running_ratio`` (their ratio; < 1 is reduced running), ``days_no_running``
        (logged days without a run), ``expected_rest_days`` (the baseline's share of rest
        days times the episode's logged days) and ``time_loss_days`` = ``days_no_running -
        expected_rest_days``, floored at 0 (days without running beyond the runner's usual
        rest). ``ostrc_substantial``: any report of the episode with an OSTRC substantial
        problem (:func:`ostrc_substantial`); NA when none of its reports has OSTRC answers.
    """
    m = _marks(pain_reports, threshold=threshold, resolve_after=resolve_after)
    day, codes, ids = m.day, m.codes, m.ids
    n = len(day)
    onset_rows = np.flatnonzero(m.onset)
    k = len(onset_rows)
    # the episode each member report belongs to: its index among all onsets
    global_ep = np.cumsum(m.onset) - 1
    ep_of_row = np.where(m.in_episode, global_ep, -1)
    member_rows = np.flatnonzero(m.in_episode)
    seg = np.searchsorted(member_rows, onset_rows)  # members of an episode are contiguous
    last_report_row = np.r_[np.flatnonzero(codes[1:] != codes[:-1]), n - 1] if n else codes
    ep_code = codes[onset_rows]

    confirm_rows = np.flatnonzero(m.confirms)
    resolved_on = np.full(k, np.nan)
    end = day[last_report_row][ep_code].astype(float) if k else np.zeros(0)
    resolved = np.zeros(k, dtype=bool)
    if len(confirm_rows):
        which = ep_of_row[confirm_rows]
        resolved[which] = True
        resolved_on[which] = day[confirm_rows]
        end[which] = day[confirm_rows - resolve_after + 1]
    painful = m.painful
    pain_pos = np.where(painful[member_rows], member_rows, -1)
    last_pain_row = _episode_reduce(pain_pos, seg, np.maximum, -1).astype(int)
    reports_in = np.diff(np.r_[seg, len(member_rows)]) if k else np.zeros(0, int)
    painful_in = _episode_reduce(painful[member_rows].astype(np.int64), seg, np.add, 0)
    source = m.rows[member_rows]  # input rows of the member reports
    if "pain" in pain_reports.columns:
        nrs = pain_reports["pain"].to_numpy(dtype=float)[source]
        max_pain = _episode_reduce(np.where(np.isnan(nrs), -np.inf, nrs), seg, np.maximum,
                                   np.nan)
        max_pain = np.where(np.isfinite(max_pain), max_pain, np.nan)
    else:
        max_pain = np.full(k, np.nan)
    ostrc_cols = [c for c in pain_reports.columns if c.startswith("ostrc_")]
    substantial = ostrc_substantial(pain_reports[ostrc_cols].iloc[source],
                                    coding=ostrc_coding).to_numpy(dtype=float,
                                                                  na_value=np.nan)
    any_true = _episode_reduce(np.where(substantial == 1, 1, 0), seg, np.maximum, 0)
    answered = _episode_reduce(np.where(np.isnan(substantial), 0, 1), seg, np.maximum, 0)
    ostrc = pd.array(any_true.astype(bool), dtype="boolean")
    ostrc[answered == 0] = pd.NA

    onset_day = day[onset_rows].astype(np.int64)
    end_day = end.astype(np.int64)
    log = _DailyLog(daily, ids)
    base_days, base_km, base_rest = log.totals(ep_code, onset_day - baseline_days, onset_day)
    ep_days, ep_km, ep_rest = log.totals(ep_code, onset_day, end_day)
    with np.errstate(divide="ignore", invalid="ignore"):
        baseline_km = np.where(base_days > 0, base_km / base_days, np.nan)
        km_per_day = np.where(ep_days > 0, ep_km / ep_days, np.nan)
        ratio = np.where(baseline_km > 0, km_per_day / baseline_km, np.nan)
        expected_rest = np.where(base_days > 0, base_rest / base_days * ep_days, np.nan)
    time_loss = np.maximum(ep_rest - expected_rest, 0.0)

    runner_first = np.r_[True, ep_code[1:] != ep_code[:-1]] if k else np.zeros(0, bool)
    number = m.episode[onset_rows]
    prevalent = (m.onset & m.is_first)[onset_rows]
    at_onset = m.rows[onset_rows]
    cohort = (pain_reports["cohort"].iloc[at_onset].to_numpy()
              if "cohort" in pain_reports.columns else np.full(k, None, dtype=object))
    out = pd.DataFrame({
        "runner_id": pain_reports["runner_id"].iloc[at_onset].to_numpy(),
        "cohort": cohort,
        "episode": number.astype(np.int64),
        "first": runner_first & ~prevalent,
        "prevalent": prevalent,
        "onset": day_dates(onset_day.astype(float)),
        "last_pain": day_dates(day[last_pain_row].astype(float) if k else np.zeros(0)),
        "end": day_dates(end),
        "resolved_on": day_dates(resolved_on),
        "resolved": resolved,
        "duration_days": (end_day - onset_day).astype(np.int64),
        "reports": reports_in.astype(np.int64),
        "painful_reports": painful_in.astype(np.int64),
        "max_pain": max_pain,
        "baseline_km_per_day": baseline_km,
        "km_per_day": km_per_day,
        "running_ratio": ratio,
        "days_no_running": ep_rest.astype(np.int64),
        "expected_rest_days": expected_rest,
        "time_loss_days": time_loss,
        "ostrc_substantial": ostrc,
    })
    return out


def _check_onsets_logged(event_keys: np.ndarray, ep_keys: np.ndarray, checked: np.ndarray,
                         runner: pd.Index, onset_day: np.ndarray, number: np.ndarray) -> None:
    """Refuse an incident episode whose onset day has no follow-up row in the daily log of
    a runner who has rows there: its event would be lost without a word."""
    lost = checked & ~np.isin(ep_keys, event_keys)
    if lost.any():
        at = int(np.flatnonzero(lost)[0])
        raise ModelSpecError(
            f"daily table has no follow-up row for runner {runner[at]} on "
            f"{np.datetime64(int(onset_day[at]), 'D')}, the onset of their episode "
            f"{int(number[at])}: time at risk needs the onset day of every incident episode "
            "(the build's calendar has one row per runner and follow-up day)", column="date")


def at_risk(daily: pd.DataFrame, episodes: pd.DataFrame, *,
            reports: pd.DataFrame) -> pd.DataFrame:
    """Per runner-day: at risk of a new episode, the day's event, running hours and km.

    The one definition of time at risk (incidence in :mod:`analysis.epi`, the
    counting-process rows of the time-to-event models).

    Parameters
    ----------
    daily
        The daily training log (``runner_id``, ``date``, ``distance_km``, optional
        ``duration_min`` and ``in_follow_up``), one row per runner and day. A day absent
        from it adds no time; the onset day of every incident episode of a runner who has
        rows must be there as a follow-up day (else ``ModelSpecError``: the event would be
        lost). A runner with no rows at all is simply not in the result.
    episodes
        :func:`episodes` of the same reports.
    reports
        The pain reports the episodes came from (``runner_id``, ``date``, ``pain_any``,
        optional ``cohort``): the same reports :func:`episodes` reads (rows without
        ``pain_any`` are not reports); a runner's status is known from the first report to
        the last.

    Returns
    -------
    pandas.DataFrame
        :data:`AT_RISK_COLUMNS`, one row per row of ``daily`` (same index and order).
        ``observed``: a follow-up day with ``first report <= date <= last report``;
        ``at_risk``: observed, after the first report, and not in ``(onset, resolved_on]``
        of an episode (after an open episode's onset: never); ``at_risk_first``: at risk
        before any episode of the runner (first-episode analysis); ``event``: an incident
        episode starts that day (always at risk); ``first_event``: that episode is the
        runner's first; ``episode``: its number (0 on other days); ``episodes_before``:
        episodes (prevalent included) with onset before the day; ``km`` (``distance_km``)
        and ``hours`` (``duration_min`` / 60, NaN when the log has no duration).
    """
    _require(episodes, ("runner_id", "episode", "prevalent", "onset", "resolved_on"),
             "episodes")
    usable = _usable_reports(reports)  # the same reports as episodes() reads
    rep_code, ids, rep_day = usable.codes, usable.ids, usable.day
    first_report = np.full(len(ids), np.iinfo(np.int64).max)
    last_report = np.full(len(ids), np.iinfo(np.int64).min)
    np.minimum.at(first_report, rep_code, rep_day)
    np.maximum.at(last_report, rep_code, rep_day)

    code, day = _daily_codes(daily, ids)
    known = code >= 0
    safe = np.where(known, code, 0)
    observed = known & (day >= first_report[safe]) & (day <= last_report[safe])
    if "in_follow_up" in daily.columns:
        observed &= daily["in_follow_up"].to_numpy(dtype=bool)

    ep_code = _runner_codes(episodes["runner_id"], ids)[0]
    ep_onset = day_numbers(episodes["onset"])
    resolved_on = pd.to_datetime(episodes["resolved_on"])
    big = np.iinfo(np.int64).max // 4
    # day_numbers keeps a time-zone-aware day on its own calendar and gives NaT its own
    # value, replaced here (open episodes never stop)
    ep_stop = np.where(resolved_on.isna().to_numpy(), big, day_numbers(resolved_on))
    if (ep_code < 0).any():
        at = int(np.flatnonzero(ep_code < 0)[0])
        raise ModelSpecError("episode of a runner without pain reports: pass the reports "
                             "the episodes were built from", row=at, column="runner_id")
    origin = int(min(day.min(initial=0), ep_onset.min(initial=0)))
    day, ep_onset = day - origin, ep_onset - origin
    ep_stop = np.where(ep_stop == big, big, ep_stop - origin)
    first_report, last_report = first_report - origin, last_report - origin
    span = int(max(day.max(initial=0), ep_onset.max(initial=0))) + 2
    ep_key = ep_code * span + ep_onset
    order = np.argsort(ep_key, kind="stable")
    ep_key, ep_code, ep_onset, ep_stop = (ep_key[order], ep_code[order], ep_onset[order],
                                          ep_stop[order])
    ep_prevalent = episodes["prevalent"].to_numpy(dtype=bool)[order]
    ep_number = episodes["episode"].to_numpy(dtype=np.int64)[order]
    # a sentinel after the last episode, so the guarded look-ups below never index empty
    ep_onset, ep_stop = np.r_[ep_onset, -1], np.r_[ep_stop, -1]
    ep_prevalent, ep_number = np.r_[ep_prevalent, True], np.r_[ep_number, 0]
    ep_first = ep_number == 1
    day_key = safe * span + day
    runner_lo = np.searchsorted(ep_key, safe * span, side="left")
    before = np.searchsorted(ep_key, day_key, side="left")  # episodes with onset < day
    episodes_before = before - runner_lo
    last = before - 1
    has_last = episodes_before > 0
    inside = has_last & (day <= ep_stop[np.maximum(last, 0)])
    at = observed & (day > first_report[safe]) & ~inside
    today = np.searchsorted(ep_key, day_key, side="right") - 1
    onset_today = (today >= runner_lo) & (ep_onset[np.maximum(today, 0)] == day)
    event = observed & onset_today & ~ep_prevalent[np.maximum(today, 0)]
    in_daily = np.zeros(len(ids) + 1, dtype=bool)
    in_daily[code[known]] = True
    _check_onsets_logged(day_key[event], ep_key, ~ep_prevalent[:-1] & in_daily[ep_code],
                         ids[ep_code], ep_onset[:-1] + origin, ep_number[:-1])
    duration = (daily["duration_min"].to_numpy(dtype=float) if "duration_min" in daily.columns
                else np.full(len(daily), np.nan))
    cohort: Any = pd.Categorical(np.full(len(daily), None, dtype=object))
    if "cohort" in reports.columns:
        first_row = np.full(len(ids), len(reports))
        np.minimum.at(first_row, rep_code, usable.rows)
        cohort_codes, names = pd.factorize(reports["cohort"].iloc[first_row])
        cohort = pd.Categorical.from_codes(np.where(known, cohort_codes[safe], -1),
                                           categories=pd.Index(names).astype(str))
    return pd.DataFrame({
        "runner_id": daily["runner_id"].array,
        "cohort": cohort,
        "date": daily["date"].array,
        "observed": observed,
        "at_risk": at,
        "at_risk_first": at & (episodes_before == 0),
        "event": event,
        "first_event": event & ep_first[np.maximum(today, 0)],
        "episode": np.where(event, ep_number[np.maximum(today, 0)], 0),
        "episodes_before": np.where(known, episodes_before, 0),
        "km": daily["distance_km"].to_numpy(dtype=float),
        "hours": duration / 60.0,
    }, index=daily.index)
