"""Provider batch jobs (OpenAI Batch API, Anthropic Message Batches) against the embedded
server's batch endpoints, polling on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

import pytest

from llm_async import AsyncLLMClient, FakeClock
from llm_async.errors import (
    APITimeoutError,
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
)
from llm_async.optimization.batching import (
    AnthropicBatchAPI,
    BatchingLayer,
    OpenAIBatchAPI,
    batch_api_for,
)
from llm_async.testing import Fault, MockProviderServer
from llm_async.types import ChatResponse, build_request

KEY = "sk-test-batch-api-0001"


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer(require_api_key=KEY) as s:
        yield s


def msgs(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"echo: batch answer {i}"}]


def openai_client(server: MockProviderServer) -> AsyncLLMClient:
    return AsyncLLMClient(provider="openai", api_key=KEY, base_url=server.base_url, layers=[])


def anthropic_client(server: MockProviderServer) -> AsyncLLMClient:
    return AsyncLLMClient(provider="anthropic", api_key=KEY,
                          base_url=server.anthropic_base_url, layers=[])


async def test_openai_batch_job_through_chat_many(server) -> None:
    server.add_fault(Fault(status=429, model="limited-model", times=None))
    clock = FakeClock()
    requests: list[dict[str, object]] = [
        {"model": "gpt-4o-mini", "messages": msgs(i), "max_tokens": 20} for i in range(4)]
    requests[1] = {"model": "limited-model", "messages": msgs(1)}
    async with openai_client(server) as client:
        results = await client.chat_many(requests, batch_api=True, poll_interval=30,
                                         clock=clock)
    texts = [r.text if isinstance(r, ChatResponse) else None for r in results]
    assert texts == ["batch answer 0", None, "batch answer 2", "batch answer 3"]
    assert isinstance(results[1], RateLimitError)
    first = results[0]
    assert isinstance(first, ChatResponse)
    assert first.provider == "openai" and first.usage.output_tokens == 3
    assert first.request_id and first.request_id.startswith("req_batch_")
    assert clock.sleeps == [30.0]  # one poll saw it in progress, the next saw it done
    assert server.request_count == 0  # nothing went to /chat/completions
    assert server.batches.lines_processed == 4
    assert server.stats()["requests"] == 0


async def test_anthropic_message_batch(server) -> None:
    server.add_fault(Fault(status=529, model="claude-busy", times=None))
    clock = FakeClock()
    async with anthropic_client(server) as client:
        transport = client.transports["anthropic"]
        api = batch_api_for(transport, clock=clock, poll_interval=60)
        assert isinstance(api, AnthropicBatchAPI)
        requests = [client.build_request("claude-3-5-haiku-latest", msgs(i), {}, stream=False)
                    for i in range(3)]
        requests.append(client.build_request("claude-3-5-haiku-latest", msgs(9),
                                             {"temperature": 1.5}, stream=False))
        requests.append(client.build_request("claude-busy", msgs(4), {}, stream=False))
        results = await api.run(requests)
    assert [r.text for r in results[:3] if isinstance(r, ChatResponse)] == [
        "batch answer 0", "batch answer 1", "batch answer 2"]
    # Anthropic caps temperature at 1: refused before sending, the others still go
    assert isinstance(results[3], InvalidRequestError)
    assert isinstance(results[4], OverloadedError)  # an errored line of the batch
    assert all(isinstance(r, ChatResponse) and r.provider == "anthropic" for r in results[:3])
    assert clock.sleeps == [60.0]


async def test_batch_requests_are_authenticated(server) -> None:
    from llm_async.errors import AuthenticationError

    async with AsyncLLMClient(provider="openai", api_key="sk-wrong-key-000000",
                              base_url=server.base_url, layers=[]) as client:
        results = await client.chat_many([{"model": "gpt-4o-mini", "messages": msgs(0)}],
                                         batch_api=True, clock=FakeClock())
    assert isinstance(results[0], AuthenticationError) and results.failed == 1


async def test_wait_times_out_and_cancels_the_job(server) -> None:
    server.batches.polls_until_done = 100
    clock = FakeClock()
    async with openai_client(server) as client:
        api = batch_api_for(client.transports["openai"], clock=clock, poll_interval=10)
        assert isinstance(api, OpenAIBatchAPI)
        request = build_request(model="gpt-4o-mini", messages=msgs(0))
        with pytest.raises(APITimeoutError):
            await api.run([request], timeout=35)
        (job_id,) = list(server.batches.batches)
        job = await api.retrieve(await api.submit([request]))
        assert server.batches.batches[job_id].cancelled
        cancelled = await api.cancel(job)
        server.batches.polls_until_done = 0
        done = await api.wait(cancelled)
        assert done.status == "cancelled"
        outcome = await api.results(done, [request])
    assert "cancelled" in str(outcome[0])
    assert clock.sleeps == [10.0, 10.0, 10.0]


async def test_batching_layer_in_provider_mode(server) -> None:
    clock = FakeClock()
    layer = partial(BatchingLayer, mode="provider", max_batch_size=3, max_wait=1.0,
                    poll_interval=5, clock=clock)
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=server.base_url,
                              layers=[layer]) as client:
        replies = await asyncio.gather(*(client.chat(model="gpt-4o-mini", messages=msgs(i))
                                         for i in range(3)))
    assert [r.text for r in replies] == [f"batch answer {i}" for i in range(3)]
    assert len(server.batches.batches) == 1  # one job for the three calls
    assert server.request_count == 0


def test_batch_api_for_rejects_providers_without_one() -> None:
    from llm_async.errors import ConfigurationError
    from llm_async.infrastructure.transports.mock import MockLLMTransport

    with pytest.raises(ConfigurationError):
        batch_api_for(MockLLMTransport())
