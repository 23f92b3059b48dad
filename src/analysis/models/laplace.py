"""Laplace (nAGQ = 1) maximum likelihood for the logit binomial mixed model, as lme4's glmer.

The deviance is lme4's Laplace deviance (Bates et al. 2015, JSS 67(1); lme4 ``glmResp::Laplace``
= ``ldL2 + sqrL + aic()``) at the conditional mode u-hat of the spherical random effects:

    D(theta, beta) = sum_j -2 log p(y_j | eta_j) + ||u-hat||^2 + log|Lambda' Z' W Z Lambda + I|

with ``eta = X beta + Z Lambda u``, ``W = diag(mu (1 - mu))`` at u-hat (the logit link is
canonical, so the working and the observed weights agree) and Lambda lme4's relative Cholesky
factor (theta = its lower triangle, column by column). Everything separates by runner: u-hat
is found by a vectorised per-runner Newton iteration with step halving (PIRLS with beta fixed,
lme4's stage 2), and the analytic gradient of D over (theta, beta) is a sum of per-runner terms
(implicit differentiation of u-hat; ``dW/deta = mu (1 - mu) (1 - 2 mu)``). The per-runner
gradients are the score contributions a cluster-robust sandwich needs.

The fixed-effect covariance is lme4's ``vcov.merMod(use.hessian = TRUE)``: the beta block of
``2 H^-1``, H the Hessian of D over (theta, beta) at the optimum; here H is the central
difference of the analytic gradient (lme4 differences the deviance itself, ``deriv12``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from analysis.models.design import Design
from analysis.models.result import SINGULAR_TOL

#: Conditional-mode Newton iteration stops when no runner's step exceeds this (u is N(0, 1)
#: scaled, so 1e-10 leaves the deviance exact to ~1e-18 per runner by quadratic convergence).
PIRLS_TOL = 1e-10
PIRLS_MAXIT = 100
#: Newton steps on the conditional modes larger than this (in any runner) are checked for an
#: increase of the penalised log-likelihood and halved where needed.
PIRLS_SAFE_STEP = 0.1
#: Step halvings per Newton step before a runner's step is abandoned.
PIRLS_MAX_HALVINGS = 40
#: Central-difference step of the analytic gradient for the Hessian, in the optimiser's
#: coordinates (theta ~ 1, beta on unit-RMS columns); lme4's ``deriv12`` uses 1e-4 too.
HESSIAN_STEP = 1e-4
#: Converged only when the Newton decrement g' H^-1 g / 2 (the deviance still to gain by one
#: Newton step) is below this: the log-likelihood is then within 1e-7 of the optimum.
NEWTON_DECREMENT_TOL = 2e-7
#: Newton refinements after the quasi-Newton optimiser (each costs one Hessian).
MAX_NEWTON_STEPS = 6
#: Step halvings of a Newton refinement before it is abandoned.
MAX_LINE_HALVINGS = 20
#: Logistic-regression iterations for the fixed-effect start (no random effects).
START_IRLS_ITERATIONS = 25


def _lower_index(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of lme4's theta: the lower triangle of Lambda, column by column."""
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))
    return rows[order], cols[order]


#: Linear predictors are clipped to +/- this before exponentiating (exp(700) ~ 1e304 is finite;
#: beyond it mu is 0 or 1 to double precision anyway).
ETA_CLIP = 700.0


