"""analysis.keys: the one day number and the ID codes every module uses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import keys


@pytest.mark.parametrize("sort", [False, True])
def test_factorize_gives_pandas_codes_and_values_for_any_order(sort):
    """Grouped (the fast path), grouped with a value in two stretches, shuffled, with a
    missing ID, numbers: always pandas.factorize's codes, values and dtypes."""
    rng = np.random.default_rng(7)
    fast = 0
    for _ in range(2_000):
        n, k = int(rng.integers(0, 30)), int(rng.integers(1, 6))
        ids = np.array([f"R{i}" for i in rng.permutation(k)])
        kind = int(rng.integers(0, 5))
        if kind == 0:
            values = np.sort(rng.choice(ids, n))
        elif kind == 1:
            values = np.repeat(ids, rng.integers(0, 5, k))
        else:
            values = rng.choice(ids, n)
        series = pd.Series(values, dtype="str")
        if kind == 3 and n:
            series.iloc[int(rng.integers(0, n))] = None
        if kind == 4:
            series = pd.Series(rng.integers(0, k, n))
        expected_codes, expected = pd.factorize(series, sort=sort)
        codes, uniques = keys.factorize(series, sort=sort)
        fast += keys._grouped_codes(series, sort=sort) is not None
        np.testing.assert_array_equal(codes, expected_codes)
        assert codes.dtype == expected_codes.dtype
        pd.testing.assert_index_equal(uniques, pd.Index(expected), exact=True)
    assert fast > 300  # the grouped path was taken, not only the fallback


def test_factorize_takes_the_fast_path_only_when_each_value_stands_in_one_stretch():
    grouped = pd.Series(["b", "b", "a", "c", "c"], dtype="str")
    assert keys._grouped_codes(grouped, sort=False) is not None
    assert keys._grouped_codes(grouped, sort=True) is None  # b before a: not sorted
    assert keys._grouped_codes(pd.Series(["a", "b", "a"], dtype="str"), sort=False) is None
    assert keys._grouped_codes(pd.Series(["a", None, "b"], dtype="str"), sort=False) is None


def test_positions_look_each_value_up_in_the_index_as_text():
    index = pd.Index(["R1", "R2", "R3"])
    values = pd.Series(["R3", "R3", "R9", None, "R1"], dtype="str")
    np.testing.assert_array_equal(keys.positions(values, index), [2, 2, -1, -1, 0])
    numbers = pd.Series([3, 1, 7])
    np.testing.assert_array_equal(keys.positions(numbers, pd.Index(["1", "3"])), [1, 0, -1])
    assert len(keys.positions(values.iloc[:0], index)) == 0
    np.testing.assert_array_equal(keys.positions(values, pd.Index([], dtype="str")),
                                  [-1] * 5)


def test_day_numbers_are_whole_days_of_any_resolution_and_missing_is_the_minimum():
    dates = pd.Series(pd.to_datetime(["1970-01-02 23:59", None, "2024-03-01 00:00"]))
    expected = [1, keys.MISSING_DAY, 19783]
    for unit in ("s", "ms", "us", "ns"):
        np.testing.assert_array_equal(keys.day_numbers(dates.astype(f"datetime64[{unit}]")),
                                      expected)
    np.testing.assert_array_equal(keys.day_numbers(pd.Series(["1969-12-31"])), [-1])
    # a zone's own calendar: 23:30 and 00:30 in Oslo are two days (both 1 March in UTC)
    oslo = pd.Series(pd.to_datetime(["2024-03-01 23:30", "2024-03-02 00:30", None])
                     .tz_localize("Europe/Oslo"))
    for given in (oslo, pd.DatetimeIndex(oslo)):
        np.testing.assert_array_equal(keys.day_numbers(given),
                                      [19783, 19784, keys.MISSING_DAY])


def test_day_dates_is_the_inverse_of_day_numbers() -> None:
    """Review: the inverse was written twice (exposures._dates, episodes._from_days)."""
    import analysis.episodes as ep
    import analysis.exposures as ex

    dates = pd.Series(pd.to_datetime(["1969-12-31", None, "2024-02-29", "2025-01-06"]))
    days = keys.day_numbers(dates)
    back = keys.day_dates(days)
    assert back.dtype == np.dtype(keys.DATE_UNIT)
    assert pd.Series(back).equals(dates.astype(keys.DATE_UNIT))
    as_float = np.where(days == keys.MISSING_DAY, np.nan, days.astype(float))
    assert pd.Series(keys.day_dates(as_float)).equals(dates.astype(keys.DATE_UNIT))
    assert keys.day_dates(np.array([19783, 19784])).tolist() == [
        pd.Timestamp("2024-03-01").to_datetime64().astype(keys.DATE_UNIT).item(),
        pd.Timestamp("2024-03-02").to_datetime64().astype(keys.DATE_UNIT).item()]
    assert not hasattr(ex, "_dates") and not hasattr(ep, "_from_days")
    # review: MISSING_DAY stored as a float is missing too; a day beyond the range raises
    assert pd.isna(keys.day_dates(np.array([float(keys.MISSING_DAY)]))[0])
    for beyond in ([1e11], [1e19], [-1e20], [-1e300]):
        with pytest.raises(ValueError, match="have no date"):
            keys.day_dates(np.array(beyond))
    assert keys.day_dates(np.array([], dtype=np.int64)).dtype == np.dtype(keys.DATE_UNIT)


def test_stable_order_is_lexsort_sorted_input_or_not() -> None:
    """stable_order(major, minor) is np.lexsort((minor, major)) on random keys with ties and
    on keys already in order (where it skips the sort), empty and one-row input included."""
    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 50, 5_000):
        major = rng.integers(-3, 4, n)
        minor = rng.integers(0, 3, n)  # many equal (major, minor) pairs: ties keep row order
        np.testing.assert_array_equal(keys.stable_order(major, minor),
                                      np.lexsort((minor, major)))
        ordered = np.lexsort((minor, major))
        np.testing.assert_array_equal(keys.stable_order(major[ordered], minor[ordered]),
                                      np.arange(n))
    # in order by major but not by minor within a major: sorted, not taken as in order
    np.testing.assert_array_equal(keys.stable_order(np.array([0, 0, 1]), np.array([5, 4, 0])),
                                  [1, 0, 2])
    np.testing.assert_array_equal(keys.stable_order(np.array([1, 0]), np.array([0, 9])), [1, 0])


def test_stable_order_refuses_keys_of_two_lengths_as_lexsort_does() -> None:
    """Found by review: keys of unequal length gave an order of the shorter silently."""
    for major, minor in (([1, 2], [1]), ([[1, 2]], [[1, 2]])):
        with pytest.raises(ValueError, match="1-d arrays of one length"):
            keys.stable_order(np.array(major), np.array(minor))
