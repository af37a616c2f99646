"""OpenAI Chat Completions requests for the mock provider server: validation and
normalisation into a :class:`~llm_async.testing._wire.ChatRequest`, with OpenAI's error
messages, parameter names and codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._wire import ChatMessage, ChatRequest, RequestError, ToolSpec, canonical_json

__all__ = ["message_text", "parse_chat_request"]


def message_text(content: Any) -> str:
    """Text of an OpenAI message ``content``: a string, or the text parts of a part list
    joined by spaces (image / audio parts are ignored)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in ("text", "input_text")
            and isinstance(part.get("text"), str)
        ]
        return " ".join(texts)
    return ""


def _optional_positive_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestError(
            f"Invalid '{name}': expected an integer greater than or equal to 1, got {value!r}.",
            param=name,
            code="invalid_value",
        )
    return value


def _parse_messages(raw: Any) -> list[ChatMessage]:
    if raw is None:
        raise RequestError(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(raw, list):
        raise RequestError(
            "Invalid type for 'messages': expected an array of objects.",
            param="messages",
            code="invalid_type",
        )
    if not raw:
        raise RequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got "
            "an empty array instead.",
            param="messages",
            code="empty_array",
        )
    messages: list[ChatMessage] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise RequestError(
                f"Invalid 'messages[{index}]': expected an object with a string 'role'.",
                param=f"messages[{index}]",
                code="invalid_type",
            )
        messages.append(
            ChatMessage(item["role"], message_text(item.get("content")), canonical_json(item))
        )
    return messages


def _parse_tools(raw: Any) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RequestError(
            "Invalid type for 'tools': expected an array.", param="tools", code="invalid_type"
        )
    tools: list[ToolSpec] = []
    for index, item in enumerate(raw):
        function = item.get("function") if isinstance(item, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise RequestError(
                f"Invalid 'tools[{index}]': expected "
                "{'type': 'function', 'function': {'name': ...}}.",
                param=f"tools[{index}]",
                code="invalid_value",
            )
        parameters = function.get("parameters")
        tools.append(ToolSpec(name, parameters if isinstance(parameters, dict) else {}))
    return tools


def _parse_tool_choice(raw: Any) -> tuple[str, str | None]:
    if raw is None:
        return "auto", None
    if raw in ("auto", "none", "required"):
        return str(raw), None
    if isinstance(raw, dict) and raw.get("type") == "function":
        function = raw.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            return "named", name
    raise RequestError(
        "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or "
        "{'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice",
        code="invalid_value",
    )


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate an OpenAI Chat Completions request body and normalise it.

    Raises :class:`~llm_async.testing._wire.RequestError` (HTTP 400) when invalid.
    """
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    messages = _parse_messages(body.get("messages"))

    max_tokens = _optional_positive_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _optional_positive_int(body, "max_tokens")

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError(
            "Invalid type for 'stream': expected a boolean.", param="stream", code="invalid_type"
        )
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True

    tools = _parse_tools(body.get("tools"))
    tool_choice, tool_name = _parse_tool_choice(body.get("tool_choice"))
    n = _optional_positive_int(body, "n") or 1
    if n > 128:
        raise RequestError("Invalid 'n': integer above maximum value. Expected a value <= 128.",
                           param="n", code="integer_above_max_value")
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise RequestError("Invalid type for 'logprobs': expected a boolean.", param="logprobs",
                           code="invalid_type")
    top = body.get("top_logprobs")
    if top is not None:
        if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
            raise RequestError("Invalid 'top_logprobs': expected an integer between 0 and 20.",
                               param="top_logprobs", code="invalid_value")
        if not logprobs:
            raise RequestError("Invalid value for 'top_logprobs': 'logprobs' must be set to "
                               "true when 'top_logprobs' is set.", param="top_logprobs",
                               code="invalid_value")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in ("none", "minimal", "low", "medium", "high"):
        raise RequestError(f"Invalid value for 'reasoning_effort': {effort!r}.",
                           param="reasoning_effort", code="invalid_value")
    return ChatRequest(
        model=model,
        messages=messages,
        stream=bool(stream),
        include_usage=include_usage,
        max_tokens=max_tokens,
        tools=tools,
        tool_choice=tool_choice,
        tool_name=tool_name,
        n=n,
        logprobs=bool(logprobs),
        top_logprobs=top or 0,
        reasoning=effort not in (None, "none"),
        response_schema=_response_schema(body.get("response_format")),
    )


def _response_schema(raw: Any) -> dict[str, Any] | None:
    """The schema ``response_format`` asks the answer to fill (``{}`` for ``json_object``)."""
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {}
    if kind == "json_schema":
        spec = raw.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise RequestError("Missing required parameter: 'response_format.json_schema.name'.",
                               param="response_format.json_schema.name",
                               code="missing_required_parameter")
        return schema if isinstance(schema, dict) else {}
    raise RequestError("Invalid value for 'response_format.type': expected 'text', "
                       "'json_object' or 'json_schema'.", param="response_format.type",
                       code="invalid_value")
