"""Mixed-effects models of knee pain on training-load exposures -> one tidy result type.

Models (docs/models.md):

* ``lmm``  pain score (NRS 0-10), linear mixed model, random intercept per runner and optional
  random slopes; REML by default, ML for likelihood-ratio tests.
* ``glmm`` pain present (``pain_any``), binomial (logit) mixed model by maximum likelihood
  (Laplace approximation), odds ratios with Wald intervals.
* ``gee``  pain present, population-averaged GEE with an exchangeable working correlation
  (sensitivity analysis).

Standard errors of LMM fixed effects are the generalised-least-squares covariance
``sigma^2 (X' V^-1 X)^-1`` at the estimated variance parameters, as lme4's ``vcov()`` reports
(statsmodels' ``bse_fe`` inverts the joint Hessian instead, which differs by up to 1e-3
relative on random-slope models; /work/shared/ANCHORS.md).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.errors import ModelSpecError

#: Two-sided 95 % normal quantile used for Wald intervals.
Z_95 = float(stats.norm.ppf(0.975))

#: Fewest runners for which a random slope is estimable. With fewer clusters the variance of
#: a slope (and its correlation with the intercept) is poorly identified and fits are
#: routinely singular (McNeish & Stapleton 2016, Educ Psychol Rev 28:295-314).
MIN_RUNNERS_FOR_SLOPE = 10

#: Fewest runners for any random-intercept model (a variance needs more than one level;
#: lme4 refuses grouping factors with fewer than 2 levels).
MIN_RUNNERS = 2

#: A random-effect SD below this multiple of the residual SD (the relative Cholesky factor
#: theta) is reported as a singular fit, lme4's ``isSingular`` tolerance (Bates et al. 2015).
SINGULAR_TOL = 1e-4

#: Latent-scale residual variance of the logistic distribution, pi^2/3, for the ICC of a
#: logit model (Nakagawa, Johnson & Schielzeth 2017, J R Soc Interface 14:20170213).
LOGIT_RESIDUAL_VARIANCE = math.pi**2 / 3

#: Optimizers tried in turn for statsmodels' MixedLM until one converges.
LMM_OPTIMIZERS = ("lbfgs", "bfgs", "powell", "nm")

CENTER_OPTIONS = (None, "within-between", "grand")

INTERCEPT = "Intercept"


@dataclass
class ModelResult:
    """Tidy result of one model fit (the same type for every model; docs/models.md).

    ``table`` has term, estimate, std_error, ci_low, ci_high, p_value (Wald, 95 %) and, for
    binomial models, odds_ratio, or_ci_low, or_ci_high; ``variance_components`` follows
    lme4's ``as.data.frame(VarCorr())`` (group, var1, var2, vcov, sdcor); ``extra`` holds
    ``singular``, ``n_params``, ``vcov`` (fixed-effect covariance in table order),
    ``center`` and ``group``.
    """

    model: str
    outcome: str
    exposures: list[str]
    covariates: list[str]
    random_slopes: list[str]
    table: pd.DataFrame
    variance_components: pd.DataFrame
    icc: float | None
    n_obs: int
    n_runners: int
    dropped: dict[str, int]
    converged: bool
    optimizer: str | None
    warnings: list[str]
    loglik: float | None
    aic: float | None
    bic: float | None
    method: str
    engine: str = "statsmodels"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tables as lists of records; NaN becomes None)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["table"] = _records(self.table)
        out["variance_components"] = _records(self.variance_components)
        for key in ("icc", "loglik", "aic", "bic"):
            out[key] = _finite_or_none(out[key])
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelResult:
        """Inverse of :meth:`to_dict`."""
        kwargs = dict(d)
        kwargs["table"] = pd.DataFrame.from_records(d["table"]) if d["table"] else pd.DataFrame()
        vc = d["variance_components"]
        kwargs["variance_components"] = pd.DataFrame.from_records(vc) if vc else pd.DataFrame()
        kwargs = {k: v for k, v in kwargs.items() if k in cls.__dataclass_fields__}
        return cls(**kwargs)

    def term(self, name: str) -> pd.Series:
        """The table row of one term (``"Intercept"``, an exposure, ``"C(sex)[T.M]"`` ...)."""
        rows = self.table.loc[self.table["term"] == name]
        if rows.empty:
            raise KeyError(f"no term {name!r}; terms are {list(self.table['term'])}")
        return rows.iloc[0]


def _finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    recs = df.astype(object).where(df.notna(), None).to_dict(orient="records")
    return [{k: (float(v) if isinstance(v, np.floating) else v) for k, v in r.items()}
            for r in recs]


def _dropped_note(design: Design) -> list[str]:
    """The ``warnings`` entry for rows dropped as incomplete (none when nothing was dropped)."""
    if not design.dropped:
        return []
    return ["rows dropped: " + ", ".join(f"{k}: {v}" for k, v in design.dropped.items())]


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
    frame: pd.DataFrame  # the modelling rows (sorted), with derived columns


def _is_categorical(s: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s))


def _parse_covariate(spec: str) -> tuple[str, bool]:
    """``"C(sex)"`` -> ("sex", True); ``"age"`` -> ("age", False)."""
    spec = spec.strip()
    if spec.startswith("C(") and spec.endswith(")"):
        return spec[2:-1].strip(), True
    return spec, False


def build_design(
    panel: pd.DataFrame,
    *,
    outcome: str,
    exposures: Sequence[str],
    covariates: Sequence[str] = (),
    random_slopes: Sequence[str] = (),
    center: str | None = None,
    group: str = "runner_id",
) -> Design:
    """Check a model request and build its design matrices (no fitting).

    Parameters
    ----------
    panel : one row per pain report.
    outcome : response column (``pain`` NRS 0-10, or ``pain_any``).
    exposures : numeric exposure columns (e.g. ``mileage_jump`` fraction, ``shoe_km`` km).
    covariates : adjustment columns; non-numeric columns or ``C(col)`` are dummy-coded
        (treatment coding, first sorted level as reference).
    random_slopes : exposures (or numeric covariates) that get a random slope per runner.
    center : None, ``"within-between"`` (each exposure split into the runner mean
        ``<x>_between`` and the deviation from it ``<x>_within``) or ``"grand"``
        (exposures minus their overall mean).
    group : runner identifier column.

    Raises
    ------
    ModelSpecError
        Missing column, constant exposure, too few runners, or a slope that is not estimable.
    """
    exposures = list(exposures)
    if not exposures:
        raise ModelSpecError("at least one exposure is needed")
    if center not in CENTER_OPTIONS:
        raise ModelSpecError(f"center must be one of {CENTER_OPTIONS}, got {center!r}")
    cov_specs = [_parse_covariate(c) for c in covariates]
    needed = [outcome, *exposures, *(c for c, _ in cov_specs)]
    for col in [group, *needed]:
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

    # drop incomplete rows, attributing each dropped row to the first missing column
    keep = panel[group].notna().to_numpy().copy()
    dropped: dict[str, int] = {}
    n_missing_group = int((~keep).sum())
    if n_missing_group:
        dropped[f"missing {group}"] = n_missing_group
    for col in needed:
        miss = panel[col].isna().to_numpy() & keep
        if miss.any():
            dropped[f"missing {col}"] = int(miss.sum())
            keep &= ~miss
    frame = panel.loc[keep, [group, *dict.fromkeys(needed)]].copy()
    frame[group] = frame[group].astype(str)
    frame = frame.sort_values(group, kind="stable").reset_index(drop=True)
    if frame.empty:
        raise ModelSpecError("no complete rows left after dropping missing values")

    codes, labels = pd.factorize(frame[group], sort=True)
    m = len(labels)
    if m < MIN_RUNNERS:
        raise ModelSpecError(f"{m} runner(s) with complete data; a random intercept needs at "
                             f"least {MIN_RUNNERS}", column=group)

    y = frame[outcome].to_numpy(dtype=float)
    cols: dict[str, np.ndarray] = {}
    for col in exposures:
        x = frame[col].to_numpy(dtype=float)
        if np.ptp(x) == 0:
            raise ModelSpecError(f"exposure {col!r} is constant ({x[0]:g}) in the modelling "
                                 "rows; its effect is not identifiable", column=col)
        if center == "within-between":
            means = np.bincount(codes, weights=x, minlength=m) / np.bincount(codes, minlength=m)
            between, within = means[codes], x - means[codes]
            if np.ptp(within) == 0:
                raise ModelSpecError(f"exposure {col!r} never varies within a runner; the "
                                     "within-runner effect is not identifiable", column=col)
            if np.ptp(between) == 0:
                raise ModelSpecError(f"exposure {col!r} has the same mean for every runner; "
                                     "the between-runner effect is not identifiable",
                                     column=col)
            cols[f"{col}_within"] = within
            cols[f"{col}_between"] = between
        elif center == "grand":
            cols[col] = x - x.mean()
        else:
            cols[col] = x
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

    x_names = [INTERCEPT, *cols]
    X = np.column_stack([np.ones(len(frame)), *cols.values()])
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():
        name = x_names[int(np.flatnonzero(bad)[0])]
        raise ModelSpecError(f"column {name!r} has infinite values", column=name)
    # rank on unit-norm columns, so that km next to fractions is not mistaken for collinearity
    if np.linalg.matrix_rank(X / np.linalg.norm(X, axis=0)) < X.shape[1]:
        raise ModelSpecError(f"the fixed-effect columns {x_names[1:]} are collinear "
                             "(e.g. a covariate that is a combination of others)")

    slope_cols = [f"{s}_within" if center == "within-between" and s in exposures else s
                  for s in random_slopes]
    z_names = [INTERCEPT, *slope_cols]
    Z = np.column_stack([np.ones(len(frame)), *(cols[s] for s in slope_cols)])
    if slope_cols:
        # runners whose slope exposure varies (a slope is only informed by those)
        for s in slope_cols:
            lo = np.full(m, np.inf)
            hi = np.full(m, -np.inf)
            np.minimum.at(lo, codes, cols[s])
            np.maximum.at(hi, codes, cols[s])
            n_varying = int((hi > lo).sum())
            if n_varying < MIN_RUNNERS_FOR_SLOPE:
                raise ModelSpecError(
                    f"a random slope on {s!r} needs at least {MIN_RUNNERS_FOR_SLOPE} runners "
                    f"whose {s!r} varies; {n_varying} do", column=s)
    if len(frame) <= m * Z.shape[1]:
        raise ModelSpecError(f"{len(frame)} observations for {m * Z.shape[1]} random effects; "
                             "the residual variance is not identifiable")
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    for name, values in cols.items():
        frame[name] = values
    return Design(y=y, X=X, Z=Z, groups=codes, starts=starts, x_names=x_names,
                  z_names=z_names, group_labels=np.asarray(labels), dropped=dropped,
                  frame=frame)


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


# --- linear mixed model -------------------------------------------------------------------


def _variance_table(group: str, z_names: list[str], G: np.ndarray,
                    sigma2: float | None) -> pd.DataFrame:
    rows = []
    sd = np.sqrt(np.clip(np.diag(G), 0, None))
    for i, a in enumerate(z_names):
        rows.append({"group": group, "var1": a, "var2": None, "vcov": float(G[i, i]),
                     "sdcor": float(sd[i])})
    for i, a in enumerate(z_names):
        for j in range(i + 1, len(z_names)):
            denom = sd[i] * sd[j]
            rows.append({"group": group, "var1": a, "var2": z_names[j], "vcov": float(G[i, j]),
                         "sdcor": float(G[i, j] / denom) if denom > 0 else float("nan")})
    if sigma2 is not None:
        rows.append({"group": "Residual", "var1": None, "var2": None, "vcov": float(sigma2),
                     "sdcor": math.sqrt(sigma2)})
    return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])


def _wald_table(names: list[str], est: np.ndarray, se: np.ndarray, *,
                odds: bool = False) -> pd.DataFrame:
    z = est / se
    table = pd.DataFrame({
        "term": names,
        "estimate": est,
        "std_error": se,
        "ci_low": est - Z_95 * se,
        "ci_high": est + Z_95 * se,
        "p_value": 2 * stats.norm.sf(np.abs(z)),
    })
    if odds:
        table = table.assign(odds_ratio=np.exp(table["estimate"]),
                             or_ci_low=np.exp(table["ci_low"]),
                             or_ci_high=np.exp(table["ci_high"]))
    return table


def fit_lmm(
    panel: pd.DataFrame,
    *,
    exposures: Sequence[str],
    outcome: str = "pain",
    covariates: Sequence[str] = (),
    random_slopes: Sequence[str] = (),
    center: str | None = None,
    reml: bool = True,
    group: str = "runner_id",
    engine: str = "profiled",
) -> ModelResult:
    """Linear mixed model of pain (NRS 0-10) with a random intercept (and slopes) per runner.

    Parameters
    ----------
    panel : one row per pain report (``docs/exposures.md``).
    exposures : exposure columns, e.g. ``["mileage_jump", "shoe_km", "rest_days_7d"]``
        (fraction, km, days: each estimate is the change in pain per unit).
    outcome : response, pain NRS 0-10.
    covariates : adjustment columns; strings or ``C(col)`` are dummy-coded.
    random_slopes : exposures with a random slope per runner.
    center : None, ``"within-between"`` or ``"grand"`` (see :func:`build_design`).
    reml : REML (default) or ML (for likelihood-ratio tests of fixed effects).
    group : runner identifier column.
    engine : ``"profiled"`` (default: lme4's profiled deviance on per-runner sufficient
        statistics, :func:`fit_lmm_design`) or ``"statsmodels"`` (``MixedLM``, optimizers
        tried in turn, SEs recomputed in the GLS form).

    Returns
    -------
    ModelResult with GLS (lme4-form) standard errors and Wald 95 % intervals.
    """
    design = build_design(panel, outcome=outcome, exposures=exposures, covariates=covariates,
                          random_slopes=random_slopes, center=center, group=group)
    if engine == "profiled":
        fit = fit_lmm_design(design, reml=reml)
    elif engine == "statsmodels":
        fit = _fit_lmm_statsmodels(design, reml=reml)
    else:
        raise ModelSpecError(f"unknown LMM engine {engine!r}; use 'profiled' or 'statsmodels'")
    result = _lmm_result(design, fit=fit, reml=reml, outcome=outcome, exposures=exposures,
                         covariates=covariates, random_slopes=random_slopes, group=group,
                         engine=engine)
    result.extra.update(center=center, group=group)
    return result


@dataclass
class LmmFit:
    """Raw estimates of one LMM fit (before tidying)."""

    beta: np.ndarray
    vcov: np.ndarray  # GLS covariance of beta, sigma^2 (X'V^-1X)^-1
    G: np.ndarray  # random-effect covariance (absolute scale)
    sigma2: float
    loglik: float
    converged: bool
    optimizer: str | None
    notes: list[str]
    theta: np.ndarray | None = None  # relative Cholesky factor (lme4's theta)
    singular: bool = False


@dataclass
class _SuffStats:
    """Per-runner cross products: all an LMM deviance needs (O(m q^2 p), not O(n))."""

    n: int
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    ZZ: np.ndarray  # m x q x q
    ZX: np.ndarray  # m x q x p
    Zy: np.ndarray  # m x q


def _suff_stats(design: Design, *, scale: np.ndarray | None = None) -> _SuffStats:
    X, Z, y, starts = design.X, design.Z, design.y, design.starts
    if scale is not None:
        X = X / scale
    q, p = Z.shape[1], X.shape[1]

    def gsum(v: np.ndarray) -> np.ndarray:
        return np.add.reduceat(v, starts)

    ZZ = np.empty((len(starts), q, q))
    for a in range(q):
        for b in range(a, q):
            ZZ[:, a, b] = ZZ[:, b, a] = gsum(Z[:, a] * Z[:, b])
    ZX = np.stack([np.stack([gsum(Z[:, a] * X[:, b]) for b in range(p)], axis=-1)
                   for a in range(q)], axis=1)
    Zy = np.stack([gsum(Z[:, a] * y) for a in range(q)], axis=-1)
    return _SuffStats(n=len(y), XtX=X.T @ X, Xty=X.T @ y, yty=float(y @ y), ZZ=ZZ, ZX=ZX,
                      Zy=Zy)


def _theta_to_lambda(theta: np.ndarray, q: int) -> np.ndarray:
    """lme4's theta (lower triangle, column by column) -> relative Cholesky factor Lambda."""
    lam = np.zeros((q, q))
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))  # column-major, as lme4 stores theta
    lam[rows[order], cols[order]] = theta
    return lam


