"""Bedrock ConverseStream: AWS event-stream bytes → events → :class:`~llm_async.types.ChatChunk`.

Streams are AWS event streams (``application/vnd.amazon.eventstream``), decoded by botocore's
``EventStreamBuffer`` (which checks each message's CRCs); the parser turns their Converse
events into chunks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .... import _json
from ....errors import ConfigurationError, LLMError, ProtocolError, ResponseTooLargeError
from ....structured import output_schema
from ....types import ChatChunk, ChatRequest, ReasoningPart, TextPart
from ...sse import SSEEvent
from .._shared import event_object, tool_delta, unwrap_output
from .decode import bedrock_usage, refusal, stop_reason
from .errors import exception_name

__all__ = ["BedrockStreamParser", "EventStreamDecoder"]


class ErrorSource(Protocol):
    """What the parser needs of its transport: the provider's name and the typed error of an
    exception event."""

    @property
    def provider(self) -> str: ...

    def exception_error(self, name: str | None, body: Any, *, status: int | None = None,
                        headers: Mapping[str, str] | None = None) -> LLMError: ...


class EventStreamDecoder:
    """AWS event-stream bytes → :class:`SSEEvent` tuples, via botocore's ``EventStreamBuffer``.

    An event message becomes ``SSEEvent(<:event-type>, payload)``, an exception message
    ``SSEEvent("exception:<:exception-type>", payload)`` and an error message
    ``SSEEvent("error:<:error-code>", <:error-message>)``. A message that fails its checksum or
    framing raises :class:`~llm_async.errors.ProtocolError`.
    """

    __slots__ = ("_buffer", "_max", "_parser_error")

    def __init__(self, max_event_bytes: int) -> None:
        try:
            from botocore.eventstream import EventStreamBuffer, ParserError
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "Bedrock streams need botocore: pip install 'llm-async[bedrock]'",
                variable="botocore") from exc
        self._buffer = EventStreamBuffer()
        self._parser_error = ParserError
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buffer.add_data(chunk)
        events: list[SSEEvent] = []
        try:
            for message in self._buffer:
                headers: Any = message.headers  # a dict (typed otherwise in botocore-stubs)
                events.append(self._event(headers, message.payload))
        except self._parser_error as exc:
            raise ProtocolError(f"malformed event-stream message: {exc}",
                                provider="bedrock") from exc
        return events

    def end(self) -> list[SSEEvent]:
        return []

    def _event(self, headers: Mapping[str, Any], payload: bytes) -> SSEEvent:
        if len(payload) > self._max:
            raise ResponseTooLargeError(
                f"an event of {len(payload)} bytes exceeded the {self._max}-byte cap",
                provider="bedrock")
        kind = headers.get(":message-type")
        if kind == "exception":
            return SSEEvent(f"exception:{headers.get(':exception-type')}", payload)
        if kind == "error":
            message = str(headers.get(":error-message") or "").encode()
            return SSEEvent(f"error:{headers.get(':error-code')}", message)
        return SSEEvent(str(headers.get(":event-type") or ""), payload)


class BedrockStreamParser:
    """ConverseStream events → :class:`ChatChunk`.

    ``contentBlockDelta`` text becomes text chunks, a ``toolUse`` block a tool-call fragment
    with its id and name (from ``contentBlockStart``) followed by its input pieces;
    ``messageStop`` holds the stop reason and ``metadata``, the last event, the usage: the final
    chunk comes with it. The forced structured-output tool streams as text, or (for a schema
    that had to be wrapped in an object) arrives as one text chunk when its block stops.
    """

    __slots__ = ("_buffer", "_kinds", "_reasoning", "_spec", "_stop", "_texts", "_tools",
                 "done", "request", "transport")

    def __init__(self, transport: ErrorSource, request: ChatRequest) -> None:
        self.transport = transport
        self.request = request
        self.done = False
        self._spec = output_schema(request.response_format)
        self._stop: str | None = None
        self._kinds: dict[int, str] = {}  # block index -> tool | output | wrapped
        self._tools: dict[int, int] = {}  # block index -> our tool-call index
        self._buffer: list[str] = []
        # block index -> [text pieces, signature, encrypted] of a reasoning block
        self._reasoning: dict[int, list[Any]] = {}
        self._texts: dict[int, list[str]] = {}  # block index -> text pieces

    def _chunk(self, **fields: Any) -> ChatChunk:
        chunk = ChatChunk.construct_fast("", [], None, None, None, None)
        for name, value in fields.items():
            setattr(chunk, name, value)
        return chunk

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        name = event.event
        if name.startswith(("exception:", "error:")):
            kind, _, exception = name.partition(":")
            body: Any
            try:
                body = _json.loads(event.data) if kind == "exception" else None
            except ValueError:
                body = None
            if body is None:
                body = {"message": event.data.decode("utf-8", "replace")}
            raise self.transport.exception_error(exception_name(exception), body)
        handler = _HANDLERS.get(name)
        if handler is None:
            return []  # messageStart and events this client has no use for
        obj = event_object(event.data, self.transport.provider)
        chunks: list[ChatChunk] = handler(self, obj)
        return chunks

    def end(self) -> list[ChatChunk] | None:
        """The final chunk (without usage) when the body ended after ``messageStop`` but before
        ``metadata``; ``None`` when the stream was cut earlier."""
        if self._stop is None:
            return None
        return self._metadata({})

    def _block_start(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("contentBlockIndex") or 0)
        start = obj.get("start")
        use = start.get("toolUse") if isinstance(start, Mapping) else None
        if not isinstance(use, Mapping):
            return []
        name = str(use.get("name") or "")
        spec = self._spec
        if spec is not None and name == spec.name:
            self._kinds[index] = "output" if spec.is_object else "wrapped"
            return []
        self._kinds[index] = "tool"
        position = self._tools[index] = len(self._tools)
        call_id = use.get("toolUseId")
        return [self._chunk(tool_calls=[tool_delta(
            position, call_id if isinstance(call_id, str) else None, name)])]

    def _block_delta(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("contentBlockIndex") or 0)
        delta = obj.get("delta")
        if not isinstance(delta, Mapping):
            return []
        kind = self._kinds.get(index)
        text = delta.get("text")
        if isinstance(text, str):
            if text and kind is None and self._spec is None:
                self._texts.setdefault(index, []).append(text)
                return [self._chunk(delta=text)]
            return []
        thinking = delta.get("reasoningContent")
        if isinstance(thinking, Mapping):
            state = self._reasoning.setdefault(index, [[], None, None])
            if isinstance(thinking.get("text"), str) and thinking["text"]:
                state[0].append(thinking["text"])
                return [self._chunk(reasoning=thinking["text"])]
            if isinstance(thinking.get("signature"), str):
                state[1] = thinking["signature"]
            if isinstance(thinking.get("redactedContent"), str):
                state[2] = thinking["redactedContent"]
            return []
        use = delta.get("toolUse")
        piece = use.get("input") if isinstance(use, Mapping) else None
        if not isinstance(piece, str) or not piece:
            return []  # deltas of other kinds are not part of this model
        if kind == "tool":
            return [self._chunk(tool_calls=[tool_delta(self._tools[index], arguments=piece)])]
        if kind == "wrapped":
            self._buffer.append(piece)
            return []
        if kind == "output":
            return [self._chunk(delta=piece)]
        return []

    def _block_stop(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("contentBlockIndex") or 0)
        if self._kinds.get(index) != "wrapped" or self._spec is None:
            return []
        text = unwrap_output(self._spec, self._buffer)
        return [self._chunk(delta=text)] if text is not None else []

    def _message_stop(self, obj: dict[str, Any]) -> list[ChatChunk]:
        reason = obj.get("stopReason")
        self._stop = str(reason) if reason is not None else "end_turn"
        return []

    def _metadata(self, obj: dict[str, Any]) -> list[ChatChunk]:
        self.done = True
        reason = stop_reason(self._stop or "end_turn") or "stop"
        if reason == "tool_calls" and not self._tools:
            reason = "stop"  # only the structured-output tool was called
        final = self._chunk(finish_reason=reason, usage=bedrock_usage(obj.get("usage")))
        if self._reasoning:
            blocks: dict[int, Any] = {
                index: TextPart(text="".join(pieces)) for index, pieces in self._texts.items()}
            for index, (text, signature, encrypted) in self._reasoning.items():
                blocks[index] = ReasoningPart.model_construct(
                    text="".join(text), signature=signature,
                    encrypted=encrypted if not text else None, format=None)
            final.parts = [part for _, part in sorted(blocks.items())]
        final.refusal_details = refusal(self._stop)
        return [final]


_HANDLERS: Mapping[str, Any] = {
    "contentBlockStart": BedrockStreamParser._block_start,
    "contentBlockDelta": BedrockStreamParser._block_delta,
    "contentBlockStop": BedrockStreamParser._block_stop,
    "messageStop": BedrockStreamParser._message_stop,
    "metadata": BedrockStreamParser._metadata,
}
