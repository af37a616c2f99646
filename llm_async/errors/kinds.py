""":class:`ErrorKind`: what kind of failure an error is, the one classification every layer
reads, with its telemetry label and what it means to the breaker and to fallback."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

__all__ = [
    "ErrorKind",
]


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
