"""Inference for LMM fixed effects: Satterthwaite df (as lmerTest) and cluster-robust SEs.

Satterthwaite (Kuznetsova, Brockhoff & Christensen 2017, JSS 82(13); lmerTest 3.1-3
``as_lmerModLT``, ``contest1D``, ``contestMD``): for a contrast ``L``,
``df = 2 (L'CL)^2 / (g' A g)`` where ``C(phi)`` is the fixed-effect covariance as a function
of the variance parameters ``phi = (theta, sigma)`` (lme4's relative Cholesky factor and the
residual SD), ``g = d(L'C(phi)L)/d phi`` and ``A = 2 H^-1`` with ``H`` the Hessian of the
(RE)ML deviance in ``phi`` (beta profiled out, sigma free). Derivatives are numDeriv's
Richardson central differences with lmerTest's settings, so the numbers are the same ones.

The code takes a generic deviance and covariance function of the variance parameters
(:func:`satterthwaite_info`), so any model with a (RE)ML deviance in its variance parameters
(e.g. an AR(1) residual with parameters ``(theta, rho, sigma)``) can use it.

Cluster-robust (sandwich) SEs by runner (Liang & Zeger 1986): bread ``(X'V^-1X)^-1``, meat
``sum_i X_i'V_i^-1 r_i r_i'V_i^-1 X_i`` with marginal residuals ``r_i = y_i - X_i beta``,
computed per runner by Woodbury, O(n p q).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import special  # chdtrc, fdtrc = stats.chi2.sf, stats.f.sf (no scipy.stats import)

from analysis.errors import ModelSpecError
from analysis.models.design import Design, _group_cross, column_rms

# --- numDeriv's Richardson differences (numDeriv 2016.8-1.1, genD / jacobian defaults) -----

#: Relative step of numDeriv's Richardson method (``d``).
RICHARDSON_D = 1e-4
#: Relative step for the deviance Hessian here: numDeriv's 1e-4 divides the deviance's
#: rounding error (~1e-12 on ~3e3) by h^2 ~ 2e-10 at the last halving, 2e-4 relative noise on
#: the Hessian of the demo fixture; at 1e-3 the extrapolated Hessian is stable to 1e-7
#: between steps 1e-3 and 1e-2 (its truncation error is O(h^8)). lme4's deviance, computed
#: from residuals, is less noisy, so lmerTest's 1e-4 Hessian sits at this one to ~1e-6.
HESSIAN_D = 1e-3
#: Absolute step used where ``|x| < RICHARDSON_ZERO_TOL`` (``eps``).
RICHARDSON_EPS = 1e-4
#: numDeriv's ``zero.tol = sqrt(.Machine$double.eps / 7e-7)``.
RICHARDSON_ZERO_TOL = math.sqrt(np.finfo(float).eps / 7e-7)
#: Number of Richardson iterations (``r``); the step is halved each time (``v = 2``).
RICHARDSON_R = 4

#: Smallest scale of a theta element (random-effect SD relative to the residual SD, per RMS
#: unit of its column) for the difference steps: a near-zero element, such as the
#: intercept-slope term of an almost uncorrelated slope (-7e-4), otherwise gets a relative
#: step of 7e-7 whose second differences are rounding; its df then moved by 1.3 % between
#: km and km / 100 where lmerTest's stayed within 3e-6 (tests/test_lmm_engine.py).
THETA_STEP_FLOOR = 0.1

#: How the note on a deviance Hessian with negative eigenvalues starts: the fit is then not at
#: a minimum in the variance parameters and the df (and the fit) are doubtful.
NEGATIVE_HESSIAN_NOTE = "Satterthwaite df: the deviance Hessian in the variance parameters"

#: Eigenvalues of the deviance Hessian within this of 0 are dropped from its inverse
#: (lmerTest 3.1-3 ``as_lmerModLT(tol = 1e-8)``).
HESSIAN_EIGEN_TOL = 1e-8

#: Accepted ``ddf`` values of :func:`analysis.models.fit_lmm`.
DDF_OPTIONS = ("satterthwaite", "wald")
#: Accepted ``vcov`` values: model-based GLS covariance, or a cluster-robust sandwich;
#: ``"robust"`` is ``"CR1"``.
VCOV_OPTIONS = ("model", "robust", "CR0", "CR1")
ROBUST_DEFAULT = "CR1"


def _steps(x: np.ndarray, d: float, floor: np.ndarray | float = 0.0) -> np.ndarray:
    """numDeriv's first step ``d |x|`` (``eps`` near 0), at least ``d * floor``."""
    step = np.abs(d * x) + RICHARDSON_EPS * (np.abs(x) < RICHARDSON_ZERO_TOL)
    return np.maximum(step, d * np.asarray(floor, dtype=float))


