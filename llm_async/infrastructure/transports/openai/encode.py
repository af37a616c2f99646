"""Our :class:`~llm_async.types.ChatRequest`'s parts in the Chat Completions wire shape: one
message (text, image parts, tool calls), the ``response_format`` of a dict or a pydantic model,
and the models that need ``max_completion_tokens``. The transport's ``build_payload`` assembles
the body from them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ....types import ImagePart, Message, TextPart

__all__ = ["message_payload", "response_format_payload"]

# Models that reject the legacy ``max_tokens`` and need ``max_completion_tokens``.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def response_format_payload(value: Any) -> dict[str, Any] | None:
    """OpenAI's ``response_format`` from a dict or a pydantic model class."""
    if value is None:
        return None
    if isinstance(value, type) and issubclass(value, BaseModel):
        return {
            "type": "json_schema",
            "json_schema": {"name": value.__name__, "schema": value.model_json_schema()},
        }
    return dict(value)


def message_payload(message: Message) -> dict[str, Any]:
    """OpenAI's shape of one of our messages.

    Parts OpenAI cannot take back are left out: reasoning, provider-run tools and provider
    blocks (they belong to the provider that produced them). An assistant's text parts are
    joined into one string, which every OpenAI-compatible server accepts.
    """
    out: dict[str, Any] = {"role": message.role}
    content = message.content
    if content is None or isinstance(content, str):
        out["content"] = content
    elif message.role == "assistant":
        out["content"] = message.text if any(isinstance(p, TextPart) for p in content) else None
    else:
        parts: list[dict[str, Any]] = []
        for part in content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                image: dict[str, Any] = {"url": part.image_url.url}
                if part.image_url.detail:
                    image["detail"] = part.image_url.detail
                parts.append({"type": "image_url", "image_url": image})
        out["content"] = parts
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": tc.id, "type": "function",
             "function": {"name": tc.function.name, "arguments": tc.function.arguments}}
            for tc in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out

