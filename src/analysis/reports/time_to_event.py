"""The cohort report's "Time to pain episode" section: what its notebook cells call.

Three outputs, each from the package's one definition (nothing recomputed here):

* the episodes and time-at-risk table: :func:`analysis.episodes.at_risk` days, counted by
  :func:`analysis.epi.incidence_from_days` (first episodes over the time at risk before any
  episode; all incident episodes over all time at risk), with the exact Poisson interval
  (independent events) beside the runner-bootstrap one (episodes clustered in runners);
* the cumulative incidence of the first episode by Nielsen band
  (:func:`analysis.models.first_episode_curves`, Kaplan-Meier with Greenwood intervals);
* the hazard ratios of the report's exposures from an Andersen-Gill model
  (:func:`analysis.models.fit_survival`), per reading step (``analysis.effects``).

Why Andersen-Gill and not Cox for the first episode: a cohort of 20 runners has at most 20
first episodes (the demo's recreational cohort: 10) but 41 incident episodes in all; the AG
model uses every episode and its runner-clustered robust standard errors account for the
episodes of one runner being alike (Lin & Wei 1989; Amorim & Cai 2015, Int J Epidemiol
44:324). The first-episode curves show what a first-episode Cox model would rest on.
Notebook 05 fits all three (Cox, AG, PWP) side by side.

Doubtful fits are said, never hidden: a fit that did not converge, an infinite estimate
(monotone likelihood) or a proportional-hazards test below
:data:`analysis.models.survival.PH_ALPHA` is listed in the hazard-ratio table's ``Note``
column, in the section's text and in ``summary.json`` (:func:`summary_block`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.survival import term_notes
from analysis.reports.cohort import CohortView

#: The report's time-to-event model (see the module docstring for why).
REPORT_MODEL = "andersen-gill"
#: Bands of the cumulative-incidence figure: the Nielsen et al. 2014 progression bands of
#: the week-over-week mileage change at each day's reference day.
CURVE_BAND = "jump_category"
#: Runner-bootstrap replicates of the incidence intervals in a report (the epi default is
#: 2,000; 500 give the 2.5 / 97.5 % quantiles to about +/- 1 % of the rate on the demo and
#: keep the section fast, well under 0.5 s per cohort).
REPORT_BOOTSTRAP = 500
#: Scopes of the incidence table in display order and their column headings.
SCOPE_HEADINGS = {"first": "First episode", "all": "All episodes"}
#: Keys of the ``time_to_event`` block of ``summary.json``.
SUMMARY_KEYS = ("model", "exposures", "exposures_left_out", "n_runners", "n_rows",
                "n_events", "converged", "status", "problems", "note", "estimates",
                "incidence")


@dataclass
class TimeToEvent:
    """One cohort's time-to-event section.

    ``result`` is the fitted model (None with ``reason`` when none could be fitted);
    ``incidence`` the :func:`analysis.epi.incidence_from_days` rows (scopes ``first`` and
    ``all``); ``curves`` the first-episode Kaplan-Meier table by :data:`CURVE_BAND` (that of
    :func:`analysis.models.first_episode_curves`; None with ``curve_reason``), ``overall``
    the same with the bands pooled, ``curve_ends`` each curve's last day at risk;
    ``left_out`` the report's exposures that are not daily columns ({exposure: reason}).
    """

    model: str
    exposures: list[str]
    result: Any | None
    reason: str | None
    incidence: pd.DataFrame
    curves: pd.DataFrame | None
    curve_reason: str | None = None
    left_out: dict[str, str] = field(default_factory=dict)
    overall: pd.DataFrame | None = None
    curve_ends: dict[str, float] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """The model's problems (non-convergence included), empty without a model."""
        if self.result is None:
            return []
        problems = list(self.result.problems)
        if not self.result.converged and not any("converge" in p for p in problems):
            problems.insert(0, "not converged")
        return problems

    @property
    def forest_reason(self) -> str | None:
        """Why no hazard-ratio forest plot is drawn (None: it is): no model, a fit that did
        not converge, or no term with a finite estimate."""
        if self.result is None:
            return "no model"
        if not self.result.converged:
            return "the model did not converge"
        notes = term_notes(self.result)
        if all("infinite estimate" in notes.get(t, []) for t in self.result.table["term"]):
            return "no exposure has a finite estimate"
        return None

    @property
    def status(self) -> str | None:
        """``ok``, ``warning`` (a problem above) or None without a model."""
        if self.result is None:
            return None
        return "warning" if self.problems else "ok"


