# lme4 fits of many random-slope panels, for the LMM optimiser checks (issue 10, item 1).
#
# Usage:  Rscript tests/reference/lme4_optimum.R IN_CSV OUT_CSV
# IN_CSV holds many panels stacked, with a `panel` column and runner_id, pain, mileage_jump,
# shoe_km, rest_days_7d; every panel is fitted by REML with
#   pain ~ mileage_jump + shoe_km + rest_days_7d + (1 + mileage_jump | runner_id)
# and nloptwrap at tight tolerances (as tests/reference/lme4_reference.R), so that the
# reference sits at the optimum. OUT_CSV: one row per panel and fixed effect (panel, term,
# estimate, std_error) plus the panel's loglik, theta (theta1..3), singular and seconds.
# Used by tests/test_lmm_engine.py (committed fixture, live variant) and
# bench/bench_lmm_optimum.py (one R process for all panels).

suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d_all <- read.csv(args[[1]], stringsAsFactors = FALSE)
lctrl <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 1e-12, ftol_rel = 1e-12,
                                    xtol_abs = 1e-10, xtol_rel = 1e-10, maxeval = 1e5),
                     check.conv.singular = "ignore")
rows <- list()
for (p in unique(d_all$panel)) {
  d <- d_all[d_all$panel == p, ]
  d$runner_id <- factor(d$runner_id)
  t0 <- proc.time()[["elapsed"]]
  fit <- lmer(pain ~ mileage_jump + shoe_km + rest_days_7d + (1 + mileage_jump | runner_id),
              data = d, REML = TRUE, control = lctrl)
  secs <- proc.time()[["elapsed"]] - t0
  fe <- fixef(fit)
  se <- sqrt(diag(as.matrix(vcov(fit))))
  th <- getME(fit, "theta")
  rows[[length(rows) + 1]] <- data.frame(
    panel = p, term = names(fe), estimate = unname(fe), std_error = unname(se),
    loglik = as.numeric(logLik(fit)), theta1 = th[[1]], theta2 = th[[2]], theta3 = th[[3]],
    singular = as.integer(isSingular(fit)), seconds = secs, stringsAsFactors = FALSE)
}
write.csv(do.call(rbind, rows), args[[2]], row.names = FALSE)
