"""Google Gemini's native API for the mock provider server.

* ``POST /v1beta/models/{model}:generateContent`` and
  ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (the model is in the path, the
  streaming method decides streaming; ``alt=sse`` is required);
* the key arrives in ``x-goog-api-key``;
* ``contents`` (roles ``user`` and ``model``; a user content made only of ``functionResponse``
  parts is a tool turn), ``systemInstruction``, ``tools[].functionDeclarations``,
  ``toolConfig.functionCallingConfig`` (``AUTO``/``ANY``/``NONE``, ``allowedFunctionNames``) and
  ``generationConfig.maxOutputTokens`` are understood;
* with ``generationConfig.thinkingConfig.includeThoughts`` the answer starts with one thought
  part (``"thought": true``), counted in ``thoughtsTokenCount``;
* answers carry ``usageMetadata`` (``cachedContentTokenCount`` when the prompt prefix was seen
  before) and ``finishReason`` ``STOP``/``MAX_TOKENS``; errors are Google's
  ``{"error": {"code", "message", "status"}}``; stream events end with a blank ``\\r\\n`` line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .._dialect import Dialect
from .._wire import (
    ChatMessage,
    ChatRequest,
    ErrorInfo,
    Reply,
    RequestError,
    ResponseContext,
    Route,
    StreamScript,
    ToolSpec,
    canonical_json,
    count_tokens,
    dumps,
)
from ._common import inner_error

__all__ = ["MODELS", "STATUS_NAMES", "GeminiDialect", "GeminiRequest", "thought_text"]

#: Models listed by ``GET /v1beta/models``.
MODELS: tuple[str, ...] = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash")

#: HTTP status → Google's canonical ``status`` name.
STATUS_NAMES: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none"}
_STREAM_ERROR_DEFAULT = {"code": 500, "message": "An internal error has occurred.",
                         "status": "INTERNAL"}


@dataclass(slots=True)
class GeminiRequest(ChatRequest):
    """A neutral request plus whether thoughts were asked for."""

    include_thoughts: bool = False


def thought_text(request: ChatRequest) -> str:
    """The thought the mock model has before answering (deterministic)."""
    words = sum(count_tokens(m.text) for m in request.messages if m.role == "user")
    return f"The user wrote {words} words; I answer them directly."


def _invalid(message: str) -> RequestError:
    return RequestError(message, error_type="INVALID_ARGUMENT")


def _status(status: int) -> str:
    return STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")


def _part_text(part: Mapping[str, Any]) -> str:
    if isinstance(part.get("text"), str):
        return str(part["text"])
    response = part.get("functionResponse")
    if isinstance(response, Mapping):
        value = response.get("response")
        if isinstance(value, Mapping) and set(value) == {"result"}:
            return str(value["result"])
        return dumps(value)
    return ""


def _parse_contents(raw: Any) -> list[ChatMessage]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("* GenerateContentRequest.contents: contents is not specified")
    messages: list[ChatMessage] = []
    for index, item in enumerate(raw):
        where = f"contents[{index}]"
        if not isinstance(item, Mapping):
            raise _invalid(f"Invalid value at '{where}': expected an object")
        role = item.get("role", "user")
        if role not in ("user", "model"):
            raise _invalid(f"Please use a valid role: user, model. Got {role!r} in {where}")
        parts = item.get("parts")
        if not isinstance(parts, list) or not parts \
                or not all(isinstance(p, Mapping) and p for p in parts):
            raise _invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not "
                           "be empty.")
        text = "\n".join(t for t in (_part_text(p) for p in parts) if t)
        results = all("functionResponse" in p for p in parts)
        neutral = "tool" if role == "user" and results else \
            ("assistant" if role == "model" else "user")
        messages.append(ChatMessage(neutral, text, canonical_json(item)))
    return messages


def _parse_system(raw: Any) -> ChatMessage | None:
    if raw is None:
        return None
    parts = raw.get("parts") if isinstance(raw, Mapping) else None
    if not isinstance(parts, list):
        raise _invalid("Invalid value at 'system_instruction': expected a content with parts")
    text = "\n".join(str(p.get("text") or "") for p in parts if isinstance(p, Mapping))
    return ChatMessage("system", text, canonical_json({"systemInstruction": raw}))


def _parse_tools(raw: Any) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _invalid("Invalid value at 'tools': expected a list")
    tools: list[ToolSpec] = []
    for tool in raw:
        declarations = tool.get("functionDeclarations") if isinstance(tool, Mapping) else None
        for index, fn in enumerate(declarations or ()):
            if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) \
                    or not fn["name"]:
                raise _invalid(f"* GenerateContentRequest.tools[0].function_declarations"
                               f"[{index}].name: Name cannot be empty.")
            schema = fn.get("parametersJsonSchema", fn.get("parameters")) or {}
            tools.append(ToolSpec(fn["name"], dict(schema) if isinstance(schema, Mapping)
                                  else {}))
    return tools


def _parse_tool_config(raw: Any) -> tuple[str, str | None]:
    config = raw.get("functionCallingConfig") if isinstance(raw, Mapping) else None
    if not isinstance(config, Mapping):
        return "auto", None
    mode = str(config.get("mode") or "AUTO")
    if mode not in _MODES:
        raise _invalid(f"Invalid value at 'tool_config.function_calling_config.mode' ({mode})")
    allowed = config.get("allowedFunctionNames")
    if mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1:
        return "named", str(allowed[0])
    return _MODES[mode], None


def parse_generate_request(body: Any, route: Route) -> GeminiRequest:
    """Validate a ``GenerateContentRequest`` and normalise it (the model and the streaming flag
    come from the URL)."""
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received. Expected an object.")
    if route.options.get("alt_missing"):
        raise _invalid("streamGenerateContent is served as server-sent events here: add "
                       "?alt=sse")
    messages = _parse_contents(body.get("contents"))
    system = _parse_system(body.get("systemInstruction", body.get("system_instruction")))
    if system is not None:
        messages.insert(0, system)
    config = body.get("generationConfig") or {}
    if not isinstance(config, Mapping):
        raise _invalid("Invalid value at 'generation_config': expected an object")
    max_tokens = config.get("maxOutputTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int)
                                   or isinstance(max_tokens, bool) or max_tokens < 1):
        raise _invalid("* GenerateContentRequest.generation_config.max_output_tokens: must be "
                       "a positive integer")
    thinking = config.get("thinkingConfig")
    include_thoughts = isinstance(thinking, Mapping) and thinking.get("includeThoughts") is True
    tool_choice, tool_name = _parse_tool_config(body.get("toolConfig"))
    return GeminiRequest(
        model=route.model or "",
        messages=messages,
        stream=route.stream,
        include_usage=True,
        max_tokens=max_tokens,
        tools=_parse_tools(body.get("tools")),
        tool_choice=tool_choice,
        tool_name=tool_name,
        include_thoughts=include_thoughts,
    )


def _event(payload: Any) -> bytes:
    return f"data: {dumps(payload)}\r\n\r\n".encode()


class GeminiDialect(Dialect):
    """Gemini ``generateContent`` / ``streamGenerateContent`` with ``x-goog-api-key``."""

    name: ClassVar[str] = "gemini"
    chat_paths: ClassVar[tuple[str, ...]] = (
        "/v1beta/models/{model:[^/:]+}:{method:generateContent|streamGenerateContent}",
    )
    models_paths: ClassVar[tuple[str, ...]] = ("/v1beta/models",)

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        """The ``x-goog-api-key`` header."""
        return headers.get("x-goog-api-key")

    def route(self, body: Any, params: Mapping[str, str], query: Mapping[str, str]) -> Route:
        """The model and the method come from the path."""
        stream = params.get("method") == "streamGenerateContent"
        options = {"alt_missing": "1"} if stream and query.get("alt") != "sse" else {}
        return Route(params.get("model"), stream, options)

    def parse_request(self, body: Any, route: Route) -> ChatRequest:
        """See :func:`parse_generate_request`."""
        return parse_generate_request(body, route)

    def response_id(self, ctx: ResponseContext, reply: Reply) -> str:
        """Request-content hash + request number (hex), as Gemini's opaque ids go."""
        return f"{reply.digest[:16]}{ctx.number:08x}"

    def error_payload(self, status: int, info: ErrorInfo, param: str | None = None) -> Any:
        """``{"error": {"code", "message", "status"}}``."""
        return {"error": {"code": status, "message": info.message, "status": _status(status)}}

    @staticmethod
    def _thought(request: ChatRequest) -> str | None:
        if isinstance(request, GeminiRequest) and request.include_thoughts:
            return thought_text(request)
        return None

    @staticmethod
    def _usage(reply: Reply, thought: str | None) -> dict[str, int]:
        usage = reply.usage
        thoughts = count_tokens(thought) if thought else 0
        out = {
            "promptTokenCount": usage.prompt_tokens,
            "candidatesTokenCount": usage.completion_tokens,
            "totalTokenCount": usage.prompt_tokens + usage.completion_tokens + thoughts,
        }
        if usage.cached_tokens:
            out["cachedContentTokenCount"] = usage.cached_tokens
        if thoughts:
            out["thoughtsTokenCount"] = thoughts
        return out

    @staticmethod
    def _call_part(reply: Reply) -> dict[str, Any]:
        call = reply.tool_call
        assert call is not None
        return {"functionCall": {"name": call.name, "args": json.loads(call.arguments)}}

    def _envelope(self, ctx: ResponseContext, parts: list[dict[str, Any]],
                  finish: str | None, usage: dict[str, int]) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": ctx.model,
                "responseId": ctx.response_id}

    def render_response(self, ctx: ResponseContext, request: ChatRequest, reply: Reply) -> bytes:
        """The ``GenerateContentResponse``."""
        thought = self._thought(request)
        parts: list[dict[str, Any]] = [{"text": thought, "thought": True}] if thought else []
        if reply.tool_call is not None:
            parts.append(self._call_part(reply))
        else:
            parts.append({"text": reply.text or ""})
        payload = self._envelope(ctx, parts, _FINISH.get(reply.finish_reason, "STOP"),
                                 self._usage(reply, thought))
        return dumps(payload).encode()

    def render_stream(
        self, ctx: ResponseContext, request: ChatRequest, reply: Reply
    ) -> StreamScript:
        """One event per word (a function call arrives whole, in one event), then an event
        with the finish reason and the usage. Every event carries the usage so far."""
        thought = self._thought(request)
        usage = self._usage(reply, thought)
        partial = {"promptTokenCount": usage["promptTokenCount"]}
        head = [_event(self._envelope(ctx, [{"text": thought, "thought": True}], None, partial))
                ] if thought else []
        if reply.tool_call is not None:
            body = [_event(self._envelope(ctx, [self._call_part(reply)], None, partial))]
        else:
            body = [_event(self._envelope(ctx, [{"text": piece}], None, partial))
                    for piece in reply.pieces]
        finish = _FINISH.get(reply.finish_reason, "STOP")
        tail = [_event(self._envelope(ctx, [{"text": ""}], finish, usage))]
        return StreamScript(head, body, tail)

    def stream_error_event(
        self, ctx: ResponseContext, reply: Reply, error: dict[str, Any] | None
    ) -> bytes:
        """``data: {"error": {...}}`` (``INTERNAL`` by default; ``error`` may be the inner
        object or the whole event)."""
        return _event({"error": inner_error(error, _STREAM_ERROR_DEFAULT)})

    def malformed_event(self, ctx: ResponseContext, reply: Reply) -> bytes:
        """An event whose JSON is cut in the middle."""
        full = dumps(self._envelope(ctx, [{"text": " garbled"}], None, {}))
        return f"data: {full[: len(full) // 2]}\r\n\r\n".encode()

    def models_body(self) -> bytes:
        """``{"models": [{"name": "models/...", ...}]}``."""
        models = [{"name": f"models/{m}", "displayName": m,
                   "supportedGenerationMethods": ["generateContent", "streamGenerateContent"]}
                  for m in MODELS]
        return dumps({"models": models}).encode()