def _extrapolate(a: list[np.ndarray]) -> np.ndarray:
    """Richardson extrapolation of central differences at steps h, h/2, h/4, ..."""
    a = list(a)
    for m in range(1, len(a)):
        a = [(a[k + 1] * 4**m - a[k]) / (4**m - 1) for k in range(len(a) - 1)]
    return a[0]


def richardson_hessian(f: Callable[[np.ndarray], float], x: np.ndarray, *,
                       d: float = RICHARDSON_D, floor: np.ndarray | float = 0.0) -> np.ndarray:
    """Hessian of a scalar function by Richardson-extrapolated central differences.

    The algorithm of R's ``numDeriv::hessian`` (``genD``), which lmerTest uses for the
    deviance: relative step ``d`` (numDeriv's default 1e-4; absolute 1e-4 near 0), 4 halvings.
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    f0 = f(x)
    h0 = _steps(x, d, floor)
    hdiag = np.empty(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        approx = []
        h = h0.copy()
        for _ in range(RICHARDSON_R):
            approx.append((f(x + e * h) - 2 * f0 + f(x - e * h)) / h[i] ** 2)
            h = h / 2
        hdiag[i] = _extrapolate(approx)
    H = np.diag(hdiag)
    for i in range(n):
        for j in range(i):
            e = np.zeros(n)
            e[i] = e[j] = 1.0
            approx = []
            h = h0.copy()
            for _ in range(RICHARDSON_R):
                f1, f2 = f(x + e * h), f(x - e * h)
                approx.append((f1 - 2 * f0 + f2 - hdiag[i] * h[i] ** 2 - hdiag[j] * h[j] ** 2)
                              / (2 * h[i] * h[j]))
                h = h / 2
            H[i, j] = H[j, i] = _extrapolate(approx)
    return H


def richardson_jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, *,
                        floor: np.ndarray | float = 0.0) -> np.ndarray:
    """Jacobian of an array-valued function, shape ``(len(x), *f(x).shape)``.

    R's ``numDeriv::jacobian(method = "Richardson")`` with its defaults.
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    h0 = _steps(x, RICHARDSON_D, floor)
    out = []
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        approx = []
        h = h0.copy()
        for _ in range(RICHARDSON_R):
            approx.append((np.asarray(f(x + e * h)) - np.asarray(f(x - e * h))) / (2 * h[i]))
            h = h / 2
        out.append(_extrapolate(approx))
    return np.stack(out)


# --- Satterthwaite --------------------------------------------------------------------------


@dataclass
class SatterthwaiteInfo:
    """What Satterthwaite df of any contrast need, at the fitted variance parameters.

    ``vcov_beta`` is the fixed-effect covariance (p x p), ``vcov_varpar`` the asymptotic
    covariance of the variance parameters ``2 H^+`` (k x k), ``jacobian`` the derivative of
    ``vcov_beta`` in each variance parameter (k x p x p); ``notes`` report a Hessian that is
    not positive definite (lmerTest's convergence warnings).
    """

    vcov_beta: np.ndarray
    vcov_varpar: np.ndarray
    jacobian: np.ndarray
    hessian_eigenvalues: np.ndarray
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        """JSON-ready (for ``ModelResult.extra["satterthwaite"]``)."""
        return {"vcov_varpar": self.vcov_varpar.tolist(), "jacobian": self.jacobian.tolist()}


