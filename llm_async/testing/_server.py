"""Embedded mock LLM provider server (aiohttp.web) with deterministic replies and faults.

Layout:

* dialect-neutral core -- request model (:class:`ChatRequest`), reply generation
  (:class:`ReplyGenerator`: deterministic words, echo, tool calls, token counting, prompt
  caching), rate-limit window, default error descriptions, request recording and statistics;
* :class:`Dialect` -- the interface a wire format implements (parse a request body, render a
  response, render a stream script, error bodies, headers).  The OpenAI Chat Completions
  dialect lives in :mod:`llm_async.testing._openai_dialect`;
* :class:`MockProviderServer` -- the aiohttp application: routes every dialect's paths to one
  generic chat handler that applies faults, authentication, validation and then streams or
  returns the dialect-rendered reply.

Adding a dialect is writing a :class:`Dialect` subclass in its own module and listing an
instance in :meth:`MockProviderServer._dialects`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
import socket
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from types import TracebackType
from typing import Any, ClassVar

from aiohttp import web

from ._faults import Fault, FaultQueue

__all__ = [
    "VOCABULARY",
    "ChatMessage",
    "ChatRequest",
    "Dialect",
    "ErrorInfo",
    "MockProviderServer",
    "PromptCache",
    "RateLimitSnapshot",
    "RateLimitWindow",
    "RecordedRequest",
    "Reply",
    "ReplyGenerator",
    "RequestError",
    "ResponseContext",
    "StreamScript",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "canonical_json",
    "count_tokens",
    "default_error",
    "dumps",
    "go_duration",
    "json_string",
    "split_pieces",
    "tool_arguments",
]

#: The fixed vocabulary replies are drawn from (64 ordinary lowercase words).
VOCABULARY: tuple[str, ...] = (
    "apple", "river", "stone", "cloud", "garden", "window", "paper", "silver",
    "forest", "candle", "bridge", "market", "ocean", "pencil", "thunder", "valley",
    "yellow", "orange", "purple", "simple", "quiet", "bright", "gentle", "rapid",
    "little", "happy", "early", "later", "always", "never", "often", "today",
    "table", "chair", "house", "field", "music", "story", "winter", "summer",
    "morning", "evening", "letter", "number", "circle", "square", "mountain", "island",
    "water", "fire", "earth", "wind", "light", "shadow", "friend", "travel",
    "build", "write", "read", "listen", "answer", "question", "follow", "remember",
)  # fmt: skip

_JSON_SEPARATORS = (",", ":")
_PIECE_RE = re.compile(r"\s*\S+")
_REDACTED_HEADERS = frozenset({"authorization", "x-api-key", "proxy-authorization"})

# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Dialect-neutral request / reply model
# --------------------------------------------------------------------------------------------


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

    @property
    def text(self) -> str | None:
        """The reply text, or ``None`` for a tool call."""
        if self.tool_call is not None:
            return None
        return "".join(self.pieces)


class PromptCache:
    """Bounded memory of prompt-prefix hashes (simulates provider prompt caching)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_remember(self, key: bytes) -> bool:
        """Return whether ``key`` was seen before, and remember it (LRU eviction)."""
        seen = self._seen
        if key in seen:
            seen.move_to_end(key)
            return True
        seen[key] = None
        if len(seen) > self.max_entries:
            seen.popitem(last=False)
        return False

    def clear(self) -> None:
        """Forget every remembered prefix."""
        self._seen.clear()


