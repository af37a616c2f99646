"""OpenAI Chat Completions wire format for the mock provider server.

Everything OpenAI-specific lives here: request validation and normalisation into a
:class:`~llm_async.testing._wire.ChatRequest`, the ``chat.completion`` response body, the
``chat.completion.chunk`` SSE events, the error shape, the rate-limit header names and the
models listing.  Content, token counting, caching and faults are handled by the dialect-neutral
core in :mod:`llm_async.testing._wire`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from .._dialect import Dialect
from .._wire import (
    ChatMessage,
    ChatRequest,
    ErrorInfo,
    RateLimitSnapshot,
    Reply,
    RequestError,
    ResponseContext,
    Route,
    StreamScript,
    ToolSpec,
    Usage,
    canonical_json,
    count_tokens,
    dumps,
    go_duration,
    json_string,
    split_pieces,
    token_logprobs,
)

__all__ = [
    "MODELS",
    "OpenAIDialect",
    "message_text",
    "parse_chat_request",
    "usage_payload",
]

#: Models listed by ``GET /v1/models`` (any model name is accepted by the chat endpoint).
MODELS: tuple[str, ...] = (
    "mock-model",
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "o3-mini",
)

_FINGERPRINT = "fp_mock"
_DONE = b"data: [DONE]\n\n"
_OPEN_CHOICE_TAIL = ',"finish_reason":null,"logprobs":null}],"usage":null}\n\n'
_STREAM_ERROR_DEFAULT: dict[str, Any] = {
    "message": "The server had an error while processing your request.",
    "type": "server_error",
    "code": None,
}
_TOOL_ARGUMENT_FRAGMENTS = 4


# --------------------------------------------------------------------------------------------
# Request parsing
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def usage_payload(usage: Usage, reasoning_tokens: int = 0) -> dict[str, Any]:
    """The OpenAI ``usage`` object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


def reasoning_tokens(reply: Reply) -> int:
    """The tokens of a reply's reasoning (part of its completion tokens)."""
    return count_tokens(reply.content.reasoning or "")


def citation_annotations(reply: Reply) -> list[dict[str, Any]]:
    """``url_citation`` annotations for the sources a reply cites (spanning its text)."""
    end = len(reply.text or "")
    return [{"type": "url_citation",
             "url_citation": {"url": c["url"], "title": c.get("title", ""),
                              "start_index": 0, "end_index": end}}
            for c in reply.content.citations]


def _plain(reply: Reply) -> bool:
    """Whether a reply is text or a tool call only (the fast rendering paths)."""
    content = reply.content
    return (content.reasoning is None and content.refusal is None and not content.citations
            and not content.choices and not content.logprobs)


def _chunk_prefix(ctx: ResponseContext) -> str:
    """Everything of a ``chat.completion.chunk`` up to the value of ``choices[0].delta``."""
    return (
        '{"id":' + json_string(ctx.response_id)
        + ',"object":"chat.completion.chunk","created":' + str(ctx.created)
        + ',"model":' + json_string(ctx.model)
        + ',"system_fingerprint":"' + _FINGERPRINT + '","choices":[{"index":0,"delta":'
    )  # fmt: skip


def _split_fragments(text: str, parts: int) -> list[str]:
    if not text:
        return [""]
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _tool_call_delta_head(reply: Reply) -> str:
    call = reply.tool_call
    assert call is not None
    return dumps(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
            ],
        }
    )


