"""The neutral wire model of the embedded provider server.

Every dialect translates its provider's request body into a :class:`ChatRequest` and renders a
:class:`Reply` back into its provider's response body or stream.  This module holds that
neutral request / reply, the error description dialects render (:class:`ErrorInfo`,
:func:`default_error`), the per-response values (:class:`ResponseContext`,
:class:`StreamScript`, :class:`RateLimitSnapshot`) and the JSON / token helpers they share.
It imports nothing else from the package.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "ErrorInfo",
    "RateLimitSnapshot",
    "Reply",
    "ReplyContent",
    "RequestError",
    "ResponseContext",
    "Route",
    "StreamScript",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "canonical_json",
    "count_tokens",
    "default_error",
    "dumps",
    "format_seconds",
    "go_duration",
    "json_string",
    "sign",
    "split_pieces",
    "token_logprobs",
    "verify",
]

_JSON_SEPARATORS = (",", ":")
_PIECE_RE = re.compile(r"\s*\S+")


_ENCODER = json.JSONEncoder(separators=_JSON_SEPARATORS)
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=_JSON_SEPARATORS)


def dumps(obj: Any) -> str:
    """Compact JSON encoding used for every response body and stream event."""
    return _ENCODER.encode(obj)


def json_string(text: str) -> str:
    """JSON encoding of a single string (fast path of :func:`dumps` for stream pieces)."""
    return encode_basestring_ascii(text)


def canonical_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, compact, ASCII) used for hashing requests."""
    return _CANONICAL_ENCODER.encode(obj)


def count_tokens(text: str) -> int:
    """The server's tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def split_pieces(text: str) -> list[str]:
    """Split ``text`` into stream pieces: one word each, with its leading whitespace.

    ``"".join(split_pieces(text)) == text.rstrip()`` and ``len(pieces) == count_tokens(text)``.
    """
    return _PIECE_RE.findall(text)


def sign(text: str) -> str:
    """The server's signature of reasoning ``text`` (opaque base64, like Anthropic's)."""
    digest = hashlib.sha256(f"llm-async-mock-signature:{text}".encode()).digest()
    return base64.b64encode(b"\x12\x08mock-sig" + digest).decode()


def verify(text: str, signature: Any) -> bool:
    """Whether ``signature`` is the server's signature of ``text``."""
    return isinstance(signature, str) and signature == sign(text)


def token_logprobs(pieces: list[str], top: int, seed: str) -> list[dict[str, Any]]:
    """OpenAI-shaped ``logprobs.content`` for the text ``pieces`` (deterministic values)."""
    rng = random.Random(f"logprobs:{seed}")
    out: list[dict[str, Any]] = []
    for piece in pieces:
        logprob = -round(rng.random() * 0.5, 6)
        alternatives = [{"token": piece, "logprob": logprob, "bytes": list(piece.encode())}]
        for _ in range(max(0, top - 1)):
            token = f" alt{rng.randrange(1000)}"
            alternatives.append({"token": token, "logprob": round(logprob - 1 - rng.random(), 6),
                                 "bytes": list(token.encode())})
        out.append({"token": piece, "logprob": logprob, "bytes": list(piece.encode()),
                    "top_logprobs": alternatives[:top]})
    return out


def go_duration(seconds: float) -> str:
    """Format a duration the way Go (and OpenAI's rate-limit headers) do: ``20ms``, ``1s``,
    ``6m0s``, ``1h2m3.5s``."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def format_seconds(value: float) -> str:
    """Header formatting of a number of seconds: integer if whole, else a short float."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class RequestError(Exception):
    """An invalid request; rendered by the dialect as an error body with ``status``."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.error_type = error_type


@dataclass(slots=True)
class ChatMessage:
    """One conversation message, reduced to what the reply generator needs."""

    role: str
    text: str
    #: Canonical JSON of the message as the client sent it (the hashing unit).
    canonical: str


@dataclass(slots=True)
class ToolSpec:
    """A callable tool: its name and JSON-schema ``parameters``."""

    name: str
    parameters: dict[str, Any]


@dataclass(slots=True)
class ChatRequest:
    """A dialect-neutral chat request."""

    model: str
    messages: list[ChatMessage]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    tools: list[ToolSpec] = field(default_factory=list)
    #: ``"auto"`` (also when absent), ``"none"``, ``"required"`` or ``"named"``.
    tool_choice: str = "auto"
    #: The tool to call when ``tool_choice == "named"``.
    tool_name: str | None = None
    #: How many answers to generate (OpenAI's ``n``).
    n: int = 1
    #: Whether token log probabilities were asked for, and how many alternatives per token.
    logprobs: bool = False
    top_logprobs: int = 0
    #: Whether the model should show its reasoning (Anthropic ``thinking``, OpenAI
    #: ``reasoning_effort``, OpenRouter ``reasoning``).
    reasoning: bool = False
    #: The JSON schema the answer must fill (``response_format: json_schema``); ``{}`` for
    #: ``json_object``; ``None`` for free text.
    response_schema: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolCall:
    """A generated tool call."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Usage:
    """Token accounting of one reply."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """``prompt_tokens + completion_tokens``."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ReplyContent:
    """What a reply holds beyond text and a tool call: reasoning (with the server's signature),
    a refusal, cited sources, the other answers of ``n`` > 1 and log probabilities."""

    reasoning: str | None = None
    #: The server's signature of ``reasoning`` (checked when a client sends the block back).
    signature: str | None = None
    #: Encrypted reasoning (rendered as Anthropic ``redacted_thinking``).
    redacted: str | None = None
    refusal: str | None = None
    refusal_category: str | None = None
    #: Sources the text cites: ``{"url", "title", "cited_text"}`` each.
    citations: list[dict[str, str]] = field(default_factory=list)
    #: The answers after the first when ``n`` > 1.
    choices: list[Reply] = field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(slots=True)
