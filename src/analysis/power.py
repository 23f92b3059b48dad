"""Simulation-based power for studies of training load and knee pain.

Power to detect an exposure effect is estimated the only general way: simulate many studies
of the planned size with :func:`analysis.simulate.simulate_dataset` (true effects stated),
build each one's exposure panel exactly as real data would be, fit the planned model and
count how often the effect is significant (Arnold et al. 2011, BMC Med Res Methodol 11:94;
Green & MacLeod 2016, Methods Ecol Evol 7:493-8, the approach of R's simr).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.defaults import POWER_TARGET
from analysis.effects import per_unit_effects, reading_unit
from analysis.epi import wilson_interval
from analysis.errors import KneeloadError, ModelSpecError
from analysis.models import MIN_RUNNERS_FOR_SLOPE, STATUS_WARNING, fit_model
from analysis.simulate import DEFAULT_SEED, linear_predictor

#: Exposures the simulator's truth refers to (fraction, km, days).
DEFAULT_EXPOSURES = ("mileage_jump", "shoe_km", "rest_days_7d")
DEFAULT_ALPHA = 0.05

#: Per-unit summary columns of :func:`summarise_simulations` that :func:`power_curve` also
#: gives per reading step (``<column>_step`` = value x ``step``), as a model table gives
#: ``estimate`` and ``estimate_step`` (:func:`analysis.effects.add_reading_units`).
PER_UNIT_SUMMARY_COLUMNS = ("mean_estimate", "bias", "empirical_sd", "mean_std_error")

#: Random slopes in the simulator's outcome models (analysis.simulate): NRS has one on the
#: jump, the logistic model none.
SIMULATED_RANDOM_SLOPES: dict[str, tuple[str, ...]] = {
    "lmm": ("mileage_jump",), "glmm": (), "gee": ()}

#: Outcome model the simulator draws for each model family.
_OUTCOME_FOR_MODEL = {"lmm": "nrs", "glmm": "binary", "gee": "binary"}


def simulate_panel(
    *,
    runners_per_cohort: int = 20,
    weeks: int = 26,
    cohorts: int = 1,
    seed: int = DEFAULT_SEED,
    outcome: str = "nrs",
    effects: dict[str, float] | None = None,
    runners: int | None = None,
    **simulate_kwargs: Any,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Simulate a study and build its exposure panel -> ``(panel, truth)``.

    ``truth["fixed_effects"]`` holds the true effects (NRS points per unit, or log-odds for
    ``outcome="binary"``) of the panel columns ``mileage_jump`` (fraction), ``shoe_km`` (km),
    ``rest_days_7d`` (days). ``runners``, when given, is the exact total number of runners,
    split as evenly as possible over ``cohorts`` (the first ``runners % cohorts`` cohorts get
    one more) and replacing ``runners_per_cohort``; ``truth["n_runners"]`` is the number
    simulated.
    """
    from analysis.exposures import build_panel
    from analysis.simulate import simulate_dataset

    if runners is not None:
        if runners < cohorts:
            raise ModelSpecError(f"{runners} runners cannot fill {cohorts} cohorts")
        runners_per_cohort = math.ceil(runners / cohorts)
    ds = simulate_dataset(runners_per_cohort=runners_per_cohort, weeks=weeks, cohorts=cohorts,
                          seed=seed, outcome=outcome, effects=effects, **simulate_kwargs)
    tables = {"runs": ds.runs, "runners": ds.runners, "pain": ds.pain, "shoes": ds.shoes}
    if runners is not None and runners < runners_per_cohort * cohorts:
        cohort_no = pd.Series(pd.factorize(ds.runners["cohort"])[0], index=ds.runners.index)
        quota = runners // cohorts + (cohort_no < runners % cohorts)
        rank = ds.runners.groupby("cohort", sort=False).cumcount()
        kept = ds.runners.loc[rank < quota, "runner_id"]
        tables = {name: t.loc[t["runner_id"].isin(kept)].reset_index(drop=True)
                  for name, t in tables.items()}
    built = build_panel(tables["runs"], tables["runners"], tables["pain"], tables["shoes"],
                        exposure_lag_days=ds.truth["exposure_lag_days"],
                        pain_threshold=ds.truth["pain_threshold"])
    return built.panel, {**ds.truth, "n_runners": len(tables["runners"])}


