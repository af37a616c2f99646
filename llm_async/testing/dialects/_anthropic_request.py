"""Anthropic Messages API requests for the mock provider server: validation (content blocks,
signed thinking, tool loops with thinking, ``tool_choice``, ``system``) and normalisation into
an :class:`AnthropicRequest`, with Anthropic's error messages."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._wire import ChatMessage, ChatRequest, RequestError, ToolSpec, canonical_json, sign, verify

__all__ = ["AnthropicRequest", "parse_messages_request"]

_BLOCK_TYPES = frozenset({"text", "image", "document", "tool_use", "tool_result", "thinking",
                          "redacted_thinking", "server_tool_use", "mcp_tool_use",
                          "container_upload", "search_result"})
_MIN_THINKING_BUDGET = 1024
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none", "tool": "named"}
_SIGNATURE_PREFIX = base64.b64decode(sign(""))[:10]


@dataclass(slots=True)
class AnthropicRequest(ChatRequest):
    """A neutral request plus what only the Anthropic dialect needs."""

    #: Whether any ``cache_control`` marker was sent (prompt caching is opt-in on Anthropic).
    cache_control: bool = False


def _invalid(message: str) -> RequestError:
    return RequestError(message, error_type="invalid_request_error")


def _block_text(block: Mapping[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text") or "")
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(str(b.get("text") or "") for b in content
                             if isinstance(b, Mapping) and b.get("type") == "text")
    return ""


def _server_result(kind: Any) -> bool:
    """Whether ``kind`` is the block type of a provider-run tool's result
    (``web_search_tool_result``, ``code_execution_tool_result`` ...)."""
    return isinstance(kind, str) and kind.endswith("_tool_result") and kind != "tool_result"


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, Mapping) or (block.get("type") not in _BLOCK_TYPES
                                          and not _server_result(block.get("type"))):
        raise _invalid(f"{where}: Input tag does not match any of the expected content block "
                       f"types {sorted(_BLOCK_TYPES)} or a server tool result")
    kind = block["type"]
    if kind == "thinking":
        thinking, signature = block.get("thinking"), block.get("signature")
        if not isinstance(thinking, str) or not isinstance(signature, str):
            raise _invalid(f"{where}: thinking blocks need a string thinking and signature")
        if not verify(thinking, signature):
            raise _invalid(f"{where}: Invalid `signature` in `thinking` block")
        return
    if kind == "redacted_thinking":
        if not _redacted_ok(block.get("data")):
            raise _invalid(f"{where}: Invalid `data` in `redacted_thinking` block")
        return
    if kind in ("server_tool_use", "mcp_tool_use"):
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str) \
                or not isinstance(block.get("input"), Mapping):
            raise _invalid(f"{where}: {kind} blocks need a string id and name and an object input")
        return
    if _server_result(kind):
        if not isinstance(block.get("tool_use_id"), str):
            raise _invalid(f"{where}.tool_use_id: Field required")
        return
    citations = block.get("citations")
    if citations is not None and (not isinstance(citations, list) or not all(
            isinstance(c, Mapping) and isinstance(c.get("type"), str) for c in citations)):
        raise _invalid(f"{where}.citations: expected a list of citation objects")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _invalid(f"{where}: text content blocks must contain non-whitespace text")
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str) \
                or not isinstance(block.get("input"), Mapping):
            raise _invalid(f"{where}: tool_use blocks need a string id and name and an "
                           "object input")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise _invalid(f"{where}.tool_use_id: Field required")
    elif kind == "image":
        source = block.get("source")
        if not isinstance(source, Mapping) or source.get("type") not in ("base64", "url"):
            raise _invalid(f"{where}.source: expected a base64 or url image source")


def _parse_messages(raw: Any) -> list[ChatMessage]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages: at least one message is required")
    messages: list[ChatMessage] = []
    for index, item in enumerate(raw):
        where = f"messages.{index}"
        if not isinstance(item, Mapping):
            raise _invalid(f"{where}: Input should be an object")
        role = item.get("role")
        if role not in ("user", "assistant"):
            raise _invalid(f"{where}.role: Input should be 'user' or 'assistant' (a system "
                           "prompt goes in the top-level system parameter)")
        content = item.get("content")
        if isinstance(content, str):
            if not content.strip():
                raise _invalid(f"{where}: messages must have non-empty content")
            text = content
            neutral_role = role
        elif isinstance(content, list) and content:
            for j, block in enumerate(content):
                _check_block(block, f"{where}.content.{j}")
            text = "\n".join(t for t in (_block_text(b) for b in content) if t)
            only_results = all(b.get("type") == "tool_result" for b in content)
            neutral_role = "tool" if role == "user" and only_results else role
        else:
            raise _invalid(f"{where}.content: expected a string or a non-empty list of blocks")
        messages.append(ChatMessage(neutral_role, text, canonical_json(item)))
    return messages


def _redacted_ok(data: Any) -> bool:
    """Whether ``data`` is encrypted reasoning this server handed out."""
    try:
        return isinstance(data, str) and base64.b64decode(data).startswith(_SIGNATURE_PREFIX)
    except ValueError:
        return False


def _check_thinking_turn(raw: list[Any]) -> None:
    """With thinking on, the assistant turn whose tool calls the last user message answers must
    start with its thinking (Anthropic's rule for tool loops)."""
    last = len(raw) - 1
    if last < 1 or not isinstance(raw[last], Mapping):
        return
    results = raw[last].get("content")
    if not isinstance(results, list) or not any(
            isinstance(b, Mapping) and b.get("type") == "tool_result" for b in results):
        return
    turn = raw[last - 1]
    content = turn.get("content") if isinstance(turn, Mapping) else None
    if turn.get("role") != "assistant" or not isinstance(content, list) or not content:
        return
    first = content[0].get("type") if isinstance(content[0], Mapping) else None
    if first not in ("thinking", "redacted_thinking"):
        raise _invalid(
            f"messages.{last - 1}.content.0.type: Expected `thinking` or `redacted_thinking`, "
            f"but found `{first}`. When `thinking` is enabled, the final `assistant` message "
            "before a set of `tool_result` blocks must start with a thinking block: send back "
            "the thinking blocks of previous turns, or disable `thinking`.")


def _parse_thinking(raw: Any, max_tokens: int) -> bool:
    """Whether ``thinking`` is enabled (its budget checked against ``max_tokens``)."""
    if raw is None:
        return False
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind == "disabled":
        return False
    if kind != "enabled":
        raise _invalid("thinking.type: Input should be 'enabled' or 'disabled'")
    budget = raw.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < _MIN_THINKING_BUDGET:
        raise _invalid(f"thinking.enabled.budget_tokens: Input should be greater than or equal "
                       f"to {_MIN_THINKING_BUDGET}")
    if max_tokens <= budget:
        raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    return True


def _parse_system(raw: Any) -> ChatMessage | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return ChatMessage("system", raw, canonical_json({"system": raw})) if raw else None
    if isinstance(raw, list):
        texts = []
        for index, block in enumerate(raw):
            if not isinstance(block, Mapping) or block.get("type") != "text" \
                    or not isinstance(block.get("text"), str):
                raise _invalid(f"system.{index}: system blocks must be text blocks")
            texts.append(block["text"])
        return ChatMessage("system", "\n".join(texts), canonical_json({"system": raw}))
    raise _invalid("system: Input should be a string or a list of text blocks")


def _parse_tools(raw: Any) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _invalid("tools: Input should be a valid list")
    tools: list[ToolSpec] = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) \
                or not item["name"]:
            raise _invalid(f"tools.{index}.name: Field required")
        schema = item.get("input_schema")
        if not isinstance(schema, Mapping):
            raise _invalid(f"tools.{index}.input_schema: Field required")
        tools.append(ToolSpec(item["name"], dict(schema)))
    return tools


