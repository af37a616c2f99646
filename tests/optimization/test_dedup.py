"""In-flight deduplication: the layer over real HTTP, single-flight, get_deduplicator()."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import AsyncIterator
from functools import partial

import pytest

from llm_async import AsyncLLMClient
from llm_async.context import CallContext
from llm_async.errors import BadRequestError, InvalidRequestError, LLMError, StreamError
from llm_async.optimization import get_deduplicator
from llm_async.optimization.dedup import DedupConfig, DedupLayer, Deduplicator, SingleFlight
from llm_async.testing import Fault, MockProviderServer

HANG = 120.0  # a guard against a hang, never a speed check

KEY = "sk-test-dedup-key-0001"
MSGS = [{"role": "user", "content": "Tell me a story"}]


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer(token_delay=0.001, reply_words=20) as s:
        yield s


def make_client(server: MockProviderServer, **config: object) -> AsyncLLMClient:
    return AsyncLLMClient(provider="openai", api_key=KEY, base_url=server.base_url,
                          layers=[partial(DedupLayer, config=DedupConfig(**config))])  # type: ignore[arg-type]


def connections_in_use(client: AsyncLLMClient) -> int:
    connector = client.transports["openai"].connector  # type: ignore[attr-defined]
    return 0 if connector is None else len(connector._acquired)


async def settle(client: AsyncLLMClient) -> None:
    deadline = time.monotonic() + HANG
    while connections_in_use(client) and time.monotonic() < deadline:
        await asyncio.sleep(0.001)


async def test_hundred_identical_requests_make_one_upstream_call(server):
    async with make_client(server) as client:
        events: list[str] = []

        async def call() -> str:
            request = client.build_request("gpt-4o-mini", MSGS, {}, stream=False)
            ctx = CallContext()
            ctx.listeners.append(lambda name, attrs: events.append(name))
            return (await client.chat(request=request, context=ctx)).text

        texts = await asyncio.gather(*(call() for _ in range(100)))
        layer = client.layer(DedupLayer)
        assert layer is not None
        stats = layer.statistics()
    assert server.request_count == 1
    assert len(set(texts)) == 1
    assert events.count("dedup_join") == 99
    assert (stats.started, stats.joined, stats.in_flight) == (1, 99, 0)


async def test_followers_get_copies_not_the_same_object(server):
    async with make_client(server) as client:
        a, b = await asyncio.gather(client.chat(model="gpt-4o-mini", messages=MSGS),
                                    client.chat(model="gpt-4o-mini", messages=MSGS))
    assert a is not b and a.text == b.text
    assert server.request_count == 1


async def test_every_waiter_gets_the_same_typed_error(server):
    server.add_fault(Fault(status=400, times=1))
    async with make_client(server) as client:
        results = await asyncio.gather(
            *(client.chat(model="gpt-4o-mini", messages=MSGS) for _ in range(10)),
            return_exceptions=True)
    assert all(isinstance(r, BadRequestError) for r in results)
    assert len({id(r) for r in results}) == 1
    assert server.request_count == 1


async def test_different_requests_and_opt_outs_are_not_shared(server):
    async with make_client(server) as client:
        await asyncio.gather(
            client.chat(model="gpt-4o-mini", messages=MSGS),
            client.chat(model="gpt-4o-mini", messages=MSGS, temperature=0.5),
            client.chat(model="gpt-4o-mini", messages=MSGS, options={"dedup": False}),
            client.chat(model="gpt-4o-mini", messages=MSGS, user_id="someone-else"),
        )
        with pytest.raises(InvalidRequestError):
            await client.chat(model="gpt-4o-mini", messages=MSGS, options={"dedup": "no"})
    assert server.request_count == 4


async def test_a_cancelled_waiter_does_not_cancel_the_call_for_others(server):
    server.add_fault(Fault(latency=0.05, times=1))  # keeps the call in flight meanwhile
    async with make_client(server) as client:
        layer = client.layer(DedupLayer)
        assert layer is not None
        leader = asyncio.ensure_future(client.chat(model="gpt-4o-mini", messages=MSGS))
        while server.request_count == 0:
            await asyncio.sleep(0.001)
        follower = asyncio.ensure_future(client.chat(model="gpt-4o-mini", messages=MSGS))
        while layer.flights.joined == 0:
            await asyncio.sleep(0)
        leader.cancel()
        reply = await follower
        with pytest.raises(asyncio.CancelledError):
            await leader
    assert reply.text and server.request_count == 1


async def test_the_call_is_cancelled_when_every_waiter_has_gone(server):
    slow = MockProviderServer(token_delay=0.0)
    slow.add_fault(Fault(latency=5.0, times=1))
    async with slow, make_client(slow) as client:
        tasks = [asyncio.ensure_future(client.chat(model="gpt-4o-mini", messages=MSGS))
                 for _ in range(3)]
        while slow.request_count == 0:
            await asyncio.sleep(0.001)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        layer = client.layer(DedupLayer)
        assert layer is not None
        assert layer.statistics().in_flight == 0 and layer.flights.cancelled == 1
        await settle(client)
        assert connections_in_use(client) == 0
        # a fresh call starts a new flight at once
        assert (await client.chat(model="gpt-4o-mini", messages=MSGS)).text


async def test_streams_fan_out_to_every_subscriber(server):
    async with make_client(server) as client:

        async def consume(delay: float) -> str:
            await asyncio.sleep(delay)
            stream = client.stream(model="gpt-4o-mini", messages=MSGS)
            return (await stream.get_final_response()).text

        # the late subscribers join mid-stream and still get the whole answer
        texts = await asyncio.gather(*(consume(0.003 * i) for i in range(5)))
    assert server.request_count == 1
    assert len(set(texts)) == 1 and len(texts[0].split()) == 20


async def test_a_subscriber_leaving_does_not_stop_the_others(server):
    async with make_client(server) as client:
        first = client.stream(model="gpt-4o-mini", messages=MSGS)
        second = client.stream(model="gpt-4o-mini", messages=MSGS)
        await first.__anext__()
        await second.__anext__()  # both subscribed
        await first.aclose()
        text = (await second.get_final_response()).text
        assert len(text.split()) == 20
        await settle(client)
        assert connections_in_use(client) == 0
    assert server.request_count == 1


async def test_upstream_stream_is_cancelled_when_all_subscribers_leave(server):
    async with make_client(server) as client:
        streams = [client.stream(model="gpt-4o-mini", messages=MSGS) for _ in range(3)]
        for stream in streams:
            await stream.__anext__()
        for stream in streams:
            await stream.aclose()
        layer = client.layer(DedupLayer)
        assert layer is not None and layer.statistics().in_flight == 0
        await settle(client)
        assert connections_in_use(client) == 0
    assert server.request_count == 1


async def test_stream_error_reaches_every_subscriber_after_the_same_chunks(server):
    server.add_fault(Fault(error_after=3, times=1))
    async with make_client(server) as client:

        async def consume() -> tuple[str, BaseException | None]:
            stream = client.stream(model="gpt-4o-mini", messages=MSGS)
            try:
                async for _ in stream:
                    pass
            except LLMError as exc:
                return stream.text, exc
            return stream.text, None

        results = await asyncio.gather(*(consume() for _ in range(4)))
    assert server.request_count == 1
    assert len({text for text, _ in results}) == 1
    errors = [err for _, err in results]
    assert all(isinstance(e, StreamError) for e in errors) and len({id(e) for e in errors}) == 1


async def test_passthrough_streams_are_not_shared(server):
    async with make_client(server, streams="passthrough") as client:
        await asyncio.gather(*(client.stream(model="gpt-4o-mini", messages=MSGS)
                               .get_final_response() for _ in range(3)))
    assert server.request_count == 3


async def test_context_vars_flow_into_the_shared_call() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    flights: SingleFlight[str] = SingleFlight()

    async def work() -> str:
        await asyncio.sleep(0)
        return var.get()

    var.set("leader")
    assert await flights.do("k", work) == "leader"
    assert len(flights) == 0  # the entry is gone as soon as the call ended


# -- the process-wide deduplicator -----------------------------------------------------------


async def test_deduplicate_with_an_async_executor_is_awaitable() -> None:
    dedup = Deduplicator()
    calls = 0

    async def expensive_call() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.001)
        return 42

    results = await asyncio.gather(*(
        dedup.deduplicate(key="h", executor=lambda: expensive_call()) for _ in range(10)))
    assert results == [42] * 10 and calls == 1
    assert await dedup.run("h", expensive_call) == 42 and calls == 2


async def test_deduplicate_sync_executor_inside_a_loop_returns_the_value() -> None:
    assert get_deduplicator().deduplicate(key="s", executor=lambda: "plain") == "plain"


def test_deduplicate_sync_executors_across_threads() -> None:
    dedup = Deduplicator()
    started = threading.Event()
    release = threading.Event()
    calls = 0

    def expensive_call() -> str:
        nonlocal calls
        calls += 1
        started.set()
        release.wait(HANG)
        return "value"

    results: list[str] = []

    def worker() -> None:
        results.append(dedup.deduplicate(key="t", executor=expensive_call))

    threads = [threading.Thread(target=worker) for _ in range(5)]
    threads[0].start()
    started.wait(HANG)
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + HANG
    while dedup.sync_joined < 4 and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for thread in threads:
        thread.join(HANG)
    assert results == ["value"] * 5 and calls == 1
    assert dedup.statistics().in_flight == 0


def test_deduplicate_sync_error_is_shared_and_entry_removed() -> None:
    dedup = Deduplicator()
    with pytest.raises(ZeroDivisionError):
        dedup.deduplicate(key="e", executor=lambda: 1 / 0)
    assert dedup.deduplicate(key="e", executor=lambda: 7) == 7
