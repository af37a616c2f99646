"""Token counting (a re-export of :mod:`llm_async.application.cost_manager.tokens`)."""

from __future__ import annotations

from .cost_manager.tokens import (
    IMAGE_TOKENS,
    LARGE_TEXT,
    MESSAGE_OVERHEAD,
    MESSAGE_OVERHEAD_BOUND,
    REQUEST_OVERHEAD_BOUND,
    ErrorReport,
    TokenEstimator,
    encoding_for_model,
    estimate_tokens,
    get_token_estimator,
    image_token_bound,
    input_token_bound,
    measure_error,
    sample_texts,
    text_bound,
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
