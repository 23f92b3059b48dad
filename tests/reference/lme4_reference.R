# Reference fits with lme4 on the committed fixtures (tests/reference/{demo,sparse}.csv).
#
# Usage (from the project root):  Rscript tests/reference/lme4_reference.R [OUT_DIR]
# Writes OUT_DIR/lme4_reference.csv (default tests/reference/): one row per number, columns
#   cohort, model, kind (fixef | varcorr | fit), term, term2, estimate, std_error
# and OUT_DIR/lme4_session.txt (R and lme4 versions). tests/test_models.py compares
# kneeload's fits with these numbers; the "lme4"-marked test re-runs this script live.
#
# Tolerances are tightened so that the reference sits at the optimum (lme4's defaults stop
# within ~1e-6 of it in the deviance).

suppressPackageStartupMessages(library(lme4))

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else "tests/reference"
in_dir <- "tests/reference"

fixed <- "mileage_jump + shoe_km + rest_days_7d"
formulas <- list(
  lmm_ri     = list(f = paste("pain ~", fixed, "+ (1 | runner_id)"), reml = TRUE),
  lmm_rs     = list(f = paste("pain ~", fixed, "+ (1 + mileage_jump | runner_id)"), reml = TRUE),
  lmm_ri_ml  = list(f = paste("pain ~", fixed, "+ (1 | runner_id)"), reml = FALSE),
  lmm_rs_ml  = list(f = paste("pain ~", fixed, "+ (1 + mileage_jump | runner_id)"), reml = FALSE),
  lmm_cov    = list(f = paste("pain ~", fixed, "+ sex + age + (1 | runner_id)"), reml = TRUE),
  glmm_ri    = list(f = paste("pain_any ~", fixed, "+ (1 | runner_id)"), family = "binomial"),
  # uncorrelated random slope (GPBoost's random coefficients have no correlation parameter)
  glmm_rs    = list(f = paste("pain_any ~", fixed, "+ (1 + mileage_jump || runner_id)"),
                    family = "binomial")
)

lctrl <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 1e-12, ftol_rel = 1e-12,
                                    xtol_abs = 1e-10, xtol_rel = 1e-10, maxeval = 1e5),
                     check.conv.singular = "ignore")
gctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-9, maxfun = 1e5),
                      check.scaleX = "ignore", check.conv.singular = "ignore")

rows <- list()
add <- function(...) rows[[length(rows) + 1]] <<- data.frame(..., stringsAsFactors = FALSE)

for (cohort in c("demo", "sparse")) {
  d <- read.csv(file.path(in_dir, paste0(cohort, ".csv")), stringsAsFactors = FALSE)
  d$runner_id <- factor(d$runner_id)
  d$pain_any <- as.integer(as.logical(d$pain_any))
  for (name in names(formulas)) {
    spec <- formulas[[name]]
    t0 <- proc.time()[["elapsed"]]
    if (is.null(spec$family)) {
      fit <- lmer(as.formula(spec$f), data = d, REML = spec$reml, control = lctrl)
    } else {
      fit <- glmer(as.formula(spec$f), data = d, family = binomial, nAGQ = 1, control = gctrl)
    }
    secs <- proc.time()[["elapsed"]] - t0
    fe <- fixef(fit)
    se <- sqrt(diag(as.matrix(vcov(fit))))
    for (k in seq_along(fe)) {
      add(cohort = cohort, model = name, kind = "fixef", term = names(fe)[k], term2 = NA,
          estimate = unname(fe[k]), std_error = unname(se[k]))
    }
    vc <- as.data.frame(VarCorr(fit))
    for (k in seq_len(nrow(vc))) {
      add(cohort = cohort, model = name, kind = "varcorr",
          term = ifelse(is.na(vc$var1[k]), "Residual", vc$var1[k]), term2 = vc$var2[k],
          estimate = vc$vcov[k], std_error = vc$sdcor[k])
    }
    add(cohort = cohort, model = name, kind = "fit", term = "loglik", term2 = NA,
        estimate = as.numeric(logLik(fit)), std_error = NA)
    add(cohort = cohort, model = name, kind = "fit", term = "singular", term2 = NA,
        estimate = as.numeric(isSingular(fit)), std_error = NA)
    add(cohort = cohort, model = name, kind = "fit", term = "nobs", term2 = NA,
        estimate = nobs(fit), std_error = NA)
    add(cohort = cohort, model = name, kind = "fit", term = "seconds", term2 = NA,
        estimate = secs, std_error = NA)
  }
}
out <- do.call(rbind, rows)
# varcorr rows: estimate = variance/covariance, std_error column holds the SD/correlation
write.csv(out, file.path(out_dir, "lme4_reference.csv"), row.names = FALSE, na = "")
writeLines(c(R.version.string, paste("lme4", as.character(packageVersion("lme4"))),
             paste("Matrix", as.character(packageVersion("Matrix")))),
           file.path(out_dir, "lme4_session.txt"))
