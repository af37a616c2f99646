"""Small pieces several dialects render the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["TOOL_ARGUMENT_FRAGMENTS", "fragments", "inner_error"]

#: How many pieces a streamed tool call's arguments arrive in.
TOOL_ARGUMENT_FRAGMENTS = 4


def fragments(text: str, parts: int = TOOL_ARGUMENT_FRAGMENTS) -> list[str]:
    """``text`` cut into at most ``parts`` pieces of equal length (none for no text)."""
    if not text:
        return []
    size = -(-len(text) // parts)
    return [text[i:i + size] for i in range(0, len(text), size)]


def inner_error(error: dict[str, Any] | None, default: Any) -> Any:
    """The inner error object of a fault's in-stream ``error`` body, which may be the inner
    object itself or the whole ``{"error": {...}}`` event (``default`` when there is none)."""
    if error is None:
        return default
    if isinstance(error.get("error"), Mapping):
        return error["error"]
    return error
