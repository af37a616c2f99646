"""LLMClientService: sync calls and streams over real loopback HTTP, from many threads, from
inside a running event loop, and the release of every connection when a caller stops early."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from llm_async import AuthenticationError, ChatResponse, InvalidRequestError, StreamError
from llm_async.context import CallContext
from llm_async.facade import LLMClientService, SyncChatStream
from llm_async.infrastructure.transports.mock import MockLLMTransport
from llm_async.testing import Fault

if TYPE_CHECKING:
    from conftest import ThreadedServer

KEY = "sk-test-facade-key-0123456789"
HELLO = [{"role": "user", "content": "Hello"}]


def make_service(server: ThreadedServer, **options: Any) -> LLMClientService:
    return LLMClientService(provider="openai", api_key=KEY, base_url=server.base_url,
                            layers=[], **options)


def acquired_connections(service: LLMClientService) -> int:
    """Connections the service's transport holds right now (checked on the service's loop)."""
    transport = service.client.transports["openai"]

    def count() -> int:
        connector = getattr(transport, "connector", None)
        return 0 if connector is None else len(connector._acquired)

    return service.call(count)


@pytest.fixture
def service(threaded_server: ThreadedServer, clean_env: pytest.MonkeyPatch) -> Any:
    with make_service(threaded_server) as svc:
        yield svc


# -- unary calls ----------------------------------------------------------------------------


def test_invoke_chat_over_http(service: LLMClientService, threaded_server: ThreadedServer) -> None:
    reply = service.invoke_chat(model="gpt-4", messages=[{"role": "user", "content": "echo: hi"}])
    assert isinstance(reply, ChatResponse)
    assert reply.text == "hi"
    assert reply.provider == "openai" and reply.model == "gpt-4"
    assert threaded_server.stats()["requests"] == 1
    assert acquired_connections(service) == 0


def test_params_and_typed_errors_cross_the_thread(service: LLMClientService,
                                                  threaded_server: ThreadedServer) -> None:
    reply = service.invoke_chat(model="gpt-4", messages=HELLO, max_tokens=3)
    assert reply.usage.output_tokens == 3 and reply.finish_reason == "length"

    with pytest.raises(InvalidRequestError) as bad:
        service.invoke_chat(model="gpt-4", messages=[{"role": "wizard", "content": "x"}])
    assert bad.value.field == "messages[0].role"

    threaded_server.add_fault(Fault(status=401))
    with pytest.raises(AuthenticationError) as auth:
        service.invoke_chat(model="gpt-4", messages=HELLO)
    assert auth.value.status == 401
    assert KEY not in str(auth.value)
    assert threaded_server.stats()["requests"] == 2  # the invalid request was never sent


def test_one_long_lived_loop(service: LLMClientService) -> None:
    """Every call runs on the same loop (not asyncio.run per call), on another thread."""
    loops = {id(service.call(asyncio.get_running_loop)) for _ in range(3)}
    service.invoke_chat(model="gpt-4", messages=HELLO)
    transport = service.client.transports["openai"]
    session = service.call(lambda: transport.session)
    for _ in range(5):
        service.invoke_chat(model="gpt-4", messages=HELLO)
    assert service.call(lambda: transport.session) is session
    loops.add(id(service.call(asyncio.get_running_loop)))
    assert len(loops) == 1
    assert service.call(threading.get_ident) != threading.get_ident()


# -- threads --------------------------------------------------------------------------------


def test_many_threads_share_one_service(service: LLMClientService,
                                        threaded_server: ThreadedServer) -> None:
    calls = 96
    start = threading.Barrier(16)
    threaded_server.add_fault(Fault(latency=0.02, times=16))  # the first calls linger a little

    def work(i: int) -> tuple[str, int]:
        if i < 16:
            start.wait()  # the first sixteen calls start together
        reply = service.invoke_chat(model="gpt-4",
                                    messages=[{"role": "user", "content": f"echo: n{i}"}])
        return reply.text, threading.get_ident()

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(work, range(calls)))
    assert [text for text, _ in results] == [f"n{i}" for i in range(calls)]
    assert len({ident for _, ident in results}) > 1
    assert threaded_server.stats()["requests"] == calls
    assert threaded_server.stats()["max_in_flight"] > 1  # they really overlapped
    assert acquired_connections(service) == 0


def test_many_threads_stream_at_once(service: LLMClientService) -> None:
    def work(i: int) -> str:
        return "".join(service.stream_chat(
            model="gpt-4", messages=[{"role": "user", "content": f"echo: s{i} t{i}"}],
        ).text_stream())

    with ThreadPoolExecutor(max_workers=16) as pool:
        texts = list(pool.map(work, range(48)))
    assert texts == [f"s{i} t{i}" for i in range(48)]
    assert acquired_connections(service) == 0


# -- inside a running event loop ------------------------------------------------------------


async def test_sync_call_from_inside_a_running_loop(service: LLMClientService) -> None:
    caller_loop = asyncio.get_running_loop()
    reply = service.invoke_chat(model="gpt-4", messages=[{"role": "user", "content": "echo: in"}])
    assert reply.text == "in"
    chunks = [c.delta for c in service.stream_chat(model="gpt-4", messages=HELLO)]
    assert "".join(chunks).strip()
    assert service.call(asyncio.get_running_loop) is not caller_loop


async def test_ainvoke_chat_does_not_block_the_callers_loop(service: LLMClientService) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    tick_task = asyncio.create_task(ticker())
    replies = await asyncio.gather(*(
        service.ainvoke_chat(model="gpt-4", messages=[{"role": "user", "content": f"echo: a{i}"}])
        for i in range(8)))
    tick_task.cancel()
    assert [r.text for r in replies] == [f"a{i}" for i in range(8)]
    assert ticks > 0  # the caller's loop kept running while the calls were in flight


class CancellableProvider(MockLLMTransport):
    """A slow provider that reports, thread-safely, when its call was cancelled."""

    def __init__(self) -> None:
        super().__init__(latency=60.0)
        self.entered = threading.Event()
        self.cancelled = threading.Event()

    async def chat(self, request: Any, ctx: CallContext) -> ChatResponse:
        self.entered.set()
        try:
            return await super().chat(request, ctx)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def test_cancelling_ainvoke_cancels_the_call(clean_env: pytest.MonkeyPatch) -> None:
    transport = CancellableProvider()
    with LLMClientService(provider="mock", transport=transport, layers=[]) as svc:
        task = asyncio.create_task(svc.ainvoke_chat(model="m", messages=HELLO))
        while not transport.entered.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the cancellation crosses to the service's loop asynchronously
        assert await asyncio.to_thread(transport.cancelled.wait, 10)


def test_sync_call_from_the_services_own_loop_is_refused(service: LLMClientService) -> None:
    def reenter() -> None:
        service.invoke_chat(model="gpt-4", messages=HELLO)

    with pytest.raises(InvalidRequestError, match="own event loop"):
        service.call(reenter)


# -- streams --------------------------------------------------------------------------------


def test_stream_chat_yields_chunks_and_final_response(service: LLMClientService) -> None:
    stream = service.stream_chat(model="gpt-4",
                                 messages=[{"role": "user", "content": "echo: a b c"}])
    assert isinstance(stream, SyncChatStream)
    deltas = [chunk.delta for chunk in stream]
    assert "".join(deltas) == "a b c"
    final = stream.final_response
    assert final is not None and final.text == "a b c" and final.usage.output_tokens == 3
    assert stream.closed
    assert acquired_connections(service) == 0


def test_breaking_out_of_a_stream_releases_its_connection(
        slow_stream_server: ThreadedServer, clean_env: pytest.MonkeyPatch) -> None:
    with make_service(slow_stream_server) as svc:
        for received, _chunk in enumerate(svc.stream_chat(model="gpt-4", messages=HELLO), 1):
            if received == 3:
                assert acquired_connections(svc) == 1  # mid-stream: the connection is held
                break
        assert acquired_connections(svc) == 0
        # the service still works afterwards
        assert svc.invoke_chat(model="gpt-4", messages=[{"role": "user", "content": "echo: ok"}]
                               ).text == "ok"


def test_closing_a_stream_early_with_a_context_manager(
        slow_stream_server: ThreadedServer, clean_env: pytest.MonkeyPatch) -> None:
    with make_service(slow_stream_server) as svc:
        with svc.stream_chat(model="gpt-4", messages=HELLO) as stream:
            first = next(stream)
            assert first.delta
        assert stream.closed and stream.final_response is None
        assert list(stream) == []
        assert acquired_connections(svc) == 0
        with pytest.raises(InvalidRequestError, match="closed before it finished"):
            stream.get_final_response()


def test_a_stream_that_is_never_iterated_sends_nothing(
        service: LLMClientService, threaded_server: ThreadedServer) -> None:
    stream = service.stream_chat(model="gpt-4", messages=HELLO)
    stream.close()
    assert threaded_server.stats()["requests"] == 0
    assert list(stream) == []


def test_bad_stream_input_raises_before_sending(service: LLMClientService,
                                                threaded_server: ThreadedServer) -> None:
    with pytest.raises(InvalidRequestError):
        service.stream_chat(model="gpt-4", messages=[])
    assert threaded_server.stats()["requests"] == 0


def test_a_stream_failing_midway_raises_stream_error(service: LLMClientService,
                                                     threaded_server: ThreadedServer) -> None:
    threaded_server.add_fault(Fault(cut_after=3))
    received: list[str] = []
    with pytest.raises(StreamError) as failure:
        for chunk in service.stream_chat(model="gpt-4", messages=HELLO):
            received.append(chunk.delta)
    assert len(received) == 3 and failure.value.chunks_received == 3
    assert acquired_connections(service) == 0


def test_a_stream_failing_before_its_first_chunk(service: LLMClientService,
                                                 threaded_server: ThreadedServer) -> None:
    threaded_server.add_fault(Fault(status=401))
    stream = service.stream_chat(model="gpt-4", messages=HELLO)
    with pytest.raises(AuthenticationError):
        next(stream)
    assert stream.closed and list(stream) == []


# -- lifecycle ------------------------------------------------------------------------------


def test_close_is_idempotent_and_refuses_later_calls(threaded_server: ThreadedServer,
                                                     clean_env: pytest.MonkeyPatch) -> None:
    svc = make_service(threaded_server)
    thread_count = threading.active_count()
    svc.invoke_chat(model="gpt-4", messages=HELLO)
    transport = svc.client.transports["openai"]
    svc.close()
    svc.close()
    assert svc.closed and "closed" in repr(svc)
    assert transport.connector is None  # the aiohttp session was closed on its loop
    assert threading.active_count() == thread_count - 1  # the loop thread is gone
    with pytest.raises(InvalidRequestError, match="closed"):
        svc.invoke_chat(model="gpt-4", messages=HELLO)
    with pytest.raises(InvalidRequestError, match="closed"):
        svc.stream_chat(model="gpt-4", messages=HELLO)


def test_close_while_a_stream_is_open(slow_stream_server: ThreadedServer,
                                      clean_env: pytest.MonkeyPatch) -> None:
    svc = make_service(slow_stream_server)
    stream = svc.stream_chat(model="gpt-4", messages=HELLO)
    assert next(stream).delta
    svc.close()  # cancels the stream's task and closes the session
    with pytest.raises(InvalidRequestError, match="closed"):
        next(stream)
    stream.close()
    assert stream.closed


def test_an_unreferenced_service_is_closed_by_the_garbage_collector(
        clean_env: pytest.MonkeyPatch) -> None:
    import gc

    svc = LLMClientService(provider="mock")
    thread = svc._runtime.thread
    assert svc.invoke_chat(model="m", messages=HELLO).text
    del svc
    gc.collect()
    thread.join(120)  # a guard against a hang, never a speed check
    assert not thread.is_alive()


def test_the_process_wide_service_is_created_once_under_contention(
        mock_env: pytest.MonkeyPatch) -> None:
    from llm_async.facade import get_llm_client_service, invoke_chat

    start = threading.Barrier(16)

    def get(_: int) -> tuple[int, str]:
        start.wait()
        service = get_llm_client_service()
        return id(service), invoke_chat(model="gpt-4", messages=HELLO).text

    before = {t.name for t in threading.enumerate()}
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(get, range(16)))
    assert len({ident for ident, _ in results}) == 1
    assert {text for _, text in results} == {"This is a mock response."}
    started = {t.name for t in threading.enumerate()} - before
    assert len([name for name in started if name.startswith("llm-async-service-")]) == 1
