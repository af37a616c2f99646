"""Wire helpers the native-API transports (Anthropic, Bedrock, Gemini) share.

Each of them turns our conversation into alternating turns with the system text apart, checks
tool names and tool-call arguments the same way, serves ``response_format`` the same way where
it forces a tool, and reads stream events that are JSON objects. The provider's name in the
messages (``label``) and in the errors (``provider``) is given by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ... import _json
from ...errors import InvalidRequestError, ProtocolError
from ...structured import OutputSchema
from ...types import (
    ChatRequest,
    FinishReason,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "DATA_URL",
    "OUTPUT_TOOL_DESCRIPTION",
    "ToolChoice",
    "Turn",
    "cached_usage",
    "call_arguments",
    "check_output_tool",
    "check_tool_name",
    "event_object",
    "finish_from",
    "json_object",
    "merge_turns",
    "reasoning_part",
    "reply_text",
    "request_options",
    "tool_choice",
    "tool_delta",
    "unwrap_output",
]

#: A base64 ``data:`` URL: its media type and its data.
DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)$",
                      re.DOTALL)
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: The description of the forced structured-output tool when the schema has none.
OUTPUT_TOOL_DESCRIPTION = "Give the final answer as this tool's input."


# -- request ---------------------------------------------------------------------------------


class Turn:
    """One provider message assembled from one or more of ours (consecutive messages of one
    role share a turn); ``plain`` while it is a single message whose content was a string."""

    __slots__ = ("blocks", "plain", "role")

    def __init__(self, role: str, blocks: list[dict[str, Any]], plain: bool) -> None:
        self.role = role
        self.blocks = blocks
        self.plain = plain


def merge_turns(request: ChatRequest, *, label: str, provider: str, system_name: str,
                convert: Callable[[Message, str], tuple[str, list[dict[str, Any]], bool]],
                keep_system: Callable[[str], object] = bool) -> tuple[list[str], list[Turn]]:
    """The system texts and the alternating turns of ``request``.

    ``system`` and ``developer`` messages give their text (when ``keep_system`` keeps it; an
    image there is an error naming ``system_name``); every other message goes through
    ``convert(message, where)`` → ``(role, blocks, plain)`` and joins the previous turn when
    the role is the same. An empty message, or no message but system ones, is an
    :class:`~llm_async.errors.InvalidRequestError`.
    """
    system: list[str] = []
    turns: list[Turn] = []
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        if message.role in ("system", "developer"):
            if isinstance(message.content, list) and any(
                    isinstance(p, ImagePart) for p in message.content):
                raise InvalidRequestError(f"{label} takes no images in the {system_name}",
                                          field=f"{where}.content", provider=provider)
            if keep_system(message.text):
                system.append(message.text)
            continue
        role, blocks, plain = convert(message, where)
        if not blocks:
            raise InvalidRequestError(
                f"{label} needs non-empty content in {message.role} messages",
                field=f"{where}.content", provider=provider)
        if turns and turns[-1].role == role:
            turns[-1].blocks.extend(blocks)
            turns[-1].plain = False
        else:
            turns.append(Turn(role, blocks, plain))
    if not turns:
        raise InvalidRequestError(f"{label} needs at least one user or assistant message",
                                  field="messages", provider=provider)
    return system, turns


def request_options(request: ChatRequest, names: Mapping[str, str]) -> dict[str, Any]:
    """The request's sampling options under the provider's names, in the order of ``names``
    (``ours → theirs``); options not set are left out, ``stop`` goes as a list."""
    out: dict[str, Any] = {}
    for ours, theirs in names.items():
        value = getattr(request, ours)
        if ours == "stop":
            if value:
                out[theirs] = list(value)
        elif value is not None:
            out[theirs] = value
    return out


def json_object(text: str) -> dict[str, Any] | None:
    """``text`` parsed when it is a JSON object, else ``None`` (a tool result's value)."""
    try:
        value = _json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def call_arguments(call: ToolCall, field: str, *, label: str, provider: str) -> dict[str, Any]:
    """The arguments of an assistant's tool call as the JSON object the provider needs."""
    try:
        arguments = _json.loads(call.function.arguments or "{}")
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise InvalidRequestError(f"tool call arguments must be a JSON object for {label}",
                                  field=field, provider=provider)
    return arguments


def check_tool_name(name: str, index: int, *, label: str, provider: str) -> None:
    """Raise unless ``name`` is a tool name the provider takes (``^[a-zA-Z0-9_-]{1,64}$``)."""
    if not _TOOL_NAME.match(name):
        raise InvalidRequestError(
            f"{label} tool names must match ^[a-zA-Z0-9_-]{{1,64}}$, got {name!r}",
            field=f"tools[{index}].function.name", provider=provider)


def check_output_tool(spec: OutputSchema, choice: Any, names: Iterable[str], *, label: str,
                      provider: str) -> None:
    """Raise when ``response_format`` cannot be served by forcing a tool named like its schema:
    another ``tool_choice`` was asked for, or a tool already has that name."""
    if choice not in (None, "auto"):
        raise InvalidRequestError(
            f"response_format is served on {label} by forcing a tool call, so it cannot be "
            "combined with tool_choice", field="tool_choice", provider=provider)
    if any(name == spec.name for name in names):
        raise InvalidRequestError(
            f"a tool is named {spec.name!r} like the response_format schema; rename one",
            field="tools", provider=provider)


#: What a ``tool_choice`` asks for: ``("auto" | "none" | "required", None)``,
#: ``("function", name)`` or ``("native", the provider's own object)``.
ToolChoice = tuple[str, Any]


def tool_choice(choice: Any, has_tools: bool, *, provider: str,
                native: tuple[str, ...] = ()) -> ToolChoice | None:
    """What ``choice`` asks for, or ``None`` when nothing is to be sent (no choice, or
    ``auto``/``none`` without tools). A choice other than those without tools, or one of no
    known shape, is an :class:`~llm_async.errors.InvalidRequestError`; a mapping whose
    ``type`` is in ``native`` is passed through as the provider's own shape."""
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return (choice, None) if has_tools else None
    if not has_tools:
        raise InvalidRequestError("tool_choice needs tools", field="tool_choice",
                                  provider=provider)
    if choice == "required":
        return ("required", None)
    if isinstance(choice, Mapping):
        kind = choice.get("type")
        if kind == "function":
            fn = choice.get("function")
            name = fn.get("name") if isinstance(fn, Mapping) else None
            if isinstance(name, str) and name:
                return ("function", name)
        elif kind in native:
            return ("native", dict(choice))
    raise InvalidRequestError(f"unsupported tool_choice {choice!r}", field="tool_choice",
                              provider=provider)


# -- response ---------------------------------------------------------------------------------


def finish_from(table: Mapping[str, FinishReason], value: Any) -> FinishReason | None:
    """Our finish reason for a provider's stop value (unknown values count as ``stop``)."""
    if value is None:
        return None
    return table.get(str(value), "stop")


def cached_usage(data: Any, *, inputs: str, outputs: str, read: str,
                 write: str) -> Usage | None:
    """Our :class:`Usage` from a usage object whose input count leaves out the cache reads and
    writes (ours counts every prompt token); ``None`` when absent."""
    if not isinstance(data, Mapping):
        return None
    cache_read = int(data.get(read) or 0)
    cache_write = int(data.get(write) or 0)
    return Usage.model_construct(
        input_tokens=int(data.get(inputs) or 0) + cache_read + cache_write,
        output_tokens=int(data.get(outputs) or 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=0,
    )


def reasoning_part(text: str, signature: Any = None,
                   encrypted: str | None = None) -> ReasoningPart:
    """A reasoning part (a signature that is not a non-empty string is dropped)."""
    return ReasoningPart.model_construct(
        text=text, signature=signature if isinstance(signature, str) and signature else None,
        encrypted=encrypted, format=None)


def reply_text(texts: list[str], calls: list[ToolCall], structured: str | None,
               reason: FinishReason | None,
               parts: list[Any]) -> tuple[str | None, FinishReason | None, list[Any]]:
    """The reply's ``content``, finish reason and parts.

    A structured answer (the forced output tool's input) is the content, its tool call is no
    tool call, and the text parts are dropped; else the joined texts (``None`` when there are
    only tool calls).
    """
    if structured is not None:
        if not calls and reason == "tool_calls":
            reason = "stop"
        return structured, reason, [p for p in parts if not isinstance(p, TextPart)]
    joined = "".join(texts)
    return (joined if (joined or not calls) else None), reason, parts


def event_object(data: bytes, provider: str) -> dict[str, Any]:
    """A stream event's data as a JSON object (a :class:`~llm_async.errors.ProtocolError`
    when it is not one)."""
    try:
        obj = _json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"malformed stream event: {data[:80]!r}",
                            provider=provider) from exc
    if not isinstance(obj, dict):
        raise ProtocolError("stream event is not a JSON object", provider=provider)
    return obj


def tool_delta(index: int, id: str | None = None, name: str | None = None,
               arguments: str = "") -> ToolCallDelta:
    """One streamed tool-call fragment."""
    return ToolCallDelta.model_construct(index=index, id=id, name=name, arguments=arguments)


def unwrap_output(spec: OutputSchema, pieces: list[str]) -> str | None:
    """The text of a forced output tool whose schema had to be wrapped in an object, from its
    streamed input pieces (which are cleared); ``None`` when there was nothing."""
    text = "".join(pieces)
    pieces.clear()
    try:
        value = _json.loads(text or "{}")
    except ValueError:
        return text or None
    return spec.tool_output_text(value, text)
