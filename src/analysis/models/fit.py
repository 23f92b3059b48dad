"""One entry point for every model by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.gee import fit_gee
from analysis.models.glmm import fit_glmm
from analysis.models.lmm import fit_lmm
from analysis.models.result import ModelResult

#: The fitter of each model name (``kneeload fit --model`` checks options against these).
FITTERS: dict[str, Callable[..., ModelResult]] = {"lmm": fit_lmm, "glmm": fit_glmm,
                                                  "gee": fit_gee}


def fit_model(panel: pd.DataFrame, *, model: str = "lmm", **kwargs: Any) -> ModelResult:
    """Dispatch to :func:`fit_lmm`, :func:`fit_glmm` or :func:`fit_gee` by ``model`` name."""
    try:
        fitter = FITTERS[model]
    except KeyError:
        raise ModelSpecError(f"unknown model {model!r}; choose one of {sorted(FITTERS)}") from None
    return fitter(panel, **kwargs)
