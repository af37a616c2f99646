"""Anthropic's Messages API over aiohttp: ``POST {base_url}/v1/messages``.

Request mapping (our :class:`~llm_async.types.ChatRequest` → Anthropic):

* ``system`` and ``developer`` messages → the top-level ``system`` string (joined by blank lines);
* consecutive messages of the same role are merged into one message of content blocks
  (Anthropic requires alternating roles); a ``tool`` message becomes a ``tool_result`` block in a
  user message, an assistant's ``tool_calls`` become ``tool_use`` blocks;
* image parts → ``image`` blocks (``data:`` URLs → a base64 source, http(s) URLs → a url source);
* ``max_tokens`` is always sent (``default_max_tokens``, 4096, when the caller gives none);
* ``tools`` → ``{name, description, input_schema}``; ``tool_choice`` ``auto``/``required``/
  ``none``/a named function → ``auto``/``any``/``none``/``tool``;
* ``stop`` → ``stop_sequences``; ``temperature`` (Anthropic allows 0–1), ``top_p`` and
  ``metadata.user_id`` pass through; ``seed`` and the penalties have no Anthropic equivalent and
  are not sent; ``extra_body`` is merged last (``top_k``, ``thinking``, ``cache_control``...);
* ``response_format`` → one extra tool whose input schema is the requested schema, forced with
  ``tool_choice``; its input comes back as the reply's text (see :mod:`llm_async.structured`).

Response mapping: text blocks → ``content``, ``tool_use`` blocks → ``tool_calls`` (input as JSON
text), ``stop_reason`` → our finish reasons, and usage with cache tokens
(``input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``).
Every other block is kept, in order, in ``response.parts``: ``thinking`` (with its signature)
and ``redacted_thinking`` as :class:`~llm_async.types.ReasoningPart`, text with its
``citations``, ``server_tool_use`` and the ``*_tool_result`` blocks of provider-run tools, and
any block of a kind without a type here as a :class:`~llm_async.types.ProviderBlockPart`. A
``refusal`` stop becomes ``response.refusal`` (with ``stop_details``' category and explanation).
``response.message`` holds all of it, and an assistant message with such parts is sent back
block for block: the next turn of a tool loop with extended thinking gets its signed thinking
blocks back, as Anthropic requires. Reasoning without a signature (from another provider) is
left out.

Streams follow the whole event sequence; ``ping`` and unknown events are ignored, an ``error``
event raises the typed error (``overloaded_error`` → :class:`~llm_async.errors.OverloadedError`).
Thinking streams as ``chunk.reasoning``; the blocks with their signatures arrive complete on
the final chunk (``chunk.parts``). A stream whose ``message_delta`` carried the stop reason is
complete even when the server closes before ``message_stop``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp

from ... import _json
from ...errors import InvalidRequestError, LLMError, ProtocolError, error_from_response
from ...structured import output_schema
from ...types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Citation,
    FinishReason,
    FunctionCall,
    ImagePart,
    Message,
    ProviderBlockPart,
    ReasoningPart,
    Refusal,
    ServerToolCallPart,
    ServerToolResultPart,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    mark_incomplete,
)
from ..sse import SSEEvent
from .base import HTTPTransport

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "AnthropicTransport",
    "anthropic_usage",
    "stop_reason",
]

#: The ``anthropic-version`` header sent with every request.
ANTHROPIC_VERSION = "2023-06-01"
#: ``max_tokens`` sent when the caller gives none (Anthropic requires the field).
DEFAULT_MAX_TOKENS = 4096

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

_DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)$",
                       re.DOTALL)
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _opt_str(value: Any) -> str | None:
    """A string field of a stream event, or None when it is missing or not a string."""
    return value if isinstance(value, str) else None


def _text(value: Any) -> str:
    """Streamed text; anything but a string (or nothing) is a malformed event."""
    if not value:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"streamed text is not a string: {value!r:.60}",
                            provider="anthropic")
    return value


def stop_reason(value: Any) -> FinishReason | None:
    """Our finish reason for an Anthropic ``stop_reason`` (unknown values count as ``stop``)."""
    if value is None:
        return None
    return _STOP.get(str(value), "stop")


def anthropic_usage(data: Any) -> Usage | None:
    """Our :class:`Usage` from an Anthropic ``usage`` object (``None`` when absent).

    Anthropic's ``input_tokens`` excludes cached tokens; ours counts every prompt token.
    """
    if not isinstance(data, Mapping):
        return None
    read = int(data.get("cache_read_input_tokens") or 0)
    write = int(data.get("cache_creation_input_tokens") or 0)
    return Usage.model_construct(
        input_tokens=int(data.get("input_tokens") or 0) + read + write,
        output_tokens=int(data.get("output_tokens") or 0),
        cache_read_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=0,
    )


def _image_block(part: ImagePart, where: str) -> dict[str, Any]:
    url = part.image_url.url
    match = _DATA_URL.match(url)
    if match:
        return {"type": "image", "source": {"type": "base64", "media_type": match["media"],
                                            "data": match["data"]}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequestError(
        "Anthropic takes images as base64 data: URLs or http(s) URLs", field=where,
        provider="anthropic")


def _citation_payload(citation: Citation) -> dict[str, Any]:
    out: dict[str, Any] = {"type": citation.type}
    for key in ("cited_text", "url", "title"):
        value = getattr(citation, key)
        if value is not None:
            out[key] = value
    out.update(citation.extras)
    return out


def parse_citation(raw: Mapping[str, Any]) -> Citation:
    """An Anthropic citation object as a :class:`Citation` (other fields kept in ``extras``)."""
    def text(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) else None

    return Citation(type=str(raw.get("type") or "citation"), url=text("url"), title=text("title"),
                    cited_text=text("cited_text"),
                    extras={k: v for k, v in raw.items()
                            if k not in ("type", "url", "title", "cited_text")})


def _part_block(part: Any, where: str, assistant: bool) -> dict[str, Any] | None:
    """The Anthropic block of one content part (``None`` for a part Anthropic cannot take)."""
    if isinstance(part, TextPart):
        if not part.text.strip():
            return None
        block: dict[str, Any] = {"type": "text", "text": part.text}
        if part.citations and assistant:
            block["citations"] = [_citation_payload(c) for c in part.citations]
        return block
    if isinstance(part, ImagePart):
        return _image_block(part, where)
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


def _content_blocks(content: Any, where: str, assistant: bool = False) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content or ()):
        block = _part_block(part, f"{where}[{index}]", assistant)
        if block is not None:
            blocks.append(block)
    return blocks


# Block types that hold a provider-run tool's result (``web_search_tool_result`` ...).
def _is_server_result(kind: str) -> bool:
    return kind.endswith("_tool_result") and kind != "tool_result"


def block_part(block: Mapping[str, Any]) -> Any:
    """Our part for an Anthropic content block other than ``text`` and ``tool_use``."""
    kind = str(block.get("type") or "")
    if kind == "thinking":
        signature = block.get("signature")
        return ReasoningPart.model_construct(
            text=str(block.get("thinking") or ""),
            signature=signature if isinstance(signature, str) and signature else None,
            encrypted=None, format=None)
    if kind == "redacted_thinking":
        return ReasoningPart.model_construct(text="", signature=None,
                                             encrypted=str(block.get("data") or ""), format=None)
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


def _with_interleaved_tools(parts: list[Any],
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


def _extras(obj: Mapping[str, Any], into: dict[str, Any]) -> None:
    for key, value in obj.items():
        if key not in _MESSAGE_FIELDS and value is not None:
            into[key] = value
    usage = obj.get("usage")
    if isinstance(usage, Mapping) and isinstance(usage.get("server_tool_use"), Mapping):
        into["server_tool_use"] = usage["server_tool_use"]


class _Turn:
    """One Anthropic message being assembled from one or more of ours."""

    __slots__ = ("blocks", "plain", "role")

    def __init__(self, role: str, blocks: list[dict[str, Any]], plain: bool) -> None:
        self.role = role
        self.blocks = blocks
        self.plain = plain

    def payload(self) -> dict[str, Any]:
        if self.plain and len(self.blocks) == 1 and self.blocks[0]["type"] == "text":
            return {"role": self.role, "content": self.blocks[0]["text"]}
        return {"role": self.role, "content": self.blocks}


class AnthropicTransport(HTTPTransport):
    """``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``.

    ``api_key`` defaults to ``ANTHROPIC_API_KEY`` and ``base_url`` to ``ANTHROPIC_BASE_URL``, then
    ``https://api.anthropic.com`` (a base URL that already ends in ``/v1`` is accepted too).
    ``default_max_tokens`` is sent when a request sets no ``max_tokens``. ``beta`` lists
    ``anthropic-beta`` feature flags.
    """

    provider: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    env_api_key: ClassVar[str] = "ANTHROPIC_API_KEY"
    env_base_url: ClassVar[str] = "ANTHROPIC_BASE_URL"
    request_id_headers: ClassVar[tuple[str, ...]] = ("request-id", "x-request-id")

    def __init__(self, api_key: str | aiohttp.ClientSession | None = None,
                 base_url: str | None = None, *,
                 default_max_tokens: int = DEFAULT_MAX_TOKENS,
                 anthropic_version: str = ANTHROPIC_VERSION,
                 beta: list[str] | tuple[str, ...] | None = None,
                 **kwargs: Any) -> None:
        if api_key is None:
            api_key = os.environ.get(self.env_api_key)
        if base_url is None:
            base_url = os.environ.get(self.env_base_url)
        super().__init__(api_key, base_url, **kwargs)
        if isinstance(default_max_tokens, bool) or not isinstance(default_max_tokens, int) \
                or default_max_tokens < 1:
            raise ValueError(f"default_max_tokens must be a positive integer, "
                             f"got {default_max_tokens!r}")
        self.default_max_tokens = default_max_tokens
        self.anthropic_version = anthropic_version
        self.beta = tuple(beta or ())
        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        self._url = f"{root}/v1/messages"

    # -- HTTP ---------------------------------------------------------------------------------

    def url(self, request: ChatRequest) -> str:
        return self._url

    def auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.anthropic_version}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        if self.beta:
            headers["anthropic-beta"] = ",".join(self.beta)
        return headers

    # -- request ------------------------------------------------------------------------------

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The Messages API body for ``request`` (raises :class:`InvalidRequestError` for input
        Anthropic cannot take, before anything is sent)."""
        for name in ("n", "logprobs", "top_logprobs"):
            value = getattr(request, name)
            if value is not None and not (name == "n" and value == 1) and value is not False:
                raise InvalidRequestError(f"Anthropic does not support {name}", field=name,
                                          provider=self.provider)
        system, messages = self._messages(request)
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or self.default_max_tokens,
            "messages": messages,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            if request.temperature > 1.0:
                raise InvalidRequestError(
                    f"Anthropic takes temperature between 0 and 1, got {request.temperature}",
                    field="temperature", provider=self.provider)
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.metadata.user_id:
            body["metadata"] = {"user_id": request.metadata.user_id}
        tools, choice = self._tools(request)
        if tools:
            body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = choice
        if stream:
            body["stream"] = True
        if request.extra_body:
            body.update(request.extra_body)
        return body

    def _messages(self, request: ChatRequest) -> tuple[str, list[dict[str, Any]]]:
        system: list[str] = []
        turns: list[_Turn] = []
        for index, message in enumerate(request.messages):
            where = f"messages[{index}]"
            if message.role in ("system", "developer"):
                if isinstance(message.content, list) and any(
                        isinstance(p, ImagePart) for p in message.content):
                    raise InvalidRequestError("Anthropic takes no images in the system prompt",
                                              field=f"{where}.content", provider=self.provider)
                if message.text.strip():
                    system.append(message.text)
                continue
            role, blocks, plain = self._blocks(message, where)
            if not blocks:
                raise InvalidRequestError(
                    f"Anthropic needs non-empty content in {message.role} messages",
                    field=f"{where}.content", provider=self.provider)
            if turns and turns[-1].role == role:
                turns[-1].blocks.extend(blocks)
                turns[-1].plain = False
            else:
                turns.append(_Turn(role, blocks, plain))
        if not turns:
            raise InvalidRequestError("Anthropic needs at least one user or assistant message",
                                      field="messages", provider=self.provider)
        return "\n\n".join(system), [turn.payload() for turn in turns]

    def _blocks(self, message: Message, where: str) -> tuple[str, list[dict[str, Any]], bool]:
        if message.role == "tool":
            content: Any = message.content if isinstance(message.content, str) \
                else _content_blocks(message.content, f"{where}.content")
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
            if content:
                block["content"] = content
            return "user", [block], False
        blocks = _content_blocks(message.content, f"{where}.content",
                                 assistant=message.role == "assistant")
        if message.role == "user":
            return "user", blocks, isinstance(message.content, str)
        # A reply whose thinking came between its tool calls keeps their places in its parts;
        # the calls themselves (name, arguments) always come from tool_calls.
        placed = {b.get("id"): b for b in blocks if b.get("type") == "tool_use"}
        calls = {call.id for call in message.tool_calls or ()}
        blocks = [b for b in blocks if b.get("type") != "tool_use" or b.get("id") in calls]
        for j, call in enumerate(message.tool_calls or ()):
            try:
                arguments = _json.loads(call.function.arguments or "{}")
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                raise InvalidRequestError(
                    "tool call arguments must be a JSON object for Anthropic",
                    field=f"{where}.tool_calls[{j}].function.arguments", provider=self.provider)
            block = {"type": "tool_use", "id": call.id, "name": call.function.name,
                     "input": arguments}
            if call.id in placed:
                placed[call.id].clear()
                placed[call.id].update(block)
            else:
                blocks.append(block)
        return "assistant", blocks, isinstance(message.content, str) and not message.tool_calls

    def _tools(self, request: ChatRequest) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        tools: list[dict[str, Any]] = []
        for index, tool in enumerate(request.tools or ()):
            fn = tool.function
            if not _TOOL_NAME.match(fn.name):
                raise InvalidRequestError(
                    f"Anthropic tool names must match ^[a-zA-Z0-9_-]{{1,64}}$, got {fn.name!r}",
                    field=f"tools[{index}].function.name", provider=self.provider)
            entry: dict[str, Any] = {"name": fn.name}
            if fn.description:
                entry["description"] = fn.description
            entry["input_schema"] = fn.parameters
            tools.append(entry)
        choice = self._tool_choice(request.tool_choice, bool(tools))
        spec = output_schema(request.response_format)
        if spec is None:
            return tools, choice
        if request.tool_choice not in (None, "auto"):
            raise InvalidRequestError(
                "response_format is served on Anthropic by forcing a tool call, so it cannot be "
                "combined with tool_choice", field="tool_choice", provider=self.provider)
        if any(t["name"] == spec.name for t in tools):
            raise InvalidRequestError(
                f"a tool is named {spec.name!r} like the response_format schema; rename one",
                field="tools", provider=self.provider)
        output: dict[str, Any] = {
            "name": spec.name,
            "description": spec.description or "Give the final answer as this tool's input.",
            "input_schema": spec.tool_input_schema(),
        }
        return [*tools, output], {"type": "tool", "name": spec.name}

    def _tool_choice(self, choice: Any, has_tools: bool) -> dict[str, Any] | None:
        if choice is None:
            return None
        if choice in ("auto", "none"):
            return {"type": choice} if has_tools else None
        if not has_tools:
            raise InvalidRequestError("tool_choice needs tools", field="tool_choice",
                                      provider=self.provider)
        if choice == "required":
            return {"type": "any"}
        if isinstance(choice, Mapping):
            kind = choice.get("type")
            if kind == "function":
                fn = choice.get("function")
                name = fn.get("name") if isinstance(fn, Mapping) else None
                if isinstance(name, str) and name:
                    return {"type": "tool", "name": name}
            elif kind in ("auto", "any", "none", "tool"):
                return dict(choice)  # already in Anthropic's shape
        raise InvalidRequestError(f"unsupported tool_choice {choice!r}", field="tool_choice",
                                  provider=self.provider)

    # -- response -----------------------------------------------------------------------------

    def parse_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        if not isinstance(data, Mapping):
            raise ProtocolError("response is not a JSON object", provider=self.provider)
        if data.get("type") == "error":
            raise self.stream_error(data.get("error"))
        content = data.get("content")
        if not isinstance(content, list):
            raise ProtocolError("response has no content list", provider=self.provider)
        spec = output_schema(request.response_format)
        texts: list[str] = []
        calls: list[ToolCall] = []
        parts: list[Any] = []
        rich = False  # whether there is more than text and tool calls
        structured: str | None = None
        tool_uses: list[tuple[int, dict[str, Any]]] = []  # (position in parts, block)
        for block in content:
            if not isinstance(block, Mapping):
                raise ProtocolError("content block is not an object", provider=self.provider)
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
                                        provider=self.provider) from exc
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
        parts = _with_interleaved_tools(parts, tool_uses)
        raw_reason = data.get("stop_reason")
        reason = stop_reason(raw_reason)
        if structured is not None:
            text_out: str | None = structured
            if not calls and reason == "tool_calls":
                reason = "stop"
            parts = [p for p in parts if not isinstance(p, TextPart)]
        else:
            joined = "".join(texts)
            text_out = joined if (joined or not calls) else None
        extras: dict[str, Any] = {}
        _extras(data, extras)
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

    def stream_error(self, error: Any, headers: Mapping[str, str] | None = None) -> LLMError:
        """The typed error for an Anthropic error object received with HTTP 200 (an ``error``
        event in a stream): its ``type`` picks the status (``overloaded_error`` → 529)."""
        etype = error.get("type") if isinstance(error, Mapping) else None
        status = ERROR_STATUS.get(str(etype), 500)
        return error_from_response(status, {"type": "error", "error": error}, headers=headers,
                                   provider=self.provider,
                                   request_id=self._request_id(headers) if headers else None)

    def stream_parser(self, request: ChatRequest) -> _AnthropicStreamParser:
        return _AnthropicStreamParser(self, request)


