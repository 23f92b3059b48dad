"""Synthetic cohorts with known truth, in the canonical raw format.

The simulator draws realistic running weeks (rest days, a weekly long run, 4-week build-up
and recovery blocks, occasional sudden jumps and break weeks, shoes retired after a few
hundred km), then derives each weekly knee-pain report from the package's own exposure
panel (:func:`analysis.exposures.build_panel`), so that the true effects refer to exactly the
columns a model sees: ``mileage_jump`` (fraction), ``shoe_km`` (km) and ``rest_days_7d`` (days),
all at the reference day ``s = t - exposure_lag_days``.

Two outcome models
------------------
``outcome="nrs"`` (default)
    Linear mixed model on a latent scale, rounded to the 0-10 numeric rating scale::

        y* = b0 + b_jump*jump + b_shoe*shoe_km + b_rest*rest_days_7d + u0 + u1*jump + e
        pain = clip(round(y*), 0, 10)

    Rounding adds noise of variance 1/12; clipping is rare with the defaults (its share is
    written to ``truth.json``) and attenuates the effects slightly.
``outcome="binary"``
    Logistic mixed model for ``pain >= pain_threshold``; the NRS value is then drawn inside
    the band (>= threshold when pain is present, below it otherwise), so the odds ratios in
    ``truth.json`` are exact for the binomial model.

``outcome="hazard"``
    Pain-episode onsets with known hazard ratios, for the time-to-event models
    (:mod:`analysis.models.survival`). At each returned weekly report at which the runner
    is at risk of a new episode (``analysis.episodes``: after the first report, not inside
    an episode), a new episode starts with probability ``1 - exp(-H0 exp(x' beta + u))``:
    a proportional hazard, constant over the week before the report, with the exposures
    ``x`` at that report's reference day (grouped-time PH; Kalbfleisch & Prentice 2002,
    sec. 4.8). ``truth.json`` gives ``log_hazard_ratios`` and ``hazard_ratios``. An episode
    then has ``1 + Geometric`` painful weekly reports (mean :data:`HAZARD_EPISODE_WEEKS`)
    followed by :data:`analysis.episodes.RESOLVE_AFTER_REPORTS` pain-free reports (its
    resolution), after which the runner is at risk again. The first report is pain-free.
    ``u`` is a normal runner frailty (SD ``sd_intercept``, default 0: the hazard ratios are
    then the marginal ones a Cox model estimates).

Missing exposures (the first weeks of follow-up, a 0-km previous week) contribute nothing
to the linear predictor; models drop those rows anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.defaults import DEFAULT_SEED, PAIN_MAX, PAIN_MIN
from analysis.errors import KneeloadError
from analysis.exposures import DEFAULT_EXPOSURE_LAG_DAYS, DEFAULT_PAIN_THRESHOLD, build_panel

DAYS_PER_WEEK = 7
DEFAULT_START = "2025-01-06"  # a Monday; weeks run Monday..Sunday, reports on Sundays

#: Cohort archetypes: name, mean weekly km, runs per week, pace (min/km).
COHORT_ARCHETYPES: tuple[tuple[str, float, int, float], ...] = (
    ("novice", 15.0, 3, 6.3),
    ("recreational", 30.0, 4, 5.6),
    ("competitive", 55.0, 6, 4.7),
    ("masters", 35.0, 4, 5.9),
    ("ultra", 70.0, 5, 5.8),
)

#: Training pattern.
BASE_KM_LOG_SD = 0.3  # between-runner spread of weekly volume (log scale)
WEEK_NOISE_LOG_SD = 0.12  # week-to-week noise around the plan (log scale)
BLOCK_PATTERN = (1.0, 1.1, 1.2, 0.75)  # 4-week build-up and recovery cycle
JUMP_WEEK_PROB = 0.08  # chance that a week is a sudden increase
JUMP_WEEK_RANGE = (1.4, 1.9)  # multiplier of such a week
BREAK_WEEK_PROB = 0.03  # chance of a week without running (holiday, illness)
LONG_RUN_WEIGHT = 2.5  # the long run is this many times an ordinary run (in expectation)
MAX_RUN_KM = 45.0  # a single simulated run is never longer (the rest of that week's plan is lost)
MIN_RUN_KM = 1.0  # a run shorter than this is not logged
SHOE_LIFETIME_KM = (450.0, 800.0)  # shoes are retired after this many km (uniform)
USED_FIRST_SHOE_PROB = 0.5  # chance the first shoe already has km on it at study start
USED_FIRST_SHOE_KM = (50.0, 300.0)
REPORT_MISSING_PROB = 0.1  # chance a weekly pain report is not returned
PACE_DAY_SD = 0.05  # day-to-day pace variation (relative)

#: True model (per unit of the panel column): pain NRS points on the latent scale.
DEFAULT_NRS_EFFECTS: dict[str, float] = {
    "mileage_jump": 0.8,  # per +100 % week-over-week (so +0.08 per +10 %)
    "shoe_km": 0.002,  # per km on the shoe (so +0.2 per +100 km)
    "rest_days_7d": -0.15,  # per rest day in the 7 days up to the reference day
}
NRS_INTERCEPT = 2.5
NRS_SD_INTERCEPT = 1.0
NRS_SD_SLOPE_JUMP = 0.4
NRS_RESIDUAL_SD = 1.0

#: True model for ``outcome="binary"``: log-odds of pain >= threshold.
DEFAULT_BINARY_EFFECTS: dict[str, float] = {
    "mileage_jump": 0.9,
    "shoe_km": 0.0015,
    "rest_days_7d": -0.2,
}
BINARY_INTERCEPT = -1.2
BINARY_SD_INTERCEPT = 0.8
#: Binary outcome's NRS score: threshold + Binomial(10 - threshold, p) when pain is present,
#: Binomial(threshold - 1, p) otherwise (a plausible spread of scores inside each band;
#: the models of ``pain_any`` do not see it).
BINARY_PAIN_PRESENT_P = 0.25
BINARY_PAIN_ABSENT_P = 0.3

#: True model for ``outcome="hazard"``: log hazard ratio per unit of each panel column.
DEFAULT_HAZARD_EFFECTS: dict[str, float] = {
    "mileage_jump": 0.7,  # HR 2.0 per +100 % week-over-week (1.07 per +10 %)
    "shoe_km": 0.0,
    "rest_days_7d": -0.15,  # HR 0.86 per rest day
}
#: Baseline cumulative hazard of a new episode over one week (all exposures 0).
HAZARD_WEEKLY_BASELINE = 0.06
#: Mean number of painful weekly reports of an episode (1 + geometric).
HAZARD_EPISODE_WEEKS = 2.0
HAZARD_SD_FRAILTY = 0.0
#: Outcome models of :func:`simulate_dataset`.
OUTCOMES = ("nrs", "binary", "hazard")


@dataclass
class SimulatedDataset:
    """A synthetic dataset in the canonical format, with the truth that generated it."""

    runners: pd.DataFrame
    runs: pd.DataFrame
    pain: pd.DataFrame
    shoes: pd.DataFrame
    truth: dict[str, Any] = field(default_factory=dict)


def simulate_dataset(
    *,
    runners_per_cohort: int = 20,
    weeks: int = 26,
    cohorts: int = 3,
    seed: int = DEFAULT_SEED,
    start_date: str = DEFAULT_START,
    outcome: str = "nrs",
    effects: dict[str, float] | None = None,
    sd_intercept: float | None = None,
    sd_slope_jump: float | None = None,
    report_missing_prob: float = REPORT_MISSING_PROB,
    exposure_lag_days: int = DEFAULT_EXPOSURE_LAG_DAYS,
    pain_threshold: float = DEFAULT_PAIN_THRESHOLD,
) -> SimulatedDataset:
    """Simulate ``cohorts`` cohorts of runners followed for ``weeks`` weeks.

    Parameters
    ----------
    runners_per_cohort, weeks, cohorts
        Study size. ``cohorts`` is at most ``len(COHORT_ARCHETYPES)``.
    seed
        Everything is drawn from ``numpy.random.default_rng(seed)``: same seed, same data.
    outcome
        ``"nrs"`` (linear model on the 0-10 scale), ``"binary"`` (logistic model of
        ``pain >= pain_threshold``) or ``"hazard"`` (episode onsets with known hazard
        ratios; ``effects`` are log hazard ratios).
    effects
        True fixed effects by panel column (NRS points, or log-odds for ``"binary"``);
        missing keys take the defaults.
    sd_intercept, sd_slope_jump
        Standard deviations of the per-runner random intercept and (NRS only) random slope
        on ``mileage_jump``; ``None`` takes the defaults.

    Returns
    -------
    SimulatedDataset
        Canonical tables (``runners``, ``runs``, ``pain``, ``shoes``) and ``truth``.
    """
    if outcome not in OUTCOMES:
        raise KneeloadError(f"outcome must be 'nrs', 'binary' or 'hazard', not {outcome!r}")
    if not 1 <= cohorts <= len(COHORT_ARCHETYPES):
        raise KneeloadError(f"cohorts must be 1..{len(COHORT_ARCHETYPES)}, not {cohorts}")
    if runners_per_cohort < 1 or weeks < 3:
        raise KneeloadError("need at least 1 runner per cohort and 3 weeks of follow-up")
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(start_date).normalize()

    runners = _draw_runners(rng, runners_per_cohort, cohorts, weeks, start)
    runs = _draw_runs(rng, runners, weeks, start)
    runs, shoes = _assign_shoes(rng, runs, runners)
    report_days = _draw_report_days(rng, runners, weeks, start, report_missing_prob)

    default_effects = {"nrs": DEFAULT_NRS_EFFECTS, "binary": DEFAULT_BINARY_EFFECTS,
                       "hazard": DEFAULT_HAZARD_EFFECTS}[outcome]
    true_effects = {**default_effects, **(effects or {})}
    exposures = _reference_exposures(
        runs, runners, report_days, shoes, list(true_effects), exposure_lag_days
    )
    if outcome == "nrs":
        pain, truth_model = _nrs_outcome(
            rng,
            exposures,
            true_effects,
            sd_intercept=NRS_SD_INTERCEPT if sd_intercept is None else sd_intercept,
            sd_slope=NRS_SD_SLOPE_JUMP if sd_slope_jump is None else sd_slope_jump,
        )
    elif outcome == "hazard":
        pain, truth_model = _hazard_outcome(
            rng,
            exposures,
            true_effects,
            threshold=pain_threshold,
            sd_frailty=HAZARD_SD_FRAILTY if sd_intercept is None else sd_intercept,
        )
    else:
        pain, truth_model = _binary_outcome(
            rng,
            exposures,
            true_effects,
            threshold=pain_threshold,
            sd_intercept=BINARY_SD_INTERCEPT if sd_intercept is None else sd_intercept,
        )

    truth = {
        "outcome_model": outcome,
        **truth_model,
        "exposure_lag_days": exposure_lag_days,
        "pain_threshold": pain_threshold,
        "units": {
            "mileage_jump": "fraction (0.30 = +30 % week over week)",
            "shoe_km": "km on the current shoe",
            "rest_days_7d": "days without a run in the 7 days up to the reference day",
            "pain": "NRS 0-10",
        },
        "design": {
            "seed": seed,
            "runners_per_cohort": runners_per_cohort,
            "weeks": weeks,
            "cohorts": runners["cohort"].unique().tolist(),
            "start_date": start.date().isoformat(),
            "report_missing_prob": report_missing_prob,
        },
        "counts": {
            "runners": len(runners),
            "runs": len(runs),
            "pain_reports": len(pain),
            "shoes": len(shoes),
        },
    }
    return SimulatedDataset(runners=runners, runs=runs, pain=pain, shoes=shoes, truth=truth)


def write_dataset(dataset: SimulatedDataset, out_dir: str | Path, *, messy: bool = False) -> Path:
    """Write the dataset as canonical CSVs plus ``truth.json`` into ``out_dir``.

    With ``messy=True`` the files also carry the kinds of defects real study files have
    (:data:`MESSY_DEFECTS`): extra copies of real rows with a broken value, exact duplicates
    and decimal commas. Every injected line is listed in ``truth.json`` under ``"messy"``
    with its file, line and the reason code the cleaning step must give it, and cleaning
    recovers exactly the clean tables, so the true effects are unchanged.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth = dict(dataset.truth)
    tables = {name: _iso_dates(getattr(dataset, name)) for name in ("runners", "runs", "pain",
                                                                    "shoes")}
    if messy:
        rng = np.random.default_rng([truth.get("design", {}).get("seed", DEFAULT_SEED), 1])
        injected: list[dict[str, Any]] = []
        fixes: dict[str, dict[str, int]] = {}
        for name in ("runs", "pain"):
            tables[name], rows, fixed = _inject_defects(rng, tables[name], name)
            injected += rows
            fixes[f"{name}.csv"] = fixed
        truth["messy"] = {"quarantined_or_merged": injected, "fixed": fixes}
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False, lineterminator="\n")
    (out / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return out


#: Defects injected by ``write_dataset(messy=True)``: (table, reason code, count, how).
#: Each is an extra copy of a real row with one value broken, so removing it restores the
#: clean table. Reason codes are those of docs/cleaning.md.
MESSY_DEFECTS: tuple[tuple[str, str, int], ...] = (
    ("runs", "exact_duplicate", 2),  # the same row exported twice
    ("runs", "unparseable_date", 1),  # 2025-02-31
    ("runs", "distance_not_positive", 1),  # a sign error
    ("runs", "non_running_activity", 2),  # a ride in the running log
    ("runs", "pace_too_fast", 1),  # 20 km in 30 min: a car ride left running
    ("runs", "unknown_runner", 1),  # a participant ID with a typo
    ("pain", "exact_duplicate", 1),
    ("pain", "pain_out_of_range", 2),  # 12 on a 0-10 scale
    ("pain", "pain_not_number", 1),  # free text in the score column
)
MESSY_DECIMAL_COMMAS = 2  # runs whose distance is written 8,52 instead of 8.52 (fixed)


def _inject_defects(
    rng: np.random.Generator, table: pd.DataFrame, name: str
) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[str, int]]:
    text = table.astype(object).where(table.notna(), "").astype(str)
    copies, positions, reasons = [], [], []
    for table_name, reason, count in MESSY_DEFECTS:
        if table_name != name:
            continue
        for _ in range(count):
            source = int(rng.integers(len(text)))
            row = text.iloc[source].copy()
            if reason == "unparseable_date":
                row["date"] = "2025-02-31"
            elif reason == "distance_not_positive":
                row["distance_km"] = f"-{row['distance_km']}"
            elif reason == "non_running_activity":
                row["activity_type"] = "ride"
            elif reason == "pace_too_fast":
                row["distance_km"], row["duration_min"] = "20.0", "30.0"
            elif reason == "unknown_runner":
                row["runner_id"] = row["runner_id"][:-1] + "X"
            elif reason == "pain_out_of_range":
                row["pain"] = "12"
            elif reason == "pain_not_number":
                row["pain"] = "sore"
            copies.append(row)
            positions.append(source + 0.5)  # right after the row it copies
            reasons.append(reason)
    fixed: dict[str, int] = {}
    if name == "runs":
        for source in rng.choice(len(text), size=MESSY_DECIMAL_COMMAS, replace=False):
            text.iloc[source, text.columns.get_loc("distance_km")] = (
                text.iloc[source]["distance_km"].replace(".", ","))
        fixed["decimal_comma"] = MESSY_DECIMAL_COMMAS
    order = np.concatenate([np.arange(len(text), dtype=float), np.asarray(positions)])
    combined = pd.concat([text, pd.DataFrame(copies, columns=text.columns)], ignore_index=True)
    rank = np.argsort(order, kind="stable")
    combined = combined.iloc[rank].reset_index(drop=True)
    is_copy = rank >= len(text)
    lines = np.flatnonzero(is_copy) + 2  # header is line 1
    reason_of = np.asarray(reasons)[rank[is_copy] - len(text)]
    injected = [{"file": f"{name}.csv", "line": int(line), "reason": str(reason)}
                for line, reason in zip(lines, reason_of, strict=True)]
    return combined, injected, fixed


