"""Human labels for every panel column, model term and number a report prints.

One registry (:data:`COLUMN_LABELS`: name and display unit of every exposure, outcome and
covariate column the build writes) and the functions every figure, table and sentence reads
it through: :func:`label`, :func:`axis_label`, :func:`step_label` ("Week-over-week mileage
change (per +10 %)"), :func:`term_label` (``_within`` / ``_between`` / lags / categorical
levels), :func:`variance_label` ("Between-runner SD of the intercept"), :func:`format_p`
(journal style, "< 0.001") and :func:`format_number` (significant digits, never scientific
notation), and the figure captions (:func:`caption`).

The reading step of an effect is *not* defined here: it is :func:`analysis.effects.reading_unit`
(the one definition); :func:`step_text` only spells that step short ("per +10 %"). A column
whose reading unit is a fraction is shown in per cent (:func:`display_scale`), so axes and
bins read in the unit the effects are read in.

Imports nothing of the package beyond :mod:`analysis.effects` and :mod:`analysis.outcomes`
(no numpy-heavy work; the CLI may use it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from analysis.effects import (
    CATEGORICAL_PREFIX,
    INTERCEPT,
    NULL_EFFECT,
    ReadingUnit,
    reading_unit,
)
from analysis.outcomes import OUTCOME_SPECS

#: A p-value below this is printed "< 0.001" (journal convention, e.g. the BMJ/BJSM
#: statistics guidance: exact p to three decimals, "P<0.001" below that).
P_FLOOR = 0.001
#: Decimals of an exact p-value.
P_DECIMALS = 3
#: Significant digits of a printed estimate (effects, SDs, bin edges).
SIGNIFICANT_DIGITS = 3


@dataclass(frozen=True)
class ColumnLabel:
    """How a column is named in a figure or a table.

    Attributes
    ----------
    name : sentence-case name, e.g. ``"Week-over-week mileage change"``.
    unit : display unit (``"%"``, ``"km"``, ``"days"``); empty for a ratio, flag or level.
    scale : factor from the stored value to the display unit (100 for a fraction shown in
        per cent, else 1).
    """

    name: str
    unit: str = ""
    scale: float = 1.0


#: Windows of a daily load, as :data:`analysis.exposures.LOAD_WINDOWS` names them ->
#: (what the window is, unit kind: ``load`` keeps the load's unit, ``ratio`` has none,
#: ``rate`` is the load's unit per day).
_WINDOWS = {
    "7d": ("in the last 7 days", "load"),
    "prev7d": ("in the 7 days before", "load"),
    "28d": ("in the last 28 days", "load"),
    "acwr_rolling": ("acute:chronic ratio (rolling 7:28 d)", "ratio"),
    "acwr_uncoupled": ("acute:chronic ratio (uncoupled 7:21 d)", "ratio"),
    "acwr_ewma": ("acute:chronic ratio (EWMA)", "ratio"),
    "ctl": ("chronic load (42-day EWMA)", "rate"),
    "atl": ("acute load (7-day EWMA)", "rate"),
    "tsb": ("balance (chronic - acute)", "rate"),
}
#: The loads other than km (:data:`analysis.exposures.LOAD_PREFIXES` values) -> name, unit.
_LOADS = {
    "srpe": ("Session-RPE load", "AU"),
    "duration": ("Running time", "min"),
    "trimp_banister": ("Banister TRIMP", "AU"),
    "trimp_edwards": ("Edwards TRIMP", "AU"),
}


def _load_labels() -> dict[str, ColumnLabel]:
    out = {}
    for prefix, (name, unit) in _LOADS.items():
        for window, (what, kind) in _WINDOWS.items():
            shown = {"load": unit, "ratio": "", "rate": f"{unit}/day"}[kind]
            out[f"{prefix}_{window}"] = ColumnLabel(f"{name} {what}", shown)
    return out


#: Every column a figure or a table can name. Exposure and outcome columns of the panel
#: (``analysis.exposures.build_panel``; ``tests/test_labels.py`` fails when the build writes
#: a column without an entry), the daily calendar's, and the covariates.
COLUMN_LABELS: dict[str, ColumnLabel] = {
    # km windows (docs/exposures.md)
    "km_7d": ColumnLabel("Distance in the last 7 days", "km"),
    "km_prev7d": ColumnLabel("Distance in the 7 days before", "km"),
    "km_28d": ColumnLabel("Distance in the last 28 days", "km"),
    "mileage_jump": ColumnLabel("Week-over-week mileage change", "%", 100.0),
    "jump_category": ColumnLabel("Week-over-week mileage change band"),
    "run_spike": ColumnLabel("Run spike (> 10 % longer than the longest run in 30 days)"),
    "acwr_rolling": ColumnLabel("Acute:chronic workload ratio (rolling 7:28 d)"),
    "acwr_uncoupled": ColumnLabel("Acute:chronic workload ratio (uncoupled 7:21 d)"),
    "acwr_ewma": ColumnLabel("Acute:chronic workload ratio (EWMA)"),
    "ctl": ColumnLabel("Chronic training load (42-day EWMA)", "km/day"),
    "atl": ColumnLabel("Acute training load (7-day EWMA)", "km/day"),
    "tsb": ColumnLabel("Training stress balance (chronic - acute)", "km/day"),
    "monotony": ColumnLabel("Training monotony (7-day mean / SD)"),
    "strain": ColumnLabel("Training strain (weekly km x monotony)", "km"),
    "rest_days_7d": ColumnLabel("Rest days in the last 7 days", "days"),
    "days_since_rest": ColumnLabel("Days since the last rest day", "days"),
    "consecutive_run_days": ColumnLabel("Consecutive days with a run", "days"),
    "shoe_km": ColumnLabel("Distance on the current shoe", "km"),
    "shoe_age_days": ColumnLabel("Age of the current shoe", "days"),
    "shoes_in_rotation_30d": ColumnLabel("Shoes used in the last 30 days", "shoes"),
    **_load_labels(),
    # outcomes (analysis.outcomes.OUTCOME_SPECS names the modelled ones) and OSTRC items
    "pain": ColumnLabel("Knee pain", "NRS 0-10"),
    "pain_any": ColumnLabel("Pain present"),
    "ostrc_severity": ColumnLabel("OSTRC-O2 severity score", "0-100"),
    "ostrc_problem": ColumnLabel("OSTRC-O2 health problem"),
    "ostrc_substantial": ColumnLabel("OSTRC-O2 substantial problem"),
    **{f"ostrc_q{i}": ColumnLabel(f"OSTRC-O2 question {i} (answer)") for i in range(1, 5)},
    **{f"ostrc_q{i}_score": ColumnLabel(f"OSTRC-O2 question {i} score", "0-25")
       for i in range(1, 5)},
    # covariates and identifiers
    "sex": ColumnLabel("Sex"),
    "age": ColumnLabel("Age", "years"),
    "cohort": ColumnLabel("Cohort"),
    "runner_id": ColumnLabel("Runner"),
    "date": ColumnLabel("Date"),
    "reference_date": ColumnLabel("Reference day of the exposures"),
    # the daily calendar
    "distance_km": ColumnLabel("Distance", "km"),
    "weekly_km": ColumnLabel("Distance per week", "km"),
    "n_runs": ColumnLabel("Runs", "runs"),
    "longest_run_km": ColumnLabel("Longest run", "km"),
    "duration_min": ColumnLabel("Running time", "min"),
    "srpe_au": ColumnLabel("Session-RPE load", "AU"),
    "trimp_banister_au": ColumnLabel("Banister TRIMP", "AU"),
    "trimp_edwards_au": ColumnLabel("Edwards TRIMP", "AU"),
    "rest_day": ColumnLabel("Rest day"),
    "unlogged_gap": ColumnLabel("Unlogged gap"),
}

#: Suffixes a model or the build adds to a column (``analysis.effects`` strips the same ones
#: for the reading unit) and how a label says them.
_TERM_SUFFIX = re.compile(r"_(within|between|lag(\d+)w)$")
_SUFFIX_WORDS = {"within": "within runner", "between": "runner mean"}
#: ``C(<column>)[T.<level>]``, the design's dummy names.
_CATEGORICAL = re.compile(r"^C\((?P<column>[^)]+)\)\[T\.(?P<level>.*)\]$")
#: Grouping factor names -> the word used in variance-component labels.
_GROUP_WORDS = {"runner_id": "runner", "runner": "runner", "cohort": "cohort"}


def column_label(column: str) -> ColumnLabel:
    """The registry entry of a column; a column outside it gets its name in words (no unit)."""
    entry = COLUMN_LABELS.get(str(column))
    if entry is not None:
        return entry
    return ColumnLabel(sentence(str(column).replace("_", " ").strip()))


def has_label(column: str) -> bool:
    """Whether a column or model term (suffixes ``_within``, ``_between``, ``_lag{k}w``
    stripped; a categorical dummy by its column) has a registry entry."""
    text = str(column)
    match = _CATEGORICAL.match(text)
    return (match["column"] if match else _base(text)) in COLUMN_LABELS


def label(column: str) -> str:
    """Human name of a column: ``mileage_jump`` -> ``"Week-over-week mileage change"``."""
    return column_label(column).name


def unit(column: str) -> str:
    """Display unit of a column (``"%"`` for a fraction, ``"km"``, ...; may be empty)."""
    return column_label(column).unit


def display_scale(column: str) -> float:
    """Factor from stored values to the display unit: 100 for a fraction shown in %."""
    return column_label(column).scale


def axis_label(column: str) -> str:
    """Axis label with the unit: ``"Week-over-week mileage change (%)"``."""
    entry = column_label(column)
    return f"{entry.name} ({entry.unit})" if entry.unit else entry.name


#: A counted unit in the singular, for a step of one ("per +1 day", not "per +1 days").
_SINGULAR = {"days": "day", "runs": "run", "shoes": "shoe", "weeks": "week",
             "reports": "report"}


def step_text(column: str) -> str:
    """The reading step of an effect of ``column``, short: ``"per +10 %"``, ``"per +100 km"``.

    The step is :func:`analysis.effects.reading_unit` (the one definition), spelt in the
    column's display unit; a categorical dummy reads ``"vs the reference level"``.
    """
    ru: ReadingUnit = reading_unit(column)
    if ru.unit == "level":
        return ru.label
    entry = column_label(_base(column))
    shown = ru.step * entry.scale
    if ru.unit == "unit":  # no registered step: per one unit of the column
        return f"per +1 {_SINGULAR.get(entry.unit, entry.unit)}".rstrip() if entry.unit \
            else "per unit"
    value = format_number(shown)
    if entry.unit == "%":
        return f"per +{value} %"
    if ru.unit == "days":
        return f"per +{value} {'day' if shown == 1 else 'days'}"
    if ru.unit == "ratio" or not entry.unit:
        return f"per +{value}"
    return f"per +{value} {_SINGULAR.get(entry.unit, entry.unit) if shown == 1 else entry.unit}"


def step_label(column: str) -> str:
    """Name with its reading step: ``"Week-over-week mileage change (per +10 %)"``."""
    return f"{term_label(column)} ({step_text(column)})"


def _base(term: str) -> str:
    text = str(term)
    while (match := _TERM_SUFFIX.search(text)) is not None:
        text = text[:match.start()]
    return text


def term_label(term: str) -> str:
    """Human label of a model term.

    ``mileage_jump`` -> ``"Week-over-week mileage change"``; ``mileage_jump_within`` ->
    ``"Week-over-week mileage change, within runner"``; ``..._between`` -> ``", runner
    mean"``; ``km_7d_lag1w`` -> ``", 1 week earlier"``; ``C(sex)[T.M]`` -> ``"Sex: M"``;
    ``Intercept`` stays.
    """
    text = str(term)
    if text == INTERCEPT:
        return INTERCEPT
    if text.startswith(CATEGORICAL_PREFIX):
        match = _CATEGORICAL.match(text)
        if match is not None:
            return f"{label(match['column'])}: {match['level']}"
        return text
    words = []
    while (match := _TERM_SUFFIX.search(text)) is not None:
        kind = match.group(1)
        if match.group(2) is not None:
            weeks = int(match.group(2))
            words.append(f"{weeks} week{'s' if weeks != 1 else ''} earlier")
        else:
            words.append(_SUFFIX_WORDS[kind])
        text = text[:match.start()]
    return ", ".join([label(text), *reversed(words)])


def variance_label(group: object, var1: object, var2: object = None) -> str:
    """Readable name of a row of lme4's ``as.data.frame(VarCorr())`` layout.

    ``(runner_id, Intercept, None)`` -> ``"Between-runner SD of the intercept"``;
    ``(runner_id, km_7d, None)`` -> ``"Between-runner SD of the slope of Distance in the
    last 7 days"``; two terms -> their correlation; ``Residual`` -> ``"Residual SD"``; the
    AR(1) and GEE rows by name.
    """
    def missing(v: object) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v)) or str(v) in ("", "nan")

    group_text = str(group)
    if group_text == "Residual":
        if missing(var1):
            return "Residual SD"
        if "AR(1)" in str(var1):
            return "Residual AR(1) correlation between consecutive reports"
        return f"Residual: {var1}"
    who = _GROUP_WORDS.get(group_text, label(group_text).lower())
    if str(var1) == "exchangeable_correlation":
        return f"Within-{who} correlation (exchangeable)"

    def effect(v: object) -> str:
        return "the intercept" if str(v) == INTERCEPT else f"the slope of {term_label(str(v))}"

    if missing(var2):
        return f"Between-{who} SD of {effect(var1)}"
    return f"Correlation of {effect(var1)} and {effect(var2)} between {who}s"


def variance_value_label(group: object, var1: object, var2: object = None) -> str:
    """What the ``sdcor`` value of a variance-component row is: ``SD`` or ``correlation``."""
    name = variance_label(group, var1, var2)
    return "correlation" if "correlation" in name.lower() else "SD"


def format_p(p: object) -> str:
    """A p-value as journals print it: ``"< 0.001"``, else three decimals (``"0.042"``).

    Never ``"0.0"`` or ``"0.000"``: anything below :data:`P_FLOOR` (including an exact 0 from
    a huge statistic) reads ``"< 0.001"``. Missing or non-finite values give ``""``.
    """
    try:
        value = float(p)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(value):
        return ""
    if value < P_FLOOR:
        return f"< {P_FLOOR:.{P_DECIMALS}f}"
    return f"{min(value, 1.0):.{P_DECIMALS}f}"


def _finite_or_text(x: object) -> float | str:
    """``x`` as a finite float, or the text a number formatter prints instead: ``""`` for a
    missing or non-numeric value, ``"inf"``/``"-inf"`` for infinity."""
    try:
        value = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


#: Above this a float's digits past its significant ones are binary noise (2**53).
_EXACT_INTEGER_LIMIT = 2.0**53


def format_number(x: object, sig: int = SIGNIFICANT_DIGITS, *, trim: bool = True) -> str:
    """A number with ``sig`` significant digits, positional (never scientific notation).

    ``123.4`` -> ``"123"``, ``0.0012345`` -> ``"0.00123"``, ``-0.0004`` -> ``"-0.0004"``,
    ``1234567`` -> ``"1,230,000"``; trailing zeros after the point are dropped (``trim``;
    ``trim=False`` keeps them as significant: ``1.0047`` -> ``"1.00"``); ``-0`` reads
    ``"0"``; missing or non-finite values give ``""`` (infinity: ``"inf"``).
    """
    value = _finite_or_text(x)
    if isinstance(value, str):
        return value
    if value == 0:
        return "0"
    digits = sig - 1 - math.floor(math.log10(abs(value)))
    if abs(value) >= _EXACT_INTEGER_LIMIT:  # past 2**53 the float's own digits are noise
        mantissa, exponent = f"{abs(value):.{sig - 1}e}".split("e")
        whole = mantissa.replace(".", "") + "0" * (int(exponent) - (sig - 1))
        return ("-" if value < 0 else "") + f"{int(whole):,}"
    rounded = round(value, digits)
    if rounded == 0:
        return "0"
    decimals = max(digits, 0)
    text = f"{rounded:,.{decimals}f}"
    if "." in text and trim:
        text = text.rstrip("0").rstrip(".")
    return "0" if text.lstrip("-").strip("0.,") == "" else text


def decimals_for(x: object, sig: int = SIGNIFICANT_DIGITS) -> int:
    """Decimals that give ``x`` ``sig`` significant digits (0 for large or missing values):
    an estimate's interval is printed with the estimate's decimals."""
    try:
        value = abs(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):  # missing (pd.NA, None) or not a number: as NaN
        return sig - 1
    if not math.isfinite(value) or value == 0:
        return sig - 1
    return max(sig - 1 - math.floor(math.log10(value)), 0)


#: Significant digits an interval's half-width keeps at most (:func:`interval_decimals`).
INTERVAL_DIGITS = 2


def interval_decimals(estimate: object, low: object, high: object) -> int:
    """Decimals for an estimate and its 95 % CI, printed alike: the estimate's
    :data:`SIGNIFICANT_DIGITS` significant digits, but no more decimals than give the
    interval's nearer half (the smaller of ``estimate - low`` and ``high - estimate``)
    :data:`INTERVAL_DIGITS` significant digits, and never fewer than give it one (so the
    interval never collapses to one number). ``-0.0004 (-0.2104 to 0.2096)`` -> 2 decimals
    (``0.00 (-0.21 to 0.21)``); ``1.23456 (1.23446 to 1.23466)`` -> 4; ``0.88 (0.408 to
    1.9)`` -> 2. Without a usable interval: the estimate's own decimals."""
    own = decimals_for(estimate)
    try:
        e, lo, hi = (float(v) for v in (estimate, low, high))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return own
    half = min(e - lo, hi - e)
    if not all(math.isfinite(v) for v in (e, lo, hi)) or not half > 0:
        return own
    at_most = decimals_for(half, INTERVAL_DIGITS)
    at_least = decimals_for(half, 1)
    return max(min(own, at_most), at_least)