def redraw_lmm_outcome(panel: pd.DataFrame, truth: dict[str, Any], *,
                       seed: int) -> pd.DataFrame:
    """Replace ``pain`` by a draw from the exact linear mixed model stated in ``truth``.

    The simulator's NRS outcome is rounded and clipped to 0-10, which attenuates effects
    slightly; this redraw (same exposures, no rounding) gives a correctly specified LMM for
    verifying the estimator itself (tests, ``bench/coverage.py``).
    """
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(panel["runner_id"], sort=True)
    re = truth["random_effects"]
    u0 = rng.normal(0.0, re["sd_intercept"], len(uniques))[codes]
    u1 = rng.normal(0.0, re.get("sd_slope_mileage_jump", 0.0), len(uniques))[codes]
    fe = truth["fixed_effects"]
    slopes = {col: beta for col, beta in fe.items() if col != "Intercept"}
    eta = float(fe["Intercept"]) + linear_predictor(panel, slopes)
    jump = panel["mileage_jump"].astype(float).fillna(0.0).to_numpy()
    noise = rng.normal(0.0, truth["residual_sd"], len(panel))
    return panel.assign(pain=eta + u0 + u1 * jump + noise)


def simulate_and_fit(
    *,
    runners: int,
    weeks: int,
    effects: dict[str, float] | None = None,
    seed: int,
    model: str = "lmm",
    exposures: Sequence[str] = DEFAULT_EXPOSURES,
    random_slopes: Sequence[str] = (),
    cohorts: int = 1,
    alpha: float = DEFAULT_ALPHA,
) -> pd.DataFrame:
    """One simulated study: one row per exposure with truth, estimate, interval, p-value.

    Exactly ``runners`` runners are simulated (``n_runners``), split over ``cohorts``.

    A fit that fails (a :class:`~analysis.errors.KneeloadError`, e.g. an exposure that is
    constant in a tiny study) gives rows with ``failed=True`` and missing estimates: it
    counts as "not detected" in power. A fit that ran has its ``converged``, ``status``
    (``"ok"`` or ``"warning"``) and ``problems`` (joined with ``"; "``, e.g. ``"singular
    fit"``); a failed one has ``status`` ``"failed"``.
    """
    outcome = _OUTCOME_FOR_MODEL[model]
    panel, truth = simulate_panel(runners=runners, weeks=weeks, cohorts=cohorts, seed=seed,
                                  outcome=outcome, effects=effects)
    true_effects = truth["fixed_effects"]
    kwargs: dict[str, Any] = {"exposures": list(exposures)}
    if model != "gee":
        kwargs["random_slopes"] = list(random_slopes)
    try:
        res = fit_model(panel, model=model, **kwargs)
        table = res.table.set_index("term")
        failed, converged, message = False, res.converged, ""
        status, problems = res.status, "; ".join(res.problems)
    except KneeloadError as exc:
        table, failed, converged, message = None, True, False, exc.one_line()
        status, problems = "failed", ""
    rows = []
    for term in exposures:
        row: dict[str, Any] = {"seed": seed, "term": term, "truth": true_effects.get(term),
                               "n_runners": truth["n_runners"], "failed": failed,
                               "converged": converged, "status": status,
                               "problems": problems, "error": message}
        if table is not None:
            est = table.loc[term]
            row.update(estimate=est["estimate"], std_error=est["std_error"],
                       ci_low=est["ci_low"], ci_high=est["ci_high"], p_value=est["p_value"])
        rows.append(row)
    out = pd.DataFrame(rows)
    for col in ("estimate", "std_error", "ci_low", "ci_high", "p_value"):
        if col not in out:
            out[col] = np.nan
    return out.assign(significant=out["p_value"] < alpha,
                      covered=(out["ci_low"] < out["truth"]) & (out["truth"] < out["ci_high"]))


def _doubtful(sims: pd.DataFrame) -> pd.Series:
    """Fits that ran but did not converge or have problems (``status`` ``"warning"``)."""
    failed = sims["failed"].astype(bool)
    converged = sims["converged"].astype(bool) if "converged" in sims else True
    warning = sims["status"] == STATUS_WARNING if "status" in sims else False
    return ~failed & (~converged | warning)


