"""Calls our own layers decline: an open circuit breaker, a rate limiter that cannot admit the
call, a hard budget that would be crossed, an exhausted fallback chain."""

from __future__ import annotations

from typing import Any

from .base import LLMError
from .classify import describe_error
from .kinds import ErrorKind

__all__ = [
    "BudgetExceededError",
    "CircuitBreakerOpenError",
    "FallbackExhaustedError",
    "RateLimiterError",
    "UnpricedModelError",
]


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