class _Block:
    """What the stream parser knows of one content block."""

    __slots__ = ("citations", "data", "json", "kind", "signature", "text", "tool")

    def __init__(self, kind: str, data: dict[str, Any] | None = None) -> None:
        self.kind = kind  # text | thinking | tool | output | wrapped | skip | block
        self.data = data or {}
        self.text: list[str] = []
        self.json: list[str] = []
        self.citations: list[Citation] = []
        self.signature: str | None = None
        self.tool = 0


class _AnthropicStreamParser:
    """Messages-API stream events → :class:`ChatChunk`.

    Text deltas become text chunks, thinking deltas reasoning chunks, citation deltas chunks
    with ``citations``, a ``tool_use`` block becomes a tool-call fragment with its id and name
    followed by its ``input_json_delta`` pieces, and ``message_stop`` yields the final chunk
    with the finish reason, the usage of ``message_start`` and ``message_delta`` combined, the
    refusal, and — when the reply had more than text and tool calls — every block in order
    (``parts``: signed thinking, cited text, provider-run tools and their results). The forced
    structured-output tool streams as text (its JSON), or — when the schema had to be wrapped
    in an object — arrives as one text chunk when its block ends.
    """

    __slots__ = ("_blocks", "_details", "_extras", "_spec", "_stop", "_tools", "_usage", "done",
                 "id", "model", "request", "transport")

    def __init__(self, transport: AnthropicTransport, request: ChatRequest) -> None:
        self.transport = transport
        self.request = request
        self.done = False
        self.id: str | None = None
        self.model: str | None = None
        self._spec = output_schema(request.response_format)
        self._usage: dict[str, int] = {}
        self._stop: str | None = None
        self._details: Any = None
        self._extras: dict[str, Any] = {}
        self._blocks: dict[int, _Block] = {}
        self._tools = 0

    def _chunk(self, **fields: Any) -> ChatChunk:
        values: dict[str, Any] = {"delta": "", "tool_calls": [], "finish_reason": None,
                                  "usage": None, "id": self.id, "model": self.model,
                                  "provider_cost": None}
        values.update(fields)
        return ChatChunk.model_construct(**values)

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        if event.event == "ping":
            return []
        try:
            obj = _json.loads(event.data)
        except ValueError as exc:
            raise ProtocolError(f"malformed stream event: {event.data[:80]!r}",
                                provider=self.transport.provider) from exc
        if not isinstance(obj, dict):
            raise ProtocolError("stream event is not a JSON object",
                                provider=self.transport.provider)
        kind = obj.get("type") or event.event
        handler = _HANDLERS.get(str(kind))
        return handler(self, obj) if handler is not None else []  # unknown events: ignored

    def end(self) -> list[ChatChunk] | None:
        """The final chunk when the body ended after the stop reason but before
        ``message_stop``; ``None`` when the stream was cut earlier."""
        if self._stop is None:
            return None
        return self._message_stop({})

    def _message_start(self, obj: dict[str, Any]) -> list[ChatChunk]:
        message = obj.get("message") or {}
        if isinstance(message, Mapping):
            self.id = _opt_str(message.get("id")) or self.id
            self.model = _opt_str(message.get("model")) or self.model
            self._merge_usage(message.get("usage"))
            _extras(message, self._extras)
        return []

    def _block_start(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("index") or 0)
        block = obj.get("content_block") or {}
        if not isinstance(block, Mapping):
            raise ProtocolError(f"malformed content block: {block!r:.80}",
                                provider=self.transport.provider)
        kind = block.get("type")
        spec = self._spec
        if kind == "text":
            state = self._blocks[index] = _Block("skip" if spec is not None else "text")
            text = _text(block.get("text"))
            if text and spec is None:
                state.text.append(text)
                return [self._chunk(delta=text)]
            return []
        if kind == "tool_use":
            name = str(block.get("name") or "")
            start = block.get("input")
            initial = _json.dumps(start).decode() if start else ""
            if spec is not None and name == spec.name:
                state = self._blocks[index] = _Block("output" if spec.is_object else "wrapped")
                return self._output(state, initial) if initial else []
            state = self._blocks[index] = _Block(
                "tool", {"type": "tool_use", "id": block.get("id"), "name": name})
            if initial:
                state.json.append(initial)
            state.tool = self._tools
            self._tools += 1
            return [self._chunk(tool_calls=[ToolCallDelta.model_construct(
                index=state.tool, id=_opt_str(block.get("id")), name=name,
                arguments=initial)])]
        if kind == "thinking":
            state = self._blocks[index] = _Block("thinking")
            text = _text(block.get("thinking"))
            state.signature = _opt_str(block.get("signature")) or None
            if text:
                state.text.append(text)
                return [self._chunk(reasoning=text)]
            return []
        # redacted thinking, provider-run tools and their results, blocks of other kinds:
        # kept whole (their deltas, if any, are merged in) and sent on the final chunk.
        self._blocks[index] = _Block("block", dict(block))
        return []

    def _output(self, state: _Block, text: str) -> list[ChatChunk]:
        if state.kind == "wrapped":
            state.json.append(text)
            return []
        return [self._chunk(delta=text)]

    def _block_delta(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("index") or 0)
        delta = obj.get("delta") or {}
        if not isinstance(delta, Mapping):
            return []
        state = self._blocks.get(index)
        if state is None:  # a delta without its block start: treat it as text
            state = self._blocks[index] = _Block("text" if self._spec is None else "skip")
        dtype = delta.get("type")
        kind = state.kind
        if dtype == "text_delta":
            text = _text(delta.get("text"))
            if kind == "text" and text:
                state.text.append(text)
                return [self._chunk(delta=text)]
            return []
        if dtype == "thinking_delta":
            text = _text(delta.get("thinking"))
            if text:
                state.text.append(text)
                return [self._chunk(reasoning=text)]
            return []
        if dtype == "signature_delta":
            state.signature = (state.signature or "") + _text(delta.get("signature"))
            return []
        if dtype == "citations_delta":
            raw = delta.get("citation")
            if isinstance(raw, Mapping):
                citation = parse_citation(raw)
                state.citations.append(citation)
                return [self._chunk(citations=[citation])]
            return []
        if dtype == "input_json_delta":
            piece = _text(delta.get("partial_json"))
            if not piece:
                return []
            if kind == "tool":
                state.json.append(piece)
                return [self._chunk(tool_calls=[ToolCallDelta.model_construct(
                    index=state.tool, id=None, name=None, arguments=piece)])]
            if kind in ("output", "wrapped"):
                return self._output(state, piece)
            state.json.append(piece)
            return []
        if kind == "block":  # another kind's delta: its string fields extend the block's
            for key, value in delta.items():
                if key != "type" and isinstance(value, str):
                    previous = state.data.get(key)
                    state.data[key] = (previous if isinstance(previous, str) else "") + value
        return []

    def _block_stop(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("index") or 0)
        state = self._blocks.get(index)
        if state is None or state.kind != "wrapped" or self._spec is None:
            return []
        text = "".join(state.json)
        state.json.clear()
        try:
            value = _json.loads(text or "{}")
        except ValueError:
            return [self._chunk(delta=text)] if text else []
        return [self._chunk(delta=self._spec.tool_output_text(value, text))]

    def _message_delta(self, obj: dict[str, Any]) -> list[ChatChunk]:
        delta = obj.get("delta") or {}
        if isinstance(delta, Mapping):
            if delta.get("stop_reason"):
                self._stop = str(delta["stop_reason"])
            if delta.get("stop_details") is not None:
                self._details = delta["stop_details"]
            for key, value in delta.items():
                if key != "stop_reason" and value is not None:
                    self._extras[key] = value
        self._merge_usage(obj.get("usage"))
        usage = obj.get("usage")
        if isinstance(usage, Mapping) and isinstance(usage.get("server_tool_use"), Mapping):
            self._extras["server_tool_use"] = usage["server_tool_use"]
        return []

    def _parts(self) -> list[Any] | None:
        """Every block in order, when the reply had more than text and tool calls."""
        blocks = [state for _, state in sorted(self._blocks.items())]
        if not any(b.kind in ("thinking", "block") or b.citations for b in blocks):
            return None
        parts: list[Any] = []
        tool_uses: list[tuple[int, dict[str, Any]]] = []
        for state in blocks:
            if state.kind == "tool":
                arguments: Any = {}
                with contextlib.suppress(ValueError):
                    arguments = _json.loads("".join(state.json) or "{}")
                tool_uses.append((len(parts), {**state.data, "input": arguments}))
            elif state.kind == "text":
                parts.append(TextPart(text="".join(state.text),
                                      citations=state.citations or None))
            elif state.kind == "thinking":
                parts.append(ReasoningPart.model_construct(
                    text="".join(state.text), signature=state.signature or None,
                    encrypted=None, format=None))
            elif state.kind == "block":
                data = state.data
                if state.json:
                    with contextlib.suppress(ValueError):
                        data = {**data, "input": _json.loads("".join(state.json))}
                parts.append(block_part(data))
        return _with_interleaved_tools(parts, tool_uses)

    def _message_stop(self, obj: dict[str, Any]) -> list[ChatChunk]:
        self.done = True
        reason = stop_reason(self._stop) or "stop"
        if reason == "tool_calls" and not self._tools:
            reason = "stop"  # only the structured-output tool was called
        chunk = self._chunk(finish_reason=reason, usage=anthropic_usage(self._usage))
        chunk.parts = self._parts()
        chunk.refusal_details = stop_refusal(self._stop, self._details)
        chunk.extras = self._extras or None
        return [chunk]

    def _error(self, obj: dict[str, Any]) -> list[ChatChunk]:
        raise self.transport.stream_error(obj.get("error"))

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, Mapping):
            for key, value in usage.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    self._usage[key] = value


_HANDLERS: Mapping[str, Any] = {
    "message_start": _AnthropicStreamParser._message_start,
    "content_block_start": _AnthropicStreamParser._block_start,
    "content_block_delta": _AnthropicStreamParser._block_delta,
    "content_block_stop": _AnthropicStreamParser._block_stop,
    "message_delta": _AnthropicStreamParser._message_delta,
    "message_stop": _AnthropicStreamParser._message_stop,
    "error": _AnthropicStreamParser._error,
}
