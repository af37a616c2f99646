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
    ChatRequest,
    ErrorInfo,
    RateLimitSnapshot,
    Reply,
    ResponseContext,
    Route,
    StreamScript,
    Usage,
    count_tokens,
    dumps,
    go_duration,
    json_string,
    split_pieces,
    token_logprobs,
)
from ._common import fragments
from ._openai_request import message_text, parse_chat_request

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
                for fragment in fragments(call.arguments) or [""]
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
                    for fragment in fragments(call.arguments) or [""]]
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
