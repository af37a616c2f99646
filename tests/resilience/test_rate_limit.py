"""Concurrency and rate limits: FIFO, atomic buckets, usage correction, header slow-down."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest

from llm_async import AsyncLLMClient, FakeClock, MockProviderServer
from llm_async.application.rate_limit import (
    BucketLimits,
    ConcurrencyLimiter,
    ConcurrencyLimitLayer,
    LocalBucketStore,
    RateLimitConfig,
    RateLimitLayer,
    estimate_tokens,
    parse_duration,
    parse_rate_limit_headers,
)
from llm_async.context import CallContext
from llm_async.errors import (
    ConfigurationError,
    QuotaExceededError,
    RateLimiterError,
    RateLimitError,
    ServerError,
)
from llm_async.infrastructure.transports.mock import MockLLMTransport, MockReply
from llm_async.types import Usage, build_request


def _request(content: str = "hi", **kw: Any) -> Any:
    kw.setdefault("provider", "mock")
    return build_request(model="m", messages=[{"role": "user", "content": content}], **kw)


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


# -- concurrency ----------------------------------------------------------------------------


async def test_concurrency_limiter_is_fifo_and_hands_permits_over() -> None:
    limiter = ConcurrencyLimiter(1)
    await limiter.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        await limiter.acquire()
        order.append(i)
        limiter.release()

    tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
    await _settle()
    assert limiter.waiting == 5
    limiter.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert limiter.in_use == 0 and limiter.waiting == 0


async def test_concurrency_limiter_cancellation_leaks_nothing() -> None:
    limiter = ConcurrencyLimiter(1)
    await limiter.acquire()
    queued = asyncio.create_task(limiter.acquire())
    handed = asyncio.create_task(limiter.acquire())
    await _settle()
    queued.cancel()  # cancelled while waiting
    limiter.release()  # the permit goes to `handed` ...
    handed.cancel()  # ... which is cancelled before it runs: it must pass the permit on
    for task in (queued, handed):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert limiter.in_use == 0 and limiter.waiting == 0
    await limiter.acquire()
    assert limiter.in_use == 1
    with pytest.raises(ConfigurationError):
        ConcurrencyLimiter(0)


async def test_concurrency_layer_holds_the_permit_until_the_stream_closes() -> None:
    layer = ConcurrencyLimitLayer(MockLLMTransport("a b c d"), 2)
    streams = [layer.stream(_request(stream=True), CallContext()) for _ in range(3)]
    await anext(streams[0])
    await anext(streams[1])
    assert layer.in_use == 2
    third = asyncio.create_task(anext(streams[2]))
    await _settle()
    assert not third.done() and layer.waiting == 1
    await streams[0].aclose()  # closing a stream early releases its permit
    chunk = await third
    assert chunk.delta == "a"
    async for _ in streams[1]:
        pass
    await streams[2].aclose()
    assert layer.in_use == 0 and layer.waiting == 0
    assert layer.statistics() == {"mock": {"in_use": 0, "waiting": 0, "limit": 2}}
    # unary calls release too, also on errors
    failing = ConcurrencyLimitLayer(MockLLMTransport(responses=[ServerError("x")]), 1)
    with pytest.raises(ServerError):
        await failing.chat(_request(), CallContext())
    assert failing.in_use == 0


async def test_concurrency_layer_records_queue_wait() -> None:
    clock = FakeClock()
    gate = asyncio.Event()

    class Gated(MockLLMTransport):
        async def chat(self, request: Any, ctx: CallContext) -> Any:
            await gate.wait()
            return await super().chat(request, ctx)

    layer = ConcurrencyLimitLayer(Gated(), 1, clock=clock)
    first = asyncio.create_task(layer.chat(_request(), CallContext()))
    await _settle()
    request = _request()
    ctx = CallContext()
    second = asyncio.create_task(layer.chat(request, ctx))
    await _settle()
    clock.advance(3.0)
    gate.set()
    await asyncio.gather(first, second)
    assert ctx.queue_wait == 3.0


# -- token buckets --------------------------------------------------------------------------


async def test_rpm_bucket_admits_a_burst_then_paces() -> None:
    clock = FakeClock()
    layer = RateLimitLayer(MockLLMTransport(), RateLimitConfig(requests_per_minute=60),
                           clock=clock)
    for _ in range(60):
        await layer.chat(_request(), CallContext())
    assert clock.sleeps == []
    await layer.chat(_request(), CallContext())
    assert clock.sleeps == [pytest.approx(1.0)]  # one request a second afterwards


async def test_rpm_and_tpm_are_taken_atomically() -> None:
    clock = FakeClock(auto_advance=False)
    store = LocalBucketStore(clock)
    limits = BucketLimits(requests_per_minute=10, tokens_per_minute=600)
    assert await store.try_acquire("k", limits, 500) == 0
    # tokens are short: nothing is taken from the request bucket either
    wait = await store.try_acquire("k", limits, 200)
    assert wait == pytest.approx(10.0)  # 100 missing tokens at 10/s
    assert store.levels("k")["requests"] == 9
    clock.advance(10.0)
    assert await store.try_acquire("k", limits, 200) == 0
    assert store.levels("k")["requests"] == pytest.approx(9.0)  # refilled to 10, minus 1


async def test_large_request_is_not_starved_by_small_ones() -> None:
    clock = FakeClock(auto_advance=False)
    # usage equal to the estimate, so corrections do not move the buckets
    transport = MockLLMTransport(responses=[
        MockReply(text="x", usage=Usage(input_tokens=n)) for n in (590, 300, 5, 5, 5)])
    config = RateLimitConfig(tokens_per_minute=600,
                             token_estimator=lambda r: len(r.messages[0].text))
    layer = RateLimitLayer(transport, config, clock=clock)
    await layer.chat(_request("x" * 590), CallContext())  # leaves 10 tokens
    admitted: list[str] = []

    async def call(label: str, size: int) -> None:
        await layer.chat(_request("y" * size), CallContext())
        admitted.append(label)

    big = asyncio.create_task(call("big", 300))
    await _settle()
    smalls = [asyncio.create_task(call(f"small{i}", 5)) for i in range(3)]
    await _settle()
    assert admitted == []  # small ones fit, but they queue behind the big one
    clock.advance(30.0)  # 300 tokens refilled
    await _settle()
    assert admitted[0] == "big"
    clock.advance(5.0)
    await asyncio.gather(big, *smalls)
    assert admitted == ["big", "small0", "small1", "small2"]


async def test_usage_corrects_the_estimate() -> None:
    clock = FakeClock()
    transport = MockLLMTransport(responses=[
        MockReply(text="a", usage=Usage(input_tokens=10, output_tokens=5))])
    config = RateLimitConfig(tokens_per_minute=10_000, token_estimator=lambda r: 1000)
    layer = RateLimitLayer(transport, config, clock=clock)
    assert isinstance(layer.store, LocalBucketStore)
    await layer.chat(_request(), CallContext())
    assert layer.store.levels("mock")["tokens"] == pytest.approx(10_000 - 15)
    # streams are corrected from the usage chunk when they end
    transport.script(MockReply(text="b c", usage=Usage(input_tokens=20, output_tokens=2)))
    async for _ in layer.stream(_request(stream=True), CallContext()):
        pass
    assert layer.store.levels("mock")["tokens"] == pytest.approx(10_000 - 37)


async def test_failed_call_gives_back_the_answer_estimate() -> None:
    clock = FakeClock()
    layer = RateLimitLayer(MockLLMTransport(responses=[ServerError("x")]),
                           RateLimitConfig(tokens_per_minute=10_000, default_output_tokens=500),
                           clock=clock)
    request = _request("abcd")
    prompt, _ = estimate_tokens(request)
    with pytest.raises(ServerError):
        await layer.chat(request, CallContext())
    assert isinstance(layer.store, LocalBucketStore)
    assert layer.store.levels("mock")["tokens"] == pytest.approx(10_000 - prompt)


async def test_too_large_and_max_wait_raise_our_error() -> None:
    clock = FakeClock()
    layer = RateLimitLayer(MockLLMTransport(), RateLimitConfig(tokens_per_minute=100),
                           clock=clock)
    with pytest.raises(RateLimiterError):
        await layer.chat(_request(max_tokens=500), CallContext())
    patient = RateLimitLayer(MockLLMTransport(), RateLimitConfig(requests_per_minute=1,
                                                                 max_wait=5.0), clock=clock)
    await patient.chat(_request(), CallContext())
    with pytest.raises(RateLimiterError, match="max_wait"):
        await patient.chat(_request(), CallContext())
    assert patient.waiting == 0


async def test_429_blocks_the_key_and_slows_the_refill() -> None:
    clock = FakeClock()
    transport = MockLLMTransport(responses=[RateLimitError("slow", retry_after=7.0)])
    layer = RateLimitLayer(transport, RateLimitConfig(requests_per_minute=600), clock=clock)
    with pytest.raises(RateLimitError):
        await layer.chat(_request(), CallContext())
    assert layer.statistics()["mock"]["rate_factor"] == pytest.approx(0.7)
    await layer.chat(_request(), CallContext())
    assert clock.sleeps == [pytest.approx(7.0)]  # everyone waits out the Retry-After
    assert layer.statistics()["mock"]["rate_factor"] == pytest.approx(0.75)  # AIMD recovery
    # a billing quota is not a rate problem: no block
    transport.script(QuotaExceededError("pay"))
    with pytest.raises(QuotaExceededError):
        await layer.chat(_request(), CallContext())
    await layer.chat(_request(), CallContext())
    assert len(clock.sleeps) == 1


async def test_cancelled_waiter_leaves_no_trace_and_wakes_the_next() -> None:
    clock = FakeClock(auto_advance=False)
    layer = RateLimitLayer(MockLLMTransport(), RateLimitConfig(requests_per_minute=1),
                           clock=clock)
    await layer.chat(_request(), CallContext())
    head = asyncio.create_task(layer.chat(_request(), CallContext()))
    behind = asyncio.create_task(layer.chat(_request(), CallContext()))
    await _settle()
    assert layer.waiting == 2
    head.cancel()
    with pytest.raises(asyncio.CancelledError):
        await head
    await _settle()
    assert layer.waiting == 1
    clock.advance(60.0)
    await behind
    assert layer.waiting == 0


# -- headers --------------------------------------------------------------------------------


def test_parse_duration() -> None:
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("12ms") == pytest.approx(0.012)
    assert parse_duration("23h47m36.648s") == pytest.approx(85656.648)
    assert parse_duration("1.5") == 1.5
    assert parse_duration("soon") is None and parse_duration("") is None


def test_parse_rate_limit_headers_of_each_provider() -> None:
    openai = parse_rate_limit_headers({
        "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s", "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149984", "x-ratelimit-reset-tokens": "6m0s"})
    assert openai is not None
    assert (openai.limit_requests, openai.remaining_requests, openai.reset_requests) == (60, 59, 1)
    assert (openai.remaining_tokens, openai.reset_tokens) == (149984, 360)
    anthropic = parse_rate_limit_headers({
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2025-08-21T12:41:00Z",
        "anthropic-ratelimit-tokens-remaining": "4000",
        "anthropic-ratelimit-tokens-reset": "2025-08-21T12:40:30Z"},
        wall_now=1755780000.0)  # 2025-08-21T12:40:00Z
    assert anthropic is not None
    assert anthropic.remaining_requests == 0 and anthropic.reset_requests == 60.0
    assert anthropic.remaining_tokens == 4000 and anthropic.reset_tokens == 30.0
    openrouter = parse_rate_limit_headers({"x-ratelimit-limit": "20",
                                           "x-ratelimit-remaining": "3",
                                           "x-ratelimit-reset": "1755780010000"},
                                          wall_now=1755780000.0)
    assert openrouter is not None
    assert (openrouter.remaining_requests, openrouter.reset_requests) == (3, 10.0)
    odd = parse_rate_limit_headers({"x-ratelimit-remaining-requests": "-1"})
    assert odd is not None and odd.remaining_requests is None
    assert parse_rate_limit_headers({"content-type": "x"}) is None


async def test_header_driven_slow_down_against_the_embedded_server() -> None:
    """The server allows 3 requests a minute and says so in its headers. The layer has no
    configured limits: it learns the limit, lowers its bucket to what remains, and the 4th
    call waits for the reported reset instead of spending a 429."""
    clock = FakeClock()
    async with MockProviderServer(rate_limit_headers=True, rpm_limit=3) as server, \
            AsyncLLMClient(
                provider="openai", api_key="sk-test-abcdef", base_url=server.base_url,
                layers=[partial(RateLimitLayer, config=RateLimitConfig(), clock=clock)],
            ) as client:
        messages = [{"role": "user", "content": "q"}]
        for _ in range(3):
            await client.chat(model="gpt-4o-mini", messages=messages)
        assert clock.sleeps == []
        layer = client.layer(RateLimitLayer)
        assert layer is not None
        stats = layer.statistics()["openai"]
        assert stats["requests_per_minute"] == 3.0  # learnt from the headers
        assert stats["requests"] == pytest.approx(0.0, abs=0.01)
        assert stats["blocked_for"] > 50  # remaining 0: blocked until the reported reset
        await client.chat(model="gpt-4o-mini", messages=messages)
        assert sum(clock.sleeps) > 50
        assert server.request_count == 4


def test_config_validation() -> None:
    with pytest.raises(ConfigurationError):
        RateLimitConfig(requests_per_minute=0)
    with pytest.raises(ConfigurationError):
        RateLimitConfig(scope="planet")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        RateLimitConfig(backoff_factor=1.5)


async def test_scopes() -> None:
    layer = RateLimitLayer(MockLLMTransport(), RateLimitConfig(scope="model"))
    assert layer.key_for(_request()) == "mock/m"
    assert RateLimitLayer(MockLLMTransport(), RateLimitConfig(scope="global")).key_for(
        _request()) == "*"
