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
Streams follow the whole event sequence; ``ping`` and unknown events are ignored, an ``error``
event raises the typed error (``overloaded_error`` → :class:`~llm_async.errors.OverloadedError`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from ... import _json
from ...errors import InvalidRequestError, LLMError, ProtocolError, error_from_response
from ...structured import OutputSchema, output_schema
from ...types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FinishReason,
    FunctionCall,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
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


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content or ()):
        if isinstance(part, TextPart):
            if part.text.strip():
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part, f"{where}[{index}]"))
    return blocks


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

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
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
        blocks = _content_blocks(message.content, f"{where}.content")
        if message.role == "user":
            return "user", blocks, isinstance(message.content, str)
        for j, call in enumerate(message.tool_calls or ()):
            try:
                arguments = _json.loads(call.function.arguments or "{}")
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                raise InvalidRequestError(
                    "tool call arguments must be a JSON object for Anthropic",
                    field=f"{where}.tool_calls[{j}].function.arguments", provider=self.provider)
            blocks.append({"type": "tool_use", "id": call.id, "name": call.function.name,
                           "input": arguments})
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
            raise self.stream_error(data.get("error"), request)
        content = data.get("content")
        if not isinstance(content, list):
            raise ProtocolError("response has no content list", provider=self.provider)
        spec = output_schema(request.response_format)
        texts: list[str] = []
        calls: list[ToolCall] = []
        structured: str | None = None
        for block in content:
            if not isinstance(block, Mapping):
                raise ProtocolError("content block is not an object", provider=self.provider)
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind == "tool_use":
                try:
                    name = str(block["name"])
                    arguments = _json.dumps(block.get("input") or {}).decode()
                except (KeyError, TypeError) as exc:
                    raise ProtocolError(f"malformed tool_use block: {block!r:.100}",
                                        provider=self.provider) from exc
                if spec is not None and name == spec.name:
                    structured = _unwrap(spec, block.get("input"), arguments)
                else:
                    calls.append(ToolCall.model_construct(
                        id=str(block.get("id") or ""), type="function",
                        function=FunctionCall.model_construct(name=name, arguments=arguments)))
        reason = stop_reason(data.get("stop_reason"))
        if structured is not None:
            text: str | None = structured
            if not calls and reason == "tool_calls":
                reason = "stop"
        else:
            joined = "".join(texts)
            text = joined if (joined or not calls) else None
        return ChatResponse.model_construct(
            id=str(data.get("id") or ""),
            model=str(data.get("model") or request.model),
            content=text,
            tool_calls=calls,
            finish_reason=reason,
            usage=anthropic_usage(data.get("usage")) or Usage(),
            raw=data,
        )

    def stream_error(self, error: Any, request: ChatRequest | None = None) -> LLMError:
        """The typed error for an Anthropic error object received with HTTP 200 (an ``error``
        event in a stream): its ``type`` picks the status (``overloaded_error`` → 529)."""
        etype = error.get("type") if isinstance(error, Mapping) else None
        status = ERROR_STATUS.get(str(etype), 500)
        headers = request.context.response_headers if request is not None else None
        return error_from_response(status, {"type": "error", "error": error}, headers=headers,
                                   provider=self.provider,
                                   request_id=self._request_id(headers) if headers else None)

    def stream_parser(self, request: ChatRequest) -> _AnthropicStreamParser:
        return _AnthropicStreamParser(self, request)


def _unwrap(spec: OutputSchema, value: Any, text: str) -> str:
    """The structured answer's JSON text, unwrapping the ``value`` envelope of non-object
    schemas."""
    if spec.is_object:
        return text
    if isinstance(value, Mapping) and "value" in value:
        return _json.dumps(value["value"]).decode()
    return text


