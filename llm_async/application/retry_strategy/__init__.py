"""Retries: pure delay policies, a retry budget, a small retry loop and the pipeline's RetryLayer.

The decision "retry this error after how long?" is a pure policy,
``strategy.delay(attempt, error, config) -> float | None`` (``None``: do not retry); the loops
(:class:`RetryExecutor` for plain callables, :class:`RetryLayer` in the pipeline) only sleep and
call again. ``attempt`` counts the attempts made so far, so the first retry asks with
``attempt=1``.

Schedules (``b = base_delay``, ``g = exponential_base``, ``n = attempt``), capped at
``max_delay`` and then jittered:

* :class:`ExponentialBackoffRetry`: ``b · g^(n−1)``
* :class:`LinearBackoffRetry`: ``b · n``
* :class:`FibonacciBackoffRetry`: ``b · F(n+1)``, ``F = 1, 1, 2, 3, 5, …`` (``b, 2b, 3b, 5b``)
* :class:`AdaptiveRetry`: exponential, rescaled by what it has learnt (see its docstring)

Jitter (``d`` = capped delay): ``"full"`` → ``U(0, d)``; ``"equal"`` → ``d/2 + U(0, d/2)``;
``"decorrelated"`` → ``min(max_delay, U(b, 3·previous))``; ``"none"`` → ``d``.

Which errors are retried is :func:`classify_error`: connection errors, timeouts, 408, 409, 429,
5xx and overloaded errors are; 400, 401, 403, 404, context length, invalid requests, budgets,
billing quotas, an open circuit and anything after a stream's first chunk are not. A provider's
``x-should-retry`` header wins (it sets ``error.retryable``). A ``Retry-After`` /
``retry-after-ms`` hint is honoured up to ``retry_after_cap``; a longer hint ends the retries,
so a fallback can move on instead of waiting minutes.
"""

from __future__ import annotations

from ...errors import ErrorKind
from .backoff import (
    AdaptiveRetry,
    ExponentialBackoffRetry,
    FibonacciBackoffRetry,
    LinearBackoffRetry,
    RetryStrategy,
    apply_jitter,
)
from .budget import RetryBudget, RetryMetrics, get_retry_metrics, reset_retry_metrics
from .executor import RetryExecutor
from .layer import RetryLayer
from .policy import ErrorPolicy, Jitter, RetryConfig, classify_error, is_retryable

__all__ = [
    "AdaptiveRetry",
    "ErrorKind",
    "ErrorPolicy",
    "ExponentialBackoffRetry",
    "FibonacciBackoffRetry",
    "Jitter",
    "LinearBackoffRetry",
    "RetryBudget",
    "RetryConfig",
    "RetryExecutor",
    "RetryLayer",
    "RetryMetrics",
    "RetryStrategy",
    "apply_jitter",
    "classify_error",
    "get_retry_metrics",
    "is_retryable",
    "reset_retry_metrics",
]
