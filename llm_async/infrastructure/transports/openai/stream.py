"""Chat-completion stream chunks as :class:`~llm_async.types.ChatChunk`.

The usual chunk (one text delta of choice 0) is built on a short path; any other chunk goes
through the general reader (reasoning, refusals, annotations, logprobs, tool-call fragments,
the legacy ``function_call``, ``n`` > 1 choices, fields kept in ``extras``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .... import _json
from ....errors import ProtocolError
from ....types import ChatChunk, Citation, ReasoningPart, ToolCallDelta
from ...sse import SSEEvent
from .decode import (
    _CHOICE_FIELDS,
    _MESSAGE_FIELDS,
    _RESPONSE_FIELDS,
    _extras,
    _str,
    citations,
    content_parts,
    finish_reason,
    openai_usage,
    reasoning_details,
    token_logprobs,
)

__all__ = ["ErrorSource"]


class ErrorSource(Protocol):
    """What the parser needs of its transport: the provider's name and the typed error of an
    error object sent in the stream."""

    @property
    def provider(self) -> str: ...

    def in_stream_error(self, error: Any) -> Exception: ...


class _OpenAIStreamParser:
    """Chat-completion chunks → :class:`ChatChunk` (role-only chunks are dropped).

    Beyond text and tool calls it reads reasoning deltas (``reasoning_content``, ``reasoning``,
    ``reasoning_details``, Mistral's ``thinking`` parts), refusal deltas, ``annotations``, the
    legacy ``function_call``, ``logprobs`` and the choice ``index`` of ``n`` > 1 streams. Fields
    it has no place for are carried in ``extras`` on the next chunk it yields. Once every
    choice has finished the stream is ``complete``: a server that then closes without
    ``[DONE]`` has still sent the whole answer (:meth:`end`).
    """

    __slots__ = ("_details", "_extras", "_fingerprint", "_open", "done", "finished",
                 "transport")

    def __init__(self, transport: ErrorSource) -> None:
        self.transport = transport
        self.done = False
        self.finished = False
        self._open: set[int] = set()
        self._extras: dict[str, Any] | None = None
        self._details: dict[int, dict[int, list[Any]]] = {}
        self._fingerprint = False

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        data = event.data
        if data == b"[DONE]":
            self.done = True
            return []
        try:
            obj = _json.loads(data)
        except ValueError as exc:
            raise ProtocolError(f"malformed stream event: {data[:80]!r}",
                                provider=self.transport.provider) from exc
        if not isinstance(obj, dict):
            raise ProtocolError("stream event is not a JSON object",
                                provider=self.transport.provider)
        if "error" in obj:
            raise self.transport.in_stream_error(obj["error"])
        return self.chunks(obj)

    def end(self) -> list[ChatChunk] | None:
        """At the end of the body without ``[DONE]``: nothing more to yield when every choice
        had finished (the answer is complete), ``None`` when it was cut."""
        return [] if self.finished and not self._open else None

    def _pending(self, extras: dict[str, Any]) -> None:
        if self._extras is None:
            self._extras = {}
        self._extras.update(extras)

    def chunks(self, obj: dict[str, Any]) -> list[ChatChunk]:
        # The hot path of every stream: dict checks before the (slow) Mapping ABC check.
        raw_usage = obj.get("usage")
        usage = openai_usage(raw_usage) if raw_usage is not None else None
        choices = obj.get("choices") or ()
        chunk_id = obj.get("id") or None
        model = obj.get("model") or None
        if (not isinstance(choices, (list, tuple))
                or (chunk_id is not None and not isinstance(chunk_id, str))
                or (model is not None and not isinstance(model, str))):
            raise ProtocolError(f"malformed stream chunk: {obj!r:.100}",
                                provider=self.transport.provider)
        if not self._fingerprint and obj.get("system_fingerprint") is not None:
            self._fingerprint = True  # the same on every chunk: kept once
            self._pending({"system_fingerprint": obj["system_fingerprint"]})
        if len(obj) > 7 or not _COMMON_CHUNK_FIELDS.issuperset(obj):
            extras: dict[str, Any] = {}
            _extras(obj, _CHUNK_FIELDS, extras)
            if extras:
                self._pending(extras)
        out: list[ChatChunk] = []
        for choice in choices:
            if type(choice) is dict:
                # The common chunk (choice 0, text or tool-call fragments, nothing else) is
                # read inline; anything more goes through choice_chunk.
                delta = choice.get("delta")
                if (not choice.get("index") and type(delta) is dict and len(delta) <= 2
                        and len(choice) <= 4 and _COMMON_DELTA_FIELDS.issuperset(delta)
                        and _COMMON_CHOICE_FIELDS.issuperset(choice)
                        and choice.get("logprobs") is None):
                    text = delta.get("content") or ""
                    if type(text) is str:
                        raw_calls = delta.get("tool_calls")
                        calls = self.tool_call_deltas(raw_calls) if raw_calls else []
                        reason = choice.get("finish_reason")
                        if reason is not None:
                            reason = finish_reason(reason)
                            self.finished = True
                        if text or calls or reason is not None:
                            chunk = ChatChunk.construct_fast(text, calls, reason, None,
                                                             chunk_id, model)
                            if reason is not None and 0 in self._details:
                                chunk.parts = self.detail_parts(0)
                            out.append(chunk)
                        continue
            elif not isinstance(choice, Mapping):
                continue
            index = choice.get("index", 0)
            if not isinstance(index, int):
                raise ProtocolError(f"malformed choice index: {index!r:.40}",
                                    provider=self.transport.provider)
            general = self.choice_chunk(choice, index, chunk_id, model)
            if general is not None:
                out.append(general)
        if usage is not None:
            out.append(ChatChunk.construct_fast("", [], None, usage, chunk_id, model))
        if out and self._extras is not None:
            out[0].extras = self._extras
            self._extras = None
        return out

    def choice_chunk(self, choice: Mapping[str, Any], index: int, chunk_id: str | None,
                     model: str | None) -> ChatChunk | None:
        delta = choice.get("delta")
        reasoning = refusal = ""
        cited: list[Citation] | None = None
        if delta:
            if not isinstance(delta, dict) and not isinstance(delta, Mapping):
                raise ProtocolError(f"malformed stream delta: {delta!r:.100}",
                                    provider=self.transport.provider)
            text = delta.get("content") or ""
            if not isinstance(text, str):
                text, thinking = content_parts(text, self.transport.provider)
                reasoning = "".join(p.text for p in thinking if isinstance(p, ReasoningPart))
            raw_calls = delta.get("tool_calls")
            calls = self.tool_call_deltas(raw_calls) if raw_calls else []
            if len(delta) > 2 or not _COMMON_DELTA_FIELDS.issuperset(delta):
                reasoning += self.reasoning_delta(delta, index)
                refusal = _str(delta.get("refusal"))
                annotations = delta.get("annotations")
                cited = citations(annotations) if annotations else None
                legacy = delta.get("function_call")
                if isinstance(legacy, Mapping) and not calls:
                    calls = [ToolCallDelta.model_construct(
                        index=0, id="call_0" if legacy.get("name") else None,
                        name=legacy.get("name") if isinstance(legacy.get("name"), str) else None,
                        arguments=_str(legacy.get("arguments")))]
                extras: dict[str, Any] = {}
                _extras(delta, _MESSAGE_FIELDS, extras)
                if extras:
                    self._pending(extras)
        else:
            text = ""
            calls = []
        if len(choice) > 4 or not _COMMON_CHOICE_FIELDS.issuperset(choice):
            extras = {}
            _extras(choice, _CHOICE_FIELDS, extras)
            if extras:
                self._pending(extras)
        raw_logprobs = choice.get("logprobs")
        logprobs = token_logprobs(raw_logprobs) if raw_logprobs else None
        reason = choice.get("finish_reason")
        if reason is not None:
            reason = finish_reason(reason)
            self.finished = True
            self._open.discard(index)
        elif index:
            self._open.add(index)  # choice 0 counts as finished once any finish was seen
        if not (text or calls or reason is not None or reasoning or refusal or cited
                or logprobs):
            return None
        chunk = ChatChunk.construct_fast(text, calls, reason, None, chunk_id, model)
        if index or reasoning or refusal or cited or logprobs:
            chunk.index = index
            chunk.reasoning = reasoning
            chunk.refusal = refusal
            chunk.citations = cited
            chunk.logprobs = logprobs
        if reason is not None and index in self._details:
            chunk.parts = self.detail_parts(index)
        return chunk

    def reasoning_delta(self, delta: Mapping[str, Any], index: int) -> str:
        """Reasoning text of a delta; OpenRouter's ``reasoning_details`` are also gathered (with
        their signatures) into reasoning parts sent on the choice's finish chunk."""
        text = _str(delta.get("reasoning_content")) or _str(delta.get("reasoning"))
        details = delta.get("reasoning_details")
        if isinstance(details, list) and details:
            slots = self._details.setdefault(index, {})
            joined = []
            for position, part in enumerate(reasoning_details(details)):
                raw = details[position]
                key = raw.get("index") if isinstance(raw, Mapping) else None
                key = key if isinstance(key, int) else len(slots)
                slot = slots.get(key)
                if slot is None:
                    slots[key] = [part]
                else:
                    slot.append(part)
                joined.append(part.text)
            if not text:
                text = "".join(joined)
        return text

    def detail_parts(self, index: int) -> list[Any]:
        parts: list[Any] = []
        for _, pieces in sorted(self._details.pop(index).items()):
            first = pieces[0]
            parts.append(ReasoningPart.model_construct(
                text="".join(p.text for p in pieces),
                signature=next((p.signature for p in pieces if p.signature), None),
                encrypted=("".join(p.encrypted for p in pieces if p.encrypted) or None),
                format=first.format))
        return parts

    def tool_call_deltas(self, raw_calls: Any) -> list[ToolCallDelta]:
        """Streamed tool-call fragments; a malformed one is a :class:`ProtocolError`."""
        calls: list[ToolCallDelta] = []
        try:
            for raw in raw_calls:
                fn = raw.get("function") or {}
                index = int(raw.get("index") or 0)
                call_id, name = raw.get("id"), fn.get("name")
                arguments = fn.get("arguments") or ""
                if not isinstance(arguments, str) or not _optional_str(call_id, name):
                    raise TypeError("wrong field types")
                calls.append(ToolCallDelta.model_construct(
                    index=index, id=call_id, name=name, arguments=arguments))
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"malformed streamed tool call: {raw_calls!r:.100}",
                                provider=self.transport.provider) from exc
        return calls


# The fields almost every chunk has (checked first, so that the common chunk skips the
# search for extras).
_COMMON_CHUNK_FIELDS = frozenset({"id", "object", "created", "model", "choices", "usage",
                                  "system_fingerprint"})
_CHUNK_FIELDS = _RESPONSE_FIELDS | {"system_fingerprint"}
_COMMON_CHOICE_FIELDS = frozenset({"index", "delta", "finish_reason", "logprobs"})
_COMMON_DELTA_FIELDS = frozenset({"role", "content", "tool_calls"})


def _optional_str(*values: Any) -> bool:
    """Whether every value is a string or None."""
    return all(v is None or isinstance(v, str) for v in values)

