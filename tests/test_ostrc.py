"""Tests for analysis.ostrc: OSTRC-O2 scores and coding, worked by hand (Clarsen et al. 2020)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.errors import DataContractError
from analysis.ostrc import OSTRC_O2_SCORES, ostrc_coding, ostrc_columns, ostrc_scores


def test_ostrc_score_coding_gives_the_same_result_as_option_coding() -> None:
    options = pd.DataFrame({"ostrc_q1": [1, 2, 3, 4, np.nan, 2],
                            "ostrc_q2": [3, 2, 4, np.nan, 1, 3],
                            "ostrc_q3": [np.nan, 1, 1, np.nan, 1, 1],
                            "ostrc_q4": [2, 2, 1, 4, 1, 1]})
    scores = options.apply(lambda c: c.map(lambda v: np.nan if pd.isna(v)
                                           else OSTRC_O2_SCORES[int(v) - 1]))
    by_option = ostrc_scores(options, coding="option")
    pd.testing.assert_frame_equal(by_option, ostrc_scores(scores, coding="score"))
    pd.testing.assert_frame_equal(by_option, ostrc_scores(scores))  # auto: scores
    pd.testing.assert_frame_equal(by_option, ostrc_scores(options))  # auto: options
    # by hand: row 1 = 8 + 8 + 0 + 8; row 2 = 17 + 25 + 0 + 0; row 3 could not participate:
    # items 2 and 3 skipped and scored 25, so 25 x 4
    assert by_option["ostrc_severity"].tolist()[:4] == [0.0, 24.0, 42.0, 100.0]
    assert by_option["ostrc_substantial"].tolist() == [False, False, True, True, pd.NA, True]
    assert by_option["ostrc_problem"].tolist() == [False, True, True, True, pd.NA, True]


def test_ostrc_answers_outside_both_codings_are_rejected_with_the_column() -> None:
    with pytest.raises(DataContractError) as err:
        ostrc_scores(pd.DataFrame({"ostrc_q1": [1.0, 2.0], "ostrc_q2": [5.0, 1.0]}),
                     coding="option")
    assert (err.value.column, err.value.row) == ("ostrc_q2", 0)
    with pytest.raises(DataContractError):
        ostrc_scores(pd.DataFrame({"ostrc_q1": [0.0, 2.0]}))  # 0-based options: ambiguous


def test_item_one_gates_the_others_and_could_not_participate_fills_items_two_and_three() -> None:
    """O2 logic by hand: q1 = 1 (full participation, no problem) ends the questionnaire, so
    items 2-4 score 0 whatever was entered; q1 = 4 (could not participate) skips items 2
    and 3, which score 25; q1 unanswered leaves everything NA."""
    pain = pd.DataFrame({"ostrc_q1": [1.0, 4.0, np.nan, 2.0],
                         "ostrc_q2": [4.0, np.nan, 2.0, 2.0],
                         "ostrc_q3": [4.0, 1.0, 2.0, np.nan],
                         "ostrc_q4": [4.0, 2.0, 2.0, 1.0]})
    got = ostrc_scores(pain)
    assert got["ostrc_q2_score"].tolist()[:2] == [0.0, 25.0]
    assert got["ostrc_q3_score"].tolist()[:2] == [0.0, 25.0]
    assert got["ostrc_q4_score"].tolist()[:2] == [0.0, 8.0]
    assert got["ostrc_severity"].tolist()[:2] == [0.0, 25.0 + 25.0 + 25.0 + 8.0]
    assert np.isnan(got["ostrc_severity"].iloc[2])
    # row 3: q1 = 8, q2 = 8 (minor), q3 unanswered -> severity unknown, substantial unknown
    assert np.isnan(got["ostrc_severity"].iloc[3])
    assert got["ostrc_substantial"].tolist() == [False, True, pd.NA, pd.NA]
    assert got["ostrc_problem"].tolist() == [False, True, pd.NA, True]


def test_coding_is_told_from_the_values_and_errors_name_file_row_and_column() -> None:
    assert ostrc_coding(pd.DataFrame({"ostrc_q1": [1.0, 4.0]})) == "option"
    assert ostrc_coding(pd.DataFrame({"ostrc_q1": [0.0, 25.0]})) == "score"
    assert ostrc_coding(pd.DataFrame({"pain": [1.0]})) == "option"  # no items at all
    pain = pd.DataFrame({"ostrc_q1": [1.0, 2.0, 3.0], "ostrc_q2": [1.0, 6.0, 1.0],
                         "source_file": "pain.csv", "source_line": [2, 3, 4]})
    with pytest.raises(DataContractError) as err:
        ostrc_coding(pain)
    assert (err.value.file, err.value.row, err.value.column) == ("pain.csv", 3, "ostrc_q2")


def test_panel_columns_are_the_answers_then_their_scores() -> None:
    kept = pd.DataFrame({"ostrc_q1": [2.0, 1.0], "ostrc_q2": [3.0, 1.0]}, index=[7, 3])
    cols = ostrc_columns(kept, coding="option")
    assert list(cols) == ["ostrc_q1", "ostrc_q2", "ostrc_q1_score", "ostrc_q2_score",
                          "ostrc_q3_score", "ostrc_q4_score", "ostrc_severity",
                          "ostrc_problem", "ostrc_substantial"]
    assert list(cols["ostrc_q2_score"]) == [17.0, 0.0]  # positional, whatever the index


def test_the_former_home_still_exports_the_scoring() -> None:
    import analysis.exposures as ex
    import analysis.ostrc as ostrc

    assert ex.ostrc_scores is ostrc.ostrc_scores
    assert ex.OSTRC_O2_SCORES is ostrc.OSTRC_O2_SCORES
    assert not hasattr(ex, "_ostrc_coding") and not hasattr(ex, "_ostrc_columns")