def format_interval(estimate: object, low: object, high: object, *, signed: bool = False,
                    null: float | None = None) -> tuple[str, str, str]:
    """The estimate and its interval bounds as text with :func:`interval_decimals`;
    ``signed`` puts ``+`` before positive values (differences), never before 0.

    ``null`` (0 for a difference, 1 for a ratio): a bound that is not the null is never
    printed as the null, so whether the interval excludes it can be read (``+1.17 (0.02 to
    2.32)``, not ``+1.2 (0.0 to +2.3)``): decimals are added, up to the estimate's own
    :data:`SIGNIFICANT_DIGITS`.
    """
    places = interval_decimals(estimate, low, high)
    if null is not None:
        most = max(places, decimals_for(estimate))
        bounds = [b for b in (_finite_or_text(v) for v in (low, high))
                  if isinstance(b, float) and b != null]
        while places < most and any(format_fixed(b, places) == format_fixed(null, places)
                                    for b in bounds):
            places += 1

    def text(value: object) -> str:
        out = format_fixed(value, places)
        return f"+{out}" if signed and out and out[0].isdigit() and out.strip("0.,") else out

    return text(estimate), text(low), text(high)


def interval_texts(estimate: object, low: object, high: object, *, ratio: bool,
                   signed: bool = False) -> dict[str, str]:
    """``{"text", "low_text", "high_text"}`` of an effect and its 95 % CI
    (:func:`format_interval`) with the null of its scale: 1 for a ratio (odds, hazard), 0
    for a difference (:data:`analysis.effects.NULL_EFFECT`)."""
    null = NULL_EFFECT["odds" if ratio else "nrs"]
    text, lo, hi = format_interval(estimate, low, high, signed=signed, null=null)
    return {"text": text, "low_text": lo, "high_text": hi}


