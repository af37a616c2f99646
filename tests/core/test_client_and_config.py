"""Client construction, routing, the layer fold, the mock transport and env configuration."""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator

import pytest

import llm_async
from llm_async import (
    AsyncLLMClient,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ConfigurationError,
    InvalidRequestError,
    RateLimitError,
    Settings,
    StreamError,
)
from llm_async.context import CallContext
from llm_async.domain.ports import Layer, aclosing
from llm_async.infrastructure.transports.mock import MockLLMTransport, MockReply
from llm_async.testing import tool_call
from llm_async.types import build_request

USER = [{"role": "user", "content": "Hello"}]


def test_every_public_name_resolves() -> None:
    for name in llm_async.__all__:
        assert getattr(llm_async, name) is not None, name
    assert llm_async.__all__ == sorted(llm_async.__all__)
    with pytest.raises(AttributeError):
        _ = llm_async.NoSuchThing  # type: ignore[attr-defined]


class Tag(Layer):
    """Appends its name to a shared log on the way in, for chat and stream."""

    def __init__(self, inner: object, name: str, log: list[str]) -> None:
        super().__init__(inner)  # type: ignore[arg-type]
        self.name = name
        self.log = log

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        self.log.append(self.name)
        return await self.inner.chat(request, ctx)

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        self.log.append(self.name)
        try:
            async with aclosing(self.inner.stream(request, ctx)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            self.log.append(f"/{self.name}")


async def test_layers_fold_outermost_first() -> None:
    log: list[str] = []
    client = AsyncLLMClient(provider="mock", layers=[
        functools.partial(Tag, name="outer", log=log),
        functools.partial(Tag, name="inner", log=log),
    ])
    await client.chat(model="m", messages=USER)
    assert log == ["outer", "inner"]
    log.clear()
    async with client.stream(model="m", messages=USER) as stream:
        async for _ in stream:
            break
    assert log == ["outer", "inner", "/inner", "/outer"]     # released on early exit
    assert client.layer(Tag) is client.stack[0]
    assert isinstance(client.stack[-1], MockLLMTransport)
    assert "Tag -> Tag -> MockLLMTransport" in repr(client)


async def test_mock_transport_scripting() -> None:
    transport = MockLLMTransport("default")
    transport.script("first", RateLimitError("slow down", retry_after=1.0),
                     MockReply(tool_calls=[tool_call("lookup", '{"q": 1}')]),
                     MockReply(text="a b c d", error=RateLimitError("cut"), fail_after=2))
    client = AsyncLLMClient(transport=transport, provider="mock", layers=[])
    assert (await client.chat(model="m", messages=USER)).text == "first"
    with pytest.raises(RateLimitError):
        await client.chat(model="m", messages=USER)
    reply = await client.chat(model="m", messages=USER)
    assert reply.finish_reason == "tool_calls" and reply.tool_calls[0].name == "lookup"
    got = []
    with pytest.raises(StreamError) as info:
        async for chunk in client.stream(model="m", messages=USER):
            got.append(chunk.delta)
    assert got == ["a", " b"] and isinstance(info.value.cause, RateLimitError)
    assert (await client.chat(model="m", messages=USER, max_tokens=1)).finish_reason == "stop"
    assert transport.call_count == 5
    await client.aclose()
    assert transport.closed


async def test_design_document_style_transport_call() -> None:
    transport = MockLLMTransport(default_response="Test response")
    response = await transport.achat_completion(
        messages=[{"role": "user", "content": "Hello"}], model="mock-model")
    assert response.text == "Test response"


async def test_multi_provider_routing() -> None:
    a, b = MockLLMTransport("from a"), MockLLMTransport("from b")
    client = AsyncLLMClient(provider="openai", transports={"openai": a, "anthropic": b},
                            layers=[])
    assert (await client.chat(model="openai/gpt-4o-mini", messages=USER)).text == "from a"
    assert (await client.chat(model="anthropic/claude-3-5-haiku", messages=USER)).text == "from b"
    assert (await client.chat(model="gpt-4o", messages=USER)).text == "from a"
    assert b.requests[-1].model == "claude-3-5-haiku" and b.requests[-1].provider == "anthropic"
    # Unknown prefixes are model ids (OpenRouter style), sent unchanged to the default.
    assert client.resolve("meta/llama-3") == ("openai", "meta/llama-3")
    await client.aclose()
    assert a.closed and b.closed


async def test_request_object_and_per_call_keywords() -> None:
    transport = MockLLMTransport()
    client = AsyncLLMClient(transport=transport, provider="mock", layers=[], model="default-m")
    await client.chat(messages=USER, user_id="u1", project_id="p1", timeout=3,
                      extra_headers={"X-A": "1"}, options={"cache": "bypass"})
    sent = transport.requests[-1]
    assert sent.model == "default-m" and sent.user_id == "u1" and sent.project_id == "p1"
    assert sent.timeout is not None and sent.timeout.total == 3
    assert sent.extra_headers == {"X-A": "1"} and sent.options == {"cache": "bypass"}
    req = build_request(model="x", messages=USER)
    await client.chat(request=req)
    assert transport.requests[-1] is req
    with pytest.raises(InvalidRequestError):
        await client.chat(request=req, temperature=1)
    await client.aclose()
    with pytest.raises(InvalidRequestError, match="closed"):
        await client.chat(model="m", messages=USER)


def test_unknown_provider() -> None:
    with pytest.raises(InvalidRequestError, match="unknown provider"):
        AsyncLLMClient(provider="nope", layers=[])


def test_settings_from_env() -> None:
    s = Settings.from_env({"LLM_PROVIDER": "Anthropic", "LLM_FORCE_MOCK": "yes",
                           "LLM_MAX_RETRIES": "4", "LLM_CACHE_ENABLED": "1",
                           "ANTHROPIC_API_KEY": "sk-ant-secret-1", "LLM_CACHE_TTL": ""})
    assert s.provider == "anthropic" and s.effective_provider == "mock"
    assert s.max_retries == 4 and s.cache_enabled and s.cache_ttl == 3600.0
    assert s.api_key("anthropic") == "sk-ant-secret-1"
    assert "sk-ant-secret-1" not in repr(s)
    assert Settings.from_env({"LLM_MAX_RETRIES": "2"}, max_retries=7).max_retries == 7


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LLM_PROVIDER": "watsonx"}, "LLM_PROVIDER"),
        ({"LLM_MAX_RETRIES": "many"}, "LLM_MAX_RETRIES"),
        ({"LLM_MAX_RETRIES": "-1"}, "LLM_MAX_RETRIES"),
        ({"LLM_DAILY_BUDGET": "0"}, "LLM_DAILY_BUDGET"),
        ({"LLM_FORCE_MOCK": "maybe"}, "LLM_FORCE_MOCK"),
        ({"LLM_CIRCUIT_TIMEOUT": "soon"}, "LLM_CIRCUIT_TIMEOUT"),
        ({"OPENAI_BASE_URL": "localhost:8000"}, "OPENAI_BASE_URL"),
    ],
)
def test_bad_env_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert info.value.variable == variable
    assert variable in str(info.value) and repr(env[variable]) in str(info.value)


def test_force_mock_overrides_explicit_provider() -> None:
    client = AsyncLLMClient(provider="openai", settings=Settings.from_env({"LLM_FORCE_MOCK": "1"}),
                            layers=[])
    assert client.provider == "mock" and isinstance(client.stack[-1], MockLLMTransport)
