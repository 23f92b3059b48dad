"""Defaults of the build that several modules and the CLI's ``--help`` share.

Defined once here, in a module that imports nothing, so that ``kneeload --help`` does not
pay for numpy, pandas or scipy, and so that the pain threshold is written in one place:
:func:`analysis.exposures.build_panel` records the one it used in ``panel_meta.json``
(``pain_threshold``), which is what every later step should read.
"""

from __future__ import annotations

__all__ = ["DEFAULT_EXPOSURES", "DEFAULT_EXPOSURE_LAG_DAYS", "DEFAULT_PAIN_THRESHOLD",
           "DEFAULT_SEED", "PAIN_MAX", "PAIN_MIN", "POWER_TARGET"]

#: s = t - 7: a pain report's exposures are taken at the week before the report's week
#: (issue 4, docs/exposures.md).
DEFAULT_EXPOSURE_LAG_DAYS = 7
#: ``pain_any = pain >= 3`` on the 0-10 numeric rating scale (docs/exposures.md).
DEFAULT_PAIN_THRESHOLD = 3.0
#: Master seed of the simulator (``kneeload simulate`` and ``power``).
DEFAULT_SEED = 20261125
#: Power a study is usually designed for: 80 % (Cohen 1988, Statistical Power Analysis for
#: the Behavioral Sciences, 2nd ed., section 2.4); the power curve's reference line and the
#: designs :func:`analysis.power.smallest_designs` names.
POWER_TARGET = 0.8
#: The numeric rating scale (NRS 0-10) of pain reports; here, not in ``schemas``, so that
#: predictions can be clipped to it without importing pandera (0.25 s on ``kneeload fit``).
PAIN_MIN, PAIN_MAX = 0.0, 10.0
#: The default exposures of a model (``kneeload fit``, the report), before
#: :func:`analysis.outcomes.default_exposures` leaves out those the data cannot support: the
#: week-over-week mileage change, shoe mileage and rest days in the last 7 days
#: (docs/exposures.md).
DEFAULT_EXPOSURES = ("mileage_jump", "shoe_km", "rest_days_7d")

#: Input formats ``kneeload build --format`` accepts (besides ``auto``), one reader each in
#: :mod:`analysis.ingest` (docs/data-contract.md).
INPUT_FORMATS = ("canonical", "strava", "garmin", "lovdal", "diary", "activity")
