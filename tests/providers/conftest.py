"""The conformance harness: one object per provider that knows how to script that provider.

The same test body runs against OpenAI, Anthropic, OpenRouter, Azure OpenAI, Gemini and Bedrock
(real HTTP to the embedded server, each in its own dialect) and the in-process mock transport.
A harness hides the only things that differ: which model id to use, how to make the backend
answer a given text, fail with a status, break a stream, and how to count requests and
connections.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from llm_async import AsyncLLMClient
from llm_async.errors import APIConnectionError, error_from_response
from llm_async.infrastructure.transports.anthropic_transport import AnthropicTransport
from llm_async.infrastructure.transports.azure_transport import AzureOpenAITransport
from llm_async.infrastructure.transports.base import HTTPTransport
from llm_async.infrastructure.transports.bedrock_transport import BedrockTransport
from llm_async.infrastructure.transports.gemini_transport import GeminiTransport
from llm_async.infrastructure.transports.mock import MockLLMTransport, MockReply, tool_call
from llm_async.infrastructure.transports.openai_transport import OpenAITransport
from llm_async.infrastructure.transports.openrouter_transport import OpenRouterTransport
from llm_async.testing import Fault, MockProviderServer

PROVIDERS = ("openai", "anthropic", "openrouter", "mock", "azure", "gemini", "bedrock")
HTTP_PROVIDERS = ("openai", "anthropic", "openrouter", "azure", "gemini", "bedrock")
#: Providers that stream a tool call's arguments whole, in one fragment.
WHOLE_TOOL_CALLS = ("gemini",)

MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "openrouter": "openai/gpt-4o-mini",
    "mock": "mock-model",
    "azure": "gpt-4o-mini",
    "gemini": "gemini-2.5-flash",
    "bedrock": "anthropic.claude-3-5-haiku-20241022-v1:0",
}

API_KEY = "sk-test-conformance-key"
#: SigV4 credentials for the Bedrock harness (the embedded server reads the key id).
AWS_KEY_ID = "AKIDCONFORMANCE"
AWS_SECRET = "conformance-secret-access-key"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def make_transport(name: str, server: MockProviderServer | None) -> Any:
    """A transport for ``name``, aimed at ``server``'s dialect for that provider."""
    if name == "openai":
        assert server is not None
        return OpenAITransport(API_KEY, server.base_url)
    if name == "anthropic":
        assert server is not None
        return AnthropicTransport(API_KEY, server.anthropic_base_url)
    if name == "openrouter":
        assert server is not None
        return OpenRouterTransport(API_KEY, server.openrouter_base_url, app_name="conformance")
    if name == "azure":
        assert server is not None
        return AzureOpenAITransport(API_KEY, endpoint=server.azure_endpoint,
                                    api_version="2024-10-21")
    if name == "gemini":
        assert server is not None
        return GeminiTransport(API_KEY, server.gemini_base_url)
    if name == "bedrock":
        assert server is not None
        return BedrockTransport(base_url=server.bedrock_base_url, region="us-east-1",
                                aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=AWS_SECRET)
    return MockLLMTransport()


