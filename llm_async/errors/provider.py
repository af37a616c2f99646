"""Failures of a call to a provider: it could not be reached or timed out, it answered with an
error status (one class per status family), it sent something we cannot read, or a stream
broke after its first chunk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import LLMError
from .kinds import ErrorKind

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ContentFilterError",
    "ContextLengthExceededError",
    "InsufficientCreditsError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "QuotaExceededError",
    "RateLimitError",
    "RedirectError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "ServerError",
    "StreamError",
    "UnprocessableEntityError",
]


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
