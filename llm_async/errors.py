"""One error tree for every provider and every layer.

::

    LLMError                                 provider, status, request_id, retryable
    ├── InvalidRequestError                  bad input caught before anything is sent
    ├── ConfigurationError                   bad settings or environment variables
    ├── APIConnectionError                   could not reach the provider (retryable)
    │   └── APITimeoutError                  connect / first chunk / idle / total timeout
    ├── APIStatusError                       the provider answered with an error status
    │   ├── RedirectError             3xx    never followed (``location`` names the target)
    │   ├── BadRequestError           400
    │   │   ├── ContextLengthExceededError   the prompt does not fit the model
    │   │   └── ContentFilterError           the provider's content filter refused the prompt
    │   ├── AuthenticationError       401
    │   ├── InsufficientCreditsError  402    (OpenRouter credits)
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── RequestTimeoutError       408    (retryable)
    │   ├── ConflictError             409    (retryable)
    │   ├── UnprocessableEntityError  422
    │   ├── RateLimitError            429    (retryable, ``retry_after``)
    │   │   └── QuotaExceededError           billing quota / spend cap (not retryable)
    │   └── ServerError               5xx    (retryable)
    │       └── OverloadedError       529 / 503 / in-stream ``overloaded_error``
    ├── ProtocolError                        a body or SSE event we cannot understand
    │   └── ResponseTooLargeError            a body or event over the configured cap
    ├── StreamError                          a failure after the first chunk reached the caller
    ├── StructuredOutputError                a reply that does not validate against the schema
    │   └── RefusalError                     the model refused instead of answering
    ├── ToolArgumentsError                   tool-call arguments that are not JSON (also ValueError)
    ├── CircuitBreakerOpenError              the breaker rejected the call (``retry_after``)
    ├── RateLimiterError                     our own limiter cannot admit the call
    ├── BudgetExceededError                  a hard budget would be crossed; nothing was sent
    │   └── UnpricedModelError               a hard budget applies but the model has no price
    └── FallbackExhaustedError               every model of a fallback chain failed

Each class carries a ``kind`` (:class:`ErrorKind`): the one classification that retry, the
circuit breaker, fallback, the rate limiter and telemetry read (:func:`error_kind`,
:func:`error_type`); :func:`root_cause` sees through errors that report another failure (an open
circuit, an exhausted fallback chain, a cut stream).

Provider error bodies are mapped to this tree in exactly one place,
:func:`error_from_response`, with the status table :data:`STATUS_ERRORS`. Foreign exceptions
(aiohttp, asyncio timeouts) are mapped at the transport boundary with ``raise ... from exc``.
No error ever carries an API key: messages pass through :func:`redact` before they are stored.
"""

from __future__ import annotations

import asyncio
import copy
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, ClassVar

__all__ = [
    "ERROR_TYPE_STATUS",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "CircuitBreakerOpenError",
    "ConfigurationError",
    "ConflictError",
    "ContentFilterError",
    "ContextLengthExceededError",
    "ErrorKind",
    "FallbackExhaustedError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "LLMError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "QuotaExceededError",
    "RateLimitError",
    "RateLimiterError",
    "RedirectError",
    "RefusalError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "ServerError",
    "StreamError",
    "StructuredOutputError",
    "ToolArgumentsError",
    "UnpricedModelError",
    "UnprocessableEntityError",
    "describe_error",
    "detached",
    "error_from_body",
    "error_from_response",
    "error_kind",
    "error_type",
    "is_secret_header",
    "parse_retry_after",
    "redact",
    "redact_value",
    "register_header_secrets",
    "register_secret",
    "rewrite_error_text",
    "root_cause",
    "status_of_error_body",
]

# Secrets that look like API keys: "sk-...", "sk-ant-...", "sk-or-...", bearer tokens.
_SECRET_RE = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|(?i:bearer)\s+[A-Za-z0-9_\-\.]{8,})")
#: Header names whose values are credentials wherever they come from (client or per call).
_SECRET_HEADER_RE = re.compile(
    r"auth|cookie|api[-_]?key|access[-_]?key|secret|token|password|credential", re.IGNORECASE)
