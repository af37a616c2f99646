"""Reading any exception: its :class:`~llm_async.errors.ErrorKind` and telemetry label, the
failure behind a wrapping error, a short redacted description, a copy safe to keep."""

from __future__ import annotations

import asyncio
import copy

from .base import LLMError
from .kinds import ErrorKind
from .provider import StreamError
from .redaction import redact

__all__ = [
    "describe_error",
    "detached",
    "error_kind",
    "error_type",
    "root_cause",
]


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
