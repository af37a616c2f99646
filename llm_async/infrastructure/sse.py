"""An incremental Server-Sent Events decoder.

Feed it bytes as they arrive, in pieces of any size; it returns the complete events. It handles
reads split anywhere (even inside ``\\r\\n``), LF, CRLF and CR line ends, comment lines
(``: OPENROUTER PROCESSING``), ``event:`` names, multi-line ``data:`` and a final event with no
blank line after it. Event data stays ``bytes`` (JSON parsers take bytes). A line or an event
larger than ``max_event_bytes`` raises :class:`~llm_async.errors.ResponseTooLargeError`.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import ResponseTooLargeError

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent"]

DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024


class SSEEvent(NamedTuple):
    """One event: its name (``"message"`` when none was given) and its data."""

    event: str
    data: bytes


class SSEDecoder:
    """Turns a byte stream into :class:`SSEEvent` objects, incrementally."""

    __slots__ = ("_data", "_event", "_max", "_pending", "_size")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._pending = b""
        self._data: list[bytes] = []
        self._event = ""
        self._size = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode ``chunk``; return the events it completed (possibly none)."""
        buf = self._pending + chunk if self._pending else chunk
        if b"\r" in buf:
            # A CR at the very end may be the first half of CRLF: keep it for the next read.
            hold = buf.endswith(b"\r")
            if hold:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if hold:
                buf += b"\r"
        lines = buf.split(b"\n")
        self._pending = lines.pop()
        if len(buf) > self._max and any(len(line) > self._max for line in (*lines, self._pending)):
            self._too_large()  # also a complete line of a comment or an unknown field
        events: list[SSEEvent] = []
        for line in lines:
            # Fast path for the two lines of nearly every event: "data: ..." and the blank line.
            if line[:6] == b"data: " and not self._data and len(line) - 6 <= self._max:
                self._size = len(line) - 6
                self._data.append(line[6:])
            elif not line and len(self._data) == 1:
                events.append(SSEEvent(self._event or "message", self._data[0]))
                self._data = []
                self._event = ""
                self._size = 0
            else:
                self._line(line, events)
        return events

    def end(self) -> list[SSEEvent]:
        """The stream has ended: flush a last line and event that had no terminator."""
        events: list[SSEEvent] = []
        pending, self._pending = self._pending.rstrip(b"\r"), b""
        if pending:
            self._line(pending, events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                events.append(SSEEvent(self._event or "message", data))
            self._data = []
            self._event = ""
            self._size = 0
            return
        if line[0] == 58:  # ":" comment / keep-alive
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._size += len(value) + (1 if self._data else 0)  # as joined with b"\n"
            if self._size > self._max:
                self._too_large()
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        # "id", "retry" and unknown fields are ignored.

    def _too_large(self) -> None:
        self._data = []
        self._pending = b""
        raise ResponseTooLargeError(
            f"a server-sent event exceeded the {self._max}-byte cap"
        )