def interval_text(estimate: object, low: object, high: object, *, ratio: bool,
                  signed: bool = False) -> str:
    """``"1.12 (1.04 to 1.20)"``: :func:`interval_texts` in one string."""
    t = interval_texts(estimate, low, high, ratio=ratio, signed=signed)
    return f"{t['text']} ({t['low_text']} to {t['high_text']})"


def sentence(text: str) -> str:
    """``text`` with its first letter in upper case (labels and reasons are stored lower
    case where they run inside a sentence)."""
    return text[:1].upper() + text[1:]


def format_fixed(x: object, decimals: int) -> str:
    """``x`` with a fixed number of decimals (``""`` when missing; ``-0.00`` reads
    ``0.00``)."""
    value = _finite_or_text(x)
    if isinstance(value, str):
        return value
    if abs(value) >= _EXACT_INTEGER_LIMIT:  # past 2**53: significant digits, no noise
        return format_number(value)
    text = f"{value:,.{decimals}f}"
    return text.lstrip("-") if text.lstrip("-").strip("0.,") == "" else text


#: A snake_case token of text (candidate column name, with optional model suffixes).
_TOKEN = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")


#: Text :func:`humanize` keeps as written: a command-line option with its value
#: (``--param exposures=a,b``, ``--spline x:3``), a back-ticked name, a file path. (A name
#: in quotes is a column a message names: it is shown by its label.)
_VERBATIM = re.compile(r"(--[a-z][a-z-]*(?:=[^\s;()]+| (?!-)[^\s;()]+)?|`[^`]*`"
                       r"|\S*[/\\]\S*|\S+\.(?:csv|parquet|json|xlsx|fit|gpx|tcx)\b)")
