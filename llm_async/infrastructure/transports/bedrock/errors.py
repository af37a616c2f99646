"""Bedrock's exceptions as typed errors.

The ``x-amzn-ErrorType`` of an error answer, or the exception of an event stream, picks the
class: ``ThrottlingException`` → :class:`~llm_async.errors.RateLimitError`,
``ServiceUnavailableException`` → :class:`~llm_async.errors.OverloadedError`,
``ModelTimeoutException`` → :class:`~llm_async.errors.RequestTimeoutError`,
``InternalServerException``/``ModelStreamErrorException``/``ModelErrorException`` →
:class:`~llm_async.errors.ServerError` (all retryable); ``ServiceQuotaExceededException`` →
:class:`~llm_async.errors.QuotaExceededError`, signature and key errors →
:class:`~llm_async.errors.AuthenticationError`, ``AccessDeniedException`` →
:class:`~llm_async.errors.PermissionDeniedError` (not retryable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ....errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContextLengthExceededError,
    LLMError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    error_from_response,
)

__all__ = ["EXCEPTION_ERRORS", "exception_error", "exception_name"]

#: Bedrock exception name → (error class, the HTTP status it comes with).
EXCEPTION_ERRORS: Mapping[str, tuple[type[APIStatusError], int]] = {
    "ThrottlingException": (RateLimitError, 429),
    "ServiceUnavailableException": (OverloadedError, 503),
    "ModelNotReadyException": (OverloadedError, 429),
    "ModelTimeoutException": (RequestTimeoutError, 408),
    "InternalServerException": (ServerError, 500),
    "ModelStreamErrorException": (ServerError, 424),
    "ModelErrorException": (ServerError, 424),
    "ValidationException": (BadRequestError, 400),
    "ConflictException": (ConflictError, 409),
    "ResourceNotFoundException": (NotFoundError, 404),
    "AccessDeniedException": (PermissionDeniedError, 403),
    "UnrecognizedClientException": (AuthenticationError, 403),
    "InvalidSignatureException": (AuthenticationError, 403),
    "IncompleteSignatureException": (AuthenticationError, 403),
    "ExpiredTokenException": (AuthenticationError, 403),
    "ServiceQuotaExceededException": (QuotaExceededError, 400),
}

_TOO_LONG = ("too long", "too many input tokens", "context window")


def exception_name(value: str | None) -> str | None:
    """``ThrottlingException`` from ``ThrottlingException:http://internal.amazon.com/...``,
    ``aws.protocols#ThrottlingException`` or ``throttlingException``."""
    if not value:
        return None
    name = value.split(":", 1)[0].rsplit("#", 1)[-1]
    return name[:1].upper() + name[1:] or None  # event streams spell them throttlingException


def exception_error(name: str | None, body: Any, *, provider: str, status: int | None,
                    headers: Mapping[str, str] | None,
                    request_id: str | None) -> LLMError:
    """The typed error of a Bedrock exception (an error answer or a stream's exception event);
    the message from the body's ``message``."""
    message: str | None = None
    if isinstance(body, Mapping):
        raw = body.get("message", body.get("Message"))
        message = str(raw) if raw is not None else None
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:200]
    known = EXCEPTION_ERRORS.get(name or "")
    if status is None:
        status = known[1] if known is not None else 500
    err = error_from_response(status, {"message": message or name or f"HTTP {status}"},
                              headers=headers, provider=provider, request_id=request_id)
    cls: type[APIStatusError] = known[0] if known is not None else type(err)
    if cls is BadRequestError and message and any(h in message.lower() for h in _TOO_LONG):
        cls = ContextLengthExceededError
    if cls is not type(err) or name:
        should_retry = err.retryable if headers and "x-should-retry" in headers else None
        err = cls(err.message, provider=provider, status=status, request_id=request_id,
                  body=body, error_type=name, code=name, retry_after=err.retry_after,
                  retryable=should_retry)
    else:
        err.body = body
    return err