def _parse_tool_choice(raw: Any) -> tuple[str, str | None]:
    if raw is None:
        return "auto", None
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind not in _TOOL_CHOICES:
        raise _invalid("tool_choice: expected {'type': 'auto' | 'any' | 'tool' | 'none'}")
    if kind == "tool":
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid("tool_choice.name: Field required")
        return "named", name
    return _TOOL_CHOICES[kind], None


def _has_cache_control(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "cache_control" in value or any(_has_cache_control(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_cache_control(v) for v in value)
    return False


def parse_messages_request(body: Any) -> AnthropicRequest:
    """Validate a Messages API request body and normalise it.

    Raises :class:`~llm_async.testing._wire.RequestError` (HTTP 400) when invalid.
    """
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _invalid("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens: Input should be an integer greater than or equal to 1")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float)
                                    or isinstance(temperature, bool)
                                    or not 0 <= temperature <= 1):
        raise _invalid("temperature: Input should be between 0 and 1")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream: Input should be a valid boolean")
    messages = _parse_messages(body.get("messages"))
    system = _parse_system(body.get("system"))
    if system is not None:
        messages.insert(0, system)
    tools = _parse_tools(body.get("tools"))
    tool_choice, tool_name = _parse_tool_choice(body.get("tool_choice"))
    thinking = _parse_thinking(body.get("thinking"), max_tokens)
    if thinking:
        if tool_choice in ("required", "named"):
            raise _invalid("Thinking may not be enabled when tool_choice forces tool use.")
        _check_thinking_turn(body["messages"])
    return AnthropicRequest(
        model=model,
        messages=messages,
        stream=bool(stream),
        include_usage=True,
        max_tokens=max_tokens,
        tools=tools,
        tool_choice=tool_choice,
        tool_name=tool_name,
        cache_control=_has_cache_control(body),
        reasoning=thinking,
    )
