# nlme reference fits with AR(1) residuals on tests/reference/ar1_panel.csv.
#
# Usage (from the project root):  Rscript tests/reference/nlme_ar1_reference.R [OUT_DIR]
# Writes OUT_DIR/nlme_ar1_reference.csv (default tests/reference/) with columns
#   model, kind (fixef | param | fit), term, estimate, std_error
# model: ri_reml / ri_ml (random intercept), rs_reml (correlated random slope on
# mileage_jump), each with correlation = corAR1(form = ~ day | runner_id). corAR1 with an
# integer covariate respects gaps: corr = rho^|day_j - day_k| (checked with corMatrix).
# Log-likelihood scale: nlme 3.1 and lme4 1.1-31 report the same REML log-likelihood (both
# carry -0.5 log|X'X| as part of the restricted likelihood, so rescaling a column shifts both
# equally): the "known constant" between them is 0 here. The rows kind = "check" show it on
# the same data without correlation (lmer minus lme, REML and ML; ~1e-12), so kneeload's
# loglik (lme4's form) is compared with nlme's directly.

suppressPackageStartupMessages({library(nlme); library(lme4)})
args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else "tests/reference"
d <- read.csv("tests/reference/ar1_panel.csv", stringsAsFactors = FALSE)
d$runner_id <- factor(d$runner_id)
fixed <- pain ~ mileage_jump + shoe_km + rest_days_7d
ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, msMaxEval = 5000, tolerance = 1e-10, msTol = 1e-12,
                   niterEM = 100, opt = "nlminb", msVerbose = FALSE, returnObject = FALSE)

rows <- list()
add <- function(...) rows[[length(rows) + 1]] <<- data.frame(..., stringsAsFactors = FALSE)

specs <- list(
  ri_reml = list(random = ~ 1 | runner_id, method = "REML"),
  ri_ml = list(random = ~ 1 | runner_id, method = "ML"),
  rs_reml = list(random = ~ 1 + mileage_jump | runner_id, method = "REML")
)
for (name in names(specs)) {
  s <- specs[[name]]
  fit <- lme(fixed, data = d, random = s$random, method = s$method, control = ctrl,
             correlation = corAR1(0.3, form = ~ day | runner_id))
  fe <- fixef(fit)
  se <- sqrt(diag(vcov(fit)))
  for (k in seq_along(fe)) add(model = name, kind = "fixef", term = names(fe)[k],
                               estimate = unname(fe[k]), std_error = unname(se[k]))
  rho <- as.numeric(coef(fit$modelStruct$corStruct, unconstrained = FALSE))
  add(model = name, kind = "param", term = "rho", estimate = rho, std_error = NA)
  add(model = name, kind = "param", term = "sigma", estimate = fit$sigma, std_error = NA)
  G <- as.matrix(getVarCov(fit))
  add(model = name, kind = "param", term = "sd_Intercept", estimate = sqrt(G[1, 1]),
      std_error = NA)
  if (ncol(G) > 1) {
    add(model = name, kind = "param", term = "sd_mileage_jump", estimate = sqrt(G[2, 2]),
        std_error = NA)
    add(model = name, kind = "param", term = "cor_Intercept_mileage_jump",
        estimate = G[1, 2] / sqrt(G[1, 1] * G[2, 2]), std_error = NA)
  }
  add(model = name, kind = "fit", term = "loglik", estimate = as.numeric(logLik(fit)),
      std_error = NA)
}
# the constant, checked where both packages fit the same model (no correlation)
for (method in c("REML", "ML")) {
  a <- lme(fixed, data = d, random = ~ 1 | runner_id, method = method, control = ctrl)
  b <- lmer(pain ~ mileage_jump + shoe_km + rest_days_7d + (1 | runner_id), data = d,
            REML = method == "REML",
            control = lmerControl(optimizer = "nloptwrap",
                                  optCtrl = list(ftol_abs = 1e-14, xtol_abs = 1e-12)))
  add(model = paste0("iid_", tolower(method)), kind = "check", term = "lme4_minus_nlme",
      estimate = as.numeric(logLik(b)) - as.numeric(logLik(a)), std_error = NA)
}
out <- do.call(rbind, rows)
write.csv(out, file.path(out_dir, "nlme_ar1_reference.csv"), row.names = FALSE, na = "")
writeLines(c(R.version.string, paste("nlme", as.character(packageVersion("nlme"))),
             paste("lme4", as.character(packageVersion("lme4")))),
           file.path(out_dir, "nlme_ar1_session.txt"))