def satterthwaite_info(varpar: np.ndarray, *, deviance: Callable[[np.ndarray], float],
                       vcov_beta: Callable[[np.ndarray], np.ndarray],
                       step_floor: np.ndarray | float = 0.0) -> SatterthwaiteInfo:
    """Hessian of the deviance and Jacobian of vcov(beta) in the variance parameters.

    Parameters
    ----------
    varpar : fitted variance parameters, e.g. ``(theta..., sigma)`` (sigma: residual SD, in
        the outcome's units).
    deviance : (RE)ML deviance (-2 log-likelihood) as a function of ``varpar``, with the fixed
        effects profiled out and sigma free (lmerTest's ``devfun_vp``).
    vcov_beta : fixed-effect covariance as a function of ``varpar`` (``get_covbeta``).
    step_floor : smallest first difference step per parameter, as a multiple of the relative
        step (numDeriv's steps are relative, so a parameter near but not at 0 gets a step
        whose second differences are all rounding; see :data:`THETA_STEP_FLOOR`).

    Notes
    -----
    As lmerTest 3.1-3 (``as_lmerModLT``): ``vcov_varpar = 2 H^+`` where the pseudo-inverse
    keeps the eigenvalues of H above 1e-8. At a singular fit (a diagonal theta at its bound
    0) the deviance is even in that theta, so its gradient and the Jacobian of vcov(beta)
    vanish there and the parameter adds nothing to the df; lmerTest does the same (its
    central differences step across 0).
    """
    varpar = np.asarray(varpar, dtype=float)
    H = richardson_hessian(deviance, varpar, d=HESSIAN_D, floor=step_floor)
    evals, evecs = np.linalg.eigh(H)
    notes = []
    neg = evals < -HESSIAN_EIGEN_TOL
    zero = np.abs(evals) <= HESSIAN_EIGEN_TOL
    if neg.any():
        notes.append(f"{NEGATIVE_HESSIAN_NOTE} has "
                     f"{int(neg.sum())} negative eigenvalue(s) "
                     f"({', '.join(f'{v:.1e}' for v in evals[neg])}); the fit may not be at "
                     "an optimum")
    if zero.any():
        notes.append("Satterthwaite df: the deviance Hessian has eigenvalue(s) close to zero "
                     f"({', '.join(f'{v:.1e}' for v in evals[zero])}); those directions are "
                     "left out of the df")
    pos = evals > HESSIAN_EIGEN_TOL
    h_inv = (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    jac = richardson_jacobian(vcov_beta, varpar, floor=step_floor)
    return SatterthwaiteInfo(vcov_beta=np.asarray(vcov_beta(varpar)), vcov_varpar=2 * h_inv,
                             jacobian=jac, hessian_eigenvalues=evals, notes=notes)


def satterthwaite_df(info: SatterthwaiteInfo, L: np.ndarray) -> float:
    """Satterthwaite df of one contrast ``L'beta`` (lmerTest ``contest1D``)."""
    L = np.asarray(L, dtype=float)
    var_con = float(L @ info.vcov_beta @ L)
    grad = np.einsum("i,kij,j->k", L, info.jacobian, L)
    denom = float(grad @ info.vcov_varpar @ grad)
    return 2 * var_con**2 / denom if denom > 0 else math.inf


def _satt_info_from_extra(extra: dict) -> SatterthwaiteInfo:
    s = extra["satterthwaite"]
    return SatterthwaiteInfo(vcov_beta=np.asarray(extra["vcov"]),
                             vcov_varpar=np.asarray(s["vcov_varpar"]),
                             jacobian=np.asarray(s["jacobian"]),
                             hessian_eigenvalues=np.array([]))


def _fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """Denominator df of an F test from the df of its orthogonal 1-df pieces (lmerTest)."""
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2)))
    return 2 * E / (E - len(nu))


