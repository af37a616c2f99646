"""The provider batch APIs meet the transports' network rules against the embedded server:
redirects are refused with a typed error naming the location (nothing reaches the other host),
every answer is capped once decompressed, a results file must be on the provider's origin,
and no error or pickle shows the key."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from llm_async import AsyncLLMClient, FakeClock
from llm_async.errors import (
    ConfigurationError,
    LLMError,
    ProtocolError,
    RedirectError,
    ResponseTooLargeError,
)
from llm_async.infrastructure.transports.batch_api import (
    AnthropicBatchAPI,
    OpenAIBatchAPI,
    ProviderBatchAPI,
    batch_api_for,
)
from llm_async.testing import Fault, MockProviderServer
from llm_async.types import ChatRequest, ChatResponse, build_request

KEY = "sk-batch-network-secret-7f3a9c"


class OtherHost:
    """A second loopback server standing for another host: it records what reaches it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> OtherHost:
        async def record(request: web.Request) -> web.Response:
            self.seen.append(dict(request.headers))
            return web.json_response({"id": "file-x", "status": "completed"})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer(require_api_key=KEY) as s:
        yield s


@pytest.fixture
async def other() -> AsyncIterator[OtherHost]:
    async with OtherHost() as host:
        yield host


def _client(server: MockProviderServer, provider: str, *,
            max_response_bytes: int | None = None) -> AsyncLLMClient:
    base = server.anthropic_base_url if provider == "anthropic" else server.base_url
    client = AsyncLLMClient(provider=provider, api_key=KEY, base_url=base, layers=[])
    if max_response_bytes is not None:
        client.transports[provider].max_response_bytes = max_response_bytes  # type: ignore[attr-defined]
    return client


def _api(client: AsyncLLMClient, provider: str, **options: Any) -> ProviderBatchAPI:
    return batch_api_for(client.transports[provider], clock=FakeClock(), poll_interval=1,
                         **options)


def _requests(provider: str, n: int = 2) -> list[ChatRequest]:
    model = "claude-3-5-haiku-latest" if provider == "anthropic" else "gpt-4o-mini"
    return [build_request(model=model, messages=[{"role": "user", "content": f"echo: {i}"}],
                          max_tokens=20) for i in range(n)]


def _no_key_anywhere(err: BaseException) -> None:
    assert KEY not in str(err) and KEY not in repr(err)
    assert KEY not in repr(vars(err)) and KEY not in repr(err.args)
    assert KEY.encode() not in pickle.dumps(err)


@pytest.mark.parametrize(("provider", "path"), [
    ("openai", "/v1/files"),  # the upload
    ("openai", "/v1/batches"),  # creating the job
    ("anthropic", "/v1/messages/batches"),  # creating the job
])
async def test_a_redirect_is_refused_and_names_its_location(
        server: MockProviderServer, other: OtherHost, provider: str, path: str) -> None:
    target = f"{other.url}/steal"
    server.add_fault(Fault(path=path, redirect=target))
    async with _client(server, provider) as client:
        with pytest.raises(RedirectError) as caught:
            await _api(client, provider).run(_requests(provider))
    assert caught.value.location == target and target in str(caught.value)
    assert caught.value.status == 307 and not caught.value.retryable
    assert other.seen == []  # the request, and its key, never reached the other host
    _no_key_anywhere(caught.value)


async def test_a_redirect_while_polling_is_refused(server: MockProviderServer,
                                                  other: OtherHost) -> None:
    async with _client(server, "anthropic") as client:
        api = _api(client, "anthropic")
        job = await api.submit(_requests("anthropic"))
        server.add_fault(Fault(path=f"/batches/{job.id}", redirect=f"{other.url}/poll"))
        with pytest.raises(RedirectError):
            await api.wait(job)
    assert other.seen == []


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_oversize_json_answer_is_capped(server: MockProviderServer,
                                                 provider: str) -> None:
    path = "/v1/messages/batches" if provider == "anthropic" else "/v1/batches"
    server.add_fault(Fault(path=path, status=200, body="x" * (64 * 1024 + 1)))
    async with _client(server, provider, max_response_bytes=64 * 1024) as client:
        with pytest.raises(ResponseTooLargeError, match="65536-byte cap"):
            await _api(client, provider).run(_requests(provider))


