"""Our :class:`~llm_async.types.ChatRequest` as an Anthropic Messages API body.

* ``system`` and ``developer`` messages → the top-level ``system`` string (joined by blank lines);
* consecutive messages of the same role are merged into one message of content blocks
  (Anthropic requires alternating roles); a ``tool`` message becomes a ``tool_result`` block in a
  user message, an assistant's ``tool_calls`` become ``tool_use`` blocks;
* image parts → ``image`` blocks (``data:`` URLs → a base64 source, http(s) URLs → a url source);
* ``max_tokens`` is always sent (the transport's ``default_max_tokens`` when the caller gives
  none);
* ``tools`` → ``{name, description, input_schema}``; ``tool_choice`` ``auto``/``required``/
  ``none``/a named function → ``auto``/``any``/``none``/``tool``;
* ``stop`` → ``stop_sequences``; ``temperature`` (Anthropic allows 0–1), ``top_p`` and
  ``metadata.user_id`` pass through; ``seed`` and the penalties have no Anthropic equivalent and
  are not sent; ``extra_body`` is merged last (``top_k``, ``thinking``, ``cache_control``...);
* ``response_format`` → one extra tool whose input schema is the requested schema, forced with
  ``tool_choice``.

An assistant message with parts is sent back block for block (signed thinking, cited text,
provider-run tools and their results); reasoning without a signature is left out.
"""

from __future__ import annotations

from typing import Any

from ....errors import InvalidRequestError
from ....structured import output_schema
from ....types import (
    ChatRequest,
    Citation,
    ImagePart,
    Message,
    ProviderBlockPart,
    ReasoningPart,
    ServerToolCallPart,
    ServerToolResultPart,
    TextPart,
)
from .._shared import (
    DATA_URL,
    OUTPUT_TOOL_DESCRIPTION,
    Turn,
    call_arguments,
    check_output_tool,
    check_tool_name,
    merge_turns,
    tool_choice,
)

__all__ = ["messages_body"]

_LABEL = "Anthropic"


def _image_block(part: ImagePart, where: str, provider: str) -> dict[str, Any]:
    url = part.image_url.url
    match = DATA_URL.match(url)
    if match:
        return {"type": "image", "source": {"type": "base64", "media_type": match["media"],
                                            "data": match["data"]}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequestError(
        "Anthropic takes images as base64 data: URLs or http(s) URLs", field=where,
        provider=provider)


def _citation_payload(citation: Citation) -> dict[str, Any]:
    out: dict[str, Any] = {"type": citation.type}
    for key in ("cited_text", "url", "title"):
        value = getattr(citation, key)
        if value is not None:
            out[key] = value
    out.update(citation.extras)
    return out


def _part_block(part: Any, where: str, assistant: bool, provider: str) -> dict[str, Any] | None:
    """The Anthropic block of one content part (``None`` for a part Anthropic cannot take)."""
    if isinstance(part, TextPart):
        if not part.text.strip():
            return None
        block: dict[str, Any] = {"type": "text", "text": part.text}
        if part.citations and assistant:
            block["citations"] = [_citation_payload(c) for c in part.citations]
        return block
    if isinstance(part, ImagePart):
        return _image_block(part, where, provider)
    if not assistant:
        return None
    if isinstance(part, ReasoningPart):
        if part.encrypted is not None and not part.text:
            return {"type": "redacted_thinking", "data": part.encrypted}
        if part.signature:
            return {"type": "thinking", "thinking": part.text, "signature": part.signature}
        return None  # reasoning without Anthropic's signature cannot be sent back
    if isinstance(part, ServerToolCallPart):
        return {**part.extras, "type": part.kind, "id": part.id, "name": part.name,
                "input": part.input}
    if isinstance(part, ServerToolResultPart):
        return {**part.extras, "type": part.kind, "tool_use_id": part.tool_call_id,
                "content": part.content}
    if isinstance(part, ProviderBlockPart) and part.provider == "anthropic":
        return dict(part.block)
    return None


def _content_blocks(content: Any, where: str, provider: str,
                    assistant: bool = False) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content or ()):
        block = _part_block(part, f"{where}[{index}]", assistant, provider)
        if block is not None:
            blocks.append(block)
    return blocks


def _turn_payload(turn: Turn) -> dict[str, Any]:
    if turn.plain and len(turn.blocks) == 1 and turn.blocks[0]["type"] == "text":
        return {"role": turn.role, "content": turn.blocks[0]["text"]}
    return {"role": turn.role, "content": turn.blocks}