def cohort_time_to_event(view: CohortView, *, exposures: Sequence[str],
                         model: str = REPORT_MODEL, n_boot: int = REPORT_BOOTSTRAP,
                         seed: int = 0) -> TimeToEvent:
    """The time-to-event section of one cohort (never raises a model error).

    Parameters
    ----------
    view
        :func:`analysis.reports.load_cohort` output (its ``calendar`` and ``episodes``).
    exposures
        The report's exposures (panel columns); those that are daily columns are modelled
        at each day's reference day, the others are listed in ``left_out``.
    model
        ``andersen-gill`` (default, :data:`REPORT_MODEL`), ``cox`` or ``pwp``.
    n_boot, seed
        Runner-bootstrap replicates and seed of the incidence intervals.
    """
    from analysis.epi import incidence_from_days
    from analysis.episodes import at_risk
    from analysis.models.survival import episodes_of, fit_survival

    processed = view.processed()
    daily = processed["daily"]
    chosen = [c for c in exposures if c in daily.columns]
    left_out = {c: f"{c} is not a column of the daily calendar, so it has no value on the "
                "days between reports" for c in exposures if c not in daily.columns}
    table = episodes_of(processed)
    processed["episodes"] = table  # computed once for the three uses below
    days = at_risk(daily, table, reports=view.panel)
    incidence = incidence_from_days(days, by=(), n_boot=n_boot, seed=seed)
    result, reason = None, None
    if not chosen:
        reason = "No exposure of the report is a daily column, so no model was fitted."
    else:
        try:
            result = fit_survival(processed, model=model, exposures=chosen)
        except ModelSpecError as error:
            reason = f"The model cannot be fitted for this cohort: {error.one_line()}"
    curves, overall, ends, curve_reason = None, None, {}, None
    try:
        curves, overall, ends = band_curves(processed, band=CURVE_BAND)
    except ModelSpecError as error:
        curve_reason = error.one_line()
    if curves is not None and curves.empty:
        curves, curve_reason = None, "no first episode on a day with a known band"
    return TimeToEvent(model=model, exposures=chosen, result=result, reason=reason,
                       incidence=incidence, curves=curves, curve_reason=curve_reason,
                       left_out=left_out, overall=overall, curve_ends=ends)


