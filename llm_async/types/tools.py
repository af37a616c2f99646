"""Tools: the functions a model may call, the calls it makes, and their streamed fragments."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from ..errors import ToolArgumentsError
from ._base import _Model

__all__ = [
    "FunctionCall",
    "FunctionDefinition",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "mark_incomplete",
]


class FunctionCall(_Model):
    """The function a tool call invokes; ``arguments`` is the JSON text the model produced."""

    name: str
    arguments: str = ""


class ToolCall(_Model):
    """A complete tool call made by the assistant.

    ``incomplete`` is set when the reply was cut (``max_tokens``) while the model was still
    writing the arguments: they are then not valid JSON.
    """

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    incomplete: bool = False

    @property
    def name(self) -> str:
        return self.function.name

    def parsed_arguments(self) -> Any:
        """The arguments as JSON.

        Raises :class:`~llm_async.errors.ToolArgumentsError` (a ``ValueError``, with the raw
        text and whether the call was cut) when they are not JSON.
        """
        text = self.function.arguments or "{}"
        try:
            return json.loads(text)
        except ValueError as exc:
            cut = " (the reply was cut at max_tokens)" if self.incomplete else ""
            raise ToolArgumentsError(
                f"the arguments of tool call {self.id!r} ({self.name}) are not JSON{cut}: {exc}",
                raw_text=self.function.arguments, tool_name=self.name,
                incomplete=self.incomplete) from None


def mark_incomplete(calls: list[ToolCall], finish_reason: str | None) -> list[ToolCall]:
    """Mark the tool calls whose arguments were cut by ``max_tokens`` (not valid JSON)."""
    if finish_reason != "length":
        return calls
    for call in calls:
        try:
            json.loads(call.function.arguments or "{}")
        except ValueError:
            call.incomplete = True
    return calls


class ToolCallDelta(_Model):
    """A fragment of a streamed tool call; fragments with the same ``index`` concatenate."""

    index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class FunctionDefinition(_Model):
    """A function the model may call: a name, a description and a JSON schema."""

    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class Tool(_Model):
    """A tool in OpenAI's shape: ``{"type": "function", "function": {...}}``."""

    type: Literal["function"] = "function"
    function: FunctionDefinition

