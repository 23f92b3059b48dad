"""The one tidy result type of every model fit, and its tables (docs/models.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

#: Two-sided 95 % normal quantile used for Wald intervals.
Z_95 = float(stats.norm.ppf(0.975))


#: A random-effect SD below this multiple of the residual SD (the relative Cholesky factor
#: theta) is reported as a singular fit, lme4's ``isSingular`` tolerance (Bates et al. 2015).
SINGULAR_TOL = 1e-4

#: Latent-scale residual variance of the logistic distribution, pi^2/3, for the ICC of a
#: logit model (Nakagawa, Johnson & Schielzeth 2017, J R Soc Interface 14:20170213).
LOGIT_RESIDUAL_VARIANCE = math.pi**2 / 3


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



def _dropped_note(design: Any) -> list[str]:
    """The ``warnings`` entry for rows dropped as incomplete (none when nothing was dropped)."""
    if not design.dropped:
        return []
    return ["rows dropped: " + ", ".join(f"{k}: {v}" for k, v in design.dropped.items())]

