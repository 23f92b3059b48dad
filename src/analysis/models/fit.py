"""One entry point for every model by name."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.errors import ModelSpecError
from analysis.models.gee import fit_gee
from analysis.models.glmm import fit_glmm
from analysis.models.lmm import fit_lmm
from analysis.models.result import ModelResult


def fit_model(panel: pd.DataFrame, *, model: str = "lmm", **kwargs: Any) -> ModelResult:
    """Dispatch to :func:`fit_lmm`, :func:`fit_glmm` or :func:`fit_gee` by ``model`` name."""
    fitters = {"lmm": fit_lmm, "glmm": fit_glmm, "gee": fit_gee}
    try:
        fitter = fitters[model]
    except KeyError:
        raise ModelSpecError(f"unknown model {model!r}; choose one of {sorted(fitters)}") from None
    return fitter(panel, **kwargs)
