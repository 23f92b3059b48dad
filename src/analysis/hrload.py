"""Heart-rate and time-based training load per session: Banister TRIMP, Edwards TRIMP, minutes.

Pure functions over DataFrames; nothing here reads a file.

Inputs
------
- ``hr_samples``: one row per heart-rate sample, ``session_id``, ``elapsed_s`` (seconds since
  the session started) and ``hr_bpm`` (beats per minute), as the activity-file reader emits.
- ``sessions``: one row per session, ``session_id``, ``runner_id``, ``moving_s`` and
  ``elapsed_s`` (seconds; either may be missing), optional ``avg_hr_bpm`` (a summary mean
  heart rate, e.g. Strava "Average Heart Rate", Garmin "Avg HR"), optional ``max_hr_bpm``
  (the session's maximum heart rate, e.g. Strava "Max Heart Rate", Garmin "Max HR") and
  optional ``date`` (session start; used only to turn a ``birth_year`` into an age).
- ``runners``: one row per runner, ``runner_id`` and optional ``hr_rest``, ``hr_max`` (bpm),
  ``sex`` and ``age`` (years) or ``birth_year``.

Sample interval rule (:func:`sample_minutes`): each sample weighs the time to the next sample
of its session, capped at :data:`MAX_SAMPLE_GAP_S`, so a paused watch does not count the
pause at the heart rate recorded before it; the last sample of a session weighs nothing.

Resting and maximal heart rate (:func:`runner_references`) come from ``runners`` when given;
otherwise they are estimated and the estimate is named per runner in ``hr_rest_source`` /
``hr_max_source``. A "max observed" HRmax comes only from heart-rate samples or a session's
``max_hr_bpm``, never from session means (a mean is below the session's peak, so the highest
mean would put every session near 100 % HRmax, in Edwards zone 5); with neither, nor
runners.csv ``hr_max`` or an age, a runner has no HRmax and no TRIMP (NaN, said so in
``trimp_method`` and ``hr_max_source``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

#: Banister TRIMP weighting ``a * exp(b * HRr)`` by sex: (a, b). Banister 1991 (in MacDougall,
#: Wenger & Green, *Physiological Testing of the High-Performance Athlete*, 2nd ed., 403-424);
#: Morton, Fitz-Clarke & Banister 1990, J Appl Physiol 69:1171-1177.
BANISTER_MEN = (0.64, 1.92)
BANISTER_WOMEN = (0.86, 1.67)

#: Curve names in ``trimp_curve``. When sex is unknown the weighting is the mean of the men's
#: and the women's curves, ``(0.64 e^(1.92 x) + 0.86 e^(1.67 x)) / 2`` (kneeload's rule,
#: not from the literature: it lies between the two published curves at every HRr).
CURVE_MEN = "men (a=0.64, b=1.92)"
CURVE_WOMEN = "women (a=0.86, b=1.67)"
CURVE_UNKNOWN = "mean of the men's and women's curves (sex unknown)"

#: Edwards zone TRIMP: lower bounds of the five zones as fractions of HRmax, weights 1..5;
#: below 50 % HRmax counts 0. Edwards 1993, *The Heart Rate Monitor Book* (Polar).
EDWARDS_ZONE_LOWER = (0.5, 0.6, 0.7, 0.8, 0.9)

#: Longest time one heart-rate sample may stand for (s). Watches write a sample every 1 s or,
#: with "smart recording", when the signal changes (a few seconds apart); a longer gap is a
#: pause or signal loss and counts only this long at the heart rate before it.
MAX_SAMPLE_GAP_S = 30.0

#: Maximal heart rate from age, Tanaka, Monahan & Seals 2001, J Am Coll Cardiol 37:153-156:
#: HRmax = 208 - 0.7 x age (bpm, age in years).
TANAKA_INTERCEPT_BPM = 208.0
TANAKA_SLOPE_BPM_PER_YEAR = 0.7

#: Resting heart rate used when runners.csv has none (bpm): a typical adult value (the
#: normal range is 60-100 bpm; trained runners are often lower, which this overstates).
DEFAULT_HR_REST_BPM = 60.0

SOURCE_RUNNERS = "runners.csv"
SOURCE_TANAKA = "age (Tanaka 2001: 208-0.7*age)"
SOURCE_OBSERVED = "max observed"
SOURCE_OBSERVED_ABOVE_AGE = "max observed (above the age estimate)"
SOURCE_DEFAULT_REST = f"default {DEFAULT_HR_REST_BPM:g} bpm"
SOURCE_NO_MAX = "none: no HR maximum: give hr_max or age in runners.csv"

#: Sessions with a maximum heart rate (samples or ``max_hr_bpm``) a runner needs before the
#: highest of them stands alone as HRmax ("max observed", no runners.csv value, no age).
#: kneeload's rule, not from the literature: one or two sessions are often easy runs whose
#: peak is far below HRmax, and taking such a peak as HRmax puts those very runs at 90-100 %
#: HRmax (Edwards zone 5). A maximum above the age estimate raises it from a single session
#: (a heart rate that was reached is a lower bound on HRmax).
MIN_OBSERVED_SESSIONS = 3

METHOD_SAMPLES = "samples"
METHOD_MEAN_HR = "mean HR"
METHOD_NONE = "none"
METHOD_NO_HR_MAX = "none: no HR maximum (give hr_max or age in runners.csv)"

SECONDS_PER_MINUTE = 60.0
DAYS_PER_YEAR = 365.2425  # mean Gregorian year


def heart_rate_reserve(hr_bpm: np.ndarray, *, hr_rest: np.ndarray, hr_max: np.ndarray
                       ) -> np.ndarray:
    """Fraction of heart-rate reserve, ``(HR - HRrest) / (HRmax - HRrest)``, clipped to [0, 1].

    Parameters
    ----------
    hr_bpm, hr_rest, hr_max
        Heart rate, resting and maximal heart rate (bpm), broadcastable arrays.
    """
    hr = np.asarray(hr_bpm, dtype=float)
    rest = np.asarray(hr_rest, dtype=float)
    span = np.asarray(hr_max, dtype=float) - rest
    with np.errstate(invalid="ignore", divide="ignore"):
        hrr = np.where(span > 0, (hr - rest) / np.where(span > 0, span, 1.0), np.nan)
    return np.clip(hrr, 0.0, 1.0)


def banister_weight(hrr: np.ndarray, *, curve: np.ndarray) -> np.ndarray:
    """Banister's intensity weighting ``HRr * a * exp(b * HRr)`` (per minute).

    Parameters
    ----------
    hrr
        Fraction of heart-rate reserve (0-1).
    curve
        :data:`CURVE_MEN`, :data:`CURVE_WOMEN` or :data:`CURVE_UNKNOWN` per element.

    References
    ----------
    Banister 1991; Morton, Fitz-Clarke & Banister 1990.
    """
    x = np.asarray(hrr, dtype=float)
    curve = np.asarray(curve, dtype=object)
    men = BANISTER_MEN[0] * np.exp(BANISTER_MEN[1] * x)
    women = BANISTER_WOMEN[0] * np.exp(BANISTER_WOMEN[1] * x)
    factor = np.where(curve == CURVE_MEN, men,
                      np.where(curve == CURVE_WOMEN, women, (men + women) / 2))
    return x * factor


def edwards_zone(hr_fraction: np.ndarray) -> np.ndarray:
    """Edwards zone weight (0-5) of heart rate as a fraction of HRmax (NaN stays NaN).

    50-60 % -> 1, 60-70 % -> 2, 70-80 % -> 3, 80-90 % -> 4, 90 % and above -> 5; a lower bound
    belongs to its zone (exactly 60 % is zone 2). Edwards 1993.
    """
    f = np.asarray(hr_fraction, dtype=float)
    zone = np.searchsorted(np.asarray(EDWARDS_ZONE_LOWER), f, side="right").astype(float)
    return np.where(np.isnan(f), np.nan, zone)


def sample_minutes(session_id: np.ndarray, elapsed_s: np.ndarray, *,
                   max_gap_s: float = MAX_SAMPLE_GAP_S) -> np.ndarray:
    """Minutes each sample stands for: time to the next sample of its session, capped.

    Samples must be sorted by session and time. The last sample of a session weighs 0;
    negative gaps (clock jumps back) weigh 0.

    Parameters
    ----------
    session_id
        Session of each sample.
    elapsed_s
        Seconds since the session started.
    max_gap_s
        Longest time one sample may stand for (s).
    """
    sid = np.asarray(session_id)
    t = np.asarray(elapsed_s, dtype=float)
    gap = np.zeros(len(t))
    if len(t) > 1:
        same = sid[1:] == sid[:-1]
        gap[:-1] = np.where(same, np.diff(t), 0.0)
    return np.clip(np.nan_to_num(gap), 0.0, max_gap_s) / SECONDS_PER_MINUTE


def _curve(sex: pd.Series) -> pd.Series:
    first = sex.astype("str").fillna("").str.strip().str.lower().str[:1]
    return pd.Series(np.where(first == "m", CURVE_MEN,
                              np.where(first.isin(["f", "w"]), CURVE_WOMEN, CURVE_UNKNOWN)),
                     index=sex.index, dtype="str")


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame:
        return pd.to_numeric(frame[name], errors="coerce").astype(float)
    return pd.Series(np.nan, index=frame.index, dtype=float)


def runner_references(runners: pd.DataFrame, *, hr_samples: pd.DataFrame,
                      sessions: pd.DataFrame, session_codes: np.ndarray | None = None
                      ) -> pd.DataFrame:
    """Resting and maximal heart rate per runner, each with where it came from.

    ``hr_max``: runners.csv, else Tanaka's age estimate (raised to the maximum observed when a
    heart-rate sample or a session's ``max_hr_bpm`` exceeds it), else the maximum observed
    over at least :data:`MIN_OBSERVED_SESSIONS` sessions with a maximum (samples or
    ``max_hr_bpm``; session means never count), else none (NaN, :data:`SOURCE_NO_MAX`).
    ``hr_rest``: runners.csv, else :data:`DEFAULT_HR_REST_BPM`.

    Returns
    -------
    DataFrame
        ``runner_id``, ``hr_rest_bpm``, ``hr_rest_source``, ``hr_max_bpm``, ``hr_max_source``,
        ``age_years``, ``trimp_curve``; one row per runner in ``runners`` or ``sessions``.

    ``session_codes``: integer codes of ``sessions["session_id"]`` when the caller has
    them (see :func:`session_loads`).
    """
    ids = pd.Index(pd.concat([runners["runner_id"], sessions["runner_id"]]).astype("str")
                   .unique(), name="runner_id")
    ref = runners.assign(runner_id=runners["runner_id"].astype("str")) \
        .drop_duplicates("runner_id").set_index("runner_id").reindex(ids)
    rest_given = _column(ref, "hr_rest")
    max_given = _column(ref, "hr_max")
    age = _column(ref, "age")
    if "birth_year" in ref and "date" in sessions:
        first = pd.to_datetime(sessions["date"]).groupby(sessions["runner_id"].astype("str")) \
            .min().reindex(ids)
        birth = pd.to_datetime(_column(ref, "birth_year").astype("Int64").astype("str")
                               .str.cat(["-07-02"] * len(ref)), errors="coerce")  # mid-year
        from_birth = (first - birth).dt.days / DAYS_PER_YEAR
        age = age.fillna(from_birth)
    observed, n_observed = _observed_max(hr_samples, sessions, ids, session_codes)
    tanaka = TANAKA_INTERCEPT_BPM - TANAKA_SLOPE_BPM_PER_YEAR * age
    above = tanaka.notna() & (observed > tanaka)
    alone = observed.where(n_observed >= MIN_OBSERVED_SESSIONS)
    hr_max = max_given.fillna(tanaka.where(~above, observed)).fillna(alone)
    max_source = np.select(
        [max_given.notna(), tanaka.notna() & ~above, tanaka.notna() & above, alone.notna()],
        [SOURCE_RUNNERS, SOURCE_TANAKA, SOURCE_OBSERVED_ABOVE_AGE, SOURCE_OBSERVED],
        default=SOURCE_NO_MAX)
    hr_rest = rest_given.fillna(DEFAULT_HR_REST_BPM)
    rest_source = np.where(rest_given.notna(), SOURCE_RUNNERS, SOURCE_DEFAULT_REST)
    sex = ref["sex"] if "sex" in ref else pd.Series(pd.NA, index=ids, dtype="str")
    return pd.DataFrame({
        "runner_id": pd.Series(ids, dtype="str"),
        "hr_rest_bpm": hr_rest.to_numpy(),
        "hr_rest_source": pd.Series(rest_source, dtype="str"),
        "hr_max_bpm": hr_max.to_numpy(),
        "hr_max_source": pd.Series(max_source, dtype="str"),
        "age_years": age.to_numpy(),
        "trimp_curve": _curve(sex).to_numpy(),
    })


def _session_codes(sessions: pd.DataFrame, given: np.ndarray | None = None
                   ) -> tuple[np.ndarray, pd.Index, np.ndarray]:
    """Code of each session row's ``session_id`` (-1: missing), the distinct IDs in order of
    appearance, and the row where each first appears (integer codes instead of lookups on
    millions of ID strings).

    ``given``: integer codes of the rows' IDs that the caller already has (equal IDs, equal
    codes; -1: missing), so the ID strings are not hashed again (0.3 s on 2 million runs).
    """
    if given is None:
        code, distinct = pd.factorize(sessions["session_id"].astype("str"))
    else:
        code = dense_codes(given)
    rows = np.flatnonzero(code >= 0)
    first = np.zeros(int(code.max()) + 1 if len(rows) else 0, dtype=np.int64)
    first[code[rows[::-1]]] = rows[::-1]  # the last write per code is its first row
    if given is not None:
        distinct = sessions["session_id"].astype("str").take(first).array
    return code, pd.Index(distinct), first


def dense_codes(codes: np.ndarray) -> np.ndarray:
    """``codes`` (integers; equal values, equal codes; negative: missing) renumbered 0, 1,
    ... in order of first appearance, as :func:`pandas.factorize` numbers values; -1 stays
    missing. Increasing codes (one session a row, in order) are renumbered without hashing."""
    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) and codes[0] >= 0 and np.all(codes[1:] > codes[:-1]):
        return np.arange(len(codes), dtype=np.int64)
    out = np.full(len(codes), -1, dtype=np.int64)
    known = codes >= 0
    out[known] = pd.factorize(codes[known])[0]
    return out


def _observed_max(hr_samples: pd.DataFrame, sessions: pd.DataFrame, ids: pd.Index,
                  session_codes: np.ndarray | None = None) -> tuple[pd.Series, pd.Series]:
    """Per runner of ``ids``: the highest session maximum (bpm; NaN: none) and how many
    sessions have one. A session's maximum is the larger of its samples' maximum and the
    export's ``max_hr_bpm`` (never a mean); a session belongs to the runner of its first row,
    and samples of sessions not in ``sessions`` count for nobody."""
    code, distinct, first = _session_codes(sessions, session_codes)
    session_max = np.full(len(distinct), np.nan)
    if len(hr_samples):
        per_sample = pd.to_numeric(hr_samples["hr_bpm"], errors="coerce") \
            .groupby(hr_samples["session_id"].astype("str")).max()
        at = distinct.get_indexer(per_sample.index)
        ok = at >= 0
        session_max[at[ok]] = per_sample.to_numpy(dtype=float)[ok]
    if "max_hr_bpm" in sessions:  # the export's per-session maximum (never a mean)
        column = _column(sessions, "max_hr_bpm").to_numpy()
        given = (code >= 0) & ~np.isnan(column)
        export_max = np.full(len(distinct), np.nan)
        np.fmax.at(export_max, code[given], column[given])
        session_max = np.fmax(session_max, export_max)
    runner_code, runner_names = pd.factorize(sessions["runner_id"].astype("str"))
    at_runner = ids.get_indexer(pd.Index(runner_names))
    owner = runner_code[first] if len(first) else np.zeros(0, dtype=np.int64)
    owner = np.where(owner >= 0, at_runner[np.maximum(owner, 0)] if len(at_runner) else -1,
                     -1)
    has = (owner >= 0) & ~np.isnan(session_max)
    observed = np.full(len(ids), np.nan)
    np.fmax.at(observed, owner[has], session_max[has])
    n_observed = np.bincount(owner[has], minlength=len(ids)).astype(np.int64)
    return pd.Series(observed, index=ids), pd.Series(n_observed, index=ids)


def _per_row(keys: pd.Series, table: pd.DataFrame, column: str) -> np.ndarray:
    """``keys.map(table[column])`` for a ``table`` with unique index: each distinct key
    looked up once (NaN where absent)."""
    values = table[column].to_numpy()
    if not len(table):
        return np.full(len(keys), np.nan, dtype=object if values.dtype == object else float)
    code, distinct = pd.factorize(keys)
    at = table.index.get_indexer(pd.Index(distinct))
    pos = np.where(code >= 0, at[np.maximum(code, 0)] if len(at) else -1, -1)
    if values.dtype == object:
        out = np.full(len(keys), np.nan, dtype=object)
    else:
        out = np.full(len(keys), np.nan, dtype=float)
    out[pos >= 0] = values[pos[pos >= 0]]
    return out


def session_loads(hr_samples: pd.DataFrame, sessions: pd.DataFrame, runners: pd.DataFrame, *,
                  max_gap_s: float = MAX_SAMPLE_GAP_S, session_codes: np.ndarray | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Banister TRIMP, Edwards TRIMP and duration of every session, and the per-runner
    heart-rate references they used.

    Parameters
    ----------
    hr_samples
        ``session_id``, ``elapsed_s`` (s), ``hr_bpm`` (bpm).
    sessions
        ``session_id``, ``runner_id``, ``moving_s``, ``elapsed_s`` (s); optional
        ``avg_hr_bpm``, ``max_hr_bpm`` (bpm; the maximum only feeds HRmax) and ``date``.
    runners
        ``runner_id``; optional ``hr_rest``, ``hr_max`` (bpm), ``sex``, ``age`` (years) or
        ``birth_year``.
    max_gap_s
        Longest time one sample may stand for (s), see :func:`sample_minutes`.
    session_codes
        Optional integer codes of ``sessions["session_id"]`` (equal IDs, equal codes; -1:
        missing) that the caller already has: the ID strings are then not hashed again.

    Returns
    -------
    (DataFrame, DataFrame)
        Per session: ``session_id``, ``runner_id``, ``trimp_banister`` (AU: minutes x
        weighting), ``trimp_edwards`` (AU: zone-weighted minutes), ``duration_min`` (moving
        time when known, else elapsed; min), ``trimp_method`` ("samples", "mean HR" when the
        session has no samples but a mean heart rate, :data:`METHOD_NO_HR_MAX` when it has
        heart rate but its runner has no HRmax, "none"); and :func:`runner_references`.
    """
    refs = runner_references(runners, hr_samples=hr_samples, sessions=sessions,
                             session_codes=session_codes)
    by_runner = refs.set_index("runner_id")
    sid = sessions["session_id"].astype("str")
    runner = sessions["runner_id"].astype("str")
    moving, elapsed = _column(sessions, "moving_s"), _column(sessions, "elapsed_s")
    duration = (moving.where(moving > 0).fillna(elapsed) / SECONDS_PER_MINUTE).to_numpy()

    samples = (hr_samples.assign(session_id=hr_samples["session_id"].astype("str"),
                                 elapsed_s=pd.to_numeric(hr_samples["elapsed_s"]),
                                 hr_bpm=pd.to_numeric(hr_samples["hr_bpm"], errors="coerce"))
               .dropna(subset=["hr_bpm", "elapsed_s"])
               .sort_values(["session_id", "elapsed_s"], kind="stable"))
    if len(samples):  # each sample's runner: that of its session's first row
        _, distinct, first = _session_codes(sessions, session_codes)
        owner = pd.DataFrame({"runner": runner.to_numpy()[first]}, index=distinct)
        s_runner = pd.Series(_per_row(samples["session_id"], owner, "runner"), dtype=object)
    else:
        s_runner = pd.Series([], dtype=object)
    s_rest = s_runner.map(by_runner["hr_rest_bpm"]).to_numpy(dtype=float)
    s_max = s_runner.map(by_runner["hr_max_bpm"]).to_numpy(dtype=float)
    s_curve = s_runner.map(by_runner["trimp_curve"]).to_numpy(dtype=object)
    hr = samples["hr_bpm"].to_numpy(dtype=float)
    minutes = sample_minutes(samples["session_id"].to_numpy(), samples["elapsed_s"],
                             max_gap_s=max_gap_s)
    hrr = heart_rate_reserve(hr, hr_rest=s_rest, hr_max=s_max)
    with np.errstate(invalid="ignore", divide="ignore"):
        zone = edwards_zone(hr / s_max)
    banister_s = pd.Series(minutes * banister_weight(hrr, curve=s_curve)) \
        .groupby(samples["session_id"].to_numpy()).sum(min_count=1)
    edwards_s = pd.Series(minutes * zone).groupby(samples["session_id"].to_numpy()) \
        .sum(min_count=1)
    by_session = pd.DataFrame({"banister": banister_s, "edwards": edwards_s})
    has_samples = ~np.isnan(_per_row(sid, by_session.assign(one=1.0), "one"))

    mean_hr = _column(sessions, "avg_hr_bpm").to_numpy()
    rest = _per_row(runner, by_runner, "hr_rest_bpm")
    hmax = _per_row(runner, by_runner, "hr_max_bpm")
    curve = _per_row(runner, by_runner, "trimp_curve")
    with np.errstate(invalid="ignore", divide="ignore"):
        banister_m = duration * banister_weight(
            heart_rate_reserve(mean_hr, hr_rest=rest, hr_max=hmax), curve=curve)
        edwards_m = duration * edwards_zone(mean_hr / hmax)
    use_mean = ~has_samples & np.isfinite(banister_m)
    banister = np.where(has_samples, _per_row(sid, by_session, "banister"),
                        np.where(use_mean, banister_m, np.nan))
    edwards = np.where(has_samples, _per_row(sid, by_session, "edwards"),
                       np.where(use_mean, edwards_m, np.nan))
    has_hr = has_samples | np.isfinite(mean_hr)
    no_max = has_hr & ~np.isfinite(hmax)
    banister = np.where(no_max, np.nan, banister)
    edwards = np.where(no_max, np.nan, edwards)
    # the method's name by integer code, taken in Arrow (np.select on strings fills a
    # 2-million-cell text array: 1 s; a Categorical's astype("str"): 0.26 s)
    names = pa.array([METHOD_NO_HR_MAX, METHOD_SAMPLES, METHOD_MEAN_HR, METHOD_NONE])
    method = pd.array(names.take(pa.array(np.select([no_max, has_samples, use_mean],
                                                    [0, 1, 2], default=3))), dtype="str")
    loads = pd.DataFrame({
        "session_id": sid.array,  # already text: no object round trip
        "runner_id": runner.array,
        "trimp_banister": banister,
        "trimp_edwards": edwards,
        "duration_min": duration,
        "trimp_method": method,
    }).astype({"session_id": "str", "runner_id": "str", "trimp_method": "str"})
    return loads, refs
