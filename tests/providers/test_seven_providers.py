"""One client, seven providers: the registry knows Azure, Gemini and Bedrock next to the others,
a ``provider/`` prefix routes a call, and one conversation (text, a tool call and its result)
moves from provider to provider, each reading what the others wrote."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from llm_async import AsyncLLMClient
from llm_async.config import PROVIDERS, Settings
from llm_async.infrastructure.transports.anthropic_transport import AnthropicTransport
from llm_async.infrastructure.transports.azure_transport import AzureOpenAITransport
from llm_async.infrastructure.transports.bedrock_transport import BedrockTransport
from llm_async.infrastructure.transports.gemini_transport import GeminiTransport
from llm_async.infrastructure.transports.mock import MockLLMTransport, MockReply
from llm_async.infrastructure.transports.openai_transport import OpenAITransport
from llm_async.infrastructure.transports.openrouter_transport import OpenRouterTransport
from llm_async.infrastructure.transports.registry import (
    get_provider,
    make_transport,
    otel_provider_name,
)
from llm_async.testing import MockProviderServer

KEY = "sk-test-seven-providers-key"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}

#: provider -> the model id a call names (the prefix routes it).
ROUTES = {
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-3-5-haiku-latest",
    "openrouter": "openrouter/openai/gpt-4o-mini",
    "mock": "mock/mock-model",
    "azure": "azure/gpt-4o-mini",
    "gemini": "gemini/gemini-2.5-flash",
    "bedrock": "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0",
}


def test_registry_entries() -> None:
    assert {"azure", "gemini", "bedrock"} <= set(PROVIDERS)
    assert [otel_provider_name(n) for n in ("azure", "gemini", "bedrock")] == [
        "azure.ai.openai", "gcp.gemini", "aws.bedrock"]
    assert get_provider("azure").key_env == "AZURE_OPENAI_API_KEY"
    assert get_provider("azure").base_url_env == "AZURE_OPENAI_ENDPOINT"
    assert get_provider("gemini").key_env == "GEMINI_API_KEY"
    assert get_provider("bedrock").needs_key is False  # the AWS credential chain signs


async def test_registry_builds_each_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    azure = make_transport("azure", api_key=KEY, base_url="https://r.openai.azure.com")
    gemini = make_transport("gemini", api_key=KEY, base_url=None)
    bedrock = make_transport("bedrock", api_key="bedrock-api-key", base_url=None,
                             region="eu-west-1")
    try:
        assert isinstance(azure, AzureOpenAITransport)
        assert isinstance(gemini, GeminiTransport)
        assert gemini.base_url == "https://generativelanguage.googleapis.com/v1beta"
        assert isinstance(bedrock, BedrockTransport)
        assert bedrock.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    finally:
        for transport in (azure, gemini, bedrock):
            await transport.aclose()


async def test_settings_and_client_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with MockProviderServer() as server:
        settings = Settings.from_env({
            "LLM_PROVIDER": "gemini", "GEMINI_API_KEY": KEY,
            "GEMINI_BASE_URL": server.gemini_base_url})
        assert settings.api_key("gemini") == KEY and KEY not in repr(settings)
        async with AsyncLLMClient(settings=settings, layers=[]) as client:
            reply = await client.chat(model="gemini-2.5-flash",
                                      messages=[{"role": "user", "content": "echo: from env"}])
        assert (reply.text, reply.provider) == ("from env", "gemini")
        assert server.requests[-1].headers["x-goog-api-key"] == "***"  # recorded, redacted

        azure = Settings.from_env({"LLM_PROVIDER": "azure", "AZURE_OPENAI_API_KEY": KEY,
                                   "AZURE_OPENAI_ENDPOINT": server.azure_endpoint})
        monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
        async with AsyncLLMClient(settings=azure, layers=[]) as client:
            reply = await client.chat(model="gpt-4o-mini",
                                      messages=[{"role": "user", "content": "echo: azure"}])
        assert (reply.text, reply.provider) == ("azure", "azure")
        assert server.requests[-1].path == "/openai/deployments/gpt-4o-mini/chat/completions"


@pytest.fixture
async def everywhere() -> AsyncIterator[tuple[AsyncLLMClient, MockProviderServer,
                                              MockLLMTransport]]:
    """One client with a transport for each of the seven providers (six over loopback HTTP to
    the embedded server, each in its own dialect, and the in-process mock)."""
    mock = MockLLMTransport()
    async with MockProviderServer() as server:
        transports: dict[str, Any] = {
            "openai": OpenAITransport(KEY, server.base_url),
            "anthropic": AnthropicTransport(KEY, server.anthropic_base_url),
            "openrouter": OpenRouterTransport(KEY, server.openrouter_base_url),
            "mock": mock,
            "azure": AzureOpenAITransport(KEY, endpoint=server.azure_endpoint,
                                          api_version="2024-10-21"),
            "gemini": GeminiTransport(KEY, server.gemini_base_url),
            "bedrock": BedrockTransport(base_url=server.bedrock_base_url, region="us-east-1",
                                        aws_access_key_id="AKIDSEVEN",
                                        aws_secret_access_key="seven-secret-key"),
        }
        async with AsyncLLMClient("openai", transports=transports, layers=[]) as client:
            yield client, server, mock


async def test_one_conversation_across_all_seven(
        everywhere: tuple[AsyncLLMClient, MockProviderServer, MockLLMTransport]) -> None:
    client, server, mock = everywhere
    order = ["azure", "gemini", "bedrock", "openai", "anthropic", "openrouter", "mock"]
    messages: list[Any] = [{"role": "system", "content": "Answer with what you are told."}]
    seen: list[str] = []
    for turn, provider in enumerate(order):
        words = f"turn {turn} answered by {provider}"
        if provider == "mock":
            mock.script(MockReply(text=words))
        messages.append({"role": "user", "content": f"echo: {words}"})
        reply = await client.chat(model=ROUTES[provider], messages=messages)
        assert (reply.provider, reply.text) == (provider, words)
        assert reply.usage.input_tokens > 0 and reply.usage.output_tokens == len(words.split())
        seen.append(reply.provider)
        messages.append(reply.message)
    assert seen == order
    # Every HTTP provider received the whole conversation so far, in its own dialect.
    assert [r.path for r in server.requests] == [
        "/openai/deployments/gpt-4o-mini/chat/completions",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse",
        "/v1/chat/completions", "/v1/messages", "/api/v1/chat/completions"]
    bedrock_body = server.requests[2].body
    assert [m["role"] for m in bedrock_body["messages"]] == ["user", "assistant"] * 2 + ["user"]
    assert bedrock_body["system"] == [{"text": "Answer with what you are told."}]
    assert mock.requests[-1].messages[-2].text == "turn 5 answered by openrouter"


async def test_a_tool_call_handed_from_provider_to_provider(
        everywhere: tuple[AsyncLLMClient, MockProviderServer, MockLLMTransport]) -> None:
    client, server, _ = everywhere
    question = {"role": "user", "content": "echo: it is sunny in Paris"}
    # Gemini calls the tool; Bedrock reads the call and its result and answers; Azure goes on.
    call_reply = await client.chat(model=ROUTES["gemini"], tools=[WEATHER], messages=[question])
    assert call_reply.finish_reason == "tool_calls"
    [call] = call_reply.tool_calls
    messages: list[Any] = [question, call_reply.message,
                           {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    answer = await client.chat(model=ROUTES["bedrock"], tools=[WEATHER], messages=messages)
    assert (answer.provider, answer.text, answer.tool_calls) == (
        "bedrock", "it is sunny in Paris", [])
    sent = server.requests[-1].body["messages"]
    assert sent[1]["content"] == [{"toolUse": {"toolUseId": call.id, "name": "get_weather",
                                               "input": call.parsed_arguments()}}]
    assert sent[2]["content"][0] == {"toolResult": {"toolUseId": call.id,
                                                    "content": [{"text": "sunny"}]}}

    messages += [answer.message, {"role": "user", "content": "echo: thanks"}]
    stream = client.stream(model=ROUTES["azure"], tools=[WEATHER], tool_choice="none",
                           messages=messages)
    async with stream as chunks:
        text = "".join([c.delta async for c in chunks])
    assert text == "thanks"
    assert stream.final_response is not None and stream.final_response.provider == "azure"


def test_a_secret_that_prefixes_another_leaves_nothing_of_either() -> None:
    from llm_async.errors import redact, register_secret

    register_secret("tok-prefix")
    register_secret("tok-prefix-and-the-rest-of-a-longer-secret")
    text = "a: tok-prefix-and-the-rest-of-a-longer-secret, b: tok-prefix"
    assert redact(text) == "a: ***, b: ***"


async def test_each_transport_takes_an_aiohttp_session_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import aiohttp

    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-env-key")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-env-key")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-env-key")
    async with aiohttp.ClientSession() as session:
        for cls in (AzureOpenAITransport, GeminiTransport, BedrockTransport):
            transport = cls(session)
            assert transport.session is session, cls
            assert "env-key" in json_dumps(transport.auth_headers()), cls  # key from the env
            with pytest.raises(TypeError):
                cls(session, session=session)


def json_dumps(value: Any) -> str:
    import json

    return json.dumps(value)
