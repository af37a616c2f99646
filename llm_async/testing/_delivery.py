"""How the embedded server delivers an answer: its headers, an error or fault answer, a stream
with its fault effects (delays, a garbled event, an in-stream error, a cut, keep-alives only, an
endless body), a gzip bomb, and a dropped connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import zlib

from aiohttp import web

from ._counters import BilledRequest, Counters, RateLimitWindow
from ._dialect import Dialect
from ._faults import STREAM_LIMIT_BYTES, STREAM_LIMIT_SECONDS, Fault, stream_positions
from ._wire import (
    ChatRequest,
    ErrorInfo,
    Reply,
    ResponseContext,
    default_error,
    dumps,
    format_seconds,
)

__all__ = [
    "answer_headers",
    "drop_connection",
    "error_response",
    "fault_response",
    "gzip_bomb",
    "stream_reply",
]

_JSON = "application/json"


async def stream_reply(
    request: web.Request,
    dialect: Dialect,
    ctx: ResponseContext,
    chat: ChatRequest,
    reply: Reply,
    fault: Fault | None,
    headers: dict[str, str],
    billed: BilledRequest,
    *,
    token_delay: float,
    counters: Counters,
) -> web.StreamResponse:
    """Write ``reply`` as ``dialect`` renders its stream, with the fault's stream effects: a
    delay between events, a garbled event, an in-stream error, a cut, keep-alives only or an
    endless body."""
    script = dialect.render_stream(ctx, chat, reply)
    delay = token_delay
    if fault is not None and fault.token_delay is not None:
        delay = fault.token_delay
    headers.setdefault("Cache-Control", "no-cache")
    response = web.StreamResponse(status=200, headers=headers)
    counters.streams += 1
    await response.prepare(request)

    if delay <= 0 and (fault is None or not fault.has_stream_effect):
        await response.write(b"".join([*script.head, *script.body, *script.tail]))
        await response.write_eof()
        return response

    body = script.body
    count = len(body)
    cut_at, malformed_at, error_at = stream_positions(fault, count)
    keepalive_at = -1 if fault is None or fault.keepalive_after is None \
        else min(fault.keepalive_after, count)
    endless_at = -1 if fault is None or fault.endless_after is None \
        else min(fault.endless_after, count)

    await response.write(b"".join(script.head))
    for index in range(count + 1):
        if index == malformed_at:
            await response.write(dialect.malformed_event(ctx, reply))
        if index == cut_at:
            if index:
                # Give the client time to read what was sent: aiohttp drops data still
                # buffered when the connection breaks, which would make cuts race the reader.
                await asyncio.sleep(_CUT_GRACE)
            billed.delivered = "cut"
            drop_connection(request, reset=False)
            return response
        if index == error_at:
            assert fault is not None
            await response.write(dialect.stream_error_event(ctx, reply, fault.error_body))
            await response.write_eof()
            return response
        if index == keepalive_at:
            assert fault is not None
            await _keep_alive_only(response, dialect.keepalive_event(),
                                   fault.keepalive_interval)
            return response
        if index == endless_at:
            await _endless(response, body or [dialect.keepalive_event()])
            return response
        if index == count:
            break
        if delay > 0:
            await asyncio.sleep(delay)
        await response.write(body[index])
    await response.write(b"".join(script.tail))
    await response.write_eof()
    return response


_CUT_GRACE = 0.02


async def _keep_alive_only(response: web.StreamResponse, event: bytes, interval: float) -> None:
    """Send nothing but keep-alives until the client hangs up (or the time limit passes)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + STREAM_LIMIT_SECONDS
    while loop.time() < end:
        await response.write(event)
        await asyncio.sleep(interval)
    await response.write_eof()


async def _endless(response: web.StreamResponse, events: list[bytes]) -> None:
    """Repeat ``events`` until the client hangs up (or the byte limit passes)."""
    block = b"".join(events)
    while len(block) < 16384:
        block += block
    sent = 0
    while sent < STREAM_LIMIT_BYTES:
        await response.write(block)
        sent += len(block)
    await response.write_eof()


_bombs: dict[tuple[int, bool], bytes] = {}


def gzip_bomb(size: int, *, stream: bool) -> bytes:
    """A gzip stream that inflates to ``size`` bytes: zeros, or SSE comment lines for a stream
    (built a MiB at a time and remembered, so it costs a few KiB per MiB of output)."""
    key = (size, stream)
    bomb = _bombs.get(key)
    if bomb is None:
        line = b": " + b"z" * 1021 + b"\n"
        block = line * 1024 if stream else bytes(1 << 20)
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        parts = []
        left = size
        while left > 0:
            piece = block if left >= len(block) else block[:left]
            parts.append(compressor.compress(piece))
            left -= len(piece)
        parts.append(compressor.flush())
        bomb = _bombs[key] = b"".join(parts)
    return bomb


def drop_connection(request: web.Request, *, reset: bool) -> None:
    """Close the request's connection: with a TCP RST (``reset``) or after flushing what was
    already written (FIN), without completing the HTTP message either way."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


def answer_headers(dialect: Dialect, ctx: ResponseContext, content_type: str, tokens: int,
                   fault: Fault | None, window: RateLimitWindow | None) -> dict[str, str]:
    """The headers of an answer: request id, content type, the rate-limit headers of ``window``
    (the answer's ``tokens`` recorded in it) and the fault's own headers."""
    headers = {dialect.request_id_header: ctx.request_id, "Content-Type": content_type}
    if window is not None:
        headers.update(dialect.rate_limit_headers(window.record(tokens)))
    if fault is not None:
        if fault.retry_after is not None:
            headers["Retry-After"] = format_seconds(fault.retry_after)
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = format_seconds(fault.retry_after_ms)
        headers.update(fault.headers)
    return headers


def error_response(dialect: Dialect, ctx: ResponseContext, status: int, info: ErrorInfo,
                   param: str | None = None, *, fault: Fault | None = None,
                   window: RateLimitWindow | None = None) -> web.Response:
    """The dialect's error answer for ``status``."""
    headers = answer_headers(dialect, ctx, _JSON, 0, fault, window)
    for name, value in dialect.error_headers(status, info).items():
        headers.setdefault(name, value)
    body = dumps(dialect.error_payload(status, info, param)).encode()
    return web.Response(body=body, status=status, headers=headers)


def fault_response(dialect: Dialect, ctx: ResponseContext, fault: Fault,
                   window: RateLimitWindow | None) -> web.Response:
    """The answer of a fault with an error status: its body as given, else the dialect's
    error for that status."""
    status = fault.status
    assert status is not None
    body = fault.body
    if body is None:
        info = default_error(status, ctx.model or None)
        return error_response(dialect, ctx, status, info, fault=fault, window=window)
    if isinstance(body, str):
        content_type = "text/html" if body.lstrip().startswith("<") else "text/plain"
        data = body.encode()
    else:
        content_type = _JSON
        data = dumps(body).encode()
    headers = answer_headers(dialect, ctx, content_type, 0, fault, window)
    return web.Response(body=data, status=status, headers=headers)