# --- training ------------------------------------------------------------------------------


def _draw_runners(
    rng: np.random.Generator, per_cohort: int, cohorts: int, weeks: int, start: pd.Timestamp
) -> pd.DataFrame:
    rows = []
    end = start + pd.Timedelta(days=weeks * DAYS_PER_WEEK - 1)
    for name, _, _, _ in COHORT_ARCHETYPES[:cohorts]:
        for i in range(per_cohort):
            rows.append({"runner_id": f"{name[:3].upper()}{i + 1:03d}", "cohort": name})
    runners = pd.DataFrame(rows)
    n = len(runners)
    return runners.assign(
        sex=rng.choice(np.array(["F", "M"]), size=n),
        age=rng.integers(18, 61, size=n).astype(float),
        follow_up_start=start,
        follow_up_end=end,
    )


def _draw_runs(
    rng: np.random.Generator, runners: pd.DataFrame, weeks: int, start: pd.Timestamp
) -> pd.DataFrame:
    archetype = {a[0]: a for a in COHORT_ARCHETYPES}
    mean_km = runners["cohort"].map(lambda c: archetype[c][1]).to_numpy(float)
    freq = runners["cohort"].map(lambda c: archetype[c][2]).to_numpy(int)
    pace = runners["cohort"].map(lambda c: archetype[c][3]).to_numpy(float)
    n_runners = len(runners)

    # Weekly volume: runner base x block cycle x noise x occasional jumps and breaks.
    base = np.exp(np.log(mean_km) + rng.normal(0.0, BASE_KM_LOG_SD, n_runners))
    phase = rng.integers(0, len(BLOCK_PATTERN), n_runners)
    cycle = np.asarray(BLOCK_PATTERN)[(np.arange(weeks)[None, :] + phase[:, None]) % 4]
    noise = np.exp(rng.normal(0.0, WEEK_NOISE_LOG_SD, (n_runners, weeks)))
    jump = np.where(
        rng.random((n_runners, weeks)) < JUMP_WEEK_PROB,
        rng.uniform(*JUMP_WEEK_RANGE, (n_runners, weeks)),
        1.0,
    )
    breaks = rng.random((n_runners, weeks)) < BREAK_WEEK_PROB
    weekly_km = np.where(breaks, 0.0, base[:, None] * cycle * noise * jump)

    # Run days: n runs per week on random days, the long run on Saturday or Sunday.
    n_runs = np.clip(freq[:, None] + rng.integers(-1, 2, (n_runners, weeks)), 1, 7)
    keys = rng.random((n_runners, weeks, DAYS_PER_WEEK))
    long_day = rng.integers(5, 7, (n_runners, weeks))
    np.put_along_axis(keys, long_day[..., None], 2.0, axis=2)  # always chosen first
    rank = np.argsort(np.argsort(-keys, axis=2), axis=2)
    is_run = rank < n_runs[..., None]
    weight = rng.gamma(4.0, 1.0, (n_runners, weeks, DAYS_PER_WEEK))
    np.put_along_axis(
        weight, long_day[..., None],
        np.take_along_axis(weight, long_day[..., None], axis=2) * LONG_RUN_WEIGHT, axis=2,
    )
    weight = np.where(is_run, weight, 0.0)
    share = weight / weight.sum(axis=2, keepdims=True)
    km = np.round(np.minimum(weekly_km[..., None] * share, MAX_RUN_KM), 2)

    r_idx, w_idx, d_idx = np.nonzero(km >= MIN_RUN_KM)
    distance = km[r_idx, w_idx, d_idx]
    duration = np.round(
        distance * pace[r_idx] * np.exp(rng.normal(0.0, PACE_DAY_SD, distance.size)), 1
    )
    dates = start + pd.to_timedelta(w_idx * DAYS_PER_WEEK + d_idx, unit="D")
    return pd.DataFrame(
        {
            "runner_id": runners["runner_id"].to_numpy()[r_idx],
            "date": dates,
            "distance_km": distance,
            "duration_min": duration,
            "activity_type": "run",
        }
    )


