"""OpenRouter wire format, checked with aioresponses against the shapes of OpenRouter's
documented examples (and, for the OpenAI format it extends, OpenAI's)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aioresponses import aioresponses
from yarl import URL

from llm_async import AsyncLLMClient
from llm_async.errors import (
    InsufficientCreditsError,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    StreamError,
)
from llm_async.infrastructure.sse import SSEDecoder
from llm_async.infrastructure.transports.openai_transport import OpenAITransport
from llm_async.infrastructure.transports.openrouter_transport import OpenRouterTransport

API = "https://openrouter.ai/api/v1/chat/completions"
KEY = "sk-or-v1-wire-test-key"


def completion(content: str = "The meaning of life is 42.", **usage: Any) -> dict[str, Any]:
    return {
        "id": "gen-1234567890-abcdefghi",
        "provider": "OpenAI",
        "model": "openai/gpt-4o",
        "object": "chat.completion",
        "created": 1735317796,
        "choices": [{"index": 0, "finish_reason": "stop", "native_finish_reason": "stop",
                     "message": {"role": "assistant", "content": content, "refusal": None}}],
        "usage": {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23, **usage},
    }


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
          **extra: Any) -> dict[str, Any]:
    return {"id": "gen-stream-1", "provider": "OpenAI", "model": "openai/gpt-4o",
            "object": "chat.completion.chunk", "created": 1735317796,
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **extra}


def sse(*items: Any) -> bytes:
    out = []
    for item in items:
        out.append(item if isinstance(item, str) else f"data: {json.dumps(item)}\n\n")
    return "".join(out).encode()


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENROUTER_BASE_URL", "OPENROUTER_SITE_URL", "OPENROUTER_APP_NAME",
                 "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def client() -> AsyncIterator[AsyncLLMClient]:
    transport = OpenRouterTransport(KEY, site_url="https://myapp.example",
                                    app_name="My App")
    async with AsyncLLMClient("openrouter", transport=transport, layers=[]) as c:
        yield c


def sent(m: aioresponses, index: int = -1, url: str = API) -> tuple[dict[str, Any], dict[str, str]]:
    call = m.requests[("POST", URL(url))][index]
    return json.loads(call.kwargs["data"]), call.kwargs["headers"]


async def test_documented_request(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, payload=completion(cost=0.0000885, is_byok=False))
    question = {"role": "user", "content": "What is the meaning of life?"}
    reply = await client.chat(model="openai/gpt-4o", messages=[question])
    body, headers = sent(mocked)
    assert body == {"model": "openai/gpt-4o", "messages": [question], "usage": {"include": True}}
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["HTTP-Referer"] == "https://myapp.example"
    assert headers["X-Title"] == "My App"
    assert reply.text == "The meaning of life is 42."
    assert reply.provider == "openrouter"
    assert reply.provider_cost == pytest.approx(0.0000885)
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (14, 9)


async def test_attribution_headers_from_the_environment(mocked: aioresponses,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_SITE_URL", "https://env.example")
    monkeypatch.setenv("OPENROUTER_APP_NAME", "Env App")
    mocked.post(API, payload=completion())
    mocked.post(API, payload=completion())
    async with OpenRouterTransport(KEY) as t:
        await t.achat_completion(messages=[{"role": "user", "content": "hi"}], model="openai/gpt-4")
    async with OpenRouterTransport(KEY, site_url="", app_name="") as t:  # explicit "" opts out
        await t.achat_completion(messages=[{"role": "user", "content": "hi"}], model="openai/gpt-4")
    first, second = sent(mocked, 0)[1], sent(mocked, 1)[1]
    assert (first["HTTP-Referer"], first["X-Title"]) == ("https://env.example", "Env App")
    assert "HTTP-Referer" not in second and "X-Title" not in second


async def test_routing_and_fallback_options_pass_through(mocked: aioresponses) -> None:
    mocked.post(API, payload=completion())
    mocked.post(API, payload=completion())
    transport = OpenRouterTransport(KEY, routing={"provider": {"sort": "price"}})
    async with AsyncLLMClient("openrouter", transport=transport, layers=[]) as client:
        await client.chat(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])
        await client.chat(
            model="anthropic/claude-3.5-sonnet", messages=[{"role": "user", "content": "hi"}],
            extra_body={"models": ["anthropic/claude-3.5-sonnet", "gryphe/mythomax-l2-13b"],
                        "route": "fallback",
                        "provider": {"order": ["Anthropic", "Together"],
                                     "allow_fallbacks": False},
                        "usage": {"include": False}})
    first, _ = sent(mocked, 0)
    second, _ = sent(mocked, 1)
    assert first["provider"] == {"sort": "price"}
    assert second == {
        "model": "anthropic/claude-3.5-sonnet",
        "messages": [{"role": "user", "content": "hi"}],
        "models": ["anthropic/claude-3.5-sonnet", "gryphe/mythomax-l2-13b"],
        "route": "fallback",
        "provider": {"order": ["Anthropic", "Together"], "allow_fallbacks": False},
        "usage": {"include": False},
    }


@pytest.mark.parametrize(("extra", "field"), [
    ({"models": "openai/gpt-4"}, "extra_body.models"),
    ({"models": ["openai/gpt-4", 3]}, "extra_body.models"),
    ({"provider": ["OpenAI"]}, "extra_body.provider"),
    ({"route": "cheapest"}, "extra_body.route"),
])
async def test_bad_routing_is_rejected_before_sending(mocked: aioresponses, client: AsyncLLMClient,
                                                      extra: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await client.chat(model="openai/gpt-4", messages=[{"role": "user", "content": "hi"}],
                          extra_body=extra)
    assert caught.value.field == field
    assert not mocked.requests


def test_bad_default_routing_is_a_construction_error() -> None:
    with pytest.raises(ValueError, match="unknown routing"):
        OpenRouterTransport(KEY, routing={"temperature": 1})
    with pytest.raises(InvalidRequestError):
        OpenRouterTransport(KEY, routing={"models": "openai/gpt-4"})


async def test_402_is_insufficient_credits(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, status=402, payload={"error": {
        "code": 402, "message": "Insufficient credits. Add more using https://openrouter.ai/credits",
        "metadata": {"limit_source": "openrouter_credits"}}})
    mocked.post(API, status=402, headers={"Retry-After": "3"}, payload={"error": {
        "code": 402, "message": "In-flight budget exceeded",
        "metadata": {"limit_source": "openrouter_in_flight_budget"}}})
    with pytest.raises(InsufficientCreditsError) as caught:
        await client.chat(model="openai/gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.retryable is False
    assert caught.value.provider == "openrouter"
    with pytest.raises(InsufficientCreditsError) as waiting:
        await client.chat(model="openai/gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert (waiting.value.retryable, waiting.value.retry_after) == (True, 3.0)


async def test_error_object_in_a_200_body(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, payload={"error": {"code": 429, "message": "Rate limited upstream",
                                        "metadata": {"provider_name": "Together"}}})
    with pytest.raises(RateLimitError) as caught:
        await client.chat(model="openai/gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status == 429


async def test_finish_reason_error_in_a_200_body(mocked: aioresponses,
                                                 client: AsyncLLMClient) -> None:
    body = completion("partial")
    body["choices"][0]["finish_reason"] = "error"
    mocked.post(API, payload=body)
    with pytest.raises(ServerError) as caught:
        await client.chat(model="openai/gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status == 502


async def test_stream_with_comments_and_cost(mocked: aioresponses,
                                             client: AsyncLLMClient) -> None:
    body = sse(
        ": OPENROUTER PROCESSING\n\n",
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello"}),
        ": OPENROUTER PROCESSING\n\n",
        chunk({"content": " there"}),
        chunk({}, "stop"),
        {**chunk(), "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2,
                                             "total_tokens": 12, "cost": 0.00042,
                                             "prompt_tokens_details": {"cached_tokens": 4}}},
        "data: [DONE]\n\n",
    )
    mocked.post(API, body=body, headers={"Content-Type": "text/event-stream",
                                         "X-Generation-Id": "gen-stream-1"})
    stream = client.stream(model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    async with stream:
        chunks = [c async for c in stream]
    sent_body, _ = sent(mocked)
    assert sent_body["stream"] is True
    assert sent_body["stream_options"] == {"include_usage": True}
    assert sent_body["usage"] == {"include": True}
    assert [c.delta for c in chunks if c.delta] == ["Hello", " there"]
    assert chunks[-1].provider_cost == pytest.approx(0.00042)
    assert chunks[-1].usage is not None and chunks[-1].usage.cache_read_tokens == 4
    final = stream.final_response
    assert final is not None
    assert final.text == "Hello there"
    assert final.provider_cost == pytest.approx(0.00042)


def test_sse_decoder_skips_openrouter_comments() -> None:
    decoder = SSEDecoder()
    raw = b': OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\r\n\r\ndata: {"a":1}\n\n'
    events = [e for i in range(len(raw)) for e in decoder.feed(raw[i:i + 1])] + decoder.end()
    assert [e.data for e in events] == [b'{"a":1}']


@pytest.mark.parametrize(("error", "cls", "status"), [
    ({"code": 502, "message": "Provider returned error"}, ServerError, 502),
    ({"code": 429, "message": "Rate limited"}, RateLimitError, 429),
    ({"message": "no code at all"}, ServerError, 502),
])
async def test_error_object_mid_stream(mocked: aioresponses, client: AsyncLLMClient,
                                       error: dict[str, Any], cls: type, status: int) -> None:
    body = sse(
        chunk({"content": "Once"}),
        {**chunk({"content": ""}, "error"), "error": error},
    )
    mocked.post(API, body=body, headers={"Content-Type": "text/event-stream"})
    got: list[str] = []
    with pytest.raises(StreamError) as caught:
        async with client.stream(model="openai/gpt-4o",
                                 messages=[{"role": "user", "content": "Hi"}]) as s:
            async for c in s:
                got.append(c.delta)
    assert got == ["Once"]
    assert type(caught.value.cause) is cls
    assert caught.value.status == status


async def test_finish_reason_error_without_an_error_object_mid_stream(
        mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, body=sse(chunk({"content": "Once"}), chunk({}, "error")),
                headers={"Content-Type": "text/event-stream"})
    with pytest.raises(StreamError) as caught:
        async with client.stream(model="openai/gpt-4o",
                                 messages=[{"role": "user", "content": "Hi"}]) as s:
            async for _ in s:
                pass
    assert isinstance(caught.value.cause, ServerError)


async def test_openai_documented_request(mocked: aioresponses) -> None:
    """The OpenAI transport OpenRouter extends, for comparison: no usage.include, no routing."""
    url = "https://api.openai.com/v1/chat/completions"
    mocked.post(url, payload={**completion(), "model": "gpt-4o"})
    async with OpenAITransport("sk-openai-wire-key") as t:
        await t.achat_completion(model="gpt-4o", temperature=0.2, tools=[{
            "type": "function", "function": {
                "name": "get_current_weather", "description": "Get the current weather",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                               "required": ["location"]}}}], tool_choice="auto", messages=[
            {"role": "developer", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What's the weather like in Boston today?"}])
    body, headers = sent(mocked, url=url)
    assert body == {
        "model": "gpt-4o",
        "messages": [{"role": "developer", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "What's the weather like in Boston today?"}],
        "temperature": 0.2,
        "tools": [{"type": "function", "function": {
            "name": "get_current_weather", "description": "Get the current weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                           "required": ["location"]}}}],
        "tool_choice": "auto",
    }
    assert headers["Authorization"] == "Bearer sk-openai-wire-key"