def _profiled_deviance(theta: np.ndarray, ss: _SuffStats, *, reml: bool,
                       full: bool = False) -> Any:
    """-2 log-likelihood profiled over beta and sigma (Bates et al. 2015, JSS 67(1), eq. 34/41).

    With ``V = I + Z Lambda Lambda' Z'`` (relative to sigma^2) and, per runner,
    ``M_i = Lambda' Z_i'Z_i Lambda + I``, Woodbury gives ``X'V^-1X = X'X - sum A_i' M_i^-1 A_i``
    with ``A_i = Lambda' Z_i'X_i`` and ``log|V| = sum log|M_i|``.
    """
    q = ss.ZZ.shape[1]
    lam = _theta_to_lambda(theta, q)
    M = np.einsum("ji,mjk,kl->mil", lam, ss.ZZ, lam) + np.eye(q)
    L = np.linalg.cholesky(M)
    logdet_v = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum()
    A = np.einsum("ji,mjp->mip", lam, ss.ZX)  # m x q x p
    a = np.einsum("ji,mj->mi", lam, ss.Zy)  # m x q
    rhs = np.concatenate([A, a[:, :, None]], axis=2)  # m x q x (p+1)
    sol = np.linalg.solve(M, rhs)
    cross = np.einsum("mqi,mqj->ij", rhs, sol)  # (p+1) x (p+1)
    p = ss.XtX.shape[0]
    XVX = ss.XtX - cross[:p, :p]
    XVy = ss.Xty - cross[:p, p]
    yVy = ss.yty - cross[p, p]
    cho = np.linalg.cholesky(XVX)
    beta = np.linalg.solve(XVX, XVy)
    r2 = max(float(yVy - beta @ XVy), 1e-300)
    dof = ss.n - p if reml else ss.n
    dev = logdet_v + dof * (1.0 + math.log(2.0 * math.pi * r2 / dof))
    if reml:
        dev += 2.0 * np.log(np.diag(cho)).sum()
    if not full:
        return dev
    sigma2 = r2 / dof
    return dev, beta, sigma2 * np.linalg.inv(XVX), sigma2 * lam @ lam.T, sigma2