def _blocks(message: Message, where: str,
            provider: str) -> tuple[str, list[dict[str, Any]], bool]:
    if message.role == "tool":
        content: Any = message.content if isinstance(message.content, str) \
            else _content_blocks(message.content, f"{where}.content", provider)
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        if content:
            block["content"] = content
        return "user", [block], False
    blocks = _content_blocks(message.content, f"{where}.content", provider,
                             assistant=message.role == "assistant")
    if message.role == "user":
        return "user", blocks, isinstance(message.content, str)
    # A reply whose thinking came between its tool calls keeps their places in its parts;
    # the calls themselves (name, arguments) always come from tool_calls.
    placed = {b.get("id"): b for b in blocks if b.get("type") == "tool_use"}
    calls = {call.id for call in message.tool_calls or ()}
    blocks = [b for b in blocks if b.get("type") != "tool_use" or b.get("id") in calls]
    for j, call in enumerate(message.tool_calls or ()):
        arguments = call_arguments(call, f"{where}.tool_calls[{j}].function.arguments",
                                   label=_LABEL, provider=provider)
        block = {"type": "tool_use", "id": call.id, "name": call.function.name,
                 "input": arguments}
        if call.id in placed:
            placed[call.id].clear()
            placed[call.id].update(block)
        else:
            blocks.append(block)
    return "assistant", blocks, isinstance(message.content, str) and not message.tool_calls


def _messages(request: ChatRequest, provider: str) -> tuple[str, list[dict[str, Any]]]:
    system, turns = merge_turns(
        request, label=_LABEL, provider=provider, system_name="system prompt",
        convert=lambda message, where: _blocks(message, where, provider),
        keep_system=str.strip)
    return "\n\n".join(system), [_turn_payload(turn) for turn in turns]


def _tool_choice(choice: Any, has_tools: bool, provider: str) -> dict[str, Any] | None:
    wanted = tool_choice(choice, has_tools, provider=provider,
                         native=("auto", "any", "none", "tool"))
    if wanted is None:
        return None
    kind, value = wanted
    if kind == "required":
        return {"type": "any"}
    if kind == "function":
        return {"type": "tool", "name": value}
    if kind == "native":
        return dict(value)  # already in Anthropic's shape
    return {"type": kind}


def _tools(request: ChatRequest,
           provider: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(request.tools or ()):
        fn = tool.function
        check_tool_name(fn.name, index, label=_LABEL, provider=provider)
        entry: dict[str, Any] = {"name": fn.name}
        if fn.description:
            entry["description"] = fn.description
        entry["input_schema"] = fn.parameters
        tools.append(entry)
    choice = _tool_choice(request.tool_choice, bool(tools), provider)
    spec = output_schema(request.response_format)
    if spec is None:
        return tools, choice
    check_output_tool(spec, request.tool_choice, (t["name"] for t in tools), label=_LABEL,
                      provider=provider)
    output: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description or OUTPUT_TOOL_DESCRIPTION,
        "input_schema": spec.tool_input_schema(),
    }
    return [*tools, output], {"type": "tool", "name": spec.name}


def messages_body(request: ChatRequest, *, stream: bool, default_max_tokens: int,
                  provider: str) -> dict[str, Any]:
    """The Messages API body for ``request`` (raises :class:`InvalidRequestError` for input
    Anthropic cannot take, before anything is sent)."""
    for name in ("n", "logprobs", "top_logprobs"):
        value = getattr(request, name)
        if value is not None and not (name == "n" and value == 1) and value is not False:
            raise InvalidRequestError(f"Anthropic does not support {name}", field=name,
                                      provider=provider)
    system, messages = _messages(request, provider)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or default_max_tokens,
        "messages": messages,
    }
    if system:
        body["system"] = system
    if request.temperature is not None:
        if request.temperature > 1.0:
            raise InvalidRequestError(
                f"Anthropic takes temperature between 0 and 1, got {request.temperature}",
                field="temperature", provider=provider)
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.metadata.user_id:
        body["metadata"] = {"user_id": request.metadata.user_id}
    tools, choice = _tools(request, provider)
    if tools:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice
    if stream:
        body["stream"] = True
    if request.extra_body:
        body.update(request.extra_body)
    return body
