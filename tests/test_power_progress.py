"""analysis.power.power_curve reports its progress (issue 14: notebook 04 ran minutes silently)."""

from __future__ import annotations

from analysis.power import power_curve


def test_progress_callback_counts_every_simulated_study() -> None:
    calls: list[tuple[int, int]] = []
    curve = power_curve(runners=[12, 16], weeks=[6], effects={"mileage_jump": 0.3}, n_sims=3,
                        seed=3, progress=False, random_slopes=(),
                        on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 6) for k in range(1, 7)]  # 2 designs x 3 studies, in order
    assert set(curve["runners"]) == {12, 16}
