"""A Gemini ``GenerateContentResponse`` as our :class:`~llm_async.types.ChatResponse`.

Text parts → ``content``; thought parts (``"thought": true``) → the reply's reasoning
(``response.reasoning``, :class:`~llm_async.types.ReasoningPart` in ``parts``), never its text;
a ``thoughtSignature`` is kept on a reasoning part; ``functionCall`` parts → ``tool_calls``
(Gemini's id when it sends one, else a fresh one); ``finishReason`` → our finish reasons, every
safety reason (:data:`SAFETY_FINISH_REASONS`) → ``content_filter`` with a
:class:`~llm_async.types.Refusal` whose ``category`` is Gemini's reason, and a blocked prompt
(``promptFeedback.blockReason``) → an empty reply with ``content_filter`` and the block reason
as the refusal's category; ``safetyRatings``, ``promptFeedback``, ``citationMetadata`` and
``groundingMetadata`` are kept in ``extras``; usage with cached (``cachedContentTokenCount``)
and thinking (``thoughtsTokenCount``) tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from .... import _json
from ....errors import ProtocolError
from ....types import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    FunctionCall,
    ReasoningPart,
    Refusal,
    TextPart,
    ToolCall,
    Usage,
    mark_incomplete,
)

__all__ = [
    "SAFETY_FINISH_REASONS",
    "Parts",
    "answer_extras",
    "candidate_parts",
    "finish_reason",
    "gemini_usage",
    "new_call_id",
    "parse_generate",
    "refusal",
    "tool_call",
]

#: Gemini finish reasons that mean a safety or policy filter stopped the answer.
SAFETY_FINISH_REASONS = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
})

_FINISH: Mapping[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **{reason: "content_filter" for reason in SAFETY_FINISH_REASONS},
}

def finish_reason(value: Any, *, has_tool_calls: bool = False) -> FinishReason | None:
    """Our finish reason for a Gemini ``finishReason`` (a call to a function is ``tool_calls``
    whatever Gemini says, since it reports ``STOP`` for those)."""
    if value is None:
        return None
    reason = _FINISH.get(str(value), "stop")
    if has_tool_calls and reason == "stop":
        return "tool_calls"
    return reason


def gemini_usage(data: Any) -> Usage | None:
    """Our :class:`Usage` from Gemini's ``usageMetadata`` (``None`` when absent).

    Gemini's prompt count already includes cached tokens; its candidate count leaves out the
    thinking tokens, which ours counts as output (and as reasoning).
    """
    if not isinstance(data, Mapping):
        return None
    thoughts = int(data.get("thoughtsTokenCount") or 0)
    return Usage.model_construct(
        input_tokens=int(data.get("promptTokenCount") or 0)
        + int(data.get("toolUsePromptTokenCount") or 0),
        output_tokens=int(data.get("candidatesTokenCount") or 0) + thoughts,
        cache_read_tokens=int(data.get("cachedContentTokenCount") or 0),
        cache_write_tokens=0,
        reasoning_tokens=thoughts,
    )


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"



def refusal(reason: Any) -> Refusal | None:
    """The refusal of a safety stop or a blocked prompt (its category: Gemini's reason)."""
    if reason is None or (reason not in SAFETY_FINISH_REASONS and reason not in _BLOCKS):
        return None
    return Refusal.model_construct(text="", category=str(reason))


_BLOCKS = frozenset({"SAFETY", "OTHER", "BLOCKLIST", "PROHIBITED_CONTENT", "IMAGE_SAFETY",
                     "BLOCK_REASON_UNSPECIFIED"})
_CANDIDATE_EXTRAS = ("safetyRatings", "citationMetadata", "groundingMetadata", "finishMessage")


class Parts:
    """The ordered content of an answer as it arrives: thoughts and text merged run by run,
    thought signatures kept as signature-only reasoning parts where they came."""

    __slots__ = ("items", "reasoning")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.reasoning = False

    def add(self, part: Mapping[str, Any]) -> tuple[str, str]:
        """Record one part; returns its ``(text, thought)`` for a stream's deltas."""
        signature = part.get("thoughtSignature")
        text = part.get("text")
        text = text if isinstance(text, str) else ""
        is_thought = part.get("thought") is True
        last = self.items[-1] if self.items else None
        if is_thought:
            self.reasoning = True
            if isinstance(last, ReasoningPart) and last.text and not last.signature:
                last.text += text
                if isinstance(signature, str):
                    last.signature = signature
            else:
                self.items.append(ReasoningPart.model_construct(
                    text=text, signature=signature if isinstance(signature, str) else None,
                    encrypted=None, format=None))
            return "", text
        if isinstance(signature, str) and signature:
            self.reasoning = True
            self.items.append(ReasoningPart.model_construct(
                text="", signature=signature, encrypted=None, format=None))
            last = None
        if text and "functionCall" not in part:
            if isinstance(last, TextPart):
                last.text += text
            else:
                self.items.append(TextPart(text=text))
        return text, ""

    def result(self) -> list[Any]:
        """The parts worth keeping: all of them when the answer had reasoning, else none."""
        return self.items if self.reasoning else []


def answer_extras(data: Mapping[str, Any], candidate: Mapping[str, Any] | None) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if data.get("promptFeedback"):
        extras["promptFeedback"] = data["promptFeedback"]
    if candidate is not None:
        if candidate.get("finishReason"):
            extras["finishReason"] = candidate["finishReason"]
        for key in _CANDIDATE_EXTRAS:
            if candidate.get(key):
                extras[key] = candidate[key]
    return extras


def candidate_parts(candidate: Mapping[str, Any], provider: str) -> list[Mapping[str, Any]]:
    content = candidate.get("content")
    if content is None:
        return []
    if not isinstance(content, Mapping):
        raise ProtocolError("candidate content is not an object", provider=provider)
    parts = content.get("parts") or []
    if not isinstance(parts, list) or not all(isinstance(p, Mapping) for p in parts):
        raise ProtocolError("candidate parts are not a list of objects", provider=provider)
    return parts


def tool_call(raw: Any, provider: str) -> ToolCall:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise ProtocolError(f"malformed functionCall: {raw!r:.100}", provider=provider)
    args = raw.get("args")
    call_id = raw.get("id")
    return ToolCall.model_construct(
        id=call_id if isinstance(call_id, str) and call_id else new_call_id(),
        type="function",
        function=FunctionCall.model_construct(
            name=raw["name"], arguments=_json.dumps(args if args is not None else {}).decode()))



def parse_generate(data: Mapping[str, Any], request: ChatRequest,
                   provider: str) -> ChatResponse:
    """The :class:`ChatResponse` of a ``GenerateContentResponse`` (not an error object)."""
    candidates = data.get("candidates") or []
    if not isinstance(candidates, list):
        raise ProtocolError("candidates is not a list", provider=provider)
    texts: list[str] = []
    content = Parts()
    calls: list[ToolCall] = []
    reason: FinishReason | None
    candidate: Mapping[str, Any] | None = None
    feedback = data.get("promptFeedback")
    if not candidates:
        block = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
        if not block:
            raise ProtocolError("response has no candidates", provider=provider)
        reason, raw_reason = "content_filter", block
    else:
        candidate = candidates[0]
        if not isinstance(candidate, Mapping):
            raise ProtocolError("candidate is not an object", provider=provider)
        for part in candidate_parts(candidate, provider):
            text, _ = content.add(part)
            if "functionCall" in part:
                calls.append(tool_call(part["functionCall"], provider))
            elif text:
                texts.append(text)
        raw_reason = candidate.get("finishReason") or "STOP"
        reason = finish_reason(raw_reason, has_tool_calls=bool(calls))
    joined = "".join(texts)
    return ChatResponse.model_construct(
        id=str(data.get("responseId") or ""),
        model=str(data.get("modelVersion") or request.model),
        content=joined if (joined or not calls) else None,
        tool_calls=mark_incomplete(calls, reason),
        finish_reason=reason,
        usage=gemini_usage(data.get("usageMetadata")) or Usage(),
        parts=content.result(),
        refusal=refusal(raw_reason) if reason == "content_filter" else None,
        extras=answer_extras(data, candidate),
        raw=data,
    )

