"""The HTTP boundary against a hostile network: redirects, echoed secrets and prompts, endless
and compressed streams, keep-alive-only streams, malformed input, errors sent with HTTP 200.

Every server here is on loopback: the embedded provider server with its faults, and for the
redirect target a second tiny aiohttp server that records what it receives.
"""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.http_exceptions
import pytest
from aiohttp import web

from llm_async import AsyncLLMClient, Timeout, _json
from llm_async.application.circuit_breaker import CircuitBreakerLayer
from llm_async.errors import (
    APITimeoutError,
    ConfigurationError,
    InvalidRequestError,
    LLMError,
    ProtocolError,
    QuotaExceededError,
    RateLimitError,
    RedirectError,
    ResponseTooLargeError,
    StreamError,
    register_secret,
)
from llm_async.infrastructure.transports.anthropic_transport import AnthropicTransport
from llm_async.infrastructure.transports.base import scrub_content
from llm_async.infrastructure.transports.openai_transport import OpenAITransport
from llm_async.testing import Fault, MockProviderServer

USER = [{"role": "user", "content": "Hello there"}]
KEY = "sk-ant-hostile-test-key-0123456789"


class RecordingServer:
    """A loopback server that answers 200 to anything and records every request's headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        return web.json_response({"ok": True})

    async def __aenter__(self) -> RecordingServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def elsewhere() -> AsyncIterator[RecordingServer]:
    async with RecordingServer() as server:
        yield server


def _contains_key(headers: dict[str, str], key: str) -> bool:
    return any(key in value for value in headers.values())


# -- 1. secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_cross_host_redirect_is_refused_and_no_key_reaches_the_other_host(
        mock_server: MockProviderServer, elsewhere: RecordingServer, stream: bool) -> None:
    # "localhost" is another host than the server's "127.0.0.1" (aiohttp would keep x-api-key)
    target = f"http://localhost:{elsewhere.port}/v1/messages"
    mock_server.add_fault(Fault(redirect=target))
    transport = AnthropicTransport(KEY, mock_server.anthropic_base_url)
    async with AsyncLLMClient(provider="anthropic", transport=transport, layers=[]) as client:
        with pytest.raises(RedirectError) as info:
            if stream:
                async for _ in client.stream(model="claude-3-5-haiku-latest", messages=USER,
                                             max_tokens=20):
                    pass
            else:
                await client.chat(model="claude-3-5-haiku-latest", messages=USER, max_tokens=20)
    err = info.value
    assert err.location == target and target in str(err)
    assert err.status == 307 and not err.retryable
    assert elsewhere.seen == []  # the request never left for the other host
    assert mock_server.request_count == 1


async def test_a_redirect_with_the_default_stack_is_not_retried(
        mock_server: MockProviderServer, elsewhere: RecordingServer) -> None:
    mock_server.add_fault(Fault(redirect=f"http://localhost:{elsewhere.port}/x", times=None))
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=mock_server.base_url,
                              tracing=False) as client:
        with pytest.raises(RedirectError):
            await client.chat(model="gpt-4o-mini", messages=USER)
    assert mock_server.request_count == 1
    assert elsewhere.seen == []


async def test_every_error_attribute_and_its_pickle_are_redacted(
        mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(status=401, body={"error": {
        "message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error",
        "code": "invalid_api_key", "echo": {"headers": {"x-api-key": KEY}, "list": [KEY]}}}))
    transport = OpenAITransport(KEY, mock_server.base_url)
    async with AsyncLLMClient(provider="openai", transport=transport, layers=[]) as client:
        with pytest.raises(LLMError) as info:
            await client.chat(model="gpt-4o-mini", messages=USER)
    err = info.value
    shown = [err.message, str(err), repr(err), repr(err.args), repr(err.body),
             repr(vars(err))]
    assert all(KEY not in text for text in shown), shown
    assert "***" in str(err)
    data = pickle.dumps(err)
    assert KEY.encode() not in data
    again = pickle.loads(data)
    assert type(again) is type(err) and again.status == 401
    assert KEY not in repr(vars(again)) and KEY not in str(again)


def test_a_secret_registered_after_the_error_is_gone_from_its_pickle() -> None:
    late = "tenant-secret-registered-late-77"
    err = ProtocolError("boom", body={"echo": late})
    assert late in repr(err.body)  # not a secret yet
    register_secret(late)
    assert late.encode() not in pickle.dumps(err)


def test_attributes_set_after_construction_are_redacted() -> None:
    err = ProtocolError("x")
    err.headers = {"x-api-key": KEY}  # type: ignore[attr-defined]
    err.args = (f"with {KEY}",)
    assert KEY not in repr(vars(err)) and KEY not in repr(err.args)


async def test_a_per_call_key_in_extra_headers_is_a_secret(
        mock_server: MockProviderServer) -> None:
    tenant_key = "tenant-7f3a9c2e4b1d8f60aa"  # not key-shaped: only registration hides it
    mock_server.add_fault(Fault(status=401, body={"error": {
        "message": f"key {tenant_key} is revoked", "type": "authentication_error"}}))
    async with AsyncLLMClient(provider="openai", api_key=None, base_url=mock_server.base_url,
                              layers=[]) as client:
        with pytest.raises(LLMError) as info:
            await client.chat(model="gpt-4o-mini", messages=USER,
                              extra_headers={"X-Tenant-Api-Key": tenant_key})
    assert tenant_key not in str(info.value) and tenant_key not in repr(info.value.body)
    assert tenant_key.encode() not in pickle.dumps(info.value)


async def test_a_bearer_token_in_extra_headers_is_a_secret(
        mock_server: MockProviderServer) -> None:
    token = "opaque.tenant.token.5d41402abc4b2a76"
    mock_server.add_fault(Fault(status=403, body={"error": {
        "message": f"token {token} may not use this model"}}))
    async with AsyncLLMClient(provider="openai", api_key=None, base_url=mock_server.base_url,
                              layers=[]) as client:
        with pytest.raises(LLMError) as info:
            await client.chat(model="gpt-4o-mini", messages=USER,
                              extra_headers={"Authorization": f"Token {token}"})
    assert token not in str(info.value)


PROMPT = ("Summarise the confidential merger memo for Project Bluebird: the board meets on "
          "Friday and the offer price is 41 dollars per share.")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_provider_error_that_echoes_the_prompt_is_scrubbed(
        mock_server: MockProviderServer, stream: bool) -> None:
    echo = f"Invalid message content: '{PROMPT[:70]}...' (and '{PROMPT[-40:]}')"
    body = {"error": {"message": echo, "type": "invalid_request_error",
                      "param": {"content": PROMPT}}}
    if stream:
        mock_server.add_fault(Fault(error_after=1, error_body=body["error"]))
    else:
        mock_server.add_fault(Fault(status=400, body=body))
    messages = [{"role": "user", "content": PROMPT}]
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=mock_server.base_url,
                              layers=[]) as client:
        with pytest.raises(LLMError) as info:
            if stream:
                async for _ in client.stream(model="gpt-4o-mini", messages=messages):
                    pass
            else:
                await client.chat(model="gpt-4o-mini", messages=messages)
    err = info.value
    every_text = " ".join([str(err), repr(err), repr(err.args), repr(vars(err)),
                           repr(vars(err.cause)) if isinstance(err, StreamError) else ""])
    for fragment in ("Project Bluebird", "merger memo", "41 dollars", "board meets"):
        assert fragment not in every_text, every_text
    assert "[content]" in str(err)
    assert "Invalid message content" in str(err)  # the provider's own words stay


async def test_with_capture_content_the_echo_is_kept(mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(status=400, body={"error": {"message": f"bad: {PROMPT}"}}))
    transport = OpenAITransport(KEY, mock_server.base_url, capture_content=True)
    async with AsyncLLMClient(provider="openai", transport=transport, layers=[]) as client:
        with pytest.raises(LLMError) as info:
            await client.chat(model="gpt-4o-mini", messages=[{"role": "user",
                                                               "content": PROMPT}])
    assert "Project Bluebird" in str(info.value)


async def test_a_client_with_capture_content_keeps_the_echo(
        mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(status=400, body={"error": {"message": f"bad: {PROMPT}"}}))
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=mock_server.base_url,
                              layers=[], capture_content=True) as client:
        assert all(getattr(t, "capture_content", False) for t in client.transports.values())
        with pytest.raises(LLMError) as info:
            await client.chat(model="gpt-4o-mini", messages=[{"role": "user",
                                                               "content": PROMPT}])
    assert "Project Bluebird" in str(info.value)


def test_scrub_content_finds_truncated_and_embedded_echoes() -> None:
    source = "The quick brown fox jumps over the lazy dog near the riverbank at dawn."
    assert scrub_content(f"x '{source}' y", [source]) == "x '[content]' y"
    assert "fox jumps over" not in scrub_content(f"got: {source[10:45]}!", [source])
    out = scrub_content(f"model gpt-4o not found; you sent {source[:30]}", [source])
    assert out.startswith("model gpt-4o not found; you sent ") and "quick brown" not in out
    assert scrub_content("nothing shared here at all", [source]) == "nothing shared here at all"


# -- 2. bounded memory -----------------------------------------------------------------------


async def test_an_endless_stream_is_cut_at_the_byte_cap(mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(endless_after=2))
    transport = OpenAITransport(KEY, mock_server.base_url, max_stream_bytes=256 * 1024)
    chunks = 0
    async with AsyncLLMClient(provider="openai", transport=transport, layers=[],
                              timeout=Timeout(total=120)) as client:
        with pytest.raises(StreamError) as info:
            async for _ in client.stream(model="gpt-4o-mini", messages=USER):
                chunks += 1
        connector = transport.connector
        assert connector is not None and not connector._acquired  # released
    assert isinstance(info.value.cause, ResponseTooLargeError)
    assert not info.value.retryable
    assert 0 < chunks < 256 * 1024


async def test_the_assembled_text_is_capped(mock_server: MockProviderServer) -> None:
    transport = OpenAITransport(KEY, mock_server.base_url, max_stream_text=20)
    async with AsyncLLMClient(provider="openai", transport=transport, layers=[]) as client:
        with pytest.raises(StreamError) as info:
            async for _ in client.stream(model="gpt-4o-mini", messages=USER):
                pass
    assert isinstance(info.value.cause, ResponseTooLargeError)
    assert "20-character cap" in str(info.value)


async def test_a_gzip_bomb_unary_body_is_capped_after_decompression(
        mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(gzip_bomb=48 * 1024 * 1024, stream=False))
    transport = OpenAITransport(KEY, mock_server.base_url, max_response_bytes=1024 * 1024)
    async with AsyncLLMClient(provider="openai", transport=transport, layers=[]) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.chat(model="gpt-4o-mini", messages=USER)


async def test_a_gzip_bomb_stream_is_capped_after_decompression(
        mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(gzip_bomb=48 * 1024 * 1024, stream=True))
    transport = OpenAITransport(KEY, mock_server.base_url, max_stream_bytes=1024 * 1024)
    async with AsyncLLMClient(provider="openai", transport=transport, layers=[]) as client:
        with pytest.raises(ResponseTooLargeError):
            async for _ in client.stream(model="gpt-4o-mini", messages=USER):
                pass


def test_aiohttp_floor_caps_each_inflation() -> None:
    # The per-read limit exists in every aiohttp the package allows (>= 3.13.3) ...
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    floors = [r for r in project["project"]["dependencies"] if r.startswith("aiohttp")]
    assert floors == ["aiohttp>=3.13.3"]
    assert hasattr(aiohttp.http_exceptions, "DecompressSizeError")
    # ... and when it trips, the transport reports a ResponseTooLargeError, not a broken
    # connection (which would be retried).
    transport = OpenAITransport(KEY, "http://127.0.0.1:9")
    inner = aiohttp.http_exceptions.DecompressSizeError("too big")
    outer = aiohttp.ClientPayloadError("Response payload is not completed")
    outer.__cause__ = inner
    mapped = transport._map_exception(outer, "first_chunk", Timeout())
    assert isinstance(mapped, ResponseTooLargeError) and not mapped.retryable


# -- 3. timeouts -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_keep_alives_do_not_extend_the_first_chunk_timeout(
        mock_server: MockProviderServer, provider: str) -> None:
    # comments (OpenAI dialect) or ping events (Anthropic dialect), every 10 ms, nothing else
    mock_server.add_fault(Fault(keepalive_after=0, keepalive_interval=0.01))
    base = mock_server.base_url if provider == "openai" else mock_server.anthropic_base_url
    timeout = Timeout(first_chunk=0.3, idle=0.3, total=60)
    async with AsyncLLMClient(provider=provider, api_key=KEY, base_url=base, layers=[],
                              timeout=timeout) as client:
        with pytest.raises(APITimeoutError) as info:
            async for _ in client.stream(model="m", messages=USER, max_tokens=20):
                pass
    assert info.value.phase == "first_chunk"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_keep_alives_do_not_extend_the_idle_timeout(
        mock_server: MockProviderServer, provider: str) -> None:
    mock_server.add_fault(Fault(keepalive_after=2, keepalive_interval=0.01))
    base = mock_server.base_url if provider == "openai" else mock_server.anthropic_base_url
    timeout = Timeout(first_chunk=30, idle=0.3, total=60)
    received = 0
    async with AsyncLLMClient(provider=provider, api_key=KEY, base_url=base, layers=[],
                              timeout=timeout) as client:
        with pytest.raises(StreamError) as info:
            async for _ in client.stream(model="m", messages=USER, max_tokens=20):
                received += 1
    assert received >= 1
    assert isinstance(info.value.cause, APITimeoutError)
    assert info.value.cause.phase == "idle"


# -- 4. typed failures -----------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def stdlib_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as without orjson (the standard library's recursive parser)."""
    monkeypatch.setattr(_json, "loads", _json.stdlib_loads)
    monkeypatch.setattr(_json, "dumps", _json.stdlib_dumps)


