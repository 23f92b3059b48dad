# splines::ns reference bases for kneeload's natural-spline basis (tests/test_splines.py).
#
# Usage (from the project root):  Rscript tests/reference/ns_basis.R [OUT_DIR]
# Writes OUT_DIR/ns_basis.csv (default tests/reference/): one row per basis entry, columns
#   case, df, kind (basis | predict | knot | boundary), row, col, x, value
# basis: ns(x, df) at the data x; predict: predict(ns(x, df), newx) at new x, inside and
# outside the boundary knots (linear extrapolation); knot/boundary: attr(, "knots") and
# attr(, "Boundary.knots"). The data x are columns of tests/reference/demo.csv (mileage_jump,
# shoe_km) and a small hand-made vector with ties. Numbers: write.csv's 15 significant digits.

suppressPackageStartupMessages(library(splines))

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else "tests/reference"
d <- read.csv("tests/reference/demo.csv", stringsAsFactors = FALSE)

cases <- list(
  list(case = "mileage_jump", x = d$mileage_jump, dfs = 1:5),
  list(case = "shoe_km", x = d$shoe_km, dfs = c(2, 3, 4)),
  list(case = "ties", x = c(0, 0, 0, 1, 1, 2, 3, 3, 5, 8, 8, 8, 13), dfs = c(2, 3, 4))
)
rows <- list()
add <- function(...) rows[[length(rows) + 1]] <<- data.frame(..., stringsAsFactors = FALSE)
for (cs in cases) {
  r <- range(cs$x)
  newx <- c(r[1] - 0.5 * diff(r), r[1] - 0.01 * diff(r), seq(r[1], r[2], length.out = 7),
            r[2] + 0.01 * diff(r), r[2] + 0.5 * diff(r))
  for (df in cs$dfs) {
    b <- ns(cs$x, df = df)
    p <- predict(b, newx)
    # the first 60 data rows and the rows at the boundary knots (the knots use every row)
    keep <- sort(unique(c(head(seq_along(cs$x), 60), which.min(cs$x), which.max(cs$x))))
    for (j in seq_len(ncol(b))) {
      add(case = cs$case, df = df, kind = "basis", row = keep, col = j, x = cs$x[keep],
          value = b[keep, j])
      add(case = cs$case, df = df, kind = "predict", row = seq_along(newx), col = j, x = newx,
          value = p[, j])
    }
    k <- attr(b, "knots")
    if (length(k)) add(case = cs$case, df = df, kind = "knot", row = seq_along(k), col = 0,
                       x = NA, value = k)
    add(case = cs$case, df = df, kind = "boundary", row = 1:2, col = 0, x = NA,
        value = attr(b, "Boundary.knots"))
  }
}
out <- do.call(rbind, rows)
write.csv(out, file.path(out_dir, "ns_basis.csv"), row.names = FALSE)
