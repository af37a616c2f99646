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

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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
    canonical_json,
    count_tokens,
    dumps,
    sign,
    split_pieces,
    verify,
)

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
_BLOCK_TYPES = frozenset({"text", "image", "document", "tool_use", "tool_result", "thinking",
                          "redacted_thinking", "server_tool_use", "mcp_tool_use",
                          "container_upload", "search_result"})
_MIN_THINKING_BUDGET = 1024
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none", "tool": "named"}
_STREAM_ERROR_DEFAULT = {"type": "overloaded_error", "message": "Overloaded"}
_TOOL_ARGUMENT_FRAGMENTS = 4
_SIGNATURE_PREFIX = base64.b64decode(sign(""))[:10]


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    known = _ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "api_error" if status >= 500 else "invalid_request_error"


@dataclass(slots=True)
class AnthropicRequest(ChatRequest):
    """A neutral request plus what only the Anthropic dialect needs."""

    #: Whether any ``cache_control`` marker was sent (prompt caching is opt-in on Anthropic).
    cache_control: bool = False


def _invalid(message: str) -> RequestError:
    return RequestError(message, error_type="invalid_request_error")


def _block_text(block: Mapping[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text") or "")
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(str(b.get("text") or "") for b in content
                             if isinstance(b, Mapping) and b.get("type") == "text")
    return ""


def _server_result(kind: Any) -> bool:
    """Whether ``kind`` is the block type of a provider-run tool's result
    (``web_search_tool_result``, ``code_execution_tool_result`` ...)."""
    return isinstance(kind, str) and kind.endswith("_tool_result") and kind != "tool_result"


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, Mapping) or (block.get("type") not in _BLOCK_TYPES
                                          and not _server_result(block.get("type"))):
        raise _invalid(f"{where}: Input tag does not match any of the expected content block "
                       f"types {sorted(_BLOCK_TYPES)} or a server tool result")
    kind = block["type"]
    if kind == "thinking":
        thinking, signature = block.get("thinking"), block.get("signature")
        if not isinstance(thinking, str) or not isinstance(signature, str):
            raise _invalid(f"{where}: thinking blocks need a string thinking and signature")
        if not verify(thinking, signature):
            raise _invalid(f"{where}: Invalid `signature` in `thinking` block")
        return
    if kind == "redacted_thinking":
        if not _redacted_ok(block.get("data")):
            raise _invalid(f"{where}: Invalid `data` in `redacted_thinking` block")
        return
    if kind in ("server_tool_use", "mcp_tool_use"):
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str) \
                or not isinstance(block.get("input"), Mapping):
            raise _invalid(f"{where}: {kind} blocks need a string id and name and an object input")
        return
    if _server_result(kind):
        if not isinstance(block.get("tool_use_id"), str):
            raise _invalid(f"{where}.tool_use_id: Field required")
        return
    citations = block.get("citations")
    if citations is not None and (not isinstance(citations, list) or not all(
            isinstance(c, Mapping) and isinstance(c.get("type"), str) for c in citations)):
        raise _invalid(f"{where}.citations: expected a list of citation objects")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _invalid(f"{where}: text content blocks must contain non-whitespace text")
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str) \
                or not isinstance(block.get("input"), Mapping):
            raise _invalid(f"{where}: tool_use blocks need a string id and name and an "
                           "object input")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise _invalid(f"{where}.tool_use_id: Field required")
    elif kind == "image":
        source = block.get("source")
        if not isinstance(source, Mapping) or source.get("type") not in ("base64", "url"):
            raise _invalid(f"{where}.source: expected a base64 or url image source")


def _parse_messages(raw: Any) -> list[ChatMessage]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages: at least one message is required")
    messages: list[ChatMessage] = []
    for index, item in enumerate(raw):
        where = f"messages.{index}"
        if not isinstance(item, Mapping):
            raise _invalid(f"{where}: Input should be an object")
        role = item.get("role")
        if role not in ("user", "assistant"):
            raise _invalid(f"{where}.role: Input should be 'user' or 'assistant' (a system "
                           "prompt goes in the top-level system parameter)")
        content = item.get("content")
        if isinstance(content, str):
            if not content.strip():
                raise _invalid(f"{where}: messages must have non-empty content")
            text = content
            neutral_role = role
        elif isinstance(content, list) and content:
            for j, block in enumerate(content):
                _check_block(block, f"{where}.content.{j}")
            text = "\n".join(t for t in (_block_text(b) for b in content) if t)
            only_results = all(b.get("type") == "tool_result" for b in content)
            neutral_role = "tool" if role == "user" and only_results else role
        else:
            raise _invalid(f"{where}.content: expected a string or a non-empty list of blocks")
        messages.append(ChatMessage(neutral_role, text, canonical_json(item)))
    return messages


def _redacted_ok(data: Any) -> bool:
    """Whether ``data`` is encrypted reasoning this server handed out."""
    try:
        return isinstance(data, str) and base64.b64decode(data).startswith(_SIGNATURE_PREFIX)
    except ValueError:
        return False


