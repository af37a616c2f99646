"""The resilience layers in the client's default pipeline: env defaults, order, switches."""

from __future__ import annotations

import pytest

from llm_async import AsyncLLMClient, FakeClock
from llm_async.application.circuit_breaker import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerLayer,
)
from llm_async.application.fallback import FallbackLayer
from llm_async.application.rate_limit import (
    ConcurrencyLimitLayer,
    RateLimitConfig,
    RateLimitLayer,
)
from llm_async.application.retry_strategy import AdaptiveRetry, RetryConfig, RetryLayer
from llm_async.config import Settings
from llm_async.errors import ConfigurationError, ServerError
from llm_async.infrastructure.transports.mock import MockLLMTransport

ORDER = [FallbackLayer, RetryLayer, CircuitBreakerLayer, ConcurrencyLimitLayer, RateLimitLayer]


def _kinds(client: AsyncLLMClient) -> list[type]:
    return [type(h) for h in client.stack if type(h) in ORDER]


async def test_env_defaults_and_documented_order() -> None:
    settings = Settings.from_env({"LLM_MAX_RETRIES": "5", "LLM_RETRY_BACKOFF_BASE": "3",
                                  "LLM_CIRCUIT_FAILURE_THRESHOLD": "7",
                                  "LLM_CIRCUIT_TIMEOUT": "30"})
    async with AsyncLLMClient(provider="mock", settings=settings, max_concurrency=4,
                              rate_limit={"requests_per_minute": 600}) as client:
        assert _kinds(client) == ORDER
        retry = client.layer(RetryLayer)
        assert retry is not None
        assert retry.config.max_attempts == 6 and retry.config.exponential_base == 3.0
        breaker_layer = client.layer(CircuitBreakerLayer)
        assert breaker_layer is not None
        assert (breaker_layer.config.failure_threshold, breaker_layer.config.timeout) == (7, 30.0)
        rate = client.layer(RateLimitLayer)
        assert rate is not None and rate.config.requests_per_minute == 600
        reply = await client.chat(model="mock-model", messages=[{"role": "user", "content": "x"}])
        assert reply.text


async def test_none_switches_layers_off_and_explicit_configs_win() -> None:
    async with AsyncLLMClient(provider="mock", retry_config=None,
                              circuit_breaker_config=None) as client:
        assert _kinds(client) == [FallbackLayer]
    cfg = CircuitBreakerConfig(failure_threshold=2)
    async with AsyncLLMClient(provider="mock", retry_config=RetryConfig(max_attempts=2),
                              circuit_breaker_config=cfg,
                              rate_limit=RateLimitConfig(tokens_per_minute=1000)) as client:
        retry = client.layer(RetryLayer)
        breaker = client.layer(CircuitBreakerLayer)
        assert retry is not None and retry.config.max_attempts == 2
        assert breaker is not None and breaker.config is cfg
        assert _kinds(client) == [FallbackLayer, RetryLayer, CircuitBreakerLayer, RateLimitLayer]


async def test_strategy_and_clock_and_fallback_models_from_client_keywords() -> None:
    clock = FakeClock()
    transport = MockLLMTransport(responses=[ServerError("a"), ServerError("b")])
    async with AsyncLLMClient(provider="mock", transport=transport, retry_config=AdaptiveRetry(),
                              fallback_models=["other"], clock=clock, tracing=False) as client:
        retry = client.layer(RetryLayer)
        assert retry is not None and isinstance(retry.strategy, AdaptiveRetry)
        reply = await client.chat(model="mock-model",
                                  messages=[{"role": "user", "content": "x"}])
        assert reply.text and transport.call_count == 3
        assert len(clock.sleeps) == 2  # the injected clock did the waiting
        fallback = client.layer(FallbackLayer)
        assert fallback is not None and fallback.models == ("other",)
        breakers = client.layer(CircuitBreakerLayer)
        assert breakers is not None
        breaker = breakers.breakers["mock/mock-model"]
        assert isinstance(breaker, CircuitBreaker) and breaker.clock is clock


def test_bad_rate_limit_option_is_a_typed_error() -> None:
    for bad in (5, {"rpm": 5}, {"requests_per_minute": -1}):
        with pytest.raises(ConfigurationError):
            AsyncLLMClient(provider="mock", rate_limit=bad)
