"""AWS Bedrock's Converse API for the mock provider server.

* ``POST /model/{modelId}/converse`` and ``POST /model/{modelId}/converse-stream`` (the model
  id is in the path, percent-encoded by clients; the path decides streaming);
* credentials: a SigV4 ``Authorization`` header (its access key id is what
  ``require_api_key`` compares; the signature itself is not checked) or a Bedrock API key as a
  bearer token;
* ``messages`` of content blocks (``text``, ``image``, ``toolUse``, ``toolResult``,
  ``cachePoint``...; a user message made only of ``toolResult`` blocks is a tool turn),
  ``system`` blocks, ``inferenceConfig.maxTokens`` and ``toolConfig`` (``tools[].toolSpec``,
  ``toolChoice`` ``auto``/``any``/``tool``) are understood;
* answers carry ``usage`` with ``cacheReadInputTokens`` (a prompt prefix seen before) and
  ``cacheWriteInputTokens`` (when a ``cachePoint`` block was sent and nothing was read);
* streams are AWS event streams (``application/vnd.amazon.eventstream``): binary messages with
  ``:event-type`` headers (``messageStart``, ``contentBlockStart``, ``contentBlockDelta``,
  ``contentBlockStop``, ``messageStop``, ``metadata``) and CRC32 checksums; an in-stream error
  is an exception message (``internalServerException`` by default);
* errors name their exception in ``x-amzn-ErrorType`` with ``{"message": ...}`` bodies.
"""

from __future__ import annotations

import binascii
import json
import struct
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
from ._common import fragments

__all__ = [
    "EXCEPTIONS",
    "BedrockDialect",
    "BedrockRequest",
    "encode_message",
]

#: HTTP status → the exception Bedrock answers with.
EXCEPTIONS: Mapping[int, str] = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    409: "ConflictException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_CHOICES = {"auto": "auto", "any": "required", "tool": "named"}
_BLOCK_KINDS = frozenset({"text", "image", "document", "video", "toolUse", "toolResult",
                          "cachePoint", "reasoningContent", "guardContent"})
