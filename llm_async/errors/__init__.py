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

The modules: ``kinds`` (:class:`ErrorKind`), ``base`` (:class:`LLMError`), ``redaction``
(secrets), ``provider``, ``validation`` and ``policy`` (the class tree by family), ``mapping``
(status codes and error bodies to classes) and ``classify`` (:func:`error_kind`,
:func:`root_cause`); every name is importable from ``llm_async.errors``.
"""

from __future__ import annotations

from .base import (
    LLMError,
    _rebuild_error as _rebuild_error,  # so pickles naming llm_async.errors._rebuild_error load
    redact_value,
    rewrite_error_text,
)
from .classify import describe_error, detached, error_kind, error_type, root_cause
from .kinds import ErrorKind
from .mapping import (
    ERROR_TYPE_STATUS,
    STATUS_ERRORS as STATUS_ERRORS,
    error_from_body,
    error_from_response,
    parse_retry_after,
    status_of_error_body,
)
from .policy import (
    BudgetExceededError,
    CircuitBreakerOpenError,
    FallbackExhaustedError,
    RateLimiterError,
    UnpricedModelError,
)
from .provider import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentFilterError,
    ContextLengthExceededError,
    InsufficientCreditsError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    QuotaExceededError,
    RateLimitError,
    RedirectError,
    RequestTimeoutError,
    ResponseTooLargeError,
    ServerError,
    StreamError,
    UnprocessableEntityError,
)
from .redaction import is_secret_header, redact, register_header_secrets, register_secret
from .validation import (
    ConfigurationError,
    InvalidRequestError,
    RefusalError,
    StructuredOutputError,
    ToolArgumentsError,
)

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
