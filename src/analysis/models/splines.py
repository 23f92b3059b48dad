"""Natural cubic spline bases with R's ``splines::ns`` knots and columns (design columns).

The basis is the one ``splines::ns(x, df)`` returns (R Core Team, package ``splines``):
interior knots at type-7 quantiles of ``x`` at ``seq(0, 1, length = df + 1)`` without its
ends (``intercept = FALSE``), boundary knots at ``range(x)``, the cubic B-spline basis on
those knots, and the projection onto the null space of the second derivatives at the
boundary knots by a Householder QR (LINPACK ``dqrdc2`` as R's ``qr`` uses it, written here
from its published algorithm). The columns match R's to 1e-10
(``tests/test_splines.py::test_columns_match_committed_r``), not only their span, so a
spline coefficient means what it means in an R fit. Outside the boundary knots the basis
is extended linearly, as ``predict(ns(x, df), newx)`` does.

This module makes columns only: :func:`analysis.models.build_design` turns a spline term
into them, and any fitter that takes a numeric design (the Cox model too) can use
:meth:`NaturalSpline.basis` directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.errors import ModelSpecError

#: Cubic splines: B-spline order 4 (degree 3).
SPLINE_ORDER = 4
#: Smallest number of basis columns (df = 1 is a straight line between the boundary knots).
MIN_SPLINE_DF = 1


def spline_term(column: str, df: int) -> str:
    """The name of a spline term as R prints it: ``ns(acwr_rolling, 3)``."""
    return f"ns({column}, {df})"


def spline_column_names(column: str, df: int) -> list[str]:
    """Basis column names as R's model matrix has them: ``ns(x, 3)1`` ... ``ns(x, 3)3``."""
    return [f"{spline_term(column, df)}{j}" for j in range(1, df + 1)]


