"""Breaker state and rate-limit buckets shared through a real redis-server by two "workers"
(two instances, each with its own connection)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest

from llm_async import FakeClock
from llm_async.application.circuit_breaker import (
    CircuitBreakerConfig,
    CircuitBreakerLayer,
    CircuitState,
)
from llm_async.application.rate_limit import BucketLimits, RateLimitConfig, RateLimitLayer
from llm_async.context import CallContext
from llm_async.errors import BadRequestError, CircuitBreakerOpenError, ServerError
from llm_async.infrastructure.redis_state import (
    RedisBucketStore,
    RedisCircuitBreaker,
    redis_breaker_factory,
)
from llm_async.infrastructure.transports.mock import MockLLMTransport
from llm_async.types import build_request

pytestmark = pytest.mark.redis

CFG = CircuitBreakerConfig(failure_threshold=3, success_threshold=2, timeout=10.0, jitter=0.0,
                           half_open_max_calls=1)


@pytest.fixture
async def connections(redis_url: str) -> AsyncIterator[list[Any]]:
    import redis.asyncio as aioredis

    clients = [aioredis.from_url(redis_url), aioredis.from_url(redis_url)]
    yield clients
    for client in clients:
        await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def _request(model: str = "m") -> Any:
    return build_request(model=model, messages=[{"role": "user", "content": "hi"}],
                         provider="mock")


async def test_two_workers_share_one_breaker(connections: list[Any], prefix: str) -> None:
    clock = FakeClock()
    a = RedisCircuitBreaker("svc", CFG, redis=connections[0], prefix=prefix, clock=clock)
    b = RedisCircuitBreaker("svc", CFG, redis=connections[1], prefix=prefix, clock=clock)
    seen: list[tuple[str, CircuitState, CircuitState]] = []
    b.subscribe(lambda *args: seen.append(args))

    # failures split across the workers add up (a caller error in between is ignored):
    # A fails, B gets a 400, B fails, A fails → open for both
    for worker, error in ((a, ServerError("500")), (b, BadRequestError("400")),
                          (b, ServerError("500")), (a, ServerError("500"))):
        permit = await worker.acquire_async()
        await permit.record_async(error)
    with pytest.raises(CircuitBreakerOpenError) as info:
        await b.acquire_async()
    assert info.value.retry_after == pytest.approx(10.0)
    assert seen == [("svc", CircuitState.CLOSED, CircuitState.OPEN)]  # B saw it open

    # half-open: one probe in all, whichever worker asks first gets it
    clock.advance(10.0)
    probe = await a.acquire_async()
    with pytest.raises(CircuitBreakerOpenError):
        await b.acquire_async()
    await probe.record_async(None)
    probe = await b.acquire_async()
    await probe.record_async(None)
    status = await a.fetch_status()
    assert status["state"] == "closed"
    assert status["failed_requests"] == 3 and status["ignored_requests"] == 1
    assert status["rejected_requests"] == 2
    assert a.metrics()["circuit.requests.failed"] == 3

    # force_open on one worker is seen by the other; reset likewise
    await a.force_open_async()
    with pytest.raises(CircuitBreakerOpenError):
        await b.call_async(lambda: "never")
    await b.reset_async()
    assert await a.call_async(lambda: "ok") == "ok"


async def test_breaker_with_redis_time(connections: list[Any], prefix: str) -> None:
    cfg = CircuitBreakerConfig(failure_threshold=1, timeout=60.0, jitter=0.0)
    a = RedisCircuitBreaker("svc", cfg, redis=connections[0], prefix=prefix)
    b = RedisCircuitBreaker("svc", cfg, redis=connections[1], prefix=prefix)

    async def fail() -> None:
        raise ServerError("down")

    with pytest.raises(ServerError):
        await a.call_async(fail)
    with pytest.raises(CircuitBreakerOpenError) as info:
        await b.call_async(fail)
    assert info.value.retry_after is not None and 59.0 < info.value.retry_after <= 60.0
    assert b.status()["state"] == "open"


async def test_failure_rate_window_is_shared(connections: list[Any], prefix: str) -> None:
    clock = FakeClock(start=1000.0)
    cfg = CircuitBreakerConfig(failure_threshold=100, failure_rate_threshold=0.5,
                               minimum_calls=6, window=10.0, window_buckets=5, jitter=0.0)
    workers = [RedisCircuitBreaker("rate", cfg, redis=c, prefix=prefix, clock=clock)
               for c in connections]
    outcomes = [None, ServerError("x"), None, ServerError("x"), None]
    for i, outcome in enumerate(outcomes):
        permit = await workers[i % 2].acquire_async()
        await permit.record_async(outcome)
    assert (await workers[0].fetch_status())["state"] == "closed"  # 5 calls: under minimum
    permit = await workers[1].acquire_async()
    await permit.record_async(ServerError("x"))  # 3 of 6 = 50%
    assert (await workers[0].fetch_status())["state"] == "open"


async def test_concurrent_half_open_probes_are_bounded(connections: list[Any],
                                                       prefix: str) -> None:
    clock = FakeClock()
    cfg = CircuitBreakerConfig(failure_threshold=1, timeout=1.0, half_open_max_calls=2,
                               jitter=0.0)
    workers = [RedisCircuitBreaker("probe", cfg, redis=c, prefix=prefix, clock=clock)
               for c in connections]
    permit = await workers[0].acquire_async()
    await permit.record_async(ServerError("x"))
    clock.advance(1.0)
    results = await asyncio.gather(*(workers[i % 2].acquire_async() for i in range(10)),
                                   return_exceptions=True)
    granted = [r for r in results if not isinstance(r, BaseException)]
    assert len(granted) == 2
    for permit in granted:
        await permit.release_async()  # abandoned probes give their slot back
    assert (await workers[1].fetch_status())["half_open_in_flight"] == 0


async def test_breaker_layers_of_two_clients_share_state(connections: list[Any],
                                                         prefix: str) -> None:
    clock = FakeClock()
    layers = [
        CircuitBreakerLayer(MockLLMTransport(responses=[ServerError("x")] * failures), CFG,
                            factory=redis_breaker_factory(conn, prefix=prefix, clock=clock))
        for conn, failures in zip(connections, (2, 1), strict=True)]
    for i in range(3):
        with pytest.raises(ServerError):
            await layers[i % 2].chat(_request(), CallContext())
    with pytest.raises(CircuitBreakerOpenError):
        await layers[1].chat(_request(), CallContext())
    assert layers[1].status()["state"] == "open"
    # a stream abandoned by its consumer records nothing (and releases its permit)
    await layers[0].breaker_for(_request("other")).reset_async()  # type: ignore[attr-defined]
    gen = layers[0].stream(build_request(model="other", messages=[{"role": "user",
                                                                    "content": "x"}],
                                         provider="mock", stream=True), CallContext())
    async for _ in gen:
        break
    await gen.aclose()
    status = await layers[0].breaker_for(_request("other")).fetch_status()  # type: ignore[attr-defined]
    assert status["successful_requests"] == 0 and status["failed_requests"] == 0


async def test_bucket_is_atomic_across_workers(connections: list[Any], prefix: str) -> None:
    clock = FakeClock()
    stores = [RedisBucketStore(c, prefix=prefix, clock=clock) for c in connections]
    limits = BucketLimits(requests_per_minute=5, tokens_per_minute=1000)
    waits = await asyncio.gather(*(stores[i % 2].try_acquire("openai", limits, 10)
                                   for i in range(20)))
    assert sum(1 for w in waits if w == 0) == 5  # exactly the bucket, never more
    assert all(w == pytest.approx(12.0) for w in waits if w > 0)  # 1 request per 12 s
    # tokens and requests are taken together or not at all
    token_limits = BucketLimits(requests_per_minute=100, tokens_per_minute=600)
    assert await stores[0].try_acquire("anthropic", token_limits, 500) == 0
    assert await stores[1].try_acquire("anthropic", token_limits, 200) == pytest.approx(10.0)
    levels = await stores[0].levels("anthropic", token_limits)
    assert levels["requests"] == 99 and levels["tokens"] == 100
    # corrections, blocks and header observations are shared too
    await stores[1].adjust("anthropic", token_limits, 300)
    assert (await stores[0].levels("anthropic", token_limits))["tokens"] == 400
    await stores[0].observe("anthropic", token_limits, 3, None)
    assert (await stores[1].levels("anthropic", token_limits))["requests"] == 3
    await stores[0].block("anthropic", 7.0)
    assert await stores[1].try_acquire("anthropic", token_limits, 1) == pytest.approx(7.0)
    clock.advance(7.0)
    assert await stores[1].try_acquire("anthropic", token_limits, 1) == 0


async def test_rate_limit_layers_share_a_redis_bucket(connections: list[Any],
                                                      prefix: str) -> None:
    clock = FakeClock()
    config = RateLimitConfig(requests_per_minute=4)
    layers = [RateLimitLayer(MockLLMTransport(), config, clock=clock,
                             store=RedisBucketStore(c, prefix=prefix, clock=clock))
              for c in connections]
    for i in range(4):
        await layers[i % 2].chat(_request(), CallContext())
    assert clock.sleeps == []
    await layers[1].chat(_request(), CallContext())  # the shared bucket is empty: this worker waits
    assert clock.sleeps == [pytest.approx(15.0)]


async def test_store_from_url_closes_its_connection(redis_url: str, prefix: str) -> None:
    store = RedisBucketStore(url=redis_url, prefix=prefix)
    assert await store.try_acquire("k", BucketLimits(requests_per_minute=1), 1) == 0
    assert await store.try_acquire("k", BucketLimits(requests_per_minute=1), 1) > 0
    await store.aclose()
    breaker = RedisCircuitBreaker("x", url=redis_url, prefix=prefix)
    assert await breaker.call_async(partial(str, "ok")) == "ok"
    await breaker.aclose()