#: A number as Python writes a float in scientific notation (``1e-06``, ``2.5e+03``: the
#: exponent signed; "2e3" may be an ID).
_EXPONENT_NUMBER = re.compile(r"(?<![\w.])[-+]?(\d+(?:\.\d+)?)[eE][-+]\d+(?![\w.])")
#: Magnitudes :func:`humanize` writes out positionally (outside them the exponent stays).
_POSITIONAL_RANGE = (1e-9, 1e15)


def humanize(text: str) -> str:
    """Replace every registered column name in a sentence by its label in lower case
    (``"rows dropped: missing mileage_jump: 54"`` -> ``"... missing week-over-week mileage
    change: 54"``) and every number in scientific notation by its positional form
    (``"within 1e-06"`` -> ``"within 0.000001"``); other words are kept. For messages such
    as a model's fit notes."""
    def name(match: re.Match[str]) -> str:
        token = match.group(0)
        if not has_label(token):
            return token
        words = term_label(token)
        return words[:1].lower() + words[1:]

    def positional(match: re.Match[str]) -> str:
        value = float(match.group(0))
        low, high = _POSITIONAL_RANGE
        if not low <= abs(value) < high:
            return match.group(0)
        digits = len(match.group(1).replace(".", "").lstrip("0")) or 1  # as precise as given
        return format_number(value, sig=digits)

    # what the user types or names (an option and its value, a quoted name, a file path)
    # is kept as written
    parts = _VERBATIM.split(str(text))
    return "".join(part if k % 2 else _EXPONENT_NUMBER.sub(positional, _TOKEN.sub(name, part))
                   for k, part in enumerate(parts))