def summarise_simulations(sims: pd.DataFrame, *, by: Sequence[str] = ("term",)) -> pd.DataFrame:
    """Power (Wilson 95 % interval), coverage of the 95 % intervals and bias per group.

    Parameters
    ----------
    sims : rows of :func:`simulate_and_fit` (``converged`` and ``status`` may be absent:
        then every fit that did not fail counts as clean).
    by : grouping columns.

    Returns
    -------
    Per group: ``n_sims``, ``n_failed`` (fits that raised; counted as not detected),
    ``n_doubtful`` (fits that ran but did not converge or had problems, e.g. a singular fit;
    their estimates are used), ``n_significant``, ``power`` with its Wilson interval,
    ``truth``, ``mean_estimate``, ``empirical_sd``, ``mean_std_error``, ``bias`` (all per
    unit of the column, as ``truth``), ``coverage`` among fits that did not fail, and
    ``first_error`` / ``first_problem`` (the first failure message and the first problem of
    a doubtful fit, for the user). When every fit failed, ``power`` and its interval are NaN
    (nothing was estimated), not 0.
    """
    by = list(by)
    doubtful = _doubtful(sims)
    ok = sims.assign(estimate_ok=sims["estimate"].where(~sims["failed"]),
                     covered_ok=sims["covered"].where(~sims["failed"]).astype(float),
                     doubtful=doubtful)
    out = ok.groupby(by, observed=True, sort=False).agg(
        n_sims=("seed", "size"), n_failed=("failed", "sum"), n_doubtful=("doubtful", "sum"),
        n_significant=("significant", "sum"), truth=("truth", "first"),
        mean_estimate=("estimate_ok", "mean"), empirical_sd=("estimate_ok", "std"),
        mean_std_error=("std_error", "mean"), coverage=("covered_ok", "mean"),
    ).reset_index()
    for column, source, rows in (("first_error", "error", sims["failed"].astype(bool)),
                                 ("first_problem", "problems", doubtful)):
        if source in sims.columns:  # the first message per group, for the user
            text = sims.loc[rows & sims[source].fillna("").ne(""), [*by, source]]
            first = text.groupby(by, observed=True, sort=False)[source].first()
            out = out.merge(first.rename(column), left_on=by, right_index=True, how="left")
    n_sims = out["n_sims"].to_numpy()
    all_failed = out["n_failed"].to_numpy() >= n_sims
    lo, hi = wilson_interval(out["n_significant"].to_numpy(), n_sims)
    power = np.where(all_failed, np.nan, out["n_significant"] / n_sims)
    return out.assign(power=power, power_ci_low=np.where(all_failed, np.nan, lo),
                      power_ci_high=np.where(all_failed, np.nan, hi),
                      bias=out["mean_estimate"] - out["truth"])


def _all_failed(summary: pd.DataFrame) -> pd.Series:
    """Why a simulated design has no power (every fit failed), None where some fit ran."""
    first = summary["first_error"] if "first_error" in summary else pd.Series(
        None, index=summary.index, dtype=object)
    reasons = [f"all {n} simulated fits failed; the first: {error}" if failed >= n else None
               for n, failed, error in zip(summary["n_sims"], summary["n_failed"], first,
                                           strict=True)]
    return pd.Series(reasons, index=summary.index, dtype=object)


def _check_power_options(effects: dict[str, float], *, alpha: float, model: str,
                         n_sims: int, exposures: Sequence[str]) -> None:
    """Reject what no simulation can answer (ModelSpecError naming the argument)."""
    if model not in _OUTCOME_FOR_MODEL:
        raise ModelSpecError(
            f"unknown model {model!r}; choose one of {sorted(_OUTCOME_FOR_MODEL)}")
    if n_sims < 1:
        raise ModelSpecError("n_sims must be at least 1")
    if not 0.0 < alpha < 1.0:  # also rejects NaN
        raise ModelSpecError(f"alpha must be between 0 and 1 (exclusive), got {alpha:g}")
    unknown = set(effects) - set(exposures)
    if unknown:
        raise ModelSpecError(f"effects {sorted(unknown)} are not among the modelled exposures "
                             f"{list(exposures)}")


def _not_estimable(n_runners: int, *, random_slopes: Sequence[str]) -> str | None:
    """Why the planned model cannot be fitted to ``n_runners`` runners (None if it can)."""
    if random_slopes and n_runners < MIN_RUNNERS_FOR_SLOPE:
        return (f"a random slope on {', '.join(random_slopes)} needs at least "
                f"{MIN_RUNNERS_FOR_SLOPE} runners (McNeish & Stapleton 2016); the design has "
                f"{n_runners}")
    return None


