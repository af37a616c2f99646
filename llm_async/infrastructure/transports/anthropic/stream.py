"""Anthropic Messages API stream events as :class:`~llm_async.types.ChatChunk`.

The parser follows the whole event sequence; ``ping`` and unknown events are ignored, an
``error`` event raises the typed error (``overloaded_error`` →
:class:`~llm_async.errors.OverloadedError`). Thinking streams as ``chunk.reasoning``; the blocks
with their signatures arrive complete on the final chunk (``chunk.parts``). A stream whose
``message_delta`` carried the stop reason is complete even when the server closes before
``message_stop``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Protocol

from .... import _json
from ....errors import LLMError, ProtocolError
from ....structured import output_schema
from ....types import ChatChunk, ChatRequest, Citation, TextPart
from ...sse import SSEEvent
from .._shared import event_object, reasoning_part, tool_delta, unwrap_output
from .decode import (
    anthropic_usage,
    block_part,
    message_extras,
    parse_citation,
    stop_reason,
    stop_refusal,
    with_interleaved_tools,
)

__all__ = ["AnthropicStreamParser"]


class ErrorSource(Protocol):
    """What the parser needs of its transport: the provider's name and the typed error of an
    ``error`` event."""

    @property
    def provider(self) -> str: ...

    def stream_error(self, error: Any, headers: Mapping[str, str] | None = None) -> LLMError: ...



def _opt_str(value: Any) -> str | None:
    """A string field of a stream event, or None when it is missing or not a string."""
    return value if isinstance(value, str) else None


def _text(value: Any) -> str:
    """Streamed text; anything but a string (or nothing) is a malformed event."""
    if not value:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"streamed text is not a string: {value!r:.60}",
                            provider="anthropic")
    return value


class _Block:
    """What the stream parser knows of one content block."""

    __slots__ = ("citations", "data", "json", "kind", "signature", "text", "tool")

    def __init__(self, kind: str, data: dict[str, Any] | None = None) -> None:
        self.kind = kind  # text | thinking | tool | output | wrapped | skip | block
        self.data = data or {}
        self.text: list[str] = []
        self.json: list[str] = []
        self.citations: list[Citation] = []
        self.signature: str | None = None
        self.tool = 0


class AnthropicStreamParser:
    """Messages-API stream events → :class:`ChatChunk`.

    Text deltas become text chunks, thinking deltas reasoning chunks, citation deltas chunks
    with ``citations``, a ``tool_use`` block becomes a tool-call fragment with its id and name
    followed by its ``input_json_delta`` pieces, and ``message_stop`` yields the final chunk
    with the finish reason, the usage of ``message_start`` and ``message_delta`` combined, the
    refusal, and — when the reply had more than text and tool calls — every block in order
    (``parts``: signed thinking, cited text, provider-run tools and their results). The forced
    structured-output tool streams as text (its JSON), or — when the schema had to be wrapped
    in an object — arrives as one text chunk when its block ends.
    """

    __slots__ = ("_blocks", "_details", "_extras", "_spec", "_stop", "_tools", "_usage", "done",
                 "id", "model", "request", "transport")

    def __init__(self, transport: ErrorSource, request: ChatRequest) -> None:
        self.transport = transport
        self.request = request
        self.done = False
        self.id: str | None = None
        self.model: str | None = None
        self._spec = output_schema(request.response_format)
        self._usage: dict[str, int] = {}
        self._stop: str | None = None
        self._details: Any = None
        self._extras: dict[str, Any] = {}
        self._blocks: dict[int, _Block] = {}
        self._tools = 0

    def _chunk(self, **fields: Any) -> ChatChunk:
        values: dict[str, Any] = {"delta": "", "tool_calls": [], "finish_reason": None,
                                  "usage": None, "id": self.id, "model": self.model,
                                  "provider_cost": None}
        values.update(fields)
        return ChatChunk.model_construct(**values)

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        if event.event == "ping":
            return []
        obj = event_object(event.data, self.transport.provider)
        kind = obj.get("type") or event.event
        handler = _HANDLERS.get(str(kind))
        return handler(self, obj) if handler is not None else []  # unknown events: ignored

    def end(self) -> list[ChatChunk] | None:
        """The final chunk when the body ended after the stop reason but before
        ``message_stop``; ``None`` when the stream was cut earlier."""
        if self._stop is None:
            return None
        return self._message_stop({})

    def _message_start(self, obj: dict[str, Any]) -> list[ChatChunk]:
        message = obj.get("message") or {}
        if isinstance(message, Mapping):
            self.id = _opt_str(message.get("id")) or self.id
            self.model = _opt_str(message.get("model")) or self.model
            self._merge_usage(message.get("usage"))
            message_extras(message, self._extras)
        return []

    def _block_start(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("index") or 0)
        block = obj.get("content_block") or {}
        if not isinstance(block, Mapping):
            raise ProtocolError(f"malformed content block: {block!r:.80}",
                                provider=self.transport.provider)
        kind = block.get("type")
        spec = self._spec
        if kind == "text":
            state = self._blocks[index] = _Block("skip" if spec is not None else "text")
            text = _text(block.get("text"))
            if text and spec is None:
                state.text.append(text)
                return [self._chunk(delta=text)]
            return []
        if kind == "tool_use":
            name = str(block.get("name") or "")
            start = block.get("input")
            initial = _json.dumps(start).decode() if start else ""
            if spec is not None and name == spec.name:
                state = self._blocks[index] = _Block("output" if spec.is_object else "wrapped")
                return self._output(state, initial) if initial else []
            state = self._blocks[index] = _Block(
                "tool", {"type": "tool_use", "id": block.get("id"), "name": name})
            if initial:
                state.json.append(initial)
            state.tool = self._tools
            self._tools += 1
            return [self._chunk(tool_calls=[tool_delta(
                state.tool, _opt_str(block.get("id")), name, initial)])]
        if kind == "thinking":
            state = self._blocks[index] = _Block("thinking")
            text = _text(block.get("thinking"))
            state.signature = _opt_str(block.get("signature")) or None
            if text:
                state.text.append(text)
                return [self._chunk(reasoning=text)]
            return []
        # redacted thinking, provider-run tools and their results, blocks of other kinds:
        # kept whole (their deltas, if any, are merged in) and sent on the final chunk.
        self._blocks[index] = _Block("block", dict(block))
        return []

    def _output(self, state: _Block, text: str) -> list[ChatChunk]:
        if state.kind == "wrapped":
            state.json.append(text)
            return []
        return [self._chunk(delta=text)]

    def _block_delta(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("index") or 0)
        delta = obj.get("delta") or {}
        if not isinstance(delta, Mapping):
            return []
        state = self._blocks.get(index)
        if state is None:  # a delta without its block start: treat it as text
            state = self._blocks[index] = _Block("text" if self._spec is None else "skip")
        dtype = delta.get("type")
        kind = state.kind
        if dtype == "text_delta":
            text = _text(delta.get("text"))
            if kind == "text" and text:
                state.text.append(text)
                return [self._chunk(delta=text)]
            return []
        if dtype == "thinking_delta":
            text = _text(delta.get("thinking"))
            if text:
                state.text.append(text)
                return [self._chunk(reasoning=text)]
            return []
        if dtype == "signature_delta":
            state.signature = (state.signature or "") + _text(delta.get("signature"))
            return []
        if dtype == "citations_delta":
            raw = delta.get("citation")
            if isinstance(raw, Mapping):
                citation = parse_citation(raw)
                state.citations.append(citation)
                return [self._chunk(citations=[citation])]
            return []
        if dtype == "input_json_delta":
            piece = _text(delta.get("partial_json"))
            if not piece:
                return []
            if kind == "tool":
                state.json.append(piece)
                return [self._chunk(tool_calls=[tool_delta(state.tool, arguments=piece)])]
            if kind in ("output", "wrapped"):
                return self._output(state, piece)
            state.json.append(piece)
            return []
        if kind == "block":  # another kind's delta: its string fields extend the block's
            for key, value in delta.items():
                if key != "type" and isinstance(value, str):
                    previous = state.data.get(key)
                    state.data[key] = (previous if isinstance(previous, str) else "") + value
        return []

    def _block_stop(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("index") or 0)
        state = self._blocks.get(index)
        if state is None or state.kind != "wrapped" or self._spec is None:
            return []
        text = unwrap_output(self._spec, state.json)
        return [self._chunk(delta=text)] if text is not None else []

    def _message_delta(self, obj: dict[str, Any]) -> list[ChatChunk]:
        delta = obj.get("delta") or {}
        if isinstance(delta, Mapping):
            if delta.get("stop_reason"):
                self._stop = str(delta["stop_reason"])
            if delta.get("stop_details") is not None:
                self._details = delta["stop_details"]
            for key, value in delta.items():
                if key != "stop_reason" and value is not None:
                    self._extras[key] = value
        self._merge_usage(obj.get("usage"))
        usage = obj.get("usage")
        if isinstance(usage, Mapping) and isinstance(usage.get("server_tool_use"), Mapping):
            self._extras["server_tool_use"] = usage["server_tool_use"]
        return []

    def _parts(self) -> list[Any] | None:
        """Every block in order, when the reply had more than text and tool calls."""
        blocks = [state for _, state in sorted(self._blocks.items())]
        if not any(b.kind in ("thinking", "block") or b.citations for b in blocks):
            return None
        parts: list[Any] = []
        tool_uses: list[tuple[int, dict[str, Any]]] = []
        for state in blocks:
            if state.kind == "tool":
                arguments: Any = {}
                with contextlib.suppress(ValueError):
                    arguments = _json.loads("".join(state.json) or "{}")
                tool_uses.append((len(parts), {**state.data, "input": arguments}))
            elif state.kind == "text":
                parts.append(TextPart(text="".join(state.text),
                                      citations=state.citations or None))
            elif state.kind == "thinking":
                parts.append(reasoning_part("".join(state.text), state.signature))
            elif state.kind == "block":
                data = state.data
                if state.json:
                    with contextlib.suppress(ValueError):
                        data = {**data, "input": _json.loads("".join(state.json))}
                parts.append(block_part(data))
        return with_interleaved_tools(parts, tool_uses)

    def _message_stop(self, obj: dict[str, Any]) -> list[ChatChunk]:
        self.done = True
        reason = stop_reason(self._stop) or "stop"
        if reason == "tool_calls" and not self._tools:
            reason = "stop"  # only the structured-output tool was called
        chunk = self._chunk(finish_reason=reason, usage=anthropic_usage(self._usage))
        chunk.parts = self._parts()
        chunk.refusal_details = stop_refusal(self._stop, self._details)
        chunk.extras = self._extras or None
        return [chunk]

    def _error(self, obj: dict[str, Any]) -> list[ChatChunk]:
        raise self.transport.stream_error(obj.get("error"))

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, Mapping):
            for key, value in usage.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    self._usage[key] = value


_HANDLERS: Mapping[str, Any] = {
    "message_start": AnthropicStreamParser._message_start,
    "content_block_start": AnthropicStreamParser._block_start,
    "content_block_delta": AnthropicStreamParser._block_delta,
    "content_block_stop": AnthropicStreamParser._block_stop,
    "message_delta": AnthropicStreamParser._message_delta,
    "message_stop": AnthropicStreamParser._message_stop,
    "error": AnthropicStreamParser._error,
}