# --- figure captions: the one place that says what each band and whisker is ----------------

#: Caption templates of the report's figures (keyword fields filled by :func:`caption`).
CAPTIONS: dict[str, str] = {
    "weekly_mileage": (
        "Weekly running distance (km, weeks starting Monday): the line is the median over "
        "runners, the band the interquartile range (25th-75th percentile)."),
    "pain_over_time": (
        "{outcome} per report week: the line is the mean over reports, the band its 95 % "
        "bootstrap confidence interval (200 resamples; not a range of individual values)."),
    "exposure_bins": (
        "Unadjusted {outcome} in quantile bins of each exposure (bins of about equal numbers "
        "of reports) and in the Nielsen week-over-week mileage-change bands (< 10 %, "
        "10-30 %, > 30 %; Nielsen et al. 2014): points are means, whiskers 95 % bootstrap "
        "confidence intervals; n under a band is its number of reports."),
    "forest": (
        "Fixed effects of the mixed model, per the reading step of each exposure: points are "
        "estimates, whiskers 95 % confidence intervals; the dashed line is no effect ({null})."),
    "predicted": (
        "Predicted {outcome} along each exposure, the other exposures at their means: the line "
        "is the prediction, the band its pointwise 95 % confidence interval from the fixed "
        "effects (runner effects not included); x range the 2.5-97.5 % quantiles."),
    "caterpillar": (
        "Each runner's conditional mode (random effect) with a 95 % interval (+/- {z} "
        "conditional SD), runners sorted."),
    "residuals": (
        "Residual checks of the linear mixed model: residuals against fitted values (with "
        "binned means, orange-red line), normal Q-Q plot and histogram."),
    "flow": (
        "Participant and record flow (STROBE): runners from enrolment to the model, and "
        "records read, kept, merged and quarantined by reason, from the build's cleaning "
        "audit and the model's dropped rows."),
    "exposure_response": (
        "{exposure} as a natural cubic spline (df {df}): the line is the difference in the "
        "outcome vs the reference value {reference} (the median of the modelling rows), the "
        "band its pointwise 95 % confidence interval from the full covariance of the spline "
        "coefficients; ticks at the bottom are the data."),
    "lag_response": (
        "Distributed-lag model: effect of {at} {unit} of {load} on one day, by how many days "
        "before the reference day it was run (lags 0-{max_lag}), vs a rest day; band the "
        "pointwise 95 % confidence interval."),
    "lag_cumulative": (
        "Distributed-lag model: cumulative effect of the same {load} on each day of lags "
        "0-{max_lag} ({unit} per day), vs rest days; band the pointwise 95 % confidence "
        "interval."),
    "cumulative_incidence": (
        "Cumulative incidence of the first pain episode (1 - Kaplan-Meier) by {band} on each "
        "day's reference day, and over all days at risk (black): lines are the estimates, "
        "shaded bands their pointwise 95 % confidence intervals (Greenwood variance, log "
        "scale as R's survfit). A runner whose band changes moves between curves from day "
        "to day (Simon & Makuch 1984), so a band with few runners on a day steps in large "
        "jumps; the curves are not adjusted for anything."),
    "hazard_forest": (
        "Hazard ratios of a new pain episode per reading step of each exposure ({model}; "
        "the steps are those of the table): points are "
        "estimates, whiskers 95 % confidence intervals from runner-clustered robust standard "
        "errors; the dashed line is no effect (hazard ratio 1); hollow points have a problem "
        "named in the table."),
    "lag_surface": (
        "Distributed-lag model: exposure-lag-response surface, the effect of a day's {load} "
        "({unit}, x axis) by lag in days (y axis) vs a rest day; blue lower, red higher."),
}