class _AnthropicStreamParser:
    """Messages-API stream events → :class:`ChatChunk`.

    Text deltas become text chunks, a ``tool_use`` block becomes a tool-call fragment with its id
    and name followed by its ``input_json_delta`` pieces, and ``message_stop`` yields the final
    chunk with the finish reason and the usage of ``message_start`` and ``message_delta``
    combined. The forced structured-output tool streams as text (its JSON), or — when the schema
    had to be wrapped in an object — arrives as one text chunk when its block ends.
    """

    __slots__ = ("_buffer", "_kinds", "_spec", "_stop", "_tools", "_usage", "done", "id", "model",
                 "request", "transport")

    def __init__(self, transport: AnthropicTransport, request: ChatRequest) -> None:
        self.transport = transport
        self.request = request
        self.done = False
        self.id: str | None = None
        self.model: str | None = None
        self._spec = output_schema(request.response_format)
        self._usage: dict[str, int] = {}
        self._stop: str | None = None
        self._kinds: dict[int, str] = {}  # block index -> text | tool | output | wrapped | other
        self._tools: dict[int, int] = {}  # block index -> our tool-call index
        self._buffer: list[str] = []

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

    def _message_start(self, obj: dict[str, Any]) -> list[ChatChunk]:
        message = obj.get("message") or {}
        if isinstance(message, Mapping):
            self.id = _opt_str(message.get("id")) or self.id
            self.model = _opt_str(message.get("model")) or self.model
            self._merge_usage(message.get("usage"))
        return []

    def _block_start(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("index") or 0)
        block = obj.get("content_block") or {}
        kind = block.get("type") if isinstance(block, Mapping) else None
        spec = self._spec
        if kind == "text":
            self._kinds[index] = "other" if spec is not None else "text"
            text = _text(block.get("text"))
            return [self._chunk(delta=text)] if text and spec is None else []
        if kind == "tool_use":
            name = str(block.get("name") or "")
            start = block.get("input")
            initial = _json.dumps(start).decode() if start else ""
            if spec is not None and name == spec.name:
                self._kinds[index] = "output" if spec.is_object else "wrapped"
                if initial:
                    return self._output(index, initial)
                return []
            self._kinds[index] = "tool"
            position = self._tools[index] = len(self._tools)
            return [self._chunk(tool_calls=[ToolCallDelta.model_construct(
                index=position, id=_opt_str(block.get("id")), name=name, arguments=initial)])]
        self._kinds[index] = "other"  # thinking, server tools, ...: not part of our model
        return []

    def _output(self, index: int, text: str) -> list[ChatChunk]:
        if self._kinds.get(index) == "wrapped":
            self._buffer.append(text)
            return []
        return [self._chunk(delta=text)]

    def _block_delta(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("index") or 0)
        delta = obj.get("delta") or {}
        if not isinstance(delta, Mapping):
            return []
        dtype = delta.get("type")
        kind = self._kinds.get(index, "text" if self._spec is None else "other")
        if dtype == "text_delta" and kind == "text":
            text = _text(delta.get("text"))
            return [self._chunk(delta=text)] if text else []
        if dtype == "input_json_delta":
            piece = _text(delta.get("partial_json"))
            if not piece:
                return []
            if kind == "tool":
                return [self._chunk(tool_calls=[ToolCallDelta.model_construct(
                    index=self._tools[index], id=None, name=None, arguments=piece)])]
            if kind in ("output", "wrapped"):
                return self._output(index, piece)
        return []  # thinking, signature and citation deltas are not part of our model

    def _block_stop(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("index") or 0)
        if self._kinds.get(index) != "wrapped" or self._spec is None:
            return []
        text = "".join(self._buffer)
        self._buffer.clear()
        try:
            value = _json.loads(text or "{}")
        except ValueError:
            return [self._chunk(delta=text)] if text else []
        return [self._chunk(delta=_unwrap(self._spec, value, text))]

    def _message_delta(self, obj: dict[str, Any]) -> list[ChatChunk]:
        delta = obj.get("delta") or {}
        if isinstance(delta, Mapping) and delta.get("stop_reason"):
            self._stop = str(delta["stop_reason"])
        self._merge_usage(obj.get("usage"))
        return []

    def _message_stop(self, obj: dict[str, Any]) -> list[ChatChunk]:
        self.done = True
        reason = stop_reason(self._stop) or "stop"
        if reason == "tool_calls" and not self._tools:
            reason = "stop"  # only the structured-output tool was called
        return [self._chunk(finish_reason=reason, usage=anthropic_usage(self._usage))]

    def _error(self, obj: dict[str, Any]) -> list[ChatChunk]:
        raise self.transport.stream_error(obj.get("error"), self.request)

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
