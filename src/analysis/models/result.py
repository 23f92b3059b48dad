"""The one tidy result type of every model fit, and its tables (docs/models.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import special  # not scipy.stats: 0.3 s of import on every `kneeload fit`

from analysis.effects import add_reading_units
from analysis.models.design import INTERCEPT

#: Two-sided 95 % normal quantile used for Wald intervals.
Z_95 = float(special.ndtri(0.975))


#: A random-effect SD below this multiple of the residual SD (the relative Cholesky factor
#: theta) is reported as a singular fit, lme4's ``isSingular`` tolerance (Bates et al. 2015).
SINGULAR_TOL = 1e-4

#: Latent-scale residual variance of the logistic distribution, pi^2/3, for the ICC of a
#: logit model (Nakagawa, Johnson & Schielzeth 2017, J R Soc Interface 14:20170213).
LOGIT_RESIDUAL_VARIANCE = math.pi**2 / 3

#: A residual SD below this fraction of a random-effect SD is a boundary estimate (the
#: residual variance at 0, an ICC above 0.9999): the data carry no within-runner variation
#: the model can see (e.g. every runner reports the same score each week) and the standard
#: errors are meaningless. Such fits stop at the profiled engine's bound on theta
#: (``lmm.THETA_MAX`` = 1e3, a ratio of 1e-3); no plausible pain panel comes near 1e-2,
#: since integer NRS scores alone give a residual SD of about 0.3 unless they never change.
RESIDUAL_BOUNDARY_RATIO = 1e-2

#: The short reasons a result is not "ok" (``ModelResult.problems``); docs/reports.md.
PROBLEM_NOT_CONVERGED = "not converged"
PROBLEM_SINGULAR = "singular fit"
PROBLEM_BOUNDARY = "boundary estimate"
PROBLEM_PREDICTIONS = "predictions outside"  # + the range, e.g. "predictions outside 0-10"

#: Values of ``ModelResult.status``.
STATUS_OK = "ok"
STATUS_WARNING = "warning"


@dataclass
class ModelResult:
    """Tidy result of one model fit (the same type for every model; docs/models.md).

    ``table`` has term, estimate, std_error, ci_low, ci_high, p_value (Wald, 95 %) and, for
    binomial models, odds_ratio, or_ci_low, or_ci_high; ``variance_components`` follows
    lme4's ``as.data.frame(VarCorr())`` (group, var1, var2, vcov, sdcor); ``extra`` holds
    ``singular``, ``n_params``, ``vcov`` (fixed-effect covariance in table order),
    ``center`` and ``group``.

    ``table`` also carries the reading-unit columns of :func:`analysis.effects.add_reading_units`
    (``step``, ``step_label``, ``estimate_step``, ``ci_low_step``, ``ci_high_step`` and, for
    binomial models, ``odds_ratio_step``, ``or_ci_low_step``, ``or_ci_high_step``), added on
    construction; ``estimate`` and its interval stay per unit of the column.

    ``problems`` lists the short reasons the result should not be read as a clean fit
    ("not converged", "singular fit", "boundary estimate: ...", "predictions outside 0-10
    ..."); it is derived on construction from ``converged``, ``extra["singular"]``,
    ``extra["boundary"]`` and the variance components, plus any reasons passed in, and
    :attr:`status` is ``"ok"`` when it is empty, else ``"warning"``.
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
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.table = add_reading_units(self.table)
        self.problems = _merged(self.problems, _derived_problems(self))

    @property
    def status(self) -> str:
        """``"ok"`` when :attr:`problems` is empty, else ``"warning"``."""
        return STATUS_WARNING if self.problems else STATUS_OK

    def with_problems(self, problems: list[str]) -> ModelResult:
        """A copy with more problems (e.g. from predictions a figure found out of range)."""
        return replace(self, problems=_merged(self.problems, problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tables as lists of records; NaN becomes None), with ``status``."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["table"] = _records(self.table)
        out["variance_components"] = _records(self.variance_components)
        for key in ("icc", "loglik", "aic", "bic"):
            out[key] = _finite_or_none(out[key])
        out["extra"] = _json_safe(out["extra"])
        out["status"] = self.status
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelResult:
        """Inverse of :meth:`to_dict` (dicts written before ``problems`` existed load too)."""
        kwargs = dict(d)
        table = pd.DataFrame.from_records(d["table"]) if d["table"] else pd.DataFrame()
        if "df" in table.columns:  # JSON has no infinity: a z (Wald) df is written as None
            table["df"] = pd.to_numeric(table["df"]).fillna(np.inf)
        kwargs["table"] = table
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


def _merged(first: list[str], more: list[str]) -> list[str]:
    """``first`` then the entries of ``more`` it lacks (order kept, no duplicates)."""
    return list(dict.fromkeys([*first, *more]))


def _derived_problems(result: ModelResult) -> list[str]:
    """The problems a result's own flags and estimates show (see :class:`ModelResult`)."""
    problems = []
    if not result.converged:
        problems.append(PROBLEM_NOT_CONVERGED)
    if result.extra.get("singular"):
        problems.append(PROBLEM_SINGULAR)
    boundary = result.extra.get("boundary")
    if boundary:
        problems.append(f"{PROBLEM_BOUNDARY}: {boundary}" if isinstance(boundary, str)
                        else PROBLEM_BOUNDARY)
    vc = result.variance_components
    if {"group", "sdcor", "var2"} <= set(vc.columns):
        residual = vc.loc[vc["group"] == "Residual", "sdcor"].to_numpy(float)
        # the intercept SD only: it is in the outcome's units, as the residual SD is, where a
        # slope SD is per unit of its exposure (520 per unit of a 1e-3-scale column is an
        # ordinary slope, not a vanishing residual)
        intercept = vc.loc[(vc["group"] != "Residual") & vc["var2"].isna()
                           & (vc.get("var1") == INTERCEPT), "sdcor"]
        largest = float(np.nanmax(intercept.to_numpy(float), initial=0.0))
        if residual.size and largest > 0 and residual[0] < RESIDUAL_BOUNDARY_RATIO * largest:
            problems.append(f"{PROBLEM_BOUNDARY}: residual variance near 0 (residual SD "
                            f"{residual[0]:.2g} vs between-runner intercept SD {largest:.2g}); "
                            "the standard errors are not usable")
    return problems


def _finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: NaN and infinities (a z test's df) become None."""
    recs = df.astype(object).where(df.notna(), None).to_dict(orient="records")
    return [{k: _json_safe(v) for k, v in r.items()} for r in recs]


def _json_safe(value: Any) -> Any:
    """Standard JSON: non-finite floats become None, numpy scalars and arrays plain Python."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _finite_or_none(value)
    return value



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
                df: np.ndarray | float | None = None, odds: bool = False) -> pd.DataFrame:
    """Tidy fixed-effect table: estimate, SE, df, statistic (t or z), 95 % CI, p-value.

    ``df`` per term (None or inf: normal z, "Wald"); a finite df gives t(df) p-values and
    intervals (the df of ``analysis.models.inference``).
    """
    est = np.asarray(est, dtype=float)
    se = np.asarray(se, dtype=float)
    dfs = np.broadcast_to(np.inf if df is None else np.asarray(df, dtype=float), est.shape)
    stat = est / se
    finite = np.isfinite(dfs)
    t_df = np.where(finite, dfs, 1.0)  # placeholder df where the normal applies
    quantile = np.where(finite, special.stdtrit(t_df, 0.975), Z_95)
    p_value = np.where(finite, 2 * special.stdtr(t_df, -np.abs(stat)),
                       2 * special.ndtr(-np.abs(stat)))
    table = pd.DataFrame({
        "term": names,
        "estimate": est,
        "std_error": se,
        "df": dfs.astype(float),
        "statistic": stat,
        "ci_low": est - quantile * se,
        "ci_high": est + quantile * se,
        "p_value": p_value,
    })
    if odds:
        with np.errstate(over="ignore"):  # a separated term's OR bound is inf (a problem)
            table = table.assign(odds_ratio=np.exp(table["estimate"]),
                                 or_ci_low=np.exp(table["ci_low"]),
                                 or_ci_high=np.exp(table["ci_high"]))
    return table



def _dropped_note(design: Any) -> list[str]:
    """The ``warnings`` entry for rows dropped as incomplete (none when nothing was dropped)."""
    if not design.dropped:
        return []
    return ["rows dropped: " + ", ".join(f"{k}: {v}" for k, v in design.dropped.items())]

