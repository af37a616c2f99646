"""Choosing a provider: by argument, from the environment, and several in one client routed by a
``provider/model`` prefix — end to end against the embedded server's three dialects."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llm_async import AsyncLLMClient
from llm_async.errors import AuthenticationError, InvalidRequestError
from llm_async.infrastructure.transports.anthropic_transport import AnthropicTransport
from llm_async.infrastructure.transports.mock import MockLLMTransport
from llm_async.infrastructure.transports.openai_transport import OpenAITransport
from llm_async.infrastructure.transports.openrouter_transport import OpenRouterTransport
from llm_async.testing import MockProviderServer
from llm_async.types import build_request

KEY = "sk-test-selection-key"
HELLO = [{"role": "user", "content": "echo: hello"}]


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer(require_api_key=KEY) as s:
        yield s


@pytest.mark.parametrize(("provider", "path", "model", "cls"), [
    ("openai", "/v1/chat/completions", "gpt-4o-mini", OpenAITransport),
    ("anthropic", "/v1/messages", "claude-3-5-haiku-latest", AnthropicTransport),
    ("openrouter", "/api/v1/chat/completions", "anthropic/claude-3.5-haiku", OpenRouterTransport),
])
async def test_provider_argument(server: MockProviderServer, provider: str, path: str,
                                 model: str, cls: type) -> None:
    base_url = {"openai": server.base_url, "anthropic": server.anthropic_base_url,
                "openrouter": server.openrouter_base_url}[provider]
    async with AsyncLLMClient(provider, api_key=KEY, base_url=base_url, layers=[]) as client:
        assert isinstance(client.transports[provider], cls)
        reply = await client.chat(model=model, messages=HELLO)
        async with client.stream(model=model, messages=HELLO) as stream:
            text = "".join([c.delta async for c in stream])
    assert reply.text == text == "hello"
    assert reply.provider == provider
    assert server.stats()["by_path"] == {path: 2}
    assert server.requests[-1].body["model"] == model


async def test_mock_provider() -> None:
    async with AsyncLLMClient("mock", layers=[]) as client:
        assert isinstance(client.transports["mock"], MockLLMTransport)
        reply = await client.chat(model="anything", messages=HELLO)
    assert reply.provider == "mock" and reply.text


@pytest.mark.parametrize(("provider", "path"), [
    ("anthropic", "/v1/messages"),
    ("openrouter", "/api/v1/chat/completions"),
    ("openai", "/v1/chat/completions"),
])
async def test_provider_and_key_from_the_environment(server: MockProviderServer, provider: str,
                                                     path: str) -> None:
    prefix = provider.upper()
    base_url = {"openai": server.base_url, "anthropic": server.anthropic_base_url,
                "openrouter": server.openrouter_base_url}[provider]
    environ = {"LLM_PROVIDER": provider, "LLM_MODEL": "vendor/some-model",
               f"{prefix}_API_KEY": KEY, f"{prefix}_BASE_URL": base_url}
    async with AsyncLLMClient.from_env(environ, layers=[]) as client:
        assert client.provider == provider
        reply = await client.chat(messages=HELLO)  # the model comes from LLM_MODEL
    assert reply.text == "hello"
    assert server.stats()["by_path"] == {path: 1}

    wrong = {**environ, f"{prefix}_API_KEY": "sk-wrong-key-000"}
    async with AsyncLLMClient.from_env(wrong, layers=[]) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.chat(messages=HELLO)
    assert caught.value.provider == provider


async def test_force_mock_overrides_the_provider() -> None:
    environ = {"LLM_PROVIDER": "anthropic", "LLM_FORCE_MOCK": "1"}
    async with AsyncLLMClient.from_env(environ, layers=[]) as client:
        assert client.provider == "mock"
        reply = await client.chat(model="claude-3-5-haiku", messages=HELLO)
    assert reply.provider == "mock"


async def test_one_client_routes_by_provider_prefix(server: MockProviderServer) -> None:
    transports = {
        "openai": OpenAITransport(KEY, server.base_url),
        "anthropic": AnthropicTransport(KEY, server.anthropic_base_url),
        "openrouter": OpenRouterTransport(KEY, server.openrouter_base_url),
    }
    async with AsyncLLMClient("openai", transports=transports, layers=[]) as client:
        gpt = await client.chat(model="openai/gpt-4o-mini", messages=HELLO)
        claude = await client.chat(model="anthropic/claude-3-5-haiku", messages=HELLO)
        routed = await client.chat(model="openrouter/meta-llama/llama-3-8b", messages=HELLO)
        plain = await client.chat(model="gpt-4o", messages=HELLO)
        async with client.stream(model="anthropic/claude-3-5-haiku", messages=HELLO) as stream:
            streamed = "".join([c.delta async for c in stream])
        assert stream.final_response is not None
        assert stream.final_response.provider == "anthropic"
        with pytest.raises(InvalidRequestError, match="unknown provider"):
            await client.chat(request=build_request(model="m", provider="nope", messages=HELLO))
    assert [r.provider for r in (gpt, claude, routed, plain)] == [
        "openai", "anthropic", "openrouter", "openai"]
    assert {r.text for r in (gpt, claude, routed, plain)} == {"hello"} and streamed == "hello"
    assert server.stats()["by_path"] == {"/v1/chat/completions": 2, "/v1/messages": 2,
                                         "/api/v1/chat/completions": 1}
    models = [r.body["model"] for r in server.requests]
    assert models == ["gpt-4o-mini", "claude-3-5-haiku", "meta-llama/llama-3-8b", "gpt-4o",
                      "claude-3-5-haiku"]
    # Closing the client closed every transport's session.
    assert all(t.connector is None for t in transports.values())


async def test_openrouter_ids_reach_openrouter_as_written(server: MockProviderServer) -> None:
    transports = {
        "openrouter": OpenRouterTransport(KEY, server.openrouter_base_url),
        "anthropic": AnthropicTransport(KEY, server.anthropic_base_url),
    }
    async with AsyncLLMClient("openrouter", transports=transports, layers=[]) as client:
        via_router = await client.chat(model="openai/gpt-4", messages=HELLO)
        direct = await client.chat(model="anthropic/claude-3-opus", messages=HELLO)
    assert (via_router.provider, direct.provider) == ("openrouter", "anthropic")
    assert [r.body["model"] for r in server.requests] == ["openai/gpt-4", "claude-3-opus"]


def test_unknown_provider() -> None:
    with pytest.raises(InvalidRequestError):
        AsyncLLMClient("bard", layers=[])
