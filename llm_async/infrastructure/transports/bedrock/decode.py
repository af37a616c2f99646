"""A Bedrock Converse answer as our :class:`~llm_async.types.ChatResponse`.

Text blocks → ``content``, ``toolUse`` → ``tool_calls``, ``reasoningContent`` →
:class:`~llm_async.types.ReasoningPart` (text and signature, or the encrypted
``redactedContent``), ``stopReason`` → our finish reasons (``guardrail_intervened`` and
``content_filtered`` → ``content_filter``, with a :class:`~llm_async.types.Refusal` naming the
reason), ``trace`` and ``performanceConfig`` kept in ``extras``, usage with cache reads and
writes (Bedrock's ``inputTokens`` leaves them out; ours counts every prompt token). The forced
structured-output tool's input comes back as the reply's text.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from .... import _json
from ....errors import ProtocolError
from ....structured import output_schema
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
from .._shared import cached_usage, finish_from, reasoning_part, reply_text

__all__ = ["bedrock_usage", "parse_converse", "reasoning_block", "refusal", "stop_reason"]

_STOP: Mapping[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

_EXTRAS = ("trace", "performanceConfig", "additionalModelResponseFields")


def stop_reason(value: Any) -> FinishReason | None:
    """Our finish reason for a Converse ``stopReason`` (unknown values count as ``stop``)."""
    return finish_from(_STOP, value)


def bedrock_usage(data: Any) -> Usage | None:
    """Our :class:`Usage` from a Converse ``usage`` object (``None`` when absent)."""
    return cached_usage(data, inputs="inputTokens", outputs="outputTokens",
                        read="cacheReadInputTokens", write="cacheWriteInputTokens")


def reasoning_block(raw: Any) -> ReasoningPart:
    """Our part for a ``reasoningContent`` block (readable text with its signature, or the
    encrypted ``redactedContent``)."""
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"malformed reasoningContent: {raw!r:.80}", provider="bedrock")
    if "redactedContent" in raw:
        return reasoning_part("", encrypted=str(raw["redactedContent"]))
    body = raw.get("reasoningText")
    body = body if isinstance(body, Mapping) else {}
    return reasoning_part(str(body.get("text") or ""), body.get("signature"))


def refusal(reason: Any) -> Refusal | None:
    """The refusal of a guardrail or content-filter stop (its category: the stop reason)."""
    if reason in ("guardrail_intervened", "content_filtered"):
        return Refusal.model_construct(text="", category=str(reason))
    return None


def parse_converse(data: Any, request: ChatRequest, provider: str) -> ChatResponse:
    """The :class:`ChatResponse` of a Converse answer."""
    if not isinstance(data, Mapping):
        raise ProtocolError("response is not a JSON object", provider=provider)
    output = data.get("output")
    message = output.get("message") if isinstance(output, Mapping) else None
    content = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(content, list):
        raise ProtocolError("response has no output message content", provider=provider)
    spec = output_schema(request.response_format)
    texts: list[str] = []
    parts: list[Any] = []
    calls: list[ToolCall] = []
    structured: str | None = None
    for block in content:
        if not isinstance(block, Mapping):
            raise ProtocolError("content block is not an object", provider=provider)
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
            parts.append(TextPart(text=block["text"]))
        elif "reasoningContent" in block:
            parts.append(reasoning_block(block["reasoningContent"]))
        elif "toolUse" in block:
            use = block["toolUse"]
            if not isinstance(use, Mapping) or not isinstance(use.get("name"), str):
                raise ProtocolError(f"malformed toolUse block: {block!r:.100}",
                                    provider=provider)
            arguments = _json.dumps(use.get("input") or {}).decode()
            if spec is not None and use["name"] == spec.name:
                structured = spec.tool_output_text(use.get("input"), arguments)
            else:
                calls.append(ToolCall.model_construct(
                    id=str(use.get("toolUseId") or f"call_{uuid.uuid4().hex[:24]}"),
                    type="function",
                    function=FunctionCall.model_construct(name=use["name"],
                                                          arguments=arguments)))
    raw_reason = data.get("stopReason")
    text, reason, parts = reply_text(texts, calls, structured, stop_reason(raw_reason), parts)
    reasoning = any(isinstance(p, ReasoningPart) for p in parts)
    return ChatResponse.model_construct(
        id="",
        model=request.model,
        content=text,
        tool_calls=mark_incomplete(calls, reason),
        finish_reason=reason,
        usage=bedrock_usage(data.get("usage")) or Usage(),
        parts=parts if reasoning else [],
        refusal=refusal(raw_reason),
        extras={k: data[k] for k in _EXTRAS if data.get(k)},
        raw=data,
    )