class Reply:
    """A generated reply, before any wire formatting."""

    #: Text pieces, one per word (each but the first carries its leading whitespace).
    pieces: list[str]
    tool_call: ToolCall | None
    #: Neutral finish reason: ``"stop"``, ``"length"`` or ``"tool_calls"``.
    finish_reason: str
    usage: Usage
    #: Hex sha256 of the model and the canonical messages (stable per request content).
    digest: str
    #: Reasoning, refusal, citations, other choices, log probabilities.
    content: ReplyContent = field(default_factory=ReplyContent)

    @property
    def text(self) -> str | None:
        """The reply text, or ``None`` for a tool call."""
        if self.tool_call is not None:
            return None
        return "".join(self.pieces)


@dataclass(slots=True, frozen=True)
class ErrorInfo:
    """Dialect-neutral description of an error: message, type and code."""

    message: str
    type: str
    code: str | None


_DEFAULT_ERRORS: dict[int, ErrorInfo] = {
    400: ErrorInfo("Invalid request.", "invalid_request_error", None),
    401: ErrorInfo("Incorrect API key provided.", "authentication_error", "invalid_api_key"),
    403: ErrorInfo(
        "You are not allowed to access this resource.", "permission_error", "permission_denied"
    ),
    404: ErrorInfo(
        "The model does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    408: ErrorInfo("Request timed out.", "timeout_error", "request_timeout"),
    409: ErrorInfo("The request conflicts with another request.", "conflict_error", "conflict"),
    422: ErrorInfo(
        "The request could not be processed.", "invalid_request_error", "unprocessable_entity"
    ),
    429: ErrorInfo(
        "Rate limit reached for requests. Please try again later.",
        "rate_limit_error",
        "rate_limit_exceeded",
    ),
    500: ErrorInfo(
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        "internal_error",
    ),
    502: ErrorInfo("Bad gateway.", "server_error", "bad_gateway"),
    503: ErrorInfo(
        "The engine is currently overloaded, please try again later.",
        "overloaded_error",
        "service_unavailable",
    ),
    504: ErrorInfo("Gateway timeout.", "timeout_error", "gateway_timeout"),
    529: ErrorInfo("The server is overloaded.", "overloaded_error", "overloaded"),
}


def default_error(status: int, model: str | None = None) -> ErrorInfo:
    """The error (message, type, code) a provider would typically send with ``status``."""
    info = _DEFAULT_ERRORS.get(status)
    if info is None:
        if status >= 500:
            return ErrorInfo(f"Server error ({status}).", "server_error", None)
        return ErrorInfo(f"Request failed ({status}).", "invalid_request_error", None)
    if status == 404 and model:
        return ErrorInfo(
            f"The model `{model}` does not exist or you do not have access to it.",
            info.type,
            info.code,
        )
    return info



@dataclass(slots=True, frozen=True)
class RateLimitSnapshot:
    """State of the rate-limit window right after a request was accounted."""

    limit_requests: int
    remaining_requests: int
    reset_requests: float
    limit_tokens: int
    remaining_tokens: int
    reset_tokens: float



@dataclass(slots=True, frozen=True)
class Route:
    """What a request's URL (and, for some providers, its body) says before parsing: the model
    asked for and whether a stream is wanted.  Faults are selected on it."""

    model: str | None
    stream: bool
    #: Facts of the URL a dialect needs when it parses the body (query values, path parts).
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ResponseContext:
    """Per-request values a dialect needs to render a response."""

    number: int
    request_id: str
    created: int
    model: str
    path: str
    #: Completion id (set once a reply is generated).
    response_id: str = ""


@dataclass(slots=True)
class StreamScript:
    """A rendered stream: ``head`` events, one ``body`` event per content chunk, ``tail``.

    The transport sleeps ``token_delay`` before each body event and applies stream faults at
    body positions (``cut_after=N`` cuts after ``body[N-1]``).
    """

    head: list[bytes]
    body: list[bytes]
    tail: list[bytes]


