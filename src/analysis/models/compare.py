"""Comparison of nested mixed models."""

from __future__ import annotations

from typing import Any

from scipy import special  # chdtrc = stats.chi2.sf, without importing scipy.stats

from analysis.errors import ModelSpecError
from analysis.models.result import ModelResult


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
    # a linear term is nested in a natural spline of the same exposure (the spline space
    # holds the straight lines): ``x`` counts as present when ``ns(x, df)1..`` are
    r_terms -= {t for t in r_terms if any(str(f).startswith(f"ns({t}, ") for f in f_terms)}
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
    p_value = float(special.chdtrc(df, stat))
    tests_variance = f_slopes != r_slopes
    p_boundary = None
    caveat = "chi-square reference distribution"
    if tests_variance:
        lower = special.chdtrc(df - 1, stat) if df > 1 else float(stat <= 0)
        p_boundary = float(0.5 * lower + 0.5 * p_value)
        caveat = ("the null puts a variance on the boundary (zero): the chi-square p-value is "
                  "conservative; p_value_boundary uses the 50:50 chi-square mixture "
                  f"of df {df - 1} and {df}")
    return {"statistic": stat, "df": df, "p_value": p_value, "p_value_boundary": p_boundary,
            "caveat": caveat}


