# Cross-basis reference for kneeload's DLNM cross-basis (tests/test_crossbasis.py), built by
# hand from splines::ns (the dlnm package is not packaged for Debian): for report row i with
# reference day s and lags k = 0..L, column (v, l) = sum_k b_v(x[s - k]) c_l(k), var-major
# (column (v - 1) * n_lag + l), as dlnm::crossbasis orders its columns.
#
# Usage (from the project root):  Rscript tests/reference/ns_crossbasis.R [OUT_DIR]
# Reads tests/reference/ns_crossbasis_daily.csv (runner_id, date, distance_km) and
# ns_crossbasis_panel.csv (runner_id, reference_date), written by
# make_ns_crossbasis_fixture.py. Writes OUT_DIR/ns_crossbasis.csv: case, row, col, value
# (NA where a lag day is unknown or before the runner's calendar).
# Bases: var "ns" = ns(daily km) with interior knots at quantiles of the running days' km
# (> 0) and boundary knots at the range of the known daily km, predict() at the lagged values or "linear" = the km; lag "ns" = ns(0:L, df, intercept = TRUE) (dlnm's
# default for the lag dimension), "strata" = indicators of [0, b1), [b1, b2), ..., [bk, L].

suppressPackageStartupMessages(library(splines))

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else "tests/reference"
daily <- read.csv("tests/reference/ns_crossbasis_daily.csv", stringsAsFactors = FALSE)
panel <- read.csv("tests/reference/ns_crossbasis_panel.csv", stringsAsFactors = FALSE)
daily$day <- as.numeric(as.Date(daily$date))
panel$day <- as.numeric(as.Date(panel$reference_date))
key <- paste(daily$runner_id, daily$day)

cases <- list(
  list(case = "ns3_ns4_L28", var = "ns", vdf = 3, lag = "ns", ldf = 4, L = 28),
  list(case = "lin_strata_L28", var = "linear", lag = "strata", breaks = c(1, 7, 14), L = 28),
  list(case = "ns4_ns3_L10", var = "ns", vdf = 4, lag = "ns", ldf = 3, L = 10)
)
rows <- list()
for (cs in cases) {
  L <- cs$L
  Q <- sapply(0:L, function(k) daily$distance_km[match(paste(panel$runner_id, panel$day - k),
                                                       key)])
  Q <- matrix(Q, nrow = nrow(panel))
  if (cs$var == "ns") {
    known <- daily$distance_km[!is.na(daily$distance_km)]
    # interior knots at type-7 quantiles of the running days (km > 0), boundary knots at the
    # range of all known days (kneeload's rule; dlnm would take quantiles of all days)
    probs <- seq(0, 1, length.out = cs$vdf + 1)[-c(1, cs$vdf + 1)]
    basis <- ns(known, knots = quantile(known[known > 0], probs, type = 7),
                Boundary.knots = range(known))
    bv <- function(x) {
      out <- matrix(NA_real_, length(x), cs$vdf)
      ok <- !is.na(x)
      out[ok, ] <- predict(basis, x[ok])
      out
    }
    nv <- cs$vdf
  } else {
    bv <- function(x) matrix(x, ncol = 1)
    nv <- 1
  }
  if (cs$lag == "ns") {
    B <- ns(0:L, df = cs$ldf, intercept = TRUE)
  } else {
    edges <- c(0, cs$breaks, L + 1)
    stratum <- findInterval(0:L, edges)
    B <- outer(stratum, seq_len(length(edges) - 1), "==") * 1
  }
  nl <- ncol(B)
  cb <- matrix(0, nrow(panel), nv * nl)
  for (k in 0:L) {
    b <- bv(Q[, k + 1])
    for (v in seq_len(nv)) for (l in seq_len(nl)) {
      cb[, (v - 1) * nl + l] <- cb[, (v - 1) * nl + l] + b[, v] * B[k + 1, l]
    }
  }
  rows[[length(rows) + 1]] <- data.frame(case = cs$case, row = rep(seq_len(nrow(panel)), nv * nl),
                                         col = rep(seq_len(nv * nl), each = nrow(panel)),
                                         value = as.vector(cb))
}
out <- do.call(rbind, rows)
write.csv(out, file.path(out_dir, "ns_crossbasis.csv"), row.names = FALSE)