def contrast_test(result, L: np.ndarray | Sequence[float], *,
                  rhs: float | Sequence[float] = 0.0) -> dict[str, float]:
    """F test of ``L beta = rhs`` (one row of L: a t test) for an LMM fitted with df.

    Parameters
    ----------
    result : :class:`ModelResult` of :func:`fit_lmm` (with ``ddf="satterthwaite"`` for
        finite df; with ``ddf="wald"`` the test is a chi-square/q F with infinite df).
    L : contrast matrix, q x p in table order (a vector is one row).
    rhs : hypothesised value(s) of ``L beta``.

    Returns
    -------
    dict with ``f_value``, ``num_df``, ``den_df``, ``p_value`` (lmerTest ``contestMD``: the
    contrast rotated to the eigenvectors of ``L C L'``, each piece's Satterthwaite df combined
    as Fai & Cornelius 1996).
    """
    L = np.atleast_2d(np.asarray(L, dtype=float))
    beta = result.table["estimate"].to_numpy(dtype=float)
    if L.shape[1] != len(beta):
        raise ModelSpecError(f"contrast has {L.shape[1]} columns; the model has {len(beta)} "
                             "fixed effects")
    rhs = np.broadcast_to(np.asarray(rhs, dtype=float), (L.shape[0],))
    C = np.asarray(result.extra["vcov"], dtype=float)
    b = beta - np.linalg.pinv(L) @ rhs if np.any(rhs != 0) else beta
    d, P = np.linalg.eigh(L @ C @ L.T)
    d, P = d[::-1], P[:, ::-1]
    pos = d > max(np.sqrt(np.finfo(float).eps) * d[0], 0)
    q = int(pos.sum())
    if q == 0:
        raise ModelSpecError("the contrast has zero variance")
    PtL = (P.T @ L)[:q]
    F = float(np.sum((PtL @ b) ** 2 / d[:q]) / q)
    if result.extra.get("ddf") == "satterthwaite":
        info = _satt_info_from_extra(result.extra)
        nu = np.array([satterthwaite_df(info, PtL[m]) for m in range(q)])
        ddf = _fstat_ddf(nu)
    elif result.extra.get("ddf") == "clusters-1":
        ddf = float(result.n_runners - 1)
    else:
        ddf = math.inf
    p = (float(special.chdtrc(q, F * q)) if math.isinf(ddf)
         else float(special.fdtrc(q, ddf, F)))
    return {"f_value": F, "num_df": float(q), "den_df": ddf, "p_value": p}


# --- the LMM's deviance in (theta, sigma) ---------------------------------------------------


def theta_to_lambda(theta: np.ndarray, q: int) -> np.ndarray:
    """lme4's theta (lower triangle, column by column) -> relative Cholesky factor Lambda."""
    lam = np.zeros((q, q))
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))
    lam[rows[order], cols[order]] = theta
    return lam


def lambda_to_theta(lam: np.ndarray) -> np.ndarray:
    """Inverse of :func:`theta_to_lambda`."""
    rows, cols = np.tril_indices(lam.shape[0])
    order = np.lexsort((rows, cols))
    return lam[rows[order], cols[order]]


def theta_from_covariance(G: np.ndarray, sigma2: float) -> np.ndarray:
    """lme4's theta from the random-effect covariance G and the residual variance sigma2.

    Cholesky of ``G / sigma2`` with a non-negative diagonal; a singular G (a variance at 0 or
    a correlation at +/-1) gets the pivot-free factor with zero diagonal entries.
    """
    rel = np.asarray(G, dtype=float) / sigma2
    q = rel.shape[0]
    lam = np.zeros((q, q))
    for j in range(q):
        s = rel[j, j] - lam[j, :j] @ lam[j, :j]
        lam[j, j] = math.sqrt(s) if s > 0 else 0.0
        for i in range(j + 1, q):
            r = rel[i, j] - lam[i, :j] @ lam[j, :j]
            lam[i, j] = r / lam[j, j] if lam[j, j] > 0 else 0.0
    return lambda_to_theta(lam)


@dataclass
class _Cross:
    """Per-runner cross products of a Design (X scaled to unit RMS for conditioning)."""

    n: int
    scale: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    ZZ: np.ndarray
    ZX: np.ndarray
    Zy: np.ndarray