@dataclass(frozen=True)
class NaturalSpline:
    """A natural cubic spline basis with fixed knots (the ``ns`` object of R).

    Attributes
    ----------
    knots : interior knots, in the unit of ``x``.
    boundary : the two boundary knots (``range(x)`` of the data the basis was made on).
    intercept : R's ``intercept = TRUE``: the basis spans the constants too (one more
        column; used for the lag dimension of a cross-basis, as ``dlnm`` does).
    """

    knots: tuple[float, ...]
    boundary: tuple[float, float]
    intercept: bool = False

    @property
    def df(self) -> int:
        """Number of basis columns."""
        return len(self.knots) + 1 + int(self.intercept)

    @property
    def _all_knots(self) -> np.ndarray:
        lo, hi = self.boundary
        return np.sort(np.r_[[lo] * SPLINE_ORDER, self.knots, [hi] * SPLINE_ORDER])

    def _bsplines(self, x: np.ndarray, *, deriv: int = 0) -> np.ndarray:
        """Every cubic B-spline (or its derivative) at ``x`` inside the boundary knots, the
        first one included (R's ``splineDesign``)."""
        return bspline_design(self._all_knots, np.asarray(x, dtype=float), deriv=deriv)

    def basis(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """The basis at ``x`` (n x df), linear beyond the boundary knots; NaN rows for NaN x.

        Parameters
        ----------
        x : values in the unit the basis was made on (e.g. an acute:chronic ratio).

        Returns
        -------
        ``predict(ns(x0, df), x)`` of R: natural cubic spline columns without intercept.
        """
        x = np.asarray(x, dtype=float)
        lo, hi = self.boundary
        raw = np.full((x.size, len(self._all_knots) - SPLINE_ORDER), np.nan)
        known = np.isfinite(x)
        inside = known & (x >= lo) & (x <= hi)
        raw[inside] = self._bsplines(x[inside])
        for pivot, side in ((lo, known & (x < lo)), (hi, known & (x > hi))):
            if side.any():
                value = self._bsplines(np.array([pivot]))[0]
                slope = self._bsplines(np.array([pivot]), deriv=1)[0]
                raw[side] = value + np.outer(x[side] - pivot, slope)
        const = self._bsplines(np.array([lo, hi]), deriv=2)
        # intercept = FALSE: the first B-spline is left out; then the two boundary
        # constraints are projected away
        first = 0 if self.intercept else 1
        qty = _householder_qty(const[:, first:].T, raw[:, first:].T)
        return qty[2:].T

    def __call__(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        return self.basis(x)


def bspline_design(knots: np.ndarray, x: np.ndarray, *, order: int = SPLINE_ORDER,
                   deriv: int = 0) -> np.ndarray:
    """B-splines of ``order`` on ``knots`` (or their ``deriv``-th derivative) at ``x``
    (n x (len(knots) - order)), by the Cox-de Boor recursion (de Boor 1978, A Practical Guide
    to Splines, ch. X); 0/0 terms of repeated knots are 0, and ``x`` equal to the last knot
    falls in the last non-empty interval, as R's ``splineDesign`` does. ``x`` must lie
    within the knots.
    """
    t = np.asarray(knots, dtype=float)
    x = np.asarray(x, dtype=float)
    # order 1: indicator of the knot interval holding x (right end closed)
    nonempty = np.flatnonzero(t[1:] > t[:-1])
    where = np.searchsorted(t, x, side="right") - 1
    where = np.where(x >= t[-1], nonempty[-1], where)
    basis = (where[:, None] == np.arange(len(t) - 1)[None, :]).astype(float)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        safe = np.where(den > 0, den, 1.0)
        return np.where(den > 0, num / safe, 0.0)

    for k in range(2, order + 1):
        i = np.arange(len(t) - k)
        left_den = t[i + k - 1] - t[i]
        right_den = t[i + k] - t[i + 1]
        if k <= order - deriv:
            w_left = ratio(x[:, None] - t[i][None, :], left_den[None, :])
            w_right = ratio(t[i + k][None, :] - x[:, None], right_den[None, :])
        else:  # differentiate: B'_{i,k} = (k-1) (B_{i,k-1}/dl - B_{i+1,k-1}/dr)
            w_left = np.broadcast_to(ratio(np.full(i.size, k - 1.0), left_den), basis[:, i].shape)
            w_right = -np.broadcast_to(ratio(np.full(i.size, k - 1.0), right_den),
                                       basis[:, i].shape)
        basis = w_left * basis[:, i] + w_right * basis[:, i + 1]
    return basis


def natural_spline(x: Sequence[float] | np.ndarray, df: int, *,
                   intercept: bool = False) -> NaturalSpline:
    """The basis ``splines::ns(x, df, intercept)`` would make: knots from the known ``x``.

    Parameters
    ----------
    x : the exposure over the modelling rows (NaN values are ignored, as ``ns`` does).
    df : number of basis columns (interior knots: ``df - 1 - intercept``).
    intercept : R's ``intercept`` (default FALSE, as in a model term).

    Raises
    ------
    ModelSpecError
        ``df`` below 1, or fewer distinct values of ``x`` than the basis needs.
    """
    low = MIN_SPLINE_DF + int(intercept)
    if int(df) != df or df < low:
        raise ModelSpecError(f"a natural spline needs df >= {low} (a whole number), "
                             f"got {df!r}")
    df = int(df)
    values = np.asarray(x, dtype=float)
    values = values[np.isfinite(values)]
    if np.unique(values).size < df + 1:
        raise ModelSpecError(f"a natural spline with df={df} needs at least {df + 1} distinct "
                             f"values; there are {np.unique(values).size}")
    probs = np.linspace(0.0, 1.0, df + 1 - int(intercept))[1:-1]
    knots = np.quantile(values, probs) if probs.size else np.array([])  # type 7
    lo, hi = values.min(), values.max()
    if ((knots <= lo) | (knots >= hi)).any():
        # R's ns() accepts such a knot, but the basis then spans the constants (collinear
        # with the intercept): too many values are tied at the minimum or maximum
        tied = max(float(np.mean(values == lo)), float(np.mean(values == hi)))
        raise ModelSpecError(f"a natural spline with df={df} puts a knot on a boundary "
                             f"value ({lo:g} or {hi:g}): {tied:.0%} of the values are tied "
                             "there; use a smaller df (or give the knots)")
    return NaturalSpline(knots=tuple(float(k) for k in knots),
                         boundary=(float(values.min()), float(values.max())),
                         intercept=intercept)


def _householder_qty(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``Q' b`` for the Householder QR ``a = QR`` (n x k, full column rank), computed as
    LINPACK ``dqrdc2`` / ``dqrsl`` do (R's ``qr`` and ``qr.qty``): at step l the reflector
    maps column l (rows l..n) onto ``-sign(a_ll) ||a_l|| e_l``."""
    a = np.array(a, dtype=float)
    b = np.array(b, dtype=float)
    n, k = a.shape
    for col in range(min(k, n - 1)):
        v = a[col:, col].copy()
        norm = np.linalg.norm(v)
        if norm == 0:
            continue
        if v[0] != 0:
            norm = np.copysign(norm, v[0])
        v /= norm
        v[0] += 1.0
        # H = I - v v' / v[0]
        a[col:, col + 1:] -= np.outer(v, v @ a[col:, col + 1:]) / v[0]
        b[col:] -= np.outer(v, v @ b[col:]) / v[0]
    return b


__all__ = [
    "MIN_SPLINE_DF",
    "SPLINE_ORDER",
    "NaturalSpline",
    "natural_spline",
    "spline_column_names",
    "spline_term",
]
