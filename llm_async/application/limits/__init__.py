"""Concurrency and rate limits: FIFO, no polling task, and slowed down by the provider's own
rate-limit headers.

* :class:`ConcurrencyLimitLayer` — at most ``max_concurrency`` calls in flight per provider.
  The permit is held until the answer is complete — for a stream, until it closes (end,
  error, ``break``, ``aclose()`` or cancellation).
* :class:`RateLimitLayer` — requests-per-minute and tokens-per-minute token buckets
  (continuous refill: a bucket of ``N`` per minute holds ``N`` and refills ``N/60`` per
  second). One call takes one request and its estimated tokens from both buckets in a single
  atomic step; when the real usage is known, the estimate is corrected.

Both queue waiters first-in first-out: a waiter is only admitted when everyone before it has
been, so a large request is never starved by a stream of small ones. Nobody polls: a concurrency
permit is handed directly to the next waiter when it is released, and only the head of the rate
limiter's queue sleeps — exactly until the buckets can admit it — in its own task.

Time spent queued is added to ``ctx.queue_wait`` (seconds) so that the
circuit breaker leaves it out of slow-call durations; provider timeouts are applied below, by
the transport, so queueing never counts toward them.
"""

from __future__ import annotations

from .buckets import BucketLimits, BucketStore, LocalBucketStore, estimate_tokens
from .concurrency import ConcurrencyLimiter, ConcurrencyLimitLayer
from .layer import RateLimitConfig, RateLimitLayer
from .provider_headers import RateLimitInfo, parse_duration, parse_rate_limit_headers

__all__ = [
    "BucketLimits",
    "BucketStore",
    "ConcurrencyLimitLayer",
    "ConcurrencyLimiter",
    "LocalBucketStore",
    "RateLimitConfig",
    "RateLimitInfo",
    "RateLimitLayer",
    "estimate_tokens",
    "parse_duration",
    "parse_rate_limit_headers",
]
