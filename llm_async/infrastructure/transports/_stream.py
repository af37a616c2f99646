"""The streaming half of :class:`~llm_async.infrastructure.transports.base.HTTPTransport`: one
attempt sent, its server-sent events decoded into chunks under the timeouts and size caps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Any, ClassVar, Protocol

import aiohttp

from ...context import CallContext
from ...errors import (
    APIConnectionError,
    LLMError,
    ProtocolError,
    RedirectError,
    ResponseTooLargeError,
    StreamError,
)
from ...types import ChatChunk, ChatRequest, Timeout
from ..sse import SSEEvent
from ._http import (
    _NOT_SENT,
    _PARSE_ERRORS,
    _drain,
    _text_size,
)
from ._watch import Watch

__all__ = ["StreamingTransport", "stream_attempt"]


class _Decoder(Protocol):
    def feed(self, chunk: bytes) -> list[SSEEvent]: ...

    def end(self) -> list[SSEEvent]: ...


class _Parser(Protocol):
    done: bool

    def feed(self, event: SSEEvent) -> list[ChatChunk]: ...

    def end(self) -> list[ChatChunk] | None: ...


class StreamingTransport(Protocol):
    """What :func:`stream_attempt` uses of its transport."""

    provider: ClassVar[str]
    keepalive_events: ClassVar[frozenset[str]]
    signs_requests: bool
    timeout: Timeout
    max_stream_bytes: int
    max_stream_text: int

    @property
    def session(self) -> aiohttp.ClientSession: ...


    def stream_decoder(self) -> _Decoder: ...

    def stream_parser(self, request: ChatRequest) -> _Parser: ...

    def _prepare(self, request: ChatRequest, *, stream: bool
                 ) -> tuple[bytes, Any, dict[str, str]]: ...

    async def _sign(self, url: Any, headers: dict[str, str], payload: bytes) -> None: ...

    def _request_id(self, headers: Mapping[str, str]) -> str | None: ...

    def _client_timeout(self, timeout: Timeout) -> aiohttp.ClientTimeout: ...

    def _redirect_error(self, resp: aiohttp.ClientResponse) -> RedirectError: ...

    def _error_from(self, resp: aiohttp.ClientResponse, raw: bytes) -> LLMError: ...

    async def _read_body(self, resp: aiohttp.ClientResponse, watch: Watch) -> bytes: ...

    def _too_large(self, what: str, cap: int, resp: aiohttp.ClientResponse | None
                   ) -> ResponseTooLargeError: ...

    def _map_exception(self, exc: BaseException, phase: str, timeout: Timeout) -> LLMError: ...

    def _without_content(self, error: LLMError, request: ChatRequest) -> None: ...


async def stream_attempt(transport: StreamingTransport, request: ChatRequest,
                         ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
    """One streamed attempt of ``transport`` (what ``HTTPTransport.stream`` returns): send,
    then decode and yield chunks under the ``first_chunk``, ``idle`` and ``total`` timeouts and
    the size caps, recording the attempt on ``ctx``."""
    timeout = request.timeout or transport.timeout
    payload, url, headers = transport._prepare(request, stream=True)
    if transport.signs_requests:
        await transport._sign(url, headers, payload)
    attempt = ctx.begin_attempt(transport.provider, request.model)
    loop = asyncio.get_running_loop()
    # The deadline of the current phase: first_chunk from sending until the first chunk of
    # content; then idle, re-armed by each event that carries data. Comments, pings and
    # content-free events before the first chunk never move it. total throughout.
    watch = Watch.for_attempt(loop, timeout)
    deadline = watch.deadline
    delivered = 0
    received = 0
    text_size = 0
    phase = "first_chunk"
    resp: aiohttp.ClientResponse | None = None
    completed = False
    max_bytes, max_text = transport.max_stream_bytes, transport.max_stream_text
    keepalive = transport.keepalive_events
    try:
        try:
            watch.enter()
            attempt.sent = True  # from here on the body may reach the provider
            try:
                resp = await transport.session.post(
                    url, data=payload, headers=headers,
                    timeout=transport._client_timeout(timeout), allow_redirects=False,
                )
            except _NOT_SENT:
                attempt.sent = False
                raise
            finally:
                watch.leave()
            ctx.response_headers = resp.headers
            attempt.request_id = transport._request_id(resp.headers)
            if 300 <= resp.status < 400:
                raise transport._redirect_error(resp)
            if resp.status >= 400:
                raise transport._error_from(resp, await transport._read_body(resp, watch))
            decoder = transport.stream_decoder()
            parser = transport.stream_parser(request)
            content = resp.content
            while not parser.done:
                # What is already buffered needs no timer; only a real wait is timed.
                data = content.read_nowait()
                if not data:
                    watch.enter()
                    try:
                        data = await content.readany()
                    finally:
                        watch.leave()
                if data:
                    received += len(data)
                    if received > max_bytes:
                        raise transport._too_large("the stream", max_bytes, resp)
                    events = decoder.feed(data)
                else:
                    events = decoder.end()
                progressed = False
                for event in events:
                    if delivered and event.event not in keepalive:
                        progressed = True  # data after the first chunk: not idle
                    try:
                        chunks = parser.feed(event)
                    except LLMError as exc:  # an error event inside the stream
                        if exc.request_id is None:
                            exc.request_id = attempt.request_id
                        raise
                    except _PARSE_ERRORS as exc:  # a malformed event tripped the parser
                        raise ProtocolError(
                            f"malformed stream event ({type(exc).__name__}: {exc})",
                            provider=transport.provider) from exc
                    for chunk in chunks:
                        text_size += _text_size(chunk)
                        if text_size > max_text:
                            raise ResponseTooLargeError(
                                f"the stream's text exceeded the {max_text}-character cap",
                                provider=transport.provider, status=resp.status,
                                request_id=transport._request_id(resp.headers))
                        delivered += 1
                        progressed = True
                        if chunk.usage is not None:
                            attempt.usage = chunk.usage
                        yield chunk
                if not data:
                    break
                now = loop.time()
                if progressed:
                    phase = "idle"
                    watch.progressed(now)
                elif watch.at is not None and now >= watch.at:
                    expired = "total" if deadline is not None and now >= deadline else phase
                    raise transport._map_exception(asyncio.TimeoutError(), expired, timeout)
                if deadline is not None and now >= deadline:
                    raise transport._map_exception(asyncio.TimeoutError(), "total", timeout)
            tail = None if parser.done else parser.end()
            if not parser.done and tail is None:
                raise APIConnectionError("the stream ended before it was complete",
                                         provider=transport.provider,
                                         request_id=transport._request_id(resp.headers))
            for chunk in tail or ():
                delivered += 1
                yield chunk
            completed = await _drain(content)
        except LLMError:
            raise
        except asyncio.TimeoutError as exc:
            expired = "total" if deadline is not None and loop.time() >= deadline else phase
            raise transport._map_exception(exc, expired, timeout) from exc
        except asyncio.CancelledError as exc:
            if not watch.timed_out():
                raise
            expired = "total" if deadline is not None and loop.time() >= deadline else phase
            raise transport._map_exception(
                asyncio.TimeoutError(), expired, timeout) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise transport._map_exception(exc, phase, timeout) from exc
    except LLMError as err:
        transport._without_content(err, request)
        attempt.error = err
        if delivered:
            raise StreamError(f"stream failed after {delivered} chunks: {err.message}",
                              cause=err, chunks_received=delivered) from err
        raise
    finally:
        watch.close()
        if resp is not None:
            if completed:
                resp.release()
            else:
                resp.close()