@pytest.mark.usefixtures("stdlib_json")
@pytest.mark.parametrize("status", [200, 500])
async def test_deeply_nested_json_without_orjson_is_a_typed_error(
        mock_server: MockProviderServer, status: int) -> None:
    mock_server.add_fault(Fault(status=status, body=DEEP))
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=mock_server.base_url,
                              layers=[]) as client:
        with pytest.raises(LLMError) as info:
            await client.chat(model="gpt-4o-mini", messages=USER)
    assert info.value.status == status


@pytest.mark.parametrize("use_stdlib", [True, False])
async def test_a_request_too_deep_to_encode_fails_before_sending(
        mock_server: MockProviderServer, monkeypatch: pytest.MonkeyPatch,
        use_stdlib: bool) -> None:
    if use_stdlib:
        monkeypatch.setattr(_json, "dumps", _json.stdlib_dumps)
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=mock_server.base_url,
                              layers=[]) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.chat(model="gpt-4o-mini", messages=USER, extra_body={"x": deep})
    assert info.value.field == "extra_body"
    assert mock_server.request_count == 0


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb", "a\x00b"])
async def test_a_header_value_with_cr_or_lf_fails_before_sending(
        mock_server: MockProviderServer, value: str) -> None:
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=mock_server.base_url,
                              layers=[]) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.chat(model="gpt-4o-mini", messages=USER,
                              extra_headers={"X-Trace": value})
        with pytest.raises(InvalidRequestError):
            async for _ in client.stream(model="gpt-4o-mini", messages=USER,
                                         extra_headers={"X-Trace": value}):
                pass
    assert info.value.field == "extra_headers['X-Trace']"
    assert value not in str(info.value)
    assert mock_server.request_count == 0