def _cross(design: Design, *, beta: np.ndarray | None = None) -> _Cross:
    scale = np.sqrt((design.X**2).mean(axis=0))
    scale[scale == 0] = 1.0
    X = design.X / scale
    Z, y, starts = design.Z, design.y, design.starts
    if beta is not None:
        # y - X beta_hat: the GLS residual sum of squares is invariant to this shift, and near
        # the fit it no longer comes from cancelling two large cross products, so the
        # deviance carries ~1e-13 rather than ~1e-11 rounding error (second differences at
        # steps of 1e-5 divide that error by 1e-10)
        y = y - design.X @ beta
    return _Cross(n=len(y), scale=scale, XtX=X.T @ X, Xty=X.T @ y, yty=float(y @ y),
                  ZZ=_group_cross(Z, Z, starts), ZX=_group_cross(Z, X, starts),
                  Zy=_group_cross(Z, y[:, None], starts)[:, :, 0])


def _gls_pieces(theta: np.ndarray, c: _Cross) -> tuple[float, np.ndarray, np.ndarray, float]:
    """log|V|, X'V^-1X, X'V^-1y, y'V^-1y for ``V = I + Z Lambda Lambda' Z'`` (relative)."""
    q = c.ZZ.shape[1]
    lam = theta_to_lambda(theta, q)
    M = np.einsum("ji,mjk,kl->mil", lam, c.ZZ, lam) + np.eye(q)
    chol = np.linalg.cholesky(M)
    logdet_v = 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
    A = np.einsum("ji,mjp->mip", lam, c.ZX)
    a = np.einsum("ji,mj->mi", lam, c.Zy)
    rhs = np.concatenate([A, a[:, :, None]], axis=2)
    cross = np.einsum("mqi,mqj->ij", rhs, np.linalg.solve(M, rhs))
    p = c.XtX.shape[0]
    return (logdet_v, c.XtX - cross[:p, :p], c.Xty - cross[:p, p],
            float(c.yty - cross[p, p]))


def lmm_deviance_functions(design: Design, *, reml: bool,
                           beta: np.ndarray | None = None) -> tuple[
        Callable[[np.ndarray], float], Callable[[np.ndarray], np.ndarray]]:
    """The LMM's (RE)ML deviance and vcov(beta) as functions of ``varpar = (theta, sigma)``.

    lmerTest's ``devfun_vp`` and ``get_covbeta``: with beta at its GLS value given theta,
    ``dev = log|V| + r'V^-1r / sigma^2 + n log(2 pi sigma^2)`` (V relative to sigma^2) and,
    for REML, ``+ log|X'V^-1X| - p log(2 pi sigma^2)``; ``vcov = sigma^2 (X'V^-1X)^-1``.
    Cost per call O(runners q^3 + p^3), independent of the number of rows. ``beta`` (the
    fitted fixed effects, optional) only improves the rounding of the deviance near the fit.
    """
    c = _cross(design, beta=beta)
    p = c.XtX.shape[0]

    def deviance(varpar: np.ndarray) -> float:
        theta, sigma2 = varpar[:-1], varpar[-1] ** 2
        logdet_v, XVX, XVy, yVy = _gls_pieces(theta, c)
        beta = np.linalg.solve(XVX, XVy)
        r2 = yVy - beta @ XVy
        dev = logdet_v + r2 / sigma2 + c.n * math.log(2 * math.pi * sigma2)
        if reml:
            dev += np.linalg.slogdet(XVX)[1] - p * math.log(2 * math.pi * sigma2)
        return float(dev)

    def vcov_beta(varpar: np.ndarray) -> np.ndarray:
        _, XVX, _, _ = _gls_pieces(varpar[:-1], c)
        return varpar[-1] ** 2 * np.linalg.inv(XVX) / np.outer(c.scale, c.scale)

    return deviance, vcov_beta


def lmm_satterthwaite(design: Design, *, beta: np.ndarray, G: np.ndarray, sigma2: float,
                      reml: bool, theta: np.ndarray | None = None) -> SatterthwaiteInfo:
    """:func:`satterthwaite_info` for an LMM fit (beta, G, sigma2 as fitted; theta if known)."""
    if theta is None:
        theta = theta_from_covariance(G, sigma2)
    deviance, vcov_beta = lmm_deviance_functions(design, reml=reml, beta=beta)
    varpar = np.r_[np.asarray(theta, dtype=float), math.sqrt(sigma2)]
    return satterthwaite_info(varpar, deviance=deviance, vcov_beta=vcov_beta)


# --- cluster-robust covariance --------------------------------------------------------------


