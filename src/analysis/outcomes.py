"""What a dataset measures and what can be modelled on it by default.

One registry of outcome kinds (:data:`OUTCOME_SPECS`: NRS knee pain, the OSTRC-O2 severity
score, an any-injury flag, pain present), each with its label, axis label, unit, panel
column, range and default model; :func:`outcome_spec` reads the one a processed folder
declares (``panel_meta.json`` ``outcome``). :func:`default_exposures` chooses the default
exposures the panel's columns can support and says why the others are left out, and
:func:`unfittable_reason` says, before a fit, which column stops a model and which option
fixes it. Reports, figures and the CLI read labels from here (``docs/reports.md``).

Imports nothing beyond the standard library and :mod:`analysis.defaults` (the CLI's light
layer may use it); functions that look at a panel take any DataFrame-like object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.defaults import DEFAULT_EXPOSURES, PAIN_MAX, PAIN_MIN
from analysis.errors import KneeloadError, ReportError

#: Key of ``panel_meta.json`` naming the dataset's outcome kind (a key of OUTCOME_SPECS).
OUTCOME_KEY = "outcome"
#: Keys of ``panel_meta.json`` holding the build's default exposures and those left out.
DEFAULT_EXPOSURES_KEY = "default_exposures"
LEFT_OUT_KEY = "exposures_left_out"
#: Outcome of a processed folder that does not declare one (built before issue 12): all
#: such panels modelled the NRS ``pain`` column with a linear mixed model.
FALLBACK_OUTCOME = "nrs"
#: The OSTRC-O2 severity score's range (sum of four items scored 0-25; Clarsen et al. 2020,
#: BJSM 54:390; :mod:`analysis.ostrc`).
OSTRC_MIN, OSTRC_MAX = 0.0, 100.0
#: The report parameter value that means "from the data" (outcome and exposures).
AUTO = "auto"


@dataclass(frozen=True)
class OutcomeSpec:
    """One outcome kind: how it is stored, labelled and modelled by default.

    Attributes
    ----------
    key : registry key, as written in ``panel_meta.json`` ``outcome``.
    label : title case name for headings ("Knee pain", "Any injury").
    noun : what a sentence says ("knee pain", "injury").
    axis_label : y-axis label of raw values.
    unit : unit of a linear model's effects ("NRS points"); for a flag, what its odds are of.
    column : panel column that is modelled.
    low, high : the outcome's range in its unit (a flag: 0 and 1).
    default_model : ``lmm`` for a score, ``glmm`` (logistic) for a flag.
    description : one sentence for reports and docs.
    """

    key: str
    label: str
    noun: str
    axis_label: str
    unit: str
    column: str
    low: float
    high: float
    default_model: str
    description: str

    @property
    def binary(self) -> bool:
        """True for a 0/1 flag (modelled on the odds scale)."""
        return self.default_model != "lmm"

    @property
    def mean_label(self) -> str:
        """Axis label of a mean over reports: the score's, or the share with the flag."""
        return f"share of reports with {self.noun}" if self.binary else self.axis_label

    @property
    def effect_label(self) -> str:
        """Axis label of effects in reading units (forest plot)."""
        return (f"odds ratio of {self.noun} (95 % CI)" if self.binary
                else f"change in {self.noun} ({self.unit}, 95 % CI)")

    @property
    def title(self) -> str:
        """Report heading: "Knee pain and training load"."""
        return f"{self.label} and training load"


