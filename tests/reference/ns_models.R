# lme4 fits with natural-spline terms for kneeload's spline LMM and GLMM (tests/test_splines.py).
#
# Usage (from the project root):  Rscript tests/reference/ns_models.R [OUT_DIR [MODEL...]]
# (MODELs restrict the fits to those names: the live test re-runs the LMMs only.)
# Writes OUT_DIR/ns_models.csv (default tests/reference/): one row per number, columns
#   model, kind (loglik | fixef), term, estimate, std_error
# on tests/reference/demo.csv (all rows complete). Models, all by ML:
#   lmm_ns3:    lmer(pain ~ ns(mileage_jump, 3) + shoe_km + (1 | runner_id), REML = FALSE)
#   lmm_ns5:    lmer(pain ~ ns(mileage_jump, 5) + ns(shoe_km, 2) + (1 | runner_id), REML = FALSE)
#   lmm_linear: lmer(pain ~ mileage_jump + shoe_km + (1 | runner_id), REML = FALSE)
#   glmm_ns3:   glmer(pain_any ~ ns(mileage_jump, 3) + shoe_km + (1 | runner_id), binomial)
#   glmm_linear: glmer(pain_any ~ mileage_jump + shoe_km + (1 | runner_id), binomial)
# The log-likelihood does not depend on the basis, only on its span: equal log-likelihoods
# check the knots; equal coefficients check the columns too. glmer runs at the tight
# tolerances of glmer_reference.R (bobyqa rhoend 1e-9, tolPwrss 1e-14; see there why).

suppressPackageStartupMessages({library(lme4); library(splines)})

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else "tests/reference"
d <- read.csv("tests/reference/demo.csv", stringsAsFactors = FALSE)
d$runner_id <- factor(d$runner_id)
d$pain_any <- as.integer(as.logical(d$pain_any))

lctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                     check.conv.singular = "ignore")
gctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-9, maxfun = 1e5),
                      tolPwrss = 1e-14, check.scaleX = "ignore",
                      check.conv.singular = "ignore", check.conv.grad = "ignore")
only <- if (length(args) >= 2) args[-1] else NULL
specs <- list(
  lmm_ns3 = quote(lmer(pain ~ ns(mileage_jump, 3) + shoe_km + (1 | runner_id), data = d,
                 REML = FALSE, control = lctrl)),
  lmm_ns5 = quote(lmer(pain ~ ns(mileage_jump, 5) + ns(shoe_km, 2) + (1 | runner_id), data = d,
                 REML = FALSE, control = lctrl)),
  lmm_linear = quote(lmer(pain ~ mileage_jump + shoe_km + (1 | runner_id), data = d, REML = FALSE,
                    control = lctrl)),
  glmm_ns3 = quote(glmer(pain_any ~ ns(mileage_jump, 3) + shoe_km + (1 | runner_id), data = d,
                   family = binomial, nAGQ = 1, control = gctrl)),
  glmm_linear = quote(glmer(pain_any ~ mileage_jump + shoe_km + (1 | runner_id), data = d,
                      family = binomial, nAGQ = 1, control = gctrl))
)
if (!is.null(only)) specs <- specs[names(specs) %in% only]
fits <- lapply(specs, eval)
rows <- list()
for (name in names(fits)) {
  fit <- fits[[name]]
  fe <- fixef(fit)
  se <- sqrt(diag(as.matrix(vcov(fit))))
  terms <- sub("^\\(Intercept\\)$", "Intercept", names(fe))
  rows[[length(rows) + 1]] <- data.frame(model = name, kind = "loglik", term = "",
                                         estimate = as.numeric(logLik(fit)), std_error = NA)
  rows[[length(rows) + 1]] <- data.frame(model = name, kind = "fixef", term = terms,
                                         estimate = unname(fe), std_error = unname(se))
}
out <- do.call(rbind, rows)
write.csv(out, file.path(out_dir, "ns_models.csv"), row.names = FALSE)