def _check_thinking_turn(raw: list[Any]) -> None:
    """With thinking on, the assistant turn whose tool calls the last user message answers must
    start with its thinking (Anthropic's rule for tool loops)."""
    last = len(raw) - 1
    if last < 1 or not isinstance(raw[last], Mapping):
        return
    results = raw[last].get("content")
    if not isinstance(results, list) or not any(
            isinstance(b, Mapping) and b.get("type") == "tool_result" for b in results):
        return
    turn = raw[last - 1]
    content = turn.get("content") if isinstance(turn, Mapping) else None
    if turn.get("role") != "assistant" or not isinstance(content, list) or not content:
        return
    first = content[0].get("type") if isinstance(content[0], Mapping) else None
    if first not in ("thinking", "redacted_thinking"):
        raise _invalid(
            f"messages.{last - 1}.content.0.type: Expected `thinking` or `redacted_thinking`, "
            f"but found `{first}`. When `thinking` is enabled, the final `assistant` message "
            "before a set of `tool_result` blocks must start with a thinking block: send back "
            "the thinking blocks of previous turns, or disable `thinking`.")


def _parse_thinking(raw: Any, max_tokens: int) -> bool:
    """Whether ``thinking`` is enabled (its budget checked against ``max_tokens``)."""
    if raw is None:
        return False
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind == "disabled":
        return False
    if kind != "enabled":
        raise _invalid("thinking.type: Input should be 'enabled' or 'disabled'")
    budget = raw.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < _MIN_THINKING_BUDGET:
        raise _invalid(f"thinking.enabled.budget_tokens: Input should be greater than or equal "
                       f"to {_MIN_THINKING_BUDGET}")
    if max_tokens <= budget:
        raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    return True


def _parse_system(raw: Any) -> ChatMessage | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return ChatMessage("system", raw, canonical_json({"system": raw})) if raw else None
    if isinstance(raw, list):
        texts = []
        for index, block in enumerate(raw):
            if not isinstance(block, Mapping) or block.get("type") != "text" \
                    or not isinstance(block.get("text"), str):
                raise _invalid(f"system.{index}: system blocks must be text blocks")
            texts.append(block["text"])
        return ChatMessage("system", "\n".join(texts), canonical_json({"system": raw}))
    raise _invalid("system: Input should be a string or a list of text blocks")


def _parse_tools(raw: Any) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _invalid("tools: Input should be a valid list")
    tools: list[ToolSpec] = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) \
                or not item["name"]:
            raise _invalid(f"tools.{index}.name: Field required")
        schema = item.get("input_schema")
        if not isinstance(schema, Mapping):
            raise _invalid(f"tools.{index}.input_schema: Field required")
        tools.append(ToolSpec(item["name"], dict(schema)))
    return tools


def _parse_tool_choice(raw: Any) -> tuple[str, str | None]:
    if raw is None:
        return "auto", None
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind not in _TOOL_CHOICES:
        raise _invalid("tool_choice: expected {'type': 'auto' | 'any' | 'tool' | 'none'}")
    if kind == "tool":
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid("tool_choice.name: Field required")
        return "named", name
    return _TOOL_CHOICES[kind], None


def _has_cache_control(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "cache_control" in value or any(_has_cache_control(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_cache_control(v) for v in value)
    return False


def parse_messages_request(body: Any) -> AnthropicRequest:
    """Validate a Messages API request body and normalise it.

    Raises :class:`~llm_async.testing._wire.RequestError` (HTTP 400) when invalid.
    """
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _invalid("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens: Input should be an integer greater than or equal to 1")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float)
                                    or isinstance(temperature, bool)
                                    or not 0 <= temperature <= 1):
        raise _invalid("temperature: Input should be between 0 and 1")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream: Input should be a valid boolean")
    messages = _parse_messages(body.get("messages"))
    system = _parse_system(body.get("system"))
    if system is not None:
        messages.insert(0, system)
    tools = _parse_tools(body.get("tools"))
    tool_choice, tool_name = _parse_tool_choice(body.get("tool_choice"))
    thinking = _parse_thinking(body.get("thinking"), max_tokens)
    if thinking:
        if tool_choice in ("required", "named"):
            raise _invalid("Thinking may not be enabled when tool_choice forces tool use.")
        _check_thinking_turn(body["messages"])
    return AnthropicRequest(
        model=model,
        messages=messages,
        stream=bool(stream),
        include_usage=True,
        max_tokens=max_tokens,
        tools=tools,
        tool_choice=tool_choice,
        tool_name=tool_name,
        cache_control=_has_cache_control(body),
        reasoning=thinking,
    )


def _event(name: str, payload: Any) -> bytes:
    return f"event: {name}\ndata: {dumps(payload)}\n\n".encode()


def _fragments(text: str, parts: int) -> list[str]:
    if not text:
        return []
    size = -(-len(text) // parts)
    return [text[i:i + size] for i in range(0, len(text), size)]


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
                for fragment in _fragments(arguments, _TOOL_ARGUMENT_FRAGMENTS)]))
        return blocks

    def stream_error_event(
        self, ctx: ResponseContext, reply: Reply, error: dict[str, Any] | None
    ) -> bytes:
        """``event: error`` with ``{"type": "error", "error": {...}}`` (``overloaded_error`` by
        default; ``error`` may be the inner object or the whole event)."""
        if error is None:
            inner: Any = _STREAM_ERROR_DEFAULT
        elif isinstance(error.get("error"), Mapping):
            inner = error["error"]
        else:
            inner = error
        return _event("error", {"type": "error", "error": inner})

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