#: Every outcome kind a panel can declare.
OUTCOME_SPECS: dict[str, OutcomeSpec] = {spec.key: spec for spec in (
    OutcomeSpec("nrs", "Knee pain", "knee pain", "knee pain (NRS 0-10)", "NRS points", "pain",
                PAIN_MIN, PAIN_MAX, "lmm",
                "Knee pain on the 0-10 numeric rating scale (NRS), modelled as a score with a "
                "linear mixed model."),
    OutcomeSpec("ostrc", "OSTRC severity", "OSTRC severity",
                "OSTRC-O2 severity score (0-100)", "OSTRC points", "ostrc_severity",
                OSTRC_MIN, OSTRC_MAX, "lmm",
                "OSTRC-O2 overuse severity score, 0-100 (Clarsen et al. 2020), modelled as a "
                "score with a linear mixed model."),
    OutcomeSpec("injury_flag", "Any injury", "injury", "any injury (0/1)", "injury",
                "pain_any", 0.0, 1.0, "glmm",
                "Any injury or pain present (a 0/1 flag), modelled with a logistic mixed "
                "model."),
    OutcomeSpec("pain_any", "Pain present", "pain", "pain present (0/1)", "pain", "pain_any",
                0.0, 1.0, "glmm",
                "Pain present (NRS at or above the build's threshold), modelled with a "
                "logistic mixed model."),
)}


#: The outcome kind a column names when the dataset declares another one (``pain_any`` on
#: an NRS panel is "pain present"; on a Lovdal panel it is the declared injury flag).
COLUMN_OUTCOMES = {"pain": "nrs", "ostrc_severity": "ostrc", "pain_any": "pain_any"}


def outcome_spec(meta: Mapping[str, Any]) -> OutcomeSpec:
    """The outcome a processed folder declares (``panel_meta.json`` ``outcome``).

    Parameters
    ----------
    meta
        ``panel_meta.json`` as a dict. ``outcome`` is a key of :data:`OUTCOME_SPECS`; a
        folder built before it was recorded reads as :data:`FALLBACK_OUTCOME` (``nrs``).

    Returns
    -------
    OutcomeSpec
        For ``pain_any``, the axis label carries the build's threshold
        (``pain_threshold``, NRS 0-10) when the meta records it.

    Raises
    ------
    ReportError
        An ``outcome`` that is not a key of :data:`OUTCOME_SPECS` (the message names it).
    """
    key = meta.get(OUTCOME_KEY) or FALLBACK_OUTCOME
    return outcome_by_name(str(key), meta=meta)


def outcome_by_name(name: str, *, meta: Mapping[str, Any] | None = None) -> OutcomeSpec:
    """The spec for a registry key or a panel column (``pain`` -> nrs, ``pain_any`` ...).

    A column that is the dataset's own outcome column resolves to the dataset's spec (on a
    Lovdal panel ``pain_any`` is the injury flag, not "pain present").

    Raises
    ------
    ReportError
        A name that is neither a key of :data:`OUTCOME_SPECS` nor one of their columns.
    """
    meta = meta or {}
    declared = OUTCOME_SPECS.get(str(meta.get(OUTCOME_KEY) or FALLBACK_OUTCOME))
    if declared is not None and declared.column == name:
        spec = declared
    elif name in OUTCOME_SPECS:
        spec = OUTCOME_SPECS[name]
    elif name in COLUMN_OUTCOMES:
        spec = OUTCOME_SPECS[COLUMN_OUTCOMES[name]]
    else:
        raise ReportError(f"outcome must be {AUTO!r}, one of {sorted(OUTCOME_SPECS)} or "
                          f"one of the columns {sorted(COLUMN_OUTCOMES)}; got {name!r}")
    threshold = meta.get("pain_threshold")
    if spec.key == "pain_any" and threshold is not None:
        spec = dataclasses.replace(spec, axis_label=f"pain present (NRS >= {float(threshold):g})")
    return spec


def report_outcome(requested: str, meta: Mapping[str, Any]) -> OutcomeSpec:
    """The outcome a report models: ``auto`` is the dataset's (:func:`outcome_spec`), else
    :func:`outcome_by_name` (a registry key or a column)."""
    return outcome_spec(meta) if requested == AUTO else outcome_by_name(requested, meta=meta)


