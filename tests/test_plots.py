"""analysis.plots: the figures read their widths and reference lines from named constants."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from scipy import stats


@pytest.fixture
def agg() -> Iterator[None]:
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    yield
    plt.close("all")


def test_caterpillar_intervals_are_wald_95(agg: None) -> None:
    from analysis import plots

    per_runner = pd.DataFrame({"Intercept": [0.5, -1.0, 0.2], "Intercept_se": [0.1, 0.2, 0.3]})
    ax = plots.caterpillar(per_runner)
    segments = ax.collections[0].get_segments()  # one vertical bar per runner, sorted
    half = np.array([(s[1, 1] - s[0, 1]) / 2 for s in segments])
    # the normal 97.5 % quantile by scipy directly, not the package's constant
    np.testing.assert_allclose(half, stats.norm.ppf(0.975) * np.array([0.2, 0.3, 0.1]),
                               rtol=1e-12)


def test_power_curve_reference_line_is_the_power_target(agg: None) -> None:
    from analysis import plots

    power = pd.DataFrame({"term": "mileage_jump", "weeks": [12, 12], "runners": [50, 100],
                          "power": [0.4, 0.7], "power_ci_low": [0.3, 0.6],
                          "power_ci_high": [0.5, 0.8]})
    ax = plots.power_curve_plot(power)
    levels = [line.get_ydata()[0] for line in ax.lines[1:]]
    assert levels == [plots.POWER_TARGET] and plots.POWER_TARGET == 0.8