def _logistic(eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``exp(-eta)``, ``mu = expit(eta)`` and ``w = mu (1 - mu)`` from one exponential.

    ``w = e mu^2`` with ``e = exp(-eta)`` keeps full relative precision as mu -> 1 (where
    ``1 - mu`` would cancel), and ``1 / (1 + e)`` keeps it as mu -> 0.
    """
    e = np.exp(-np.clip(eta, -ETA_CLIP, ETA_CLIP))
    mu = 1.0 / (1.0 + e)
    w = e * mu * mu
    return e, mu, w


def _log_bernoulli(eta: np.ndarray, y: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Per-row ``log p(y | eta) = y eta - log(1 + exp(eta))``, given ``e = exp(-eta)``.

    Written ``-log1p(e) - (1 - y) eta``: one log1p instead of a logaddexp (4x cheaper); eta
    is clipped as in :func:`_logistic`, so both describe the same probability (R's
    ``binomial()$linkinv``, which glmer uses, clips far harder, at |eta| = 30).
    """
    return -np.log1p(e) - (1.0 - y) * np.clip(eta, -ETA_CLIP, ETA_CLIP)


@dataclass
class LaplaceFit:
    """Raw estimates of one Laplace fit (original units of the design's X columns)."""

    theta: np.ndarray  # lme4's theta (lower triangle by column; the diagonal only for ||)
    beta: np.ndarray
    G: np.ndarray  # random-effect covariance, Lambda Lambda'
    deviance: float
    vcov: np.ndarray  # beta block of 2 H^-1 (lme4's vcov with use.hessian)
    vcov_robust: np.ndarray  # cluster-robust (CR1) sandwich, beta block
    converged: bool
    singular: bool
    iterations: int
    decrement: float
    notes: list[str] = field(default_factory=list)
    #: conditional linear predictor X beta + Z Lambda u-hat at the optimum (one per row)
    eta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: smallest / largest eigenvalue of the Hessian that was inverted (optimiser coordinates:
    #: theta and beta on unit-RMS columns; NaN when it was not positive definite)
    hessian_ratio: float = math.nan
    #: unit eigenvector of that smallest eigenvalue over the kept (theta, beta) entries, and
    #: which entries were kept (a singular fit drops its degenerate theta columns)
    weak_direction: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hessian_kept: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def _halved_step(u: np.ndarray, step: np.ndarray, eta: np.ndarray, *,
                 linear: Callable[[np.ndarray], np.ndarray],
                 objective: Callable[[np.ndarray, np.ndarray], np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A Newton step of the conditional modes, halved per runner until the runner's
    penalised log-likelihood ``objective(eta, u)`` does not decrease; a runner with no
    improving step keeps its modes -> (modes, linear predictor). ``linear(u)`` is the linear
    predictor at modes ``u``, ``eta`` its value at the current ``u``."""
    step = step.copy()
    f = objective(eta, u)
    cand = u + step
    eta_c = linear(cand)
    bad = objective(eta_c, cand) < f - 1e-12 * np.abs(f)
    for _ in range(PIRLS_MAX_HALVINGS):
        if not bad.any():
            break
        step[bad] *= 0.5
        cand = u + step
        eta_c = linear(cand)
        bad = objective(eta_c, cand) < f - 1e-12 * np.abs(f)
    if bad.any():
        cand[bad] = u[bad]
        eta_c = linear(cand)
    return cand, eta_c


class LaplaceProblem:
    """Laplace deviance, its analytic gradient and per-runner scores for one design.

    Parameters
    ----------
    design : the GLMM design (0/1 ``y``, rows sorted by runner).
    correlated : correlated random effects (lme4's ``(1 + x | g)``, default) or independent
        ones (``(1 + x || g)``: theta holds the diagonal of Lambda only).
    closed_form : use the scalar closed forms of a random intercept (q = 1, Z = 1): per-runner
        sums instead of q x q blocks (default; False runs the general code, for tests).
    """

    def __init__(self, design: Design, *, correlated: bool = True,
                 closed_form: bool = True) -> None:
        self.y = design.y
        scale = np.sqrt((design.X**2).mean(axis=0))
        scale[scale == 0] = 1.0
        self.x_scale = scale
        self.X = design.X / scale
        self.Z = design.Z
        self.starts = design.starts
        self.codes = design.groups
        self.m = len(design.starts)
        self.q = design.Z.shape[1]
        self.p = design.X.shape[1]
        rows, cols = _lower_index(self.q)
        free = np.ones(len(rows), bool) if correlated else rows == cols
        self.theta_rows, self.theta_cols = rows[free], cols[free]
        self.free = free
        self.ntheta = int(free.sum())
        self.k = self.ntheta + self.p
        self._u = np.zeros((self.m, self.q))  # warm start of the conditional modes
        self.XT = np.ascontiguousarray(self.X.T)  # p x n, for the row-wise products below
        #: random intercept only: Lambda = theta and Z = 1, so every q x q block is a scalar
        self.intercept_only = closed_form and self.q == 1 and bool(np.all(self.Z == 1.0))

    # --- parameters -----------------------------------------------------------------------

    def lam(self, theta: np.ndarray) -> np.ndarray:
        """Lambda from the free theta entries."""
        lam = np.zeros((self.q, self.q))
        lam[self.theta_rows, self.theta_cols] = theta
        return lam

    def split(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return phi[: self.ntheta], phi[self.ntheta:]

    def normalise(self, phi: np.ndarray) -> np.ndarray:
        """Flip the columns of Lambda with a negative diagonal (the deviance is invariant:
        u's sign flips with them), as lme4 bounds theta's diagonal at 0."""
        theta, beta = self.split(phi)
        lam = self.lam(theta)
        signs = np.where(np.diag(lam) < 0, -1.0, 1.0)
        lam = lam * signs
        self._u = self._u * signs
        return np.concatenate([lam[self.theta_rows, self.theta_cols], beta])

    def start(self) -> np.ndarray:
        """lme4's theta start (identity) and the fixed effects of a plain logistic fit."""
        beta = np.zeros(self.p)
        XT, y = self.XT, self.y
        for _ in range(START_IRLS_ITERATIONS):
            _, mu, w = _logistic(self.linear(beta))
            gram = np.einsum("pn,qn,n->pq", XT, XT, w)
            step = np.linalg.solve(gram, np.einsum("pn,n->p", XT, y - mu))
            beta = beta + step
            if np.max(np.abs(step)) < 1e-10:
                break
        theta = (self.theta_rows == self.theta_cols).astype(float)
        return np.concatenate([theta, beta])

    # --- conditional modes ----------------------------------------------------------------

    def linear(self, beta: np.ndarray) -> np.ndarray:
        """``X beta`` (n rows). einsum, not BLAS: a threaded gemv for p ~ 5 columns costs up
        to 30x more when the other cores are busy (measured 8 ms vs 0.26 ms at 160,000 rows
        on a shared 2-core machine)."""
        return np.einsum("pn,p->n", self.XT, beta)

    def _rowsum(self, v: np.ndarray) -> np.ndarray:
        return np.add.reduceat(v, self.starts, axis=0)

    def modes(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Conditional modes u-hat (m x q), eta and per-row log p(y | eta) at (theta, beta).

        Newton's method on each runner's penalised log-likelihood (strictly concave), with
        step halving per runner; warm-started from the last modes.
        """
        if self.intercept_only:
            u, eta, logp, _, _ = self._modes_intercept(phi)
            return u[:, None], eta, logp
        theta, beta = self.split(phi)
        lam = self.lam(theta)
        ZL = self.Z @ lam  # rows z_j' Lambda
        off = self.linear(beta)
        y, codes = self.y, self.codes
        u = self._u.copy()

        def linear(u: np.ndarray) -> np.ndarray:
            return off + np.einsum("nq,nq->n", ZL, u[codes])

        def objective(eta: np.ndarray, u: np.ndarray) -> np.ndarray:
            logp = _log_bernoulli(eta, y, np.exp(-np.clip(eta, -ETA_CLIP, ETA_CLIP)))
            return self._rowsum(logp) - 0.5 * np.einsum("mq,mq->m", u, u)

        eta = linear(u)
        eye = np.eye(self.q)
        for _ in range(PIRLS_MAXIT):
            _, mu, w = _logistic(eta)
            g = self._rowsum(ZL * (y - mu)[:, None]) - u
            H = self._rowsum(ZL[:, :, None] * ZL[:, None, :] * w[:, None, None]) + eye
            step = np.linalg.solve(H, g[:, :, None])[:, :, 0]
            size = float(np.max(np.abs(step)))
            # Newton steps below the safe size on this strictly concave problem are not
            # checked, to save an evaluation; larger ones can overshoot
            u, eta = (_halved_step(u, step, eta, linear=linear, objective=objective)
                      if size > PIRLS_SAFE_STEP else (u + step, linear(u + step)))
            if size < PIRLS_TOL:
                break
        logp = _log_bernoulli(eta, y, np.exp(-np.clip(eta, -ETA_CLIP, ETA_CLIP)))
        self._u = u
        return u, eta, logp

    def _modes_intercept(self, phi: np.ndarray) -> tuple[np.ndarray, ...]:
        """:meth:`modes` for a random intercept: the same Newton iteration with scalar blocks.

        Runner i's gradient and Hessian in u_i are ``lambda sum_j (y_j - mu_j) - u_i`` and
        ``-(lambda^2 sum_j w_j + 1)``. Returns u-hat (m), eta, log p(y | eta), and mu and w
        at that eta (the gradient's, so they are not recomputed).
        """
        theta, beta = self.split(phi)
        lam = float(theta[0])
        off = self.linear(beta)
        y, codes, rowsum = self.y, self.codes, self._rowsum
        u = self._u[:, 0].copy()

        def objective(eta: np.ndarray, u: np.ndarray) -> np.ndarray:
            e = np.exp(-np.clip(eta, -ETA_CLIP, ETA_CLIP))
            return rowsum(_log_bernoulli(eta, y, e)) - 0.5 * u * u

        def linear(c: np.ndarray) -> np.ndarray:
            return off + lam * c[codes]

        eta = linear(u)
        e, mu, w = _logistic(eta)
        for _ in range(PIRLS_MAXIT):
            step = (lam * rowsum(y - mu) - u) / (lam * lam * rowsum(w) + 1.0)
            size = float(np.max(np.abs(step)))
            u, eta = (_halved_step(u, step, eta, linear=linear, objective=objective)
                      if size > PIRLS_SAFE_STEP else (u + step, linear(u + step)))
            e, mu, w = _logistic(eta)  # at the new modes: the next step's, or the result's
            if size < PIRLS_TOL:
                break
        self._u = u[:, None]
        return u, eta, _log_bernoulli(eta, y, e), mu, w

    # --- deviance and gradient ------------------------------------------------------------

    def deviance(self, phi: np.ndarray) -> float:
        """lme4's Laplace deviance (-2 x the Laplace log-likelihood)."""
        return self.evaluate(phi, gradient=False)[0]

    def evaluate(self, phi: np.ndarray, *, gradient: bool = True,
                 per_runner: bool = False) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """Deviance, its gradient over phi = (theta, beta-scaled), and per-runner gradients.

        The per-runner gradients (m x k) sum to the gradient; each is -2 x the runner's score
        of the Laplace log-likelihood.
        """
        if self.intercept_only:
            return self._evaluate_intercept(phi, gradient=gradient, per_runner=per_runner)
        lam = self.lam(self.split(phi)[0])
        u, eta, logp = self.modes(phi)
        Z, X, y, q = self.Z, self.X, self.y, self.q
        _, mu, w = _logistic(eta)
        A = self._rowsum(Z[:, :, None] * Z[:, None, :] * w[:, None, None])  # Z_i'W Z_i
        M = np.einsum("ji,mjk,kl->mil", lam, A, lam) + np.eye(q)
        logdet = np.linalg.slogdet(M)[1]
        dev = float(-2.0 * logp.sum() + np.einsum("mq,mq->", u, u) + logdet.sum())
        if not gradient:
            return dev, None, None
        C = np.linalg.inv(M)
        ZL = Z @ lam
        codes = self.codes
        h = np.einsum("nq,nqr,nr->n", ZL, C[codes], ZL)  # z_j' Lambda C_i Lambda' z_j
        a = w * (1 - 2 * mu) * h  # dW/deta times the leverage-like h_j
        r = y - mu
        Xr = self._rowsum(X * r[:, None])  # m x p
        Zr = self._rowsum(Z * r[:, None])  # m x q
        sx = self._rowsum(X * a[:, None])  # m x p
        sz = self._rowsum(Z * a[:, None])  # m x q
        B = self._rowsum(Z[:, :, None] * X[:, None, :] * w[:, None, None])  # m x q x p
        t = np.einsum("mij,kj,mk->mi", C, lam, sz)  # C_i Lambda' s_z,i   (m x q)
        # beta: envelope term -2 X'r plus d log|M| through W(eta(beta, u-hat(beta)))
        g_beta = -2.0 * Xr + sx - np.einsum("mqp,qr,mr->mp", B, lam, t)
        # theta_k = Lambda[r, c]
        ALC = np.einsum("mij,jk,mkl->mil", A, lam, C)  # A_i Lambda C_i
        ALt = np.einsum("mij,jk,mk->mi", A, lam, t)  # A_i Lambda t_i
        rr, cc = self.theta_rows, self.theta_cols
        g_theta = (-2.0 * Zr[:, rr] * u[:, cc] + 2.0 * ALC[:, rr, cc] + sz[:, rr] * u[:, cc]
                   + t[:, cc] * Zr[:, rr] - ALt[:, rr] * u[:, cc])
        per = np.concatenate([g_theta, g_beta], axis=1)
        return dev, per.sum(axis=0), per if per_runner else None

    def _evaluate_intercept(self, phi: np.ndarray, *, gradient: bool, per_runner: bool
                            ) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """:meth:`evaluate` for a random intercept (lambda = theta, Z = 1), term by term.

        With ``A_i = sum_j w_j``, ``M_i = lambda^2 A_i + 1`` and ``C_i = 1 / M_i`` the general
        formulas become per-runner scalars; the beta gradient is one matvec
        ``X' (-2 r + a - lambda w t_i)`` over rows, no per-runner p-vectors unless asked for.
        """
        lam = float(phi[0])
        u, _, logp, mu, w = self._modes_intercept(phi)
        y, rowsum, codes = self.y, self._rowsum, self.codes
        A = rowsum(w)
        M = lam * lam * A + 1.0
        dev = float(-2.0 * logp.sum() + u @ u + np.log(M).sum())
        if not gradient:
            return dev, None, None
        C = 1.0 / M
        r = y - mu
        wd = w * (1.0 - 2.0 * mu)  # dW/deta
        Zr = rowsum(r)
        sz = lam * lam * C * rowsum(wd)  # sum_j a_j, a_j = wd_j lambda^2 C_i
        t = C * lam * sz
        # per row: -2 r_j + a_j - lambda w_j t_i
        v = -2.0 * r + (lam * lam * C)[codes] * wd - (lam * t)[codes] * w
        g_theta = (-2.0 * Zr * u + 2.0 * A * lam * C + sz * u + t * Zr - A * lam * t * u)
        if per_runner:
            per = np.column_stack([g_theta, rowsum(self.X * v[:, None])])
            return dev, per.sum(axis=0), per
        return dev, np.r_[g_theta.sum(), np.dot(self.XT, v)], None

    def hessian(self, phi: np.ndarray, *, step: float = HESSIAN_STEP) -> np.ndarray:
        """Central difference of the analytic gradient, symmetrised."""
        k = len(phi)
        H = np.empty((k, k))
        u0 = self._u.copy()
        for j in range(k):
            e = np.zeros(k)
            e[j] = step
            self._u = u0.copy()
            gp = self.evaluate(phi + e)[1]
            self._u = u0.copy()
            gm = self.evaluate(phi - e)[1]
            H[:, j] = (gp - gm) / (2 * step)
        self._u = u0
        return 0.5 * (H + H.T)


def _inverse_pd(H: np.ndarray) -> np.ndarray | None:
    """Inverse of a symmetric positive-definite matrix, None when it is not."""
    try:
        L = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return None
    Linv = np.linalg.inv(L)
    return Linv.T @ Linv


def fit_laplace(design: Design, *, correlated: bool = True,
                maxiter: int | None = None) -> LaplaceFit:
    """Fit the logit GLMM by minimising lme4's Laplace deviance over (theta, beta).

    L-BFGS on the analytic gradient from lme4's start, then Newton steps on the numerical
    Hessian until the Newton decrement is below :data:`NEWTON_DECREMENT_TOL`. Theta is left
    unconstrained (the deviance is even in each column of Lambda) and its columns are flipped
    to a non-negative diagonal at the end. ``maxiter`` caps the quasi-Newton iterations
    (for tests of the non-convergence path).
    """
    prob = LaplaceProblem(design, correlated=correlated)
    notes: list[str] = []

    def fun(phi: np.ndarray) -> tuple[float, np.ndarray]:
        dev, grad, _ = prob.evaluate(phi)
        if not math.isfinite(dev):
            return 1e300, np.zeros_like(phi)
        return dev, grad

    phi = prob.start()
    res = minimize(fun, phi, jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter or 1000, "ftol": 1e-15, "gtol": 1e-9,
                            "maxcor": 20})
    x = np.asarray(res.x, float)
    phi = prob.normalise(x)
    iterations = int(res.nit)
    if not res.success:  # the Newton stage below decides convergence
        notes.append(f"L-BFGS stopped ({res.message}); Newton refinement followed")
    # Newton refinement on the numerical Hessian; its last Hessian is the one inverted below.
    # The per-runner gradients are kept from the last evaluation at phi (the sandwich's).
    dev, grad, per = prob.evaluate(phi, per_runner=True)
    decrement = math.inf
    H = prob.hessian(phi)
    for _ in range(MAX_NEWTON_STEPS if maxiter is None else min(maxiter, MAX_NEWTON_STEPS)):
        Hinv = _inverse_pd(H)
        if Hinv is None:
            break
        decrement = float(0.5 * grad @ Hinv @ grad)
        if decrement < NEWTON_DECREMENT_TOL:
            break
        direction = -Hinv @ grad
        t = 1.0
        for _ in range(MAX_LINE_HALVINGS):
            cand = phi + t * direction
            dev_c = prob.deviance(cand)
            if dev_c < dev:
                break
            t *= 0.5
        else:
            break
        phi = prob.normalise(cand)
        dev, grad, per = prob.evaluate(phi, per_runner=True)
        iterations += 1
        H = prob.hessian(phi)
    theta, beta_s = prob.split(phi)
    lam = prob.lam(theta)
    singular = bool((np.abs(np.diag(lam)) < SINGULAR_TOL).any())
    grad = np.asarray(grad)
    per = np.asarray(per)

    # fixed-effect covariance: beta block of 2 H^-1; at a boundary (singular) the theta
    # entries of the degenerate columns are dropped, where H is flat
    keep = np.ones(prob.k, bool)
    if singular:
        dead_cols = np.flatnonzero(np.abs(np.diag(lam)) < SINGULAR_TOL)
        keep[: prob.ntheta] = ~np.isin(prob.theta_cols, dead_cols)
    Hk = H[np.ix_(keep, keep)]
    Hinv = _inverse_pd(Hk)
    hess_ok = Hinv is not None
    hessian_ratio, weak = math.nan, np.zeros(int(keep.sum()))
    if hess_ok and np.all(np.isfinite(Hk)):
        evals, evecs = np.linalg.eigh(Hk)
        hessian_ratio, weak = float(evals[0] / evals[-1]), evecs[:, 0]
    kept = keep.copy()
    if Hinv is None:  # flat or indefinite in theta: condition on theta (lme4's RX fallback)
        keep = np.r_[np.zeros(prob.ntheta, bool), np.ones(prob.p, bool)]
        Hinv = np.linalg.pinv(H[np.ix_(keep, keep)])
        notes.append("the Hessian of the deviance is not positive definite; fixed-effect SEs "
                     "are conditional on the random-effect parameters")
    else:
        decrement = float(0.5 * grad[keep] @ Hinv @ grad[keep])
    nb = prob.p
    vcov_s = 2.0 * Hinv[-nb:, -nb:]
    # cluster-robust: H^-1 (sum_i g_i g_i') H^-1 on the deviance scale, CR1 factor m/(m-1)
    gk = per[:, keep]
    meat = gk.T @ gk
    robust_s = (Hinv @ meat @ Hinv)[-nb:, -nb:] * prob.m / (prob.m - 1)
    sc = np.outer(prob.x_scale, prob.x_scale)
    converged = hess_ok and decrement < NEWTON_DECREMENT_TOL
    if not converged:
        notes.append(f"not converged: Newton decrement {decrement:.2e} (deviance units) above "
                     f"{NEWTON_DECREMENT_TOL:g} at the final point" if hess_ok else
                     "not converged: the Hessian of the deviance is not positive definite")
    eta = prob.modes(phi)[1]  # the modes at phi are warm: one Newton check
    return LaplaceFit(theta=theta, beta=beta_s / prob.x_scale, G=lam @ lam.T,
                      deviance=dev, vcov=vcov_s / sc, vcov_robust=robust_s / sc,
                      converged=converged, singular=singular, iterations=iterations,
                      decrement=decrement, notes=notes, eta=eta, hessian_ratio=hessian_ratio,
                      weak_direction=weak, hessian_kept=kept)