def infer_outcome(meta: Mapping[str, Any], columns: Iterable[str]) -> str:
    """The outcome key a build should record when its reader does not say.

    Lovdal-format data store an any-injury flag (``pain = 10 x injury``): ``injury_flag``.
    A panel whose ``pain`` has no values but whose OSTRC severity has: ``ostrc``. Anything
    else: ``nrs``.

    Parameters
    ----------
    meta
        ``panel_meta.json`` so far (``format`` is read).
    columns
        Panel columns with at least one value (:func:`columns_with_data`).
    """
    present = set(columns)
    if meta.get("format") == "lovdal":
        return "injury_flag"
    if "pain" not in present and OUTCOME_SPECS["ostrc"].column in present:
        return "ostrc"
    return FALLBACK_OUTCOME


# --- exposures ---------------------------------------------------------------------------

#: What each default exposure needs from the raw data (for the left-out reason).
EXPOSURE_NEEDS = {
    "mileage_jump": "run distances in two consecutive weeks",
    "rest_days_7d": "daily run records",
    "shoe_km": "shoe/gear records",
    "shoe_age_days": "shoe/gear records",
    "shoes_in_rotation_30d": "shoe/gear records",
    "srpe_7d": "session RPE records",
}
#: How a left-out reason names the source of a processed folder (``panel_meta`` ``format``).
SOURCE_PHRASES = {
    "strava": "the Strava export has",
    "garmin": "the Garmin export has",
    "lovdal": "the Lovdal data have",
    "diary": "the data have",
    "canonical": "the data have",
}


#: Rows :func:`columns_with_data` looks at first: only the columns missing in all of them
#: are scanned further (most columns have a value in the first rows; the whole 2,000 x 365
#: panel took 0.07 s, 0.27 s at 9,000 runners).
HEAD_ROWS = 1024


def columns_with_data(panel: Any) -> set[str]:
    """Columns of a DataFrame with at least one non-missing value."""
    head = panel.iloc[:HEAD_ROWS].notna().any().to_numpy()
    found = {str(name) for name, known in zip(panel.columns, head, strict=True) if known}
    empty = [i for i, known in enumerate(head) if not known]
    if len(empty) and len(panel) > HEAD_ROWS:
        rest = panel.iloc[HEAD_ROWS:, empty].notna().any().to_numpy()
        found |= {str(name) for name, known in zip(panel.columns[empty], rest, strict=True)
                  if known}
    return found


def default_exposures(columns: Iterable[str], meta: Mapping[str, Any], *,
                      candidates: Sequence[str] = DEFAULT_EXPOSURES
                      ) -> tuple[list[str], dict[str, str]]:
    """The default exposures a panel can support, and why each other one is left out.

    Parameters
    ----------
    columns
        Panel columns with at least one value (a column absent or all missing counts as
        missing; :func:`columns_with_data`).
    meta
        ``panel_meta.json`` (``format`` names the source in the reasons).
    candidates
        The default set, :data:`analysis.defaults.DEFAULT_EXPOSURES`.

    Returns
    -------
    chosen, left_out
        ``chosen`` keeps the order of ``candidates``; ``left_out`` maps each candidate the
        data cannot support to a sentence, e.g. ``"shoe_km left out: the Strava export has
        no shoe/gear records"``.
    """
    present = set(columns)
    source = SOURCE_PHRASES.get(str(meta.get("format")), "the data have")
    chosen, left_out = [], {}
    for name in candidates:
        if name in present:
            chosen.append(name)
        else:
            needs = EXPOSURE_NEEDS.get(name, f"values for {name}")
            left_out[name] = f"{name} left out: {source} no {needs}"
    return chosen, left_out


