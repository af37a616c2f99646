"""Streaming: :class:`ChatChunk`, one streamed piece, and :class:`StreamAssembler`, which folds
chunks into the final :class:`~llm_async.types.ChatResponse`."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from ._base import _FastConstruct, trusted_instance
from .content import Citation, ContentPart, ReasoningPart, TextPart
from .response import ChatResponse, Choice, FinishReason, Refusal, TokenLogprob, Usage
from .tools import FunctionCall, ToolCall, ToolCallDelta, mark_incomplete

__all__ = ["ChatChunk", "StreamAssembler"]


class ChatChunk(_FastConstruct):
    """One streamed piece: a text delta, tool-call fragments, and at the end a finish reason
    and (on the final chunk) the usage.

    ``reasoning`` and ``refusal`` are deltas of their own kind, apart from the text. ``index``
    is the choice the chunk belongs to (only ever not 0 when ``n`` > 1 was asked for).
    ``parts`` holds complete content blocks (reasoning with signatures, citations, provider
    tools), sent once by transports whose provider streams such blocks, on the final chunk;
    ``citations`` are sources as they stream in; ``refusal_details`` the provider's refusal
    reason; ``extras`` provider fields without a place here (Azure ``content_filter_results``).
    """

    model_config = ConfigDict(extra="forbid")

    delta: str = ""
    tool_calls: list[ToolCallDelta] = Field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    id: str | None = None
    model: str | None = None
    provider_cost: float | None = None
    reasoning: str = ""
    refusal: str = ""
    index: int = 0
    logprobs: list[TokenLogprob] | None = None
    citations: list[Citation] | None = None
    parts: list[ContentPart] | None = None
    refusal_details: Refusal | None = None
    extras: dict[str, Any] | None = None

    @classmethod
    def construct_fast(cls, delta: str, tool_calls: list[ToolCallDelta],
                       finish_reason: FinishReason | None, usage: Usage | None,
                       id: str | None, model: str | None) -> ChatChunk:
        """``model_construct(delta=..., tool_calls=..., finish_reason=..., usage=..., id=...,
        model=...)`` for a transport's hot path (every chunk of every stream): the same
        instance, built without the generic per-field loop. The values are trusted."""
        data = _CHUNK_DEFAULTS.copy()
        data["delta"] = delta
        data["tool_calls"] = tool_calls
        data["finish_reason"] = finish_reason
        data["usage"] = usage
        data["id"] = id
        data["model"] = model
        return trusted_instance(cls, data, _FAST_FIELDS.copy())


#: A chunk's fields at their defaults, in field order (``construct_fast`` copies it).
_CHUNK_DEFAULTS: dict[str, Any] = {
    name: (None if info.default_factory is not None else info.default)
    for name, info in ChatChunk.model_fields.items()
}
_FAST_FIELDS = {"delta", "tool_calls", "finish_reason", "usage", "id", "model"}


class _ChoiceAssembler:
    """The fold of one choice's chunks."""

    __slots__ = ("calls", "citations", "finish_reason", "logprobs", "parts", "reasoning",
                 "refusal", "refusal_details", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, list[Any]] = {}
        self.citations: list[Citation] = []
        self.logprobs: list[TokenLogprob] | None = None
        self.parts: list[Any] | None = None
        self.refusal_details: Refusal | None = None
        self.finish_reason: FinishReason | None = None

    def add(self, chunk: ChatChunk) -> None:
        if chunk.delta:
            self.text.append(chunk.delta)
        for tc in chunk.tool_calls:
            slot = self.calls.get(tc.index)
            if slot is None:
                slot = self.calls[tc.index] = [tc.id, tc.name, []]
            if tc.id:
                slot[0] = tc.id
            if tc.name:
                slot[1] = tc.name
            if tc.arguments:
                slot[2].append(tc.arguments)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.reasoning:
            self.reasoning.append(chunk.reasoning)
        if chunk.refusal:
            self.refusal.append(chunk.refusal)
        if chunk.citations:
            self.citations.extend(chunk.citations)
        if chunk.logprobs:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(chunk.logprobs)
        if chunk.parts is not None:
            self.parts = [*(self.parts or ()), *chunk.parts]
        if chunk.refusal_details is not None:
            self.refusal_details = chunk.refusal_details

    def tool_calls(self) -> list[ToolCall]:
        calls = [
            ToolCall(id=slot[0] or f"call_{index}",
                     function=FunctionCall(name=slot[1] or "", arguments="".join(slot[2])))
            for index, slot in sorted(self.calls.items())
        ]
        return mark_incomplete(calls, self.finish_reason)

    def choice_fields(self) -> dict[str, Any]:
        text = "".join(self.text)
        calls = self.tool_calls()
        # Blocks the transport sent whole (signed reasoning, cited text, provider tools) come
        # first; reasoning and text known only from their deltas complete them.
        parts: list[Any] = list(self.parts or ())
        reasoning = "".join(self.reasoning)
        if reasoning and not any(isinstance(p, ReasoningPart) for p in parts):
            parts.insert(0, ReasoningPart(text=reasoning))
        if (parts or self.citations) and text and not any(isinstance(p, TextPart)
                                                          for p in parts):
            parts.append(TextPart(text=text, citations=self.citations or None))
        refusal = self.refusal_details
        joined = "".join(self.refusal)
        if joined:
            refusal = Refusal(text=joined, category=refusal.category if refusal else None)
        return {
            "content": text if (text or not calls) else None,
            "tool_calls": calls,
            "finish_reason": self.finish_reason,
            "parts": parts,
            "refusal": refusal,
            "logprobs": self.logprobs,
        }


