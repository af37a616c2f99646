"""Gemini ``streamGenerateContent`` SSE events as :class:`~llm_async.types.ChatChunk`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ....errors import LLMError, ProtocolError
from ....types import ChatChunk, Usage
from ...sse import SSEEvent
from .._shared import event_object, tool_delta
from .decode import (
    Parts,
    answer_extras,
    candidate_parts,
    finish_reason,
    gemini_usage,
    refusal,
    tool_call,
)

__all__ = ["GeminiStreamParser"]


class ErrorSource(Protocol):
    """What the parser needs of its transport: the provider's name and the typed error of an
    error event."""

    @property
    def provider(self) -> str: ...

    def error_event(self, data: Mapping[str, Any]) -> LLMError: ...


class GeminiStreamParser:
    """``streamGenerateContent`` SSE events → :class:`ChatChunk`.

    Every event is a partial ``GenerateContentResponse``: its text parts become text chunks,
    its thought parts reasoning chunks, each ``functionCall`` one tool-call fragment with its
    whole arguments, and the event that carries the ``finishReason`` the final chunk with the
    usage (and, when there was reasoning, the ordered parts with their signatures).
    """

    __slots__ = ("_calls", "_parts", "done", "id", "model", "transport")

    def __init__(self, transport: ErrorSource) -> None:
        self.transport = transport
        self.done = False
        self.id: str | None = None
        self.model: str | None = None
        self._calls = 0
        self._parts = Parts()

    def _chunk(self, **fields: Any) -> ChatChunk:
        chunk = ChatChunk.construct_fast("", [], None, None, self.id, self.model)
        for name, value in fields.items():
            setattr(chunk, name, value)
        return chunk

    def end(self) -> list[ChatChunk] | None:
        """A body that ends before a finish reason was cut: ``None``."""
        return None

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        provider = self.transport.provider
        obj = event_object(event.data, provider)
        if "error" in obj:
            raise self.transport.error_event(obj)
        response_id = obj.get("responseId")
        model = obj.get("modelVersion")
        self.id = response_id if isinstance(response_id, str) else self.id
        self.model = model if isinstance(model, str) else self.model
        candidates = obj.get("candidates") or []
        if not isinstance(candidates, list):
            raise ProtocolError("candidates is not a list", provider=provider)
        out: list[ChatChunk] = []
        raw_reason: Any = None
        candidate: Mapping[str, Any] | None = None
        if candidates:
            candidate = candidates[0]
            if not isinstance(candidate, Mapping):
                raise ProtocolError("candidate is not an object", provider=provider)
            for part in candidate_parts(candidate, provider):
                text, thought = self._parts.add(part)
                if "functionCall" in part:
                    call = tool_call(part["functionCall"], provider)
                    out.append(self._chunk(tool_calls=[tool_delta(
                        self._calls, call.id, call.function.name, call.function.arguments)]))
                    self._calls += 1
                elif text:
                    out.append(self._chunk(delta=text))
                elif thought:
                    out.append(self._chunk(reasoning=thought))
            raw_reason = candidate.get("finishReason")
        else:
            feedback = obj.get("promptFeedback")
            if isinstance(feedback, Mapping) and feedback.get("blockReason"):
                raw_reason = feedback["blockReason"]
        if raw_reason is not None:
            self.done = True
            reason = "content_filter" if not candidates else finish_reason(
                raw_reason, has_tool_calls=self._calls > 0)
            final = self._chunk(finish_reason=reason,
                                usage=gemini_usage(obj.get("usageMetadata")) or Usage())
            final.parts = self._parts.result() or None
            final.refusal_details = refusal(raw_reason) if reason == "content_filter" else None
            final.extras = answer_extras(obj, candidate) or None
            out.append(final)
        return out