def cluster_robust_vcov(design: Design, *, beta: np.ndarray, G: np.ndarray, sigma2: float,
                        vcov_model: np.ndarray, kind: str = ROBUST_DEFAULT) -> np.ndarray:
    """Cluster-robust (sandwich, by runner) covariance of the LMM fixed effects.

    Parameters
    ----------
    design : the fitted design (rows sorted by runner).
    beta, G, sigma2 : fitted fixed effects, random-effect covariance, residual variance.
    vcov_model : the model-based GLS covariance ``(X'V^-1X)^-1`` (the bread).
    kind : ``"CR0"`` (no correction) or ``"CR1"`` (times m/(m-1), m runners).

    Notes
    -----
    ``B (sum_i u_i u_i') B`` with ``u_i = X_i'V_i^-1 r_i`` and ``r_i = y_i - X_i beta``
    (Liang & Zeger 1986). Per runner ``V_i^-1 = (I - Z_i K_i Z_i') / sigma2`` with
    ``K_i = G (sigma2 I + Z_i'Z_i G)^-1`` (Woodbury; G may be singular), so the cost is
    O(n p q) and no n_i x n_i matrix is formed.
    """
    if kind not in ("CR0", "CR1"):
        raise ModelSpecError(f"unknown cluster-robust type {kind!r}; use 'CR0' or 'CR1'")
    X, Z, starts = design.X, design.Z, design.starts
    r = design.y - X @ beta
    q = Z.shape[1]
    Xr = np.add.reduceat(X * r[:, None], starts, axis=0)  # m x p
    Zr = np.add.reduceat(Z * r[:, None], starts, axis=0)  # m x q
    XZ = _group_cross(X, Z, starts)  # m x p x q
    ZZ = _group_cross(Z, Z, starts)  # m x q x q
    K = G @ np.linalg.inv(sigma2 * np.eye(q) + ZZ @ G)  # m x q x q
    u = (Xr - np.einsum("mpq,mqr,mr->mp", XZ, K, Zr)) / sigma2
    meat = u.T @ u
    m = len(starts)
    if kind == "CR1":
        meat = meat * m / (m - 1)
    return vcov_model @ meat @ vcov_model


# --- what fit_lmm reports ---------------------------------------------------------------------


@dataclass
class LmmInference:
    """The covariance, df and labels of an LMM's fixed-effect table.

    ``vcov`` gives the SEs (model-based GLS or cluster-robust), ``df`` one value per term
    (inf: normal z), ``ddf`` and ``vcov_type`` name the choice (``ModelResult.extra``),
    ``description`` says it in words for reports, ``extra`` is merged into
    ``ModelResult.extra``, ``notes`` into its warnings.
    """

    vcov: np.ndarray
    df: np.ndarray
    ddf: str
    vcov_type: str
    description: str
    extra: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_inference_options(ddf: str, vcov: str) -> tuple[str, str]:
    """Validate ``ddf`` / ``vcov`` of :func:`fit_lmm`; returns (ddf, vcov type)."""
    if ddf == "kenward-roger":
        raise ModelSpecError("ddf='kenward-roger' is not implemented (it is not verified "
                             "against pbkrtest); use 'satterthwaite' or 'wald'")
    if ddf not in DDF_OPTIONS:
        raise ModelSpecError(f"ddf must be one of {DDF_OPTIONS}, got {ddf!r}")
    if vcov not in VCOV_OPTIONS:
        raise ModelSpecError(f"vcov must be one of {VCOV_OPTIONS}, got {vcov!r}")
    return ddf, (ROBUST_DEFAULT if vcov == "robust" else vcov)


def _varpar_scale(design: Design, n: int) -> np.ndarray:
    """Scale of each variance parameter ``(theta..., [rho], sigma)``: theta's element in row i
    of Lambda times the RMS of random-effect column i, 1 for rho and sigma."""
    q = design.Z.shape[1]
    rows, cols = np.tril_indices(q)
    rows = rows[np.lexsort((rows, cols))]  # lme4's theta order: column by column
    scale = np.ones(n)
    scale[:rows.size] = column_rms(design.Z)[rows]
    return scale


