# Cox / Andersen-Gill / PWP reference with R survival on the committed counting-process rows.
#
# Usage (from the project root):  Rscript tests/reference/cox_reference.R [OUT_DIR]
# Reads tests/reference/cox_{sim1,sim2,demo}.csv (runner_id, start, stop, event, stratum,
# gap_start, gap_stop and the exposures; written by make_cox_fixtures.py and, for the demo,
# by analysis.models.survival.counting_process, see tests/test_survival.py).
# Writes OUT_DIR/cox_reference.csv, one row per number:
#   dataset, model, kind, term, value
# kind: coef (log HR), se (naive), robust_se (cluster(runner_id)), loglik,
#       zph_km_chisq / zph_km_p, zph_identity_chisq / zph_identity_p (cox.zph, terms = TRUE;
#       term GLOBAL for the global test)
# and OUT_DIR/cox_km_reference.csv: survfit(Surv(start, stop, event) ~ band) on the first
# episode rows (dataset, band, time, n_risk, n_event, surv, std_err, lower, upper).
# Models: cox  = stratum 1 rows, Surv(start, stop, event) ~ x + cluster(runner_id)
#         ag   = all rows, the same formula (total time)
#         pwp  = all rows, Surv(gap_start, gap_stop, event) ~ x + strata(stratum) + cluster
# ties = "efron" (the default).

suppressPackageStartupMessages(library(survival))

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else "tests/reference"
in_dir <- "tests/reference"

datasets <- list(
  sim1 = list(x = c("x_cont", "x_bin", "x_base"), band = "x_bin"),
  sim2 = list(x = c("x_cont", "x_bin", "x_base"), band = "x_bin"),
  demo = list(x = c("mileage_jump", "rest_days_7d"), band = "jump_category")
)

rows <- list()
km_rows <- list()
add <- function(...) rows[[length(rows) + 1]] <<- data.frame(..., stringsAsFactors = FALSE)

for (ds in names(datasets)) {
  path <- file.path(in_dir, paste0("cox_", ds, ".csv"))
  if (!file.exists(path)) next
  spec <- datasets[[ds]]
  d <- read.csv(path, stringsAsFactors = FALSE)
  rhs <- paste(spec$x, collapse = " + ")
  fits <- list(
    cox = list(f = paste("Surv(start, stop, event) ~", rhs, "+ cluster(runner_id)"),
               data = d[d$stratum == 1, ]),
    ag  = list(f = paste("Surv(start, stop, event) ~", rhs, "+ cluster(runner_id)"),
               data = d),
    pwp = list(f = paste("Surv(gap_start, gap_stop, event) ~", rhs,
                         "+ strata(stratum) + cluster(runner_id)"), data = d)
  )
  for (m in names(fits)) {
    fit <- coxph(as.formula(fits[[m]]$f), data = fits[[m]]$data, ties = "efron",
                 control = coxph.control(eps = 1e-12, iter.max = 100, toler.chol = 1e-14))
    co <- coef(fit)
    add(dataset = ds, model = m, kind = "coef", term = names(co), value = unname(co))
    add(dataset = ds, model = m, kind = "se", term = names(co),
        value = sqrt(diag(fit$naive.var)))
    add(dataset = ds, model = m, kind = "robust_se", term = names(co),
        value = sqrt(diag(fit$var)))
    add(dataset = ds, model = m, kind = "loglik", term = "", value = fit$loglik[2])
    for (tr in c("km", "identity")) {
      z <- cox.zph(fit, transform = tr)$table
      add(dataset = ds, model = m, kind = paste0("zph_", tr, "_chisq"), term = rownames(z),
          value = unname(z[, "chisq"]))
      add(dataset = ds, model = m, kind = paste0("zph_", tr, "_p"), term = rownames(z),
          value = unname(z[, "p"]))
    }
  }
  first <- d[d$stratum == 1, ]
  first$band <- first[[spec$band]]
  km <- survfit(Surv(start, stop, event) ~ band, data = first)
  s <- summary(km, censored = FALSE)
  km_rows[[length(km_rows) + 1]] <- data.frame(
    dataset = ds, band = sub("^band=", "", as.character(s$strata)), time = s$time,
    n_risk = s$n.risk, n_event = s$n.event, surv = s$surv, std_err = s$std.err,
    lower = s$lower, upper = s$upper, stringsAsFactors = FALSE)
}

out <- do.call(rbind, rows)
write.csv(out, file.path(out_dir, "cox_reference.csv"), row.names = FALSE)
write.csv(do.call(rbind, km_rows), file.path(out_dir, "cox_km_reference.csv"),
          row.names = FALSE)