_PLACEHOLDER = "***"
_MAX_DEPTH = 64


class _Secrets:
    """The registered secrets: the most recent ``limit`` of them, found in a text fast.

    A few secrets (the usual case) are searched one by one; many (a key per tenant, passed per
    call) through an index of their first characters, so the cost of a search grows with the
    text, not with the number of keys.
    """

    limit = 4096
    _prefix = 8

    def __init__(self) -> None:
        self._order: OrderedDict[str, None] = OrderedDict()
        self._short: set[str] = set()
        self._by_prefix: dict[str, set[str]] = {}
        self._min = 0

    def __len__(self) -> int:
        return len(self._order)

    def add(self, value: str) -> None:
        if value in self._order:
            self._order.move_to_end(value)
            return
        self._order[value] = None
        if len(value) < self._prefix:
            self._short.add(value)
        else:
            self._by_prefix.setdefault(value[:self._prefix], set()).add(value)
        if len(self._order) > self.limit:
            self._discard(next(iter(self._order)))
        self._min = min(len(s) for s in self._short) if self._short else self._prefix

    def _discard(self, value: str) -> None:
        del self._order[value]
        if len(value) < self._prefix:
            self._short.discard(value)
            return
        bucket = self._by_prefix.get(value[:self._prefix])
        if bucket is not None:
            bucket.discard(value)
            if not bucket:
                del self._by_prefix[value[:self._prefix]]

    def found_in(self, text: str) -> list[str]:
        """The secrets that occur in ``text``, longest first."""
        if not self._order or len(text) < self._min:
            return []
        if len(self._order) <= 32:
            found = [s for s in self._order if s in text]
        else:
            found = [s for s in self._short if s in text]
            seen: set[str] = set()
            by_prefix, width = self._by_prefix, self._prefix
            for i in range(len(text) - width + 1):
                bucket = by_prefix.get(text[i:i + width])
                if bucket:
                    for secret in bucket:
                        if secret not in seen and text.startswith(secret, i):
                            seen.add(secret)
                            found.append(secret)
        found.sort(key=len, reverse=True)
        return found


