# lme4 reference log-likelihoods for the unit-invariance panels (tests/test_lmm_engine.py::
# test_the_verdict_does_not_depend_on_units): the best of three optimizers, convergence checks
# off, because lme4 itself stops short on the small-x panel (it warns "failed to converge").
# Usage from the project root: Rscript tests/reference/lme4_units.R
suppressMessages(library(lme4))
best <- function(f, d, reml) {
  ll <- sapply(c("bobyqa", "Nelder_Mead", "nloptwrap"), function(o) {
    m <- suppressWarnings(lmer(f, data = d, REML = reml, control = lmerControl(optimizer = o,
         check.conv.grad = "ignore", check.conv.hess = "ignore", check.conv.singular = "ignore")))
    as.numeric(logLik(m)) })
  max(ll) }
d <- read.csv("tests/reference/lmm_units_small_x.csv"); d$sex <- factor(d$sex)
f <- pain ~ x + x2 + x3 + age + sex + (1 + x | runner_id)
cat(sprintf("p056 REML %.10f\np056 ML %.10f\n", best(f, d, TRUE), best(f, d, FALSE)))
k <- read.csv("tests/reference/lmm_units_km.csv")
g <- pain ~ km + x + (1 + km | runner_id)
cat(sprintf("k0 REML %.10f\nk0 ML %.10f\n", best(g, k, TRUE), best(g, k, FALSE)))
