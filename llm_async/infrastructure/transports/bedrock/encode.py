"""Our :class:`~llm_async.types.ChatRequest` as a Bedrock Converse body.

``system``/``developer`` messages → ``system`` blocks; consecutive messages of one role share a
message (Bedrock requires alternating roles); images → ``image`` blocks from ``data:`` URLs; an
assistant's ``tool_calls`` → ``toolUse`` blocks, a ``tool`` message → a ``toolResult`` block in
a user message (a JSON object result as ``json``, else ``text``); signed reasoning →
``reasoningContent``; ``max_tokens``, ``temperature``, ``top_p`` and ``stop`` →
``inferenceConfig``; ``tools`` → ``toolConfig`` (``tool_choice`` ``auto``/``required``/a named
function → ``auto``/``any``/``tool``; Bedrock has no ``none``); ``response_format`` → a forced
tool whose input schema is the requested schema. ``extra_body`` is merged last.
"""

from __future__ import annotations

from typing import Any

from ....errors import InvalidRequestError
from ....structured import output_schema
from ....types import ChatRequest, ImagePart, Message, ReasoningPart, TextPart
from .._shared import (
    DATA_URL,
    OUTPUT_TOOL_DESCRIPTION,
    call_arguments,
    check_output_tool,
    check_tool_name,
    json_object,
    merge_turns,
    request_options,
    tool_choice,
)

__all__ = ["converse_body"]

_LABEL = "Bedrock"
_INFERENCE = {"max_tokens": "maxTokens", "temperature": "temperature", "top_p": "topP",
              "stop": "stopSequences"}
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}


def _image(part: ImagePart, where: str, provider: str) -> dict[str, Any]:
    match = DATA_URL.match(part.image_url.url)
    media = match["media"] if match else ""
    fmt = _IMAGE_FORMATS.get(media[6:].lower()) if media.startswith("image/") else None
    if match is None or fmt is None:
        raise InvalidRequestError(
            "Bedrock takes images as base64 data: URLs (png, jpeg, gif or webp)",
            field=where, provider=provider)
    return {"image": {"format": fmt, "source": {"bytes": match["data"]}}}


def _content(content: Any, where: str, provider: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"text": part.text})
        elif isinstance(part, ReasoningPart):
            if part.encrypted is not None and not part.text:
                blocks.append({"reasoningContent": {"redactedContent": part.encrypted}})
            elif part.signature:
                blocks.append({"reasoningContent": {"reasoningText": {
                    "text": part.text, "signature": part.signature}}})
            # reasoning without Bedrock's signature cannot be sent back
        elif isinstance(part, ImagePart):
            blocks.append(_image(part, f"{where}[{index}]", provider))
    return blocks


def _blocks(message: Message, where: str,
            provider: str) -> tuple[str, list[dict[str, Any]], bool]:
    if message.role == "tool":
        text = message.text
        value = json_object(text)
        result = [{"json": value}] if value is not None else [{"text": text}]
        return "user", [{"toolResult": {"toolUseId": message.tool_call_id,
                                        "content": result}}], False
    blocks = _content(message.content, f"{where}.content", provider)
    if message.role == "user":
        return "user", blocks, False
    for j, call in enumerate(message.tool_calls or ()):
        arguments = call_arguments(call, f"{where}.tool_calls[{j}].function.arguments",
                                   label=_LABEL, provider=provider)
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.function.name,
                                   "input": arguments}})
    return "assistant", blocks, False


def _tool_config(request: ChatRequest, provider: str) -> dict[str, Any] | None:
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(request.tools or ()):
        fn = tool.function
        check_tool_name(fn.name, index, label=_LABEL, provider=provider)
        spec: dict[str, Any] = {"name": fn.name}
        if fn.description:
            spec["description"] = fn.description
        spec["inputSchema"] = {"json": fn.parameters}
        tools.append({"toolSpec": spec})
    choice = request.tool_choice
    output = output_schema(request.response_format)
    if output is not None:
        check_output_tool(output, choice, (t["toolSpec"]["name"] for t in tools),
                          label=_LABEL, provider=provider)
        tools.append({"toolSpec": {
            "name": output.name,
            "description": output.description or OUTPUT_TOOL_DESCRIPTION,
            "inputSchema": {"json": output.tool_input_schema()}}})
        return {"tools": tools, "toolChoice": {"tool": {"name": output.name}}}
    wanted = tool_choice(choice, bool(tools), provider=provider)
    if not tools:
        return None
    config: dict[str, Any] = {"tools": tools}
    if wanted is None:
        return config
    kind, name = wanted
    if kind == "none":
        raise InvalidRequestError(
            "Bedrock Converse has no tool_choice 'none'; leave the tools out instead",
            field="tool_choice", provider=provider)
    config["toolChoice"] = {"tool": {"name": name}} if kind == "function" \
        else {"any" if kind == "required" else "auto": {}}
    return config


def converse_body(request: ChatRequest, provider: str) -> dict[str, Any]:
    """The Converse body for ``request`` (raises
    :class:`~llm_async.errors.InvalidRequestError` for input Bedrock cannot take)."""
    system, turns = merge_turns(
        request, label=_LABEL, provider=provider, system_name="system prompt",
        convert=lambda message, where: _blocks(message, where, provider))
    body: dict[str, Any] = {"messages": [{"role": turn.role, "content": turn.blocks}
                                         for turn in turns]}
    if system:
        body["system"] = [{"text": text} for text in system]
    config = request_options(request, _INFERENCE)
    if config:
        body["inferenceConfig"] = config
    tool_config = _tool_config(request, provider)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    if request.extra_body:
        body.update(request.extra_body)
    return body
