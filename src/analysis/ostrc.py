"""OSTRC-O2 overuse questionnaire: item scores, severity and problem flags per pain report.

The Oslo Sports Trauma Research Center questionnaire on health problems (OSTRC-O2,
Clarsen et al. 2020, BJSM 54:390) has four items with four answer options each. This module
is the one home of its scoring: :func:`ostrc_scores` for any table with ``ostrc_q1`` ..
``ostrc_q4``, :func:`ostrc_coding` to tell option numbers from item scores, and
:func:`ostrc_columns`, the panel's OSTRC columns (``docs/exposures.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import DataContractError, KneeloadError
from analysis.schemas import OSTRC_ITEMS, SOURCE_FILE, SOURCE_LINE

#: OSTRC-O2 item scores for answer options 1..4 of every item (Clarsen et al. 2020, BJSM
#: 54:390; the 2013 version scored items 2 and 3 as 0, 6, 13, 19, 25 over five options,
#: Clarsen et al. 2013, BJSM 47:495). Severity is the sum, 0-100.
OSTRC_O2_SCORES = (0.0, 8.0, 17.0, 25.0)
#: The answer options of every item as printed (1..4), the other coding of an answer.
OSTRC_OPTIONS = (1.0, 2.0, 3.0, 4.0)
#: An answer of either coding (what cleaning accepts; :func:`ostrc_coding` tells them apart).
OSTRC_VALID_ANSWERS = OSTRC_OPTIONS + OSTRC_O2_SCORES
OSTRC_CODINGS = ("auto", "option", "score")
#: Item 2 or 3 at "to a moderate extent" (17) or worse, or item 1 "could not participate"
#: (25), is a substantial problem (Clarsen et al. 2013; 2020).
OSTRC_SUBSTANTIAL_SCORE = 17.0


def _where(pain: pd.DataFrame, row: int) -> dict[str, Any]:
    """``file`` and ``row`` of table row ``row``: its source file and line when the table
    carries them (clean tables do), else the row position."""
    if SOURCE_FILE in pain.columns and SOURCE_LINE in pain.columns:
        return {"file": str(pain[SOURCE_FILE].iloc[row]),
                "row": int(pain[SOURCE_LINE].iloc[row])}
    return {"row": row}


def ostrc_coding(pain: pd.DataFrame) -> str:
    """The coding every OSTRC answer in ``pain`` fits: option numbers or item scores.

    Parameters
    ----------
    pain
        Table with any of ``ostrc_q1`` .. ``ostrc_q4`` (optionally ``source_file`` and
        ``source_line``, which an error then names).

    Returns
    -------
    str
        ``"option"`` (answers 1-4; also when nothing is answered) or ``"score"`` (answers
        among :data:`OSTRC_O2_SCORES`). The two value sets are disjoint.

    Raises
    ------
    DataContractError
        Naming the file, row and column of the first answer that fits neither coding, or
        else of the first answer of the rarer coding (a mix).
    """
    items = [c for c in OSTRC_ITEMS if c in pain.columns]
    if not items:
        return "option"
    answers = pain[items].to_numpy(dtype=float)
    answered = ~np.isnan(answers)
    option = np.isin(answers, OSTRC_OPTIONS)
    score = np.isin(answers, OSTRC_O2_SCORES)
    if (option | ~answered).all():
        return "option"
    if (score | ~answered).all():
        return "score"
    neither = answered & ~option & ~score
    if neither.any():
        bad, why = neither, "is neither an option number 1-4 nor an OSTRC-O2 item score"
    elif option.sum() <= score.sum():
        bad, why = option, "is an option number 1-4 among OSTRC-O2 item scores"
    else:
        bad, why = score, "is an OSTRC-O2 item score among option numbers 1-4"
    row, col = (int(k) for k in np.argwhere(bad)[0])
    raise DataContractError(
        f"OSTRC answer {answers[row, col]:g} {why} {list(OSTRC_O2_SCORES)}",
        column=items[col], **_where(pain, row))


def ostrc_scores(pain: pd.DataFrame, *, coding: str = "auto") -> pd.DataFrame:
    """OSTRC-O2 item scores, severity (0-100) and problem flags for each pain report.

    Parameters
    ----------
    pain
        Table with ``ostrc_q1`` .. ``ostrc_q4`` (missing items are treated as unanswered).
    coding
        ``"option"``: answers are option numbers 1-4 as printed (1 = best);
        ``"score"``: answers are already item scores 0, 8, 17 or 25;
        ``"auto"`` (default): whichever of the two the answers fit (the two value sets do not
        overlap, so this is unambiguous; all answers missing reads as options).

    Returns
    -------
    pandas.DataFrame
        ``ostrc_q1_score`` .. ``ostrc_q4_score``, ``ostrc_severity`` (sum, 0-100),
        ``ostrc_problem`` and ``ostrc_substantial`` (nullable booleans), same index.

    Notes
    -----
    O2 logic (Clarsen et al. 2020): item 1 is the gatekeeper, "full participation without
    problems" ends the questionnaire, so items 2-4 score 0 whatever was entered; "could not
    participate" skips items 2 and 3, which score 25. A problem is any item-1 answer other
    than full participation without problems; a substantial problem is item 1 = could not
    participate or item 2 or 3 at "moderate" or worse. Anything needed but unanswered is NA.
    """
    if coding not in OSTRC_CODINGS:
        raise KneeloadError(f"ostrc coding must be one of {OSTRC_CODINGS}, got {coding!r}")
    n = len(pain)
    if coding == "auto":
        coding = ostrc_coding(pain)
    scores = {}
    for item, col in enumerate(OSTRC_ITEMS, start=1):  # ostrc_q1..q4
        raw = (pain[col].astype(float).to_numpy() if col in pain.columns
               else np.full(n, np.nan))
        allowed = np.array(OSTRC_OPTIONS if coding == "option" else OSTRC_O2_SCORES)
        bad = ~np.isnan(raw) & ~np.isin(raw, allowed)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise DataContractError(
                f"OSTRC answer {raw[at]:g} is not one of {allowed.tolist()} "
                f"(coding={coding!r})", column=col, **_where(pain, at))
        if coding == "option":
            score = np.full(n, np.nan)
            ok = ~np.isnan(raw)
            score[ok] = np.asarray(OSTRC_O2_SCORES)[raw[ok].astype(int) - 1]
        else:
            score = raw
        scores[item] = score
    q1 = scores[1]
    no_problem = q1 == OSTRC_O2_SCORES[0]
    cannot = q1 == OSTRC_O2_SCORES[-1]
    for item in (2, 3, 4):
        scores[item] = np.where(no_problem, 0.0, scores[item])
        scores[item] = np.where(np.isnan(q1), np.nan, scores[item])
    for item in (2, 3):
        scores[item] = np.where(cannot, OSTRC_O2_SCORES[-1], scores[item])
    severity = scores[1] + scores[2] + scores[3] + scores[4]
    problem = pd.array(~no_problem, dtype="boolean")
    problem[np.isnan(q1)] = pd.NA
    worst_23 = np.fmax(scores[2], scores[3])
    substantial_known = cannot | (worst_23 >= OSTRC_SUBSTANTIAL_SCORE)
    substantial = pd.array(substantial_known, dtype="boolean")
    unknown = ~substantial_known & (np.isnan(q1) | np.isnan(scores[2]) | np.isnan(scores[3]))
    substantial[unknown] = pd.NA
    out = pd.DataFrame({f"ostrc_q{i}_score": scores[i] for i in range(1, 5)},
                       index=pain.index)
    out["ostrc_severity"] = severity
    out["ostrc_problem"] = problem
    out["ostrc_substantial"] = substantial
    return out


def ostrc_columns(kept: pd.DataFrame, *, coding: str) -> dict[str, Any]:
    """The panel's OSTRC columns: the answers as given, then :func:`ostrc_scores`.

    Parameters
    ----------
    kept
        The pain reports of the panel, in panel order.
    coding
        As for :func:`ostrc_scores`.

    Returns
    -------
    dict
        Column name -> values (numpy or pandas arrays of ``len(kept)``).
    """
    out: dict[str, Any] = {c: kept[c].to_numpy() for c in OSTRC_ITEMS if c in kept.columns}
    scored = ostrc_scores(kept.reset_index(drop=True), coding=coding)
    return out | {c: scored[c].array for c in scored.columns}
