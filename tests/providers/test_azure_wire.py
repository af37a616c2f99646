"""Azure OpenAI wire format, checked with aioresponses: the exact URLs, headers and bodies we
send on both path shapes, the credentials (key, token providers, Entra ID through the real
azure-identity policy), and the content-filter answers Azure sends (recorded payloads)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aioresponses import aioresponses
from azure.core.credentials import AccessToken
from yarl import URL

from llm_async import AsyncLLMClient
from llm_async.context import CallContext
from llm_async.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContentFilterError,
)
from llm_async.infrastructure.transports.azure_transport import (
    DEFAULT_API_VERSION,
    ENTRA_SCOPE,
    AzureOpenAITransport,
    content_filters,
    entra_token_provider,
)
from llm_async.types import build_request

ENDPOINT = "https://contoso.openai.azure.com"
KEY = "azure-wire-test-key-0123456789"
VERSION = "2024-10-21"
DEPLOYMENT_URL = (f"{ENDPOINT}/openai/deployments/gpt-4o-mini/chat/completions"
                  f"?api-version={VERSION}")
V1_URL = f"{ENDPOINT}/openai/v1/chat/completions"
HI = [{"role": "user", "content": "Hi"}]

REPLY = {
    "id": "chatcmpl-azure-1", "object": "chat.completion", "created": 1712156051,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hello!"},
                 "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}}}],
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
        "jailbreak": {"filtered": False, "detected": False},
        "violence": {"filtered": False, "severity": "safe"}}}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10},
}


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "OPENAI_API_VERSION",
                 "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def sent(m: aioresponses, url: str, index: int = -1) -> tuple[dict[str, Any], dict[str, str]]:
    call = m.requests[("POST", URL(url))][index]
    return json.loads(call.kwargs["data"]), call.kwargs["headers"]


async def test_deployment_path_with_api_version_and_key_header(mocked: aioresponses) -> None:
    mocked.post(DEPLOYMENT_URL, payload=REPLY, headers={"apim-request-id": "apim-1"})
    transport = AzureOpenAITransport(KEY, endpoint=ENDPOINT, api_version=VERSION)
    async with AsyncLLMClient("azure", transport=transport, layers=[]) as client:
        reply = await client.chat(model="gpt-4o-mini", messages=HI, max_tokens=20)
    body, headers = sent(mocked, DEPLOYMENT_URL)
    assert body == {"model": "gpt-4o-mini", "messages": HI, "max_tokens": 20}
    assert headers["api-key"] == KEY
    assert "Authorization" not in headers
    assert (reply.text, reply.provider, reply.request_id) == ("Hello!", "azure", "apim-1")
    assert reply.model == "gpt-4o-mini-2024-07-18"


async def test_v1_path_and_deployment_names(mocked: aioresponses) -> None:
    mocked.post(V1_URL, payload=REPLY)
    async with AzureOpenAITransport(KEY, endpoint=ENDPOINT + "/openai/v1/",
                                    api_version=None) as transport:
        await transport.chat(build_request(model="gpt-4o-mini", messages=HI), CallContext())
    body, headers = sent(mocked, V1_URL)
    assert body == {"model": "gpt-4o-mini", "messages": HI}
    assert headers["api-key"] == KEY

    url = f"{ENDPOINT}/openai/deployments/prod%20mini/chat/completions?api-version={VERSION}"
    mocked.post(url, payload=REPLY)
    async with AzureOpenAITransport(KEY, endpoint=ENDPOINT, api_version=VERSION,
                                    deployments={"gpt-4o-mini": "prod mini"}) as transport:
        await transport.chat(build_request(model="gpt-4o-mini", messages=HI), CallContext())
    body, _ = sent(mocked, url)
    assert body["model"] == "gpt-4o-mini"


async def test_environment_variables(mocked: aioresponses,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", ENDPOINT + "/")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-04-01-preview")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-key-must-stay-home")
    url = (f"{ENDPOINT}/openai/deployments/gpt-4o-mini/chat/completions"
           "?api-version=2025-04-01-preview")
    mocked.post(url, payload=REPLY)
    async with AzureOpenAITransport() as transport:
        await transport.chat(build_request(model="gpt-4o-mini", messages=HI), CallContext())
    _, headers = sent(mocked, url)
    assert headers["api-key"] == KEY
    assert "sk-openai-key-must-stay-home" not in json.dumps(dict(headers))

    monkeypatch.delenv("OPENAI_API_VERSION")
    assert AzureOpenAITransport().api_version == DEFAULT_API_VERSION
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT")
    with pytest.raises(ConfigurationError) as caught:
        AzureOpenAITransport()
    assert caught.value.variable == "AZURE_OPENAI_ENDPOINT"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_token_provider_replaces_the_key(mocked: aioresponses, kind: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)  # never sent once a token provider is set
    calls: list[int] = []

    def sync_token() -> str:
        calls.append(1)
        return f"entra-token-{len(calls)}-abcdefgh"

    async def async_token() -> str:
        return sync_token()

    provider: Callable[[], Any] = sync_token if kind == "sync" else async_token
    mocked.post(DEPLOYMENT_URL, payload=REPLY)
    mocked.post(DEPLOYMENT_URL, payload=REPLY)
    async with AzureOpenAITransport(endpoint=ENDPOINT, api_version=VERSION,
                                    token_provider=provider) as transport:
        await transport.chat(build_request(model="gpt-4o-mini", messages=HI), CallContext())
        await transport.chat(build_request(model="gpt-4o-mini", messages=HI), CallContext())
    first, second = (sent(mocked, DEPLOYMENT_URL, i)[1] for i in (0, 1))
    assert first["Authorization"] == "Bearer entra-token-1-abcdefgh"
    assert second["Authorization"] == "Bearer entra-token-2-abcdefgh"  # asked per request
    assert "api-key" not in first and "api-key" not in second


async def test_a_failing_token_provider_sends_nothing(mocked: aioresponses) -> None:
    def broken() -> str:
        raise RuntimeError("no managed identity endpoint")

    async with AzureOpenAITransport(endpoint=ENDPOINT, token_provider=broken) as transport:
        with pytest.raises(AuthenticationError) as caught:
            await transport.chat(build_request(model="gpt-4o-mini", messages=HI), CallContext())
    assert caught.value.provider == "azure"
    assert not mocked.requests


class FakeEntraCredential:
    """An ``azure.identity.aio``-shaped credential (the policy asks it for tokens)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(f"eyJ0eXAiOiJKV1Qi.token-{len(self.scopes)}", int(time.time()) + 3600)

    async def close(self) -> None:
        return None