def panel_defaults(panel: Any, meta: Mapping[str, Any], *, outcome: str | None = None
                   ) -> dict[str, Any]:
    """The keys a build adds to ``panel_meta.json``: outcome kind and default exposures.

    Parameters
    ----------
    panel
        The built panel (whole dataset).
    meta
        ``panel_meta.json`` so far (``format`` must be set).
    outcome
        The reader's outcome key; None infers it (:func:`infer_outcome`).

    Returns
    -------
    dict
        ``outcome``, ``default_exposures`` (list) and ``exposures_left_out``
        ({exposure: reason}).
    """
    present = columns_with_data(panel)
    key = outcome or infer_outcome(meta, present)
    if key not in OUTCOME_SPECS:
        raise KneeloadError(f"unknown outcome kind {key!r}; one of {sorted(OUTCOME_SPECS)}")
    chosen, left_out = default_exposures(present, meta)
    return {OUTCOME_KEY: key, DEFAULT_EXPOSURES_KEY: chosen, LEFT_OUT_KEY: left_out}


# --- why a model cannot be fitted --------------------------------------------------------


def unfittable_reason(panel: Any, *, outcome: str, exposures: Sequence[str],
                      option: str = "--param exposures=") -> str | None:
    """Why no model of ``outcome`` on ``exposures`` can be fitted to ``panel``, or None.

    Checked in order: a missing outcome or exposure column, an exposure missing in every
    row, no row with every exposure known, an exposure with one value in every complete
    row. Each message names the column(s), counts the rows and gives the option that fixes
    it, e.g. ``"shoe_km is missing in all 1,234 rows; fit without it: --param
    exposures=mileage_jump,rest_days_7d"``.

    Parameters
    ----------
    panel
        The rows to be modelled (one cohort's panel).
    outcome
        Outcome column.
    exposures
        Exposure columns.
    option
        How the fix is spelt: ``--param exposures=`` (report) or ``--exposures `` (fit).
    """
    n = len(panel)
    exposures = list(exposures)
    absent = [c for c in [outcome, *exposures] if c not in panel.columns]
    if absent:
        keep = [c for c in exposures if c not in absent]
        fix = f"{option}{','.join(keep)}" if keep and outcome not in absent else \
            "choose panel columns"
        return f"the panel has no column {', '.join(absent)}; {fix}"
    missing = {c: int(panel[c].isna().sum()) for c in exposures}
    empty = [c for c in exposures if missing[c] == n]
    if empty:
        keep = [c for c in exposures if c not in empty]
        what = " and ".join(empty)
        verb = "is" if len(empty) == 1 else "are"
        fix = (f"fit without {'it' if len(empty) == 1 else 'them'}: {option}{','.join(keep)}"
               if keep else f"choose exposures with values ({option}COLUMNS)")
        return f"{what} {verb} missing in all {n:,} rows; {fix}"
    complete = panel.dropna(subset=[outcome, *exposures])
    if len(complete) == 0:
        worst = max(exposures, key=lambda c: missing[c])
        counts = ", ".join(f"{c} missing in {missing[c]:,}" for c in exposures if missing[c])
        keep = [c for c in exposures if c != worst]
        fix = f"e.g. {option}{','.join(keep)}" if keep else f"{option}COLUMNS"
        return (f"no row of {n:,} has {outcome} and all of {', '.join(exposures)} known "
                f"({counts}); {fix}")
    for c in exposures:
        values = complete[c].unique()
        if len(values) < 2:
            keep = [e for e in exposures if e != c]
            fix = f"fit without it: {option}{','.join(keep)}" if keep else \
                f"choose an exposure that varies ({option}COLUMNS)"
            return (f"{c} takes one value ({values[0]}) in all {len(complete):,} complete "
                    f"rows, so its effect cannot be estimated; {fix}")
    return None


__all__ = [
    "AUTO",
    "COLUMN_OUTCOMES",
    "DEFAULT_EXPOSURES_KEY",
    "EXPOSURE_NEEDS",
    "FALLBACK_OUTCOME",
    "LEFT_OUT_KEY",
    "OSTRC_MAX",
    "OSTRC_MIN",
    "OUTCOME_KEY",
    "OUTCOME_SPECS",
    "SOURCE_PHRASES",
    "OutcomeSpec",
    "columns_with_data",
    "default_exposures",
    "infer_outcome",
    "outcome_by_name",
    "outcome_spec",
    "panel_defaults",
    "report_outcome",
    "unfittable_reason",
]
