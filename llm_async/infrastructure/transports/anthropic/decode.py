"""An Anthropic Messages API answer as our :class:`~llm_async.types.ChatResponse`.

Text blocks → ``content``, ``tool_use`` blocks → ``tool_calls`` (input as JSON text),
``stop_reason`` → our finish reasons, and usage with cache tokens
(``input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``).
Every other block is kept, in order, in ``response.parts``: ``thinking`` (with its signature)
and ``redacted_thinking`` as :class:`~llm_async.types.ReasoningPart`, text with its
``citations``, ``server_tool_use`` and the ``*_tool_result`` blocks of provider-run tools, and
any block of a kind without a type here as a :class:`~llm_async.types.ProviderBlockPart`. A
``refusal`` stop becomes ``response.refusal`` (with ``stop_details``' category and explanation).
The forced structured-output tool's input comes back as the reply's text (see
:mod:`llm_async.structured`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .... import _json
from ....errors import ProtocolError
from ....structured import output_schema
from ....types import (
    ChatRequest,
    ChatResponse,
    Citation,
    FinishReason,
    FunctionCall,
    ProviderBlockPart,
    ReasoningPart,
    Refusal,
    ServerToolCallPart,
    ServerToolResultPart,
    TextPart,
    ToolCall,
    Usage,
    mark_incomplete,
)
from .._shared import cached_usage, finish_from, reasoning_part, reply_text

__all__ = [
    "ERROR_STATUS",
    "anthropic_usage",
    "block_part",
    "message_extras",
    "parse_citation",
    "parse_message",
    "stop_reason",
    "stop_refusal",
    "with_interleaved_tools",
]

_STOP: Mapping[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: Anthropic error ``type`` → the HTTP status it stands for (used for in-stream ``error`` events).
ERROR_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def stop_reason(value: Any) -> FinishReason | None:
    """Our finish reason for an Anthropic ``stop_reason`` (unknown values count as ``stop``)."""
    return finish_from(_STOP, value)


def anthropic_usage(data: Any) -> Usage | None:
    """Our :class:`Usage` from an Anthropic ``usage`` object (``None`` when absent).

    Anthropic's ``input_tokens`` excludes cached tokens; ours counts every prompt token.
    """
    return cached_usage(data, inputs="input_tokens", outputs="output_tokens",
                        read="cache_read_input_tokens", write="cache_creation_input_tokens")


def parse_citation(raw: Mapping[str, Any]) -> Citation:
    """An Anthropic citation object as a :class:`Citation` (other fields kept in ``extras``)."""
    def text(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) else None

    return Citation(type=str(raw.get("type") or "citation"), url=text("url"), title=text("title"),
                    cited_text=text("cited_text"),
                    extras={k: v for k, v in raw.items()
                            if k not in ("type", "url", "title", "cited_text")})


# Block types that hold a provider-run tool's result (``web_search_tool_result`` ...).
def _is_server_result(kind: str) -> bool:
    return kind.endswith("_tool_result") and kind != "tool_result"


def block_part(block: Mapping[str, Any]) -> Any:
    """Our part for an Anthropic content block other than ``text`` and ``tool_use``."""
    kind = str(block.get("type") or "")
    if kind == "thinking":
        return reasoning_part(str(block.get("thinking") or ""), block.get("signature"))
    if kind == "redacted_thinking":
        return reasoning_part("", encrypted=str(block.get("data") or ""))
    if kind in ("server_tool_use", "mcp_tool_use"):
        raw_input = block.get("input")
        return ServerToolCallPart(
            id=str(block.get("id") or ""), name=str(block.get("name") or ""),
            input=dict(raw_input) if isinstance(raw_input, Mapping) else {}, kind=kind,
            extras={k: v for k, v in block.items() if k not in ("type", "id", "name", "input")})
    if _is_server_result(kind):
        return ServerToolResultPart(
            tool_call_id=str(block.get("tool_use_id") or ""), kind=kind,
            content=block.get("content"),
            extras={k: v for k, v in block.items()
                    if k not in ("type", "tool_use_id", "content")})
    return ProviderBlockPart(provider="anthropic", block=dict(block))


def with_interleaved_tools(parts: list[Any],
                           tool_uses: list[tuple[int, dict[str, Any]]]) -> list[Any]:
    """``parts`` with the ``tool_use`` blocks put back in their places when thinking came
    after one of them (interleaved thinking), so that the turn goes back in its order."""
    if not tool_uses or not any(isinstance(p, ReasoningPart) for p in parts[tool_uses[0][0]:]):
        return parts
    out = list(parts)
    for offset, (position, block) in enumerate(tool_uses):
        out.insert(position + offset, ProviderBlockPart(provider="anthropic", block=block))
    return out


def stop_refusal(reason: Any, details: Any) -> Refusal | None:
    """The refusal of a ``refusal`` stop (``stop_details`` gives its category and words)."""
    if reason != "refusal":
        return None
    details = details if isinstance(details, Mapping) else {}
    explanation = details.get("explanation")
    category = details.get("category")
    return Refusal.model_construct(
        text=explanation if isinstance(explanation, str) else "",
        category=category if isinstance(category, str) else None)


_MESSAGE_FIELDS = frozenset({"id", "type", "role", "model", "content", "stop_reason", "usage"})


def message_extras(obj: Mapping[str, Any], into: dict[str, Any]) -> None:
    """The message's fields this model has no place for (and the server tools' usage)."""
    for key, value in obj.items():
        if key not in _MESSAGE_FIELDS and value is not None:
            into[key] = value
    usage = obj.get("usage")
    if isinstance(usage, Mapping) and isinstance(usage.get("server_tool_use"), Mapping):
        into["server_tool_use"] = usage["server_tool_use"]


def parse_message(data: Mapping[str, Any], request: ChatRequest,
                  provider: str) -> ChatResponse:
    """The :class:`ChatResponse` of a Messages API answer (not an error object)."""
    content = data.get("content")
    if not isinstance(content, list):
        raise ProtocolError("response has no content list", provider=provider)
    spec = output_schema(request.response_format)
    texts: list[str] = []
    calls: list[ToolCall] = []
    parts: list[Any] = []
    rich = False  # whether there is more than text and tool calls
    structured: str | None = None
    tool_uses: list[tuple[int, dict[str, Any]]] = []  # (position in parts, block)
    for block in content:
        if not isinstance(block, Mapping):
            raise ProtocolError("content block is not an object", provider=provider)
        kind = block.get("type")
        if kind == "text":
            text = str(block.get("text") or "")
            texts.append(text)
            raw_citations = block.get("citations")
            cited = [parse_citation(c) for c in raw_citations or ()
                     if isinstance(c, Mapping)] if isinstance(raw_citations, list) else []
            rich = rich or bool(cited)
            parts.append(TextPart(text=text, citations=cited or None))
        elif kind == "tool_use":
            try:
                name = str(block["name"])
                arguments = _json.dumps(block.get("input") or {}).decode()
            except (KeyError, TypeError) as exc:
                raise ProtocolError(f"malformed tool_use block: {block!r:.100}",
                                    provider=provider) from exc
            if spec is not None and name == spec.name:
                structured = spec.tool_output_text(block.get("input"), arguments)
            else:
                calls.append(ToolCall.model_construct(
                    id=str(block.get("id") or ""), type="function",
                    function=FunctionCall.model_construct(name=name, arguments=arguments)))
                tool_uses.append((len(parts), dict(block)))
        else:
            rich = True
            parts.append(block_part(block))
    parts = with_interleaved_tools(parts, tool_uses)
    raw_reason = data.get("stop_reason")
    text_out, reason, parts = reply_text(texts, calls, structured, stop_reason(raw_reason), parts)
    extras: dict[str, Any] = {}
    message_extras(data, extras)
    return ChatResponse.model_construct(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or request.model),
        content=text_out,
        tool_calls=mark_incomplete(calls, reason),
        finish_reason=reason,
        usage=anthropic_usage(data.get("usage")) or Usage(),
        parts=parts if rich else [],
        refusal=stop_refusal(raw_reason, data.get("stop_details")),
        extras=extras,
        raw=data,
    )
