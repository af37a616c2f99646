"""Concurrency and rate limits: this path re-exports the :mod:`llm_async.application.limits`
package (concurrency, buckets, provider headers and the rate-limit layer)."""

from __future__ import annotations

from .limits import (
    BucketLimits,
    BucketStore,
    ConcurrencyLimiter,
    ConcurrencyLimitLayer,
    LocalBucketStore,
    RateLimitConfig,
    RateLimitInfo,
    RateLimitLayer,
    estimate_tokens,
    parse_duration,
    parse_rate_limit_headers,
)

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
