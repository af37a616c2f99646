"""Token counting (a re-export of :mod:`llm_async.application.cost_manager.tokens`,
:mod:`~llm_async.application.cost_manager.bounds` and
:mod:`~llm_async.application.cost_manager.calibration`)."""

from __future__ import annotations

from .cost_manager.bounds import (
    LARGE_TEXT,
    MESSAGE_OVERHEAD_BOUND,
    REQUEST_OVERHEAD_BOUND,
    image_token_bound,
    input_token_bound,
    text_bound,
)
from .cost_manager.calibration import ErrorReport, measure_error, sample_texts
from .cost_manager.tokens import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD,
    TokenEstimator,
    encoding_for_model,
    estimate_tokens,
    get_token_estimator,
)

__all__ = [
    "IMAGE_TOKENS",
    "LARGE_TEXT",
    "MESSAGE_OVERHEAD",
    "MESSAGE_OVERHEAD_BOUND",
    "REQUEST_OVERHEAD_BOUND",
    "ErrorReport",
    "TokenEstimator",
    "encoding_for_model",
    "estimate_tokens",
    "get_token_estimator",
    "image_token_bound",
    "input_token_bound",
    "measure_error",
    "sample_texts",
    "text_bound",
]
