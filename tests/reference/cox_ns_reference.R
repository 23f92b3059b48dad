# Cox / Andersen-Gill / PWP with a natural-spline term, R survival + splines (issue 16).
#
# Usage (from the project root):  Rscript tests/reference/cox_ns_reference.R [OUT_DIR]
# Reads the committed counting-process rows tests/reference/cox_{sim1,demo}.csv (see
# cox_reference.R) and writes OUT_DIR/cox_ns_reference.csv, one row per number:
#   dataset, model, kind, term, value
# kind: loglik (the partial log-likelihood at the estimate), loglik_linear (the same model
# with the exposure linear), coef (log HR per basis column), robust_se (cluster(runner_id)).
# Complete cases are taken before the fit, so ns() places its knots on the rows fitted
# (inside a model frame ns() would ignore only its own variable's NAs).
# Models: cox = stratum 1 rows, Surv(start, stop, event) ~ ns(x, 3) + z + cluster(runner_id)
#         ag  = all rows, the same formula;  pwp = Surv(gap_start, gap_stop, event) ~ ...
#         + strata(stratum). ties = "efron".

suppressPackageStartupMessages({library(survival); library(splines)})

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else "tests/reference"
in_dir <- "tests/reference"

datasets <- list(
  sim1 = list(x = "x_cont", z = "x_bin"),
  demo = list(x = "mileage_jump", z = "rest_days_7d")
)
rows <- list()
add <- function(...) rows[[length(rows) + 1]] <<- data.frame(..., stringsAsFactors = FALSE)
ctl <- coxph.control(eps = 1e-12, iter.max = 100, toler.chol = 1e-14)

for (ds in names(datasets)) {
  spec <- datasets[[ds]]
  d <- read.csv(file.path(in_dir, paste0("cox_", ds, ".csv")), stringsAsFactors = FALSE)
  d <- d[complete.cases(d[, c(spec$x, spec$z)]), ]
  spl <- paste0("ns(", spec$x, ", 3) + ", spec$z)
  lin <- paste0(spec$x, " + ", spec$z)
  fits <- list(
    cox = list(lhs = "Surv(start, stop, event)", extra = "", data = d[d$stratum == 1, ]),
    ag  = list(lhs = "Surv(start, stop, event)", extra = "", data = d),
    pwp = list(lhs = "Surv(gap_start, gap_stop, event)", extra = " + strata(stratum)",
               data = d)
  )
  for (m in names(fits)) {
    f <- fits[[m]]
    form <- function(rhs) as.formula(paste(f$lhs, "~", rhs, f$extra, "+ cluster(runner_id)"))
    fit <- coxph(form(spl), data = f$data, ties = "efron", control = ctl)
    linear <- coxph(form(lin), data = f$data, ties = "efron", control = ctl)
    co <- coef(fit)
    add(dataset = ds, model = m, kind = "loglik", term = "", value = fit$loglik[2])
    add(dataset = ds, model = m, kind = "loglik_linear", term = "", value = linear$loglik[2])
    add(dataset = ds, model = m, kind = "coef", term = names(co), value = unname(co))
    add(dataset = ds, model = m, kind = "robust_se", term = names(co),
        value = sqrt(diag(fit$var)))
  }
}
write.csv(do.call(rbind, rows), file.path(out_dir, "cox_ns_reference.csv"), row.names = FALSE)
