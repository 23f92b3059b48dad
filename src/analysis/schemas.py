"""Table contracts at module boundaries (pandera).

Column names here are the public interface: notebooks, reports and users' code rely on them.
Raw tables (straight from :mod:`analysis.ingest`) carry the canonical names with values as
read, plus provenance columns; clean tables (after :mod:`analysis.clean`) are typed and
checked with the schemas below.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from analysis.defaults import PAIN_MAX, PAIN_MIN  # NRS 0-10, defined once there

# --- canonical raw data contract (docs/data-contract.md) -----------------------------------
RUNNERS_REQUIRED = ("runner_id", "cohort")
RUNNERS_OPTIONAL = ("sex", "age", "follow_up_start", "follow_up_end")
RUNS_REQUIRED = ("runner_id", "date", "distance_km")
RUNS_OPTIONAL = ("duration_min", "shoe_id", "activity_type", "rpe", "start_time")
PAIN_REQUIRED = ("runner_id", "date", "pain")
OSTRC_ITEMS = ("ostrc_q1", "ostrc_q2", "ostrc_q3", "ostrc_q4")
PAIN_OPTIONAL = OSTRC_ITEMS
SHOES_REQUIRED = ("shoe_id", "runner_id")
SHOES_OPTIONAL = ("start_date", "start_km")

#: Provenance columns every raw table carries: input file name and 1-based line number
#: in that file (the header is line 1, so the first data row is line 2).
SOURCE_FILE = "source_file"
SOURCE_LINE = "source_line"
PROVENANCE = (SOURCE_FILE, SOURCE_LINE)

# --- value ranges -----------------------------------------------------------------------
MAX_DAILY_KM = 100.0  # more than this in one day is treated as impossible (docs/cleaning.md)

_runner_id = pa.Column(str, nullable=False)

#: Dates are calendar days (midnight, no time zone) at any datetime64 resolution: pandas 3
#: parses to microseconds, older pandas to nanoseconds; the contract does not care.
_is_datetime = pa.Check(pd.api.types.is_datetime64_any_dtype, element_wise=False,
                        name="is_datetime64")


def _date_column(*, nullable: bool = False, required: bool = True) -> pa.Column:
    return pa.Column(None, _is_datetime, nullable=nullable, required=required)


_date = _date_column()

RUNNERS = pa.DataFrameSchema(
    {
        "runner_id": pa.Column(str, nullable=False, unique=True),
        "cohort": pa.Column(str, nullable=False),
        "sex": pa.Column(str, nullable=True, required=False),
        "age": pa.Column(float, pa.Check.in_range(0, 120), nullable=True, required=False),
        "follow_up_start": _date_column(nullable=True, required=False),
        "follow_up_end": _date_column(nullable=True, required=False),
    },
    name="runners",
    strict=False,
)

RUNS = pa.DataFrameSchema(
    {
        "runner_id": _runner_id,
        "date": _date,
        "distance_km": pa.Column(float, pa.Check.in_range(0, MAX_DAILY_KM, include_min=False)),
        "duration_min": pa.Column(float, pa.Check.gt(0), nullable=True, required=False),
        "shoe_id": pa.Column(str, nullable=True, required=False),
        "rpe": pa.Column(float, pa.Check.in_range(0, 10), nullable=True, required=False),
    },
    name="runs",
    strict=False,
)

PAIN = pa.DataFrameSchema(
    {
        "runner_id": _runner_id,
        "date": _date,
        "pain": pa.Column(float, pa.Check.in_range(PAIN_MIN, PAIN_MAX)),
    },
    name="pain",
    strict=False,
)

SHOES = pa.DataFrameSchema(
    {
        "shoe_id": pa.Column(str, nullable=False),
        "runner_id": _runner_id,
        "start_date": _date_column(nullable=True, required=False),
        "start_km": pa.Column(float, pa.Check.ge(0), nullable=True, required=False),
    },
    unique=["runner_id", "shoe_id"],  # Strava's shoe_id is the gear name: shared by runners
    name="shoes",
    strict=False,
)

#: Minimum columns of the exposure panel (one row per pain report); the exposures module
#: documents every other column in docs/exposures.md.
PANEL = pa.DataFrameSchema(
    {
        "runner_id": _runner_id,
        "cohort": pa.Column(str, nullable=False),
        "date": _date,
        "reference_date": _date,
        "pain": pa.Column(float, pa.Check.in_range(PAIN_MIN, PAIN_MAX)),
        "pain_any": pa.Column(bool),
    },
    name="panel",
    strict=False,
    unique=["runner_id", "date"],
)

#: The daily calendar (one row per runner and calendar day inside follow-up); distance_km is
#: NaN only on days treated as missing (``unlogged_gaps="missing"``, docs/exposures.md).
DAILY = pa.DataFrameSchema(
    {
        "runner_id": _runner_id,
        "date": _date,
        "day_index": pa.Column(int, pa.Check.ge(0)),
        "distance_km": pa.Column(float, pa.Check.ge(0), nullable=True),
        "n_runs": pa.Column(int, pa.Check.ge(0)),
        "rest_day": pa.Column("boolean", nullable=True),
        "unlogged_gap": pa.Column(bool),
    },
    name="daily",
    strict=False,
    unique=["runner_id", "date"],
)