def lmm_inference(design: Design, *, beta: np.ndarray, vcov_model: np.ndarray, G: np.ndarray,
                  sigma2: float, reml: bool, ddf: str = "satterthwaite", vcov: str = "model",
                  theta: np.ndarray | None = None,
                  deviance: Callable[[np.ndarray], float] | None = None,
                  vcov_beta: Callable[[np.ndarray], np.ndarray] | None = None,
                  varpar: np.ndarray | None = None) -> LmmInference:
    """SEs and df of an LMM's fixed effects, as requested by ``ddf`` and ``vcov``.

    Parameters
    ----------
    design : the fitted design.
    beta, vcov_model, G, sigma2 : fitted fixed effects, their GLS covariance, random-effect
        covariance and residual variance (outcome units squared).
    reml : whether the fit is REML (the deviance differentiated for Satterthwaite).
    ddf : ``"satterthwaite"`` (t tests, lmerTest's df) or ``"wald"`` (z tests).
    vcov : ``"model"`` (GLS), ``"robust"`` (= ``"CR1"``), ``"CR0"`` or ``"CR1"``.
    theta : lme4's theta of the fit (computed from G and sigma2 when None).
    deviance, vcov_beta, varpar : a deviance / covariance function of other variance
        parameters (e.g. with an AR(1) rho) and its fitted value; default the LMM's own
        ``(theta, sigma)`` (:func:`lmm_deviance_functions`).

    Notes
    -----
    With a cluster-robust covariance the Satterthwaite df of the model-based covariance do
    not apply; ``ddf="satterthwaite"`` then gives t(m - 1) with m runners (Cameron & Miller
    2015, J Hum Resour 50:317, section VI; ``extra["ddf"] = "clusters-1"``), ``"wald"`` z.
    """
    ddf, kind = check_inference_options(ddf, vcov)
    p = len(beta)
    m = len(design.starts)
    extra: dict = {"vcov_model": np.asarray(vcov_model).tolist()}
    notes: list[str] = []
    if kind == "model":
        V = np.asarray(vcov_model)
        se_text = "model-based (GLS) standard errors"
    else:
        V = cluster_robust_vcov(design, beta=beta, G=G, sigma2=sigma2, vcov_model=vcov_model,
                                kind=kind)
        se_text = (f"cluster-robust ({kind}, by runner, {m} clusters) standard errors"
                   + (", corrected by m/(m-1)" if kind == "CR1" else ""))
    if ddf == "wald":
        df = np.full(p, math.inf)
        used, df_text = "wald", "Wald z tests and intervals"
    elif kind != "model":
        df = np.full(p, float(m - 1))
        used, df_text = "clusters-1", f"t({m - 1}) tests and intervals (runners - 1)"
    else:
        if deviance is None or vcov_beta is None:
            if theta is None:
                theta = theta_from_covariance(G, sigma2)
            deviance, vcov_beta = lmm_deviance_functions(design, reml=reml, beta=beta)
            varpar = np.r_[np.asarray(theta, dtype=float), math.sqrt(sigma2)]
        # differentiate in theta per RMS unit of its random-effect column (as the optimiser
        # works, lmm._z_scale): the df are invariant to that reparametrisation, but the
        # difference steps are not, and in a column's raw units (a slope per km) they were
        # too coarse near 0 (the df moved by 1.4 % between km and km / 100)
        s = _varpar_scale(design, len(varpar))
        floor = np.zeros(len(varpar))
        floor[:design.Z.shape[1] * (design.Z.shape[1] + 1) // 2] = THETA_STEP_FLOOR
        info = satterthwaite_info(np.asarray(varpar) * s,
                                  deviance=lambda v: deviance(v / s),
                                  vcov_beta=lambda v: vcov_beta(v / s), step_floor=floor)
        df = np.array([satterthwaite_df(info, np.eye(p)[j]) for j in range(p)])
        extra["satterthwaite"] = info.to_dict()
        notes.extend(info.notes)
        used = "satterthwaite"
        df_text = "t tests and intervals with Satterthwaite df (as lmerTest)"
    return LmmInference(vcov=V, df=df, ddf=used, vcov_type=kind,
                        description=f"{df_text}; {se_text}", extra=extra, notes=notes)
