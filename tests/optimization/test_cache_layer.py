"""The cache layer through the whole client, over loopback HTTP to the embedded server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from functools import partial

import pytest

from llm_async import AsyncLLMClient, FakeClock, Settings
from llm_async.context import CallContext
from llm_async.domain.ports import Layer
from llm_async.errors import BadRequestError, InvalidRequestError
from llm_async.optimization.cache import (
    CacheConfig,
    CacheLayer,
    MemoryBackend,
    ResponseCache,
)
from llm_async.testing import Fault, MockProviderServer
from llm_async.types import ChatRequest, ChatResponse

HANG = 120.0  # a guard against a hang, never a speed check

KEY = "sk-test-cache-key-0001"
MSGS = [{"role": "user", "content": "What is the capital of France?"}]


class CountingLayer(Layer):
    """Stands in for the cost layer: counts what reaches the inside of the cache."""

    def __init__(self, inner: object) -> None:
        super().__init__(inner)  # type: ignore[arg-type]
        self.calls = 0

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        self.calls += 1
        ctx.cost = Decimal("0.01")
        return await self.inner.chat(request, ctx)


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer() as s:
        yield s


def client_for(server: MockProviderServer, cache: ResponseCache | None = None,
               **kwargs: object) -> AsyncLLMClient:
    cache = cache or ResponseCache()
    layers = kwargs.pop("layers", None) or [partial(CacheLayer, cache=cache,
                                                     config=kwargs.pop("config", None))]
    return AsyncLLMClient(provider="openai", api_key=KEY, base_url=server.base_url,
                          layers=layers, **kwargs)  # type: ignore[arg-type]


async def test_second_identical_call_is_a_hit_and_never_reaches_upstream(server):
    counting: list[CountingLayer] = []

    def counted(inner: object) -> CountingLayer:
        counting.append(CountingLayer(inner))
        return counting[-1]

    cache = ResponseCache()
    async with client_for(server, layers=[partial(CacheLayer, cache=cache), counted]) as client:
        first = await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)
        events: list[str] = []
        second_req = client.build_request("gpt-4o-mini", MSGS, {"temperature": 0}, stream=False)
        second_ctx = CallContext()
        second_ctx.listeners.append(lambda name, attrs: events.append(name))
        second = await client.chat(request=second_req, context=second_ctx)
    assert server.request_count == 1
    assert counting[0].calls == 1  # the "cost layer" saw only the miss
    assert not first.cache_hit and second.cache_hit
    assert second.text == first.text and second.usage == first.usage
    assert second.cost == Decimal(0)
    assert second_ctx.cache_hit is True
    assert "cache_hit" in events
    assert cache.statistics().hits == 1


async def test_stream_hit_replays_the_answer_as_chunks(server):
    async with client_for(server) as client:
        unary = await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)
        stream = client.stream(model="gpt-4o-mini", messages=MSGS, temperature=0)
        chunks = [c async for c in stream]
    assert server.request_count == 1
    assert "".join(c.delta for c in chunks) == unary.text
    assert chunks[-1].usage == unary.usage
    assert stream.final_response is not None
    assert stream.final_response.cache_hit and stream.final_response.cost == Decimal(0)
    assert stream.final_response.finish_reason == unary.finish_reason


async def test_completed_stream_is_stored_but_a_broken_off_one_is_not(server):
    async with client_for(server) as client:
        async with client.stream(model="gpt-4o-mini", messages=MSGS, temperature=0) as s:
            async for _ in s:
                break  # the caller stops early: not a complete answer
        assert server.request_count == 1
        full = await client.stream(model="gpt-4o-mini", messages=MSGS,
                                   temperature=0).get_final_response()
        assert server.request_count == 2 and not full.cache_hit
        again = await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)
    assert server.request_count == 2
    assert again.cache_hit and again.text == full.text


async def test_an_enabled_cache_serves_identical_requests_whatever_the_temperature(server):
    async with client_for(server) as client:
        first = await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0.7)
        again = await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0.7)
        assert server.request_count == 1
        assert again.cache_hit and again.text == first.text
        await client.chat(model="gpt-4o-mini", messages=MSGS)  # no temperature: its own entry
        await client.chat(model="gpt-4o-mini", messages=MSGS)
        assert server.request_count == 2


async def test_the_deterministic_only_policy_caches_temperature_zero_or_opted_in(server):
    config = CacheConfig(only_deterministic=True)
    async with client_for(server, config=config) as client:
        for _ in range(2):
            await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0.7)
        assert server.request_count == 2
        for _ in range(2):
            await client.chat(model="gpt-4o-mini", messages=MSGS, options={"cache": True})
        assert server.request_count == 3
        for _ in range(2):
            await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)
        assert server.request_count == 4


async def test_cache_enabled_from_the_environment_hits_on_plain_calls(server):
    settings = Settings.from_env({"LLM_CACHE_ENABLED": "1", "LLM_PROVIDER": "openai"})
    async with AsyncLLMClient(api_key=KEY, base_url=server.base_url, settings=settings,
                              cost_manager=None, tracing=False) as client:
        assert client.layer(CacheLayer) is not None
        await client.chat(model="gpt-4o-mini", messages=MSGS)
        again = await client.chat(model="gpt-4o-mini", messages=MSGS)
        assert again.cache_hit and server.request_count == 1


async def test_bypass_refresh_and_per_call_ttl(server):
    clock = FakeClock()
    cache = ResponseCache(MemoryBackend(clock=clock), ttl=100)
    async with client_for(server, cache) as client:
        call = partial(client.chat, model="gpt-4o-mini", messages=MSGS, temperature=0)
        await call()
        assert (await call(options={"cache": "bypass"})).cache_hit is False
        assert server.request_count == 2
        refreshed = await call(options={"cache": "refresh", "cache_ttl": 5})
        assert not refreshed.cache_hit and server.request_count == 3
        assert (await call()).cache_hit
        clock.advance(6)  # the refreshed entry lived 5 s, not the cache's 100 s
        assert not (await call()).cache_hit
    assert server.request_count == 4


async def test_bad_cache_options_fail_before_sending(server):
    async with client_for(server) as client:
        with pytest.raises(InvalidRequestError):
            await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0,
                              options={"cache": "sometimes"})
        with pytest.raises(InvalidRequestError):
            await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0,
                              options={"cache_ttl": -1})
    assert server.request_count == 0


async def test_tenants_never_share_entries(server):
    async with client_for(server) as client:
        call = partial(client.chat, model="gpt-4o-mini", messages=MSGS, temperature=0)
        await call(user_id="alice")
        assert not (await call(user_id="bob")).cache_hit
        assert (await call(user_id="alice")).cache_hit
    assert server.request_count == 2


async def test_key_ignores_metadata_and_timeouts_but_not_parameters(server):
    async with client_for(server) as client:
        call = partial(client.chat, model="gpt-4o-mini", messages=MSGS, temperature=0)
        await call(timeout=30, extra_headers={"X-Trace": "1"}, project_id="p1")
        assert (await call(timeout=99)).cache_hit
        assert not (await call(max_tokens=5)).cache_hit
        assert not (await call(model="gpt-4o")).cache_hit
    assert server.request_count == 3


async def test_errors_are_not_cached(server):
    server.add_fault(Fault(status=400, times=1))
    async with client_for(server) as client:
        with pytest.raises(BadRequestError):
            await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)
        ok = await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)
    assert not ok.cache_hit and server.request_count == 2


async def test_concurrent_misses_make_one_upstream_call(server):
    async with client_for(server) as client:
        replies = await asyncio.gather(*[
            client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0) for _ in range(50)])
    assert server.request_count == 1
    assert len({r.text for r in replies}) == 1


async def test_normalized_keys_hit_on_formatting_differences(server):
    config = CacheConfig(normalize=True)
    async with client_for(server, config=config) as client:

        async def ask(text: str) -> ChatResponse:
            return await client.chat(model="gpt-4o-mini", temperature=0,
                                     messages=[{"role": "user", "content": text}])

        await ask("What is the  **capital** of France?")
        hit = await ask("what is the capital of france ?")
        miss = await ask("What is the capital of Spain?")
    assert hit.cache_hit and not miss.cache_hit
    assert server.request_count == 2


async def test_default_pipeline_switches(server, monkeypatch):
    def make(**kwargs: object) -> AsyncLLMClient:
        settings = Settings.from_env(kwargs.pop("env", {}))  # type: ignore[arg-type]
        return AsyncLLMClient(provider="openai", api_key=KEY, base_url=server.base_url,
                              settings=settings, tracing=False, retry_config=None,
                              circuit_breaker_config=None, **kwargs)  # type: ignore[arg-type]

    async with make() as off, make(env={"LLM_CACHE_ENABLED": "1", "LLM_CACHE_TTL": "7"}) as on, \
            make(cache_enabled=True, cache_ttl=3) as explicit, make(cache=ResponseCache()) as given:
        assert off.layer(CacheLayer) is None
        layer = on.layer(CacheLayer)
        assert layer is not None and layer.cache.ttl == 7.0
        explicit_layer = explicit.layer(CacheLayer)
        assert explicit_layer is not None and explicit_layer.config.ttl == 3.0
        assert given.layer(CacheLayer) is not None
        await on.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)
        assert (await on.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)).cache_hit
    assert server.request_count == 1


async def test_clients_with_different_keys_do_not_share_a_cache(server):
    shared = ResponseCache()
    async with AsyncLLMClient(provider="openai", api_key="sk-tenant-one-123", cache=shared,
                              base_url=server.base_url, layers=None, tracing=False,
                              retry_config=None, circuit_breaker_config=None) as one, \
            AsyncLLMClient(provider="openai", api_key="sk-tenant-two-456", cache=shared,
                           base_url=server.base_url, layers=None, tracing=False,
                           retry_config=None, circuit_breaker_config=None) as two:
        await one.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)
        assert not (await two.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)).cache_hit
        assert (await one.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)).cache_hit
    assert server.request_count == 2


async def test_cancelled_caller_leaks_no_connection_and_does_not_store(server):
    slow = MockProviderServer(token_delay=0.002, reply_words=50)
    async with slow, client_for(slow) as client:
        stream = client.stream(model="gpt-4o-mini", messages=MSGS, temperature=0)

        async def consume() -> None:
            async for _ in stream:
                pass

        task = asyncio.ensure_future(consume())
        while stream.text == "":
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        transport = client.transports["openai"]
        connector = transport.connector  # type: ignore[attr-defined]
        assert connector is not None
        deadline = time.monotonic() + HANG
        while connector._acquired and time.monotonic() < deadline:  # the leak check
            await asyncio.sleep(0.001)
        assert not connector._acquired
        layer = client.layer(CacheLayer)
        assert layer is not None and layer.cache.statistics().stores == 0


async def test_a_hit_is_never_billed_by_the_default_cost_layer(server):
    from llm_async.application.cost_manager import CostManager

    manager = CostManager()
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=server.base_url,
                              cost_manager=manager, cache_enabled=True, tracing=False) as client:
        miss = await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)
        spent = manager.get_metrics().total_cost
        hit = await client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0)
    assert miss.cost is not None and miss.cost > 0
    assert hit.cache_hit and hit.cost == Decimal(0)
    metrics = manager.get_metrics()
    assert metrics.requests == 1 and metrics.total_cost == spent
