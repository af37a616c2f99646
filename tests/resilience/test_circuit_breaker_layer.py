"""CircuitBreakerLayer: one breaker per (provider, model), stream outcomes, queue time."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest

from llm_async import AsyncLLMClient, FakeClock, MockProviderServer
from llm_async.application.circuit_breaker import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerLayer,
    CircuitState,
    all_circuit_breakers,
    remove_circuit_breaker,
)
from llm_async.application.rate_limit import ConcurrencyLimitLayer
from llm_async.application.retry_strategy import RetryConfig, RetryLayer
from llm_async.context import CallContext
from llm_async.errors import BadRequestError, CircuitBreakerOpenError, ServerError, StreamError
from llm_async.infrastructure.transports.mock import MockLLMTransport, MockReply
from llm_async.types import build_request

CFG = CircuitBreakerConfig(failure_threshold=2, success_threshold=1, timeout=10.0, jitter=0.0)


def _request(model: str = "m", provider: str = "mock", **kw: Any) -> Any:
    return build_request(model=model, messages=[{"role": "user", "content": "hi"}],
                         provider=provider, **kw)


async def test_one_breaker_per_provider_and_model_with_rejection_event() -> None:
    clock = FakeClock()
    transport = MockLLMTransport(responses=[ServerError("a"), ServerError("b")])
    layer = CircuitBreakerLayer(transport, CFG, clock=clock)
    for _ in range(2):
        with pytest.raises(ServerError):
            await layer.chat(_request("m1"), CallContext())
    request = _request("m1")
    events: list[tuple[str, dict[str, Any]]] = []
    ctx = CallContext()
    ctx.listeners.append(lambda n, a: events.append((n, a)))
    with pytest.raises(CircuitBreakerOpenError) as info:
        await layer.chat(request, ctx)
    assert info.value.provider == "mock" and info.value.retry_after == 10.0
    assert events == [("circuit_rejected", {"breaker": "mock/m1", "retry_after": 10.0})]
    assert transport.call_count == 2  # the rejected call never reached the provider
    # another model of the same provider is unaffected
    assert (await layer.chat(_request("m2"), CallContext())).text
    status = layer.status()
    assert status["state"] == "open"
    assert status["breakers"]["mock/m1"]["state"] == "open"
    assert status["breakers"]["mock/m2"]["state"] == "closed"
    metrics = layer.metrics()
    assert metrics["circuit.requests.rejected"] == 1 and metrics["circuit.requests.failed"] == 2


async def test_caller_errors_never_trip_the_layer() -> None:
    transport = MockLLMTransport(responses=[BadRequestError("bad")] * 5)
    layer = CircuitBreakerLayer(transport, CFG, clock=FakeClock())
    for _ in range(5):
        with pytest.raises(BadRequestError):
            await layer.chat(_request(), CallContext())
    assert layer.status()["state"] == "closed"


async def test_stream_outcomes() -> None:
    clock = FakeClock()
    transport = MockLLMTransport("a b c d e")
    layer = CircuitBreakerLayer(transport, CFG, clock=clock)
    breaker = layer.breaker_for(_request())
    assert isinstance(breaker, CircuitBreaker)

    # normal end: success
    assert len([c async for c in layer.stream(_request(stream=True), CallContext())]) > 0
    assert breaker.successful == 1

    # consumer breaks out: nothing recorded
    gen = layer.stream(_request(stream=True), CallContext())
    async for _ in gen:
        break
    await gen.aclose()
    assert (breaker.successful, breaker.failed, breaker.ignored) == (1, 0, 0)

    # failure mid-stream: counted (a StreamError whose cause is a server error)
    transport.script(MockReply(text="x y z", error=ServerError("cut"), fail_after=1))
    with pytest.raises(StreamError):
        async for _ in layer.stream(_request(stream=True), CallContext()):
            pass
    assert breaker.failed == 1


async def test_half_open_probe_released_when_a_stream_is_abandoned_or_cancelled() -> None:
    clock = FakeClock()
    transport = MockLLMTransport("a b c d e", responses=[ServerError("1"), ServerError("2")])
    layer = CircuitBreakerLayer(transport, CFG, clock=clock)
    for _ in range(2):
        with pytest.raises(ServerError):
            await layer.chat(_request(), CallContext())
    clock.advance(10.0)
    breaker = layer.breaker_for(_request())
    assert isinstance(breaker, CircuitBreaker)

    # probe 1: the consumer breaks out after one chunk
    gen = layer.stream(_request(stream=True), CallContext())
    async for _ in gen:
        break
    assert breaker.status()["half_open_in_flight"] == 1
    await gen.aclose()
    assert breaker.status()["half_open_in_flight"] == 0
    assert breaker.state is CircuitState.HALF_OPEN

    # probe 2: the consuming task is cancelled while waiting for the next chunk
    gate = asyncio.Event()

    class Slow(MockLLMTransport):
        async def stream(self, request: Any, ctx: CallContext) -> Any:  # type: ignore[override]
            yield (await anext(aiter(super().stream(request, ctx))))
            await gate.wait()

    slow_layer = CircuitBreakerLayer(Slow("q r s"), CFG, clock=clock)
    slow_layer.breakers["mock/m"] = breaker

    async def consume() -> None:
        async for _ in slow_layer.stream(_request(stream=True), CallContext()):
            pass

    task = asyncio.create_task(consume())
    for _ in range(5):
        await asyncio.sleep(0)
    assert breaker.status()["half_open_in_flight"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.status()["half_open_in_flight"] == 0

    # a real probe then closes it
    assert [c async for c in layer.stream(_request(stream=True), CallContext())]
    assert breaker.state is CircuitState.CLOSED


async def test_open_breaker_stops_retries_at_once() -> None:
    clock = FakeClock()
    transport = MockLLMTransport(responses=[ServerError(str(i)) for i in range(10)])
    stack = RetryLayer(CircuitBreakerLayer(transport, CFG, clock=clock),
                       RetryConfig(max_attempts=10, base_delay=0.1, jitter="none"), clock=clock)
    with pytest.raises(CircuitBreakerOpenError):
        await stack.chat(_request(), CallContext())
    assert transport.call_count == 2  # the breaker opened after 2; retry did not go on
    assert len(clock.sleeps) == 2


async def test_shared_breakers_come_from_the_registry() -> None:
    try:
        first = CircuitBreakerLayer(MockLLMTransport(), CFG, shared=True)
        second = CircuitBreakerLayer(MockLLMTransport(), CFG, shared=True)
        await first.chat(_request("shared-model"), CallContext())
        assert first.breaker_for(_request("shared-model")) is \
            second.breaker_for(_request("shared-model"))
        assert "mock/shared-model" in all_circuit_breakers()
    finally:
        remove_circuit_breaker("mock/shared-model")


async def test_queue_time_is_not_a_slow_call_and_not_a_timeout() -> None:
    """A call that waits in the concurrency limit for longer than the breaker's slow-call
    threshold and its own first-chunk timeout still succeeds and counts as a fast success."""
    from llm_async.types import Timeout

    cfg = CircuitBreakerConfig(failure_threshold=1, slow_call_threshold=0.25,
                               slow_call_rate_threshold=0.5, minimum_calls=1, jitter=0.0)
    async with MockProviderServer(token_delay=0.03) as server, AsyncLLMClient(
            provider="openai", api_key="sk-test-abcdef", base_url=server.base_url,
            layers=[partial(CircuitBreakerLayer, config=cfg),
                    partial(ConcurrencyLimitLayer, max_concurrency=1)],
    ) as client:
        messages = [{"role": "user", "content": "q"}]
        first = client.stream(model="gpt-4o-mini", messages=messages)
        chunks = first.__aiter__()
        await chunks.__anext__()  # the first stream now holds the only permit

        async def second() -> Any:
            return await client.chat(model="gpt-4o-mini", messages=messages,
                                     timeout=Timeout(first_chunk=0.25, total=5.0))

        waiting = asyncio.create_task(second())
        async for _ in chunks:  # 11 more words at 30 ms each: ≥ 0.33 s of queueing
            pass
        reply = await waiting
        assert reply.text
        layer = client.layer(CircuitBreakerLayer)
        assert layer is not None
        status = layer.status()["breakers"]["openai/gpt-4o-mini"]
        assert status["state"] == "closed"
        assert status["failed_requests"] == 0
        # the unary call queued ≥ 0.33 s, longer than its first-chunk timeout and the
        # slow-call threshold, yet it neither timed out nor counted as slow
        assert status["slow_requests"] == 0