def _progress(total: int, enabled: bool, description: str) -> Any:
    if not enabled:
        return None
    from rich.progress import Progress

    bar = Progress(transient=False)
    bar.start()
    bar.add_task(description, total=total)
    return bar


def _timed_simulation(task: dict[str, Any]) -> tuple[pd.DataFrame, float]:
    t0 = time.perf_counter()
    out = simulate_and_fit(**task)
    return out, time.perf_counter() - t0


def power_curve(
    *,
    runners: Iterable[int],
    weeks: Iterable[int],
    effects: dict[str, float],
    n_sims: int = 100,
    alpha: float = DEFAULT_ALPHA,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    model: str = "lmm",
    exposures: Sequence[str] = DEFAULT_EXPOSURES,
    random_slopes: Sequence[str] | None = None,
    cohorts: int = 1,
    n_jobs: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Power to detect each effect in ``effects`` for every study size (runners x weeks).

    Parameters
    ----------
    runners : numbers of runners (in total, split evenly over ``cohorts``).
    weeks : follow-up lengths in weeks (one pain report a week).
    effects : true effects by exposure in the reading units the reports print
        (:mod:`analysis.effects`): for ``model="lmm"`` NRS points per step, e.g.
        ``{"mileage_jump": 0.09}`` = 0.09 NRS points per +10 % week-over-week mileage; for
        ``"glmm"``/``"gee"`` odds ratios per step, e.g. ``{"mileage_jump": 1.08}``. A report's
        number can be typed in as it is printed. Exposures not named keep the simulator's
        defaults.
    n_sims : simulated studies per design (the Monte Carlo SE of a power p is
        sqrt(p(1-p)/n_sims): 0.035 at p = 0.5 with 200).
    alpha : two-sided significance level of the Wald test.
    seed : master seed; design cell ``i`` and simulation ``j`` use a derived seed, so every
        cell is reproducible on its own.
    progress : show a progress bar (rich).
    model, exposures, cohorts : the planned analysis.
    random_slopes : random slopes of the fitted model; None (default) fits the structure the
        simulator draws: a random slope on ``mileage_jump`` for ``"lmm"``, none for the
        binomial models. (A random-intercept LMM on random-slope data has too-small SEs:
        coverage 0.86-0.93 and inflated power in docs/models.md.)
    n_jobs : worker processes (``spawn``ed: no fork of a threaded parent); the result does
        not depend on it, each simulation having its own seed.
    on_progress : called as ``on_progress(done, total)`` after each simulated study (e.g.
        to update a notebook's progress line or a tqdm bar); ``total`` is the number of
        studies simulated over all designs.

    Returns
    -------
    One row per runners x weeks x term in ``effects``: ``effect`` (as given, reading units:
    per ``step``) with its ``step_label``, ``truth`` (the simulated coefficient per unit of
    the column: NRS points or log-odds, as ``estimate`` in a model table), ``power`` with its
    Wilson interval, ``coverage`` of the 95 % intervals, ``n_failed``, ``n_doubtful`` and
    seconds per simulation. ``mean_estimate``, ``bias``, ``empirical_sd`` and
    ``mean_std_error`` are per unit of the column, like ``truth``; the same columns with
    ``_step`` (e.g. ``bias_step``) are per reading step (value x ``step``; NRS points, or
    log-odds for the binomial models), like ``estimate_step`` in a model table.
    Exactly ``runners`` runners are simulated per study. A design whose planned model is not
    estimable (a random slope with fewer than ``MIN_RUNNERS_FOR_SLOPE`` runners) is not
    simulated, and one where every simulated fit failed estimated nothing: for both
    ``power`` is NaN and ``not_estimable`` says why (None otherwise).

    Raises
    ------
    ModelSpecError
        An unknown model, ``n_sims < 1``, ``alpha`` outside (0, 1), an effect that is not a
        finite number (or, for the binomial models, not a positive odds ratio), or an effect
        on an exposure that is not modelled.
    """
    _check_power_options(effects, alpha=alpha, model=model, n_sims=n_sims,
                         exposures=exposures)
    given = dict(effects)
    odds = model in ("glmm", "gee")
    try:  # reading units (what the reports print) -> per-unit coefficients (the simulator's)
        effects = per_unit_effects(given, odds=odds)
    except ValueError as error:
        kind = "odds ratios per step" if odds else "NRS points per step"
        raise ModelSpecError(f"effects for model {model!r} are {kind}: {error}") from None
    if random_slopes is None:
        random_slopes = SIMULATED_RANDOM_SLOPES[model]
    cells = [(int(r), int(w)) for r in runners for w in weeks]
    fitted_slopes = tuple(random_slopes) if model != "gee" else ()  # GEE has no slopes
    reasons = [_not_estimable(n_runners, random_slopes=fitted_slopes) for n_runners, _ in cells]
    estimable = [i for i, reason in enumerate(reasons) if reason is None]
    # seeds are indexed by cell, so a cell's result does not depend on the other cells
    seeds = np.random.SeedSequence(seed).generate_state(len(cells) * n_sims, dtype=np.uint32)
    tasks = [{"runners": cells[i][0], "weeks": cells[i][1], "effects": effects,
              "seed": int(seeds[i * n_sims + j]), "model": model,
              "exposures": tuple(exposures), "random_slopes": tuple(random_slopes),
              "cohorts": cohorts, "alpha": alpha}
             for i in estimable for j in range(n_sims)]
    bar = _progress(len(tasks), progress, "simulating studies")
    sims: list[pd.DataFrame] = [pd.DataFrame()] * len(tasks)
    seconds = np.zeros(len(tasks))
    try:
        if n_jobs <= 1:
            for k, task in enumerate(tasks):
                sims[k], seconds[k] = _timed_simulation(task)
                if bar is not None:
                    bar.advance(bar.task_ids[0])
                if on_progress is not None:
                    on_progress(k + 1, len(tasks))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=n_jobs, mp_context=context) as pool:
                futures = {pool.submit(_timed_simulation, task): k
                           for k, task in enumerate(tasks)}
                for done, future in enumerate(as_completed(futures), start=1):
                    sims[futures[future]], seconds[futures[future]] = future.result()
                    if bar is not None:
                        bar.advance(bar.task_ids[0])
                    if on_progress is not None:
                        on_progress(done, len(tasks))
    finally:
        if bar is not None:
            bar.stop()
    results = []
    terms = [t for t in exposures if t in effects]
    for i, (n_runners, n_weeks) in enumerate(cells):
        if reasons[i] is not None:
            summary = pd.DataFrame({
                "term": terms, "truth": [float(effects[t]) for t in terms], "n_sims": 0,
                "n_failed": 0, "n_doubtful": 0, "n_significant": 0, "power": np.nan,
                "power_ci_low": np.nan, "power_ci_high": np.nan, "seconds_per_sim": np.nan})
        else:
            pos = estimable.index(i)
            part = slice(pos * n_sims, (pos + 1) * n_sims)
            summary = summarise_simulations(pd.concat(sims[part], ignore_index=True))
            summary = summary.loc[summary["term"].isin(terms)].assign(
                seconds_per_sim=float(seconds[part].mean()))
        results.append(summary.assign(
            runners=n_runners, weeks=n_weeks, model=model, alpha=alpha,
            effect=summary["term"].map(given).astype(float),
            step=summary["term"].map(lambda t: reading_unit(t).step).astype(float),
            step_label=summary["term"].map(lambda t: reading_unit(t).label),
            not_estimable=reasons[i] if reasons[i] is not None else _all_failed(summary)))
    out = pd.concat(results, ignore_index=True)
    for column in PER_UNIT_SUMMARY_COLUMNS:  # per reading step, next to the per-unit value
        per_unit = out[column] if column in out else pd.Series(np.nan, index=out.index)
        out[f"{column}_step"] = per_unit.astype(float) * out["step"]
    first = ["runners", "weeks", "term", "effect", "step", "step_label", "truth", "power",
             "power_ci_low", "power_ci_high"]
    return out[first + [c for c in out.columns if c not in first]]


def smallest_designs(curve: pd.DataFrame, *, target: float = POWER_TARGET) -> pd.DataFrame:
    """The designs of a :func:`power_curve` table whose estimated ``power`` reaches
    ``target`` (default :data:`~analysis.defaults.POWER_TARGET`): for each number of
    ``weeks``, the one with the fewest ``runners``, sorted by runners then weeks (empty when
    no design reaches it)."""
    reached = curve[curve["power"] >= target].sort_values(["runners", "weeks"])
    return reached.drop_duplicates("weeks")
