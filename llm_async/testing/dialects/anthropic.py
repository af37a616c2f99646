"""Anthropic Messages API wire format for the mock provider server (``POST /v1/messages``).

Request validation and normalisation (top-level ``system``, content blocks, ``tool_use`` /
``tool_result``, ``tool_choice``), the ``message`` response, the named-event stream
(``message_start`` → ``content_block_start`` → ``ping`` → ``content_block_delta``... →
``content_block_stop`` → ``message_delta`` → ``message_stop``), ``{"type": "error", ...}`` error
bodies (529 ``overloaded_error`` included), in-stream ``error`` events and the
``anthropic-ratelimit-*`` headers. Content, token counting, prompt caching and faults come from
the dialect-neutral core in :mod:`llm_async.testing._wire`.

Usage follows Anthropic's split: ``input_tokens`` counts only the uncached prompt tokens,
``cache_read_input_tokens`` the prefix the server has seen before (the same prefix rule as the
OpenAI dialect), and ``cache_creation_input_tokens`` the prefix written to the cache — reported
on a prefix miss when the request carries a ``cache_control`` marker anywhere, as Anthropic only
caches what is marked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
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
    count_tokens,
    dumps,
    sign,
    split_pieces,
)
from ._anthropic_request import AnthropicRequest, parse_messages_request
from ._common import fragments, inner_error

__all__ = ["AnthropicDialect", "AnthropicRequest", "error_type"]

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_STREAM_ERROR_DEFAULT = {"type": "overloaded_error", "message": "Overloaded"}


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    known = _ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "api_error" if status >= 500 else "invalid_request_error"


def _event(name: str, payload: Any) -> bytes:
    return f"event: {name}\ndata: {dumps(payload)}\n\n".encode()


def _rfc3339(seconds_from_now: float) -> str:
    moment = datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class AnthropicDialect(Dialect):
    """Anthropic Messages: ``POST /v1/messages`` with ``x-api-key``."""

    name: ClassVar[str] = "anthropic"
    chat_paths: ClassVar[tuple[str, ...]] = ("/v1/messages",)
    models_paths: ClassVar[tuple[str, ...]] = ()  # GET /v1/models is the OpenAI dialect's
    request_id_header: ClassVar[str] = "request-id"

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        """The ``x-api-key`` header."""
        return headers.get("x-api-key")

    def parse_request(self, body: Any, route: Route) -> ChatRequest:
        """See :func:`parse_messages_request`."""
        return parse_messages_request(body)

    def response_id(self, ctx: ResponseContext, reply: Reply) -> str:
        """``msg_`` + request-content hash + request number (hex)."""
        return f"msg_{reply.digest[:16]}{ctx.number:08x}"

    def error_payload(self, status: int, info: ErrorInfo, param: str | None = None) -> Any:
        """``{"type": "error", "error": {"type", "message"}}`` (type chosen by status)."""
        return {"type": "error", "error": {"type": error_type(status), "message": info.message}}

    @staticmethod
    def usage(request: ChatRequest, reply: Reply) -> dict[str, int]:
        """Anthropic's usage split of the neutral token counts (see the module docstring)."""
        usage = reply.usage
        write = 0
        if isinstance(request, AnthropicRequest) and request.cache_control \
                and usage.cached_tokens == 0 and len(request.messages) > 1:
            write = usage.prompt_tokens - (count_tokens(request.messages[-1].text) + 3)
        return {
            "input_tokens": usage.prompt_tokens - usage.cached_tokens - write,
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": usage.cached_tokens,
            "output_tokens": usage.completion_tokens,
        }

    @staticmethod
    def _tool_block(reply: Reply, *, with_input: bool) -> dict[str, Any]:
        call = reply.tool_call
        assert call is not None
        tool_id = "toolu_" + call.id.removeprefix("call_")
        return {"type": "tool_use", "id": tool_id, "name": call.name,
                "input": json.loads(call.arguments) if with_input else {}}

    def _search_blocks(self, request: ChatRequest, reply: Reply) -> list[dict[str, Any]]:
        """A web search the model ran (``server_tool_use`` and ``web_search_tool_result``) for
        the sources the reply cites."""
        query = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
        tool_id = "srvtoolu_" + reply.digest[:24]
        results = [{"type": "web_search_result", "url": c["url"], "title": c.get("title", ""),
                    "encrypted_content": sign("page:" + c["url"]), "page_age": None}
                   for c in reply.content.citations]
        return [
            {"type": "server_tool_use", "id": tool_id, "name": "web_search",
             "input": {"query": " ".join(query.split()[:12])}},
            {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": results},
        ]

    @staticmethod
    def _citations(reply: Reply) -> list[dict[str, Any]]:
        return [{"type": "web_search_result_location", "url": c["url"],
                 "title": c.get("title", ""), "cited_text": c.get("cited_text", ""),
                 "encrypted_index": sign("index:" + c["url"])}
                for c in reply.content.citations]

    @staticmethod
    def _thinking_block(reply: Reply, *, full: bool) -> dict[str, Any] | None:
        content = reply.content
        if content.redacted is not None:
            return {"type": "redacted_thinking", "data": content.redacted}
        if content.reasoning is None:
            return None
        return {"type": "thinking", "thinking": content.reasoning if full else "",
                "signature": (content.signature or "") if full else ""}

    def _stop(self, reply: Reply) -> tuple[str, dict[str, Any] | None]:
        content = reply.content
        if content.refusal is not None:
            return "refusal", {"type": "refusal", "category": content.refusal_category,
                               "explanation": content.refusal}
        return _STOP.get(reply.finish_reason, "end_turn"), None

    def _usage_with_tools(self, request: ChatRequest, reply: Reply) -> dict[str, Any]:
        usage: dict[str, Any] = dict(self.usage(request, reply))
        if reply.content.citations:
            usage["server_tool_use"] = {"web_search_requests": 1}
        return usage

    def render_response(self, ctx: ResponseContext, request: ChatRequest, reply: Reply) -> bytes:
        """The ``message`` object: signed thinking first when asked for, a web search and
        cited text when scripted, then the text or the tool call; a refusal stops with
        ``stop_reason: "refusal"`` and ``stop_details``."""
        content: list[dict[str, Any]] = []
        thinking = self._thinking_block(reply, full=True)
        if thinking is not None:
            content.append(thinking)
        stop, details = self._stop(reply)
        if details is None:
            if reply.content.citations:
                content += self._search_blocks(request, reply)
            if reply.tool_call is not None:
                content.append(self._tool_block(reply, with_input=True))
            else:
                block: dict[str, Any] = {"type": "text", "text": reply.text or ""}
                if reply.content.citations:
                    block["citations"] = self._citations(reply)
                content.append(block)
        payload: dict[str, Any] = {
            "id": ctx.response_id,
            "type": "message",
            "role": "assistant",
            "model": ctx.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": self._usage_with_tools(request, reply),
        }
        if details is not None:
            payload["stop_details"] = details
        return dumps(payload).encode()

    def render_stream(
        self, ctx: ResponseContext, request: ChatRequest, reply: Reply
    ) -> StreamScript:
        """``message_start``, ``content_block_start``, ``ping``, one ``content_block_delta`` per
        word (or tool-input fragment), ``content_block_stop``, ``message_delta``,
        ``message_stop``; thinking, web-search and cited-text blocks come first, each with its
        own start, deltas (``thinking_delta`` and ``signature_delta``, ``citations_delta``) and
        stop."""
        usage = self._usage_with_tools(request, reply)
        start_usage = {**usage, "output_tokens": 1}
        message: dict[str, Any] = {
            "id": ctx.response_id, "type": "message", "role": "assistant", "content": [],
            "model": ctx.model, "stop_reason": None, "stop_sequence": None, "usage": start_usage,
        }
        stop, details = self._stop(reply)
        blocks = self._stream_blocks(request, reply, details is not None)
        head = [
            _event("message_start", {"type": "message_start", "message": message}),
            blocks[0][0],
            _event("ping", {"type": "ping"}),
        ]
        body: list[bytes] = []
        for number, (start, deltas) in enumerate(blocks):
            if number:
                stop_prev = _event("content_block_stop", {"type": "content_block_stop",
                                                          "index": number - 1})
                deltas = deltas or [b""]
                deltas[0] = stop_prev + start + deltas[0]
            body += [d for d in deltas if d]
        delta: dict[str, Any] = {"stop_reason": stop, "stop_sequence": None}
        if details is not None:
            delta["stop_details"] = details
        tail = [
            _event("content_block_stop", {"type": "content_block_stop",
                                          "index": len(blocks) - 1}),
            _event("message_delta", {
                "type": "message_delta", "delta": delta,
                "usage": {"output_tokens": usage["output_tokens"]}}),
            _event("message_stop", {"type": "message_stop"}),
        ]
        return StreamScript(head, body, tail)

    def _stream_blocks(self, request: ChatRequest, reply: Reply,
                       refused: bool) -> list[tuple[bytes, list[bytes]]]:
        """Each block of a streamed reply: its start event and its delta events."""
        blocks: list[tuple[bytes, list[bytes]]] = []

        def start(block: dict[str, Any]) -> bytes:
            return _event("content_block_start", {"type": "content_block_start",
                                                  "index": len(blocks), "content_block": block})

        def delta(payload: dict[str, Any]) -> bytes:
            return _event("content_block_delta", {"type": "content_block_delta",
                                                  "index": len(blocks), "delta": payload})

        thinking = self._thinking_block(reply, full=False)
        if thinking is not None:
            if thinking["type"] == "redacted_thinking":
                blocks.append((start(thinking), []))
            else:
                text = reply.content.reasoning or ""
                deltas = [delta({"type": "thinking_delta", "thinking": piece})
                          for piece in split_pieces(text)]
                deltas.append(delta({"type": "signature_delta",
                                     "signature": reply.content.signature or ""}))
                blocks.append((start(thinking), deltas))
        if refused:
            if not blocks:
                blocks.append((start({"type": "text", "text": ""}), []))
            return blocks
        if reply.content.citations:
            call, result = self._search_blocks(request, reply)
            blocks.append((start({**call, "input": {}}), [delta(
                {"type": "input_json_delta", "partial_json": dumps(call["input"])})]))
            blocks.append((start(result), []))
        if reply.tool_call is None:
            cited = bool(reply.content.citations)
            block: dict[str, Any] = {"type": "text", "text": ""}
            if cited:
                block["citations"] = []
            deltas = [delta({"type": "citations_delta", "citation": c})
                      for c in self._citations(reply)]
            deltas += [delta({"type": "text_delta", "text": piece}) for piece in reply.pieces]
            blocks.append((start(block), deltas))
        else:
            arguments = reply.tool_call.arguments
            blocks.append((start(self._tool_block(reply, with_input=False)), [
                delta({"type": "input_json_delta", "partial_json": fragment})
                for fragment in fragments(arguments)]))
        return blocks

    def stream_error_event(
        self, ctx: ResponseContext, reply: Reply, error: dict[str, Any] | None
    ) -> bytes:
        """``event: error`` with ``{"type": "error", "error": {...}}`` (``overloaded_error`` by
        default; ``error`` may be the inner object or the whole event)."""
        return _event("error", {"type": "error",
                                "error": inner_error(error, _STREAM_ERROR_DEFAULT)})

    def malformed_event(self, ctx: ResponseContext, reply: Reply) -> bytes:
        """A ``content_block_delta`` whose JSON is cut in the middle."""
        full = dumps({"type": "content_block_delta", "index": 0,
                      "delta": {"type": "text_delta", "text": " garbled"}})
        return f"event: content_block_delta\ndata: {full[: len(full) // 2]}\n\n".encode()

    def keepalive_event(self) -> bytes:
        """Anthropic keeps a stream open with ``ping`` events."""
        return _event("ping", {"type": "ping"})

    def rate_limit_headers(self, snapshot: RateLimitSnapshot) -> dict[str, str]:
        """``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` (RFC 3339 resets)."""
        return {
            "anthropic-ratelimit-requests-limit": str(snapshot.limit_requests),
            "anthropic-ratelimit-requests-remaining": str(snapshot.remaining_requests),
            "anthropic-ratelimit-requests-reset": _rfc3339(snapshot.reset_requests),
            "anthropic-ratelimit-tokens-limit": str(snapshot.limit_tokens),
            "anthropic-ratelimit-tokens-remaining": str(snapshot.remaining_tokens),
            "anthropic-ratelimit-tokens-reset": _rfc3339(snapshot.reset_tokens),
        }

    def models_body(self) -> bytes:
        """Unused (no models path); an empty Anthropic-shaped list."""
        return dumps({"data": [], "has_more": False, "first_id": None,
                      "last_id": None}).encode()