class StreamAssembler:
    """Folds chunks into the final :class:`ChatResponse` (text, reasoning, tool calls, usage,
    the other choices of ``n`` > 1).

    Used by the client for ``stream.final_response`` and by any layer that needs the whole answer
    of a stream (cost, cache, dedup).
    """

    __slots__ = ("_choice", "_others", "chunks", "extras", "id", "model", "provider_cost",
                 "usage")

    def __init__(self) -> None:
        self._choice = _ChoiceAssembler()
        self._others: dict[int, _ChoiceAssembler] = {}
        self.chunks = 0
        self.usage: Usage | None = None
        self.id: str | None = None
        self.model: str | None = None
        self.provider_cost: float | None = None
        self.extras: dict[str, Any] = {}

    def add(self, chunk: ChatChunk) -> None:
        self.chunks += 1
        fields = chunk.__dict__
        if (fields["delta"] and self.model is not None and not fields["tool_calls"]
                and fields["finish_reason"] is None and fields["usage"] is None
                and not fields["index"] and not fields["reasoning"] and not fields["refusal"]
                and fields["parts"] is None and fields["citations"] is None
                and fields["logprobs"] is None and fields["refusal_details"] is None
                and fields["provider_cost"] is None and fields["extras"] is None):
            # A text delta of choice 0 and nothing else: most chunks of every stream.
            self._choice.text.append(fields["delta"])
            if self.id is None and fields["id"]:
                self.id = fields["id"]
            return
        if chunk.index:
            other = self._others.get(chunk.index)
            if other is None:
                other = self._others[chunk.index] = _ChoiceAssembler()
            other.add(chunk)
        else:
            self._choice.add(chunk)
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.id and self.id is None:
            self.id = chunk.id
        if chunk.model and self.model is None:
            self.model = chunk.model
        if chunk.provider_cost is not None:
            self.provider_cost = chunk.provider_cost
        if chunk.extras:
            self.extras.update(chunk.extras)

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._choice.finish_reason

    @property
    def text(self) -> str:
        return "".join(self._choice.text)

    @property
    def reasoning(self) -> str:
        return "".join(self._choice.reasoning)

    def tool_calls(self) -> list[ToolCall]:
        return self._choice.tool_calls()

    def response(self, **fields: Any) -> ChatResponse:
        """The assembled response; ``fields`` (provider, latency, ...) are set on it too."""
        values: dict[str, Any] = {
            "id": self.id or "",
            "model": self.model or "",
            **self._choice.choice_fields(),
            "usage": self.usage or Usage(),
            "provider_cost": self.provider_cost,
            "extras": dict(self.extras),
            "other_choices": [Choice.model_construct(index=index, **other.choice_fields())
                              for index, other in sorted(self._others.items())],
        }
        values.update(fields)
        return ChatResponse.model_construct(**values)
