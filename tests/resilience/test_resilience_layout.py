"""The resilience code is split by responsibility, each module small, and every public import
path keeps working."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import llm_async

PACKAGE = Path(llm_async.__file__).parent
MODULES = {
    "application/retry_strategy": {"policy", "backoff", "budget", "executor", "layer"},
    "application/circuit_breaker": {"config", "window", "permit", "breaker", "registry", "layer"},
    "application/limits": {"concurrency", "buckets", "provider_headers", "layer"},
    "infrastructure/state": {"redis_breaker", "redis_breaker_scripts", "redis_limits"},
}

#: What each public path offered before it became a package (or a re-export).
PUBLIC = {
    "llm_async.application.retry_strategy": [
        "AdaptiveRetry", "ErrorKind", "ErrorPolicy", "ExponentialBackoffRetry",
        "FibonacciBackoffRetry", "Jitter", "LinearBackoffRetry", "RetryBudget", "RetryConfig",
        "RetryExecutor", "RetryLayer", "RetryMetrics", "RetryStrategy", "apply_jitter",
        "classify_error", "get_retry_metrics", "is_retryable", "reset_retry_metrics"],
    "llm_async.application.circuit_breaker": [
        "AsyncBreaker", "BreakerPermit", "CircuitBreaker", "CircuitBreakerConfig",
        "CircuitBreakerLayer", "CircuitBreakerOpenError", "CircuitPermit", "CircuitState",
        "StateListener", "all_circuit_breakers", "default_is_failure", "get_circuit_breaker",
        "remove_circuit_breaker"],
    "llm_async.application.rate_limit": [
        "BucketLimits", "BucketStore", "ConcurrencyLimitLayer", "ConcurrencyLimiter",
        "LocalBucketStore", "RateLimitConfig", "RateLimitInfo", "RateLimitLayer",
        "estimate_tokens", "parse_duration", "parse_rate_limit_headers"],
    "llm_async.infrastructure.redis_state": [
        "RedisBucketStore", "RedisCircuitBreaker", "RedisPermit", "redis_breaker_factory"],
}


@pytest.mark.parametrize("package", sorted(MODULES))
def test_each_module_does_one_job_in_about_400_lines(package: str) -> None:
    folder = PACKAGE / package
    found = {p.stem for p in folder.glob("*.py")} - {"__init__", "_redis"}
    assert MODULES[package] <= found
    sizes = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.py")}
    assert all(size <= 450 for size in sizes.values()), sizes


@pytest.mark.parametrize("path", sorted(PUBLIC))
def test_public_import_paths_still_offer_every_name(path: str) -> None:
    module = importlib.import_module(path)
    for name in PUBLIC[path]:
        assert getattr(module, name) is not None, name
    assert set(PUBLIC[path]) <= set(module.__all__)


def test_one_permit_for_local_and_shared_breakers() -> None:
    from llm_async.application.circuit_breaker import CircuitPermit
    from llm_async.infrastructure.redis_state import RedisPermit

    assert RedisPermit is CircuitPermit
