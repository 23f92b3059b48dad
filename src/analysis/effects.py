"""Reading units: the one definition of "per +10 % week-over-week mileage" and its kin.

Models estimate effects per unit of each exposure column (per +1.0 = +100 % week-over-week
mileage, per km on the shoe, ...). People read them per a step they can picture. This module
is the only place that knows the steps: tables, ``summary.json``, the index page,
``kneeload fit`` and ``kneeload power`` all go through :func:`add_reading_units` and
:func:`per_unit_effects` (docs/reports.md, "Reading units"). It knows nothing of cohorts,
manifests or models: a registry and functions on DataFrames.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ReadingUnit:
    """The step an effect is read per.

    Attributes
    ----------
    step : size of the step in the column's own unit (0.10 of a fraction = +10 %).
    unit : the column's unit (``fraction``, ``km``, ``days``, ``ratio``).
    label : the step in words, e.g. ``"per +10 % week-over-week mileage"``.
    """

    step: float
    unit: str
    label: str


#: Reading unit of each exposure column (its base name; see :func:`base_exposure`).
READING_UNITS: dict[str, ReadingUnit] = {
    "mileage_jump": ReadingUnit(0.10, "fraction", "per +10 % week-over-week mileage"),
    "shoe_km": ReadingUnit(100.0, "km", "per +100 km on the shoe"),
    "shoe_age_days": ReadingUnit(30.0, "days", "per +30 days of shoe age"),
    "rest_days_7d": ReadingUnit(1.0, "days", "per extra rest day in the week"),
    "km_7d": ReadingUnit(10.0, "km", "per +10 km in the week"),
    "km_28d": ReadingUnit(10.0, "km", "per +10 km in four weeks"),
    "acwr_rolling": ReadingUnit(0.1, "ratio", "per +0.1 acute:chronic ratio"),
    "acwr_ewma": ReadingUnit(0.1, "ratio", "per +0.1 acute:chronic ratio (EWMA)"),
}

#: Columns without an entry are read per unit of the column itself.
PER_UNIT = ReadingUnit(1.0, "unit", "per unit")

#: A dummy of a categorical covariate (``C(sex)[T.M]``, named by
#: ``analysis.models.build_design``) is 0 or 1: its effect is the level against the reference
#: level (the first in sorted order), a step of 1 that has no "per".
CATEGORICAL = ReadingUnit(1.0, "level", "vs the reference level")

#: How the design names dummy terms: ``C(<column>)[T.<level>]``.
CATEGORICAL_PREFIX = "C("

#: The intercept is not an effect: it has no reading unit.
INTERCEPT = "Intercept"

#: A natural-spline basis column (``ns(acwr_rolling, 3)2``, ``analysis.models.splines``) or a
#: cross-basis column of a distributed-lag model (``cb(distance_km)v1.l2``,
#: ``analysis.models.crossbasis``) has no per-step reading: its exposure is read off the
#: exposure-response curve (``analysis.models.nonlinear.exposure_response``) or the
#: cumulative lag effect (``analysis.models.crossbasis.crosspred``).
BASIS = ReadingUnit(1.0, "basis", "basis coefficient: read the curve, not this row")
#: How basis columns are named (their prefixes).
BASIS_PREFIXES = ("ns(", "cb(")
#: An interaction of two columns is named ``a:b`` (``analysis.models.build_design``); it is
#: read per the step of each: per (+10 km in the week) x (+10 km in four weeks).
INTERACTION_SEP = ":"

#: Suffixes that keep the base column's unit: within-between centering
#: (``analysis.models.build_design``) and weekly lags (``<feature>_lag{k}w``,
#: ``analysis.exposures.build_panel``).
_SUFFIX = re.compile(r"(_within|_between|_lag\d+w)+$")

#: Columns :func:`add_reading_units` adds (and overwrites: applying it twice changes nothing).
STEP_COLUMNS = ("step", "step_label", "estimate_step", "ci_low_step", "ci_high_step")
#: The odds-ratio columns it adds for binomial models.
ODDS_STEP_COLUMNS = ("odds_ratio_step", "or_ci_low_step", "or_ci_high_step")
#: The null value of an effect on each scale: 0 NRS points (a difference), a ratio of 1
#: (odds or hazard ratio).
NULL_EFFECT = {"nrs": 0.0, "odds": 1.0}
#: The estimate and interval columns of a step reading on each scale (what
#: :func:`add_reading_units` adds): NRS points, or odds ratios for binomial models.
STEP_VALUE_COLUMNS = {"nrs": ("estimate_step", "ci_low_step", "ci_high_step"),
                      "odds": ODDS_STEP_COLUMNS}


def step_value_columns(odds: bool) -> tuple[str, str, str]:
    """The estimate, lower and upper columns to show per step: odds ratios (``odds``) or
    NRS points (:data:`STEP_VALUE_COLUMNS`; the one choice of every table, figure and
    summary)."""
    return STEP_VALUE_COLUMNS["odds" if odds else "nrs"]


def null_effect(odds: bool) -> float:
    """No effect on the scale shown: a ratio of 1 (``odds``) or a difference of 0
    (:data:`NULL_EFFECT`)."""
    return NULL_EFFECT["odds" if odds else "nrs"]


def base_exposure(term: str) -> str:
    """The exposure column a model term is about: ``mileage_jump_within`` -> ``mileage_jump``."""
    return _SUFFIX.sub("", str(term))


def is_categorical_term(term: str) -> bool:
    """Whether a model term is a dummy of a categorical covariate (``C(sex)[T.M]``)."""
    return str(term).startswith(CATEGORICAL_PREFIX)


def reading_unit(term: str) -> ReadingUnit:
    """The reading unit of a model term.

    :data:`CATEGORICAL` for a categorical dummy (``C(sex)[T.M]``), :data:`BASIS` for a
    spline or cross-basis column, the product of both steps for an interaction ``a:b``
    (``km_7d:km_28d``: per +10 km in the week x +10 km in four weeks, a step of 100 km^2),
    the registry's entry for an exposure (with or without a centering or lag suffix),
    :data:`PER_UNIT` otherwise.
    """
    if is_categorical_term(term):
        return CATEGORICAL
    if str(term).startswith(BASIS_PREFIXES):
        return BASIS
    if INTERACTION_SEP in str(term):
        left, right = (reading_unit(t) for t in str(term).split(INTERACTION_SEP, 1))
        return ReadingUnit(left.step * right.step, f"{left.unit} x {right.unit}",
                           f"{left.label} x {right.label.removeprefix('per ')}")
    return READING_UNITS.get(base_exposure(term), PER_UNIT)


def add_reading_units(table: pd.DataFrame, *, odds: bool | None = None) -> pd.DataFrame:
    """Add the reading-unit columns to a tidy effects table (idempotent).

    Parameters
    ----------
    table : ``term``, ``estimate``, ``ci_low``, ``ci_high`` per unit of the column (NRS
        points, or log-odds for binomial models).
    odds : also add odds ratios per step (``odds_ratio_step``, ``or_ci_low_step``,
        ``or_ci_high_step``); default: when the table has an ``odds_ratio`` column.

    Returns
    -------
    The table with ``step`` (in the column's unit), ``step_label`` and ``estimate_step``,
    ``ci_low_step``, ``ci_high_step`` (= per-unit value x step, log-odds for binomial
    models); the per-unit columns are unchanged. The intercept row gets NaN and no label.
    """
    if "term" not in table.columns:
        return table
    odds = "odds_ratio" in table.columns if odds is None else odds
    units = [None if str(t) == INTERCEPT else reading_unit(t) for t in table["term"]]
    step = np.array([np.nan if u is None else u.step for u in units], dtype=float)
    out = table.assign(step=step, step_label=[None if u is None else u.label for u in units])
    for column in ("estimate", "ci_low", "ci_high"):
        if column in table.columns:
            out[f"{column}_step"] = table[column].to_numpy(dtype=float) * step
    if odds:
        for column, source in zip(ODDS_STEP_COLUMNS, ("estimate", "ci_low", "ci_high"),
                                  strict=True):
            if source in table.columns:
                with np.errstate(over="ignore"):  # a separated term's OR bound is inf
                    out[column] = np.exp(out[f"{source}_step"])
    return out


def per_unit_effects(effects: Mapping[str, float], *, odds: bool = False) -> dict[str, float]:
    """Effects given in reading units -> per-unit coefficients (what the simulator takes).

    Parameters
    ----------
    effects : by exposure, in the units the reports print: NRS points per step (e.g.
        ``{"mileage_jump": 0.09}`` = 0.09 NRS points per +10 % week-over-week mileage), or
        with ``odds=True`` odds ratios per step (``{"mileage_jump": 1.05}``).
    odds : the values are odds ratios per step (binomial models).

    Returns
    -------
    ``{exposure: coefficient per unit}`` (NRS points, or log-odds, per unit of the column).

    Raises
    ------
    ValueError
        A value that is not a finite number, or an odds ratio that is not positive.
    """
    out = {}
    for name, value in effects.items():
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name}: an effect must be a finite number, got {value:g}")
        if odds:
            if value <= 0:
                raise ValueError(f"{name}: an odds ratio must be a positive number, got "
                                 f"{value:g}")
            value = math.log(value)
        out[name] = value / reading_unit(name).step
    return out


def step_effects(effects: Mapping[str, float], *, odds: bool = False) -> dict[str, float]:
    """Inverse of :func:`per_unit_effects`: per-unit coefficients -> reading units."""
    out = {}
    for name, value in effects.items():
        value = float(value) * reading_unit(name).step
        out[name] = math.exp(value) if odds else value
    return out


__all__ = [
    "BASIS",
    "CATEGORICAL",
    "NULL_EFFECT",
    "ODDS_STEP_COLUMNS",
    "PER_UNIT",
    "READING_UNITS",
    "STEP_COLUMNS",
    "STEP_VALUE_COLUMNS",
    "ReadingUnit",
    "add_reading_units",
    "base_exposure",
    "is_categorical_term",
    "null_effect",
    "per_unit_effects",
    "reading_unit",
    "step_effects",
    "step_value_columns",
]