#: Bound on the relative Cholesky factor theta (random-effect SD / residual SD): a runner
#: SD of 1,000 residual SDs is far outside any plausible pain model and keeps X'V^-1X
#: numerically positive definite during line searches.
THETA_MAX = 1e3
#: Deviance returned for a theta at which X'V^-1X is numerically singular.
DEVIANCE_PENALTY = 1e15

#: scipy optimizers tried in turn by the profiled engine (all accept bounds).
PROFILED_OPTIMIZERS = ("L-BFGS-B", "Powell", "Nelder-Mead")


def fit_lmm_design(design: Design, *, reml: bool = True,
                   optimizers: Sequence[str] = PROFILED_OPTIMIZERS,
                   maxiter: int | None = None) -> LmmFit:
    """Fit an LMM by minimising lme4's profiled (RE)ML deviance over theta.

    The per-runner sufficient statistics are computed once, so each deviance evaluation costs
    O(m q^3 + p^3) whatever the number of rows. Optimizers are tried in turn, each starting
    from the best point so far, until one reports convergence; theta's diagonal is bounded
    at 0 (a singular fit is then reported, as lme4 does). ``maxiter`` caps every optimizer's
    iterations (for tests of the non-convergence path).
    """
    from scipy.optimize import minimize

    # fixed-effect columns scaled to unit root-mean-square (km next to fractions), so that
    # X'V^-1X stays well conditioned; estimates are scaled back below
    x_scale = np.sqrt((design.X**2).mean(axis=0))
    x_scale[x_scale == 0] = 1.0
    ss = _suff_stats(design, scale=x_scale)
    q = design.Z.shape[1]
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))
    is_diag = (rows[order] == cols[order])
    theta0 = is_diag.astype(float)  # lme4's start: identity
    bounds = [(0.0, THETA_MAX) if d else (-THETA_MAX, THETA_MAX) for d in is_diag]
    notes: list[str] = []

    def objective(th: np.ndarray) -> float:
        try:
            dev = float(_profiled_deviance(th, ss, reml=reml))
        except np.linalg.LinAlgError:
            return DEVIANCE_PENALTY
        # finite, so that finite-difference gradients never subtract infinities
        return dev if math.isfinite(dev) else DEVIANCE_PENALTY

    best = None
    used = None
    options = {
        "L-BFGS-B": {"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000},
        "Powell": {"xtol": 1e-8, "ftol": 1e-12, "maxiter": 20000},
        "Nelder-Mead": {"xatol": 1e-7, "fatol": 1e-9, "maxiter": 20000},
    }
    for opt in optimizers:
        start = theta0 if best is None else best.x
        opts = dict(options.get(opt, {}))
        if maxiter is not None:
            opts["maxiter"] = maxiter
        res = minimize(objective, start, method=opt, bounds=bounds, options=opts)
        if best is None or res.fun < best.fun:
            best = res
        if res.success and np.isfinite(res.fun):
            used = opt
            break
        notes.append(f"optimizer {opt} did not converge: {res.message}")
    assert best is not None
    if used is None:
        notes.append("no optimizer converged; estimates are from the lowest deviance found")
    theta = np.asarray(best.x, dtype=float)
    try:
        dev, beta, vcov, G, sigma2 = _profiled_deviance(theta, ss, reml=reml, full=True)
    except np.linalg.LinAlgError:
        worst = design.x_names[int(np.argmax(np.abs(design.X).max(axis=0) / x_scale))]
        raise ModelSpecError("the fixed-effect design is numerically singular at the optimum; "
                             f"check for extreme values (e.g. in {worst!r})",
                             column=worst) from None
    beta = beta / x_scale
    vcov = vcov / np.outer(x_scale, x_scale)
    if reml:  # log|X'V^-1X| of the unscaled design, as lme4 reports the REML criterion
        dev += 2.0 * np.log(x_scale).sum()
    singular = bool((theta[is_diag] < SINGULAR_TOL).any())
    return LmmFit(beta=beta, vcov=vcov, G=G, sigma2=sigma2, loglik=-0.5 * dev,
                  converged=used is not None, optimizer=used, notes=notes, theta=theta,
                  singular=singular)


def _fit_lmm_statsmodels(design: Design, *, reml: bool) -> LmmFit:
    """statsmodels MixedLM, optimizers tried in turn; SEs recomputed in lme4's GLS form."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    model = sm.MixedLM(design.y, design.X, groups=design.groups, exog_re=design.Z)
    notes: list[str] = []
    fit = None
    used = None
    for opt in LMM_OPTIMIZERS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                candidate = model.fit(reml=reml, method=[opt])
            except (np.linalg.LinAlgError, ValueError) as exc:
                notes.append(f"optimizer {opt} failed: {exc}")
                continue
        conv_msgs = [str(w.message) for w in caught
                     if issubclass(w.category, ConvergenceWarning)]
        if candidate.converged and not any("did not converge" in m or "failed" in m.lower()
                                           for m in conv_msgs):
            fit, used = candidate, opt
            break
        notes.append(f"optimizer {opt} did not converge" +
                     (f": {'; '.join(conv_msgs)}" if conv_msgs else ""))
        if fit is None:
            fit = candidate
    if fit is None:
        raise ModelSpecError("statsmodels MixedLM failed with every optimizer: "
                             + "; ".join(notes))
    if used is None:
        notes.append("no optimizer converged; estimates are from the first attempt")
    sigma2 = float(fit.scale)
    G = np.asarray(fit.cov_re, dtype=float)
    beta = np.asarray(fit.fe_params, dtype=float)
    return LmmFit(beta=beta, vcov=gls_covariance(design, G=G, sigma2=sigma2), G=G,
                  sigma2=sigma2, loglik=float(fit.llf), converged=used is not None,
                  optimizer=used, notes=notes)


def _lmm_result(design: Design, *, fit: LmmFit, reml: bool, outcome: str,
                exposures: Sequence[str], covariates: Sequence[str],
                random_slopes: Sequence[str], group: str, engine: str) -> ModelResult:
    notes = list(fit.notes)
    G, sigma2 = fit.G, fit.sigma2
    # singular fit: a random-effect SD (relative to the residual SD) at ~0, or |corr| ~ 1
    singular = fit.singular
    rel_sd = np.sqrt(np.clip(np.diag(G), 0, None) / sigma2)
    singular |= bool((rel_sd < SINGULAR_TOL).any())
    if G.shape[0] > 1:
        d = np.sqrt(np.clip(np.diag(G), 1e-300, None))
        corr = G / np.outer(d, d)
        if (np.abs(corr[np.triu_indices_from(corr, 1)]) > 1 - 1e-6).any():
            singular = True
    if singular:
        notes.append("singular fit: a random-effect variance is estimated at zero (or a "
                     "correlation at +/-1); the random-effect structure is too rich for the "
                     "data")
    notes.extend(_dropped_note(design))
    n, p = design.X.shape
    q = design.Z.shape[1]
    k = p + q * (q + 1) // 2 + 1  # fixed effects + random-effect covariances + residual
    icc = float(G[0, 0] / (G[0, 0] + sigma2)) if q == 1 else None
    return ModelResult(
        model="lmm", outcome=outcome, exposures=list(exposures), covariates=list(covariates),
        random_slopes=list(random_slopes),
        table=_wald_table(design.x_names, fit.beta, np.sqrt(np.diag(fit.vcov))),
        variance_components=_variance_table(group, design.z_names, G, sigma2),
        icc=icc, n_obs=int(n), n_runners=len(design.group_labels), dropped=design.dropped,
        converged=fit.converged, optimizer=fit.optimizer, warnings=notes, loglik=fit.loglik,
        aic=-2 * fit.loglik + 2 * k, bic=-2 * fit.loglik + math.log(n) * k,
        method="REML" if reml else "ML", engine=engine,
        extra={"singular": singular, "n_params": k, "vcov": fit.vcov.tolist()},
    )


# --- model comparison -----------------------------------------------------------------------


def likelihood_ratio_test(restricted: ModelResult, full: ModelResult) -> dict[str, Any]:
    """Likelihood-ratio test of two nested mixed models fitted to the same rows.

    Both models must be fitted by the same method. Models that differ in fixed effects must
    both be fitted by ML (``reml=False``); a REML likelihood-ratio test is only valid for
    models with the same fixed effects that differ only in random slopes (Verbeke &
    Molenberghs 2000, Linear Mixed Models for Longitudinal Data, sec. 6.4).

    Boundary caveat: when the full model adds random-effect variances, the null value (a
    variance of zero) lies on the boundary of the parameter space and the chi-square
    reference distribution is conservative. ``p_value_boundary`` then uses the 50:50
    mixture of chi-square(df - 1) and chi-square(df) (Self & Liang 1987, JASA 82:605-10;
    Stram & Lee 1994, Biometrics 50:1171-7), exact for adding one random slope with its
    covariance to a random intercept.

    Returns
    -------
    dict with ``statistic``, ``df``, ``p_value`` (chi-square), ``p_value_boundary`` (None
    when no variance is tested) and ``caveat``.
    """
    if restricted.model != full.model or full.model not in ("lmm", "glmm"):
        raise ModelSpecError("a likelihood-ratio test needs two LMMs or two GLMMs")
    if restricted.n_obs != full.n_obs or restricted.outcome != full.outcome:
        raise ModelSpecError("the two models were not fitted to the same rows and outcome "
                             f"({restricted.n_obs} vs {full.n_obs} rows)")
    r_terms, f_terms = set(restricted.table["term"]), set(full.table["term"])
    r_slopes, f_slopes = set(restricted.random_slopes), set(full.random_slopes)
    if not (r_terms <= f_terms and r_slopes <= f_slopes):
        raise ModelSpecError("the models are not nested (the restricted model has a term or "
                             "random slope the full model lacks)")
    df = int(full.extra["n_params"] - restricted.extra["n_params"])
    if df <= 0:
        raise ModelSpecError("the full model must have more parameters than the restricted")
    if restricted.method != full.method:
        raise ModelSpecError("both models must be fitted by the same method (got "
                             f"{restricted.method} and {full.method}): a REML and an ML "
                             "log-likelihood are different criteria and their difference is "
                             "not a likelihood-ratio statistic")
    if r_terms != f_terms and "REML" in (restricted.method, full.method):
        raise ModelSpecError("models with different fixed effects must be fitted by ML "
                             "(reml=False): a REML likelihood-ratio test is only valid for "
                             "models with the same fixed effects (REML likelihoods of "
                             "different fixed effects are not comparable)")
    if restricted.loglik is None or full.loglik is None:
        raise ModelSpecError("both models need a log-likelihood")
    stat = max(2.0 * (full.loglik - restricted.loglik), 0.0)
    p_value = float(stats.chi2.sf(stat, df))
    tests_variance = f_slopes != r_slopes
    p_boundary = None
    caveat = "chi-square reference distribution"
    if tests_variance:
        lower = stats.chi2.sf(stat, df - 1) if df > 1 else float(stat <= 0)
        p_boundary = float(0.5 * lower + 0.5 * p_value)
        caveat = ("the null puts a variance on the boundary (zero): the chi-square p-value is "
                  "conservative; p_value_boundary uses the 50:50 chi-square mixture "
                  f"of df {df - 1} and {df}")
    return {"statistic": stat, "df": df, "p_value": p_value, "p_value_boundary": p_boundary,
            "caveat": caveat}


# --- binomial models ------------------------------------------------------------------------

#: GPBoost's relative convergence tolerance; its default (1e-6) left fixed effects up to
#: 0.1 % from glmer's on the demo fixture, 1e-10 brings them within 0.01 % (docs/models.md).
GPBOOST_DELTA_REL_CONV = 1e-10
GPBOOST_MAXIT = 10000
#: GPBoost optimizers tried in turn (for the covariance and the fixed-effect parameters).
GLMM_OPTIMIZERS = ("lbfgs", "nelder_mead", "gradient_descent")


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
                   center: str | None, group: str) -> Design:
    """Design of a binomial model (GLMM or GEE), its outcome checked to be a varying 0/1."""
    design = build_design(panel, outcome=outcome, exposures=exposures, covariates=covariates,
                          random_slopes=random_slopes, center=center, group=group)
    _binary_response(design, outcome)
    return design


def _import_gpboost() -> Any:
    """Import gpboost without tqdm's "IProgress not found" warning.

    gpboost imports optuna, which imports ``tqdm.auto``; in a Jupyter kernel without
    ipywidgets that warns once, although kneeload never shows a tqdm bar.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import gpboost

    return gpboost


def fit_glmm(
    panel: pd.DataFrame,
    *,
    exposures: Sequence[str],
    outcome: str = "pain_any",
    covariates: Sequence[str] = (),
    random_slopes: Sequence[str] = (),
    center: str | None = None,
    group: str = "runner_id",
    engine: str = "gpboost",
) -> ModelResult:
    """Binomial (logit) mixed model of pain present, by maximum likelihood (Laplace).

    Parameters
    ----------
    panel : one row per pain report.
    exposures, covariates, random_slopes, center, group : as in :func:`fit_lmm`.
    outcome : 0/1 or boolean column (``pain_any`` = pain >= threshold on the NRS).
    engine : ``"gpboost"`` (C++ Laplace approximation, ML; matches ``glmer(nAGQ = 1)``
        within 0.1 % and is 10-50x faster, docs/models.md). Random slopes in GPBoost are
        independent of the intercept (no correlation parameter).

    Returns
    -------
    ModelResult with log-odds estimates, odds ratios and Wald 95 % intervals; ``icc`` on the
    latent scale, tau^2 / (tau^2 + pi^2/3), for a random intercept only (None with random
    slopes, as for :func:`fit_lmm`: the between-runner share then depends on the exposure).
    """
    if engine != "gpboost":
        raise ModelSpecError(f"unknown GLMM engine {engine!r}; use 'gpboost'")
    gpb = _import_gpboost()

    design = _binary_design(panel, outcome=outcome, exposures=exposures,
                            covariates=covariates, random_slopes=random_slopes, center=center,
                            group=group)
    q = design.Z.shape[1]
    kwargs: dict[str, Any] = {}
    if q > 1:
        kwargs = {"group_rand_coef_data": design.Z[:, 1:],
                  "ind_effect_group_rand_coef": [1] * (q - 1)}
    notes: list[str] = []
    best = None
    for opt in GLMM_OPTIMIZERS:
        model = gpb.GPModel(group_data=design.groups, likelihood="bernoulli_logit",
                            num_parallel_threads=1, **kwargs)
        model.fit(y=design.y, X=design.X,
                  params={"trace": False, "delta_rel_conv": GPBOOST_DELTA_REL_CONV,
                          "maxit": GPBOOST_MAXIT, "optimizer_cov": opt,
                          "optimizer_coef": opt})
        # GPBoost 1.8 exposes iterations and convergence (0 = converged) only privately
        num_it = int(getattr(model, "_get_num_optim_iter", lambda: -1)())
        status = int(getattr(model, "_get_convergence_status", lambda: 0)())
        nll = float(model.get_current_neg_log_likelihood())
        if best is None or nll < best[1] - 1e-9:
            best = (model, nll, opt, num_it, status)
        if status == 0:
            best = (model, nll, opt, num_it, status)
            break
        notes.append(f"GPBoost optimizer {opt} did not converge (status {status}, "
                     f"{num_it} iterations)")
    assert best is not None
    model, nll, opt, num_it, status = best
    coef = model.get_coef(std_err=True, format_pandas=False)
    cov_pars = model.get_cov_pars(std_err=False, format_pandas=False)
    beta, se = np.asarray(coef[0], float), np.asarray(coef[1], float)
    G = np.diag(np.asarray(cov_pars, float).ravel()[:q])
    loglik = -nll
    converged = status == 0 and bool(np.isfinite(beta).all() and np.isfinite(se).all())
    if not converged:
        notes.append("no GPBoost optimizer converged; estimates are from the lowest deviance")
    singular = bool((np.sqrt(np.diag(G)) < SINGULAR_TOL).any())
    if singular:
        notes.append("singular fit: a random-effect variance is estimated at zero")
    notes.extend(_dropped_note(design))
    n, p = design.X.shape
    k = p + q
    tau2 = float(G[0, 0])
    return ModelResult(
        model="glmm", outcome=outcome, exposures=list(exposures), covariates=list(covariates),
        random_slopes=list(random_slopes),
        table=_wald_table(design.x_names, beta, se, odds=True),
        variance_components=_variance_table(group, design.z_names, G, None).query(
            "var2.isna()", engine="python").reset_index(drop=True),
        icc=tau2 / (tau2 + LOGIT_RESIDUAL_VARIANCE) if q == 1 else None, n_obs=int(n),
        n_runners=len(design.group_labels), dropped=design.dropped, converged=bool(converged),
        optimizer=f"gpboost:{opt}" if converged else None,
        warnings=notes, loglik=loglik, aic=-2 * loglik + 2 * k,
        bic=-2 * loglik + math.log(n) * k, method="Laplace (ML)", engine=engine,
        extra={"singular": singular, "n_params": k, "iterations": num_it, "center": center,
               "group": group},
    )


def fit_gee(
    panel: pd.DataFrame,
    *,
    exposures: Sequence[str],
    outcome: str = "pain_any",
    covariates: Sequence[str] = (),
    random_slopes: Sequence[str] = (),
    center: str | None = None,
    group: str = "runner_id",
) -> ModelResult:
    """Population-averaged logistic GEE, exchangeable working correlation (sensitivity).

    Robust (sandwich) standard errors; odds ratios are marginal (population-averaged), so
    they are closer to 1 than the GLMM's runner-specific ones (Zeger, Liang & Albert 1988,
    Biometrics 44:1049-60).
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    if random_slopes:
        raise ModelSpecError("GEE is population-averaged: random slopes do not apply")
    design = _binary_design(panel, outcome=outcome, exposures=exposures,
                            covariates=covariates, random_slopes=(), center=center, group=group)
    model = sm.GEE(design.y, design.X, groups=design.groups, family=sm.families.Binomial(),
                   cov_struct=sm.cov_struct.Exchangeable())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(maxiter=100)
    notes = [str(w.message) for w in caught]
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    notes.extend(_dropped_note(design))
    corr = float(model.cov_struct.dep_params)
    vc = pd.DataFrame([{"group": group, "var1": "exchangeable_correlation", "var2": None,
                        "vcov": corr, "sdcor": corr}])
    return ModelResult(
        model="gee", outcome=outcome, exposures=list(exposures), covariates=list(covariates),
        random_slopes=[], table=_wald_table(design.x_names, np.asarray(fit.params),
                                            np.asarray(fit.bse), odds=True),
        variance_components=vc, icc=None, n_obs=len(design.y),
        n_runners=len(design.group_labels), dropped=design.dropped, converged=converged,
        optimizer=None, warnings=notes, loglik=None, aic=None, bic=None,
        method="GEE (exchangeable, robust SE)", engine="statsmodels",
        extra={"vcov": np.asarray(fit.cov_params()).tolist(), "center": center, "group": group},
    )


def fit_model(panel: pd.DataFrame, *, model: str = "lmm", **kwargs: Any) -> ModelResult:
    """Dispatch to :func:`fit_lmm`, :func:`fit_glmm` or :func:`fit_gee` by ``model`` name."""
    fitters = {"lmm": fit_lmm, "glmm": fit_glmm, "gee": fit_gee}
    try:
        fitter = fitters[model]
    except KeyError:
        raise ModelSpecError(f"unknown model {model!r}; choose one of {sorted(fitters)}") from None
    return fitter(panel, **kwargs)