def caption(kind: str, **fields: object) -> str:
    """The caption of a report figure (:data:`CAPTIONS`), fields filled in.

    Raises
    ------
    KeyError
        ``kind`` is not a key of :data:`CAPTIONS`.
    """
    defaults = {"outcome": "Knee pain", "null": "0"}
    if "{z}" in CAPTIONS[kind]:  # the interval's normal quantile, the one the figure uses
        from analysis.models.result import Z_95

        defaults["z"] = f"{Z_95:.2f}"
    return CAPTIONS[kind].format(**(defaults | {k: str(v) for k, v in fields.items()}))


def outcome_columns() -> set[str]:
    """The panel columns the outcome registry models (all must carry a label)."""
    return {spec.column for spec in OUTCOME_SPECS.values()}


__all__ = [
    "CAPTIONS",
    "COLUMN_LABELS",
    "INTERVAL_DIGITS",
    "P_FLOOR",
    "SIGNIFICANT_DIGITS",
    "ColumnLabel",
    "axis_label",
    "caption",
    "column_label",
    "decimals_for",
    "display_scale",
    "format_fixed",
    "format_interval",
    "format_number",
    "format_p",
    "has_label",
    "humanize",
    "interval_decimals",
    "interval_text",
    "interval_texts",
    "label",
    "outcome_columns",
    "sentence",
    "step_label",
    "step_text",
    "term_label",
    "unit",
    "variance_label",
    "variance_value_label",
]
