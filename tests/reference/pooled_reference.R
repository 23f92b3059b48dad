# Reference for the index's pooled model (analysis.reports.study.fit_pooled) with lme4.
#
# Usage (from the project root):  Rscript tests/reference/pooled_reference.R [OUT_DIR]
# Reads tests/reference/demo.csv; cohort = c("A", "B", "C")[runner number %% 3 + 1] (the same
# rule as tests/test_index.py). Writes OUT_DIR/pooled_reference.csv (default
# tests/reference/): kind (fixef | lrt), term, estimate, std_error:
#   fixef: REML fit of pain ~ exposures + cohort + (1 | runner_id)
#   lrt:   likelihood-ratio test (ML fits) of adding exposure:cohort (statistic, df)

suppressPackageStartupMessages(library(lme4))

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else "tests/reference"
d <- read.csv("tests/reference/demo.csv")
d$cohort <- factor(c("A", "B", "C")[as.integer(sub("^r", "", d$runner_id)) %% 3 + 1])
ctrl <- lmerControl(optimizer = "nloptwrap",
                    optCtrl = list(ftol_abs = 1e-12, ftol_rel = 1e-12,
                                   xtol_abs = 1e-10, xtol_rel = 1e-10, maxeval = 1e5))
x <- "mileage_jump + shoe_km + rest_days_7d"
main <- lmer(as.formula(paste("pain ~", x, "+ cohort + (1 | runner_id)")), d, REML = TRUE,
             control = ctrl)
restricted <- lmer(as.formula(paste("pain ~", x, "+ cohort + (1 | runner_id)")), d,
                   REML = FALSE, control = ctrl)
full <- lmer(as.formula(paste("pain ~ (", x, ") * cohort + (1 | runner_id)")), d,
             REML = FALSE, control = ctrl)
co <- summary(main)$coefficients
rows <- data.frame(kind = "fixef", term = rownames(co), estimate = co[, "Estimate"],
                   std_error = co[, "Std. Error"])
lrt <- anova(restricted, full)
rows <- rbind(rows, data.frame(kind = "lrt", term = c("statistic", "df"),
                               estimate = c(lrt$Chisq[2], lrt$Df[2]), std_error = NA))
write.csv(rows, file.path(out_dir, "pooled_reference.csv"), row.names = FALSE)