async def test_entra_id_through_azure_identity_caches_the_token(mocked: aioresponses) -> None:
    credential = FakeEntraCredential()
    mocked.post(DEPLOYMENT_URL, payload=REPLY)
    mocked.post(DEPLOYMENT_URL, payload=REPLY)
    async with AzureOpenAITransport(endpoint=ENDPOINT, api_version=VERSION,
                                    token_provider=entra_token_provider(credential)) as t:
        await t.chat(build_request(model="gpt-4o-mini", messages=HI), CallContext())
        await t.chat(build_request(model="gpt-4o-mini", messages=HI), CallContext())
    assert credential.scopes == [(ENTRA_SCOPE,)], "a valid token is reused, not fetched again"
    for index in (0, 1):
        assert sent(mocked, DEPLOYMENT_URL, index)[1]["Authorization"] == \
            "Bearer eyJ0eXAiOiJKV1Qi.token-1"


async def test_prompt_refused_by_the_content_filter_is_typed(
        mocked: aioresponses, corpus_case: Callable[[str], tuple[dict[str, Any], bytes]]) -> None:
    meta, body = corpus_case("azure-400-content-filter")
    mocked.post(DEPLOYMENT_URL, status=meta["status"], body=body, headers=meta["headers"])
    async with AzureOpenAITransport(KEY, endpoint=ENDPOINT, api_version=VERSION) as t:
        with pytest.raises(ContentFilterError) as caught:
            await t.chat(build_request(model="gpt-4o-mini", messages=HI), CallContext())
    err = caught.value
    assert isinstance(err, BadRequestError)
    assert (err.status, err.retryable, err.code) == (400, False, "content_filter")
    assert err.request_id == "b4b8a9c2-0000-0000-0000-000000000000"
    assert err.filter_results["sexual"] == {"filtered": True, "severity": "high"}
    assert err.filter_results["violence"]["filtered"] is False


async def test_completion_filter_results_are_surfaced(
        mocked: aioresponses, corpus_case: Callable[[str], tuple[dict[str, Any], bytes]]) -> None:
    _, body = corpus_case("azure-chat-content-filter")
    mocked.post(DEPLOYMENT_URL, body=body, headers={"Content-Type": "application/json"})
    async with AzureOpenAITransport(KEY, endpoint=ENDPOINT, api_version=VERSION) as t:
        reply = await t.chat(build_request(model="gpt-4o-mini", messages=HI), CallContext())
    assert reply.finish_reason == "content_filter"
    assert not reply.text
    report = content_filters(reply)
    assert report.filtered == ["violence"]
    assert report.completion["violence"].severity == "medium"
    assert report.completion["self_harm"].filtered is False
    assert [sorted(p) for p in report.prompt] == [["hate", "self_harm", "sexual", "violence"]]
    assert report.prompt[0]["hate"].severity == "safe"


async def test_clean_reply_has_a_clean_filter_report(mocked: aioresponses) -> None:
    mocked.post(DEPLOYMENT_URL, payload=REPLY)
    async with AzureOpenAITransport(KEY, endpoint=ENDPOINT, api_version=VERSION) as t:
        reply = await t.chat(build_request(model="gpt-4o-mini", messages=HI), CallContext())
    report = content_filters(reply)
    assert report.filtered == []
    assert report.prompt[0]["jailbreak"].detected is False


async def test_stream_with_prompt_filter_results(
        mocked: aioresponses, corpus_case: Callable[[str], tuple[dict[str, Any], bytes]]) -> None:
    meta, body = corpus_case("azure-stream-prompt-filter")
    # The recording stops after the finish chunk; the stream's terminator follows it on the wire.
    mocked.post(DEPLOYMENT_URL, body=body + b"data: [DONE]\n\n", headers=meta["headers"])
    transport = AzureOpenAITransport(KEY, endpoint=ENDPOINT, api_version=VERSION)
    async with AsyncLLMClient("azure", transport=transport, layers=[]) as client:
        stream = client.stream(model="gpt-4o-mini", messages=HI)
        async with stream as chunks:
            text = "".join([c.delta async for c in chunks])
    assert text.startswith("Hey! 👋")
    final = stream.final_response
    assert final is not None and final.finish_reason == "stop"
    assert final.provider == "azure"


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(TypeError):
        AzureOpenAITransport(KEY, endpoint=ENDPOINT, token_provider="not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AzureOpenAITransport(KEY, "https://a.openai.azure.com", endpoint=ENDPOINT)
    transport = AzureOpenAITransport(KEY, endpoint=ENDPOINT)
    assert KEY not in repr(transport)