def test_a_client_header_with_cr_lf_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        OpenAITransport(KEY, "http://127.0.0.1:9", headers={"X-Team": "a\r\nb"})
    assert info.value.variable == "headers['X-Team']"
    with pytest.raises(ConfigurationError):
        OpenAITransport(KEY, "http://127.0.0.1:9", headers={"Bad Name": "x"})


@pytest.mark.parametrize("url", ["localhost:8080", "127.0.0.1:8080/v1", "api.openai.com/v1",
                                 "ftp://example.invalid", "http://", "//127.0.0.1/v1", ""])
def test_a_base_url_without_a_scheme_or_host_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        OpenAITransport(KEY, url or "   ")
    assert info.value.variable == "base_url"


@pytest.mark.parametrize(("error", "expected", "status"), [
    ({"message": "You exceeded your current quota", "type": "insufficient_quota",
      "code": "insufficient_quota"}, QuotaExceededError, 429),
    ({"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"},
     RateLimitError, 429),
])
async def test_an_error_in_a_200_body_is_classified_by_its_content(
        mock_server: MockProviderServer, error: dict[str, Any], expected: type[LLMError],
        status: int) -> None:
    mock_server.add_fault(Fault(status=200, body={"error": error}, times=None))
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=mock_server.base_url,
                              tracing=False, track_cost=False) as client:
        for _ in range(8):
            with pytest.raises(expected) as info:
                await client.chat(model="gpt-4o-mini", messages=USER,
                                  options={"retry": False} if expected is RateLimitError
                                  else {})
            assert type(info.value) is expected and info.value.status == status
        layer = client.layer(CircuitBreakerLayer)
        assert layer is not None
        breaker = layer.status()
    assert breaker["state"] == "closed"
    if expected is QuotaExceededError:
        assert mock_server.request_count == 8  # not retryable: one attempt per call


async def test_an_error_event_with_http_200_is_classified_by_its_content(
        mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(error_after=0, error_body={
        "message": "You exceeded your current quota", "type": "insufficient_quota",
        "code": "insufficient_quota"}))
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=mock_server.base_url,
                              layers=[]) as client:
        with pytest.raises(QuotaExceededError):
            async for _ in client.stream(model="gpt-4o-mini", messages=USER):
                pass
