"""The batching queue, the batching layer and ``chat_many``."""

from __future__ import annotations

import asyncio
import contextvars
import io
from collections.abc import AsyncIterator
from functools import partial

import pytest

from llm_async import AsyncLLMClient, FakeClock
from llm_async.errors import (
    BadRequestError,
    InvalidRequestError,
    LLMError,
    RateLimiterError,
    ServerError,
)
from llm_async.infrastructure.transports.mock import MockLLMTransport
from llm_async.optimization.batching import (
    BatchingLayer,
    BatchProgress,
    BatchQueue,
    BatchResults,
    TextProgress,
)
from llm_async.testing import Fault, MockProviderServer
from llm_async.types import ChatResponse

KEY = "sk-test-batch-key-0001"


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer() as s:
        yield s


def msgs(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"echo: answer {i}"}]


# -- the queue ------------------------------------------------------------------------------


async def test_a_full_batch_is_dispatched_at_once_in_order() -> None:
    seen: list[list[int]] = []

    async def dispatch(items: list[int]) -> list[int | BaseException]:
        seen.append(items)
        return [i * 10 if i != 3 else ValueError("three") for i in items]

    clock = FakeClock(auto_advance=False)  # the window never closes by itself
    async with BatchQueue(dispatch, max_batch_size=4, max_wait=60, clock=clock) as queue:
        results = await asyncio.gather(*(queue.submit(i) for i in range(4)),
                                       return_exceptions=True)
    assert seen == [[0, 1, 2, 3]]
    assert results[:3] == [0, 10, 20] and isinstance(results[3], ValueError)


async def test_the_window_closes_a_partial_batch() -> None:
    seen: list[list[str]] = []

    async def dispatch(items: list[str]) -> list[str | BaseException]:
        seen.append(items)
        return [s.upper() for s in items]

    clock = FakeClock(auto_advance=False)
    async with BatchQueue(dispatch, max_batch_size=10, max_wait=0.5, clock=clock) as queue:
        pending = [asyncio.ensure_future(queue.submit(s)) for s in "ab"]
        while not clock.sleeps:
            await asyncio.sleep(0)
        assert seen == [] and clock.sleeps == [0.5]
        clock.advance(0.5)
        assert await asyncio.gather(*pending) == ["A", "B"]
    assert seen == [["a", "b"]]


async def test_back_pressure_when_the_queue_is_full() -> None:
    gate = asyncio.Event()

    async def dispatch(items: list[int]) -> list[int | BaseException]:
        await gate.wait()
        return list(items)

    clock = FakeClock(auto_advance=False)
    queue: BatchQueue[int, int] = BatchQueue(dispatch, max_batch_size=1, max_wait=0,
                                             max_concurrency=1, max_pending=2, clock=clock)
    first = asyncio.ensure_future(queue.submit(0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # 0 is dispatched and blocks the only runner
    waiting = [queue.submit_nowait(1), queue.submit_nowait(2)]
    with pytest.raises(RateLimiterError):
        queue.submit_nowait(3)
    blocked = asyncio.ensure_future(queue.submit(4))
    await asyncio.sleep(0)
    assert not blocked.done() and queue.statistics().pending == 2
    gate.set()
    assert await asyncio.gather(first, *waiting, blocked) == [0, 1, 2, 4]
    await queue.aclose()


async def test_a_cancelled_submitter_is_dropped_before_dispatch() -> None:
    seen: list[list[int]] = []

    async def dispatch(items: list[int]) -> list[int | BaseException]:
        seen.append(items)
        return list(items)

    clock = FakeClock(auto_advance=False)
    async with BatchQueue(dispatch, max_batch_size=5, max_wait=1, clock=clock) as queue:
        a = asyncio.ensure_future(queue.submit(1))
        b = asyncio.ensure_future(queue.submit(2))
        await asyncio.sleep(0)
        b.cancel()
        while not clock.sleeps:  # the window timer is armed
            await asyncio.sleep(0)
        clock.advance(1)
        assert await a == 1
    assert seen == [[1]]


async def test_closing_fails_waiting_items() -> None:
    async def dispatch(items: list[int]) -> list[int | BaseException]:
        return list(items)

    queue: BatchQueue[int, int] = BatchQueue(dispatch, max_batch_size=5, max_wait=1,
                                             clock=FakeClock(auto_advance=False))
    pending = asyncio.ensure_future(queue.submit(1))
    await asyncio.sleep(0)
    await queue.aclose()
    with pytest.raises(InvalidRequestError):
        await pending
    with pytest.raises(InvalidRequestError):
        await queue.submit(2)


# -- the layer ------------------------------------------------------------------------------


async def test_batching_layer_runs_requests_in_their_callers_context(server) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="?")
    transport = MockLLMTransport("ok")
    seen: list[str] = []
    original = transport.chat

    async def spy(request, ctx):  # type: ignore[no-untyped-def]
        seen.append(var.get())
        return await original(request, ctx)

    transport.chat = spy  # type: ignore[method-assign]
    layer_factory = partial(BatchingLayer, max_batch_size=3, max_wait=0.001)
    async with AsyncLLMClient(provider="mock", transport=transport,
                              layers=[layer_factory]) as client:

        async def call(name: str) -> ChatResponse:
            var.set(name)
            return await client.chat(model="m", messages=msgs(0))

        replies = await asyncio.gather(*(call(n) for n in ("a", "b", "c")))
        layer = client.layer(BatchingLayer)
        assert layer is not None
        assert layer.statistics().batches == 1 and layer.statistics().largest_batch == 3
    assert [r.text for r in replies] == ["ok"] * 3
    assert sorted(seen) == ["a", "b", "c"]


# -- chat_many ------------------------------------------------------------------------------


async def test_chat_many_keeps_partial_results_in_order(server) -> None:
    server.add_fault(Fault(status=400, model="bad-model", times=None))
    requests: list[object] = [
        {"model": "gpt-4o-mini", "messages": msgs(i)} for i in range(6)]
    requests[2] = {"model": "bad-model", "messages": msgs(2)}
    requests[4] = {"model": "gpt-4o-mini", "messages": []}  # invalid: never sent
    updates: list[BatchProgress] = []
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=server.base_url,
                              layers=[]) as client:
        results = await client.chat_many(requests, concurrency=3,  # type: ignore[arg-type]
                                         progress=updates.append)
    assert isinstance(results, BatchResults) and len(results) == 6
    assert [r.text if isinstance(r, ChatResponse) else None for r in results] == [
        "answer 0", "answer 1", None, "answer 3", None, "answer 5"]
    assert isinstance(results[2], BadRequestError)
    assert isinstance(results[4], InvalidRequestError)
    assert results.succeeded == 4 and results.failed == 2
    assert [i for i, _ in results.errors] == [2, 4]
    assert server.request_count == 5
    assert [u.done for u in updates] == [1, 2, 3, 4, 5, 6]
    assert updates[-1].succeeded == 4 and updates[-1].failed == 2
    with pytest.raises(LLMError):
        results.raise_for_errors()


