"""Our :class:`~llm_async.types.ChatRequest` as a Gemini ``GenerateContentRequest``.

* ``system`` and ``developer`` messages → ``systemInstruction`` (their texts as parts);
* ``user`` → a ``user`` content, ``assistant`` → a ``model`` content; consecutive messages of one
  role share a content. Images: ``data:`` URLs → ``inlineData``, other URLs → ``fileData`` (the
  MIME type guessed from the name);
* an assistant's ``tool_calls`` → ``functionCall`` parts; a ``tool`` message → a
  ``functionResponse`` part in a ``user`` content, named after the call it answers (a JSON object
  result goes as is, anything else as ``{"result": text}``);
* reasoning goes back as thought parts, a ``thoughtSignature`` on the part it came with;
* ``tools`` → one ``functionDeclarations`` tool (``parametersJsonSchema``); ``tool_choice``
  ``auto``/``none``/``required``/a named function → ``functionCallingConfig`` mode
  ``AUTO``/``NONE``/``ANY``/``ANY`` with ``allowedFunctionNames``;
* ``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed`` and the penalties →
  ``generationConfig``; ``response_format`` → ``responseMimeType: application/json`` and
  ``responseJsonSchema``;
* ``extra_body`` is merged last, one level deep for ``generationConfig`` and ``toolConfig``.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from typing import Any

from ....errors import InvalidRequestError
from ....structured import output_schema
from ....types import ChatRequest, ImagePart, Message, ReasoningPart, TextPart
from .._shared import (
    DATA_URL,
    call_arguments,
    json_object,
    merge_turns,
    request_options,
    tool_choice,
)

__all__ = ["generate_body"]

_LABEL = "Gemini"
_GENERATION = {"temperature": "temperature", "top_p": "topP", "max_tokens": "maxOutputTokens",
               "stop": "stopSequences", "seed": "seed", "presence_penalty": "presencePenalty",
               "frequency_penalty": "frequencyPenalty"}


def _image(part: ImagePart, where: str, provider: str) -> dict[str, Any]:
    url = part.image_url.url
    match = DATA_URL.match(url)
    if match:
        return {"inlineData": {"mimeType": match["media"], "data": match["data"]}}
    mime, _ = mimetypes.guess_type(url.split("?", 1)[0])
    if mime is None:
        raise InvalidRequestError(
            "Gemini needs the MIME type of an image URL; use a data: URL or a file name with "
            "an extension", field=where, provider=provider)
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _parts(content: Any, where: str,
           provider: str) -> tuple[list[dict[str, Any]], str | None]:
    """Gemini parts of a message's content, and the thought signature still waiting for the
    part it belongs to (a function call, which travels apart from the content)."""
    if content is None:
        return [], None
    if isinstance(content, str):
        return ([{"text": content}] if content else []), None
    parts: list[dict[str, Any]] = []
    pending: str | None = None
    for index, part in enumerate(content):
        if isinstance(part, TextPart):
            if part.text:
                out: dict[str, Any] = {"text": part.text}
                if pending:
                    out["thoughtSignature"], pending = pending, None
                parts.append(out)
        elif isinstance(part, ImagePart):
            parts.append(_image(part, f"{where}[{index}]", provider))
        elif isinstance(part, ReasoningPart):
            if part.text:
                thought: dict[str, Any] = {"text": part.text, "thought": True}
                if part.signature:
                    thought["thoughtSignature"] = part.signature
                parts.append(thought)
            elif part.signature:
                pending = part.signature  # a signature that rode on the next part
    return parts, pending


def _message_parts(message: Message, where: str, names: dict[str, str],
                   provider: str) -> tuple[str, list[dict[str, Any]], bool]:
    if message.role == "tool":
        call_id = message.tool_call_id or ""
        name = names.get(call_id)
        if name is None:
            raise InvalidRequestError(
                f"tool result {call_id!r} answers no earlier tool call; Gemini needs the "
                "function name", field=f"{where}.tool_call_id", provider=provider)
        text = message.text
        value = json_object(text)
        result = value if value is not None else {"result": text}
        return "user", [{"functionResponse": {"name": name, "response": result}}], False
    parts, pending = _parts(message.content, f"{where}.content", provider)
    if message.role == "user":
        return "user", parts, False
    for j, call in enumerate(message.tool_calls or ()):
        arguments = call_arguments(call, f"{where}.tool_calls[{j}].function.arguments",
                                   label=_LABEL, provider=provider)
        names[call.id] = call.function.name
        part: dict[str, Any] = {"functionCall": {"name": call.function.name,
                                                 "args": arguments}}
        if pending:
            part["thoughtSignature"], pending = pending, None
        parts.append(part)
    return "model", parts, False


def _tool_choice(choice: Any, has_tools: bool, provider: str) -> dict[str, Any] | None:
    wanted = tool_choice(choice, has_tools, provider=provider)
    if wanted is None:
        return None
    kind, name = wanted
    if kind == "function":
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    return {"mode": "ANY" if kind == "required" else kind.upper()}


def _merge(body: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        current = body.get(key)
        if key in ("generationConfig", "toolConfig") and isinstance(current, dict) \
                and isinstance(value, Mapping):
            current.update(value)
        else:
            body[key] = value


def generate_body(request: ChatRequest, provider: str) -> dict[str, Any]:
    """The ``GenerateContentRequest`` body for ``request`` (raises
    :class:`~llm_async.errors.InvalidRequestError` for input Gemini cannot take)."""
    names: dict[str, str] = {}  # tool call id -> function name
    system, turns = merge_turns(
        request, label=_LABEL, provider=provider, system_name="system instruction",
        convert=lambda message, where: _message_parts(message, where, names, provider))
    body: dict[str, Any] = {"contents": [{"role": turn.role, "parts": turn.blocks}
                                         for turn in turns]}
    if system:
        body["systemInstruction"] = {"parts": [{"text": text} for text in system]}
    tools = [
        {"name": t.function.name,
         **({"description": t.function.description} if t.function.description else {}),
         "parametersJsonSchema": t.function.parameters}
        for t in request.tools or ()
    ]
    if tools:
        body["tools"] = [{"functionDeclarations": tools}]
    calling = _tool_choice(request.tool_choice, bool(tools), provider)
    if calling is not None:
        body["toolConfig"] = {"functionCallingConfig": calling}
    config = request_options(request, _GENERATION)
    spec = output_schema(request.response_format)
    if spec is not None:
        config["responseMimeType"] = "application/json"
        if spec.schema is not None:
            config["responseJsonSchema"] = spec.schema
    if config:
        body["generationConfig"] = config
    if request.extra_body:
        _merge(body, request.extra_body)
    return body
