"""Model requests checked and turned into numeric design matrices (no fitting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.splines import NaturalSpline, natural_spline, spline_column_names

if TYPE_CHECKING:
    from analysis.models.result import ModelResult

#: Fewest runners for which a random slope is estimable. With fewer clusters the variance of
#: a slope (and its correlation with the intercept) is poorly identified and fits are
#: routinely singular (McNeish & Stapleton 2016, Educ Psychol Rev 28:295-314).
MIN_RUNNERS_FOR_SLOPE = 10

#: Fewest runners for any random-intercept model (a variance needs more than one level;
#: lme4 refuses grouping factors with fewer than 2 levels).
MIN_RUNNERS = 2


CENTER_OPTIONS = (None, "within-between", "grand")

INTERCEPT = "Intercept"

#: How an interaction of two numeric columns is requested and named: ``"km_7d:km_28d"``
#: (the product of the two model columns, as R's ``km_7d:km_28d``).
INTERACTION_SEP = ":"

#: Ratio exposures (by the end of their name) whose value is undefined (NaN) when their
#: chronic denominator is 0 km (a 0-km four-week window: return to running after a break),
#: and the panel column whose 0 marks that case: ``<prefix>_28d`` (``km_28d`` for the km
#: ratios; docs/exposures.md "Ratios with a zero denominator"). ``acwr_uncoupled`` divides
#: by days s-27..s-7, which are 0 km when the four-week window is 0 km (and may be 0 km when
#: it is not: such rows count as undefined only when ``<prefix>_28d`` is 0, so the count is
#: a lower bound for that ratio).
RATIO_SUFFIXES = ("acwr_rolling", "acwr_uncoupled", "acwr_ewma")
#: The dropped-row reason for a ratio that is undefined because its denominator is 0.
UNDEFINED_RATIO = "undefined ratio (0-km chronic weeks)"


# --- design ---------------------------------------------------------------------------------


@dataclass
class Design:
    """Numeric design of a mixed model, rows sorted by runner."""

    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    groups: np.ndarray  # integer codes 0..m-1, sorted
    starts: np.ndarray  # start row of each group
    x_names: list[str]
    z_names: list[str]
    group_labels: np.ndarray
    dropped: dict[str, int]
    frame: pd.DataFrame  # the modelling rows (sorted): raw columns, plus derived ones
    #: the natural-spline basis of each spline exposure (knots from the modelling rows)
    splines: dict[str, NaturalSpline] = field(default_factory=dict)


def _is_categorical(s: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s))


def _parse_covariate(spec: str) -> tuple[str, bool]:
    """``"C(sex)"`` -> ("sex", True); ``"age"`` -> ("age", False)."""
    spec = spec.strip()
    if spec.startswith("C(") and spec.endswith(")"):
        return spec[2:-1].strip(), True
    return spec, False


def within_between(frame: pd.DataFrame, columns: Sequence[str], *, group: str = "runner_id"
                   ) -> pd.DataFrame:
    """Each column split into the runner's mean and the deviation from it (the one definition).

    ``<x>_between`` is the mean of ``x`` over the runner's rows in ``frame`` and
    ``<x>_within = x - <x>_between``, in the unit of ``x``. The means are over the rows
    given, so pass the rows a model uses (complete on every model column), as
    :func:`build_design` does with ``center="within-between"``.

    Parameters
    ----------
    frame : one row per pain report; no missing ``group`` or ``columns`` values.
    columns : numeric columns to split (e.g. ``mileage_jump`` fraction, ``shoe_km`` km).
    group : runner identifier column.

    Returns
    -------
    ``<x>_within`` and ``<x>_between`` for each column, in that order, on ``frame``'s index.

    Raises
    ------
    ModelSpecError
        A missing column, or missing values (the means would depend on which rows are kept).
    """
    columns = list(columns)
    for col in [group, *columns]:
        if col not in frame.columns:
            raise ModelSpecError(f"no column {col!r}", column=col)
        if frame[col].isna().any():
            raise ModelSpecError(f"column {col!r} has missing values; split the rows the model "
                                 "uses (complete rows)", column=col)
    codes, labels = pd.factorize(frame[group].astype(str), sort=True)
    out = _split_within_between(
        {c: frame[c].to_numpy(dtype=float) for c in columns}, codes, len(labels))
    return pd.DataFrame(out, index=frame.index)


#: Columns of :func:`within_between_spread`.
SPREAD_COLUMNS = ("reports", "runners", "sd_between", "sd_within", "share_within")


def within_between_spread(panel: pd.DataFrame, columns: Sequence[str], *,
                          outcome: str = "pain", group: str = "runner_id") -> pd.DataFrame:
    """Per exposure, the between- and within-runner spread on the rows a one-exposure model
    of ``outcome`` would use (both known), by :func:`within_between`.

    Returns one row per column (index ``exposure``): ``reports``, ``runners``, ``sd_between``
    and ``sd_within`` (sample SDs, in the exposure's unit) and ``share_within`` (within
    variance / (within + between variance), 0-1). Columns with fewer than 2 known values are
    left out.
    """
    rows, names = [], []
    for column in columns:
        if panel[column].notna().sum() <= 1:
            continue
        used = panel.dropna(subset=[outcome, column])
        parts = within_between(used, [column], group=group)
        within, between = parts[f"{column}_within"], parts[f"{column}_between"]
        rows.append({"reports": len(used), "runners": used[group].nunique(),
                     "sd_between": between.std(), "sd_within": within.std(),
                     "share_within": within.var() / (within.var() + between.var())})
        names.append(column)
    return pd.DataFrame(rows, index=pd.Index(names, name="exposure"),
                        columns=list(SPREAD_COLUMNS))


def _split_within_between(values: dict[str, np.ndarray], codes: np.ndarray, m: int
                          ) -> dict[str, np.ndarray]:
    """``<x>_within`` and ``<x>_between`` of each array over runner codes ``0..m-1``."""
    size = np.bincount(codes, minlength=m)
    out: dict[str, np.ndarray] = {}
    for col, x in values.items():
        means = np.bincount(codes, weights=x, minlength=m) / size
        out[f"{col}_within"] = x - means[codes]
        out[f"{col}_between"] = means[codes]
    return out


def build_design(
    panel: pd.DataFrame,
    *,
    outcome: str,
    exposures: Sequence[str],
    covariates: Sequence[str] = (),
    random_slopes: Sequence[str] = (),
    center: str | None = None,
    group: str = "runner_id",
    extra_columns: Sequence[str] = (),
    splines: Mapping[str, int] | None = None,
    interactions: Sequence[str] = (),
) -> Design:
    """Check a model request and build its design matrices (no fitting).

    The steps, each its own function: check the request, keep the complete rows, code the
    runners, build the exposure columns (centred as asked, or a natural-spline basis),
    the interactions, dummy-code the covariates, stack and check the fixed-effect matrix,
    then the random-effect matrix.

    Parameters
    ----------
    panel : one row per pain report.
    outcome : response column (``pain`` NRS 0-10, or ``pain_any``).
    exposures : numeric exposure columns (e.g. ``mileage_jump`` fraction, ``shoe_km`` km).
    covariates : adjustment columns; non-numeric columns or ``C(col)`` are dummy-coded
        (treatment coding, first sorted level as reference).
    random_slopes : exposures (or numeric covariates) that get a random slope per runner.
    center : None, ``"within-between"`` (each exposure split into the runner mean
        ``<x>_between`` and the deviation from it ``<x>_within`` over the modelling rows,
        :func:`within_between`) or ``"grand"`` (exposures minus their overall mean).
    group : runner identifier column.
    extra_columns : columns carried into ``frame`` for the modelling rows without entering
        the model (e.g. the time of an AR(1) residual structure); rows missing one are
        dropped and counted like rows missing a model column.
    splines : ``{exposure: df}``: that exposure enters as the ``df`` columns of the natural
        cubic spline basis ``ns(<exposure>, df)1..df`` of R's ``splines::ns`` (knots from the
        modelling rows, :func:`analysis.models.splines.natural_spline`) instead of a linear
        term; needs ``center=None`` and no random slope on it.
    interactions : ``"a:b"`` products of two numeric model columns (exposures or numeric
        covariates, not spline exposures), e.g. ``"km_7d:km_28d"`` for acute x chronic load.

    Raises
    ------
    ModelSpecError
        Missing column, constant exposure, too few runners, or a slope that is not estimable.
    """
    exposures = list(exposures)
    cov_specs = [_parse_covariate(c) for c in covariates]
    spline_df = _check_splines(splines, exposures=exposures, center=center,
                               random_slopes=random_slopes)
    pairs = _check_interactions(interactions, exposures=exposures, cov_specs=cov_specs,
                                spline_df=spline_df)
    needed = _check_request(panel, outcome=outcome, exposures=exposures, cov_specs=cov_specs,
                            random_slopes=random_slopes, center=center, group=group,
                            extra_columns=extra_columns)
    frame, dropped = _complete_rows(panel, [*needed, *extra_columns], group=group)
    codes, labels = _runner_codes(frame, group=group)
    m = len(labels)
    linear = [c for c in exposures if c not in spline_df]
    cols = _exposure_columns(frame, linear, center=center, codes=codes, m=m)
    bases = {col: natural_spline(frame[col].to_numpy(dtype=float), df)
             for col, df in spline_df.items()}
    cols = _in_exposure_order(cols, _spline_columns(frame, bases), exposures)
    cols |= _covariate_columns(frame, cov_specs)
    cols |= _interaction_columns(cols, pairs)
    x_names, X = _fixed_effects(cols, n=len(frame))
    slope_cols = [f"{s}_within" if center == "within-between" and s in exposures else s
                  for s in random_slopes]
    z_names, Z = _random_effects(cols, slope_cols, codes=codes, m=m)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    # derived columns join the rows; the raw columns stay as given (a grand-centred
    # exposure's X column is centred, its frame column keeps the exposure's own unit)
    frame = frame.assign(**{name: values for name, values in cols.items()
                            if name not in frame.columns})
    return Design(y=frame[outcome].to_numpy(dtype=float), X=X, Z=Z, groups=codes,
                  starts=starts, x_names=x_names, z_names=z_names,
                  group_labels=np.asarray(labels), dropped=dropped, frame=frame,
                  splines=bases)


def parse_spline_spec(spec: str) -> tuple[str, int]:
    """``"acwr_rolling:3"`` -> ``("acwr_rolling", 3)`` (the CLI's ``--spline``)."""
    column, sep, df = str(spec).rpartition(":")
    if not sep or not column.strip() or not df.strip().isdigit():
        raise ModelSpecError(f"a spline is given as COLUMN:DF (e.g. acwr_rolling:3), got "
                             f"{spec!r}")
    return column.strip(), int(df)


def _check_splines(splines: Mapping[str, int] | None, *, exposures: list[str],
                   center: str | None, random_slopes: Sequence[str]) -> dict[str, int]:
    """The spline request as ``{exposure: df}``; refuses a spline on a non-exposure, with
    centering, or with a random slope."""
    spline_df = {str(k): v for k, v in (splines or {}).items()}
    for col, df in spline_df.items():
        if col not in exposures:
            raise ModelSpecError(f"spline on {col!r}: it must also be one of the exposures "
                                 f"{exposures}", column=col)
        if isinstance(df, bool) or not isinstance(df, int | np.integer) or df < 1:
            raise ModelSpecError(f"spline on {col!r}: df must be a whole number >= 1, got "
                                 f"{df!r}", column=col)
        if col in random_slopes:
            raise ModelSpecError(f"spline on {col!r}: a random slope on a spline exposure is "
                                 "not supported", column=col)
    if spline_df and center is not None:
        raise ModelSpecError(f"spline terms need center=None (got {center!r}): a spline "
                             "basis is not split within/between or centred")
    return {k: int(v) for k, v in spline_df.items()}


def _check_interactions(interactions: Sequence[str], *, exposures: list[str],
                        cov_specs: list[tuple[str, bool]], spline_df: Mapping[str, int]
                        ) -> list[tuple[str, str]]:
    """Each ``"a:b"`` as a pair of numeric model columns (no spline exposure)."""
    numeric = [*exposures, *(c for c, cat in cov_specs if not cat)]
    pairs = []
    for spec in interactions:
        parts = [p.strip() for p in str(spec).split(INTERACTION_SEP)]
        if len(parts) != 2 or parts[0] == parts[1]:
            raise ModelSpecError(f"an interaction is two different columns 'a:b', got "
                                 f"{spec!r}")
        for part in parts:
            if part not in numeric or part in spline_df:
                raise ModelSpecError(f"interaction {spec!r}: {part!r} must be a linear "
                                     "exposure or numeric covariate of the model", column=part)
        pairs.append((parts[0], parts[1]))
    return pairs


def _spline_columns(frame: pd.DataFrame, bases: Mapping[str, NaturalSpline]
                    ) -> dict[str, np.ndarray]:
    """The basis columns ``ns(<x>, df)1..df`` of each spline exposure on the modelling
    rows."""
    cols: dict[str, np.ndarray] = {}
    for col, basis in bases.items():
        values = basis.basis(frame[col].to_numpy(dtype=float))
        for j, name in enumerate(spline_column_names(col, basis.df)):
            cols[name] = values[:, j]
    return cols


def _in_exposure_order(linear: dict[str, np.ndarray], spline: dict[str, np.ndarray],
                       exposures: list[str]) -> dict[str, np.ndarray]:
    """Exposure columns in the order the exposures were asked for (a spline's columns, or
    a split exposure's ``_within`` and ``_between``, where its exposure stands)."""
    out: dict[str, np.ndarray] = {}
    for col in exposures:
        names = [col, f"{col}_within", f"{col}_between"]
        out |= {name: linear[name] for name in names if name in linear}
        out |= {name: v for name, v in spline.items() if name.startswith(f"ns({col}, ")}
    return out


def _interaction_columns(cols: Mapping[str, np.ndarray], pairs: list[tuple[str, str]]
                         ) -> dict[str, np.ndarray]:
    """``a:b`` = product of the two model columns (centred ones when centred)."""
    out = {}
    for a, b in pairs:
        if a not in cols or b not in cols:
            raise ModelSpecError(f"interaction {a}:{b} is not available with within-between "
                                 "centering (its columns are split)")
        out[f"{a}{INTERACTION_SEP}{b}"] = cols[a] * cols[b]
    return out


def _check_request(panel: pd.DataFrame, *, outcome: str, exposures: list[str],
                   cov_specs: list[tuple[str, bool]], random_slopes: Sequence[str],
                   center: str | None, group: str, extra_columns: Sequence[str]) -> list[str]:
    """Refuse a request the panel cannot answer; return the model columns (outcome first)."""
    if not exposures:
        raise ModelSpecError("at least one exposure is needed")
    if center not in CENTER_OPTIONS:
        raise ModelSpecError(f"center must be one of {CENTER_OPTIONS}, got {center!r}")
    needed = [outcome, *exposures, *(c for c, _ in cov_specs)]
    for col in [group, *needed, *extra_columns]:
        if col not in panel.columns:
            raise ModelSpecError(f"panel has no column {col!r}", column=col)
    if len(set(needed)) != len(needed):
        raise ModelSpecError(f"a column is requested twice: {needed}")
    for s in random_slopes:
        if s not in exposures and s not in [c for c, cat in cov_specs if not cat]:
            raise ModelSpecError(
                f"random slope {s!r} must also be a fixed effect (an exposure or numeric "
                "covariate)", column=s)
    for col in exposures:
        if _is_categorical(panel[col]):
            raise ModelSpecError(f"exposure {col!r} is not numeric ({panel[col].dtype})",
                                 column=col)
    return needed


def _complete_rows(panel: pd.DataFrame, columns: Sequence[str], *, group: str
                   ) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows with every column known, sorted by runner, and the dropped counts (each
    dropped row attributed to the first missing column: ``{"missing <col>": n}``)."""
    keep = panel[group].notna().to_numpy().copy()
    dropped: dict[str, int] = {}
    n_missing_group = int((~keep).sum())
    if n_missing_group:
        dropped[f"missing {group}"] = n_missing_group
    columns = list(dict.fromkeys(columns))
    for col in columns:
        miss = panel[col].isna().to_numpy() & keep
        undefined = miss & _zero_denominator(panel, col)
        if undefined.any():
            dropped[UNDEFINED_RATIO] = dropped.get(UNDEFINED_RATIO, 0) + int(undefined.sum())
        if (miss & ~undefined).any():
            dropped[f"missing {col}"] = int((miss & ~undefined).sum())
        keep &= ~miss
    frame = panel.loc[keep, [group, *columns]].copy()
    frame[group] = frame[group].astype(str)
    frame = frame.sort_values(group, kind="stable").reset_index(drop=True)
    if frame.empty:
        raise ModelSpecError("no complete rows left after dropping missing values")
    return frame, dropped


def _zero_denominator(panel: pd.DataFrame, column: str) -> np.ndarray:
    """Rows where ratio ``column`` is undefined because its chronic window is 0 km (its
    ``<prefix>_28d`` is 0; :data:`RATIO_SUFFIXES`); all False for other columns."""
    for suffix in RATIO_SUFFIXES:
        if column == suffix or column.endswith(f"_{suffix}"):
            prefix = column[: -len(suffix)]
            chronic = f"{prefix}28d" if prefix else "km_28d"
            if chronic in panel.columns:
                return (pd.to_numeric(panel[chronic], errors="coerce") == 0).to_numpy()
    return np.zeros(len(panel), dtype=bool)


def _runner_codes(frame: pd.DataFrame, *, group: str) -> tuple[np.ndarray, pd.Index]:
    """Integer runner codes 0..m-1 (sorted labels); refuses fewer than :data:`MIN_RUNNERS`."""
    codes, labels = pd.factorize(frame[group], sort=True)
    if len(labels) < MIN_RUNNERS:
        raise ModelSpecError(f"{len(labels)} runner(s) with complete data; a random intercept "
                             f"needs at least {MIN_RUNNERS}", column=group)
    return codes, labels


def _exposure_columns(frame: pd.DataFrame, exposures: list[str], *, center: str | None,
                      codes: np.ndarray, m: int) -> dict[str, np.ndarray]:
    """The exposures as model columns: as given, grand-mean centred, or split within/between
    (:func:`within_between`); refuses an effect that is not identifiable."""
    raw = {col: frame[col].to_numpy(dtype=float) for col in exposures}
    for col, x in raw.items():
        if np.ptp(x) == 0:
            raise ModelSpecError(f"exposure {col!r} is constant ({x[0]:g}) in the modelling "
                                 "rows; its effect is not identifiable", column=col)
    if center == "grand":
        return {col: x - x.mean() for col, x in raw.items()}
    if center != "within-between":
        return raw
    split = _split_within_between(raw, codes, m)
    for col in exposures:
        if np.ptp(split[f"{col}_within"]) == 0:
            raise ModelSpecError(f"exposure {col!r} never varies within a runner; the "
                                 "within-runner effect is not identifiable", column=col)
        if np.ptp(split[f"{col}_between"]) == 0:
            raise ModelSpecError(f"exposure {col!r} has the same mean for every runner; "
                                 "the between-runner effect is not identifiable", column=col)
    return split


def _covariate_columns(frame: pd.DataFrame, cov_specs: list[tuple[str, bool]]
                       ) -> dict[str, np.ndarray]:
    """Numeric covariates as given; categorical ones treatment-coded against the first sorted
    level (``C(col)[T.level]`` 0/1 columns)."""
    cols: dict[str, np.ndarray] = {}
    for col, forced_cat in cov_specs:
        s = frame[col]
        if forced_cat or _is_categorical(s):
            levels = sorted(s.astype(str).unique())
            if len(levels) < 2:
                raise ModelSpecError(f"covariate {col!r} has a single level {levels}",
                                     column=col)
            sv = s.astype(str).to_numpy()
            for lev in levels[1:]:
                cols[f"C({col})[T.{lev}]"] = (sv == lev).astype(float)
        else:
            x = s.to_numpy(dtype=float)
            if np.ptp(x) == 0:
                raise ModelSpecError(f"covariate {col!r} is constant ({x[0]:g})", column=col)
            cols[col] = x
    return cols


def _fixed_effects(cols: dict[str, np.ndarray], *, n: int) -> tuple[list[str], np.ndarray]:
    """Intercept plus ``cols`` as X (n x p); refuses infinite values and collinear columns."""
    x_names = [INTERCEPT, *cols]
    X = np.column_stack([np.ones(n), *cols.values()])
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():
        name = x_names[int(np.flatnonzero(bad)[0])]
        raise ModelSpecError(f"column {name!r} has infinite values", column=name)
    # rank on unit-norm columns, so that km next to fractions is not mistaken for collinearity
    if np.linalg.matrix_rank(X / np.linalg.norm(X, axis=0)) < X.shape[1]:
        raise ModelSpecError(f"the fixed-effect columns {x_names[1:]} are collinear "
                             "(e.g. a covariate that is a combination of others)")
    return x_names, X


def _random_effects(cols: dict[str, np.ndarray], slope_cols: list[str], *, codes: np.ndarray,
                    m: int) -> tuple[list[str], np.ndarray]:
    """Intercept plus the slope columns as Z (n x q); refuses a slope informed by fewer than
    :data:`MIN_RUNNERS_FOR_SLOPE` runners and more random effects than observations."""
    n = len(codes)
    z_names = [INTERCEPT, *slope_cols]
    Z = np.column_stack([np.ones(n), *(cols[s] for s in slope_cols)])
    for s in slope_cols:
        # runners whose slope exposure varies (a slope is only informed by those)
        lo = np.full(m, np.inf)
        hi = np.full(m, -np.inf)
        np.minimum.at(lo, codes, cols[s])
        np.maximum.at(hi, codes, cols[s])
        n_varying = int((hi > lo).sum())
        if n_varying < MIN_RUNNERS_FOR_SLOPE:
            raise ModelSpecError(
                f"a random slope on {s!r} needs at least {MIN_RUNNERS_FOR_SLOPE} runners "
                f"whose {s!r} varies; {n_varying} do", column=s)
    if n <= m * Z.shape[1]:
        raise ModelSpecError(f"{n} observations for {m * Z.shape[1]} random effects; "
                             "the residual variance is not identifiable")
    return z_names, Z


def design_of(result: ModelResult, panel: pd.DataFrame) -> Design:
    """The design a fitted model was built on, rebuilt from its request (the one rebuild).

    Parameters
    ----------
    result : a :class:`analysis.models.ModelResult`; its outcome, exposures, covariates,
        random slopes and ``extra`` ``center``, ``group`` and, for an AR(1) fit, the time
        column (``extra["correlation"]["time"]``, whose missing rows the fit dropped too).
    panel : the rows the model was fitted to (one row per pain report).

    Returns
    -------
    The :class:`Design` of the fit: same rows, same columns (``<x>_within`` and
    ``<x>_between`` for within-between centering), rows sorted by runner.
    """
    extra = result.extra or {}
    correlation = extra.get("correlation")
    time = correlation.get("time") if isinstance(correlation, dict) else None
    return build_design(panel, outcome=result.outcome, exposures=result.exposures,
                        covariates=result.covariates, random_slopes=result.random_slopes,
                        center=extra.get("center"), group=extra.get("group", "runner_id"),
                        extra_columns=[time] if time else [],
                        splines=extra.get("splines") or None,
                        interactions=extra.get("interactions") or ())


# --- GLS covariance (lme4's vcov) -------------------------------------------------------------


def _group_cross(A: np.ndarray, B: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per-group cross products ``A_i' B_i`` for rows sorted by group -> (m, a, b)."""
    prod = A[:, :, None] * B[:, None, :]
    return np.add.reduceat(prod, starts, axis=0)


def gls_covariance(design: Design, *, G: np.ndarray, sigma2: float) -> np.ndarray:
    """``(X' V^-1 X)^-1`` with ``V_i = Z_i G Z_i' + sigma2 I`` (lme4's ``vcov``).

    Uses the Woodbury identity per runner, so the cost is O(n p q) and no n x n matrix is
    formed: ``X'V^-1X = (X'X - sum_i X_i'Z_i (Z_i'Z_i + sigma2 G^-1)^-1 Z_i'X_i) / sigma2``.
    G may be singular; then ``(sigma2 I + G Z_i'Z_i)^-1 G`` is used instead of G^-1.
    """
    X, Z, starts = design.X, design.Z, design.starts
    XtX = X.T @ X
    XZ = _group_cross(X, Z, starts)  # m x p x q
    ZZ = _group_cross(Z, Z, starts)  # m x q x q
    q = Z.shape[1]
    # (Z'Z + s2 G^-1)^-1 = G (s2 I + Z'Z G)^-1 ... written to avoid inverting G
    M = sigma2 * np.eye(q) + ZZ @ G  # m x q x q
    K = G @ np.linalg.inv(M)  # = (Z'Z + s2 G^-1)^-1 when G invertible
    corr = np.einsum("mpq,mqr,msr->ps", XZ, K, XZ)
    info = (XtX - corr) / sigma2
    return np.linalg.inv(info)



def _binary_response(design: Design, outcome: str) -> None:
    values = np.unique(design.y)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ModelSpecError(f"binomial outcome {outcome!r} must be 0/1 or boolean; found "
                             f"values {values[:5].tolist()}", column=outcome)
    if len(values) < 2:
        raise ModelSpecError(f"binomial outcome {outcome!r} never varies ({values.tolist()}); "
                             "no odds ratio is estimable", column=outcome)


def _binary_design(panel: pd.DataFrame, *, outcome: str, exposures: Sequence[str],
                   covariates: Sequence[str], random_slopes: Sequence[str],
                   center: str | None, group: str, splines: Mapping[str, int] | None = None,
                   interactions: Sequence[str] = ()) -> Design:
    """Design of a binomial model (GLMM or GEE), its outcome checked to be a varying 0/1."""
    design = build_design(panel, outcome=outcome, exposures=exposures, covariates=covariates,
                          random_slopes=random_slopes, center=center, group=group,
                          splines=splines, interactions=interactions)
    _binary_response(design, outcome)
    return design


def column_rms(a: np.ndarray) -> np.ndarray:
    """Root-mean-square of each column (1 for an all-zero column): the unit each fixed- or
    random-effect column is scaled to before optimising, so that a column in km and one in
    fractions are on one footing (the estimates are scaled back)."""
    scale = np.sqrt((np.asarray(a, dtype=float) ** 2).mean(axis=0))
    scale[scale == 0] = 1.0
    return scale
