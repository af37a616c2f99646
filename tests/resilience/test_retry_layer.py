"""RetryLayer in the pipeline: unary and stream retries, the commit point, events, budget."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest

from llm_async import AsyncLLMClient, FakeClock, MockProviderServer
from llm_async.application.retry_strategy import (
    ExponentialBackoffRetry,
    RetryBudget,
    RetryConfig,
    RetryLayer,
)
from llm_async.context import CallContext
from llm_async.errors import (
    APIConnectionError,
    AuthenticationError,
    CircuitBreakerOpenError,
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
    ServerError,
    StreamError,
)
from llm_async.infrastructure.transports.mock import MockLLMTransport, MockReply
from llm_async.testing import Fault
from llm_async.types import build_request

FAST = RetryConfig(max_attempts=4, base_delay=0.5, jitter="none")


def _request(**kw: Any) -> Any:
    return build_request(model="m", messages=[{"role": "user", "content": "hi"}],
                         provider="mock", **kw)


def _events(ctx: CallContext) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    ctx.listeners.append(lambda name, attrs: seen.append((name, attrs)))
    return seen


async def test_chat_retries_then_succeeds_with_events_and_attempts() -> None:
    clock = FakeClock()
    transport = MockLLMTransport("fine", responses=[ServerError("500"), OverloadedError("529")])
    layer = RetryLayer(transport, FAST, clock=clock)
    request = _request()
    ctx = CallContext()
    events = _events(ctx)
    response = await layer.chat(request, ctx)
    assert response.text == "fine"
    assert transport.call_count == 3
    assert clock.sleeps == [0.5, 1.0]
    assert ctx.attempt == 3 and len(ctx.attempts) == 3
    assert [(n, a["attempt"], a["delay"], a["error"]) for n, a in events] == [
        ("retry", 1, 0.5, "ServerError"), ("retry", 2, 1.0, "OverloadedError")]
    assert layer.metrics()["retry.successful"] == 1


async def test_chat_gives_up_after_max_attempts_and_never_retries_fatal() -> None:
    clock = FakeClock()
    transport = MockLLMTransport(responses=[ServerError(str(i)) for i in range(10)])
    layer = RetryLayer(transport, FAST, clock=clock)
    with pytest.raises(ServerError, match="3"):
        await layer.chat(_request(), CallContext())
    assert transport.call_count == 4
    assert layer.metrics()["retry.failed"] == 1

    for fatal in (AuthenticationError("401"), CircuitBreakerOpenError("open", name="x")):
        transport = MockLLMTransport(responses=[fatal])
        layer = RetryLayer(transport, FAST, clock=clock)
        with pytest.raises(type(fatal)):
            await layer.chat(_request(), CallContext())
        assert transport.call_count == 1


async def test_retry_after_from_a_429_is_slept() -> None:
    clock = FakeClock()
    transport = MockLLMTransport(responses=[RateLimitError("slow", retry_after=3.0)])
    layer = RetryLayer(transport, FAST, clock=clock)
    await layer.chat(_request(), CallContext())
    assert len(clock.sleeps) == 1 and 3.0 <= clock.sleeps[0] <= 3.3


async def test_per_call_option_disables_or_replaces_retries() -> None:
    clock = FakeClock()
    transport = MockLLMTransport(responses=[ServerError("a")])
    layer = RetryLayer(transport, FAST, clock=clock)
    with pytest.raises(ServerError):
        await layer.chat(_request(options={"retry": False}), CallContext())
    assert transport.call_count == 1
    other = RetryConfig(max_attempts=2, base_delay=7.0, jitter="none")
    transport.script(ServerError("c"))
    await layer.chat(_request(options={"retry": other}), CallContext())
    assert clock.sleeps == [7.0]
    with pytest.raises(InvalidRequestError):
        await layer.chat(_request(options={"retry": "often"}), CallContext())


async def test_budget_is_per_provider_and_shared_when_given() -> None:
    clock = FakeClock()
    transport = MockLLMTransport(responses=[ServerError("x")] * 50)
    shared = RetryBudget(capacity=10)
    layer = RetryLayer(transport, FAST, clock=clock, budget=shared)
    for _ in range(3):
        with pytest.raises(ServerError):
            await layer.chat(_request(), CallContext())
    # 10 tokens → 2 retries over all calls
    assert transport.call_count == 3 + 2
    assert layer.metrics()["budget"]["available"] == 0
    per = RetryLayer(MockLLMTransport(), FAST, clock=clock)
    assert per.budget_for("openai") is per.budget_for("openai")
    assert per.budget_for("openai") is not per.budget_for("anthropic")
    assert RetryLayer(transport, FAST, budget=None).budget_for("x") is None


async def test_deadline_cuts_the_attempt_timeout() -> None:
    from llm_async.types import Timeout

    clock = FakeClock()
    seen: list[Any] = []

    class Recorder(MockLLMTransport):
        async def chat(self, request: Any, ctx: CallContext) -> Any:
            seen.append(request.timeout)
            return await super().chat(request, ctx)

    transport = Recorder(responses=[ServerError("x")])
    layer = RetryLayer(transport, RetryConfig(max_attempts=3, base_delay=2.0, jitter="none",
                                              deadline=10.0), clock=clock)
    request = _request(timeout=Timeout(total=60.0))
    await layer.chat(request, CallContext())
    assert seen[0].total == 10.0  # cut to the deadline
    assert seen[1].total == 8.0  # 2 s were spent waiting
    assert seen[1].connect == Timeout().connect


async def test_stream_retries_before_first_chunk_only() -> None:
    clock = FakeClock()
    transport = MockLLMTransport(responses=[
        ServerError("before anything"),
        MockReply(text="one two three", error=OverloadedError("in-stream"), fail_after=0),
        MockReply(text="alpha beta gamma"),
    ])
    layer = RetryLayer(transport, FAST, clock=clock)
    request = _request(stream=True)
    ctx = CallContext()
    chunks = [c async for c in layer.stream(request, ctx)]
    assert "".join(c.delta for c in chunks) == "alpha beta gamma"
    assert transport.call_count == 3
    assert ctx.attempt == 3 and len(ctx.attempts) == 3

    # after the first chunk a failure is a StreamError and is not retried
    transport = MockLLMTransport(responses=[
        MockReply(text="one two three", error=ServerError("cut"), fail_after=2)])
    layer = RetryLayer(transport, FAST, clock=clock)
    received = []
    with pytest.raises(StreamError):
        async for chunk in layer.stream(_request(stream=True), CallContext()):
            received.append(chunk.delta)
    assert received == ["one", " two"]
    assert transport.call_count == 1


async def test_stream_consumer_break_closes_the_inner_stream() -> None:
    closed = asyncio.Event()

    class Tracking(MockLLMTransport):
        async def stream(self, request: Any, ctx: CallContext) -> Any:  # type: ignore[override]
            try:
                async for chunk in super().stream(request, ctx):
                    yield chunk
            finally:
                closed.set()

    layer = RetryLayer(Tracking("a b c d"), FAST, clock=FakeClock())
    gen = layer.stream(_request(stream=True), CallContext())
    async for _ in gen:
        break
    await gen.aclose()
    assert closed.is_set()
    assert layer.metrics()["retry.attempts"] == 0


async def test_loopback_stream_in_stream_error_before_content_is_retried() -> None:
    async with MockProviderServer() as server, AsyncLLMClient(
            provider="openai", api_key="sk-test-abcdef", base_url=server.base_url,
            layers=[partial(RetryLayer, config=RetryConfig(max_attempts=3, base_delay=0.001))],
    ) as client:
        # an in-stream error event before any content: a typed error, retried
        server.add_fault(Fault(error_after=0, error_body={
            "message": "overloaded", "type": "server_error", "code": "server_error"}))
        stream = client.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "q"}])
        text = "".join([c.delta async for c in stream])
        assert text and server.request_count == 2

        # a cut after three chunks: StreamError, one upstream request, no retry
        server.reset()
        server.add_fault(Fault(cut_after=3))
        stream = client.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "q"}])
        with pytest.raises(StreamError) as info:
            async for _ in stream:
                pass
        assert isinstance(info.value.cause, APIConnectionError)
        assert server.request_count == 1

        # a 500 then success on a unary call: attempts reported in the context
        server.reset()
        server.add_fault(Fault(status=500, times=2))
        reply = await client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "q"}])
        assert reply.text and server.request_count == 3


async def test_repr_and_strategy_from_config() -> None:
    layer = RetryLayer(MockLLMTransport(), FAST)
    assert isinstance(layer.strategy, ExponentialBackoffRetry)
    assert "RetryLayer" in repr(layer)
