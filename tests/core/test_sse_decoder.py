"""The incremental SSE decoder: split reads, line endings, comments, multi-line data, caps."""

from __future__ import annotations

import pytest

from llm_async.errors import ResponseTooLargeError
from llm_async.infrastructure.sse import SSEDecoder, SSEEvent

STREAM = (
    b": OPENROUTER PROCESSING\n\n"
    b"data: {\"a\": 1}\n\n"
    b"event: message_start\r\ndata: {\"type\": \"message_start\"}\r\n\r\n"
    b"data: line one\ndata: line two\n\n"
    b"id: 7\nretry: 100\ndata:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent("message", b'{"a": 1}'),
    SSEEvent("message_start", b'{"type": "message_start"}'),
    SSEEvent("message", b"line one\nline two"),
    SSEEvent("message", b"no-space"),
    SSEEvent("message", b"[DONE]"),
]


def _decode(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.end())
    return events


def test_whole_stream() -> None:
    assert _decode([STREAM]) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_every_split_point(cut: int) -> None:
    assert _decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED


def test_byte_by_byte() -> None:
    assert _decode([STREAM[i:i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_cr_only_line_endings_and_crlf_split() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\n\r\n") == [SSEEvent("message", b"x")]
    assert _decode([b"data: y\r\rdata: z\r\r"]) == [SSEEvent("message", b"y"),
                                                   SSEEvent("message", b"z")]


def test_final_event_without_blank_line_is_flushed() -> None:
    assert _decode([b"data: last"]) == [SSEEvent("message", b"last")]


def test_comment_only_stream_yields_nothing() -> None:
    assert _decode([b": ping\n\n: ping\n\n"]) == []


def test_event_over_cap_raises_typed_error() -> None:
    decoder = SSEDecoder(max_event_bytes=64)
    with pytest.raises(ResponseTooLargeError):
        decoder.feed(b"data: " + b"x" * 100 + b"\n\n")
    decoder = SSEDecoder(max_event_bytes=64)
    with pytest.raises(ResponseTooLargeError):  # a huge line with no newline yet
        decoder.feed(b"data: " + b"x" * 100)
    decoder = SSEDecoder(max_event_bytes=64)
    with pytest.raises(ResponseTooLargeError):  # many small data lines adding up
        for _ in range(10):
            decoder.feed(b"data: " + b"x" * 10 + b"\n")