_known_secrets = _Secrets()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` scrubs it from any text, whatever its shape."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _known_secrets.add(value)


def is_secret_header(name: str) -> bool:
    """Whether a header of this name carries a credential (``Authorization``, ``x-api-key``,
    anything naming a key, token, secret or password)."""
    return _SECRET_HEADER_RE.search(name) is not None


def register_header_secrets(headers: Mapping[str, str]) -> None:
    """Register the values of every credential header in ``headers`` as secrets (for an
    ``Authorization: Bearer X`` header both the whole value and ``X``)."""
    for name, value in headers.items():
        if not isinstance(value, str) or not is_secret_header(str(name)):
            continue
        register_secret(value)
        scheme, _, token = value.strip().partition(" ")
        if token and scheme.isalpha():
            register_secret(token.strip())


def redact(text: str) -> str:
    """Replace every API key (registered or key-shaped) in ``text`` with ``***``."""
    for secret in _known_secrets.found_in(text):
        text = text.replace(secret, _PLACEHOLDER)
    return _SECRET_RE.sub(_PLACEHOLDER, text)


def redact_value(value: Any, _depth: int = 0) -> Any:
    """:func:`redact` applied to every string inside ``value`` (dicts, lists, tuples, bytes).

    Mappings come back as plain dicts (a response's header proxy cannot be pickled); nesting
    deeper than 64 levels is cut off.
    """
    return _rewrite(value, redact, _depth)


def _rewrite(value: Any, transform: Callable[[str], str], depth: int = 0) -> Any:
    if isinstance(value, str):
        return transform(value)
    if value is None or isinstance(value, bool | int | float | LLMError):
        return value
    if depth >= _MAX_DEPTH:
        return "[nested too deep]"
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "replace")
        changed = transform(text)
        return value if changed == text else changed.encode()
    if isinstance(value, Mapping):
        return {_rewrite(k, transform, depth + 1): _rewrite(v, transform, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_rewrite(v, transform, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def rewrite_error_text(error: LLMError, transform: Callable[[str], str]) -> None:
    """Apply ``transform`` to every text an error carries (message, args, body, every string
    attribute, a chained typed ``cause``), in place. Redaction still applies afterwards."""
    for name, value in list(vars(error).items()):
        if isinstance(value, LLMError):
            if value is not error:
                rewrite_error_text(value, transform)
            continue
        setattr(error, name, _rewrite(value, transform))
    error.args = _rewrite(error.args, transform)


class ErrorKind(str, Enum):
    """What kind of failure an error is: the one classification every layer reads.

    Each error class carries its ``kind``; retry, the circuit breaker, fallback, the rate
    limiter and tracing decide from it (and from ``error.retryable``) instead of testing classes.
    ``RETRYABLE`` and ``FATAL`` are not kinds of errors but the retry policy's verdicts for
    errors without a more specific retryable kind (see
    :func:`~llm_async.application.retry_strategy.classify_error`).
    """

    RATE_LIMIT = "rate_limit"                    # 429
    OVERLOADED = "overloaded"                    # 529, 503, in-stream overloaded_error
    SERVER = "server"                            # other 5xx
    TIMEOUT = "timeout"                          # our connect / first chunk / idle / total
    CONNECTION = "connection"                    # refused, reset, broken mid-response
    REQUEST_TIMEOUT = "request_timeout"          # 408
    CONFLICT = "conflict"                        # 409
    PROTOCOL = "protocol"                        # a body or SSE event we could not parse
    RESPONSE_TOO_LARGE = "response_too_large"    # over the configured size cap
    INVALID_REQUEST = "invalid_request"          # rejected before anything was sent
    CONFIGURATION = "configuration"              # bad settings
    BAD_REQUEST = "bad_request"                  # 400
    CONTEXT_LENGTH = "context_length"            # the prompt does not fit the model
    CONTENT_FILTER = "content_filter"            # the provider's content filter refused it
    AUTH = "auth"                                # 401
    INSUFFICIENT_CREDITS = "insufficient_credits"  # 402
    PERMISSION = "permission"                    # 403
    NOT_FOUND = "not_found"                      # 404
    UNPROCESSABLE = "unprocessable"              # 422
    QUOTA = "quota"                              # billing quota / spend cap (429)
    API_ERROR = "api_error"                      # any other error status
    REDIRECT = "redirect"                        # a 3xx answer (never followed)
    STREAM = "stream"                            # a failure after the first chunk
    STRUCTURED_OUTPUT = "structured_output"      # the reply does not fit the schema
    REFUSAL = "refusal"                          # the model refused to answer
    TOOL_ARGUMENTS = "tool_arguments"            # a tool call's arguments are not JSON
    CIRCUIT_OPEN = "circuit_open"                # our breaker rejected the call
    LIMITER = "limiter"                          # our rate limiter cannot admit the call
    BUDGET = "budget"                            # a hard budget would be crossed
    UNPRICED = "unpriced_model"                  # a hard budget cannot bound an unpriced model
    FALLBACK_EXHAUSTED = "fallback_exhausted"    # every model of a chain failed
    CANCELLED = "cancelled"                      # the caller cancelled
    UNKNOWN = "unknown"                          # anything else
    RETRYABLE = "retryable"                      # retry's verdict: retry, no specific kind
    FATAL = "fatal"                              # retry's verdict: never retry

    @property
    def label(self) -> str:
        """The low-cardinality ``error.type`` telemetry reports for this kind."""
        return _LABELS.get(self, self.value)

    @property
    def provider_fault(self) -> bool:
        """Whether it says the provider is unhealthy (what a circuit breaker counts)."""
        return self in _PROVIDER_FAULTS

    @property
    def moves_on(self) -> bool:
        """Whether another model may succeed where this one cannot, even though retrying the
        same model will not help (fallback moves on; retryable errors move on too)."""
        return self in _MOVES_ON


_LABELS: Mapping[ErrorKind, str] = {
    ErrorKind.RATE_LIMIT: "rate_limited",
    ErrorKind.SERVER: "server_error",
    ErrorKind.CONNECTION: "connection_error",
    ErrorKind.REQUEST_TIMEOUT: "timeout",
    ErrorKind.PROTOCOL: "protocol_error",
    ErrorKind.CONFIGURATION: "configuration_error",
    ErrorKind.CONTEXT_LENGTH: "context_length_exceeded",
    ErrorKind.AUTH: "authentication_error",
    ErrorKind.PERMISSION: "permission_denied",
    ErrorKind.UNPROCESSABLE: "unprocessable_entity",
    ErrorKind.QUOTA: "quota_exceeded",
    ErrorKind.STREAM: "stream_interrupted",
    ErrorKind.STRUCTURED_OUTPUT: "structured_output_invalid",
    ErrorKind.TOOL_ARGUMENTS: "tool_arguments_invalid",
    ErrorKind.LIMITER: "rate_limiter_rejected",
    ErrorKind.BUDGET: "budget_exceeded",
    ErrorKind.UNKNOWN: "_OTHER",
}

_PROVIDER_FAULTS = frozenset({
    ErrorKind.SERVER, ErrorKind.OVERLOADED, ErrorKind.TIMEOUT, ErrorKind.CONNECTION,
    ErrorKind.REQUEST_TIMEOUT, ErrorKind.PROTOCOL,
})

_MOVES_ON = frozenset({
    ErrorKind.CIRCUIT_OPEN, ErrorKind.CONTEXT_LENGTH, ErrorKind.QUOTA,
    ErrorKind.INSUFFICIENT_CREDITS, ErrorKind.NOT_FOUND, ErrorKind.LIMITER,
})


class LLMError(Exception):
    """Base of every error this library raises.

    Every error names the ``provider`` (when known), the HTTP ``status`` (when there was one),
    the provider's ``request_id`` (when it sent one) and whether retrying may help (``retryable``).
    """

    #: What kind of failure this is (see :class:`ErrorKind`); subclasses refine it.
    kind: ClassVar[ErrorKind] = ErrorKind.UNKNOWN
    default_retryable: ClassVar[bool] = False

    def __setattr__(self, name: str, value: Any) -> None:
        # Every attribute (message, body, headers, args, whatever a subclass adds) is redacted
        # as it is stored, so no way of showing or pickling an error can reveal a key.
        super().__setattr__(name, _rewrite(value, redact))

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        body: Any = None,
    ) -> None:
        self.message = redact(message)
        self.provider = provider
        self.status = status
        self.request_id = request_id
        self.retryable = self.default_retryable if retryable is None else retryable
        self.body = body
        super().__init__(self.message)

    def __str__(self) -> str:
        parts = [self.message]
        details = []
        if self.provider:
            details.append(f"provider={self.provider}")
        if self.status is not None:
            details.append(f"status={self.status}")
        if self.request_id:
            details.append(f"request_id={self.request_id}")
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
                f"status={self.status!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process and thread boundaries (batch workers, the sync facade). Redacted
        # again: a key registered after the error was made is scrubbed too.
        state = {name: _rewrite(value, redact) for name, value in self.__dict__.items()}
        return (_rebuild_error, (type(self), redact(self.message), state))


def _rebuild_error(cls: type[LLMError], message: str, state: dict[str, Any]) -> LLMError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class InvalidRequestError(LLMError, ValueError):
    """The request is invalid; it was rejected before anything was sent.

    ``field`` names the offending part of the request (for example ``messages[0].role``).
    """

    kind = ErrorKind.INVALID_REQUEST

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field = field


class ConfigurationError(LLMError, ValueError):
    """A setting or environment variable is missing or malformed; ``variable`` names it."""

    kind = ErrorKind.CONFIGURATION

    def __init__(self, message: str, *, variable: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.variable = variable


class APIConnectionError(LLMError):
    """The provider could not be reached, or the connection broke before an answer."""

    kind = ErrorKind.CONNECTION

    default_retryable = True


class APITimeoutError(APIConnectionError):
    """A timeout expired. ``phase`` is ``connect``, ``first_chunk``, ``idle`` or ``total``."""

    kind = ErrorKind.TIMEOUT

    def __init__(self, message: str, *, phase: str = "total", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.phase = phase


class APIStatusError(LLMError):
    """The provider answered with an error status. ``error_type`` / ``code`` come from its body."""

    kind = ErrorKind.API_ERROR

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.error_type = error_type
        self.code = code
        self.retry_after = retry_after


class RedirectError(APIStatusError):
    """3xx: the provider answered with a redirect. It is never followed — an LLM API has no
    reason to send one, and following it could carry the key to another host — so the call
    fails here; ``location`` is where the redirect pointed (redacted)."""

    kind = ErrorKind.REDIRECT

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.location = location


class BadRequestError(APIStatusError):
    """400: the provider rejected the request."""

    kind = ErrorKind.BAD_REQUEST


class ContextLengthExceededError(BadRequestError):
    """The prompt plus ``max_tokens`` does not fit the model's context window."""

    kind = ErrorKind.CONTEXT_LENGTH


class ContentFilterError(BadRequestError):
    """The provider's content filter refused the request (Azure OpenAI ``content_filter``).

    ``filter_results`` holds the filter's verdict per category as the provider sent it
    (``{"violence": {"filtered": true, "severity": "medium"}, ...}``; empty when it sent none).
    Sending the same prompt again gives the same answer, so it is not retryable.
    """

    kind = ErrorKind.CONTENT_FILTER

    @property
    def filter_results(self) -> dict[str, Any]:
        """The provider's per-category verdict, from the error body."""
        error = self.body.get("error") if isinstance(self.body, Mapping) else None
        inner = error.get("innererror") if isinstance(error, Mapping) else None
        results = inner.get("content_filter_result") if isinstance(inner, Mapping) else None
        return dict(results) if isinstance(results, Mapping) else {}


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid."""

    kind = ErrorKind.AUTH


class InsufficientCreditsError(APIStatusError):
    """402: the account or key has no credits left (OpenRouter). Not a wait-and-retry case."""

    kind = ErrorKind.INSUFFICIENT_CREDITS


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this model or feature (or moderation refused the input)."""

    kind = ErrorKind.PERMISSION


class NotFoundError(APIStatusError):
    """404: unknown model or endpoint."""

    kind = ErrorKind.NOT_FOUND


class RequestTimeoutError(APIStatusError):
    """408: the provider timed out waiting for the request."""

    kind = ErrorKind.REQUEST_TIMEOUT

    default_retryable = True


class ConflictError(APIStatusError):
    """409: a conflicting request (providers use it for lock time-outs); retryable."""

    kind = ErrorKind.CONFLICT

    default_retryable = True


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but could not be processed."""

    kind = ErrorKind.UNPROCESSABLE


class RateLimitError(APIStatusError):
    """429: too many requests or tokens. ``retry_after`` is the provider's hint in seconds."""

    kind = ErrorKind.RATE_LIMIT

    default_retryable = True


class QuotaExceededError(RateLimitError):
    """429 for a billing quota or spend cap: waiting does not help, so it is not retryable."""

    kind = ErrorKind.QUOTA

    default_retryable = False


class ServerError(APIStatusError):
    """5xx: the provider failed."""

    kind = ErrorKind.SERVER

    default_retryable = True


class OverloadedError(ServerError):
    """The provider is overloaded (Anthropic 529, 503, or an in-stream ``overloaded_error``)."""

    kind = ErrorKind.OVERLOADED


class ProtocolError(LLMError):
    """The provider sent something we cannot understand (malformed JSON, a broken SSE stream)."""

    kind = ErrorKind.PROTOCOL

    default_retryable = True


class ResponseTooLargeError(ProtocolError):
    """A response body or a single SSE event exceeded the configured cap."""

    kind = ErrorKind.RESPONSE_TOO_LARGE

    default_retryable = False


class StreamError(LLMError):
    """A stream failed after its first chunk reached the caller; it is never retried.

    ``cause`` is the typed error that ended it (also ``__cause__``); ``chunks_received`` says
    how far it got.
    """

    kind = ErrorKind.STREAM

    def __init__(
        self,
        message: str,
        *,
        cause: LLMError | None = None,
        chunks_received: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retryable", False)
        if cause is not None:
            kwargs.setdefault("provider", cause.provider)
            kwargs.setdefault("status", cause.status)
            kwargs.setdefault("request_id", cause.request_id)
        super().__init__(message, **kwargs)
        self.cause = cause
        self.chunks_received = chunks_received


class StructuredOutputError(LLMError):
    """The reply did not validate against the requested schema; ``raw_text`` keeps the reply."""

    kind = ErrorKind.STRUCTURED_OUTPUT

    def __init__(self, message: str, *, raw_text: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.raw_text = raw_text


class RefusalError(StructuredOutputError):
    """The model refused instead of giving the structured answer: ``refusal`` is what it said,
    ``category`` the provider's reason when it names one."""

    kind = ErrorKind.REFUSAL

    def __init__(self, message: str, *, refusal: str = "", category: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.refusal = refusal
        self.category = category


class ToolArgumentsError(LLMError, ValueError):
    """A tool call's arguments are not JSON; ``raw_text`` keeps them, ``incomplete`` says the
    reply was cut at ``max_tokens`` while they were being written."""

    kind = ErrorKind.TOOL_ARGUMENTS

    def __init__(self, message: str, *, raw_text: str = "", tool_name: str = "",
                 incomplete: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.raw_text = raw_text
        self.tool_name = tool_name
        self.incomplete = incomplete


class CircuitBreakerOpenError(LLMError):
    """The circuit breaker ``name`` is open; ``retry_after`` says when it will let a probe in.

    It chains the failure that opened the breaker (or the last one it counted): ``__cause__``
    holds it and the message names it, so :func:`root_cause` finds what went wrong upstream.
    """

    kind = ErrorKind.CIRCUIT_OPEN

    def __init__(
        self,
        message: str,
        *,
        name: str = "",
        retry_after: float | None = None,
        cause: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        if cause is not None:
            message = f"{message}; last failure: {describe_error(cause)}"
        super().__init__(message, **kwargs)
        self.name = name
        self.retry_after = retry_after
        if cause is not None:
            self.__cause__ = cause
            self.__suppress_context__ = True


class RateLimiterError(LLMError):
    """Our own rate limiter cannot admit the call (say it asks more than the bucket holds)."""

    kind = ErrorKind.LIMITER


class BudgetExceededError(LLMError):
    """The call would cross a hard budget; nothing was sent.

    Carries the ``budget`` name, its ``limit``, the ``spent`` amount, the amount ``reserved`` by
    calls in flight, and the ``requested`` worst-case cost of this call (all in USD).
    """

    kind = ErrorKind.BUDGET

    def __init__(
        self,
        message: str,
        *,
        budget: str = "",
        limit: Any = None,
        spent: Any = None,
        reserved: Any = None,
        requested: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.budget = budget
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.requested = requested


class UnpricedModelError(BudgetExceededError):
    """A hard budget applies but the ``model`` has no price, so its cost cannot be bounded;
    nothing was sent. Price the model (the message says how) or allow unpriced calls
    explicitly."""

    kind = ErrorKind.UNPRICED

    def __init__(self, message: str, *, model: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.model = model


class FallbackExhaustedError(LLMError):
    """Every model in a fallback chain failed; ``errors`` holds ``(model, error)`` pairs."""

    kind = ErrorKind.FALLBACK_EXHAUSTED

    def __init__(
        self, message: str, *, errors: list[tuple[str, LLMError]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.errors = list(errors or [])


#: Status code → error class. Anything else ≥ 500 is a ServerError, anything else ≥ 400 an
#: APIStatusError.
STATUS_ERRORS: Mapping[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    413: BadRequestError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: ServerError,
    502: ServerError,
    503: OverloadedError,
    504: ServerError,
    529: OverloadedError,
}

# Provider error ``type`` / ``code`` values that refine the status mapping.
_TYPE_ERRORS: Mapping[str, type[APIStatusError]] = {
    "context_length_exceeded": ContextLengthExceededError,
    "string_above_max_length": ContextLengthExceededError,
    "content_filter": ContentFilterError,
    "insufficient_quota": QuotaExceededError,
    "enforced_spend_limit_reached": QuotaExceededError,
    "billing_error": QuotaExceededError,
    "overloaded_error": OverloadedError,
    "rate_limit_error": RateLimitError,
    "rate_limit_exceeded": RateLimitError,
    "authentication_error": AuthenticationError,
    "invalid_api_key": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "model_not_found": NotFoundError,
    "api_error": ServerError,
    "server_error": ServerError,
    "timeout_error": ServerError,
}

#: Provider error ``type`` / ``code`` → the HTTP status it stands for: an error object sent with
#: HTTP 200 (in a body or an SSE event) is classified as if it had come with that status.
ERROR_TYPE_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "string_above_max_length": 400,
    "invalid_api_key": 401,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "permission_denied": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "request_too_large": 413,
    "insufficient_quota": 429,
    "enforced_spend_limit_reached": 429,
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "tokens_exceeded": 429,
    "api_error": 500,
    "server_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_CONTEXT_HINTS = ("context length", "context window", "maximum context", "too many tokens",
                  "prompt is too long")


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Read ``retry-after-ms`` (milliseconds) or ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = -1.0
        if ms >= 0 and ms == ms and ms != float("inf"):
            return ms / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        import email.utils
        import time

        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    if seconds != seconds or seconds == float("inf"):
        return None
    return max(0.0, seconds)


def _error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """(message, type, code) from an OpenAI, Anthropic or OpenRouter error body."""
    if not isinstance(body, Mapping):
        return None, None, None
    err = body.get("error", body)
    if not isinstance(err, Mapping):
        return (str(err) if err else None), None, None
    message = err.get("message")
    etype = err.get("type")
    code = err.get("code")
    details = err.get("details")
    if isinstance(details, Mapping) and details.get("error_code"):
        code = details.get("error_code")
    return (
        str(message) if message is not None else None,
        str(etype) if etype is not None else None,
        str(code) if code is not None else None,
    )


def status_of_error_body(body: Any, default: int = 500) -> int:
    """The HTTP status an error object stands for when it arrived with HTTP 200.

    A numeric ``code`` in the 4xx/5xx range wins (OpenRouter), then the ``code`` and ``type``
    names of :data:`ERROR_TYPE_STATUS`; ``default`` when nothing says more.
    """
    err = body.get("error", body) if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        return default
    code = err.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return code
    if isinstance(code, str) and code.isdigit() and 400 <= int(code) < 600:
        return int(code)
    for key in (code, err.get("type")):
        if isinstance(key, str) and key in ERROR_TYPE_STATUS:
            return ERROR_TYPE_STATUS[key]
    return default


def error_from_body(
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    provider: str | None = None,
    request_id: str | None = None,
) -> APIStatusError:
    """The typed error for an error object received with HTTP 200 (a unary body or a stream
    event): the same class, retryability and hints as the status it stands for."""
    return error_from_response(status_of_error_body(body), body, headers=headers,
                               provider=provider, request_id=request_id)


def error_from_response(
    status: int,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    provider: str | None = None,
    request_id: str | None = None,
) -> APIStatusError:
    """Map a provider's error status and body (parsed JSON, or raw text) to a typed error."""
    message, etype, code = _error_fields(body)
    if message is None:
        if isinstance(body, str) and body.strip():
            text = " ".join(re.sub(r"<[^>]+>", " ", body).split())
            message = f"HTTP {status}: {text[:200]}"
        else:
            message = f"HTTP {status}"
    cls: type[APIStatusError] = STATUS_ERRORS.get(
        status, ServerError if status >= 500 else APIStatusError
    )
    refined = _TYPE_ERRORS.get(code or "") or _TYPE_ERRORS.get(etype or "")
    if refined is not None and (issubclass(refined, cls) or cls is APIStatusError
                                or (status >= 500 and issubclass(refined, ServerError))):
        cls = refined
    if cls is BadRequestError and any(h in message.lower() for h in _CONTEXT_HINTS):
        cls = ContextLengthExceededError
    retryable: bool | None = None
    should = headers.get("x-should-retry") if headers else None
    if should in ("true", "false"):
        retryable = should == "true"
    return cls(
        message,
        provider=provider,
        status=status,
        request_id=request_id,
        body=body,
        error_type=etype,
        code=code,
        retry_after=parse_retry_after(headers),
        retryable=retryable,
    )



def error_kind(exc: BaseException) -> ErrorKind:
    """The :class:`ErrorKind` of any exception: a library error's ``kind``; a cancellation,
    a foreign timeout or connection error by its type; anything else ``UNKNOWN``."""
    if isinstance(exc, LLMError):
        return exc.kind
    if isinstance(exc, asyncio.CancelledError):
        return ErrorKind.CANCELLED
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(exc, ConnectionError):
        return ErrorKind.CONNECTION
    return ErrorKind.UNKNOWN


def error_type(exc: BaseException) -> str:
    """The low-cardinality ``error.type`` reported for ``exc`` by telemetry: its kind's label
    for a library error, ``cancelled`` for a cancellation, ``_OTHER`` for anything else."""
    if isinstance(exc, LLMError):
        return exc.kind.label
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "_OTHER"


#: Kinds that report a decision about another failure rather than a failure of their own.
_WRAPPERS = frozenset({ErrorKind.CIRCUIT_OPEN, ErrorKind.FALLBACK_EXHAUSTED, ErrorKind.STREAM})


def root_cause(exc: BaseException) -> BaseException:
    """The failure behind ``exc``: an open circuit's last failure, an exhausted fallback chain's
    last error, the error that cut a stream (followed as far as they go); otherwise ``exc``.

    Count failures by ``type(root_cause(exc))`` to see the 500s or connection errors behind
    breaker rejections instead of ``CircuitBreakerOpenError``.
    """
    seen = {id(exc)}
    while isinstance(exc, LLMError) and exc.kind in _WRAPPERS:
        cause = exc.__cause__
        if cause is None and isinstance(exc, StreamError):
            cause = exc.cause
        if cause is None or id(cause) in seen:
            break
        seen.add(id(cause))
        exc = cause
    return exc


def describe_error(exc: BaseException) -> str:
    """``"TypeName: message"`` for ``exc``, redacted and at most 300 characters."""
    text = redact(str(exc))
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def detached(exc: BaseException) -> BaseException:
    """A copy of ``exc`` without its traceback, cause or context, safe to keep for long (a
    breaker's last failure) and to chain to many errors; ``exc`` itself if it cannot be copied."""
    try:
        clone = copy.copy(exc)
    except Exception:
        return exc
    if clone is exc or type(clone) is not type(exc):
        return exc
    clone.__traceback__ = None
    clone.__cause__ = None
    clone.__context__ = None
    return clone