class OpenAIDialect(Dialect):
    """OpenAI Chat Completions: ``POST /v1/chat/completions`` (and without ``/v1``)."""

    name: ClassVar[str] = "openai"
    chat_paths: ClassVar[tuple[str, ...]] = ("/v1/chat/completions", "/chat/completions")
    models_paths: ClassVar[tuple[str, ...]] = ("/v1/models", "/models")
    request_id_header: ClassVar[str] = "x-request-id"

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        """The bearer token of the ``Authorization`` header."""
        value = headers.get("Authorization")
        if value is None:
            return None
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip()

    def parse_request(self, body: Any, route: Route) -> ChatRequest:
        """See :func:`parse_chat_request`."""
        return parse_chat_request(body)

    def response_id(self, ctx: ResponseContext, reply: Reply) -> str:
        """``chatcmpl-`` + request-content hash + request number (hex)."""
        return f"chatcmpl-{reply.digest[:16]}{ctx.number:08x}"

    def error_payload(self, status: int, info: ErrorInfo, param: str | None = None) -> Any:
        """``{"error": {"message", "type", "param", "code"}}`` (a 401 is an
        ``invalid_request_error`` with code ``invalid_api_key``, as OpenAI sends it)."""
        error_type = info.type
        code = info.code
        if status == 401:
            error_type, code = "invalid_request_error", code or "invalid_api_key"
        return {
            "error": {
                "message": info.message,
                "type": error_type,
                "param": param,
                "code": code,
            }
        }

    def _message(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        content = reply.content
        if content.refusal is not None:
            message["content"] = None
            message["refusal"] = content.refusal
        elif not _plain(reply):
            message["refusal"] = None
        if content.reasoning is not None:
            message.update(self.reasoning_fields(content.reasoning, content.signature))
        if content.citations:
            message["annotations"] = citation_annotations(reply)
        call = reply.tool_call
        if call is not None:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
            ]
        return message

    def reasoning_fields(self, text: str, signature: str | None) -> dict[str, Any]:
        """The message (or delta) fields of reasoning ``text``: ``reasoning_content``, as
        OpenAI-compatible reasoning servers (DeepSeek, vLLM) send it."""
        return {"reasoning_content": text}

    def _logprobs(self, reply: Reply, main: Reply, index: int) -> dict[str, Any] | None:
        if not main.content.logprobs:
            return None
        pieces = reply.pieces if main.content.refusal is None else []
        return {"content": token_logprobs(pieces, main.content.top_logprobs,
                                          f"{reply.digest}:{index}"),
                "refusal": None}

    def render_response(self, ctx: ResponseContext, request: ChatRequest, reply: Reply) -> bytes:
        """The ``chat.completion`` object (every choice of ``n``; reasoning as
        ``reasoning_content``; a refusal as ``refusal``; citations as ``annotations``;
        ``logprobs`` when asked)."""
        choices = [
            {
                "index": index,
                "message": self._message(answer),
                "finish_reason": answer.finish_reason,
                "logprobs": self._logprobs(answer, reply, index),
            }
            for index, answer in enumerate([reply, *reply.content.choices])
        ]
        payload = {
            "id": ctx.response_id,
            "object": "chat.completion",
            "created": ctx.created,
            "model": ctx.model,
            "system_fingerprint": _FINGERPRINT,
            "choices": choices,
            "usage": usage_payload(reply.usage, reasoning_tokens(reply)),
        }
        return dumps(payload).encode()

    def render_stream(
        self, ctx: ResponseContext, request: ChatRequest, reply: Reply
    ) -> StreamScript:
        """Role chunk, one chunk per word (or tool-argument fragment), finish chunk, optional
        usage chunk, ``[DONE]``."""
        if not _plain(reply):
            return self._render_rich_stream(ctx, request, reply)
        prefix = "data: " + _chunk_prefix(ctx)
        call = reply.tool_call
        if call is None:
            head_delta = '{"role":"assistant","content":""}'
            body = [
                (prefix + '{"content":' + json_string(piece) + "}" + _OPEN_CHOICE_TAIL).encode()
                for piece in reply.pieces
            ]
        else:
            head_delta = _tool_call_delta_head(reply)
            body = [
                (
                    prefix
                    + '{"tool_calls":[{"index":0,"function":{"arguments":'
                    + json_string(fragment)
                    + "}}]}"
                    + _OPEN_CHOICE_TAIL
                ).encode()
                for fragment in _split_fragments(call.arguments, _TOOL_ARGUMENT_FRAGMENTS)
            ]
        head = [(prefix + head_delta + _OPEN_CHOICE_TAIL).encode()]
        finish_tail = (
            ',"finish_reason":' + dumps(reply.finish_reason) + ',"logprobs":null}],"usage":null}'
        )
        tail = [(prefix + "{}" + finish_tail + "\n\n").encode()]
        if request.include_usage:
            tail.append(self._usage_event(ctx, reply))
        tail.append(_DONE)
        return StreamScript(head, body, tail)

    def _usage_event(self, ctx: ResponseContext, reply: Reply) -> bytes:
        usage_chunk = {
            "id": ctx.response_id,
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.model,
            "system_fingerprint": _FINGERPRINT,
            "choices": [],
            "usage": usage_payload(reply.usage, reasoning_tokens(reply)),
        }
        return ("data: " + dumps(usage_chunk) + "\n\n").encode()

    def _render_rich_stream(
        self, ctx: ResponseContext, request: ChatRequest, reply: Reply
    ) -> StreamScript:
        """The general stream: reasoning deltas (``reasoning_content``), refusal deltas,
        annotations, ``logprobs`` per content chunk, and the chunks of every choice of ``n``
        (each with its ``index``)."""

        def event(index: int, delta: dict[str, Any], finish: str | None = None,
                  logprobs: Any = None) -> bytes:
            chunk = {
                "id": ctx.response_id, "object": "chat.completion.chunk",
                "created": ctx.created, "model": ctx.model,
                "system_fingerprint": _FINGERPRINT,
                "choices": [{"index": index, "delta": delta, "finish_reason": finish,
                             "logprobs": logprobs}],
            }
            return ("data: " + dumps(chunk) + "\n\n").encode()

        answers = [reply, *reply.content.choices]
        head = [event(i, {"role": "assistant", "content": ""}) for i in range(len(answers))]
        body: list[bytes] = []
        for index, answer in enumerate(answers):
            content = answer.content if answer is reply else reply.content
            if answer is reply and content.reasoning is not None:
                pieces = split_pieces(content.reasoning)
                body += [event(index, self.reasoning_fields(
                    piece, content.signature if n == len(pieces) - 1 else None))
                    for n, piece in enumerate(pieces)]
            if answer is reply and content.refusal is not None:
                body += [event(index, {"refusal": piece})
                         for piece in split_pieces(content.refusal)]
                continue
            call = answer.tool_call
            if call is not None:
                head_delta = json.loads(_tool_call_delta_head(answer))
                body.append(event(index, head_delta))
                body += [event(index, {"tool_calls": [{"index": 0, "function": {
                    "arguments": fragment}}]})
                    for fragment in _split_fragments(call.arguments, _TOOL_ARGUMENT_FRAGMENTS)]
                continue
            probs = self._logprobs(answer, reply, index)
            for position, piece in enumerate(answer.pieces):
                chunk_probs = None
                if probs is not None:
                    chunk_probs = {"content": probs["content"][position:position + 1],
                                   "refusal": None}
                body.append(event(index, {"content": piece}, logprobs=chunk_probs))
            if answer is reply and content.citations:
                body.append(event(index, {"annotations": citation_annotations(answer)}))
        tail = [event(index, {}, finish=answer.finish_reason)
                for index, answer in enumerate(answers)]
        if request.include_usage:
            tail.append(self._usage_event(ctx, reply))
        tail.append(_DONE)
        return StreamScript(head, body, tail)

    def stream_error_event(
        self, ctx: ResponseContext, reply: Reply, error: dict[str, Any] | None
    ) -> bytes:
        """``data: {"error": {...}}`` (``error`` may be the inner object or the whole event)."""
        if error is None:
            payload: dict[str, Any] = {"error": _STREAM_ERROR_DEFAULT}
        elif set(error) == {"error"}:
            payload = error
        else:
            payload = {"error": error}
        return ("data: " + dumps(payload) + "\n\n").encode()

    def malformed_event(self, ctx: ResponseContext, reply: Reply) -> bytes:
        """A chunk whose JSON is cut in the middle."""
        full = _chunk_prefix(ctx) + '{"content":" garbled"}' + _OPEN_CHOICE_TAIL.rstrip("\n")
        return ("data: " + full[: len(full) // 2] + "\n\n").encode()

    def rate_limit_headers(self, snapshot: RateLimitSnapshot) -> dict[str, str]:
        """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``."""
        return {
            "x-ratelimit-limit-requests": str(snapshot.limit_requests),
            "x-ratelimit-remaining-requests": str(snapshot.remaining_requests),
            "x-ratelimit-reset-requests": go_duration(snapshot.reset_requests),
            "x-ratelimit-limit-tokens": str(snapshot.limit_tokens),
            "x-ratelimit-remaining-tokens": str(snapshot.remaining_tokens),
            "x-ratelimit-reset-tokens": go_duration(snapshot.reset_tokens),
        }

    def models_body(self) -> bytes:
        """``{"object": "list", "data": [...]}`` of :data:`MODELS`."""
        data = [
            {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "llm-async-mock"}
            for name in MODELS
        ]
        return dumps({"object": "list", "data": data}).encode()
