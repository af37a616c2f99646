"""OpenAI Chat Completions over aiohttp; also any OpenAI-compatible server through ``base_url``
(vLLM, Ollama, llama.cpp's server, a LiteLLM proxy, the embedded mock server)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel

from ... import _json
from ...errors import ProtocolError, error_from_response
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

__all__ = ["OpenAITransport", "openai_usage", "response_format_payload"]

_FINISH: Mapping[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "end_turn": "stop",
    "eos": "stop",
    "max_tokens": "length",
}

# Models that reject the legacy ``max_tokens`` and need ``max_completion_tokens``.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def finish_reason(value: Any) -> FinishReason | None:
    if value is None:
        return None
    return _FINISH.get(str(value), "stop")


def openai_usage(data: Any) -> Usage | None:
    """Our :class:`Usage` from an OpenAI-shaped ``usage`` object (``None`` when absent)."""
    if not isinstance(data, Mapping):
        return None
    prompt = data.get("prompt_tokens_details") or {}
    completion = data.get("completion_tokens_details") or {}
    return Usage.model_construct(
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
        cache_read_tokens=int(prompt.get("cached_tokens") or 0),
        cache_write_tokens=int(prompt.get("cache_write_tokens") or 0),
        reasoning_tokens=int(completion.get("reasoning_tokens") or 0),
    )


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
    out: dict[str, Any] = {"role": message.role}
    content = message.content
    if content is None or isinstance(content, str):
        out["content"] = content
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


class OpenAITransport(HTTPTransport):
    """``POST {base_url}/chat/completions`` with a bearer key.

    ``max_tokens_field`` chooses between ``max_tokens`` and ``max_completion_tokens``; by default
    reasoning models (o1/o3/o4/gpt-5) get the latter and everything else the former, which every
    OpenAI-compatible server understands. Every stream asks for ``stream_options.include_usage``.
    """

    provider: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    env_api_key: ClassVar[str] = "OPENAI_API_KEY"
    env_base_url: ClassVar[str] = "OPENAI_BASE_URL"

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 max_tokens_field: str | None = None, organization: str | None = None,
                 **kwargs: Any) -> None:
        if api_key is None:
            api_key = os.environ.get(self.env_api_key)
        if base_url is None:
            base_url = os.environ.get(self.env_base_url)
        super().__init__(api_key, base_url, **kwargs)
        self.max_tokens_field = max_tokens_field
        self.organization = organization
        self._url = f"{self.base_url}/chat/completions"

    def url(self, request: ChatRequest) -> str:
        return self._url

    def auth_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        return headers

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [message_payload(m) for m in request.messages],
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.max_tokens is not None:
            field = self.max_tokens_field or (
                "max_completion_tokens" if request.model.startswith(_REASONING_PREFIXES)
                else "max_tokens"
            )
            body[field] = request.max_tokens
        if request.stop:
            body["stop"] = request.stop
        if request.seed is not None:
            body["seed"] = request.seed
        if request.presence_penalty is not None:
            body["presence_penalty"] = request.presence_penalty
        if request.frequency_penalty is not None:
            body["frequency_penalty"] = request.frequency_penalty
        if request.tools:
            body["tools"] = [t.model_dump(exclude_none=True) for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        fmt = response_format_payload(request.response_format)
        if fmt is not None:
            body["response_format"] = fmt
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.extra_body:
            body.update(request.extra_body)
        return body

    def parse_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        if not isinstance(data, Mapping):
            raise ProtocolError("response is not a JSON object", provider=self.provider)
        if "error" in data and not data.get("choices"):
            raise self.in_stream_error(data["error"])
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise ProtocolError("response has no choices", provider=self.provider)
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, Mapping):
            raise ProtocolError("response choice has no message", provider=self.provider)
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise ProtocolError("message content is not text", provider=self.provider)
        tool_calls: list[ToolCall] = []
        for raw in message.get("tool_calls") or ():
            try:
                fn = raw["function"]
                tool_calls.append(ToolCall.model_construct(
                    id=str(raw.get("id") or ""), type="function",
                    function=FunctionCall.model_construct(
                        name=str(fn["name"]), arguments=str(fn.get("arguments") or "")),
                ))
            except (KeyError, TypeError) as exc:
                raise ProtocolError(f"malformed tool call: {raw!r:.100}",
                                    provider=self.provider) from exc
        return ChatResponse.model_construct(
            id=str(data.get("id") or ""),
            model=str(data.get("model") or request.model),
            content=content,
            tool_calls=tool_calls,
            finish_reason=finish_reason(choice.get("finish_reason")),
            usage=openai_usage(data.get("usage")) or Usage(),
            raw=data,
        )

    def in_stream_error(self, error: Any) -> Exception:
        """A typed error from an error object sent with HTTP 200 (in a body or an SSE event)."""
        code = error.get("code") if isinstance(error, Mapping) else None
        status = code if isinstance(code, int) and 400 <= code < 600 else 500
        return error_from_response(status, {"error": error}, provider=self.provider)

    def stream_parser(self, request: ChatRequest) -> _OpenAIStreamParser:
        return _OpenAIStreamParser(self)


class _OpenAIStreamParser:
    """Chat-completion chunks → :class:`ChatChunk` (role-only chunks are dropped)."""

    __slots__ = ("done", "transport")

    def __init__(self, transport: OpenAITransport) -> None:
        self.transport = transport
        self.done = False

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        data = event.data
        if data == b"[DONE]":
            self.done = True
            return []
        try:
            obj = _json.loads(data)
        except ValueError as exc:
            raise ProtocolError(f"malformed stream event: {data[:80]!r}",
                                provider=self.transport.provider) from exc
        if not isinstance(obj, dict):
            raise ProtocolError("stream event is not a JSON object",
                                provider=self.transport.provider)
        if "error" in obj:
            raise self.transport.in_stream_error(obj["error"])
        return self.chunks(obj)

    def chunks(self, obj: dict[str, Any]) -> list[ChatChunk]:
        # The hot path of every stream: dict checks before the (slow) Mapping ABC check.
        raw_usage = obj.get("usage")
        usage = openai_usage(raw_usage) if raw_usage is not None else None
        choices = obj.get("choices") or ()
        chunk_id = obj.get("id")
        model = obj.get("model")
        if (not isinstance(choices, (list, tuple))
                or (chunk_id is not None and not isinstance(chunk_id, str))
                or (model is not None and not isinstance(model, str))):
            raise ProtocolError(f"malformed stream chunk: {obj!r:.100}",
                                provider=self.transport.provider)
        out: list[ChatChunk] = []
        for choice in choices:
            if not isinstance(choice, dict) and not isinstance(choice, Mapping):
                continue
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta:
                if not isinstance(delta, dict) and not isinstance(delta, Mapping):
                    raise ProtocolError(f"malformed stream delta: {delta!r:.100}",
                                        provider=self.transport.provider)
                text = delta.get("content") or ""
                if not isinstance(text, str):
                    raise ProtocolError(f"stream delta content is not text: {text!r:.100}",
                                        provider=self.transport.provider)
                raw_calls = delta.get("tool_calls")
                calls = self.tool_call_deltas(raw_calls) if raw_calls else []
            else:
                text = ""
                calls = []
            reason = choice.get("finish_reason")
            if reason is not None:
                reason = finish_reason(reason)
            if text or calls or reason is not None:
                out.append(ChatChunk.construct_fast(text, calls, reason, None, chunk_id, model))
        if usage is not None:
            out.append(ChatChunk.construct_fast("", [], None, usage, chunk_id, model))
        return out

    def tool_call_deltas(self, raw_calls: Any) -> list[ToolCallDelta]:
        """Streamed tool-call fragments; a malformed one is a :class:`ProtocolError`."""
        calls: list[ToolCallDelta] = []
        try:
            for raw in raw_calls:
                fn = raw.get("function") or {}
                index = int(raw.get("index") or 0)
                call_id, name = raw.get("id"), fn.get("name")
                arguments = fn.get("arguments") or ""
                if not isinstance(arguments, str) or not _optional_str(call_id, name):
                    raise TypeError("wrong field types")
                calls.append(ToolCallDelta.model_construct(
                    index=index, id=call_id, name=name, arguments=arguments))
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"malformed streamed tool call: {raw_calls!r:.100}",
                                provider=self.transport.provider) from exc
        return calls


def _optional_str(*values: Any) -> bool:
    """Whether every value is a string or None."""
    return all(v is None or isinstance(v, str) for v in values)
