# Satterthwaite reference with lmerTest on the committed fixtures (tests/reference/{demo,sparse}.csv).
#
# Usage (from the project root):  Rscript tests/reference/lmertest_reference.R [OUT_DIR]
# Writes OUT_DIR/lmertest_reference.csv (default tests/reference/): one row per number, columns
#   cohort, model, kind (ttest | ftest), term, estimate, std_error, df, statistic, p_value
# kind "ttest": summary(fit)$coefficients (Satterthwaite t tests, one row per fixed effect);
# kind "ftest": contest(fit, L, joint = TRUE) for the contrasts named in `term`
# (statistic = F value, std_error = NumDF, df = DenDF).
# tests/test_inference.py compares kneeload's Satterthwaite df with these numbers; its
# live test re-runs this script when R with lmerTest is installed.
#
# Cohorts: demo (40 runners), sparse (120 runners, its random-slope fit is singular),
# demo8 (demo's first 8 runners: few clusters and a runner-level covariate, where the df
# matter most). Optimizer tolerances as tests/reference/lme4_reference.R.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else "tests/reference"
in_dir <- "tests/reference"

fixed <- "mileage_jump + shoe_km + rest_days_7d"
formulas <- list(
  lmm_ri    = list(f = paste("pain ~", fixed, "+ (1 | runner_id)"), reml = TRUE),
  lmm_rs    = list(f = paste("pain ~", fixed, "+ (1 + mileage_jump | runner_id)"), reml = TRUE),
  lmm_ri_ml = list(f = paste("pain ~", fixed, "+ (1 | runner_id)"), reml = FALSE),
  lmm_cov   = list(f = paste("pain ~", fixed, "+ age + (1 | runner_id)"), reml = TRUE)
)
cohorts <- list(
  demo = list(file = "demo", models = names(formulas)),
  sparse = list(file = "sparse", models = names(formulas)),
  demo8 = list(file = "demo", runners = 8, models = c("lmm_ri", "lmm_cov"))
)

lctrl <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(ftol_abs = 1e-12, ftol_rel = 1e-12,
                                    xtol_abs = 1e-10, xtol_rel = 1e-10, maxeval = 1e5),
                     check.conv.singular = "ignore")

rows <- list()
add <- function(...) rows[[length(rows) + 1]] <<- data.frame(..., stringsAsFactors = FALSE)

for (cohort in names(cohorts)) {
  spec_c <- cohorts[[cohort]]
  d <- read.csv(file.path(in_dir, paste0(spec_c$file, ".csv")), stringsAsFactors = FALSE)
  if (!is.null(spec_c$runners)) {
    keep <- sort(unique(d$runner_id))[seq_len(spec_c$runners)]
    d <- d[d$runner_id %in% keep, ]
  }
  d$runner_id <- factor(d$runner_id)
  for (name in spec_c$models) {
    spec <- formulas[[name]]
    fit <- lmerTest::lmer(as.formula(spec$f), data = d, REML = spec$reml, control = lctrl)
    co <- summary(fit)$coefficients
    for (k in seq_len(nrow(co))) {
      add(cohort = cohort, model = name, kind = "ttest", term = rownames(co)[k],
          estimate = co[k, "Estimate"], std_error = co[k, "Std. Error"], df = co[k, "df"],
          statistic = co[k, "t value"], p_value = co[k, "Pr(>|t|)"])
    }
    # multi-df F test of all three exposures, and one 1-df linear combination
    p <- length(fixef(fit))
    L3 <- matrix(0, 3, p)
    L3[1, 2] <- L3[2, 3] <- L3[3, 4] <- 1
    ft <- contest(fit, L3, joint = TRUE)
    add(cohort = cohort, model = name, kind = "ftest",
        term = "mileage_jump,shoe_km,rest_days_7d", estimate = NA,
        std_error = ft[["NumDF"]], df = ft[["DenDF"]], statistic = ft[["F value"]],
        p_value = ft[["Pr(>F)"]])
    L1 <- matrix(0, 1, p)
    L1[1, 2] <- 1
    L1[1, 4] <- 2
    t1 <- contest(fit, L1, joint = FALSE)
    add(cohort = cohort, model = name, kind = "ttest", term = "mileage_jump+2*rest_days_7d",
        estimate = t1[["Estimate"]], std_error = t1[["Std. Error"]], df = t1[["df"]],
        statistic = t1[["t value"]], p_value = t1[["Pr(>|t|)"]])
  }
}
out <- do.call(rbind, rows)
write.csv(out, file.path(out_dir, "lmertest_reference.csv"), row.names = FALSE, na = "")
writeLines(c(R.version.string, paste("lme4", as.character(packageVersion("lme4"))),
             paste("lmerTest", as.character(packageVersion("lmerTest"))),
             paste("numDeriv", as.character(packageVersion("numDeriv")))),
           file.path(out_dir, "lmertest_session.txt"))