async def test_chat_many_bounds_concurrency(server) -> None:
    slow = MockProviderServer()
    slow.add_fault(Fault(latency=0.005, times=None))
    async with slow, AsyncLLMClient(provider="openai", api_key=KEY, base_url=slow.base_url,
                                    layers=[]) as client:
        results = await client.chat_many(
            [{"model": "gpt-4o-mini", "messages": msgs(i)} for i in range(12)], concurrency=3)
    assert results.succeeded == 12
    assert slow.stats()["max_in_flight"] <= 3


async def test_text_progress_draws_a_line() -> None:
    out = io.StringIO()
    transport = MockLLMTransport("fine")
    transport.script("one", ServerError("down"), "three")
    async with AsyncLLMClient(provider="mock", transport=transport, layers=[]) as client:
        results = await client.chat_many(
            [{"model": "m", "messages": msgs(i)} for i in range(3)], concurrency=1,
            progress=TextProgress(out, width=10))
    assert [type(r).__name__ for r in results] == ["ChatResponse", "ServerError", "ChatResponse"]
    text = out.getvalue()
    assert "3/3 ok=2 failed=1" in text and text.endswith("\n")


async def test_chat_many_validates_its_arguments() -> None:
    async with AsyncLLMClient(provider="mock", transport=MockLLMTransport(), layers=[]) as c:
        with pytest.raises(InvalidRequestError):
            await c.chat_many([], concurrency=0)
        with pytest.raises(InvalidRequestError):
            await c.chat_many([], progress="yes")  # type: ignore[arg-type]
        results = await c.chat_many([42])  # type: ignore[list-item]
        assert isinstance(results[0], InvalidRequestError)
        assert await c.chat_many([]) == []


async def test_cancelling_chat_many_leaks_no_connection(server) -> None:
    server.add_fault(Fault(latency=1.0, times=None))  # every call stays in flight
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=server.base_url,
                              layers=[]) as client:
        job = asyncio.ensure_future(client.chat_many(
            [{"model": "gpt-4o-mini", "messages": msgs(i)} for i in range(20)], concurrency=4))
        while server.stats()["in_flight"] < 4:
            await asyncio.sleep(0.001)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        connector = client.transports["openai"].connector  # type: ignore[attr-defined]
        assert connector is not None and not connector._acquired
    assert server.request_count == 4  # nothing was started after the cancellation


async def test_batching_layer_passes_streams_through() -> None:
    async with AsyncLLMClient(provider="mock", transport=MockLLMTransport("a b c"),
                              layers=[BatchingLayer]) as client:
        text = (await client.stream(model="m", messages=msgs(0)).get_final_response()).text
        layer = client.layer(BatchingLayer)
        assert layer is not None and layer.statistics().submitted == 0
    assert text == "a b c"
