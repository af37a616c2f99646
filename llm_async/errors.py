"""One error tree for every provider and every layer.

::

    LLMError                                 provider, status, request_id, retryable
    ├── InvalidRequestError                  bad input caught before anything is sent
    ├── ConfigurationError                   bad settings or environment variables
    ├── APIConnectionError                   could not reach the provider (retryable)
    │   └── APITimeoutError                  connect / first chunk / idle / total timeout
    ├── APIStatusError                       the provider answered with an error status
    │   ├── BadRequestError           400
    │   │   └── ContextLengthExceededError   the prompt does not fit the model
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
    └── FallbackExhaustedError               every model of a fallback chain failed

Provider error bodies are mapped to this tree in exactly one place,
:func:`error_from_response`, with the status table :data:`STATUS_ERRORS`. Foreign exceptions
(aiohttp, asyncio timeouts) are mapped at the transport boundary with ``raise ... from exc``.
No error ever carries an API key: messages pass through :func:`redact` before they are stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "CircuitBreakerOpenError",
    "ConfigurationError",
    "ConflictError",
    "ContextLengthExceededError",
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
    "RefusalError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "ServerError",
    "StreamError",
    "StructuredOutputError",
    "ToolArgumentsError",
    "UnprocessableEntityError",
    "error_from_response",
    "parse_retry_after",
    "redact",
]

# Secrets that look like API keys: "sk-...", "sk-ant-...", "sk-or-...", bearer tokens.
_SECRET_RE = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|(?i:bearer)\s+[A-Za-z0-9_\-\.]{8,})")
_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` scrubs it from any text, whatever its shape."""
    if value and len(value) >= 4:
        _known_secrets.add(value)


def redact(text: str) -> str:
    """Replace every API key (registered or key-shaped) in ``text`` with ``***``."""
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return _SECRET_RE.sub("***", text)


class LLMError(Exception):
    """Base of every error this library raises.

    Every error names the ``provider`` (when known), the HTTP ``status`` (when there was one),
    the provider's ``request_id`` (when it sent one) and whether retrying may help (``retryable``).
    """

    default_retryable: ClassVar[bool] = False

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
        # Errors cross process and thread boundaries (batch workers, the sync facade).
        return (_rebuild_error, (type(self), self.message, dict(self.__dict__)))


def _rebuild_error(cls: type[LLMError], message: str, state: dict[str, Any]) -> LLMError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class InvalidRequestError(LLMError, ValueError):
    """The request is invalid; it was rejected before anything was sent.

    ``field`` names the offending part of the request (for example ``messages[0].role``).
    """

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field = field


class ConfigurationError(LLMError, ValueError):
    """A setting or environment variable is missing or malformed; ``variable`` names it."""

    def __init__(self, message: str, *, variable: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.variable = variable


class APIConnectionError(LLMError):
    """The provider could not be reached, or the connection broke before an answer."""

    default_retryable = True


class APITimeoutError(APIConnectionError):
    """A timeout expired. ``phase`` is ``connect``, ``first_chunk``, ``idle`` or ``total``."""

    def __init__(self, message: str, *, phase: str = "total", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.phase = phase


class APIStatusError(LLMError):
    """The provider answered with an error status. ``error_type`` / ``code`` come from its body."""

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


class BadRequestError(APIStatusError):
    """400: the provider rejected the request."""


class ContextLengthExceededError(BadRequestError):
    """The prompt plus ``max_tokens`` does not fit the model's context window."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid."""


class InsufficientCreditsError(APIStatusError):
    """402: the account or key has no credits left (OpenRouter). Not a wait-and-retry case."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this model or feature (or moderation refused the input)."""


class NotFoundError(APIStatusError):
    """404: unknown model or endpoint."""


class RequestTimeoutError(APIStatusError):
    """408: the provider timed out waiting for the request."""

    default_retryable = True


class ConflictError(APIStatusError):
    """409: a conflicting request (providers use it for lock time-outs); retryable."""

    default_retryable = True


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but could not be processed."""


class RateLimitError(APIStatusError):
    """429: too many requests or tokens. ``retry_after`` is the provider's hint in seconds."""

    default_retryable = True


class QuotaExceededError(RateLimitError):
    """429 for a billing quota or spend cap: waiting does not help, so it is not retryable."""

    default_retryable = False


class ServerError(APIStatusError):
    """5xx: the provider failed."""

    default_retryable = True


class OverloadedError(ServerError):
    """The provider is overloaded (Anthropic 529, 503, or an in-stream ``overloaded_error``)."""


class ProtocolError(LLMError):
    """The provider sent something we cannot understand (malformed JSON, a broken SSE stream)."""

    default_retryable = True


class ResponseTooLargeError(ProtocolError):
    """A response body or a single SSE event exceeded the configured cap."""

    default_retryable = False


class StreamError(LLMError):
    """A stream failed after its first chunk reached the caller; it is never retried.

    ``cause`` is the typed error that ended it (also ``__cause__``); ``chunks_received`` says
    how far it got.
    """

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

    def __init__(self, message: str, *, raw_text: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.raw_text = raw_text


class RefusalError(StructuredOutputError):
    """The model refused instead of giving the structured answer: ``refusal`` is what it said,
    ``category`` the provider's reason when it names one."""

    def __init__(self, message: str, *, refusal: str = "", category: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.refusal = refusal
        self.category = category


class ToolArgumentsError(LLMError, ValueError):
    """A tool call's arguments are not JSON; ``raw_text`` keeps them, ``incomplete`` says the
    reply was cut at ``max_tokens`` while they were being written."""

    def __init__(self, message: str, *, raw_text: str = "", tool_name: str = "",
                 incomplete: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.raw_text = raw_text
        self.tool_name = tool_name
        self.incomplete = incomplete


class CircuitBreakerOpenError(LLMError):
    """The circuit breaker ``name`` is open; ``retry_after`` says when it will let a probe in."""

    def __init__(
        self, message: str, *, name: str = "", retry_after: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.name = name
        self.retry_after = retry_after


class RateLimiterError(LLMError):
    """Our own rate limiter cannot admit the call (say it asks more than the bucket holds)."""


class BudgetExceededError(LLMError):
    """The call would cross a hard budget; nothing was sent.

    Carries the ``budget`` name, its ``limit``, the ``spent`` amount, the amount ``reserved`` by
    calls in flight, and the ``requested`` worst-case cost of this call (all in USD).
    """

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


class FallbackExhaustedError(LLMError):
    """Every model in a fallback chain failed; ``errors`` holds ``(model, error)`` pairs."""

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