class Harness:
    """One provider under test: its client, transport and (for HTTP) the embedded server."""

    def __init__(self, name: str, server: MockProviderServer | None,
                 client: AsyncLLMClient, transport: Any) -> None:
        self.name = name
        self.server = server
        self.client = client
        self.transport = transport
        self.model = MODELS[name]
        self.weather_tool = WEATHER_TOOL

    @property
    def is_http(self) -> bool:
        return self.server is not None

    @property
    def streams_tool_arguments(self) -> bool:
        """Whether the provider streams a tool call's arguments in pieces."""
        return self.name not in WHOLE_TOOL_CALLS

    @property
    def mock(self) -> MockLLMTransport:
        assert isinstance(self.transport, MockLLMTransport)
        return self.transport

    # -- shaping the next answer -------------------------------------------------------------

    def echo(self, text: str, *, system: str | None = None) -> list[dict[str, Any]]:
        """Messages whose answer is exactly ``text`` (the server echoes ``echo:`` prompts; the
        mock is scripted)."""
        if not self.is_http:
            self.mock.script(MockReply(text=text))
        messages = [{"role": "user", "content": f"echo: {text}"}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        return messages

    def expect_tool_call(self) -> None:
        """The next answer calls ``get_weather`` (the server does so by itself)."""
        if not self.is_http:
            self.mock.script(MockReply(tool_calls=[
                tool_call("get_weather", '{"city": "Paris"}', call_id="call_mock_1")]))

    def fail(self, status: int, **fault: Any) -> None:
        """The next request fails with ``status`` (and the provider's usual error body)."""
        if self.server is not None:
            self.server.add_fault(Fault(status=status, **fault))
        else:
            self.mock.script(error_from_response(
                status, {"error": {"message": f"scripted {status}"}}, provider="mock"))

    def fail_mid_stream(self, after: int) -> None:
        """The next stream sends ``after`` chunks, then an in-stream error."""
        if self.server is not None:
            self.server.add_fault(Fault(error_after=after))
        else:
            self.mock.script(MockReply(text="one two three four five", fail_after=after,
                                       error=error_from_response(500, None, provider="mock")))

    def cut_stream(self, after: int) -> None:
        """The next stream's connection drops after ``after`` chunks."""
        if self.server is not None:
            self.server.add_fault(Fault(cut_after=after))
        else:
            self.mock.script(MockReply(text="one two three four five", fail_after=after,
                                       error=APIConnectionError("connection dropped",
                                                                provider="mock")))

    def slow_stream(self, token_delay: float) -> None:
        """Streams pace their chunks ``token_delay`` seconds apart (the next one, for HTTP)."""
        if self.server is not None:
            self.server.add_fault(Fault(token_delay=token_delay))
        else:
            self.mock.token_delay = token_delay  # paces streams only

    # -- observing ---------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """Requests the backend received."""
        if self.server is not None:
            return self.server.request_count
        return self.mock.call_count

    def connections_in_use(self) -> int:
        """Connections checked out of the transport's pool right now."""
        assert isinstance(self.transport, HTTPTransport)
        connector = self.transport.connector
        assert connector is not None, "the transport never opened its session"
        return len(connector._acquired)

    def idle_connections(self) -> int:
        """Keep-alive connections waiting in the pool."""
        assert isinstance(self.transport, HTTPTransport)
        connector = self.transport.connector
        assert connector is not None
        return sum(len(conns) for conns in connector._conns.values())

    def skip_for(self, *names: str, reason: str) -> None:
        """Mark a provider gap in the suite: skip, with the reason, when this is one of
        ``names``."""
        if self.name in names:
            pytest.skip(f"{self.name}: {reason}")


@pytest.fixture(params=PROVIDERS)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A :class:`Harness` for each provider: a client with no layers on its transport."""
    name: str = request.param
    if name == "mock":
        transport = make_transport(name, None)
        async with AsyncLLMClient("mock", transport=transport, layers=[]) as client:
            yield Harness(name, None, client, transport)
        return
    async with MockProviderServer() as server:
        transport = make_transport(name, server)
        async with AsyncLLMClient(name, transport=transport, layers=[]) as client:
            yield Harness(name, server, client, transport)



# -- recorded payloads --------------------------------------------------------------------------

_ROOT = Path(__file__).resolve().parents[2]
Case = tuple[dict[str, Any], bytes]


def _corpus_dir() -> Path | None:
    """``shared/interop_corpus`` beside the project or one of its parents (never copied in);
    ``LLM_ASYNC_INTEROP_CORPUS`` names another place."""
    override = os.environ.get("LLM_ASYNC_INTEROP_CORPUS")
    if override:
        return Path(override) if Path(override).is_dir() else None
    for base in (_ROOT, *_ROOT.parents):
        candidate = base / "shared" / "interop_corpus"
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture
def corpus_case() -> Callable[[str], Case]:
    """``corpus_case(name)`` → ``(meta, body)`` of a recorded provider payload; the test is
    skipped when the corpus is not beside this checkout."""

    def load(name: str) -> Case:
        root = _corpus_dir()
        if root is None or not (root / name).is_dir():
            pytest.skip(f"the interop corpus (case {name}) is not beside this checkout")
        folder = root / name
        return json.loads((folder / "meta.json").read_text()), (folder / "body").read_bytes()

    return load