_LATENCY_MS = 42
_ERROR_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total and header lengths, CRC32), string
    headers, payload, and the CRC32 of everything before it."""
    encoded = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack("!B", len(raw_name)) + raw_name
        encoded += struct.pack("!BH", 7, len(raw_value)) + raw_value  # 7: string
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    message = prelude + bytes(encoded) + payload
    return message + struct.pack("!I", binascii.crc32(message))


def _event(kind: str, payload: Mapping[str, Any]) -> bytes:
    return encode_message({":event-type": kind, ":content-type": "application/json",
                           ":message-type": "event"}, dumps({**payload, "p": "abcd"}).encode())


@dataclass(slots=True)
class BedrockRequest(ChatRequest):
    """A neutral request plus whether a ``cachePoint`` block was sent."""

    cache_point: bool = False


def _invalid(message: str) -> RequestError:
    return RequestError(message, error_type="ValidationException")


def _block_text(block: Mapping[str, Any]) -> str:
    if isinstance(block.get("text"), str):
        return str(block["text"])
    result = block.get("toolResult")
    if isinstance(result, Mapping):
        texts = []
        for item in result.get("content") or ():
            if isinstance(item, Mapping):
                if isinstance(item.get("text"), str):
                    texts.append(item["text"])
                elif "json" in item:
                    texts.append(dumps(item["json"]))
        return "\n".join(texts)
    return ""


def _parse_messages(raw: Any) -> tuple[list[ChatMessage], bool]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("The messages field is required and must not be empty.")
    messages: list[ChatMessage] = []
    cache_point = False
    for index, item in enumerate(raw):
        where = f"messages.{index}"
        if not isinstance(item, Mapping) or item.get("role") not in ("user", "assistant"):
            raise _invalid(f"{where}.role: must be 'user' or 'assistant'")
        content = item.get("content")
        if not isinstance(content, list) or not content:
            raise _invalid(f"{where}.content: must be a non-empty list of content blocks")
        for j, block in enumerate(content):
            if not isinstance(block, Mapping) or len(block) != 1 \
                    or next(iter(block)) not in _BLOCK_KINDS:
                raise _invalid(f"{where}.content.{j}: a content block has exactly one member "
                               f"of {sorted(_BLOCK_KINDS)}")
            cache_point = cache_point or "cachePoint" in block
            use = block.get("toolUse")
            if use is not None and (not isinstance(use, Mapping)
                                    or not isinstance(use.get("toolUseId"), str)
                                    or not isinstance(use.get("name"), str)
                                    or not isinstance(use.get("input"), Mapping)):
                raise _invalid(f"{where}.content.{j}.toolUse: needs toolUseId, name and an "
                               "object input")
        text = "\n".join(t for t in (_block_text(b) for b in content) if t)
        only_results = all("toolResult" in b or "cachePoint" in b for b in content)
        role = "tool" if item["role"] == "user" and only_results else str(item["role"])
        messages.append(ChatMessage(role, text, canonical_json(item)))
    return messages, cache_point


def _parse_tools(raw: Any) -> tuple[list[ToolSpec], str, str | None]:
    if raw is None:
        return [], "auto", None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("tools"), list):
        raise _invalid("toolConfig.tools: must be a list")
    tools: list[ToolSpec] = []
    for index, tool in enumerate(raw["tools"]):
        spec = tool.get("toolSpec") if isinstance(tool, Mapping) else None
        if not isinstance(spec, Mapping):
            continue  # cachePoint entries
        schema = spec.get("inputSchema")
        json_schema = schema.get("json") if isinstance(schema, Mapping) else None
        if not isinstance(spec.get("name"), str) or not isinstance(json_schema, Mapping):
            raise _invalid(f"toolConfig.tools.{index}.toolSpec: needs a name and "
                           "inputSchema.json")
        tools.append(ToolSpec(spec["name"], dict(json_schema)))
    choice = raw.get("toolChoice")
    if choice is None:
        return tools, "auto", None
    kind = next(iter(choice), None) if isinstance(choice, Mapping) else None
    if kind not in _CHOICES:
        raise _invalid("toolConfig.toolChoice: must be one of auto, any, tool")
    if kind == "tool":
        name = choice["tool"].get("name") if isinstance(choice["tool"], Mapping) else None
        if not isinstance(name, str):
            raise _invalid("toolConfig.toolChoice.tool.name: required")
        return tools, "named", name
    return tools, _CHOICES[kind], None


def parse_converse_request(body: Any, route: Route) -> BedrockRequest:
    """Validate a Converse request body and normalise it (the model and the streaming flag
    come from the URL)."""
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    messages, cache_point = _parse_messages(body.get("messages"))
    system = body.get("system")
    if system is not None:
        if not isinstance(system, list):
            raise _invalid("system: must be a list of system content blocks")
        cache_point = cache_point or any(isinstance(b, Mapping) and "cachePoint" in b
                                         for b in system)
        text = "\n".join(str(b.get("text")) for b in system
                         if isinstance(b, Mapping) and isinstance(b.get("text"), str))
        messages.insert(0, ChatMessage("system", text, canonical_json({"system": system})))
    config = body.get("inferenceConfig") or {}
    max_tokens = config.get("maxTokens") if isinstance(config, Mapping) else None
    if max_tokens is not None and (not isinstance(max_tokens, int)
                                   or isinstance(max_tokens, bool) or max_tokens < 1):
        raise _invalid("inferenceConfig.maxTokens: must be an integer of at least 1")
    tools, choice, name = _parse_tools(body.get("toolConfig"))
    return BedrockRequest(
        model=route.model or "",
        messages=messages,
        stream=route.stream,
        include_usage=True,
        max_tokens=max_tokens,
        tools=tools,
        tool_choice=choice,
        tool_name=name,
        cache_point=cache_point,
    )


class BedrockDialect(Dialect):
    """Bedrock Runtime Converse / ConverseStream."""

    name: ClassVar[str] = "bedrock"
    chat_paths: ClassVar[tuple[str, ...]] = ("/model/{model:.+}/{op:converse|converse-stream}",)
    models_paths: ClassVar[tuple[str, ...]] = ("/foundation-models",)
    request_id_header: ClassVar[str] = "x-amzn-RequestId"
    stream_content_type: ClassVar[str] = "application/vnd.amazon.eventstream"

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        """The bearer token, or the access key id of a SigV4 ``Authorization`` header."""
        value = headers.get("Authorization") or ""
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer":
            return rest.strip() or None
        if scheme == "AWS4-HMAC-SHA256":
            for item in rest.split(","):
                key, _, val = item.strip().partition("=")
                if key == "Credential":
                    return val.split("/", 1)[0] or None
        return None

    def route(self, body: Any, params: Mapping[str, str], query: Mapping[str, str]) -> Route:
        """The model and the operation come from the path."""
        return Route(params.get("model"), params.get("op") == "converse-stream")

    def parse_request(self, body: Any, route: Route) -> ChatRequest:
        """See :func:`parse_converse_request`."""
        return parse_converse_request(body, route)

    def response_id(self, ctx: ResponseContext, reply: Reply) -> str:
        """Converse answers carry no id; the request id stands for it."""
        return ctx.request_id

    def error_payload(self, status: int, info: ErrorInfo, param: str | None = None) -> Any:
        """``{"message": ...}`` (the exception is named in a header)."""
        return {"message": info.message}

    def error_headers(self, status: int, info: ErrorInfo) -> dict[str, str]:
        """``x-amzn-ErrorType: <Exception>:<namespace>`` when Bedrock has one for ``status``."""
        name = info.type if info.type.endswith("Exception") else EXCEPTIONS.get(status)
        return {"x-amzn-ErrorType": name + _ERROR_NAMESPACE} if name else {}

    @staticmethod
    def usage(request: ChatRequest, reply: Reply) -> dict[str, int]:
        """Bedrock's split of the neutral counts: ``inputTokens`` leaves out cache reads and
        writes (a write is the prompt before the last turn, when a cachePoint asked for it)."""
        usage = reply.usage
        write = 0
        if isinstance(request, BedrockRequest) and request.cache_point \
                and usage.cached_tokens == 0 and len(request.messages) > 1:
            write = usage.prompt_tokens - (count_tokens(request.messages[-1].text) + 3)
        uncached = usage.prompt_tokens - usage.cached_tokens - write
        return {
            "inputTokens": uncached,
            "outputTokens": usage.completion_tokens,
            "totalTokens": uncached + usage.completion_tokens + usage.cached_tokens + write,
            "cacheReadInputTokens": usage.cached_tokens,
            "cacheWriteInputTokens": write,
        }

    @staticmethod
    def _tool_id(reply: Reply) -> str:
        assert reply.tool_call is not None
        return "tooluse_" + reply.tool_call.id.removeprefix("call_")

    def render_response(self, ctx: ResponseContext, request: ChatRequest, reply: Reply) -> bytes:
        """The ``ConverseResponse``."""
        call = reply.tool_call
        if call is not None:
            content: list[dict[str, Any]] = [{"toolUse": {
                "toolUseId": self._tool_id(reply), "name": call.name,
                "input": json.loads(call.arguments)}}]
        else:
            content = [{"text": reply.text or ""}]
        payload = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": _STOP.get(reply.finish_reason, "end_turn"),
            "usage": self.usage(request, reply),
            "metrics": {"latencyMs": _LATENCY_MS},
        }
        return dumps(payload).encode()

    def render_stream(
        self, ctx: ResponseContext, request: ChatRequest, reply: Reply
    ) -> StreamScript:
        """``messageStart``, (``contentBlockStart`` for a tool use), one ``contentBlockDelta``
        per word or tool-input fragment, ``contentBlockStop``, ``messageStop``, ``metadata``."""
        head = [_event("messageStart", {"role": "assistant"})]
        call = reply.tool_call
        if call is not None:
            head.append(_event("contentBlockStart", {
                "contentBlockIndex": 0,
                "start": {"toolUse": {"toolUseId": self._tool_id(reply), "name": call.name}}}))
            body = [_event("contentBlockDelta", {"contentBlockIndex": 0,
                                                 "delta": {"toolUse": {"input": piece}}})
                    for piece in fragments(call.arguments)]
        else:
            body = [_event("contentBlockDelta", {"contentBlockIndex": 0,
                                                 "delta": {"text": piece}})
                    for piece in reply.pieces]
        tail = [
            _event("contentBlockStop", {"contentBlockIndex": 0}),
            _event("messageStop", {"stopReason": _STOP.get(reply.finish_reason, "end_turn")}),
            _event("metadata", {"usage": self.usage(request, reply),
                                "metrics": {"latencyMs": _LATENCY_MS}}),
        ]
        return StreamScript(head, body, tail)

    def stream_error_event(
        self, ctx: ResponseContext, reply: Reply, error: dict[str, Any] | None
    ) -> bytes:
        """An exception message: ``error`` may name it (``{"type": "throttlingException",
        "message": ...}``); ``internalServerException`` by default."""
        error = error or {}
        name = str(error.get("type") or "internalServerException")
        message = str(error.get("message") or "The system encountered an unexpected error.")
        return encode_message({":exception-type": name, ":content-type": "application/json",
                               ":message-type": "exception"}, dumps({"message": message}).encode())

    def malformed_event(self, ctx: ResponseContext, reply: Reply) -> bytes:
        """A ``contentBlockDelta`` message (with valid checksums) whose JSON is cut short."""
        full = dumps({"contentBlockIndex": 0, "delta": {"text": " garbled"}})
        return encode_message({":event-type": "contentBlockDelta",
                               ":content-type": "application/json", ":message-type": "event"},
                              full[: len(full) // 2].encode())

    def models_body(self) -> bytes:
        """A ``ListFoundationModels``-shaped listing."""
        return dumps({"modelSummaries": [
            {"modelId": "anthropic.claude-3-5-haiku-20241022-v1:0"},
            {"modelId": "amazon.nova-lite-v1:0"},
        ]}).encode()