def _assign_shoes(
    rng: np.random.Generator, runs: pd.DataFrame, runners: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Retire each shoe after a runner-specific lifetime (km); the first may be pre-used."""
    ids = runners["runner_id"].to_numpy()
    n = len(ids)
    lifetime = pd.Series(rng.uniform(*SHOE_LIFETIME_KM, n), index=ids)
    used = rng.random(n) < USED_FIRST_SHOE_PROB
    first_km = pd.Series(np.where(used, np.round(rng.uniform(*USED_FIRST_SHOE_KM, n)), 0.0),
                         index=ids)

    runs = runs.sort_values(["runner_id", "date"], kind="stable").reset_index(drop=True)
    km_before = runs.groupby("runner_id")["distance_km"].cumsum() - runs["distance_km"]
    worn = first_km.reindex(runs["runner_id"]).to_numpy() + km_before.to_numpy()
    shoe_no = np.floor(worn / lifetime.reindex(runs["runner_id"]).to_numpy()).astype(int) + 1
    runs = runs.assign(shoe_id=runs["runner_id"] + "-S" + pd.Series(shoe_no).astype(str))

    first_use = runs.groupby("shoe_id", sort=False).agg(
        runner_id=("runner_id", "first"), first_use=("date", "min")
    )
    shoes = first_use.reset_index()
    is_first = shoes["shoe_id"].str.endswith("-S1")
    start_km = np.where(is_first, first_km.reindex(shoes["runner_id"]).to_numpy(), 0.0)
    # A pre-used first shoe has an unknown purchase date; new shoes start on first use.
    unknown_start = is_first & (start_km > 0)
    shoes = shoes.assign(
        start_date=shoes["first_use"].where(~unknown_start),
        start_km=start_km,
    )[["shoe_id", "runner_id", "start_date", "start_km"]]
    runs = runs[["runner_id", "date", "distance_km", "duration_min", "shoe_id", "activity_type"]]
    return runs, shoes


def _draw_report_days(
    rng: np.random.Generator,
    runners: pd.DataFrame,
    weeks: int,
    start: pd.Timestamp,
    missing_prob: float,
) -> pd.DataFrame:
    """One report per runner and week, on Sunday; some are not returned."""
    ids = runners["runner_id"].to_numpy()
    week = np.tile(np.arange(weeks), ids.size)
    runner = np.repeat(ids, weeks)
    keep = rng.random(week.size) >= missing_prob
    dates = start + pd.to_timedelta(week[keep] * DAYS_PER_WEEK + DAYS_PER_WEEK - 1, unit="D")
    return pd.DataFrame({"runner_id": runner[keep], "date": dates})


def _reference_exposures(
    runs: pd.DataFrame,
    runners: pd.DataFrame,
    report_days: pd.DataFrame,
    shoes: pd.DataFrame,
    columns: list[str],
    lag_days: int,
) -> pd.DataFrame:
    """Exposures at each report's reference day, from the package's own panel builder."""
    placeholder = report_days.assign(pain=0.0)
    built = build_panel(runs, runners, placeholder, shoes, exposure_lag_days=lag_days)
    panel = built.panel[["runner_id", "date", *columns]]
    merged = report_days.merge(panel, on=["runner_id", "date"], how="left", validate="1:1")
    return merged.sort_values(["runner_id", "date"], kind="stable").reset_index(drop=True)


# --- outcomes ------------------------------------------------------------------------------


def _runner_effects(rng: np.random.Generator, runner_ids: pd.Series, sd: float) -> np.ndarray:
    codes, uniques = pd.factorize(runner_ids, sort=True)
    return rng.normal(0.0, sd, len(uniques))[codes] if sd > 0 else np.zeros(len(codes))


def linear_predictor(exposures: pd.DataFrame, effects: dict[str, float]) -> np.ndarray:
    """Per row, the sum of ``effect * column`` over ``effects`` (a missing exposure counts 0)."""
    eta = np.zeros(len(exposures))
    for column, beta in effects.items():
        eta += beta * exposures[column].astype(float).fillna(0.0).to_numpy()
    return eta


def _nrs_outcome(
    rng: np.random.Generator,
    exposures: pd.DataFrame,
    effects: dict[str, float],
    *,
    sd_intercept: float,
    sd_slope: float,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    u0 = _runner_effects(rng, exposures["runner_id"], sd_intercept)
    u1 = _runner_effects(rng, exposures["runner_id"], sd_slope)
    jump = exposures["mileage_jump"].astype(float).fillna(0.0).to_numpy()
    latent = (
        NRS_INTERCEPT
        + linear_predictor(exposures, effects)
        + u0
        + u1 * jump
        + rng.normal(0.0, NRS_RESIDUAL_SD, len(exposures))
    )
    rounded = np.round(latent)
    pain = np.clip(rounded, PAIN_MIN, PAIN_MAX)
    pain_table = exposures[["runner_id", "date"]].assign(pain=pain)
    truth = {
        "fixed_effects": {"Intercept": NRS_INTERCEPT, **effects},
        "random_effects": {
            "sd_intercept": sd_intercept,
            "sd_slope_mileage_jump": sd_slope,
            "corr_intercept_slope": 0.0,
        },
        "residual_sd": NRS_RESIDUAL_SD,
        "scale": "NRS points on the latent scale, before rounding and clipping to 0-10",
        "clipped_share": float(np.mean(rounded != pain)),
    }
    return pain_table, truth


def _binary_outcome(
    rng: np.random.Generator,
    exposures: pd.DataFrame,
    effects: dict[str, float],
    *,
    threshold: float,
    sd_intercept: float,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    u0 = _runner_effects(rng, exposures["runner_id"], sd_intercept)
    eta = BINARY_INTERCEPT + linear_predictor(exposures, effects) + u0
    present = rng.random(len(exposures)) < 1.0 / (1.0 + np.exp(-eta))
    low = int(np.ceil(threshold))
    # NRS inside the band: threshold..10 when present, 0..threshold-1 otherwise.
    pain = np.where(
        present,
        low + rng.binomial(int(PAIN_MAX) - low, BINARY_PAIN_PRESENT_P, len(exposures)),
        rng.binomial(max(low - 1, 0), BINARY_PAIN_ABSENT_P, len(exposures)),
    ).astype(float)
    pain_table = exposures[["runner_id", "date"]].assign(pain=pain)
    truth = {
        "fixed_effects": {"Intercept": BINARY_INTERCEPT, **effects},
        "odds_ratios": {k: float(np.exp(v)) for k, v in effects.items()},
        "random_effects": {"sd_intercept": sd_intercept},
        "scale": "log-odds of pain >= pain_threshold",
        "prevalence": float(present.mean()),
    }
    return pain_table, truth


def _band_pain(rng: np.random.Generator, present: np.ndarray, threshold: float) -> np.ndarray:
    """NRS inside the band: threshold..10 when ``present``, 0..threshold-1 otherwise."""
    low = int(np.ceil(threshold))
    return np.where(
        present,
        low + rng.binomial(int(PAIN_MAX) - low, BINARY_PAIN_PRESENT_P, len(present)),
        rng.binomial(max(low - 1, 0), BINARY_PAIN_ABSENT_P, len(present)),
    ).astype(float)


def _hazard_outcome(
    rng: np.random.Generator,
    exposures: pd.DataFrame,
    effects: dict[str, float],
    *,
    threshold: float,
    sd_frailty: float,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Weekly reports from an episode process with a proportional hazard (module docstring)."""
    from analysis.episodes import RESOLVE_AFTER_REPORTS

    u = _runner_effects(rng, exposures["runner_id"], sd_frailty)
    risk = HAZARD_WEEKLY_BASELINE * np.exp(linear_predictor(exposures, effects) + u)
    onset_draw = rng.random(len(exposures)) < -np.expm1(-risk)
    p_stop = 1.0 / HAZARD_EPISODE_WEEKS  # a painful week is the last with this probability
    stop_draw = rng.random(len(exposures)) < p_stop
    painful = np.zeros(len(exposures), dtype=bool)
    onsets = np.zeros(len(exposures), dtype=bool)
    # reports are sorted by runner and date: walk each runner's reports in order
    runner = exposures["runner_id"].to_numpy()
    first = np.r_[True, runner[1:] != runner[:-1]]
    state, free_left = "risk", 0  # "risk" | "pain" | "resolving"
    for i in range(len(exposures)):
        if first[i]:
            state, free_left = "start", 0
        if state == "start":
            state = "risk"  # the first report is pain-free and not at risk
        elif state == "risk":
            if onset_draw[i]:
                painful[i] = onsets[i] = True
                state = "resolving" if stop_draw[i] else "pain"
                free_left = RESOLVE_AFTER_REPORTS
        elif state == "pain":
            painful[i] = True
            if stop_draw[i]:
                state, free_left = "resolving", RESOLVE_AFTER_REPORTS
        else:  # pain-free reports that resolve the episode
            free_left -= 1
            if free_left == 0:
                state = "risk"
    pain = _band_pain(rng, painful, threshold)
    pain_table = exposures[["runner_id", "date"]].assign(pain=pain)
    truth = {
        "fixed_effects": dict(effects),
        "log_hazard_ratios": dict(effects),
        "hazard_ratios": {k: float(np.exp(v)) for k, v in effects.items()},
        "baseline_weekly_hazard": HAZARD_WEEKLY_BASELINE,
        "episode_weeks_mean": HAZARD_EPISODE_WEEKS,
        "random_effects": {"sd_frailty": sd_frailty},
        "scale": "log hazard ratio of a new pain episode per unit of the column",
        "episodes": int(onsets.sum()),
    }
    return pain_table, truth


def _iso_dates(table: pd.DataFrame) -> pd.DataFrame:
    """Dates as ISO 8601 day strings (empty when unknown), for the CSV contract."""
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.strftime("%Y-%m-%d")
    return out