async def test_a_gzip_bomb_answer_is_capped_after_decompression(
        server: MockProviderServer) -> None:
    server.add_fault(Fault(path="/v1/batches", gzip_bomb=16 << 20))  # 16 MiB of zeros
    async with _client(server, "openai", max_response_bytes=1 << 20) as client:
        with pytest.raises(ResponseTooLargeError):
            await _api(client, "openai").run(_requests("openai"))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_results_file_is_capped_at_max_results_bytes(server: MockProviderServer,
                                                             provider: str) -> None:
    requests = _requests(provider, 40)
    async with _client(server, provider) as client:
        api = _api(client, provider, max_results_bytes=2048)
        job = await api.wait(await api.submit(requests))
        with pytest.raises(ResponseTooLargeError, match="2048-byte cap"):
            await api.results(job, requests)
        # the same job's results fit a larger cap: only the download was refused
        roomy = _api(client, provider)
        answers = await roomy.results(job, requests)
    assert all(isinstance(a, ChatResponse) for a in answers)


async def test_a_results_url_on_another_origin_is_not_fetched(server: MockProviderServer,
                                                              other: OtherHost) -> None:
    async with _client(server, "anthropic") as client:
        api = _api(client, "anthropic")
        assert isinstance(api, AnthropicBatchAPI)
        requests = _requests("anthropic")
        job = await api.submit(requests)
        ended = {"id": job.id, "type": "message_batch", "processing_status": "ended",
                 "request_counts": {"succeeded": 2}, "cancel_initiated_at": None,
                 "results_url": f"{other.url}/v1/messages/batches/{job.id}/results"}
        server.add_fault(Fault(path=f"/batches/{job.id}", status=200, body=ended))
        job = await api.wait(job)
        with pytest.raises(ProtocolError, match="not on its origin") as caught:
            await api.results(job, requests)
    assert other.seen == []
    _no_key_anywhere(caught.value)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_error_that_echoes_the_key_is_redacted(server: MockProviderServer,
                                                        provider: str) -> None:
    path = "/v1/messages/batches" if provider == "anthropic" else "/v1/files"
    body = {"error": {"message": f"key {KEY} is not allowed to create batches",
                      "type": "invalid_request_error", "param": KEY}}
    server.add_fault(Fault(path=path, status=400, body=body))
    async with _client(server, provider) as client:
        with pytest.raises(LLMError) as caught:
            await _api(client, provider).run(_requests(provider))
    assert caught.value.status == 400 and "is not allowed to create batches" in str(caught.value)
    _no_key_anywhere(caught.value)


async def test_a_reset_connection_is_a_typed_error_without_the_key(
        server: MockProviderServer) -> None:
    from llm_async.errors import APIConnectionError

    server.add_fault(Fault(path="/v1/files", reset=True))
    async with _client(server, "openai") as client:
        with pytest.raises(APIConnectionError) as caught:
            await _api(client, "openai").run(_requests("openai"))
    _no_key_anywhere(caught.value)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_max_results_bytes_must_be_a_positive_int(bad: Any) -> None:
    from llm_async.infrastructure.transports.openai_transport import OpenAITransport

    with pytest.raises(ConfigurationError, match="max_results_bytes"):
        OpenAIBatchAPI(OpenAITransport(KEY), max_results_bytes=bad)


async def test_endpoint_faults_leave_batch_lines_alone(server: MockProviderServer) -> None:
    """A fault naming a batch endpoint applies to that endpoint only; the lines of the batch
    are answered as usual."""
    server.add_fault(Fault(path="/v1/batches/", status=503, times=1))
    async with _client(server, "openai") as client:
        api = _api(client, "openai")
        requests = _requests("openai")
        job = await api.submit(requests)
        with pytest.raises(LLMError) as caught:
            await api.retrieve(job)
        assert caught.value.status == 503
        answers = await api.results(await api.wait(job), requests)
    assert [a.text for a in answers if isinstance(a, ChatResponse)] == ["0", "1"]