def band_curves(processed: Mapping[str, Any], *, band: str = CURVE_BAND
                ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """First-episode Kaplan-Meier curves by ``band`` (those of
    :func:`analysis.models.first_episode_curves`), the pooled curve over all days at risk,
    and each curve's last day at risk (``"all days"`` for the pooled one), for
    :func:`analysis.plots.cumulative_incidence_plot`."""
    from analysis.models.survival import kaplan_meier, survival_design

    rows = survival_design(processed, model="cox", exposures=[band])
    banded = rows.dropna(subset=[band])
    curves = kaplan_meier(banded, by=band)
    overall = kaplan_meier(rows)
    ends = {str(k): float(v)
            for k, v in banded.groupby(band, observed=True)["stop"].max().items()}
    ends["all days"] = float(rows["stop"].max()) if len(rows) else 0.0
    return curves, overall, ends


#: Display names of the time-to-event models.
MODEL_NAMES = {"cox": "Cox (first episode)", "andersen-gill": "Andersen-Gill",
               "pwp": "PWP gap time"}


def model_comparison(results: Mapping[str, Any]) -> pd.DataFrame:
    """Hazard ratios per unit of each term (95 % CI) of several fits side by side, with
    their episodes, rows, log partial likelihood, convergence and problems.

    ``results``: ``{model name: ModelResult}`` (e.g. ``cox``, ``andersen-gill``, ``pwp``
    from :func:`analysis.models.fit_survival`).
    """
    from analysis.labels import format_number, interval_text, term_label

    columns: dict[str, dict[str, str]] = {}
    for name, r in results.items():
        notes = term_notes(r)
        col = {term_label(row.term): "not estimable (infinite estimate)"
               if "infinite estimate" in notes.get(row.term, [])
               else interval_text(row.hazard_ratio, row.hr_ci_low, row.hr_ci_high,
                                  ratio=True)
               for row in r.table.itertuples()}
        col |= {"episodes": str(r.extra["n_events"]), "rows at risk": f"{r.n_obs:,}",
                "runners": str(r.n_runners),
                "log partial likelihood": format_number(r.loglik, 6),
                "converged": "yes" if r.converged else "NO",
                "problems": "; ".join(r.problems) or "none"}
        columns[MODEL_NAMES.get(name, name)] = col
    table = pd.DataFrame(columns)
    table.index.name = "Hazard ratio per unit (95 % CI)"
    return table


def ph_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """The proportional-hazards score tests (R ``cox.zph``) of each fit: one row per model
    and term (GLOBAL: all terms), chi-square, df, p and whether p < the PH level."""
    from analysis.labels import format_number, format_p, term_label
    from analysis.models.survival import PH_ALPHA

    rows = []
    for name, r in results.items():
        for test in r.extra["ph_test"]:
            rows.append({"model": MODEL_NAMES.get(name, name),
                         "term": test["term"] if test["term"] == "GLOBAL"
                         else term_label(test["term"]),
                         "chi-square": format_number(test["chisq"]), "df": int(test["df"]),
                         "p": format_p(test["p_value"]),
                         f"p < {PH_ALPHA:g}": "yes" if test["p_value"] < PH_ALPHA else ""})
    return pd.DataFrame(rows)


def episode_counts(table: pd.DataFrame, *, by: str = "cohort") -> pd.DataFrame:
    """Per ``by`` group of an episodes table (:func:`analysis.episodes.episodes`): runners
    with an episode, episodes, prevalent at the first report, first episodes, resolved,
    median duration (days) and median time loss (days)."""
    groups = table.groupby(by, observed=True, sort=True)
    return pd.DataFrame({
        "runners with an episode": groups["runner_id"].nunique(),
        "episodes": groups.size(),
        "prevalent at first report": groups["prevalent"].sum().astype(int),
        "incident": (~table["prevalent"]).groupby(table[by], observed=True).sum().astype(int),
        "resolved": groups["resolved"].sum().astype(int),
        "median duration (days)": groups["duration_days"].median(),
        "median time loss (days)": groups["time_loss_days"].median(),
    })


def _interval(low: float, high: float) -> str:
    from analysis.labels import format_number

    return f"{format_number(low)} to {format_number(high)}"


def episodes_table(tte: TimeToEvent) -> pd.DataFrame:
    """Episodes and time at risk, first and all episodes side by side (text cells).

    Rows: runners, runners at risk, episodes, runner-days at risk, hours and km at risk,
    incidence per 1,000 h with the exact Poisson 95 % CI (events independent) and the
    runner-bootstrap 95 % CI (episodes clustered within runners), and per 1,000 km.
    """
    from analysis.labels import format_number

    rows: dict[str, list[str]] = {}
    inc = tte.incidence.set_index("scope")
    for scope in SCOPE_HEADINGS:
        r = inc.loc[scope]
        col = [f"{int(r['runners'])}", f"{int(r['runners_at_risk'])}",
               f"{int(r['episodes'])}", f"{int(r['days_at_risk']):,}",
               f"{r['hours']:,.0f}", f"{r['km']:,.0f}",
               format_number(r["rate_per_1000_h"]),
               _interval(r["ci_low_h"], r["ci_high_h"]),
               _interval(r["boot_low_h"], r["boot_high_h"]),
               format_number(r["rate_per_1000_km"]),
               _interval(r["boot_low_km"], r["boot_high_km"])]
        rows[SCOPE_HEADINGS[scope]] = col
    index = ["Runners", "Runners at risk", "Episodes", "Runner-days at risk",
             "Hours at risk", "km at risk", "Incidence per 1,000 h",
             "95 % CI, exact Poisson (independent events)",
             "95 % CI, runner bootstrap (clustered)", "Incidence per 1,000 km",
             "95 % CI per 1,000 km, runner bootstrap"]
    return pd.DataFrame(rows, index=pd.Index(index, name="Measure")).reset_index()


def _term_notes(tte: TimeToEvent) -> dict[str, list[str]]:
    """Problems of the fit per term (PH violated, infinite estimate)."""
    return {} if tte.result is None else term_notes(tte.result)



def hazard_table(tte: TimeToEvent) -> pd.DataFrame:
    """Hazard ratios per reading step with 95 % CIs, p-values and a note per term
    (columns Term, Step, Hazard ratio (95 % CI), p, Note); empty without a model."""
    from analysis.labels import format_p, interval_text, term_label

    columns = ["Term", "Step", "Hazard ratio (95 % CI)", "p", "Note"]
    if tte.result is None:
        return pd.DataFrame(columns=columns)
    notes = _term_notes(tte)
    table = hazard_steps(tte)
    rows = [[term_label(r.term), r.step_label,
             "not estimable" if "infinite estimate" in notes.get(r.term, [])
             else interval_text(r.hr_step, r.hr_step_low, r.hr_step_high, ratio=True),
             format_p(r.p_value), "; ".join(notes.get(r.term, []))]
            for r in table.itertuples()]
    return pd.DataFrame(rows, columns=columns)


def hazard_steps(tte: TimeToEvent) -> pd.DataFrame:
    """The model's table with hazard ratios per reading step (``hr_step``, ``hr_step_low``,
    ``hr_step_high``: ``exp`` of the log hazard ratio per step, e.g. per +10 % mileage)."""
    from analysis.effects import add_reading_units

    if tte.result is None:
        return pd.DataFrame()
    table = add_reading_units(tte.result.table)
    return table.assign(hr_step=np.exp(table["estimate_step"]),
                        hr_step_low=np.exp(table["ci_low_step"]),
                        hr_step_high=np.exp(table["ci_high_step"]))


def forest_rows(tte: TimeToEvent) -> pd.DataFrame:
    """What :func:`analysis.plots.hazard_ratio_forest` draws: hazard ratios per step."""
    table = hazard_steps(tte)
    return table.assign(hazard_ratio=table["hr_step"], hr_ci_low=table["hr_step_low"],
                        hr_ci_high=table["hr_step_high"])


def doubtful_terms(tte: TimeToEvent) -> list[str]:
    """Terms with a problem (drawn hollow in the forest plot)."""
    return sorted(_term_notes(tte))


def section_text(tte: TimeToEvent) -> str:
    """The section's sentences on the model: events, rows, fit status, problems (Markdown;
    every problem through :func:`analysis.reports.effects.markdown_text`)."""
    from analysis.labels import humanize
    from analysis.reports.effects import markdown_text

    if tte.result is None:
        return f"**No time-to-event model for this cohort.** {markdown_text(tte.reason)}"
    r = tte.result
    name = MODEL_NAMES[tte.model]
    text = (f"{name} model: {r.extra['n_events']} episodes in {r.n_obs:,} runner-days at "
            f"risk from {r.n_runners} runners; "
            + ("converged." if r.converged else "**did not converge**: do not use it."))
    if tte.problems:
        text += ("\n\n**This model has problems; read its hazard ratios with care:**\n"
                 + "\n".join(f"- {markdown_text(humanize(p))}" for p in tte.problems))
    dropped = r.dropped or {}
    if dropped:
        text += "\n\nRows left out: " + ", ".join(
            f"{markdown_text(k)}: {v}" for k, v in dropped.items()) + "."
    return text


def summary_block(tte: TimeToEvent | None) -> dict[str, Any] | None:
    """The ``time_to_event`` block of ``summary.json`` (:data:`SUMMARY_KEYS`).

    ``estimates``: per term ``term``, ``log_hr``, ``std_error`` (robust), ``hazard_ratio``,
    ``hr_ci_low``, ``hr_ci_high`` (per unit), ``step``, ``step_label``, ``hr_step``,
    ``hr_step_low``, ``hr_step_high`` (per reading step), ``p_value``. ``incidence``: per
    scope (``first``, ``all``) ``episodes``, ``runners_at_risk``, ``days_at_risk``,
    ``hours``, ``km``, ``rate_per_1000_h`` with ``ci_low_h``/``ci_high_h`` (exact Poisson)
    and ``boot_low_h``/``boot_high_h`` (runner bootstrap), ``rate_per_1000_km`` with
    ``boot_low_km``/``boot_high_km``. ``status`` is ``ok`` | ``warning`` | None (no model),
    ``problems`` the model's (non-convergence first), ``note`` why there is no model.
    """
    if tte is None:
        return None
    r = tte.result
    estimates = []
    if r is not None:
        for row in hazard_steps(tte).itertuples():
            estimates.append({
                "term": str(row.term), "log_hr": float(row.estimate),
                "std_error": float(row.std_error), "hazard_ratio": float(row.hazard_ratio),
                "hr_ci_low": float(row.hr_ci_low), "hr_ci_high": float(row.hr_ci_high),
                "step": float(row.step), "step_label": str(row.step_label),
                "hr_step": float(row.hr_step), "hr_step_low": float(row.hr_step_low),
                "hr_step_high": float(row.hr_step_high), "p_value": float(row.p_value)})
    keep = ("episodes", "runners_at_risk", "days_at_risk", "hours", "km", "rate_per_1000_h",
            "ci_low_h", "ci_high_h", "boot_low_h", "boot_high_h", "rate_per_1000_km",
            "boot_low_km", "boot_high_km")
    incidence = {str(row["scope"]): {k: _plain(row[k]) for k in keep}
                 for row in tte.incidence.to_dict(orient="records")}
    block = {
        "model": tte.model,
        "exposures": list(tte.exposures),
        "exposures_left_out": dict(tte.left_out),
        "n_runners": None if r is None else int(r.n_runners),
        "n_rows": None if r is None else int(r.n_obs),
        "n_events": None if r is None else int(r.extra["n_events"]),
        "converged": None if r is None else bool(r.converged),
        "status": tte.status,
        "problems": tte.problems,
        "note": tte.reason,
        "estimates": estimates,
        "incidence": incidence,
    }
    return {k: block[k] for k in SUMMARY_KEYS}


def _plain(value: Any) -> float | int | None:
    """A JSON number (NaN -> None)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return int(value) if isinstance(value, int | np.integer) else float(value)


__all__ = [
    "CURVE_BAND",
    "MODEL_NAMES",
    "REPORT_BOOTSTRAP",
    "REPORT_MODEL",
    "SCOPE_HEADINGS",
    "SUMMARY_KEYS",
    "TimeToEvent",
    "band_curves",
    "cohort_time_to_event",
    "doubtful_terms",
    "episode_counts",
    "episodes_table",
    "forest_rows",
    "hazard_steps",
    "hazard_table",
    "model_comparison",
    "ph_table",
    "section_text",
    "summary_block",
    "term_notes",
]