def tool_arguments(parameters: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """Deterministic arguments for a JSON-schema ``parameters`` object.

    For each property in order: ``string`` -> a vocabulary word (or a value of its ``enum``),
    ``integer`` -> 42, ``number`` -> 1.5, ``boolean`` -> true, ``array`` -> [],
    ``object`` -> {}, anything else -> null.
    """
    properties = parameters.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    arguments: dict[str, Any] = {}
    for name, schema in properties.items():
        kind: Any = schema.get("type") if isinstance(schema, Mapping) else None
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        value: Any
        if kind == "string":
            enum = schema.get("enum") if isinstance(schema, Mapping) else None
            if isinstance(enum, list) and enum:
                value = enum[rng.randrange(len(enum))]
            else:
                value = VOCABULARY[rng.randrange(len(VOCABULARY))]
        elif kind == "integer":
            value = 42
        elif kind == "number":
            value = 1.5
        elif kind == "boolean":
            value = True
        elif kind == "array":
            value = []
        elif kind == "object":
            value = {}
        else:
            value = None
        arguments[str(name)] = value
    return arguments


class ReplyGenerator:
    """Deterministic reply generation, token counting and prompt caching (dialect-neutral)."""

    def __init__(self, *, seed: int = 0, reply_words: int = 12, cache_size: int = 4096) -> None:
        self.seed = seed
        self.reply_words = reply_words
        self.prompt_cache = PromptCache(cache_size)

    def reset(self) -> None:
        """Forget the prompt cache."""
        self.prompt_cache.clear()

    def generate(self, request: ChatRequest) -> Reply:
        """Generate the reply to ``request``.

        Raises :class:`RequestError` when ``tool_choice`` names a tool that is not offered.
        """
        messages = request.messages
        parts = [m.canonical for m in messages]
        body = ",".join(parts)
        digest_bytes = hashlib.sha256(f"{request.model}\n[{body}]".encode()).digest()
        digest = digest_bytes.hex()
        prefix = hashlib.sha256(("[" + ",".join(parts[:-1]) + "]").encode()).digest()

        last_tokens = count_tokens(messages[-1].text) + 3
        prompt_tokens = sum(count_tokens(m.text) for m in messages) + 3 * len(messages)
        cached = prompt_tokens - last_tokens if self.prompt_cache.check_and_remember(prefix) else 0

        rng = random.Random(f"{self.seed}:{digest}")
        tool = self._tool_to_call(request)
        if tool is not None:
            arguments = json.dumps(tool_arguments(tool.parameters, rng))
            call = ToolCall(id="call_" + digest[:24], name=tool.name, arguments=arguments)
            usage = Usage(prompt_tokens, max(1, count_tokens(arguments)), cached)
            return Reply([], call, "tool_calls", usage, digest)

        pieces = self._text_pieces(request, rng)
        finish_reason = "stop"
        if request.max_tokens is not None and request.max_tokens < len(pieces):
            pieces = pieces[: request.max_tokens]
            finish_reason = "length"
        return Reply(pieces, None, finish_reason, Usage(prompt_tokens, len(pieces), cached), digest)

    def _text_pieces(self, request: ChatRequest, rng: random.Random) -> list[str]:
        for message in reversed(request.messages):
            if message.role == "user":
                text = message.text.lstrip()
                if text.startswith("echo:"):
                    return split_pieces(text[5:].strip())
                break
        words = rng.choices(VOCABULARY, k=self.reply_words)
        return [words[0], *(" " + w for w in words[1:])] if words else []

    @staticmethod
    def _tool_to_call(request: ChatRequest) -> ToolSpec | None:
        if not request.tools or request.tool_choice == "none":
            return None
        if request.tool_choice == "named":
            for tool in request.tools:
                if tool.name == request.tool_name:
                    return tool
            raise RequestError(
                f"Invalid value for 'tool_choice': no function named '{request.tool_name}' "
                "was specified in the 'tools' parameter.",
                param="tool_choice",
                code="invalid_value",
            )
        if request.tool_choice == "required" or (
            request.tool_choice == "auto" and request.messages[-1].role == "user"
        ):
            return request.tools[0]
        return None


# --------------------------------------------------------------------------------------------
# Rate limits and errors
# --------------------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class RateLimitSnapshot:
    """State of the rate-limit window right after a request was accounted."""

    limit_requests: int
    remaining_requests: int
    reset_requests: float
    limit_tokens: int
    remaining_tokens: int
    reset_tokens: float


class RateLimitWindow:
    """A simple fixed one-minute window of requests and tokens."""

    def __init__(
        self,
        rpm_limit: int,
        tpm_limit: int,
        *,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm_limit = rpm_limit
        self.tpm_limit = tpm_limit
        self.period = period
        self._clock = clock
        self._start = clock()
        self._requests = 0
        self._tokens = 0

    def reset(self) -> None:
        """Start a fresh window."""
        self._start = self._clock()
        self._requests = 0
        self._tokens = 0

    def record(self, tokens: int) -> RateLimitSnapshot:
        """Account one request using ``tokens`` tokens and return the window state."""
        now = self._clock()
        if now - self._start >= self.period:
            self._start = now
            self._requests = 0
            self._tokens = 0
        self._requests += 1
        self._tokens += tokens
        reset_in = self.period - (now - self._start)
        return RateLimitSnapshot(
            limit_requests=self.rpm_limit,
            remaining_requests=max(0, self.rpm_limit - self._requests),
            reset_requests=reset_in if self._requests else 0.0,
            limit_tokens=self.tpm_limit,
            remaining_tokens=max(0, self.tpm_limit - self._tokens),
            reset_tokens=reset_in if self._tokens else 0.0,
        )


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


# --------------------------------------------------------------------------------------------
# Dialect interface
# --------------------------------------------------------------------------------------------


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


class Dialect:
    """A provider wire format.  Subclasses implement parsing and rendering."""

    #: Short name (used in logs and stats).
    name: ClassVar[str] = "base"
    #: POST paths served by the generic chat handler.
    chat_paths: ClassVar[tuple[str, ...]] = ()
    #: GET paths that list models.
    models_paths: ClassVar[tuple[str, ...]] = ()
    #: Header carrying the request id.
    request_id_header: ClassVar[str] = "x-request-id"

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        """The API key a request presents, or ``None``."""
        raise NotImplementedError

    def parse_request(self, body: Any) -> ChatRequest:
        """Validate a parsed JSON body; raise :class:`RequestError` if invalid."""
        raise NotImplementedError

    def response_id(self, ctx: ResponseContext, reply: Reply) -> str:
        """The id of the completion returned for this request."""
        raise NotImplementedError

    def error_payload(
        self, status: int, info: ErrorInfo, param: str | None = None
    ) -> Any:  # JSON-able
        """The JSON error body for ``status`` described by ``info``."""
        raise NotImplementedError

    def render_response(self, ctx: ResponseContext, request: ChatRequest, reply: Reply) -> bytes:
        """The encoded non-streaming response body."""
        raise NotImplementedError

    def render_stream(
        self, ctx: ResponseContext, request: ChatRequest, reply: Reply
    ) -> StreamScript:
        """The encoded stream events."""
        raise NotImplementedError

    def stream_error_event(
        self, ctx: ResponseContext, reply: Reply, error: dict[str, Any] | None
    ) -> bytes:
        """An in-stream error event (``error`` is the fault's ``error_body`` or ``None``)."""
        raise NotImplementedError

    def malformed_event(self, ctx: ResponseContext, reply: Reply) -> bytes:
        """A stream event whose data is truncated, unparsable JSON."""
        raise NotImplementedError

    def rate_limit_headers(self, snapshot: RateLimitSnapshot) -> dict[str, str]:
        """Rate-limit response headers for ``snapshot``."""
        return {}

    def models_body(self) -> bytes:
        """Encoded body of the models listing."""
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class RecordedRequest:
    """A chat request as received (credentials redacted)."""

    path: str
    #: Lower-cased header names; ``authorization`` / ``x-api-key`` values replaced by ``***``.
    headers: dict[str, str]
    #: Parsed JSON body, or ``None`` when the body was not JSON.
    body: Any
    #: ``time.time()`` at arrival.
    received_at: float


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_JSON = "application/json"
_SSE = "text/event-stream"


def _json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=dumps(payload).encode(), status=status, headers={"Content-Type": _JSON}
    )


def _control_error(message: str, status: int = 400) -> web.Response:
    return _json_response(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
        status,
    )


def _position(value: int | None, length: int) -> int:
    return -1 if value is None else min(value, length)


class MockProviderServer:
    """In-process mock LLM provider speaking real HTTP on loopback.

    Serves the OpenAI Chat Completions wire format on ``POST /v1/chat/completions`` and
    ``POST /chat/completions`` with deterministic content, optional rate-limit headers,
    optional API-key enforcement and programmable :class:`~llm_async.testing._faults.Fault`\\ s.
    Control endpoints (``/_mock/faults``, ``/_mock/stats``, ``/_mock/reset``) let other
    processes program it.

    Each chat request is counted and recorded, then: a matching fault is applied (latency,
    reset, error status; stream faults later), then the API key is checked
    (``require_api_key``), then the body is validated (400) and the reply generated.

    Use as ``async with MockProviderServer() as server: ...`` or call :meth:`start` and
    :meth:`close`.  All state lives on the event loop the server was started on.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reply_words: int = 12,
        token_delay: float = 0.0,
        seed: int = 0,
        rate_limit_headers: bool = False,
        require_api_key: str | None = None,
        rpm_limit: int = 10_000,
        tpm_limit: int = 1_000_000,
        prompt_cache_size: int = 4096,
        max_recorded: int = 256,
        shutdown_timeout: float = 1.0,
    ) -> None:
        if reply_words < 0:
            raise ValueError("reply_words must be >= 0")
        if token_delay < 0:
            raise ValueError("token_delay must be >= 0")
        self.host = host
        self.reply_words = reply_words
        self.token_delay = token_delay
        self.seed = seed
        self.rate_limit_headers = rate_limit_headers
        self.require_api_key = require_api_key
        self.shutdown_timeout = shutdown_timeout
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

        self._generator = ReplyGenerator(
            seed=seed, reply_words=reply_words, cache_size=prompt_cache_size
        )
        self._rate_window = RateLimitWindow(rpm_limit, tpm_limit)
        self._faults = FaultQueue()
        self._rng = random.Random(seed)
        self.requests: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._request_count = 0
        self._by_path: dict[str, int] = {}
        self._in_flight = 0
        self._max_in_flight = 0
        self._faults_applied = 0
        self._streams = 0
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        from ._batch_dialect import BatchEndpoints  # imports this module

        #: The provider batch endpoints (OpenAI Files/Batch, Anthropic Message Batches).
        self.batches = BatchEndpoints(self)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listening socket and start serving."""
        if self._runner is not None:
            raise RuntimeError("server already started")
        runner = web.AppRunner(
            self._build_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port, backlog=2048)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])

    async def close(self) -> None:
        """Stop serving and close every connection (idempotent).

        Chat requests still being answered (slow streams, latency faults) are aborted.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        tasks = [task for task in self._handler_tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.shutdown_timeout)
        await runner.cleanup()

    async def __aenter__(self) -> MockProviderServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when constructed with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL (``url + "/v1"``); clients POST ``{base_url}/chat/completions``."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Anthropic base URL (``url``); clients POST ``{anthropic_base_url}/v1/messages``."""
        return self.url

    @property
    def openrouter_base_url(self) -> str:
        """OpenRouter base URL (``url + "/api/v1"``); clients POST
        ``{openrouter_base_url}/chat/completions``."""
        return self.url + "/api/v1"

    # -- state --------------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """Chat requests received (every dialect), including faulted and invalid ones."""
        return self._request_count

    @property
    def pending_faults(self) -> list[Fault]:
        """Faults still queued, in selection order."""
        return [fault for fault, _ in self._faults.pending()]

    def stats(self) -> dict[str, Any]:
        """Counters: requests, by_path, in_flight, max_in_flight, faults_applied, streams."""
        return {
            "requests": self._request_count,
            "by_path": dict(self._by_path),
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
            "faults_applied": self._faults_applied,
            "streams": self._streams,
        }

    def add_fault(self, fault: Fault) -> None:
        """Queue ``fault`` (applies to its next ``times`` matching chat requests)."""
        self._faults.add(fault)

    def clear_faults(self) -> int:
        """Remove all pending faults; returns how many were removed."""
        return self._faults.clear()

    def reset(self) -> None:
        """Clear counters, recorded requests, faults, prompt-cache memory and the rate window,
        and reseed the fault RNG.  Requests in flight keep being counted as in flight."""
        self._faults.clear()
        self._rng.seed(self.seed)
        self._generator.reset()
        self._rate_window.reset()
        self.requests.clear()
        self._request_count = 0
        self._by_path.clear()
        self._max_in_flight = self._in_flight
        self._faults_applied = 0
        self._streams = 0
        self.batches.reset()

    # -- application --------------------------------------------------------------------------

    def _dialects(self) -> list[Dialect]:
        # Imported here: dialect modules import the neutral core from this module.
        from ._anthropic_dialect import AnthropicDialect
        from ._openai_dialect import OpenAIDialect
        from ._openrouter_dialect import OpenRouterDialect

        return [OpenAIDialect(), AnthropicDialect(), OpenRouterDialect()]

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for dialect in self._dialects():
            handler = self._chat_handler(dialect)
            for path in dialect.chat_paths:
                app.router.add_post(path, handler)
            models = self._models_handler(dialect)
            for path in dialect.models_paths:
                app.router.add_get(path, models)
        app.router.add_post("/_mock/faults", self._handle_add_faults)
        app.router.add_get("/_mock/faults", self._handle_list_faults)
        app.router.add_delete("/_mock/faults", self._handle_clear_faults)
        app.router.add_get("/_mock/stats", self._handle_stats)
        app.router.add_post("/_mock/reset", self._handle_reset)
        app.router.add_get("/_mock/requests", self._handle_requests)
        app.router.add_get("/_mock/health", self._handle_health)
        self.batches.register(app)
        return app

    def _chat_handler(self, dialect: Dialect) -> _Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle_chat(request, dialect)

        return handle

    @staticmethod
    def _models_handler(dialect: Dialect) -> _Handler:
        body = dialect.models_body()

        async def handle(request: web.Request) -> web.StreamResponse:
            return web.Response(body=body, headers={"Content-Type": _JSON})

        return handle

    # -- chat ---------------------------------------------------------------------------------

    async def _handle_chat(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        self._request_count += 1
        number = self._request_count
        path = request.path
        self._by_path[path] = self._by_path.get(path, 0) + 1
        self._in_flight += 1
        if self._in_flight > self._max_in_flight:
            self._max_in_flight = self._in_flight
        task = asyncio.current_task()
        if task is not None:
            self._handler_tasks.add(task)
        try:
            return await self._serve_chat(request, dialect, number, path)
        except ConnectionError:
            # The client went away while we were writing; nothing left to send.
            return web.Response(status=499)
        finally:
            self._in_flight -= 1
            if task is not None:
                self._handler_tasks.discard(task)

    async def _serve_chat(
        self, request: web.Request, dialect: Dialect, number: int, path: str
    ) -> web.StreamResponse:
        raw = await request.read()
        body: Any
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
            valid_json = False
        else:
            valid_json = True
        self.requests.append(RecordedRequest(path, _redact(request.headers), body, time.time()))
        model: str | None = None
        stream = False
        if type(body) is dict:
            candidate = body.get("model")
            model = candidate if isinstance(candidate, str) else None
            stream = body.get("stream") is True
        ctx = ResponseContext(
            number=number,
            request_id=f"req_{number:024x}",
            created=int(time.time()),
            model=model or "",
            path=path,
        )

        fault: Fault | None = None
        if self._faults:
            fault = self._faults.select(model=model, path=path, stream=stream, rng=self._rng)
            if fault is not None:
                self._faults_applied += 1
                if fault.latency > 0:
                    await asyncio.sleep(fault.latency)
                if fault.reset:
                    _drop_connection(request, reset=True)
                    return web.Response(status=499)
                if fault.status is not None:
                    return self._fault_response(dialect, ctx, fault)

        if self.require_api_key is not None:
            key = dialect.api_key(request.headers)
            if key != self.require_api_key:
                message = (
                    "You didn't provide an API key."
                    if key is None
                    else "Incorrect API key provided."
                )
                info = ErrorInfo(message, "authentication_error", "invalid_api_key")
                return self._error_response(dialect, ctx, 401, info, fault=fault)

        try:
            if not valid_json:
                raise RequestError(
                    "We could not parse the JSON body of your request. The body must be valid JSON."
                )
            chat = dialect.parse_request(body)
            reply = self._generator.generate(chat)
        except RequestError as exc:
            info = ErrorInfo(exc.message, exc.error_type, exc.code)
            return self._error_response(dialect, ctx, exc.status, info, exc.param, fault=fault)

        ctx.response_id = dialect.response_id(ctx, reply)
        tokens = reply.usage.total_tokens
        if chat.stream:
            headers = self._headers(dialect, ctx, _SSE, tokens, fault)
            return await self._stream(request, dialect, ctx, chat, reply, fault, headers)
        headers = self._headers(dialect, ctx, _JSON, tokens, fault)
        return web.Response(body=dialect.render_response(ctx, chat, reply), headers=headers)

    def _headers(
        self,
        dialect: Dialect,
        ctx: ResponseContext,
        content_type: str,
        tokens: int,
        fault: Fault | None,
    ) -> dict[str, str]:
        headers = {dialect.request_id_header: ctx.request_id, "Content-Type": content_type}
        if self.rate_limit_headers:
            headers.update(dialect.rate_limit_headers(self._rate_window.record(tokens)))
        if fault is not None:
            if fault.retry_after is not None:
                headers["Retry-After"] = format_seconds(fault.retry_after)
            if fault.retry_after_ms is not None:
                headers["retry-after-ms"] = format_seconds(fault.retry_after_ms)
            headers.update(fault.headers)
        return headers

    def _error_response(
        self,
        dialect: Dialect,
        ctx: ResponseContext,
        status: int,
        info: ErrorInfo,
        param: str | None = None,
        *,
        fault: Fault | None = None,
    ) -> web.Response:
        headers = self._headers(dialect, ctx, _JSON, 0, fault)
        body = dumps(dialect.error_payload(status, info, param)).encode()
        return web.Response(body=body, status=status, headers=headers)

    def _fault_response(self, dialect: Dialect, ctx: ResponseContext, fault: Fault) -> web.Response:
        status = fault.status
        assert status is not None
        body = fault.body
        if body is None:
            info = default_error(status, ctx.model or None)
            return self._error_response(dialect, ctx, status, info, fault=fault)
        if isinstance(body, str):
            content_type = "text/html" if body.lstrip().startswith("<") else "text/plain"
            data = body.encode()
        else:
            content_type = _JSON
            data = dumps(body).encode()
        headers = self._headers(dialect, ctx, content_type, 0, fault)
        return web.Response(body=data, status=status, headers=headers)

    async def _stream(
        self,
        request: web.Request,
        dialect: Dialect,
        ctx: ResponseContext,
        chat: ChatRequest,
        reply: Reply,
        fault: Fault | None,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        script = dialect.render_stream(ctx, chat, reply)
        delay = self.token_delay
        if fault is not None and fault.token_delay is not None:
            delay = fault.token_delay
        headers.setdefault("Cache-Control", "no-cache")
        response = web.StreamResponse(status=200, headers=headers)
        self._streams += 1
        await response.prepare(request)

        if delay <= 0 and (fault is None or not fault.has_stream_effect):
            await response.write(b"".join([*script.head, *script.body, *script.tail]))
            await response.write_eof()
            return response

        body = script.body
        count = len(body)
        cut_at = malformed_at = error_at = -1
        if fault is not None:
            cut_at = _position(fault.cut_after, count)
            malformed_at = _position(fault.malformed_after, count)
            error_at = _position(fault.error_after, count)

        await response.write(b"".join(script.head))
        for index in range(count + 1):
            if index == malformed_at:
                await response.write(dialect.malformed_event(ctx, reply))
            if index == cut_at:
                if index:
                    # Give the client time to read what was sent: aiohttp drops data still
                    # buffered when the connection breaks, which would make cuts race the reader.
                    await asyncio.sleep(_CUT_GRACE)
                _drop_connection(request, reset=False)
                return response
            if index == error_at:
                assert fault is not None
                await response.write(dialect.stream_error_event(ctx, reply, fault.error_body))
                await response.write_eof()
                return response
            if index == count:
                break
            if delay > 0:
                await asyncio.sleep(delay)
            await response.write(body[index])
        await response.write(b"".join(script.tail))
        await response.write_eof()
        return response

    # -- control endpoints --------------------------------------------------------------------

    async def _handle_add_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return _control_error("body must be a JSON object (or a list of objects)")
        items = payload if isinstance(payload, list) else [payload]
        try:
            faults = [Fault.from_dict(item) for item in items]
        except ValueError as exc:
            return _control_error(str(exc))
        for fault in faults:
            self._faults.add(fault)
        return _json_response({"added": len(faults), "pending": len(self._faults)})

    async def _handle_list_faults(self, request: web.Request) -> web.StreamResponse:
        pending = [
            {**fault.to_dict(), "remaining": remaining}
            for fault, remaining in self._faults.pending()
        ]
        return _json_response({"faults": pending})

    async def _handle_clear_faults(self, request: web.Request) -> web.StreamResponse:
        return _json_response({"cleared": self._faults.clear()})

    async def _handle_stats(self, request: web.Request) -> web.StreamResponse:
        return _json_response(self.stats())

    async def _handle_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return _json_response({"ok": True})

    async def _handle_requests(self, request: web.Request) -> web.StreamResponse:
        records = [
            {"path": r.path, "headers": r.headers, "body": r.body, "received_at": r.received_at}
            for r in self.requests
        ]
        return _json_response({"requests": records})

    async def _handle_health(self, request: web.Request) -> web.StreamResponse:
        return _json_response({"ok": True})


def _redact(headers: Mapping[str, str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        result[key] = "***" if key in _REDACTED_HEADERS else value
    return result


_CUT_GRACE = 0.02


def _drop_connection(request: web.Request, *, reset: bool) -> None:
    """Close the request's connection: with a TCP RST (``reset``) or after flushing what was
    already written (FIN), without completing the HTTP message either way."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
