"""Cache backends and the process-wide ``get_cache()`` (memory and a real Redis)."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial

import pytest

from llm_async import AsyncLLMClient, FakeClock
from llm_async.errors import ConfigurationError, InvalidRequestError
from llm_async.infrastructure.transports.mock import MockLLMTransport
from llm_async.optimization import get_cache
from llm_async.optimization.cache import (
    CacheLayer,
    MemoryBackend,
    RedisBackend,
    ResponseCache,
    decode_value,
    encode_value,
    set_cache,
)
from llm_async.types import ChatResponse, FunctionCall, ToolCall, Usage


def response(text: str = "hello") -> ChatResponse:
    return ChatResponse(id="r1", model="m", provider="openai", content=text,
                        finish_reason="stop", usage=Usage(input_tokens=3, output_tokens=1))


def test_sync_api_runs_without_await() -> None:
    set_cache(None)
    try:
        cache = get_cache()
        assert get_cache() is cache
        request_key = "k1"
        cached = cache.get(request_key)
        assert cached is None
        cache.set(request_key, {"answer": 42}, ttl=3600)
        assert cache.get(request_key) == {"answer": 42}
        assert cache.delete(request_key) and cache.get(request_key, "gone") == "gone"
        stats = cache.statistics()
        assert (stats.hits, stats.misses, stats.stores) == (1, 2, 1)
    finally:
        set_cache(None)


def test_lru_bound_by_entries() -> None:
    backend = MemoryBackend(max_entries=3)
    for key in "abc":
        backend.set(key, key.upper(), None)
    assert backend.get("a") == "A"  # a is now the most recently used
    backend.set("d", "D", None)
    assert sorted(backend.keys()) == ["a", "c", "d"]
    assert backend.get("b") is None and backend.evictions == 1 and len(backend) == 3


def test_memory_values_are_stored_as_given_never_serialised() -> None:
    class Unpicklable:
        def __reduce__(self) -> str:
            raise AssertionError("the in-memory cache must not pickle its values")

    value = Unpicklable()
    backend = MemoryBackend(max_entries=2)
    backend.set("k", value, None)
    assert backend.get("k") is value


def test_memory_backend_is_a_cachetools_cache() -> None:
    import cachetools

    backend = MemoryBackend(max_entries=2)
    assert isinstance(backend._data, cachetools.TLRUCache)
    assert backend._data.maxsize == 2


def test_ttl_uses_the_injected_clock() -> None:
    clock = FakeClock()
    cache = ResponseCache(MemoryBackend(clock=clock), ttl=10)
    cache.set("default", "a")
    cache.set("short", "b", ttl=2)
    clock.advance(3)
    assert cache.get("short") is None and cache.get("default") == "a"
    clock.advance(8)
    assert cache.get("default") is None
    assert cache.statistics().expirations == 2


def test_bad_values_and_ttls_are_typed_errors() -> None:
    cache = ResponseCache()
    with pytest.raises(InvalidRequestError):
        cache.set("k", None)
    with pytest.raises(InvalidRequestError):
        cache.set("k", "v", ttl=0)
    with pytest.raises(InvalidRequestError):
        encode_value(object())


def test_codec_round_trips_responses_with_tool_calls() -> None:
    original = response().model_copy(update={"tool_calls": [
        ToolCall(id="c1", function=FunctionCall(name="f", arguments='{"a": 1}'))],
        "raw": {"big": "body"}})
    decoded = decode_value(encode_value(original))
    assert isinstance(decoded, ChatResponse)
    assert decoded.tool_calls == original.tool_calls and decoded.usage == original.usage
    assert decoded.raw is None  # raw provider bodies are not shared
    assert decode_value(b"not json") is None and decode_value(b'{"x": 1}') is None


async def test_async_api_on_memory() -> None:
    cache = ResponseCache()
    await cache.aset("k", "v", ttl=5)
    assert await cache.aget("k") == "v"
    await cache.aclear()
    assert await cache.aget("k") is None


@pytest.mark.redis
async def test_redis_backend_shared_between_caches(redis_url: str) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    one = ResponseCache(RedisBackend(redis_url, namespace=namespace), ttl=60)
    two = ResponseCache(RedisBackend(redis_url, namespace=namespace), ttl=60)
    try:
        await one.aset("answer", response("from redis"), ttl=30)
        got = await two.aget("answer")
        assert isinstance(got, ChatResponse) and got.text == "from redis"
        await one.aset("plain", {"n": [1, 2]})
        assert await two.aget("plain") == {"n": [1, 2]}
        # the TTL is Redis's own
        import redis.asyncio as redis

        raw = redis.Redis.from_url(redis_url)
        try:
            pttl = await raw.pttl(f"{namespace}:answer")
            assert 0 < pttl <= 30_000
        finally:
            await raw.aclose()
        with pytest.raises(ConfigurationError):
            two.get("answer")  # no sync API on a network backend
        assert await two.adelete("answer")
        assert await one.aget("answer") is None
    finally:
        await one.aclear()
        await one.aclose()
        await two.aclose()


@pytest.mark.redis
async def test_redis_backed_layer_serves_a_second_client(redis_url: str) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    backend_a = RedisBackend(redis_url, namespace=namespace)
    backend_b = RedisBackend(redis_url, namespace=namespace)
    transport_a, transport_b = MockLLMTransport("shared answer"), MockLLMTransport("other")
    msgs = [{"role": "user", "content": "hi"}]
    try:
        async with AsyncLLMClient(provider="mock", transport=transport_a,
                                  layers=[partial(CacheLayer, cache=backend_a)]) as a, \
                AsyncLLMClient(provider="mock", transport=transport_b,
                               layers=[partial(CacheLayer, cache=backend_b)]) as b:
            first = await a.chat(model="m", messages=msgs, temperature=0)
            second = await b.chat(model="m", messages=msgs, temperature=0)
            streamed = await b.stream(model="m", messages=msgs,
                                      temperature=0).get_final_response()
        assert first.text == second.text == streamed.text == "shared answer"
        assert second.cache_hit and streamed.cache_hit
        assert transport_b.call_count == 0
    finally:
        await backend_a.aclear()
        await backend_a.aclose()
        await backend_b.aclose()


async def test_unreachable_redis_makes_a_miss_not_an_error() -> None:
    import socket

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = RedisBackend(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    transport = MockLLMTransport("still answered")
    layer_cache = ResponseCache(backend)
    async with AsyncLLMClient(provider="mock", transport=transport,
                              layers=[partial(CacheLayer, cache=layer_cache)]) as client:
        reply = await client.chat(model="m", messages=[{"role": "user", "content": "x"}],
                                  temperature=0)
    assert reply.text == "still answered" and not reply.cache_hit
    assert layer_cache.errors == 2  # the read and the write both failed, quietly
    await backend.aclose()


def test_redis_url_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        RedisBackend("http://localhost:6379")
    with pytest.raises(ConfigurationError):
        RedisBackend("redis://localhost:6379/notanumber")


async def test_memory_backend_is_safe_under_concurrent_writers() -> None:
    backend = MemoryBackend(max_entries=50)

    async def writer(n: int) -> None:
        for i in range(100):
            await backend.aset(f"{n}-{i}", i, None)
            await asyncio.sleep(0)

    await asyncio.gather(*(writer(n) for n in range(5)))
    assert len(backend) == 50 and backend.evictions == 450
