"""Each timeout (connect, first chunk, idle, total) fires against a real loopback server; per
client and per call; time queued in our own limits counts toward none of them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from functools import partial

import pytest

from llm_async import AsyncLLMClient, MockProviderServer, Timeout
from llm_async.application.circuit_breaker import CircuitBreakerConfig, CircuitBreakerLayer
from llm_async.application.rate_limit import ConcurrencyLimitLayer
from llm_async.application.retry_strategy import RetryConfig, RetryLayer
from llm_async.errors import APITimeoutError, StreamError
from llm_async.testing import Fault

MESSAGES = [{"role": "user", "content": "q"}]


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    # a short shutdown so handlers still sleeping in latency faults do not slow the test down
    async with MockProviderServer(shutdown_timeout=0.05) as srv:
        yield srv


def _client(server: MockProviderServer, **kw: object) -> AsyncLLMClient:
    kw.setdefault("layers", [])
    return AsyncLLMClient(provider="openai", api_key="sk-test-abcdef", base_url=server.base_url,
                          **kw)  # type: ignore[arg-type]


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A listening socket whose accept backlog is full: new connections hang in SYN."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in (*fillers, listener):
            sock.close()


async def test_connect_timeout(unaccepting_port: int) -> None:
    async with AsyncLLMClient(provider="openai", api_key="sk-test-abcdef",
                              base_url=f"http://127.0.0.1:{unaccepting_port}/v1", layers=[],
                              timeout=Timeout(connect=0.05, first_chunk=5, idle=5,
                                              total=10)) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.chat(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.phase == "connect" and info.value.retryable


async def test_first_chunk_timeout_unary_and_stream(server: MockProviderServer) -> None:
    async with _client(server, timeout=Timeout(first_chunk=0.2, idle=5, total=10)) as client:
        server.add_fault(Fault(latency=1.0, stream=False))
        with pytest.raises(APITimeoutError) as info:
            await client.chat(model="gpt-4o-mini", messages=MESSAGES)
        assert info.value.phase == "first_chunk"

        server.add_fault(Fault(latency=1.0, stream=True))
        with pytest.raises(APITimeoutError) as info:
            async for _ in client.stream(model="gpt-4o-mini", messages=MESSAGES):
                pass
        assert info.value.phase == "first_chunk"
        # the headers (and the role-only event) arrive at once; first_chunk still expires,
        # because it waits for the first *content*
        server.add_fault(Fault(token_delay=1.0))
        with pytest.raises(APITimeoutError) as info:
            async for _ in client.stream(model="gpt-4o-mini", messages=MESSAGES):
                pass
        assert info.value.phase == "first_chunk"


async def test_idle_timeout_between_chunks(server: MockProviderServer) -> None:
    async with _client(server, timeout=Timeout(first_chunk=2.0, idle=0.03, total=10)) as client:
        server.add_fault(Fault(token_delay=0.15))
        received = []
        with pytest.raises(StreamError) as info:
            async for chunk in client.stream(model="gpt-4o-mini", messages=MESSAGES):
                received.append(chunk)
        assert len(received) == 1  # the first chunk came within first_chunk; then idle expired
        cause = info.value.cause
        assert isinstance(cause, APITimeoutError) and cause.phase == "idle"


async def test_total_timeout_unary_and_stream(server: MockProviderServer) -> None:
    async with _client(server, timeout=Timeout(first_chunk=None, idle=None, total=0.05)) as client:
        server.add_fault(Fault(latency=0.5, stream=False))
        with pytest.raises(APITimeoutError) as info:
            await client.chat(model="gpt-4o-mini", messages=MESSAGES)
        assert info.value.phase == "total"

    # a stream whose every gap is short but whose whole is too long
    async with _client(server, timeout=Timeout(first_chunk=1.0, idle=1.0, total=0.3)) as client:
        server.add_fault(Fault(token_delay=0.05))
        with pytest.raises((StreamError, APITimeoutError)) as info_stream:
            async for _ in client.stream(model="gpt-4o-mini", messages=MESSAGES):
                pass
        error = info_stream.value
        # normally after a few chunks (a StreamError); on a starved CPU maybe before the first
        cause = error.cause if isinstance(error, StreamError) else error
        assert isinstance(cause, APITimeoutError) and cause.phase == "total"


async def test_per_call_timeout_overrides_the_client(server: MockProviderServer) -> None:
    async with _client(server, timeout=Timeout(first_chunk=0.02, idle=5, total=10)) as client:
        server.add_fault(Fault(latency=0.1, stream=False))
        reply = await client.chat(model="gpt-4o-mini", messages=MESSAGES,
                                  timeout=Timeout(first_chunk=2.0, idle=2.0, total=5.0))
        assert reply.text
        server.add_fault(Fault(latency=0.5, stream=False))
        with pytest.raises(APITimeoutError):  # a float is a total on top of the client's
            await client.chat(model="gpt-4o-mini", messages=MESSAGES, timeout=0.05)


async def test_timeouts_are_retried(server: MockProviderServer) -> None:
    layers = [partial(RetryLayer, config=RetryConfig(max_attempts=3, base_delay=0.001))]
    async with _client(server, layers=layers,
                       timeout=Timeout(first_chunk=0.2, idle=5, total=10)) as client:
        server.add_fault(Fault(latency=1.0, stream=False))
        reply = await client.chat(model="gpt-4o-mini", messages=MESSAGES)
        assert reply.text and server.request_count == 2


async def test_queue_time_counts_toward_no_timeout_and_never_trips_the_breaker() -> None:
    """Sixteen streams with 1 s first-chunk/idle and 1.5 s total timeouts queue behind a single
    permit for longer than that; none times out and the breaker sees no failure. (A stream
    takes 12 × 10 ms, far below every limit even on a loaded machine; the last one waits for
    fifteen of them, at least 1.8 s, longer than every limit.)"""
    async with MockProviderServer(token_delay=0.01) as server:
        layers = [partial(CircuitBreakerLayer,
                          config=CircuitBreakerConfig(failure_threshold=1, jitter=0.0)),
                  partial(ConcurrencyLimitLayer, max_concurrency=1)]
        async with _client(server, layers=layers,
                           timeout=Timeout(first_chunk=1.0, idle=1.0, total=1.5)) as client:
            async def one() -> tuple[str, float]:
                stream = client.stream(model="gpt-4o-mini", messages=MESSAGES)
                text = "".join([c.delta async for c in stream])
                return text, stream.context.queue_wait

            results = await asyncio.gather(*(one() for _ in range(16)))
            assert all(len(text.split()) == 12 for text, _ in results)
            assert max(wait for _, wait in results) > 1.5
            layer = client.layer(CircuitBreakerLayer)
            assert layer is not None
            status = layer.status()["breakers"]["openai/gpt-4o-mini"]
            assert status["state"] == "closed" and status["failed_requests"] == 0


@contextlib.asynccontextmanager
async def _stalling_server(body_head: bytes, length: int) -> AsyncIterator[str]:
    """A loopback HTTP server that answers 200 with ``Content-Length: length``, sends
    ``body_head`` and then nothing more until the client hangs up."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % length + body_head)
            await writer.drain()
            await reader.read()  # until the client closes the connection
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        listener.close()


async def test_a_unary_body_that_stalls_after_the_headers_expires_idle() -> None:
    async with _stalling_server(b'{"id": "x", "choices": [', 400) as base_url, \
            AsyncLLMClient(provider="openai", api_key="sk-test-abcdef", base_url=base_url,
                           layers=[], timeout=Timeout(first_chunk=5, idle=0.05,
                                                      total=30)) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.chat(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.phase == "idle" and info.value.retryable


async def test_a_slow_consumer_between_chunks_is_never_interrupted(
        server: MockProviderServer) -> None:
    """The idle deadline passes while the caller is busy with a chunk: the caller's own await
    runs to its end, and the stream goes on with what the server had sent meanwhile."""
    async with _client(server, timeout=Timeout(first_chunk=5, idle=0.02, total=30)) as client:
        texts = []
        async with client.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
            async for chunk in stream:
                if chunk.delta:
                    texts.append(chunk.delta)
                if len(texts) == 1:
                    await asyncio.sleep(0.2)  # longer than idle: not a timeout of the stream
        assert stream.final_response is not None and "".join(texts)
